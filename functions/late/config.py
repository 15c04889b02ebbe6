"""The late-answer function's configuration, read from the environment once (in ``handler.py``).

The same names as the inbound function: the HMAC secret from exactly one of ``CHATBOT_SECRET`` (local runs, tests)
and ``CHATBOT_SECRET_ARN`` (AWS: read from Secrets Manager at cold start), and the table and queue variables of
``connector.resources``. Everything about the event (its chat, its age limit, read receipts) was decided by the
inbound function and stored with it (``pending.py``), so this function has no settings of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from connector.resources import IDEMPOTENCY_TABLE, OUTBOUND_QUEUE
from functions.inbound.secret import CHATBOT_SECRET_ARN_ENV, fetch_secret_string
from functions.late.errors import LateConfigError


@dataclass(frozen=True)
class LateConfig:
    secret: str = field(repr=False)
    outbound_queue_url: str
    idempotency_table: str = IDEMPOTENCY_TABLE.default_name

    @classmethod
    def from_env(cls, env: Mapping[str, str], fetch_secret: Callable[[str], str] = fetch_secret_string) -> LateConfig:
        value, arn = env.get("CHATBOT_SECRET", "").strip(), env.get(CHATBOT_SECRET_ARN_ENV, "").strip()
        if value and arn:
            raise LateConfigError(f"set only one of CHATBOT_SECRET and {CHATBOT_SECRET_ARN_ENV}")
        if not value and not arn:
            raise LateConfigError(f"CHATBOT_SECRET or {CHATBOT_SECRET_ARN_ENV} must be set")
        outbound = env.get(OUTBOUND_QUEUE.env, "").strip()
        if not outbound:
            raise LateConfigError(f"{OUTBOUND_QUEUE.env} must be set")
        secret = value or fetch_secret(arn).strip()
        if not secret:
            raise LateConfigError(f"{CHATBOT_SECRET_ARN_ENV}: the secret {arn} is empty")
        return cls(
            secret=secret,
            outbound_queue_url=outbound,
            idempotency_table=env.get(IDEMPOTENCY_TABLE.env, "").strip() or IDEMPOTENCY_TABLE.default_name,
        )
