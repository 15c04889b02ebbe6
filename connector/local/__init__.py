"""The local stack: embedded AWS emulators and the resources they hold, for ``make up`` and the tests."""
