"""Read side of the ``lid_map`` table: ``pk`` = ``lid#<lidUser>`` → ``pn`` (``user@s.whatsapp.net``), and
``pk`` = ``pn#<pnUser>`` → ``lid`` (``user@lid``). Reads are strongly consistent (the connector may have written the
pair a moment before publishing the message). Found pairs are cached for ``cache_ttl_s`` in the execution
environment (a mapping does not change once WhatsApp has issued it); misses are not cached.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from connector.resources import DYNAMODB_BATCH_GET_MAX
from functions.inbound.errors import LidMapError

UNPROCESSED_ATTEMPTS = 5


class LidMap:
    def __init__(
        self,
        dynamodb: Any,
        table: str,
        *,
        cache_ttl_s: float = 300.0,
        cache_max_items: int = 4096,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._dynamodb = dynamodb
        self.table = table
        self.cache_ttl_s = cache_ttl_s
        self.cache_max_items = cache_max_items
        self._clock = clock
        self._sleep = sleep
        self._cache: dict[str, tuple[float, str]] = {}

    def lookup(self, keys: Iterable[str]) -> dict[str, str]:
        """``{pk: jid}`` for the keys that have a mapping (``lid#…`` → the pn jid, ``pn#…`` → the lid jid)."""
        now = self._clock()
        found: dict[str, str] = {}
        missing: list[str] = []
        for key in dict.fromkeys(keys):
            hit = self._cache.get(key)
            if hit and hit[0] > now:
                found[key] = hit[1]
            else:
                missing.append(key)
        for start in range(0, len(missing), DYNAMODB_BATCH_GET_MAX):
            for key, value in self._batch_get(missing[start : start + DYNAMODB_BATCH_GET_MAX]).items():
                found[key] = value
                self._remember(key, value, now)
        return found

    def _remember(self, key: str, value: str, now: float) -> None:
        if len(self._cache) >= self.cache_max_items:
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            if len(self._cache) >= self.cache_max_items:
                self._cache.clear()
        self._cache[key] = (now + self.cache_ttl_s, value)

    def _batch_get(self, keys: list[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        request: dict[str, Any] = {
            self.table: {
                "Keys": [{"pk": {"S": k}} for k in keys],
                "ConsistentRead": True,
                "ProjectionExpression": "pk, pn, lid",
            }
        }
        for attempt in range(UNPROCESSED_ATTEMPTS):
            try:
                response = self._dynamodb.batch_get_item(RequestItems=request)
            except (BotoCoreError, ClientError) as e:
                raise LidMapError(f"failed to read {len(keys)} keys from {self.table}") from e
            for item in response.get("Responses", {}).get(self.table, []):
                key = item["pk"]["S"]
                attr = "pn" if key.startswith("lid#") else "lid"
                value = item.get(attr, {}).get("S")
                if value:
                    out[key] = value
            request = response.get("UnprocessedKeys") or {}
            if not request:
                return out
            self._sleep(min(0.05 * 2**attempt, 1.0))
        raise LidMapError(f"{self.table} left keys unprocessed after {UNPROCESSED_ATTEMPTS} attempts")
