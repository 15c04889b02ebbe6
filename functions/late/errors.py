"""The late-answer function's errors."""

from __future__ import annotations


class LateError(Exception):
    """Base of every error the late-answer function raises on purpose."""


class LateConfigError(LateError):
    """A required environment variable is missing or holds an invalid value."""


class PendingStoreError(LateError):
    """The pending-answer record could not be read or written (DynamoDB failed)."""
