"""The connector's one error tree: every error it raises on purpose descends from ``RelayError``."""

from __future__ import annotations


class RelayError(Exception):
    """Base of every error wa-relay raises on purpose."""


class ConfigError(RelayError):
    """The configuration is missing a value or holds an invalid one."""


class StoreError(RelayError):
    """A store (creds, keys, LID map) could not read or write durably."""


class PublishError(RelayError):
    """An event could not be handed to the queue."""


class SessionOwnedElsewhere(RelayError):
    """Another connector holds the session's lease; only it may drive the session (or send its replies)."""
