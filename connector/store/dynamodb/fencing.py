"""Writes to a session-partitioned table that a session's lease can fence (DESIGN section 7).

A fenced session's writes are TransactWriteItems whose first action is a ``ConditionCheck`` on its lease item
(``owner`` and ``token`` unchanged), so a connector that lost the session changes nothing; BatchWriteItem takes no
conditions, so only unfenced sessions use it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from connector.errors import LeaseLost, StoreError
from connector.resources import DYNAMODB_TRANSACT_MAX
from connector.store.abstract import Lease
from connector.store.dynamodb.base import DynamoComponent, WriteRequest
from connector.store.dynamodb.codec import (
    LEASE_SK,
    RETRYABLE_CANCELLATIONS,
    Item,
    cancellation_codes,
    describe,
    held_by,
    item_size,
    key_identity,
    session_key,
)
from connector.types import SessionId

TRANSACT_MAX_BYTES = 3_500_000
"""Per fenced transaction, under the 4 MB aggregate limit (item sizes are estimated)."""


class ConditionFailed(StoreError):
    """A transaction's own condition (not the lease's) failed; ``index`` is the action's position. It never leaves
    this package: the only conditional action is the creds update, whose caller turns it into ``CredsConflict``."""

    def __init__(self, message: str, index: int) -> None:
        super().__init__(message)
        self.index = index


class FencedTable(DynamoComponent):
    """``pk`` = session id. After ``fence(session, lease)``, ``_write`` sends that session's writes as transactions
    (≤ 100 actions, ≤ 4 MB) that begin with a ``ConditionCheck`` on ``(session, "lease")``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fences: dict[str, Lease] = {}

    def fence(self, session: SessionId, lease: Lease | None) -> None:
        if lease is None:
            self._fences.pop(session, None)
        else:
            self._fences[session] = lease

    def _lease_check(self, fence: Lease) -> dict[str, Any]:
        return {
            "ConditionCheck": {"TableName": self.table, "Key": session_key(fence.session, LEASE_SK), **held_by(fence)}
        }

    async def _transact(self, fence: Lease, actions: list[dict[str, Any]], labels: list[str]) -> None:
        """One TransactWriteItems of the lease check and ``actions``. A failed lease check → ``LeaseLost``, another
        failed condition → ``ConditionFailed``; conflicts and throttling are retried with backoff."""
        items = [self._lease_check(fence), *actions]
        codes: list[str] = []
        for attempt in range(self.max_attempts):
            client = self.client
            try:
                await client.transact_write_items(TransactItems=items)
                return
            except Exception as e:
                found = cancellation_codes(e)
                if found is None:
                    raise StoreError(f"failed to save {describe(labels)}") from e
                codes = found
                if codes and codes[0] == "ConditionalCheckFailed":
                    raise LeaseLost(
                        f"failed to save {describe(labels)}: the lease of {fence.session} (token {fence.token}) "
                        f"of {fence.owner} is lost"
                    ) from e
                failed = [i - 1 for i, c in enumerate(codes) if c == "ConditionalCheckFailed"]
                if failed:
                    raise ConditionFailed(f"failed to save {describe(labels)}: condition failed", failed[0]) from e
                if not codes or any(c not in RETRYABLE_CANCELLATIONS for c in codes if c != "None"):
                    raise StoreError(f"failed to save {describe(labels)}: transaction cancelled {codes}") from e
            await asyncio.sleep(self._backoff(attempt))
        raise StoreError(f"failed to save {describe(labels)}: cancelled {codes} after {self.max_attempts} attempts")

    async def _write(self, fence: Lease | None, requests: list[WriteRequest]) -> None:
        """Batch writes, or for a fenced session transactions of ≤ 99 writes (+ the lease check) and ≤ 3.5 MB."""
        if fence is None:
            await self._batch_write(requests)
            return
        unique: dict[tuple[Any, ...], tuple[dict[str, Any], str, int]] = {}
        for key, request, label in requests:
            k = key_identity(key)
            unique.pop(k, None)  # keep the order of the last write
            if "PutRequest" in request:
                item = request["PutRequest"]["Item"]
                action, size = {"Put": {"TableName": self.table, "Item": item}}, item_size(item)
            else:
                action, size = {"Delete": {"TableName": self.table, "Key": key}}, item_size(key)
            unique[k] = (action, label, size)
        chunk: list[tuple[dict[str, Any], str, int]] = []
        for entry in unique.values():
            if chunk and (
                len(chunk) >= DYNAMODB_TRANSACT_MAX - 1
                or sum(size for _, _, size in chunk) + entry[2] > TRANSACT_MAX_BYTES
            ):
                await self._transact(fence, [a for a, _, _ in chunk], [label for _, label, _ in chunk])
                chunk = []
            chunk.append(entry)
        if chunk:
            await self._transact(fence, [a for a, _, _ in chunk], [label for _, label, _ in chunk])

    @staticmethod
    def _put(session: str, sk: str, attrs: Item, label: str) -> WriteRequest:
        key = session_key(session, sk)
        return key, {"PutRequest": {"Item": {**key, **attrs}}}, label

    @staticmethod
    def _delete(session: str, sk: str, label: str) -> WriteRequest:
        key = session_key(session, sk)
        return key, {"DeleteRequest": {"Key": key}}, label
