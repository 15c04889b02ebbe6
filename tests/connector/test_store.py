"""Conformance suite of ``AuthStore`` (STYLE rule 9): the same tests run against the memory store and the DynamoDB
store on DynamoDB Local, never skipped. DynamoDB-only tests at the end cover what only that store has: item size
handling, the creds version check, batching limits, retries and consistent reads."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from connector.errors import CredsConflict, StoreError
from connector.resources import AUTH_TABLE, DYNAMODB_BATCH_GET_MAX, DYNAMODB_BATCH_WRITE_MAX
from connector.store import AuthStore
from connector.store.dynamodb import DynamoAuthStore
from connector.types import SessionId

# ---- helpers shared with test_lidmap_store.py and test_reply_log.py ---------------------------------------------


class Recording:
    """Wraps an aiobotocore client and records every call (``(operation, kwargs)``) it forwards."""

    def __init__(self, inner: Any, before: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        self.inner = inner
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.before = before

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        async def call(**kwargs: Any) -> Any:
            self.calls.append((name, kwargs))
            if self.before is not None:
                self.before(name, kwargs)
            return await attr(**kwargs)

        return call

    def ops(self, name: str) -> list[dict[str, Any]]:
        return [kw for op, kw in self.calls if op == name]


class FakeSession:
    """Stands in for ``aioboto3.Session``: ``client()`` yields the given object (or raises)."""

    def __init__(self, client: Any = None, fail: BaseException | None = None) -> None:
        self._client = client
        self.fail = fail
        self.closed = 0

    def client(self, *args: Any, **kwargs: Any) -> Any:
        @contextlib.asynccontextmanager
        async def ctx() -> AsyncIterator[Any]:
            if self.fail is not None:
                raise self.fail
            try:
                yield self._client
            finally:
                self.closed += 1

        return ctx()


def raw_client(endpoint: str) -> Any:
    return boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")


def sid() -> SessionId:
    return SessionId(f"t-{uuid.uuid4().hex[:12]}")


def buf(n: int) -> dict[str, str]:
    return {"type": "Buffer", "data": base64.b64encode(os.urandom(n)).decode()}


# ---- fixture -----------------------------------------------------------------------------------------------------


def baileys_keys() -> dict[str, dict[str, Any]]:
    """One or two realistic values of every Baileys 7 key type (shapes from reference/baileys-v7.md §1.2)."""
    b64 = lambda n: base64.b64encode(os.urandom(n)).decode()  # noqa: E731
    return {
        "pre-key": {"1": {"public": buf(33), "private": buf(32)}, "812": {"public": buf(33), "private": buf(32)}},
        "session": {
            "15551234567.3": {
                "_sessions": {
                    b64(33): {
                        "registrationId": 4242,
                        "currentRatchet": {
                            "ephemeralKeyPair": {"pubKey": b64(33), "privKey": b64(32)},
                            "lastRemoteEphemeralKey": b64(33),
                            "previousCounter": 0,
                            "rootKey": b64(32),
                        },
                        "indexInfo": {"baseKey": b64(33), "baseKeyType": 1, "closed": -1, "used": 1700000000000},
                        "chains": {b64(33): {"chainKey": {"counter": 3, "key": b64(32)}, "chainType": 1}},
                    }
                },
                "version": "v1",
            },
            "123456789012345_1.7": {"_sessions": {}, "version": "v1"},
        },
        "sender-key": {
            "120363000000000000@g.us::123456789012345_1::7": [
                {
                    "senderKeyId": 1234567,
                    "senderChainKey": {"iteration": 0, "seed": b64(32)},
                    "senderSigningKey": {"public": b64(33)},
                    "senderMessageKeys": [],
                }
            ]
        },
        "sender-key-memory": {"120363000000000000@g.us": {"15551234567:3@s.whatsapp.net": True, "1555@lid": False}},
        "app-state-sync-key": {
            "AAAAAJ/+xw==": {
                "keyData": buf(32),
                "fingerprint": {"rawId": 1999, "currentIndex": 2, "deviceIndexes": [0, 3]},
                "timestamp": "1700000000000",
            }
        },
        "app-state-sync-version": {
            "regular_high": {"version": 12, "hash": buf(128), "indexValueMap": {b64(32): {"valueMac": buf(32)}}}
        },
        "lid-mapping": {"15551234567": "123456789012345", "123456789012345_reverse": "15551234567"},
        "device-list": {"15551234567": ["0", "3"]},
        "tctoken": {
            "__index": {"token": {"type": "Buffer", "data": ""}, "timestamp": "1700000000"},
            "123456789012345@lid": {"token": buf(24), "timestamp": "1700000000", "senderTimestamp": 1700000001},
        },
        "identity-key": {"123456789012345_1.7": buf(33)},
    }


# ---- conformance -------------------------------------------------------------------------------------------------


async def test_creds_round_trip(store: AuthStore) -> None:
    s = sid()
    assert await store.get_creds(s) is None
    creds = {
        "noiseKey": {"private": buf(32), "public": buf(32)},
        "registrationId": 77,
        "me": {"id": "1@s.whatsapp.net"},
    }
    await store.put_creds(s, creds)
    assert await store.get_creds(s) == creds
    creds2 = {**creds, "nextPreKeyId": 813, "name": "Zoë ✓"}
    await store.put_creds(s, creds2)
    await store.put_creds(s, creds2)
    assert await store.get_creds(s) == creds2


async def test_every_baileys_key_type_round_trips_exactly(store: AuthStore) -> None:
    s = sid()
    data = baileys_keys()
    await store.set_keys(s, data)
    for type, values in data.items():
        got = await store.get_keys(s, type, list(values))
        assert got == values, type
        assert json.dumps(got, sort_keys=True) == json.dumps(values, sort_keys=True)


async def test_unknown_type_and_odd_ids_are_stored_verbatim(store: AuthStore) -> None:
    s = sid()
    value = {"nested": {"list": [1, 2.5, None, True, "héllo ✓ 🙂"], "buf": buf(5)}, "empty": {}}
    data = {
        "future-type": {"a:b/c+d=e@f_g": value, "": [1]},
        "a#b": {"c": 1},
        "a": {"b#c": 2},
    }
    await store.set_keys(s, data)
    assert await store.get_keys(s, "future-type", ["a:b/c+d=e@f_g", ""]) == data["future-type"]
    # a type containing "#" must not collide with a type/id split elsewhere
    assert await store.get_keys(s, "a#b", ["c"]) == {"c": 1}
    assert await store.get_keys(s, "a", ["b#c"]) == {"b#c": 2}
    assert await store.get_keys(s, "a", ["b"]) == {}


async def test_none_deletes_and_missing_ids_are_left_out(store: AuthStore) -> None:
    s = sid()
    await store.set_keys(s, {"pre-key": {"1": {"public": buf(33)}, "2": {"public": buf(33)}}})
    await store.set_keys(s, {"pre-key": {"1": None, "3": None}})
    got = await store.get_keys(s, "pre-key", ["1", "2", "3", "4", "2"])
    assert list(got) == ["2"]
    assert await store.get_keys(s, "pre-key", []) == {}
    assert await store.get_keys(s, "session", ["nope"]) == {}


async def test_initial_pre_key_upload_of_812_keys(store: AuthStore) -> None:
    s = sid()
    keys = {str(i): {"public": buf(33), "private": buf(32)} for i in range(1, 813)}
    await store.set_keys(s, {"pre-key": keys})
    got = await store.get_keys(s, "pre-key", list(keys))
    assert got == keys
    # Baileys deletes used pre-keys with null, a few at a time, mixed with session writes
    await store.set_keys(s, {"pre-key": {str(i): None for i in range(1, 101)}, "session": {"1.0": {"v": 1}}})
    assert len(await store.get_keys(s, "pre-key", list(keys))) == 712


async def test_sessions_are_isolated(store: AuthStore) -> None:
    a, b = sid(), sid()
    await store.set_keys(a, {"session": {"x.1": {"who": "a"}}})
    await store.set_keys(b, {"session": {"x.1": {"who": "b"}}})
    await store.put_creds(a, {"who": "a"})
    assert await store.get_keys(a, "session", ["x.1"]) == {"x.1": {"who": "a"}}
    assert await store.get_keys(b, "session", ["x.1"]) == {"x.1": {"who": "b"}}
    assert await store.get_creds(b) is None
    await store.delete_session(a)
    assert await store.get_keys(b, "session", ["x.1"]) == {"x.1": {"who": "b"}}


async def test_delete_session_removes_creds_and_every_key(store: AuthStore) -> None:
    s = sid()
    await store.put_creds(s, {"registrationId": 1})
    await store.set_keys(s, baileys_keys())
    await store.delete_session(s)
    assert await store.get_creds(s) is None
    for type, values in baileys_keys().items():
        assert await store.get_keys(s, type, list(values)) == {}
    assert s not in await store.list_sessions()
    await store.delete_session(s)  # deleting nothing is fine
    # the session can be linked again afterwards
    await store.put_creds(s, {"registrationId": 2})
    assert await store.get_creds(s) == {"registrationId": 2}


async def test_list_sessions_lists_sessions_with_creds(store: AuthStore) -> None:
    with_creds, keys_only = sid(), sid()
    await store.put_creds(with_creds, {"registrationId": 1})
    await store.set_keys(keys_only, {"pre-key": {"1": {"public": buf(33)}}})
    sessions = await store.list_sessions()
    assert with_creds in sessions
    assert keys_only not in sessions
    assert sessions == sorted(sessions)


# ---- DynamoDB only -----------------------------------------------------------------------------------------------


def items_of(endpoint: str, session: str) -> dict[str, dict[str, Any]]:
    resp = raw_client(endpoint).query(
        TableName=AUTH_TABLE.default_name,
        KeyConditionExpression="pk = :s",
        ExpressionAttributeValues={":s": {"S": session}},
        ConsistentRead=True,
    )
    return {item["sk"]["S"]: item for item in resp["Items"]}


async def test_large_value_is_compressed_then_split_and_overwrites_remove_stale_parts(
    dynamo: DynamoAuthStore, dynamodb_endpoint: str
) -> None:
    s = sid()
    sk = "key#app-state-sync-version#regular_low"
    # ~1.5 MB of JSON that does not compress well (random base64): over 400 KB even compressed.
    big = {"version": 9, "hash": buf(128), "indexValueMap": {f"{i:08d}": {"valueMac": buf(32)} for i in range(17000)}}
    assert len(json.dumps(big)) > 1_500_000
    await dynamo.set_keys(s, {"app-state-sync-version": {"regular_low": big}})
    got = await dynamo.get_keys(s, "app-state-sync-version", ["regular_low"])
    assert json.dumps(got["regular_low"]) == json.dumps(big)
    items = items_of(dynamodb_endpoint, s)
    n = int(items[sk]["parts"]["N"])
    assert n >= 2
    assert {f"part#{sk}#{i}" for i in range(n)} <= set(items)

    medium = {"version": 10, "indexValueMap": {f"{i:08d}": {"valueMac": "A" * 40} for i in range(3000)}}
    await dynamo.set_keys(s, {"app-state-sync-version": {"regular_low": medium}})
    items = items_of(dynamodb_endpoint, s)
    assert "z" in items[sk], "a compressible value over 32 KiB is stored compressed"
    assert not [k for k in items if k.startswith("part#")], "stale parts must be removed"
    assert "chunks" not in items
    assert await dynamo.get_keys(s, "app-state-sync-version", ["regular_low"]) == {"regular_low": medium}

    await dynamo.set_keys(s, {"app-state-sync-version": {"regular_low": {"version": 1}}})
    assert "v" in items_of(dynamodb_endpoint, s)[sk]


async def test_parts_grow_shrink_and_delete(dynamodb_endpoint: str) -> None:
    s = sid()
    store = DynamoAuthStore(AUTH_TABLE.default_name, dynamodb_endpoint, "us-east-1", compress_over=100, part_bytes=600)
    await store.start()
    try:
        sk = "key#app-state-sync-version#regular"

        def parts() -> list[str]:
            return sorted(k for k in items_of(dynamodb_endpoint, s) if k.startswith("part#"))

        for size in (3000, 6000, 1500, 40):
            value = {"blob": base64.b64encode(os.urandom(size)).decode(), "ü": "✓"}
            await store.set_keys(s, {"app-state-sync-version": {"regular": value}, "session": {"1.1": {"s": size}}})
            assert await store.get_keys(s, "app-state-sync-version", ["regular"]) == {"regular": value}
            items = items_of(dynamodb_endpoint, s)
            expected = int(items[sk]["parts"]["N"]) if "parts" in items[sk] else 0
            assert parts() == sorted(f"part#{sk}#{i}" for i in range(expected))
            assert ("chunks" in items) == bool(expected)
        # a fresh store instance (another process) knows nothing cached and still cleans up on delete
        await store.set_keys(
            s, {"app-state-sync-version": {"regular": {"b": base64.b64encode(os.urandom(5000)).decode()}}}
        )
        other = DynamoAuthStore(AUTH_TABLE.default_name, dynamodb_endpoint, "us-east-1", part_bytes=600)
        await other.start()
        await other.set_keys(s, {"app-state-sync-version": {"regular": None}})
        await other.stop()
        assert parts() == []
        assert set(items_of(dynamodb_endpoint, s)) == {"key#session#1.1"}
    finally:
        await store.stop()


async def test_creds_item_records_an_increasing_version(dynamo: DynamoAuthStore, dynamodb_endpoint: str) -> None:
    s = sid()
    assert await dynamo.get_creds(s) is None
    for i in range(3):
        await dynamo.put_creds(s, {"n": i})
    assert items_of(dynamodb_endpoint, s)["creds"]["version"]["N"] == "3"


async def test_large_creds_are_compressed_and_unversioned_items_adopted(
    dynamo: DynamoAuthStore, dynamodb_endpoint: str
) -> None:
    s = sid()
    await dynamo.get_creds(s)
    creds = {"processedHistoryMessages": [{"key": {"id": f"3EB0{i:016X}"}, "messageTimestamp": i} for i in range(900)]}
    await dynamo.put_creds(s, creds)
    assert "z" in items_of(dynamodb_endpoint, s)["creds"]
    assert await dynamo.get_creds(s) == creds
    await dynamo.put_creds(s, {"small": True})
    assert set(items_of(dynamodb_endpoint, s)["creds"]) == {"pk", "sk", "v", "version", "w"}

    other = sid()  # creds put by a tool that knows nothing of versions
    raw_client(dynamodb_endpoint).put_item(
        TableName=AUTH_TABLE.default_name, Item={"pk": {"S": other}, "sk": {"S": "creds"}, "v": {"S": '{"a":1}'}}
    )
    assert await dynamo.get_creds(other) == {"a": 1}
    await dynamo.put_creds(other, {"a": 2})
    await dynamo.put_creds(other, {"a": 3})
    assert items_of(dynamodb_endpoint, other)["creds"]["version"]["N"] == "2"


async def test_creds_conflict_with_another_writer(dynamo: DynamoAuthStore, dynamodb_endpoint: str) -> None:
    s = sid()
    await dynamo.get_creds(s)
    await dynamo.put_creds(s, {"n": 1})

    other = DynamoAuthStore(AUTH_TABLE.default_name, dynamodb_endpoint, "us-east-1")
    await other.start()
    try:
        with pytest.raises(CredsConflict):  # never read them: may not overwrite existing creds
            await other.put_creds(s, {"n": "blind"})
        assert await other.get_creds(s) == {"n": 1}
        await other.put_creds(s, {"n": 2})
    finally:
        await other.stop()

    with pytest.raises(CredsConflict) as err:
        await dynamo.put_creds(s, {"n": 3})
    assert isinstance(err.value, StoreError)
    assert await dynamo.get_creds(s) == {"n": 2}
    await dynamo.put_creds(s, {"n": 3})  # after re-reading it may write again
    assert await dynamo.get_creds(s) == {"n": 3}

    # a raw writer (e.g. an operator script) bumping the version is a conflict too
    raw_client(dynamodb_endpoint).update_item(
        TableName=AUTH_TABLE.default_name,
        Key={"pk": {"S": s}, "sk": {"S": "creds"}},
        UpdateExpression="SET version = version + :one",
        ExpressionAttributeValues={":one": {"N": "1"}},
    )
    with pytest.raises(CredsConflict):
        await dynamo.put_creds(s, {"n": 4})


async def test_creds_write_whose_answer_was_lost_is_not_a_conflict(dynamo: DynamoAuthStore) -> None:
    s = sid()
    await dynamo.get_creds(s)
    real = dynamo._client
    lose = {"n": 2}

    class LosesAnswers:
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        async def update_item(self, **kwargs: Any) -> Any:
            await real.update_item(**kwargs)  # applied, but the caller never hears back
            if lose["n"]:
                lose["n"] -= 1
                raise EndpointConnectionError(endpoint_url="http://lost")
            return await real.update_item(**kwargs)

    dynamo._client = LosesAnswers()
    with pytest.raises(StoreError) as err:
        await dynamo.put_creds(s, {"n": 1})
    assert not isinstance(err.value, CredsConflict)
    with pytest.raises(StoreError):
        await dynamo.put_creds(s, {"n": 2})
    dynamo._client = real
    await dynamo.put_creds(s, {"n": 3})
    assert await dynamo.get_creds(s) == {"n": 3}


async def test_writes_are_chunked_to_25_and_reads_to_100(dynamo: DynamoAuthStore) -> None:
    s = sid()
    rec = Recording(dynamo._client)
    dynamo._client = rec
    keys = {str(i): {"public": buf(33)} for i in range(263)}
    await dynamo.set_keys(s, {"pre-key": keys, "session": {"a.1": {"x": 1}}})
    writes = rec.ops("batch_write_item")
    sizes = [len(kw["RequestItems"][AUTH_TABLE.default_name]) for kw in writes]
    assert max(sizes) <= DYNAMODB_BATCH_WRITE_MAX
    assert sum(sizes) == 264
    assert await dynamo.get_keys(s, "pre-key", list(keys)) == keys
    reads = rec.ops("batch_get_item")
    assert max(len(kw["RequestItems"][AUTH_TABLE.default_name]["Keys"]) for kw in reads) <= DYNAMODB_BATCH_GET_MAX
    assert len(reads) == 3


async def test_every_read_is_consistent(dynamo: DynamoAuthStore, dynamodb_endpoint: str) -> None:
    s = sid()
    rec = Recording(dynamo._client)
    dynamo._client = rec
    big = {"blob": base64.b64encode(os.urandom(600_000)).decode()}
    await dynamo.get_creds(s)
    await dynamo.put_creds(s, {"a": 1})
    await dynamo.set_keys(s, {"app-state-sync-version": {"regular": big}, "session": {"1.1": {"a": 1}}})
    await dynamo.get_keys(s, "app-state-sync-version", ["regular"])
    await dynamo.get_keys(s, "session", ["1.1", "2.2"])
    await dynamo.list_sessions()
    await dynamo.delete_session(s)
    reads = 0
    for op, kw in rec.calls:
        if op in ("get_item", "query", "scan"):
            assert kw.get("ConsistentRead") is True, op
            reads += 1
        elif op == "batch_get_item":
            assert all(t.get("ConsistentRead") is True for t in kw["RequestItems"].values()), op
            reads += 1
    assert reads >= 7


async def test_not_started_store_fails_loudly(dynamodb_endpoint: str) -> None:
    store = DynamoAuthStore(AUTH_TABLE.default_name, dynamodb_endpoint, "us-east-1")
    with pytest.raises(StoreError, match="not started"):
        await store.get_creds(sid())
    await store.start()
    await store.start()  # idempotent
    await store.stop()
    await store.stop()
    with pytest.raises(StoreError):
        await store.set_keys(sid(), {"pre-key": {"1": {"a": 1}}})


async def test_stop_is_safe_after_a_failed_start() -> None:
    session = FakeSession(fail=RuntimeError("no endpoint"))
    store = DynamoAuthStore("t", None, "us-east-1", session=session)
    with pytest.raises(RuntimeError):
        await store.start()
    await store.stop()
    await store.stop()


async def test_a_value_that_is_not_json_is_a_store_error(dynamo: DynamoAuthStore) -> None:
    with pytest.raises(StoreError, match="failed to save pre-key 1"):
        await dynamo.set_keys(sid(), {"pre-key": {"1": {"x": object()}}})


# ---- unit tests with a fake client (no DynamoDB needed) ----------------------------------------------------------


class FakeDynamo:
    """A tiny in-memory BatchWriteItem/BatchGetItem that leaves items unprocessed on demand."""

    def __init__(self, unprocessed_rounds: int = 0, delay: float = 0.0) -> None:
        self.items: dict[tuple[str, str], dict[str, Any]] = {}
        self.unprocessed_rounds = unprocessed_rounds
        self.delay = delay
        self.calls: list[str] = []
        self.in_flight: dict[str, int] = {}
        self.max_in_flight: dict[str, int] = {}
        self.error: Exception | None = None

    async def get_item(self, TableName: str, Key: dict[str, Any], **kw: Any) -> dict[str, Any]:
        item = self.items.get((Key["pk"]["S"], Key["sk"]["S"]))
        return {"Item": item} if item else {}

    async def batch_write_item(self, RequestItems: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        self.calls.append("batch_write_item")
        if self.error is not None:
            raise self.error
        (table, requests), *_ = RequestItems.items()
        assert len(requests) <= 25
        pk = next(iter(requests[0].values())).get("Item", next(iter(requests[0].values())).get("Key"))["pk"]["S"]
        self.in_flight[pk] = self.in_flight.get(pk, 0) + 1
        self.max_in_flight[pk] = max(self.max_in_flight.get(pk, 0), self.in_flight[pk])
        await asyncio.sleep(self.delay)
        self.in_flight[pk] -= 1
        keep, left = (requests[: len(requests) // 2], requests[len(requests) // 2 :])
        if self.unprocessed_rounds <= 0:
            keep, left = requests, []
        else:
            self.unprocessed_rounds -= 1
        for r in keep:
            if "PutRequest" in r:
                item = r["PutRequest"]["Item"]
                self.items[(item["pk"]["S"], item["sk"]["S"])] = item
            else:
                key = r["DeleteRequest"]["Key"]
                self.items.pop((key["pk"]["S"], key["sk"]["S"]), None)
        return {"UnprocessedItems": {table: left} if left else {}}

    async def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        self.calls.append("batch_get_item")
        (table, request), *_ = RequestItems.items()
        assert request["ConsistentRead"] is True
        keys = request["Keys"]
        keep, left = keys, []
        if self.unprocessed_rounds > 0:
            self.unprocessed_rounds -= 1
            keep, left = keys[:1], keys[1:]
        found = [self.items[(k["pk"]["S"], k["sk"]["S"])] for k in keep if (k["pk"]["S"], k["sk"]["S"]) in self.items]
        unprocessed = {table: {"Keys": left, "ConsistentRead": True}} if left else {}
        return {"Responses": {table: found}, "UnprocessedKeys": unprocessed}


async def fake_store(fake: FakeDynamo, **kw: Any) -> DynamoAuthStore:
    store = DynamoAuthStore("t", None, "us-east-1", session=FakeSession(fake), backoff_base_s=0.001, **kw)
    await store.start()
    return store


async def test_unprocessed_items_and_keys_are_retried_until_written() -> None:
    fake = FakeDynamo(unprocessed_rounds=4)
    store = await fake_store(fake)
    keys = {str(i): {"n": i} for i in range(30)}
    await store.set_keys(SessionId("s"), {"pre-key": keys})
    assert len(fake.items) == 30
    fake.unprocessed_rounds = 3
    assert await store.get_keys(SessionId("s"), "pre-key", list(keys)) == keys
    await store.stop()


async def test_unprocessed_items_past_the_attempt_limit_raise() -> None:
    fake = FakeDynamo(unprocessed_rounds=100)
    store = await fake_store(fake, max_attempts=3)
    with pytest.raises(StoreError, match=r"failed to save pre-key \d+.*unprocessed after 3 attempts"):
        await store.set_keys(SessionId("s"), {"pre-key": {"1": {"a": 1}, "2": {"a": 2}}})
    assert fake.calls.count("batch_write_item") == 3
    with pytest.raises(StoreError, match="unprocessed after 3 attempts"):
        await store.get_keys(SessionId("s"), "pre-key", [str(i) for i in range(10)])


async def test_client_errors_are_raised_with_the_key_and_cause() -> None:
    fake = FakeDynamo()
    fake.error = ClientError({"Error": {"Code": "ValidationException", "Message": "too big"}}, "BatchWriteItem")
    store = await fake_store(fake)
    with pytest.raises(StoreError, match=r"failed to save session 15551234567\.3") as err:
        await store.set_keys(SessionId("s"), {"session": {"15551234567.3": {"a": 1}}})
    assert err.value.__cause__ is fake.error


async def test_duplicate_keys_in_one_batch_keep_the_last_write() -> None:
    fake = FakeDynamo()
    store = await fake_store(fake)
    # ids that map to the same item must not reach one BatchWriteItem twice (DynamoDB rejects that)
    written: list[list[str]] = []
    orig = fake.batch_write_item

    async def spy(RequestItems: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        written.append([json.dumps(next(iter(r.values()))) for r in next(iter(RequestItems.values()))])
        return await orig(RequestItems)

    fake.batch_write_item = spy  # type: ignore[method-assign]
    await store._batch_write(
        [
            store._put("s", "key#x#1", {"v": {"S": "1"}}, "x 1"),
            store._delete("s", "key#x#1", "x 1"),
            store._put("s", "key#x#1", {"v": {"S": "3"}}, "x 1"),
        ]
    )
    assert len(written) == 1 and len(written[0]) == 1
    assert fake.items[("s", "key#x#1")]["v"] == {"S": "3"}


async def test_writes_of_one_session_are_serialized_and_sessions_run_in_parallel() -> None:
    fake = FakeDynamo(delay=0.02)
    store = await fake_store(fake)
    writes = [store.set_keys(SessionId(s), {"session": {str(i): {"i": i}}}) for i in range(5) for s in ("a", "b")]
    await asyncio.gather(*writes)
    assert fake.max_in_flight == {"a": 1, "b": 1}
    assert len(store._locks) == 0, "locks of idle sessions are dropped"
    # different sessions overlap: three 20 ms writes take about 20 ms, not 60
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await asyncio.gather(*(store.set_keys(SessionId(s), {"session": {"x": {"s": s}}}) for s in ("c", "d", "e")))
    assert loop.time() - t0 < 0.055


async def test_an_expiring_key_type_carries_the_tables_ttl_and_others_do_not(
    dynamodb_endpoint: str, dynamo_pair: Any
) -> None:
    pair = dynamo_pair
    auth = DynamoAuthStore(AUTH_TABLE.default_name, dynamodb_endpoint, "us-east-1", expiring_types={"plain": 60.0})
    await auth.start()
    try:
        sid = SessionId(f"ttl-{uuid.uuid4().hex[:8]}")
        lease = await pair.leases.acquire(sid, "me", 30)
        assert lease is not None
        auth.fence(sid, lease)  # fenced, as every session with leases: one transaction for both items
        await auth.set_keys(sid, {"plain": {"h1": {"type": "Buffer", "data": "AQ=="}}, "session": {"a.0": {"x": 1}}})
        raw = boto3.client("dynamodb", endpoint_url=dynamodb_endpoint)
        items = raw.query(
            TableName=AUTH_TABLE.default_name,
            KeyConditionExpression="pk = :s",
            ExpressionAttributeValues={":s": {"S": sid}},
            ConsistentRead=True,
        )["Items"]
        by_sk = {i["sk"]["S"]: i for i in items}
        ttl = AUTH_TABLE.ttl_attribute
        assert ttl is not None
        expires = float(by_sk["key#plain#h1"][ttl]["N"])
        assert time.time() + 50 < expires <= time.time() + 61
        assert ttl not in by_sk["key#session#a.0"]
        assert await auth.get_keys(sid, "plain", ["h1"]) == {"h1": {"type": "Buffer", "data": "AQ=="}}
    finally:
        await auth.stop()
