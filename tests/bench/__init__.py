"""``make bench``: wa-relay beside bare Baileys (issue 6). ``python -m tests.bench.run --help``; BENCHMARKS.md."""
