"""The inbound function's errors. Raised, never caught and turned into return values, except where ``logic`` says
why (a permanent chatbot rejection completes the record on purpose)."""

from __future__ import annotations


class InboundError(Exception):
    """Base of every error the inbound function raises on purpose."""


class InboundConfigError(InboundError):
    """A required environment variable is missing or holds an invalid value."""


class ChatbotError(InboundError):
    """The chatbot call did not produce an answer."""


class ChatbotUnavailable(ChatbotError):
    """Retryable: 408/429/5xx, a timeout or a connection error. ``retry_after`` is the server's hint in seconds.
    ``maybe_answering``: the request reached the bot and no answer came back (a read timeout, a connection dropped
    mid-answer), so the bot may still be working on it: not to be asked again at once."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        maybe_answering: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.maybe_answering = maybe_answering


class OutOfTime(ChatbotUnavailable):
    """This invocation has no time left to call the chatbot for the record (the others of its chat took it)."""


class ChatbotRejected(ChatbotError):
    """Permanent: the chatbot refused the event (a 4xx other than 408/429, or an unexpected status). Never retried."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class ChatbotInvalidResponse(ChatbotRejected):
    """Permanent: a 200 whose body is not a valid ``ChatbotResponse``."""


class LidMapError(InboundError):
    """The lid_map table could not be read."""


class ReplyTooLarge(InboundError):
    """A reply body exceeds the SQS message size limit."""


class ReplySendError(InboundError):
    """Replies could not be put on ``outbound.fifo``."""


class DeadLetterError(InboundError):
    """A malformed record could not be moved to the inbound DLQ (so it must stay on the queue)."""


class SettingsError(InboundError):
    """A session's settings could not be read from the settings table (or are not valid settings)."""


class RateLimitError(InboundError):
    """The rate limit counters could not be written."""
