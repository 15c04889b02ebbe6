"""Conformance suite of ``LidMapStore``: memory and DynamoDB (on DynamoDB Local) pass the same tests."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import boto3
import pytest

from connector.contracts import lid_map_key_for_lid, lid_map_key_for_pn
from connector.resources import DYNAMODB_BATCH_WRITE_MAX, LID_MAP_TABLE
from connector.store import LidMapStore, MemoryLidMapStore
from connector.store.dynamodb import DynamoLidMapStore
from functions.inbound.lidmap import LidMap
from tests.connector.test_store import Recording


def pair() -> tuple[str, str]:
    """A fresh ``(lid user, pn user)``: tests share one table, so every test uses its own numbers."""
    return str(random.randrange(10**14, 10**15)), str(random.randrange(10**10, 10**11))


@pytest.fixture(params=["memory", "dynamodb"])
async def lid_map(request: pytest.FixtureRequest) -> AsyncIterator[LidMapStore]:
    if request.param == "memory":
        yield MemoryLidMapStore()
        return
    store = DynamoLidMapStore(LID_MAP_TABLE.default_name, request.getfixturevalue("dynamodb_endpoint"), "us-east-1")
    await store.start()
    yield store
    await store.stop()


async def test_pairs_resolve_both_ways(lid_map: LidMapStore) -> None:
    lid, pn = pair()
    await lid_map.put_pairs([(f"{lid}@lid", f"{pn}@s.whatsapp.net")])
    assert await lid_map.pn_for_lids([f"{lid}@lid"]) == {f"{lid}@lid": f"{pn}@s.whatsapp.net"}
    assert await lid_map.lid_for_pns([f"{pn}@s.whatsapp.net"]) == {f"{pn}@s.whatsapp.net": f"{lid}@lid"}


async def test_device_parts_are_stripped(lid_map: LidMapStore) -> None:
    lid, pn = pair()
    await lid_map.put_pairs([(f"{lid}:0@lid", f"{pn}:3@s.whatsapp.net")])
    assert await lid_map.pn_for_lids([f"{lid}@lid", f"{lid}:7@lid"]) == {
        f"{lid}@lid": f"{pn}@s.whatsapp.net",
        f"{lid}:7@lid": f"{pn}@s.whatsapp.net",
    }
    assert await lid_map.lid_for_pns([f"{pn}:0@s.whatsapp.net"]) == {f"{pn}:0@s.whatsapp.net": f"{lid}@lid"}


async def test_unknown_ids_are_left_out(lid_map: LidMapStore) -> None:
    lid, pn = pair()
    other_lid, other_pn = pair()
    await lid_map.put_pairs([(f"{lid}@lid", f"{pn}@s.whatsapp.net")])
    assert await lid_map.pn_for_lids([f"{other_lid}@lid", f"{lid}@lid"]) == {f"{lid}@lid": f"{pn}@s.whatsapp.net"}
    assert await lid_map.lid_for_pns([f"{other_pn}@s.whatsapp.net"]) == {}
    assert await lid_map.pn_for_lids([]) == {}


async def test_many_pairs_at_once(lid_map: LidMapStore) -> None:
    pairs = [pair() for _ in range(130)]
    await lid_map.put_pairs([(f"{lid}@lid", f"{pn}@s.whatsapp.net") for lid, pn in pairs])
    found = await lid_map.pn_for_lids([f"{lid}@lid" for lid, _ in pairs])
    assert found == {f"{lid}@lid": f"{pn}@s.whatsapp.net" for lid, pn in pairs}


async def test_a_changed_mapping_replaces_the_old_one(lid_map: LidMapStore) -> None:
    lid, pn = pair()
    _, new_pn = pair()
    await lid_map.put_pairs([(f"{lid}@lid", f"{pn}@s.whatsapp.net")])
    await lid_map.put_pairs([(f"{lid}@lid", f"{new_pn}@s.whatsapp.net")])
    assert await lid_map.pn_for_lids([f"{lid}@lid"]) == {f"{lid}@lid": f"{new_pn}@s.whatsapp.net"}


# ---- DynamoDB only -----------------------------------------------------------------------------------------------


@pytest.fixture
async def dynamo(dynamodb_endpoint: str) -> AsyncIterator[DynamoLidMapStore]:
    store = DynamoLidMapStore(LID_MAP_TABLE.default_name, dynamodb_endpoint, "us-east-1")
    await store.start()
    yield store
    await store.stop()


async def test_writes_are_chunked_to_25_and_every_call_writes(dynamo: DynamoLidMapStore) -> None:
    rec = Recording(dynamo._client)
    dynamo._client = rec
    pairs = [pair() for _ in range(20)]
    jids = [(f"{lid}@lid", f"{pn}@s.whatsapp.net") for lid, pn in pairs]
    await dynamo.put_pairs(jids)
    writes = rec.ops("batch_write_item")
    assert [len(w["RequestItems"][LID_MAP_TABLE.default_name]) for w in writes] == [DYNAMODB_BATCH_WRITE_MAX, 15]
    # no memory of what was written: the connector's LID feed decides what to write again
    await dynamo.put_pairs(jids[:1])
    assert len(rec.ops("batch_write_item")) == 3


async def test_duplicate_keys_in_one_call_are_written_once(dynamo: DynamoLidMapStore) -> None:
    lid, pn = pair()
    _, pn2 = pair()
    # the same LID twice in one call: one BatchWriteItem may not name lid#… twice; the last pair wins
    await dynamo.put_pairs([(f"{lid}@lid", f"{pn}@s.whatsapp.net"), (f"{lid}:1@lid", f"{pn2}@s.whatsapp.net")])
    assert await dynamo.pn_for_lids([f"{lid}@lid"]) == {f"{lid}@lid": f"{pn2}@s.whatsapp.net"}


async def test_every_read_is_consistent_and_chunked(dynamo: DynamoLidMapStore) -> None:
    rec = Recording(dynamo._client)
    dynamo._client = rec
    await dynamo.pn_for_lids([f"{pair()[0]}@lid" for _ in range(150)])
    await dynamo.lid_for_pns([f"{pair()[1]}@s.whatsapp.net"])
    reads = rec.ops("batch_get_item")
    assert len(reads) == 3
    for kw in reads:
        table = kw["RequestItems"][LID_MAP_TABLE.default_name]
        assert table["ConsistentRead"] is True
        assert len(table["Keys"]) <= 100


async def test_the_inbound_function_reads_what_the_connector_writes(
    dynamo: DynamoLidMapStore, dynamodb_endpoint: str
) -> None:
    lid, pn = pair()
    await dynamo.put_pairs([(f"{lid}:2@lid", f"{pn}:0@s.whatsapp.net")])
    reader = LidMap(boto3.client("dynamodb", endpoint_url=dynamodb_endpoint), LID_MAP_TABLE.default_name)
    assert reader.lookup([lid_map_key_for_lid(f"{lid}@lid"), lid_map_key_for_pn(f"{pn}@s.whatsapp.net")]) == {
        f"lid#{lid}": f"{pn}@s.whatsapp.net",
        f"pn#{pn}": f"{lid}@lid",
    }
