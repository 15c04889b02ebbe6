"""The events function's configuration, read from the environment once (in ``handler.py``).

``EVENTS_URL`` (DESIGN section 12) is where the events go; the HMAC secret is the chatbot's (``CHATBOT_SECRET`` or
``CHATBOT_SECRET_ARN``, exactly one, as for the inbound function), so a receiver verifies both kinds of call with
one secret. The queue variables are ``connector.resources``' names; ``EVENTS_TIMEOUT_S`` bounds one POST.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from connector.resources import EVENTS_QUEUE
from functions.events.errors import EventsConfigError
from functions.inbound.secret import fetch_secret_string, secret_from_env

EVENTS_URL_ENV = "EVENTS_URL"


@dataclass(frozen=True)
class EventsConfig:
    events_url: str
    secret: str = field(repr=False)
    dlq_url: str
    queue_url: str | None = None
    """For ``ChangeMessageVisibility`` on events the receiver did not take; without it the queue's timeout applies."""
    timeout_s: float = 5.0
    """One POST, connect and answer: a receiver only has to store the event, not act on it."""

    @classmethod
    def from_env(cls, env: Mapping[str, str], fetch_secret: Callable[[str], str] = fetch_secret_string) -> EventsConfig:
        """``fetch_secret(arn)`` is called at most once, and only after every other variable was found valid."""
        url = env.get(EVENTS_URL_ENV, "").strip()
        if not url.startswith(("https://", "http://")):
            raise EventsConfigError(f"{EVENTS_URL_ENV} must be an http(s) URL")
        dlq = env.get(EVENTS_QUEUE.dlq_env, "").strip()
        if not dlq:
            raise EventsConfigError(f"{EVENTS_QUEUE.dlq_env} must be set")
        raw = env.get("EVENTS_TIMEOUT_S", "").strip()
        try:
            timeout = float(raw) if raw else cls.timeout_s
        except ValueError:
            raise EventsConfigError(f"EVENTS_TIMEOUT_S must be a number, got {raw!r}") from None
        if not 0.1 <= timeout <= 60:
            raise EventsConfigError(f"EVENTS_TIMEOUT_S must be between 0.1 and 60, got {raw!r}")
        return cls(
            events_url=url,
            dlq_url=dlq,
            queue_url=env.get(EVENTS_QUEUE.env, "").strip() or None,
            timeout_s=timeout,
            secret=secret_from_env(env, fetch_secret, EventsConfigError),
        )
