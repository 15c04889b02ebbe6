"""The auth store on DynamoDB (DESIGN section 4): creds and Signal keys of every session, in the auth table (layout in
``connector.store.dynamodb.codec``). The lease items in the same table belong to ``DynamoLeaseStore``; this store only
checks them (fencing) and deletes one with the rest of its session."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from connector.errors import CredsConflict, LeaseLost, StoreError
from connector.locks import KeyedLocks
from connector.resources import AUTH_TABLE
from connector.store.abstract import AuthStore, Lease
from connector.store.dynamodb.codec import (
    CHUNKS_SK,
    COMPRESS_OVER,
    CREDS_SK,
    LEASE_SK,
    MAX_PART_BYTES,
    PART_BYTES,
    Encoded,
    Item,
    decode,
    encode,
    error_code,
    held_by,
    key_sk,
    part_sk,
    session_key,
)
from connector.store.dynamodb.fencing import ConditionFailed, FencedTable
from connector.types import SessionId

TTL_ATTRIBUTE = AUTH_TABLE.ttl_attribute or "expiration"

_MAX_PENDING_TOKENS = 16
"""Ids of unanswered creds writes that the next write's condition still accepts as ours (bounds its size)."""


@dataclass
class _CredsState:
    version: int | None = None
    """The version this store last read or wrote; ``None``: the creds item did not exist (or was never read)."""
    tokens: list[str] = field(default_factory=list)
    """Write ids whose outcome is known to be ours or unknown (a timeout may have applied the write)."""


