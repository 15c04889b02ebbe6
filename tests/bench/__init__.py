"""``make bench``: wa-relay beside bare Baileys. ``python -m tests.bench.run --help``; BENCHMARKS.md."""
