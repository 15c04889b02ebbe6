"""Per-chat and per-session limits on how many messages the chatbot is asked to answer (a session's settings).

Fixed windows (the current minute and the current hour, by the function's clock), one atomic counter per scope and
window: ``wa-rate#<session>#<chat or *>#<m|h>#<window number>`` in the idempotency table, beside the answers
(``answers.py``) and Powertools' records: the function already writes there, the table's TTL reaps the counters an
hour after their window ends, and no new table or permission is needed. ``take`` increments every configured
counter in one ``TransactWriteItems``, each update conditioned on its counter being under its limit: either all of
them count the message or, when one is full, none does, so a message refused by the hourly limit does not use up
the minute's.

A fixed window lets a burst of twice the limit straddle a boundary; for keeping a bot from flooding a chat that is
fine, and it costs one write per limit and message, with no read.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from connector.contracts import BotSettings
from connector.resources import IDEMPOTENCY_TABLE
from functions.inbound.errors import RateLimitError

KEY_PREFIX = "wa-rate"
KEY_ATTR = IDEMPOTENCY_TABLE.hash_key
EXPIRY_ATTR = IDEMPOTENCY_TABLE.ttl_attribute or "expiration"
WINDOWS = {"m": 60, "h": 3600}


def limits(settings: BotSettings) -> list[tuple[str, str, int]]:
    """``(scope, window, limit)`` of every limit ``settings`` set; scope ``chat`` or ``session``."""
    out = []
    for scope in ("chat", "session"):
        for window, name in (("m", "minute"), ("h", "hour")):
            limit = getattr(settings, f"rate_{scope}_per_{name}")
            if limit is not None:
                out.append((scope, window, limit))
    return out


class RateLimiter:
    def __init__(self, dynamodb: Any, table: str, *, clock: Callable[[], float] = time.time) -> None:
        self._dynamodb = dynamodb
        self.table = table
        self._clock = clock

    def take(self, session_id: str, chat: str, settings: BotSettings) -> str | None:
        """Count one message for ``chat`` (canonical) of ``session_id``; ``None`` if every limit allowed it, else
        which limit is full (and nothing was counted). Raises ``RateLimitError`` if the counters cannot be written."""
        configured = limits(settings)
        if not configured:
            return None
        now = self._clock()
        updates = []
        for scope, window, limit in configured:
            length = WINDOWS[window]
            number = int(now // length)
            who = chat if scope == "chat" else "*"
            updates.append(
                {
                    "Update": {
                        "TableName": self.table,
                        "Key": {KEY_ATTR: {"S": f"{KEY_PREFIX}#{session_id}#{who}#{window}#{number}"}},
                        "UpdateExpression": "ADD n :one SET #exp = :exp",
                        "ConditionExpression": "attribute_not_exists(n) OR n < :limit",
                        "ExpressionAttributeNames": {"#exp": EXPIRY_ATTR},
                        "ExpressionAttributeValues": {
                            ":one": {"N": "1"},
                            ":limit": {"N": str(limit)},
                            ":exp": {"N": str((number + 1) * length + 3600)},
                        },
                    }
                }
            )
        try:
            self._dynamodb.transact_write_items(TransactItems=updates)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                raise RateLimitError(f"failed to count a message of {session_id} in {self.table}") from e
            reasons = e.response.get("CancellationReasons") or []
            full = [configured[i] for i, r in enumerate(reasons) if r.get("Code") == "ConditionalCheckFailed"]
            if not full:
                raise RateLimitError(f"failed to count a message of {session_id} in {self.table}") from e
            scope, window, limit = full[0]
            return f"rate limit: {limit} per {'minute' if window == 'm' else 'hour'} and {scope}"
        except BotoCoreError as e:
            raise RateLimitError(f"failed to count a message of {session_id} in {self.table}") from e
        return None
