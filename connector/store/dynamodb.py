"""The DynamoDB stores (DESIGN section 4): auth (creds + Signal keys), the LID map and the reply log.

Each store owns ONE aiobotocore client, created in ``start()`` and closed in ``stop()``. boto stays in this module.

Auth table layout (``pk`` = session id, ``sk`` =):

- ``creds``: the whole creds object, ``version`` (N, optimistic locking) and ``w`` (the id of the write that set it).
- ``key#<type>#<id>``: one Signal key. ``id`` is verbatim (``@ : / _ + =`` …); ``type`` too, except that ``%`` and
  ``#`` are percent-escaped so that the type/id split stays unambiguous for any type string.
- ``part#<key sk>#<n>``: part ``n`` of a value too large for one item (the main item holds ``parts`` and ``h``).
  Parts live under their own prefix: ``<sk>#part#<n>`` could equal the sk of a key whose id ends in ``#part#0``.
- ``chunks``: which keys of the session currently have parts (``m`` = {key sk: part count}), so an overwrite or a
  delete can remove stale parts without reading every key it writes first. Almost never written (only when a value
  crosses the part threshold); read once per session per process.
- ``lease``: the session's owner (``owner`` S, ``token`` N, ``expires_at`` N in Unix seconds; issue 4). Never deleted:
  its token must keep growing across owners, even over a logout.

A value is the JSON text of what the bridge sent (BufferJSON form) in ``v`` (S); over ``compress_over`` bytes it is
zlib-compressed into ``z`` (B); if that is still over ``part_bytes``, the compressed bytes are split into parts.

Fencing: a fenced session's writes are TransactWriteItems whose first action is a ``ConditionCheck`` on its lease item
(``owner`` and ``token`` unchanged); BatchWriteItem takes no conditions, so only unfenced sessions use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
import time
import uuid
import zlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import aioboto3  # type: ignore[import-untyped]
from botocore.config import Config as BotoConfig  # type: ignore[import-untyped]
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from connector.aws import open_client
from connector.contracts import jid_user, lid_map_key_for_lid, lid_map_key_for_pn
from connector.errors import CredsConflict, LeaseLost, StoreError
from connector.resources import (
    AUTH_TABLE,
    DYNAMODB_BATCH_GET_MAX,
    DYNAMODB_BATCH_WRITE_MAX,
    DYNAMODB_ITEM_MAX_BYTES,
    DYNAMODB_TRANSACT_MAX,
    IDEMPOTENCY_TABLE,
    LID_MAP_TABLE,
)
from connector.store.abstract import AuthStore, Lease, LeaseStore, LidMapStore, ReplyLog
from connector.types import SessionId

Item = dict[str, Any]
"""One item in DynamoDB's low-level attribute-value form (``{"pk": {"S": "…"}}``)."""

