"""What every DynamoDB store shares: its client's lifecycle and the read and write primitives (consistent gets,
paginated queries and scans, batches within AWS's limits)."""

from __future__ import annotations

import asyncio
import logging
import random
from contextlib import AsyncExitStack
from typing import Any, ClassVar

import aioboto3  # type: ignore[import-untyped]
from botocore.config import Config as BotoConfig  # type: ignore[import-untyped]

from connector.aws import open_client
from connector.errors import StoreError
from connector.resources import DYNAMODB_BATCH_GET_MAX, DYNAMODB_BATCH_WRITE_MAX
from connector.store.dynamodb.codec import Item, describe, key_identity

WriteRequest = tuple[Item, dict[str, Any], str]
"""``(item key, PutRequest or DeleteRequest, label)``; the label names the item in error messages."""


class DynamoComponent:
    """One aiobotocore client, created in ``start()`` and closed in ``stop()``, plus the primitives every store
    needs. AWS limits are enforced here: DynamoDB Local rejects oversize batches like AWS does, but other emulators
    (moto) accept them and would hide the bug."""

    default_table: ClassVar[str]
    """The table's name in ``connector.resources``; a deployment passes its configured name."""

    def __init__(
        self,
        table_name: str | None = None,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        *,
        session: Any = None,
        max_attempts: int = 8,
        backoff_base_s: float = 0.05,
        backoff_max_s: float = 2.0,
    ) -> None:
        self.log = logging.getLogger(f"wa_relay.store.{type(self).__name__}")
        self.table = self.default_table if table_name is None else table_name
        self.endpoint_url = endpoint_url
        self.region = region
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self._session: Any = session
        self._stack: AsyncExitStack | None = None
        self._client: Any = None

    async def start(self) -> None:
        if self._client is not None:
            return
        self._client, self._stack = await open_client(
            self._session or aioboto3.Session(),
            "dynamodb",
            region=self.region,
            endpoint_url=self.endpoint_url,
            config=BotoConfig(
                connect_timeout=3,
                read_timeout=20,
                # botocore retries throttling and 5xx itself; unprocessed batch items are retried below.
                retries={"mode": "standard", "total_max_attempts": 4},
            ),
        )

    async def stop(self) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    @property
    def client(self) -> Any:
        if self._client is None:
            raise StoreError(f"{type(self).__name__} for {self.table} is not started")
        return self._client

    def _backoff(self, attempt: int) -> float:
        # Full jitter: unprocessed items mean the partition is throttled; synchronized retries would keep it so.
        return random.uniform(0, min(self.backoff_max_s, self.backoff_base_s * 2**attempt))

    async def _get_item(self, key: Item, what: str) -> Item | None:
        """The item at ``key`` (strongly consistent, like every read here), ``None`` if there is none."""
        client = self.client
        try:
            resp = await client.get_item(TableName=self.table, Key=key, ConsistentRead=True)
        except Exception as e:
            raise StoreError(f"failed to read {what}") from e
        return resp.get("Item")  # type: ignore[no-any-return]

    async def _batch_get(self, keys: list[Item], what: str) -> list[Item]:
        """Every existing item of ``keys`` (duplicates removed: DynamoDB rejects a batch that repeats a key)."""
        unique = list({key_identity(k): k for k in keys}.values())
        found: list[Item] = []
        for start in range(0, len(unique), DYNAMODB_BATCH_GET_MAX):
            # A stale read of a Signal session breaks the ratchet (Bad MAC): every read is strongly consistent.
            request: dict[str, Any] = {
                self.table: {"Keys": unique[start : start + DYNAMODB_BATCH_GET_MAX], "ConsistentRead": True}
            }
            for attempt in range(self.max_attempts):
                client = self.client
                try:
                    resp = await client.batch_get_item(RequestItems=request)
                except Exception as e:
                    raise StoreError(f"failed to read {what} from {self.table}") from e
                found.extend(resp.get("Responses", {}).get(self.table, []))
                request = resp.get("UnprocessedKeys") or {}
                if not request:
                    break
                await asyncio.sleep(self._backoff(attempt))
            else:
                left = len(request.get(self.table, {}).get("Keys", []))
                raise StoreError(f"failed to read {what}: {left} keys unprocessed after {self.max_attempts} attempts")
        return found

    async def _batch_write(self, requests: list[WriteRequest]) -> None:
        """Put/delete ``(key, request, label)``s in batches of 25, retrying unprocessed items; returns only when
        all are written. The last request for a key wins (a batch naming one key twice is rejected)."""
        unique: dict[tuple[Any, ...], tuple[dict[str, Any], str]] = {}
        for key, request, label in requests:
            k = key_identity(key)
            unique.pop(k, None)  # keep the order of the last write
            unique[k] = (request, label)
        ordered = list(unique.values())
        for start in range(0, len(ordered), DYNAMODB_BATCH_WRITE_MAX):
            chunk = ordered[start : start + DYNAMODB_BATCH_WRITE_MAX]
            labels = [label for _, label in chunk]
            pending = [request for request, _ in chunk]
            for attempt in range(self.max_attempts):
                client = self.client
                try:
                    resp = await client.batch_write_item(RequestItems={self.table: pending})
                except Exception as e:
                    raise StoreError(f"failed to save {describe(labels)}") from e
                pending = (resp.get("UnprocessedItems") or {}).get(self.table, [])
                if not pending:
                    break
                await asyncio.sleep(self._backoff(attempt))
            else:
                left = [_label_of(r, chunk) for r in pending]
                raise StoreError(f"failed to save {describe(left)}: unprocessed after {self.max_attempts} attempts")

    async def _read_all(self, operation: str, request: dict[str, Any], what: str) -> list[Item]:
        """Every item of a ``query`` or ``scan`` (``request`` without the table), page after page, strongly
        consistent."""
        request = {"TableName": self.table, **request, "ConsistentRead": True}
        items: list[Item] = []
        client = self.client
        try:
            while True:
                resp = await getattr(client, operation)(**request)
                items.extend(resp.get("Items", []))
                if "LastEvaluatedKey" not in resp:
                    break
                request["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
        except Exception as e:
            raise StoreError(f"failed to list {what}") from e
        return items


def _label_of(request: dict[str, Any], chunk: list[tuple[dict[str, Any], str]]) -> str:
    return next((label for r, label in chunk if r == request), "an item")
