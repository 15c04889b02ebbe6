"""Conformance suite of fencing: after ``fence(session, lease)`` every write of the session is conditioned
on the lease item, on the memory store and on the DynamoDB store (DynamoDB Local), never skipped. A write with a
stale fence raises ``LeaseLost`` and changes nothing. DynamoDB-only tests at the end cover the transactions."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from connector.errors import CredsConflict, LeaseLost, StoreError
from connector.resources import AUTH_TABLE, DYNAMODB_TRANSACT_MAX
from connector.store import Lease, LeaseStore
from connector.store.dynamodb import DynamoAuthStore
from connector.types import SessionId
from tests.connector.conftest import DynamoStores, Stores
from tests.connector.test_store import Recording, baileys_keys, buf, items_of, sid


async def fenced(stores: Stores | DynamoStores, s: SessionId, owner: str = "a", ttl_s: float = 60) -> Lease:
    lease = await stores.leases.acquire(s, owner, ttl_s)
    assert lease is not None
    stores.auth.fence(s, lease)
    return lease


async def take_over(leases: LeaseStore, s: SessionId, stale: Lease) -> Lease:
    """Another connector takes the session once ``stale`` has expired."""
    await asyncio.sleep(max(0.0, stale.expires_at - time.time()) + 0.05)
    lease = await leases.acquire(s, "b", 60)
    assert lease is not None and lease.token > stale.token
    return lease


def big_value() -> dict[str, Any]:
    """Over 400 KB even compressed (random base64): stored in parts."""
    return {"version": 9, "indexValueMap": {f"{i:08d}": {"valueMac": buf(32)} for i in range(17000)}}


# ---- conformance -------------------------------------------------------------------------------------------------


async def test_fenced_writes_work_while_the_lease_is_held(stores: Stores) -> None:
    store, leases = stores
    s = sid()
    lease = await fenced(stores, s)
    keys = baileys_keys()
    await store.put_creds(s, {"registrationId": 1})
    await store.set_keys(s, keys)
    await store.set_keys(s, {"pre-key": {"1": None}})
    await store.put_creds(s, {"registrationId": 2})
    assert await store.get_creds(s) == {"registrationId": 2}
    assert await store.get_keys(s, "pre-key", ["1", "812"]) == {"812": keys["pre-key"]["812"]}
    assert s in await store.list_sessions()
    # renewing does not change the token: the fence still holds
    await leases.renew(lease, 60)
    await store.set_keys(s, {"session": {"x.1": {"n": 1}}})

    await store.delete_session(s)
    assert await store.get_creds(s) is None
    assert await store.get_keys(s, "session", ["x.1"]) == {}
    assert s not in await store.list_sessions()
    assert await leases.get_lease(s) is None, "the lease item goes last: nothing of the session is left"
    b = await leases.acquire(s, "b", 60)
    assert b is not None, "re-linking (by any connector) starts clean"


async def test_every_write_with_a_stale_fence_raises_lease_lost_and_changes_nothing(stores: Stores) -> None:
    store, leases = stores
    s = sid()
    stale = await fenced(stores, s, ttl_s=0.2)
    await store.put_creds(s, {"registrationId": 1})
    await store.set_keys(s, {"pre-key": {"1": {"k": 1}, "2": {"k": 2}}})
    await take_over(leases, s, stale)

    with pytest.raises(LeaseLost):
        await store.set_keys(s, {"pre-key": {"1": {"k": "new"}, "3": {"k": 3}}})
    with pytest.raises(LeaseLost):
        await store.set_keys(s, {"pre-key": {"2": None}})
    with pytest.raises(LeaseLost):
        await store.set_keys(s, {"pre-key": {str(i): {"k": i} for i in range(100, 350)}})
    with pytest.raises(LeaseLost):
        await store.put_creds(s, {"registrationId": 666})
    with pytest.raises(LeaseLost):
        await store.delete_session(s)
    assert isinstance(LeaseLost("x"), StoreError)

    assert await store.get_creds(s) == {"registrationId": 1}
    assert await store.get_keys(s, "pre-key", ["1", "2", "3", "100", "349"]) == {"1": {"k": 1}, "2": {"k": 2}}
    current = await leases.get_lease(s)
    assert current is not None and current.owner == "b" and current.expires_at > time.time()


async def test_a_stale_fence_does_not_stop_the_new_owner(stores: Stores) -> None:
    store, leases = stores
    s = sid()
    stale = await fenced(stores, s, ttl_s=0.2)
    b = await take_over(leases, s, stale)
    store.fence(s, b)  # the new owner (here: the same store object) fences with its own lease
    await store.set_keys(s, {"session": {"a.1": {"by": "b"}}})
    await store.put_creds(s, {"by": "b"})
    assert await store.get_keys(s, "session", ["a.1"]) == {"a.1": {"by": "b"}}


async def test_unfenced_writes_are_unconditional_again(stores: Stores) -> None:
    store, leases = stores
    s = sid()
    stale = await fenced(stores, s, ttl_s=0.2)
    await take_over(leases, s, stale)
    store.fence(s, None)
    await store.set_keys(s, {"session": {"a.1": {"n": 1}}})
    assert await store.get_keys(s, "session", ["a.1"]) == {"a.1": {"n": 1}}


async def test_250_fenced_keys_in_one_write(stores: Stores) -> None:
    store = stores.auth
    s = sid()
    await fenced(stores, s)
    keys = {str(i): {"public": buf(33), "private": buf(32)} for i in range(250)}
    await store.set_keys(s, {"pre-key": keys})
    assert await store.get_keys(s, "pre-key", list(keys)) == keys
    await store.set_keys(s, {"pre-key": dict.fromkeys(keys)})
    assert await store.get_keys(s, "pre-key", list(keys)) == {}


async def test_a_fenced_large_value_round_trips(stores: Stores) -> None:
    store, leases = stores
    s = sid()
    stale = await fenced(stores, s, ttl_s=3)
    big = big_value()
    await store.set_keys(s, {"app-state-sync-version": {"regular_low": big}})
    got = await store.get_keys(s, "app-state-sync-version", ["regular_low"])
    assert json.dumps(got["regular_low"]) == json.dumps(big)
    small = {"version": 10}
    await store.set_keys(s, {"app-state-sync-version": {"regular_low": small}})
    assert await store.get_keys(s, "app-state-sync-version", ["regular_low"]) == {"regular_low": small}
    # and a large value with a stale fence changes nothing either
    await take_over(leases, s, stale)
    with pytest.raises(LeaseLost):
        await store.set_keys(s, {"app-state-sync-version": {"regular_low": big}})
    assert await store.get_keys(s, "app-state-sync-version", ["regular_low"]) == {"regular_low": small}


# ---- DynamoDB only -----------------------------------------------------------------------------------------------


async def test_fenced_writes_are_transactions_with_a_lease_check(dynamo_pair: DynamoStores) -> None:
    dynamo = dynamo_pair.auth
    s = sid()
    lease = await fenced(dynamo_pair, s)
    rec = Recording(dynamo._client)
    dynamo._client = rec
    keys = {str(i): {"public": buf(33)} for i in range(250)}
    await dynamo.set_keys(s, {"pre-key": keys})
    await dynamo.put_creds(s, {"registrationId": 1})
    assert rec.ops("batch_write_item") == [] and rec.ops("put_item") == [] and rec.ops("update_item") == []
    transactions = [kw["TransactItems"] for kw in rec.ops("transact_write_items")]
    assert len(transactions) == 4  # 99 + 99 + 52 keys, then the creds
    for items in transactions:
        assert len(items) <= DYNAMODB_TRANSACT_MAX
        check = items[0]["ConditionCheck"]
        assert check["Key"] == {"pk": {"S": s}, "sk": {"S": "lease"}}
        assert check["ExpressionAttributeValues"] == {":o": {"S": "a"}, ":t": {"N": str(lease.token)}}
        assert not any("ConditionCheck" in item for item in items[1:])
    assert sum(len(items) - 1 for items in transactions[:3]) == 250
    assert "Update" in transactions[3][1]


async def test_fenced_parts_stay_under_the_transaction_size_limit(
    dynamo_pair: DynamoStores, dynamodb_endpoint: str
) -> None:
    dynamo = dynamo_pair.auth
    s = sid()
    await fenced(dynamo_pair, s)
    rec = Recording(dynamo._client)
    dynamo._client = rec
    # ~5 MB compressed: more parts than one 4 MB transaction can carry
    huge = {"blob": base64.b64encode(os.urandom(3_800_000)).decode()}
    await dynamo.set_keys(s, {"app-state-sync-version": {"huge": huge}})
    sizes = [len(json.dumps(kw, default=lambda b: "x" * len(b))) for kw in rec.ops("transact_write_items")]
    assert max(sizes) < 4_000_000
    assert len(sizes) >= 4  # index, parts (2 transactions), main item
    assert await dynamo.get_keys(s, "app-state-sync-version", ["huge"]) == {"huge": huge}
    await dynamo.set_keys(s, {"app-state-sync-version": {"huge": None}})
    assert not [k for k in items_of(dynamodb_endpoint, s) if k != "lease"]


async def test_creds_conflict_under_a_valid_fence(dynamo_pair: DynamoStores, dynamodb_endpoint: str) -> None:
    dynamo = dynamo_pair.auth
    s = sid()
    await fenced(dynamo_pair, s)
    await dynamo.get_creds(s)
    await dynamo.put_creds(s, {"n": 1})
    await dynamo.put_creds(s, {"n": 2})
    assert items_of(dynamodb_endpoint, s)["creds"]["version"] == {"N": "2"}
    other = DynamoAuthStore(AUTH_TABLE.default_name, dynamodb_endpoint, "us-east-1")
    await other.start()
    try:
        await other.get_creds(s)
        await other.put_creds(s, {"n": "other"})
    finally:
        await other.stop()
    with pytest.raises(CredsConflict):
        await dynamo.put_creds(s, {"n": 3})
    assert await dynamo.get_creds(s) == {"n": "other"}
    await dynamo.put_creds(s, {"n": 4})
    assert await dynamo.get_creds(s) == {"n": 4}
    assert items_of(dynamodb_endpoint, s)["creds"]["version"] == {"N": "4"}


def cancelled(*codes: str) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": "TransactionCanceledException", "Message": "Transaction cancelled"},
            "CancellationReasons": [{"Code": c} for c in codes],
        },
        "TransactWriteItems",
    )


async def test_transaction_conflicts_are_retried(dynamo_pair: DynamoStores) -> None:
    dynamo = dynamo_pair.auth
    s = sid()
    await fenced(dynamo_pair, s)
    dynamo.backoff_base_s = 0.001
    failures = {"n": 2}

    def before(op: str, kwargs: dict[str, Any]) -> None:
        if op == "transact_write_items" and failures["n"]:
            failures["n"] -= 1
            raise cancelled("None", "TransactionConflict")

    rec = Recording(dynamo._client, before)
    dynamo._client = rec
    await dynamo.set_keys(s, {"session": {"a.1": {"n": 1}}})
    assert len(rec.ops("transact_write_items")) == 3
    assert await dynamo.get_keys(s, "session", ["a.1"]) == {"a.1": {"n": 1}}

    failures["n"] = 100
    with pytest.raises(StoreError) as err:
        await dynamo.set_keys(s, {"session": {"a.1": {"n": 2}}})
    assert not isinstance(err.value, LeaseLost)
    with pytest.raises(StoreError) as err2:
        await dynamo.put_creds(s, {"n": 2})
    assert not isinstance(err2.value, (LeaseLost, CredsConflict))


async def test_cancellation_reasons_only_in_the_message_are_understood(dynamo_pair: DynamoStores) -> None:
    dynamo = dynamo_pair.auth
    s = sid()
    await fenced(dynamo_pair, s)

    def before(op: str, kwargs: dict[str, Any]) -> None:
        if op == "transact_write_items":
            raise ClientError(
                {
                    "Error": {
                        "Code": "TransactionCanceledException",
                        "Message": "Transaction cancelled, please refer cancellation reasons for specific reasons "
                        "[ConditionalCheckFailed, None]",
                    }
                },
                "TransactWriteItems",
            )

    dynamo._client = Recording(dynamo._client, before)
    with pytest.raises(LeaseLost):
        await dynamo.set_keys(s, {"session": {"a.1": {"n": 1}}})


async def test_fenced_delete_leaves_no_item_at_all(dynamo_pair: DynamoStores, dynamodb_endpoint: str) -> None:
    dynamo, leases = dynamo_pair
    s = sid()
    await fenced(dynamo_pair, s)
    await dynamo.put_creds(s, {"n": 1})
    await dynamo.set_keys(s, {"app-state-sync-version": {"big": big_value()}, "session": {"a.1": {"n": 1}}})
    await dynamo.delete_session(s)
    assert items_of(dynamodb_endpoint, s) == {}, "a logout leaves nothing of the session"
    assert await leases.acquire(s, "b", 60) is not None, "re-linking starts clean"


async def test_delete_by_a_connector_that_lost_the_lease_keeps_the_new_owners_lease(
    dynamo_pair: DynamoStores, dynamodb_endpoint: str
) -> None:
    dynamo, leases = dynamo_pair
    s = sid()
    await fenced(dynamo_pair, s, ttl_s=0.2)
    await asyncio.sleep(0.3)
    theirs = await leases.acquire(s, "other-owner", 60)
    assert theirs is not None
    with pytest.raises(LeaseLost):
        await dynamo.delete_session(s)
    assert await leases.get_lease(s) == theirs


async def test_unfenced_delete_removes_the_lease_item_too(dynamo_pair: DynamoStores, dynamodb_endpoint: str) -> None:
    dynamo, leases = dynamo_pair
    s = sid()
    assert await leases.acquire(s, "a", 60) is not None
    await dynamo.put_creds(s, {"n": 1})
    await dynamo.delete_session(s)
    assert items_of(dynamodb_endpoint, s) == {}
