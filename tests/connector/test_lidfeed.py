"""The LID feed: every source of LID/PN pairs reaches the LID map, each pair once, and a failing LID map never fails
the key write or message that carried the pair."""

from __future__ import annotations

import logging

import pytest

from connector.lidfeed import LidFeed
from connector.store import MemoryLidMapStore
from tests.connector.fakes import S1, Harness, wa_message


class CountingLidMap(MemoryLidMapStore):
    def __init__(self, fail: int = 0) -> None:
        super().__init__()
        self.writes: list[list[tuple[str, str]]] = []
        self.fail = fail

    async def put_pairs(self, pairs: list[tuple[str, str]]) -> None:
        if self.fail:
            self.fail -= 1
            raise RuntimeError("dynamodb down")
        self.writes.append(pairs)
        await super().put_pairs(pairs)


async def test_lid_map_fed_from_all_sources(harness: Harness) -> None:
    await harness.start("s1")
    await harness.bridge.emit("lid-mapping.update", "s1", {"lid": "111@lid", "pn": "211@s.whatsapp.net"})
    await harness.bridge.emit(
        "messages.upsert",
        "s1",
        {
            "type": "notify",
            "messages": [
                wa_message("112@lid", "M1", alt="212@s.whatsapp.net"),
                wa_message("120363@g.us", "M2", participant="213@s.whatsapp.net", participant_alt="113@lid"),
            ],
        },
    )
    await harness.manager.host.keys_set(S1, {"lid-mapping": {"214": "114", "115_reverse": "215"}})
    await harness.bridge.emit(
        "messaging-history.set", "s1", {"lidPnMappings": [{"lid": "116@lid", "pn": "216@s.whatsapp.net"}]}
    )
    await harness.bridge.emit(
        "contacts.upsert", "s1", {"contacts": [{"id": "117@lid", "phoneNumber": "217@s.whatsapp.net"}]}
    )
    found = await harness.lid_map.pn_for_lids([f"11{i}@lid" for i in range(1, 8)])
    assert found == {f"11{i}@lid": f"21{i}@s.whatsapp.net" for i in range(1, 8)}
    # the lid-mapping keys themselves are stored verbatim
    stored = await harness.auth.get_keys(S1, "lid-mapping", ["214", "115_reverse"])
    assert stored == {"214": "114", "115_reverse": "215"}


async def test_a_pair_already_written_is_not_written_again_but_a_failed_one_is() -> None:
    counting = CountingLidMap(fail=1)
    h = await Harness(lid_map=counting).start("s1")
    try:
        for n in range(4):  # the first write fails: not remembered, so the next message writes it
            chat = {"type": "notify", "messages": [wa_message("112@lid", f"M{n}", alt="212@s.whatsapp.net")]}
            await h.bridge.emit("messages.upsert", "s1", chat)
        await h.manager.host.keys_set(S1, {"lid-mapping": {"212": "112", "213": "113"}})
    finally:
        await h.manager.stop()
    assert counting.writes == [[("112@lid", "212@s.whatsapp.net")], [("113@lid", "213@s.whatsapp.net")]]


async def test_a_failing_lid_map_never_fails_a_key_write(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    await harness.start("s1")
    harness.manager.lid_feed.store = CountingLidMap(fail=10)
    with caplog.at_level(logging.WARNING):
        await harness.manager.host.keys_set(S1, {"lid-mapping": {"214": "114"}})
    assert await harness.auth.get_keys(S1, "lid-mapping", ["214"]) == {"214": "114"}
    assert "LID map write" in caplog.text


async def test_the_cache_is_bounded() -> None:
    store = CountingLidMap()
    feed = LidFeed(store, cache_size=2)
    pairs = [(f"{i}@lid", f"{i}0@s.whatsapp.net") for i in range(3)]
    for pair in pairs:
        await feed.feed([pair], "test")
    await feed.feed([pairs[0]], "test")  # evicted, so written again
    await feed.feed([pairs[2]], "test")  # still remembered
    assert store.writes == [[p] for p in pairs] + [[pairs[0]]]


async def test_lids_are_known_from_pairs_seen_and_else_read_from_the_lid_map() -> None:
    store = CountingLidMap()
    await store.put_pairs([("99@lid", "19@s.whatsapp.net")])  # written by another connector, or an earlier run
    feed = LidFeed(store)
    await feed.feed([("98@lid", "18@s.whatsapp.net")], "test")
    assert await feed.lids_for(["18@s.whatsapp.net", "19@s.whatsapp.net", "17@s.whatsapp.net"]) == {
        "18@s.whatsapp.net": "98@lid",
        "19@s.whatsapp.net": "99@lid",
    }
    reads = 0
    original = store.lid_for_pns

    async def counted(pns: list[str]) -> dict[str, str]:
        nonlocal reads
        reads += 1
        return await original(pns)

    store.lid_for_pns = counted  # type: ignore[method-assign]
    assert await feed.lids_for(["19@s.whatsapp.net"]) == {"19@s.whatsapp.net": "99@lid"}
    assert reads == 0, "a LID read once is remembered"


async def test_the_same_message_by_phone_number_and_by_lid_is_one_event(harness: Harness) -> None:
    await harness.start("s1")
    await harness.lid_map.put_pairs([("88887770009@lid", "15557770009@s.whatsapp.net")])
    await harness.bridge.emit(
        "messages.upsert", "s1", {"type": "notify", "messages": [wa_message("15557770009@s.whatsapp.net", "TWIN")]}
    )
    await harness.bridge.emit(
        "messages.upsert", "s1", {"type": "append", "messages": [wa_message("88887770009@lid", "TWIN")]}
    )
    first, second = harness.publisher.envelopes  # type: ignore[attr-defined]
    assert first.event_id == second.event_id and first.group_id == second.group_id