CREDS_SK = "creds"
CHUNKS_SK = "chunks"
LEASE_SK = "lease"
COMPRESS_OVER = 32 * 1024
PART_BYTES = 350_000
"""Safely under the 400 KB item limit, which also counts attribute names and the (up to 1 KiB) sort key."""
_KEY_OVERHEAD = 4096
_MAX_PENDING_TOKENS = 16
_TRANSACT_MAX_BYTES = 3_500_000
"""Per fenced transaction, under the 4 MB aggregate limit (item sizes are estimated)."""
_RETRYABLE_CANCELLATIONS = frozenset(
    {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded"}
)
_LEASE_NAMES = {"#o": "owner", "#t": "token", "#e": "expires_at"}


def _key_sk(type: str, key_id: str) -> str:
    return f"key#{type.replace('%', '%25').replace('#', '%23')}#{key_id}"


def _part_sk(sk: str, n: int) -> str:
    return f"part#{sk}#{n}"


def _error_code(e: BaseException) -> str:
    if isinstance(e, ClientError):
        return str(e.response.get("Error", {}).get("Code", ""))
    return ""


def _cancellation_codes(e: BaseException) -> list[str] | None:
    """The per-action reason codes of a cancelled transaction (``"None"`` for an action that was fine); ``None`` if
    ``e`` is not a cancellation."""
    if _error_code(e) != "TransactionCanceledException":
        return None
    assert isinstance(e, ClientError)
    reasons = e.response.get("CancellationReasons")
    if reasons:
        return [str(r.get("Code", "None")) for r in reasons]
    # Older botocore/emulators only put them in the message: "... specific reasons [ConditionalCheckFailed, None]".
    message = str(e.response.get("Error", {}).get("Message", ""))
    if "[" in message and message.endswith("]"):
        return [c.strip() for c in message[message.rindex("[") + 1 : -1].split(",")]
    return []


def _key_id(key: Item) -> tuple[Any, ...]:
    """A hashable identity of an item key (``{"pk": {"S": "a"}, "sk": {"S": "b"}}`` → ``(("pk", "S", "a"), …)``), for
    deduplicating the keys of one batch."""
    return tuple(sorted((name, *next(iter(value.items()))) for name, value in key.items()))


def _value_size(value: dict[str, Any]) -> int:
    """DynamoDB's size of one attribute value, slightly over-estimated."""
    (kind, v), *_ = value.items()
    if kind in ("S", "N"):
        return len(str(v).encode())
    if kind == "B":
        return len(v)
    if kind == "M":
        return 3 + sum(len(k.encode()) + 1 + _value_size(x) for k, x in v.items())
    if kind == "L":
        return 3 + sum(1 + _value_size(x) for x in v)
    if kind in ("SS", "NS"):
        return sum(len(str(x).encode()) for x in v)
    if kind == "BS":
        return sum(len(x) for x in v)
    return 1


def _item_size(item: Item) -> int:
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


class _ConditionFailed(StoreError):
    """A transaction's own condition (not the lease's) failed; ``index`` is the action's position."""

    def __init__(self, message: str, index: int) -> None:
        super().__init__(message)
        self.index = index


@dataclass
class _Encoded:
    attrs: Item
    """The main item's value attributes: ``v``, ``z`` or ``parts`` + ``h``."""
    parts: list[bytes] = field(default_factory=list)


class _SessionLocks:
    """One ``asyncio.Lock`` per session, dropped when its last holder or waiter leaves (no growth with dead
    sessions)."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, session: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(session) or (asyncio.Lock(), 0)
        self._locks[session] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[session]
            if users <= 1:
                del self._locks[session]
            else:
                self._locks[session] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


class _DynamoComponent:
    """Client lifecycle plus the batch primitives every store needs, with AWS limits enforced here: DynamoDB Local
    rejects oversize batches like AWS does, but other emulators (moto) accept them and would hide the bug."""

    def __init__(
        self,
        table_name: str,
        endpoint_url: str | None,
        region: str,
        *,
        session: Any = None,
        max_attempts: int = 8,
        backoff_base_s: float = 0.05,
        backoff_max_s: float = 2.0,
    ) -> None:
        self.log = logging.getLogger(f"wa_relay.store.{type(self).__name__}")
        self.table = table_name
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

    async def _batch_get(self, keys: list[Item], what: str) -> list[Item]:
        """Every existing item of ``keys`` (duplicates removed: DynamoDB rejects a batch that repeats a key)."""
        unique = list({_key_id(k): k for k in keys}.values())
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

    async def _batch_write(self, requests: list[tuple[Item, dict[str, Any], str]]) -> None:
        """Put/delete ``(key, request, label)``s in batches of 25, retrying unprocessed items; returns only when
        all are written. The last request for a key wins (a batch naming one key twice is rejected)."""
        unique: dict[tuple[Any, ...], tuple[dict[str, Any], str]] = {}
        for key, request, label in requests:
            k = _key_id(key)
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
                    raise StoreError(f"failed to save {_describe(labels)}") from e
                pending = (resp.get("UnprocessedItems") or {}).get(self.table, [])
                if not pending:
                    break
                await asyncio.sleep(self._backoff(attempt))
            else:
                left = [_label_of(r, chunk) for r in pending]
                raise StoreError(f"failed to save {_describe(left)}: unprocessed after {self.max_attempts} attempts")


def _describe(labels: list[str]) -> str:
    return labels[0] if len(labels) == 1 else f"{labels[0]} (and {len(labels) - 1} more)"


def _label_of(request: dict[str, Any], chunk: list[tuple[dict[str, Any], str]]) -> str:
    return next((label for r, label in chunk if r == request), "an item")


@dataclass
class _CredsState:
    version: int | None = None
    """The version this store last read or wrote; ``None``: the creds item did not exist (or was never read)."""
    tokens: list[str] = field(default_factory=list)
    """Write ids whose outcome is known to be ours or unknown (a timeout may have applied the write)."""


class DynamoAuthStore(_DynamoComponent, AuthStore, LeaseStore):
    """Creds, Signal keys and leases of every session in the auth table (layout in the module docstring).

    Writes of one session are serialized by a per-session lock; sessions write in parallel. Every write of the
    session goes through ``_write`` (keys, parts, the chunk index, deletes) or ``put_creds`` (creds). Once the session
    is fenced (issue 4), ``_write`` uses TransactWriteItems (≤ 100 actions, ≤ 4 MB) with a ``ConditionCheck`` on
    ``(session, "lease")`` instead of BatchWriteItem, and ``put_creds`` is a transaction of its conditional update and
    the same ``ConditionCheck``.
    """

    def __init__(
        self,
        table_name: str = AUTH_TABLE.default_name,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        *,
        compress_over: int = COMPRESS_OVER,
        part_bytes: int = PART_BYTES,
        session: Any = None,
        max_attempts: int = 8,
        backoff_base_s: float = 0.05,
        backoff_max_s: float = 2.0,
    ) -> None:
        super().__init__(
            table_name,
            endpoint_url,
            region,
            session=session,
            max_attempts=max_attempts,
            backoff_base_s=backoff_base_s,
            backoff_max_s=backoff_max_s,
        )
        if not 0 < part_bytes <= DYNAMODB_ITEM_MAX_BYTES - _KEY_OVERHEAD:
            raise ValueError(f"part_bytes must be in 1..{DYNAMODB_ITEM_MAX_BYTES - _KEY_OVERHEAD}")
        self.compress_over = min(compress_over, part_bytes)
        self.part_bytes = part_bytes
        self._locks = _SessionLocks()
        self._creds: dict[str, _CredsState] = {}
        self._chunks: dict[str, dict[str, int]] = {}
        self._fences: dict[str, Lease] = {}

    # ---- leases ----

    async def acquire(self, session: SessionId, owner: str, ttl_s: float) -> Lease | None:
        for _ in range(2):
            # Ours (expired or not): extend it, same token. Else free or expired: take it with the next token. Two
            # conditional updates, each atomic; a race between them (we took it meanwhile) is caught by the 2nd round.
            expires = time.time() + ttl_s
            item = await self._update_lease(
                session, "SET #e = :e", "#o = :me", {":me": {"S": owner}, ":e": {"N": f"{expires:.6f}"}}
            )
            if item is None:
                item = await self._update_lease(
                    session,
                    "SET #o = :me, #e = :e, #t = if_not_exists(#t, :zero) + :one",
                    "attribute_not_exists(pk) OR #e < :now",
                    {
                        ":me": {"S": owner},
                        ":e": {"N": f"{expires:.6f}"},
                        ":now": {"N": f"{time.time():.6f}"},
                        ":zero": {"N": "0"},
                        ":one": {"N": "1"},
                    },
                )
            if item is not None:
                return self._lease(session, item)
        return None

    async def renew(self, lease: Lease, ttl_s: float) -> Lease:
        expires = time.time() + ttl_s
        item = await self._update_lease(
            lease.session,
            "SET #e = :e",
            "#o = :me AND #t = :t AND #e > :zero",  # a released lease (expires_at 0) is given up: not renewed
            {
                ":me": {"S": lease.owner},
                ":t": {"N": str(lease.token)},
                ":e": {"N": f"{expires:.6f}"},
                ":zero": {"N": "0"},
            },
        )
        if item is None:
            raise LeaseLost(f"lease of {lease.session} (token {lease.token}) is no longer held by {lease.owner}")
        return self._lease(lease.session, item)

    async def release(self, lease: Lease) -> None:
        await self._update_lease(
            lease.session,
            "SET #e = :zero",
            "#o = :me AND #t = :t",
            {":me": {"S": lease.owner}, ":t": {"N": str(lease.token)}, ":zero": {"N": "0"}},
        )

    async def get_lease(self, session: SessionId) -> Lease | None:
        client = self.client
        try:
            resp = await client.get_item(TableName=self.table, Key=self._key(session, LEASE_SK), ConsistentRead=True)
        except Exception as e:
            raise StoreError(f"failed to read the lease of {session}") from e
        item = resp.get("Item")
        return None if item is None else self._lease(session, item)

    async def _update_lease(self, session: str, update: str, condition: str, values: Item) -> Item | None:
        """The lease item after a conditional update; ``None`` if the condition failed."""
        names = {k: v for k, v in _LEASE_NAMES.items() if k in update or k in condition}
        client = self.client
        try:
            resp = await client.update_item(
                TableName=self.table,
                Key=self._key(session, LEASE_SK),
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
        except Exception as e:
            if _error_code(e) == "ConditionalCheckFailedException":
                return None
            raise StoreError(f"failed to save the lease of {session}") from e
        return resp["Attributes"]  # type: ignore[no-any-return]

    @staticmethod
    def _lease(session: str, item: Item) -> Lease:
        return Lease(
            session=SessionId(session),
            owner=item["owner"]["S"],
            token=int(item["token"]["N"]),
            expires_at=float(item["expires_at"]["N"]),
        )

    # ---- fencing ----

    def fence(self, session: SessionId, lease: Lease | None) -> None:
        if lease is None:
            self._fences.pop(session, None)
        else:
            self._fences[session] = lease

    def _lease_check(self, fence: Lease) -> dict[str, Any]:
        return {
            "ConditionCheck": {
                "TableName": self.table,
                "Key": self._key(fence.session, LEASE_SK),
                "ConditionExpression": "#o = :o AND #t = :t",
                "ExpressionAttributeNames": {"#o": "owner", "#t": "token"},
                "ExpressionAttributeValues": {":o": {"S": fence.owner}, ":t": {"N": str(fence.token)}},
            }
        }

    async def _transact(self, fence: Lease, actions: list[dict[str, Any]], labels: list[str]) -> None:
        """One TransactWriteItems of the lease check and ``actions``. A failed lease check → ``LeaseLost``, another
        failed condition → ``_ConditionFailed``; conflicts and throttling are retried with backoff."""
        items = [self._lease_check(fence), *actions]
        codes: list[str] = []
        for attempt in range(self.max_attempts):
            client = self.client
            try:
                await client.transact_write_items(TransactItems=items)
                return
            except Exception as e:
                found = _cancellation_codes(e)
                if found is None:
                    raise StoreError(f"failed to save {_describe(labels)}") from e
                codes = found
                if codes and codes[0] == "ConditionalCheckFailed":
                    raise LeaseLost(
                        f"failed to save {_describe(labels)}: the lease of {fence.session} (token {fence.token}) "
                        f"of {fence.owner} is lost"
                    ) from e
                failed = [i - 1 for i, c in enumerate(codes) if c == "ConditionalCheckFailed"]
                if failed:
                    raise _ConditionFailed(f"failed to save {_describe(labels)}: condition failed", failed[0]) from e
                if not codes or any(c not in _RETRYABLE_CANCELLATIONS for c in codes if c != "None"):
                    raise StoreError(f"failed to save {_describe(labels)}: transaction cancelled {codes}") from e
            await asyncio.sleep(self._backoff(attempt))
        raise StoreError(f"failed to save {_describe(labels)}: cancelled {codes} after {self.max_attempts} attempts")

    async def _write(self, fence: Lease | None, requests: list[tuple[Item, dict[str, Any], str]]) -> None:
        """Batch writes, or for a fenced session transactions of ≤ 99 writes (+ the lease check) and ≤ 3.5 MB."""
        if fence is None:
            await self._batch_write(requests)
            return
        unique: dict[tuple[Any, ...], tuple[dict[str, Any], str, int]] = {}
        for key, request, label in requests:
            k = _key_id(key)
            unique.pop(k, None)  # keep the order of the last write
            if "PutRequest" in request:
                item = request["PutRequest"]["Item"]
                action, size = {"Put": {"TableName": self.table, "Item": item}}, _item_size(item)
            else:
                action, size = {"Delete": {"TableName": self.table, "Key": key}}, _item_size(key)
            unique[k] = (action, label, size)
        chunk: list[tuple[dict[str, Any], str, int]] = []
        for entry in unique.values():
            if chunk and (
                len(chunk) >= DYNAMODB_TRANSACT_MAX - 1
                or sum(size for _, _, size in chunk) + entry[2] > _TRANSACT_MAX_BYTES
            ):
                await self._transact(fence, [a for a, _, _ in chunk], [label for _, label, _ in chunk])
                chunk = []
            chunk.append(entry)
        if chunk:
            await self._transact(fence, [a for a, _, _ in chunk], [label for _, label, _ in chunk])

    # ---- encoding ----

    def _encode(self, value: Any, label: str) -> _Encoded:
        try:
            text = json.dumps(value, separators=(",", ":"))
        except (TypeError, ValueError) as e:
            raise StoreError(f"failed to save {label}: not JSON") from e
        raw = text.encode()
        if len(raw) <= self.compress_over:
            return _Encoded({"v": {"S": text}})
        z = zlib.compress(raw, 6)
        if len(z) <= self.part_bytes:
            return _Encoded({"z": {"B": z}})
        parts = [z[i : i + self.part_bytes] for i in range(0, len(z), self.part_bytes)]
        return _Encoded({"parts": {"N": str(len(parts))}, "h": {"S": hashlib.sha256(z).hexdigest()}}, parts)

    @staticmethod
    def _decode(item: Item, label: str, parts: list[bytes] | None = None) -> Any:
        try:
            if "v" in item:
                return json.loads(item["v"]["S"])
            if "z" in item:
                return json.loads(zlib.decompress(item["z"]["B"]))
            if parts is not None:
                z = b"".join(parts)
                if hashlib.sha256(z).hexdigest() != item["h"]["S"]:
                    raise ValueError("parts do not match the digest (a write was interrupted)")
                return json.loads(zlib.decompress(z))
            raise ValueError("no value attribute")
        except (ValueError, KeyError, zlib.error) as e:
            raise StoreError(f"failed to read {label}: {e}") from e

    # ---- creds ----

    async def get_creds(self, session: SessionId) -> dict[str, Any] | None:
        # Under the lock: a read racing a put could otherwise record a version older than the put's.
        async with self._locks.hold(session):
            client = self.client
            try:
                resp = await client.get_item(
                    TableName=self.table, Key=self._key(session, CREDS_SK), ConsistentRead=True
                )
            except Exception as e:
                raise StoreError(f"failed to read creds of {session}") from e
            item = resp.get("Item")
            if item is None:
                self._creds[session] = _CredsState()
                return None
            creds = self._decode(item, f"creds of {session}")
            self._creds[session] = _CredsState(version=int(item["version"]["N"]) if "version" in item else 0)
            return creds  # type: ignore[no-any-return]

    async def put_creds(self, session: SessionId, creds: dict[str, Any]) -> None:
        """Conditional on the version last read or written here; ``CredsConflict`` if another writer changed it.
        Creds are never split into parts (a conditional write must be one item): over the limit → ``StoreError``."""
        label = f"creds of {session}"
        encoded = self._encode(creds, label)
        if encoded.parts:
            raise StoreError(f"failed to save {label}: {len(encoded.parts) * self.part_bytes} bytes compressed")
        async with self._locks.hold(session):
            state = self._creds.setdefault(session, _CredsState())
            token = uuid.uuid4().hex
            names = {"#ver": "version", "#w": "w", "#v": "v", "#z": "z"}
            values: Item = {":zero": {"N": "0"}, ":one": {"N": "1"}, ":w": {"S": token}, ":data": {}}
            if "v" in encoded.attrs:
                values[":data"] = encoded.attrs["v"]
                data_expr = "#v = :data REMOVE #z"
            else:
                values[":data"] = encoded.attrs["z"]
                data_expr = "#z = :data REMOVE #v"
            if state.version is None:
                condition = "attribute_not_exists(pk)"
            elif state.version == 0:  # an item written without a version (not by this store): adopt it
                condition = "attribute_exists(pk) AND attribute_not_exists(#ver)"
            else:
                condition = "#ver = :expected"
                values[":expected"] = {"N": str(state.version)}
            if state.tokens:
                # A write whose answer was lost (timeout) may have landed: it is ours, not a conflict.
                placeholders = [f":t{i}" for i in range(len(state.tokens))]
                values.update({p: {"S": t} for p, t in zip(placeholders, state.tokens, strict=True)})
                condition = f"({condition}) OR #w IN ({', '.join(placeholders)})"
            update = f"SET #ver = if_not_exists(#ver, :zero) + :one, #w = :w, {data_expr}"
            fence = self._fences.get(session)
            if fence is not None:
                action = {
                    "Update": {
                        "TableName": self.table,
                        "Key": self._key(session, CREDS_SK),
                        "UpdateExpression": update,
                        "ConditionExpression": condition,
                        "ExpressionAttributeNames": names,
                        "ExpressionAttributeValues": values,
                    }
                }
                try:
                    await self._transact(fence, [action], [label])
                except _ConditionFailed as e:
                    raise CredsConflict(
                        f"failed to save {label}: changed by another writer since version {state.version}"
                    ) from e
                except LeaseLost:
                    raise  # cancelled: nothing was written
                except StoreError:
                    state.tokens = [*state.tokens, token][-_MAX_PENDING_TOKENS:]
                    raise
                await self._after_fenced_creds_write(session, state, token)
                return
            client = self.client
            try:
                resp = await client.update_item(
                    TableName=self.table,
                    Key=self._key(session, CREDS_SK),
                    UpdateExpression=update,
                    ConditionExpression=condition,
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=values,
                    ReturnValues="UPDATED_NEW",
                )
            except Exception as e:
                if _error_code(e) == "ConditionalCheckFailedException":
                    raise CredsConflict(
                        f"failed to save {label}: changed by another writer since version {state.version}"
                    ) from e
                state.tokens = [*state.tokens, token][-_MAX_PENDING_TOKENS:]
                raise StoreError(f"failed to save {label}") from e
            self._creds[session] = _CredsState(version=int(resp["Attributes"]["version"]["N"]), tokens=[token])

    async def _after_fenced_creds_write(self, session: SessionId, state: _CredsState, token: str) -> None:
        """Record the version a fenced (transactional, so answerless) creds write produced."""
        if not state.tokens:
            self._creds[session] = _CredsState(version=(state.version or 0) + 1, tokens=[token])
            return
        # It may have matched through a lost earlier write of ours: the version is unknown, read it.
        client = self.client
        try:
            resp = await client.get_item(
                TableName=self.table,
                Key=self._key(session, CREDS_SK),
                ConsistentRead=True,
                ProjectionExpression="#ver, #w",
                ExpressionAttributeNames={"#ver": "version", "#w": "w"},
            )
        except Exception:
            # Still ours by its write id: the next write's condition accepts it.
            self._creds[session] = _CredsState(version=None, tokens=[token])
            return
        item = resp.get("Item", {})
        if item.get("w", {}).get("S") == token and "version" in item:
            self._creds[session] = _CredsState(version=int(item["version"]["N"]), tokens=[token])
        else:
            self._creds[session] = _CredsState(version=None, tokens=[token])

    # ---- keys ----

    async def get_keys(self, session: SessionId, type: str, ids: list[str]) -> dict[str, Any]:
        by_sk = {_key_sk(type, key_id): key_id for key_id in ids}
        what = f"{len(by_sk)} {type} keys of {session}"
        items = await self._batch_get([self._key(session, sk) for sk in by_sk], what)
        out: dict[str, Any] = {}
        chunked: list[str] = []
        for item in items:
            sk = item["sk"]["S"]
            if "parts" in item:
                chunked.append(sk)
            else:
                out[by_sk[sk]] = self._decode(item, f"{type} {by_sk[sk]}")
        if chunked:
            # Parts are overwritten in place: read them while no write of this session is under way.
            async with self._locks.hold(session):
                for sk, value in (await self._read_chunked(session, chunked, type, by_sk)).items():
                    out[by_sk[sk]] = value
        return out

    async def _read_chunked(
        self, session: SessionId, sks: list[str], type: str, by_sk: dict[str, str]
    ) -> dict[str, Any]:
        mains = await self._batch_get([self._key(session, sk) for sk in sks], f"{type} keys of {session}")
        part_keys = [
            self._key(session, _part_sk(main["sk"]["S"], n))
            for main in mains
            if "parts" in main
            for n in range(int(main["parts"]["N"]))
        ]
        parts = {p["sk"]["S"]: p["z"]["B"] for p in await self._batch_get(part_keys, f"parts of {type} keys")}
        out: dict[str, Any] = {}
        for main in mains:
            sk = main["sk"]["S"]
            label = f"{type} {by_sk[sk]}"
            if "parts" not in main:
                out[sk] = self._decode(main, label)
                continue
            names = [_part_sk(sk, n) for n in range(int(main["parts"]["N"]))]
            if any(n not in parts for n in names):
                raise StoreError(f"failed to read {label}: parts are missing")
            out[sk] = self._decode(main, label, [parts[n] for n in names])
        return out

    async def set_keys(self, session: SessionId, data: dict[str, dict[str, Any]]) -> None:
        ops: dict[str, tuple[str, _Encoded | None]] = {}
        for type, values in data.items():
            for key_id, value in values.items():
                label = f"{type} {key_id} of {session}"
                ops[_key_sk(type, key_id)] = (label, None if value is None else self._encode(value, label))
        if not ops:
            return
        async with self._locks.hold(session):
            await self._write_keys(session, ops, self._fences.get(session))

    async def _write_keys(
        self, session: SessionId, ops: dict[str, tuple[str, _Encoded | None]], fence: Lease | None
    ) -> None:
        """The one write path of Signal keys (every step fenced when ``fence`` is set). Crash-safe order:
        the chunk index first over-approximates, then parts, then main items, then stale parts, then the exact
        index; an interruption leaves at worst orphan parts the index still lists, never a main item without its
        parts."""
        old = await self._chunk_index(session)
        new = dict(old)
        for sk, (_, enc) in ops.items():
            if enc is not None and enc.parts:
                new[sk] = len(enc.parts)
            else:
                new.pop(sk, None)
        upper = {**old, **{sk: n for sk, n in new.items() if n > old.get(sk, 0)}}
        if upper != old:
            await self._save_chunk_index(session, upper, fence)

        part_writes = [
            self._put(session, _part_sk(sk, n), {"z": {"B": part}}, f"{label} part {n}")
            for sk, (label, enc) in ops.items()
            if enc is not None
            for n, part in enumerate(enc.parts)
        ]
        await self._write(fence, part_writes)
        await self._write(
            fence,
            [
                self._put(session, sk, enc.attrs, label) if enc is not None else self._delete(session, sk, label)
                for sk, (label, enc) in ops.items()
            ],
        )
        stale = [
            self._delete(session, _part_sk(sk, n), f"{ops[sk][0]} part {n}")
            for sk in ops
            for n in range(new.get(sk, 0), upper.get(sk, 0))
        ]
        await self._write(fence, stale)
        if new != upper:
            await self._save_chunk_index(session, new, fence)

    async def _chunk_index(self, session: SessionId) -> dict[str, int]:
        cached = self._chunks.get(session)
        if cached is not None:
            return cached
        client = self.client
        try:
            resp = await client.get_item(TableName=self.table, Key=self._key(session, CHUNKS_SK), ConsistentRead=True)
        except Exception as e:
            raise StoreError(f"failed to read the chunk index of {session}") from e
        m = resp.get("Item", {}).get("m", {}).get("M", {})
        index = {sk: int(v["N"]) for sk, v in m.items()}
        self._chunks[session] = index
        return index

    async def _save_chunk_index(self, session: SessionId, index: dict[str, int], fence: Lease | None) -> None:
        if fence is not None:
            m = {sk: {"N": str(n)} for sk, n in index.items()}
            request = (
                self._put(session, CHUNKS_SK, {"m": {"M": m}}, f"the chunk index of {session}")
                if index
                else self._delete(session, CHUNKS_SK, f"the chunk index of {session}")
            )
            try:
                await self._write(fence, [request])
            except LeaseLost:
                raise  # cancelled: the cached index is still right
            except StoreError:
                self._chunks.pop(session, None)
                raise
            self._chunks[session] = dict(index)
            return
        client = self.client
        try:
            if index:
                m = {sk: {"N": str(n)} for sk, n in index.items()}
                await client.put_item(TableName=self.table, Item={**self._key(session, CHUNKS_SK), "m": {"M": m}})
            else:
                await client.delete_item(TableName=self.table, Key=self._key(session, CHUNKS_SK))
        except Exception as e:
            self._chunks.pop(session, None)  # unknown state: re-read next time
            raise StoreError(f"failed to save the chunk index of {session}") from e
        self._chunks[session] = dict(index)

    # ---- sessions ----

    async def delete_session(self, session: SessionId) -> None:
        """Every item of the session, the lease last. Fenced, the other deletes are fenced and the lease item is
        deleted only if it still carries our owner and token (a connector that lost the session cannot delete the
        new owner's lease). Issue 4: a logout leaves no item of the session behind; re-linking starts at token 1
        again, which is safe because fencing checks the owner id (unique per process) together with the token."""
        async with self._locks.hold(session):
            fence = self._fences.get(session)
            sks: list[str] = []
            request: dict[str, Any] = {
                "TableName": self.table,
                "KeyConditionExpression": "pk = :s",
                "ExpressionAttributeValues": {":s": {"S": session}},
                "ProjectionExpression": "sk",
                "ConsistentRead": True,
            }
            client = self.client
            try:
                while True:
                    resp = await client.query(**request)
                    sks.extend(item["sk"]["S"] for item in resp.get("Items", []))
                    if "LastEvaluatedKey" not in resp:
                        break
                    request["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
            except Exception as e:
                raise StoreError(f"failed to list the items of session {session}") from e
            deletes = [self._delete(session, sk, f"{sk} of {session}") for sk in sks if sk != LEASE_SK]
            if fence is not None and not deletes:
                deletes = [self._delete(session, CREDS_SK, f"creds of {session}")]  # still fails if the lease is lost
            try:
                await self._write(fence, deletes)
            finally:
                self._creds.pop(session, None)
                self._chunks.pop(session, None)
            if LEASE_SK in sks or fence is not None:
                await self._delete_lease(session, fence)

    async def _delete_lease(self, session: SessionId, fence: Lease | None) -> None:
        request: dict[str, Any] = {"TableName": self.table, "Key": self._key(session, LEASE_SK)}
        if fence is not None:
            request |= {
                "ConditionExpression": "#o = :o AND #t = :t",
                "ExpressionAttributeNames": {"#o": "owner", "#t": "token"},
                "ExpressionAttributeValues": {":o": {"S": fence.owner}, ":t": {"N": str(fence.token)}},
            }
        try:
            await self.client.delete_item(**request)
        except Exception as e:
            if _error_code(e) == "ConditionalCheckFailedException":
                return  # another connector owns it now: its lease is not ours to delete
            raise StoreError(f"failed to delete the lease of {session}") from e

    async def list_sessions(self) -> list[SessionId]:
        # A full-table Scan: it runs once, at boot. If the table grows large, a sparse GSI on creds items (or a
        # registry item) would turn this into a Query.
        sessions: list[SessionId] = []
        request: dict[str, Any] = {
            "TableName": self.table,
            "FilterExpression": "sk = :creds",
            "ExpressionAttributeValues": {":creds": {"S": CREDS_SK}},
            "ProjectionExpression": "pk",
            "ConsistentRead": True,
        }
        client = self.client
        try:
            while True:
                resp = await client.scan(**request)
                sessions.extend(SessionId(item["pk"]["S"]) for item in resp.get("Items", []))
                if "LastEvaluatedKey" not in resp:
                    break
                request["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
        except Exception as e:
            raise StoreError(f"failed to list the sessions in {self.table}") from e
        return sorted(sessions)

    # ---- items ----

    @staticmethod
    def _key(session: str, sk: str) -> Item:
        return {"pk": {"S": session}, "sk": {"S": sk}}

    def _put(self, session: str, sk: str, attrs: Item, label: str) -> tuple[Item, dict[str, Any], str]:
        key = self._key(session, sk)
        return key, {"PutRequest": {"Item": {**key, **attrs}}}, label

    def _delete(self, session: str, sk: str, label: str) -> tuple[Item, dict[str, Any], str]:
        key = self._key(session, sk)
        return key, {"DeleteRequest": {"Key": key}}, label


class DynamoLidMapStore(_DynamoComponent, LidMapStore):
    """Two items per pair (``lid#<user>`` → ``pn``, ``pn#<user>`` → ``lid``; keys from ``connector.contracts``, which
    the inbound function reads too). Pairs already written by this process are remembered (LRU), so the per-message
    feed costs no writes in steady state."""

    def __init__(
        self,
        table_name: str = LID_MAP_TABLE.default_name,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        *,
        remember: int = 10_000,
        session: Any = None,
        max_attempts: int = 8,
        backoff_base_s: float = 0.05,
        backoff_max_s: float = 2.0,
    ) -> None:
        super().__init__(
            table_name,
            endpoint_url,
            region,
            session=session,
            max_attempts=max_attempts,
            backoff_base_s=backoff_base_s,
            backoff_max_s=backoff_max_s,
        )
        self.remember = remember
        self._written: OrderedDict[tuple[str, str], None] = OrderedDict()

    async def put_pairs(self, pairs: list[tuple[str, str]]) -> None:
        fresh = list(dict.fromkeys((f"{jid_user(lid)}@lid", f"{jid_user(pn)}@s.whatsapp.net") for lid, pn in pairs))
        fresh = [p for p in fresh if p not in self._written]
        if not fresh:
            return
        writes: list[tuple[Item, dict[str, Any], str]] = []
        for lid, pn in fresh:
            for pk, attr, value in ((lid_map_key_for_lid(lid), "pn", pn), (lid_map_key_for_pn(pn), "lid", lid)):
                key = {"pk": {"S": pk}}
                writes.append((key, {"PutRequest": {"Item": {**key, attr: {"S": value}}}}, f"lid map {lid} {pn}"))
        await self._batch_write(writes)
        for pair in fresh:
            self._written[pair] = None
            self._written.move_to_end(pair)
        while len(self._written) > self.remember:
            self._written.popitem(last=False)

    async def pn_for_lids(self, lids: list[str]) -> dict[str, str]:
        return await self._lookup(lids, lid_map_key_for_lid, "pn")

    async def lid_for_pns(self, pns: list[str]) -> dict[str, str]:
        return await self._lookup(pns, lid_map_key_for_pn, "lid")

    async def _lookup(self, jids: Iterable[str], key_for: Any, attr: str) -> dict[str, str]:
        by_pk: dict[str, list[str]] = {}
        for jid in jids:
            by_pk.setdefault(key_for(jid), []).append(jid)
        items = await self._batch_get([{"pk": {"S": pk}} for pk in by_pk], f"{len(by_pk)} LID map keys")
        out: dict[str, str] = {}
        for item in items:
            value = item.get(attr, {}).get("S")
            if value:
                for jid in by_pk[item["pk"]["S"]]:
                    out[jid] = value
        return out


class DynamoReplyLog(_DynamoComponent, ReplyLog):
    """Reply-send records in the idempotency table: ``id`` = ``reply#<reply_id>``, ``message_id``, and the TTL
    attribute. DynamoDB deletes expired items lazily (within days), so an expired record reads as absent."""

    def __init__(
        self,
        table_name: str = IDEMPOTENCY_TABLE.default_name,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        *,
        ttl_s: float = 86400.0,
        session: Any = None,
    ) -> None:
        super().__init__(table_name, endpoint_url, region, session=session)
        self.ttl_s = ttl_s
        self.ttl_attribute = IDEMPOTENCY_TABLE.ttl_attribute or "expiration"

    @staticmethod
    def _key(reply_id: str) -> Item:
        return {IDEMPOTENCY_TABLE.hash_key: {"S": f"reply#{reply_id}"}}

    async def sent_message_id(self, reply_id: str) -> str | None:
        client = self.client
        try:
            resp = await client.get_item(TableName=self.table, Key=self._key(reply_id), ConsistentRead=True)
        except Exception as e:
            raise StoreError(f"failed to read the send record of reply {reply_id}") from e
        item = resp.get("Item")
        if item is None or float(item.get(self.ttl_attribute, {}).get("N", "0")) <= time.time():
            return None
        message_id = item.get("message_id", {}).get("S")
        return str(message_id) if message_id else None

    async def record_sent(self, reply_id: str, message_id: str) -> None:
        item = {
            **self._key(reply_id),
            "message_id": {"S": message_id},
            self.ttl_attribute: {"N": str(int(time.time() + self.ttl_s))},
        }
        client = self.client
        try:
            await client.put_item(TableName=self.table, Item=item)
        except Exception as e:
            raise StoreError(f"failed to save the send record of reply {reply_id}") from e
