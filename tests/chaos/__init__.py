"""The chaos suite: ``make chaos`` / ``make test-chaos`` (``python -m tests.chaos.run``)."""
