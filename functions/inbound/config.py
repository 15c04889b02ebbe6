"""The inbound function's configuration: one frozen object, read from the environment once (in ``handler.py``).

Names: DESIGN section 12 (``CHATBOT_URL``, ``CHATBOT_SECRET``, ``DEDUP_TTL_S``) and ``connector.resources`` (table and
queue variables); the rest are this function's own, set by Terraform.

The chatbot's HMAC secret comes from exactly one of ``CHATBOT_SECRET`` (the value itself: local runs and tests) or
``CHATBOT_SECRET_ARN`` (a Secrets Manager secret whose ``SecretString`` is the value: AWS, where a value in an
environment variable would sit in plain text in the function's configuration and in Terraform's state). Both set is
an error rather than a precedence rule, so a stale variable can never silently win. Surrounding whitespace is
ignored in both (a secret written from a file keeps its newline); an empty value is an error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from connector.resources import IDEMPOTENCY_TABLE, INBOUND_QUEUE, LID_MAP_TABLE, OUTBOUND_QUEUE, SETTINGS_TABLE
from functions.inbound.errors import InboundConfigError
from functions.inbound.secret import fetch_secret_string, secret_from_env

INBOUND_DLQ_ENV = INBOUND_QUEUE.env.replace("_URL", "_DLQ_URL")  # INBOUND_QUEUE_DLQ_URL, as create_queues names it


@dataclass(frozen=True)
class InboundConfig:
    chatbot_url: str
    chatbot_secret: str = field(repr=False)
    outbound_queue_url: str
    inbound_dlq_url: str
    idempotency_table: str = IDEMPOTENCY_TABLE.default_name
    lid_map_table: str = LID_MAP_TABLE.default_name
    settings_table: str = SETTINGS_TABLE.default_name
    dedup_ttl_s: int = 86400
    """How long an ``event_id`` is remembered (DESIGN section 5: default 24 h, at least 60 s)."""
    forward_groups: bool = False
    typing_indicator: bool = True
    """Show the contact "typing…" while the chatbot works on their message."""
    read_receipts: bool = True
    """Mark the contact's message read when its reply is sent."""
    chatbot_timeout_s: float = 30.0
    """Per attempt: LLM bots take 3-30 s; a bot that needs longer answers 202 and replies later."""
    chatbot_max_attempts: int = 3
    chatbot_retry_base_s: float = 0.5
    """First backoff step; doubles per attempt, plus up to the same again as jitter."""
    chatbot_retry_max_s: float = 8.0
    """Cap of one backoff step (a ``Retry-After`` is honoured as given, bounded only by the remaining time)."""
    inbound_queue_url: str | None = None
    """For ``ChangeMessageVisibility`` on failed records (``retries.py``); without it the queue's timeout applies."""
    outage_budget_s: float = 6 * 3600
    """How long a failing record keeps being retried before it goes to the inbound DLQ with its reason."""
    retry_base_s: float = 30.0
    """First delay of a failed record (doubled per receive), unless the chatbot's ``Retry-After`` asks for more."""
    retry_max_s: float = 900.0
    max_message_age_s: float = 3600.0
    """A message older than this is not answered (0: no limit); see ``logic.stale``."""

    @classmethod
    def from_env(
        cls, env: Mapping[str, str], fetch_secret: Callable[[str], str] = fetch_secret_string
    ) -> InboundConfig:
        """``fetch_secret(arn)`` is called at most once, and only after every other variable was found valid."""

        def required(name: str) -> str:
            value = env.get(name, "").strip()
            if not value:
                raise InboundConfigError(f"{name} must be set")
            return value

        def number(name: str, default: float, minimum: float) -> float:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                value = float(raw)
            except ValueError:
                raise InboundConfigError(f"{name} must be a number, got {raw!r}") from None
            if value < minimum:
                raise InboundConfigError(f"{name} must be at least {minimum}, got {raw!r}")
            return value

        def flag(name: str, default: bool = False) -> bool:
            raw = env.get(name, "").strip().lower()
            if not raw:
                return default
            if raw in ("0", "false", "no", "off"):
                return False
            if raw in ("1", "true", "yes", "on"):
                return True
            raise InboundConfigError(f"{name} must be true or false, got {raw!r}")

        url = required("CHATBOT_URL")
        if not url.startswith(("https://", "http://")):
            raise InboundConfigError("CHATBOT_URL must be an http(s) URL")
        return cls(
            chatbot_url=url,
            outbound_queue_url=required(OUTBOUND_QUEUE.env),
            inbound_dlq_url=required(INBOUND_DLQ_ENV),
            idempotency_table=env.get(IDEMPOTENCY_TABLE.env) or IDEMPOTENCY_TABLE.default_name,
            lid_map_table=env.get(LID_MAP_TABLE.env) or LID_MAP_TABLE.default_name,
            settings_table=env.get(SETTINGS_TABLE.env) or SETTINGS_TABLE.default_name,
            dedup_ttl_s=int(number("DEDUP_TTL_S", cls.dedup_ttl_s, 60)),
            forward_groups=flag("FORWARD_GROUPS"),
            typing_indicator=flag("TYPING_INDICATOR", cls.typing_indicator),
            read_receipts=flag("READ_RECEIPTS", cls.read_receipts),
            chatbot_timeout_s=number("CHATBOT_TIMEOUT_S", cls.chatbot_timeout_s, 0.1),
            chatbot_max_attempts=int(number("CHATBOT_MAX_ATTEMPTS", cls.chatbot_max_attempts, 1)),
            chatbot_retry_base_s=number("CHATBOT_RETRY_BASE_S", cls.chatbot_retry_base_s, 0),
            chatbot_retry_max_s=number("CHATBOT_RETRY_MAX_S", cls.chatbot_retry_max_s, 0),
            inbound_queue_url=env.get(INBOUND_QUEUE.env, "").strip() or None,
            outage_budget_s=number("CHATBOT_OUTAGE_BUDGET_S", cls.outage_budget_s, 0),
            retry_base_s=number("RETRY_BASE_S", cls.retry_base_s, 0),
            retry_max_s=number("RETRY_MAX_S", cls.retry_max_s, 0),
            max_message_age_s=number("MAX_MESSAGE_AGE_S", cls.max_message_age_s, 0),
            # last: arguments are evaluated in order, so a bad variable above fails before any AWS call is made
            chatbot_secret=secret_from_env(env, fetch_secret),
        )