class DynamoAuthStore(FencedTable, AuthStore):
    """Creds and Signal keys of every session.

    Writes of one session are serialized by a per-session lock; sessions write in parallel. Every write of the
    session goes through ``_write`` (keys, parts, the chunk index, deletes) or ``put_creds`` (creds). Once the session
    is fenced, so that a connector that lost the session cannot overwrite the new owner's keys, ``_write`` uses
    transactions with a ``ConditionCheck`` on the lease item instead of BatchWriteItem, and ``put_creds`` is a
    transaction of its conditional update and the same ``ConditionCheck``.
    """

    default_table = AUTH_TABLE.default_name

    def __init__(
        self,
        table_name: str | None = None,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        *,
        compress_over: int = COMPRESS_OVER,
        part_bytes: int = PART_BYTES,
        session: Any = None,
        max_attempts: int = 8,
        backoff_base_s: float = 0.05,
        backoff_max_s: float = 2.0,
        expiring_types: dict[str, float] | None = None,
    ) -> None:
        """``expiring_types``: key types whose items DynamoDB deletes by itself that many seconds after their write
        (the table's TTL attribute); others live until deleted."""
        super().__init__(
            table_name,
            endpoint_url,
            region,
            session=session,
            max_attempts=max_attempts,
            backoff_base_s=backoff_base_s,
            backoff_max_s=backoff_max_s,
        )
        if not 0 < part_bytes <= MAX_PART_BYTES:
            raise ValueError(f"part_bytes must be in 1..{MAX_PART_BYTES}")
        self.compress_over = min(compress_over, part_bytes)
        self.part_bytes = part_bytes
        self.expiring_types = dict(expiring_types or {})
        self._locks = KeyedLocks()
        self._creds: dict[str, _CredsState] = {}
        self._chunks: dict[str, dict[str, int]] = {}

    def _encode(self, value: Any, label: str) -> Encoded:
        return encode(value, label, compress_over=self.compress_over, part_bytes=self.part_bytes)

    # ---- creds ----

    async def get_creds(self, session: SessionId) -> dict[str, Any] | None:
        # Under the lock: a read racing a put could otherwise record a version older than the put's.
        async with self._locks.hold(session):
            item = await self._get_item(session_key(session, CREDS_SK), f"creds of {session}")
            if item is None:
                self._creds[session] = _CredsState()
                return None
            creds = decode(item, f"creds of {session}")
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
            update = {
                "Key": session_key(session, CREDS_SK),
                "UpdateExpression": f"SET #ver = if_not_exists(#ver, :zero) + :one, #w = :w, {data_expr}",
                "ConditionExpression": condition,
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
            }
            conflict = f"failed to save {label}: changed by another writer since version {state.version}"
            fence = self._fences.get(session)
            if fence is not None:
                try:
                    await self._transact(fence, [{"Update": {"TableName": self.table, **update}}], [label])
                except ConditionFailed as e:
                    raise CredsConflict(conflict) from e
                except LeaseLost:
                    raise  # cancelled: nothing was written
                except StoreError:
                    state.tokens = [*state.tokens, token][-_MAX_PENDING_TOKENS:]
                    raise
                await self._after_fenced_creds_write(session, state, token)
                return
            client = self.client
            try:
                resp = await client.update_item(TableName=self.table, **update, ReturnValues="UPDATED_NEW")
            except Exception as e:
                if error_code(e) == "ConditionalCheckFailedException":
                    raise CredsConflict(conflict) from e
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
                Key=session_key(session, CREDS_SK),
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
        by_sk = {key_sk(type, key_id): key_id for key_id in ids}
        what = f"{len(by_sk)} {type} keys of {session}"
        items = await self._batch_get([session_key(session, sk) for sk in by_sk], what)
        out: dict[str, Any] = {}
        chunked: list[str] = []
        for item in items:
            sk = item["sk"]["S"]
            if "parts" in item:
                chunked.append(sk)
            else:
                out[by_sk[sk]] = decode(item, f"{type} {by_sk[sk]}")
        if chunked:
            # Parts are overwritten in place: read them while no write of this session is under way.
            async with self._locks.hold(session):
                for sk, value in (await self._read_chunked(session, chunked, type, by_sk)).items():
                    out[by_sk[sk]] = value
        return out

    async def _read_chunked(
        self, session: SessionId, sks: list[str], type: str, by_sk: dict[str, str]
    ) -> dict[str, Any]:
        mains = await self._batch_get([session_key(session, sk) for sk in sks], f"{type} keys of {session}")
        part_keys = [
            session_key(session, part_sk(main["sk"]["S"], n))
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
                out[sk] = decode(main, label)
                continue
            names = [part_sk(sk, n) for n in range(int(main["parts"]["N"]))]
            if any(n not in parts for n in names):
                raise StoreError(f"failed to read {label}: parts are missing")
            out[sk] = decode(main, label, [parts[n] for n in names])
        return out

    async def set_keys(self, session: SessionId, data: dict[str, dict[str, Any]]) -> None:
        ops: dict[str, tuple[str, Encoded | None]] = {}
        for type, values in data.items():
            lifetime = self.expiring_types.get(type)
            for key_id, value in values.items():
                label = f"{type} {key_id} of {session}"
                encoded = None if value is None else self._encode(value, label)
                if encoded is not None and lifetime is not None:
                    encoded.attrs[TTL_ATTRIBUTE] = {"N": str(int(time.time() + lifetime))}
                ops[key_sk(type, key_id)] = (label, encoded)
        if not ops:
            return
        async with self._locks.hold(session):
            await self._write_keys(session, ops, self._fences.get(session))

    async def _write_keys(
        self, session: SessionId, ops: dict[str, tuple[str, Encoded | None]], fence: Lease | None
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
            self._put(session, part_sk(sk, n), {"z": {"B": part}}, f"{label} part {n}")
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
            self._delete(session, part_sk(sk, n), f"{ops[sk][0]} part {n}")
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
        item = await self._get_item(session_key(session, CHUNKS_SK), f"the chunk index of {session}")
        m = (item or {}).get("m", {}).get("M", {})
        index = {sk: int(v["N"]) for sk, v in m.items()}
        self._chunks[session] = index
        return index

    async def _save_chunk_index(self, session: SessionId, index: dict[str, int], fence: Lease | None) -> None:
        label = f"the chunk index of {session}"
        m = {sk: {"N": str(n)} for sk, n in index.items()}
        if fence is not None:
            if index:
                request = self._put(session, CHUNKS_SK, {"m": {"M": m}}, label)
            else:
                request = self._delete(session, CHUNKS_SK, label)
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
                await client.put_item(TableName=self.table, Item={**session_key(session, CHUNKS_SK), "m": {"M": m}})
            else:
                await client.delete_item(TableName=self.table, Key=session_key(session, CHUNKS_SK))
        except Exception as e:
            self._chunks.pop(session, None)  # unknown state: re-read next time
            raise StoreError(f"failed to save {label}") from e
        self._chunks[session] = dict(index)

    # ---- sessions ----

    async def delete_session(self, session: SessionId) -> None:
        """Every item of the session, the lease item last, so a logout leaves nothing behind. Fenced, the other
        deletes are fenced and the lease item is deleted only if it still carries our owner and token: a connector
        that lost the session cannot delete the new owner's lease."""
        async with self._locks.hold(session):
            fence = self._fences.get(session)
            query = {
                "KeyConditionExpression": "pk = :s",
                "ExpressionAttributeValues": {":s": {"S": session}},
                "ProjectionExpression": "sk",
            }
            items = await self._read_all("query", query, f"the items of session {session}")
            sks = [item["sk"]["S"] for item in items]
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
        request: dict[str, Any] = {"TableName": self.table, "Key": session_key(session, LEASE_SK)}
        if fence is not None:
            request |= held_by(fence)
        try:
            await self.client.delete_item(**request)
        except Exception as e:
            if error_code(e) == "ConditionalCheckFailedException":
                return  # another connector owns it now: its lease is not ours to delete
            raise StoreError(f"failed to delete the lease of {session}") from e

    async def list_sessions(self) -> list[SessionId]:
        # A full-table Scan: it runs once, at boot. If the table grows large, a sparse GSI on creds items (or a
        # registry item) would turn this into a Query.
        scan = {
            "FilterExpression": "sk = :creds",
            "ExpressionAttributeValues": {":creds": {"S": CREDS_SK}},
            "ProjectionExpression": "pk",
        }
        items = await self._read_all("scan", scan, f"the sessions in {self.table}")
        return sorted(SessionId(item["pk"]["S"]) for item in items)
