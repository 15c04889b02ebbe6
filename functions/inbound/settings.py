"""Read side of the settings table: each session's ``BotSettings``, as the connector's API stored them.

One strongly consistent ``GetItem`` per session, cached for ``cache_ttl_s`` (30 s) in the execution environment, so
a change made through the API applies within a minute (the cache's TTL plus an invocation in flight) while a busy
session costs one read per half minute, not one per message. A session without settings is cached too (as the
defaults): most sessions never set any. The function's IAM allows ``GetItem`` on this table only: it never reads
the auth table, where the key material is.

A read that fails raises ``SettingsError``: the record is retried like any other failure rather than answered under
settings that may not be the session's (an allowlist not applied would answer someone the owner chose to ignore).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]
from pydantic import ValidationError

from connector.contracts import BotSettings, settings_key
from connector.resources import SETTINGS_TABLE
from functions.inbound.errors import SettingsError

DEFAULTS = BotSettings()


class SessionSettings:
    def __init__(
        self,
        dynamodb: Any,
        table: str,
        *,
        cache_ttl_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._dynamodb = dynamodb
        self.table = table
        self.cache_ttl_s = cache_ttl_s
        self._clock = clock
        self._cache: dict[str, tuple[float, BotSettings]] = {}
        self._lock = threading.Lock()
        """Records of different chats are handled on several threads (``batch.py``)."""

    def get(self, session_id: str) -> BotSettings:
        """The session's settings (the defaults if it has none)."""
        now = self._clock()
        with self._lock:
            hit = self._cache.get(session_id)
        if hit and hit[0] > now:
            return hit[1]
        settings = self._read(session_id)
        with self._lock:
            self._cache[session_id] = (now + self.cache_ttl_s, settings)
        return settings

    def _read(self, session_id: str) -> BotSettings:
        key = {SETTINGS_TABLE.hash_key: {"S": settings_key(session_id)}}
        try:
            item = self._dynamodb.get_item(TableName=self.table, Key=key, ConsistentRead=True).get("Item")
        except (BotoCoreError, ClientError) as e:
            raise SettingsError(f"failed to read the settings of {session_id} from {self.table}") from e
        if item is None:
            return DEFAULTS
        try:
            return BotSettings.model_validate_json(item["settings"]["S"])
        except (KeyError, ValidationError) as e:
            raise SettingsError(f"the settings of {session_id} in {self.table} are invalid: {e}") from e
