"""The events function's errors."""

from __future__ import annotations


class EventsError(Exception):
    """Base of every error the events function raises on purpose."""


class EventsConfigError(EventsError):
    """A required environment variable is missing or holds an invalid value."""


class ReceiverUnavailable(EventsError):
    """Retryable: ``EVENTS_URL`` answered 408, 429 or 5xx, or could not be reached or did not answer in time.
    ``retry_after`` is the receiver's hint in seconds."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class OutOfTime(ReceiverUnavailable):
    """This invocation has no time left for a whole POST (the session's earlier events took it)."""


class ReceiverRejected(EventsError):
    """Permanent: ``EVENTS_URL`` answered another status (a 4xx, a redirect): the event goes to the DLQ."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status
