from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from connector.errors import SessionExists, SessionNotFound, SessionNotReady
from connector.publish import MemoryPublisher
from connector.relay import Relay, SessionState
from connector.sidecar.types import MessageKey
from connector.store import MemoryAuthStore, MemoryLidMapStore
from connector.types import SessionId
from tests.connector.fakes import FakeBridge, wa_message

S1 = SessionId("s1")
CREDS = {"me": {"id": "15550001111:5@s.whatsapp.net"}, "noiseKey": {"private": {"type": "Buffer", "data": "AA=="}}}
OPEN = {"connection": "open", "me": {"id": "15550001111:5@s.whatsapp.net", "lid": "99990001111:5@lid"}}


class Env:
    def __init__(self, **opts: Any) -> None:
        self.auth = MemoryAuthStore()
        self.lid_map = MemoryLidMapStore()
        self.publisher = MemoryPublisher()
        self.relay = Relay(
            FakeBridge,
            self.auth,
            self.lid_map,
            self.publisher,
            **{
                "start_interval_s": 0.0,
                "start_jitter_s": 0.0,
                "backoff_initial_s": 0.05,
                "bridge_restart_step_s": 0.01,
                **opts,
            },
        )

    @property
    def bridge(self) -> FakeBridge:
        assert isinstance(self.relay.bridge, FakeBridge)
        return self.relay.bridge


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    e = Env()
    yield e
    await e.relay.stop()


async def started(e: Env, *sessions: str) -> Env:
    for sid in sessions:
        await e.auth.put_creds(SessionId(sid), {**CREDS, "sid": sid})
    await e.relay.start()
    if sessions:
        await e.bridge.wait_calls("start", len(sessions))
    return e


async def test_boot_starts_stored_sessions_one_at_a_time_from_stored_creds() -> None:
    e = Env(start_interval_s=0.1)
    try:
        await started(e, "a", "b", "c")
        starts = e.bridge.starts
        assert [s for s, _, _ in starts] == ["a", "b", "c"]
        assert [c["sid"] for _, c, _ in starts if c] == ["a", "b", "c"]  # stored creds, so no QR
        gaps = [b[2] - a[2] for a, b in itertools.pairwise(starts)]
        assert all(g >= 0.095 for g in gaps), gaps
        assert e.relay.ready
    finally:
        await e.relay.stop()


async def test_create_starts_without_creds_then_qr_then_open(env: Env) -> None:
    await started(env)
    await env.relay.create(S1)
    await env.bridge.wait_calls("start", 1)
    assert env.bridge.starts[0][1] is None
    with pytest.raises(SessionExists):
        await env.relay.create(S1)
    await env.bridge.emit("connection.update", "s1", {"connection": "connecting"})
    assert env.relay.get(S1).state == SessionState.CONNECTING
    await env.bridge.emit("connection.update", "s1", {"qr": "2@abc,def"})
    s = env.relay.get(S1)
    assert (s.state, s.qr) == (SessionState.QR, "2@abc,def")
    await env.bridge.emit("connection.update", "s1", OPEN)
    assert s.state == SessionState.OPEN and s.qr is None
    assert s.as_dict()["me"] == {"pn": "15550001111@s.whatsapp.net", "lid": "99990001111@lid"}
    # me feeds the LID map, too
    assert await env.lid_map.pn_for_lids(["99990001111@lid"]) == {"99990001111@lid": "15550001111@s.whatsapp.net"}


async def test_515_restarts_at_once_with_stored_creds(env: Env) -> None:
    await started(env, "s1")
    await env.relay.creds_save(S1, {"registered": True})  # what the pairing saved
    await env.bridge.emit("connection.update", "s1", {"connection": "close", "statusCode": 515, "reason": "restart"})
    await env.bridge.wait_calls("start", 2)
    assert env.bridge.starts[1][1] == {"registered": True}
    assert env.relay.get(S1).last_error is not None and env.relay.get(S1).last_error.code == 515  # type: ignore[union-attr]


@pytest.mark.parametrize("code", [401, 403, 411, 419])
async def test_logged_out_wipes_the_store_and_does_not_reconnect(
    env: Env, code: int, caplog: pytest.LogCaptureFixture
) -> None:
    await started(env, "s1")
    await env.relay.keys_set(S1, {"session": {"a.0": {"x": 1}}})
    await env.bridge.emit("connection.update", "s1", OPEN)
    with caplog.at_level(logging.WARNING, "wa_relay.relay"):
        await env.bridge.emit("connection.update", "s1", {"connection": "close", "statusCode": code})
    s = env.relay.get(S1)
    assert s.state == SessionState.LOGGED_OUT
    assert await env.auth.get_creds(S1) is None
    assert await env.auth.get_keys(S1, "session", ["a.0"]) == {}
    assert any(r.levelno == logging.WARNING and "logged out" in r.getMessage() for r in caplog.records)
    await asyncio.sleep(0.2)
    assert env.bridge.count("start") == 1


async def test_440_conflict_does_not_reconnect(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    await started(env, "s1")
    with caplog.at_level(logging.ERROR, "wa_relay.relay"):
        await env.bridge.emit("connection.update", "s1", {"connection": "close", "statusCode": 440})
    assert env.relay.get(S1).state == SessionState.CONFLICT
    assert any(r.levelno == logging.ERROR and "440" in r.getMessage() for r in caplog.records)
    assert await env.auth.get_creds(S1) is not None  # kept: not a logout
    await asyncio.sleep(0.2)
    assert env.bridge.count("start") == 1


async def test_other_codes_reconnect_with_backoff(env: Env) -> None:
    await started(env, "s1")
    t0 = asyncio.get_running_loop().time()
    await env.bridge.emit("connection.update", "s1", {"connection": "close", "statusCode": 503})
    assert env.relay.get(S1).state == SessionState.RECONNECTING
    await env.bridge.wait_calls("start", 2)
    assert asyncio.get_running_loop().time() - t0 >= 0.02  # backoff_initial 0.05 * [0.5, 1] at least
    # the next failure waits longer (exponential), and open resets it
    assert env.relay.get(S1).failures == 1
    await env.bridge.emit("connection.update", "s1", OPEN)
    assert env.relay.get(S1).failures == 0


def test_backoff_grows_and_is_capped() -> None:
    e = Env(backoff_initial_s=2.0, backoff_max_s=300.0)
    delays = [e.relay._backoff(n) for n in range(1, 15)]
    assert all(0 < d <= 300 for d in delays)
    assert delays[-1] >= 150 and delays[0] <= 4


async def test_requested_close_stops_without_reconnect(env: Env) -> None:
    await started(env, "s1")
    await env.bridge.emit("connection.update", "s1", {"connection": "close", "statusCode": None, "requested": True})
    assert env.relay.get(S1).state == SessionState.STOPPED
    await asyncio.sleep(0.1)
    assert env.bridge.count("start") == 1


async def test_upserts_notify_and_append_are_published_stubs_are_not(env: Env) -> None:
    await started(env, "s1")
    await env.bridge.emit("connection.update", "s1", OPEN)
    await env.bridge.emit(
        "messages.upsert",
        "s1",
        {"type": "notify", "messages": [wa_message("88887770001@lid", "A", alt="15557770001@s.whatsapp.net")]},
    )
    await env.bridge.emit(
        "messages.upsert",
        "s1",
        {
            "type": "append",
            "messages": [
                wa_message("88887770001@lid", "STUB", stub=2),
                wa_message("15557770001@s.whatsapp.net", "B", from_me=True),
            ],
        },
    )
    envs = env.publisher.envelopes
    assert [(x.message.id, x.upsert_type) for x in envs] == [("A", "notify"), ("B", "append")]
    assert envs[0].me.pn == "15550001111@s.whatsapp.net"
    await asyncio.sleep(0)  # counted when the publisher reports them durable (a done-callback)
    assert env.relay.events_published == 2


class SlowPublisher(MemoryPublisher):
    """Takes envelopes at once; they become durable only when the test says so."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[asyncio.Future[None]] = []

    async def enqueue(self, envelope: Any) -> asyncio.Future[None]:
        await self.publish(envelope)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending.append(done)
        return done


async def test_a_session_does_not_wait_for_each_message_to_reach_the_queue(env: Env) -> None:
    env.relay.publisher = slow = SlowPublisher()
    await started(env, "s1")
    for n in range(3):
        message = wa_message("88887770001@lid", f"M{n}", alt="15557770001@s.whatsapp.net")
        await env.bridge.emit("messages.upsert", "s1", {"type": "notify", "messages": [message]})
    assert [x.message.id for x in slow.envelopes] == ["M0", "M1", "M2"]  # in order, none of them durable yet
    assert env.relay.events_published == 0
    for done in slow.pending:
        done.set_result(None)
    await asyncio.sleep(0)
    assert env.relay.events_published == 3


async def test_upsert_logs_ids_never_text(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    await started(env, "s1")
    with caplog.at_level(logging.INFO):
        await env.bridge.emit(
            "messages.upsert",
            "s1",
            {"type": "notify", "messages": [wa_message("1@s.whatsapp.net", "A", message={"conversation": "SECRETX"})]},
        )
        await asyncio.sleep(0)  # logged when the publisher reports it durable (a done-callback)
    assert env.publisher.envelopes[0].event_id in caplog.text
    assert "SECRETX" not in caplog.text


async def test_lid_map_fed_from_all_sources(env: Env) -> None:
    await started(env, "s1")
    await env.bridge.emit("lid-mapping.update", "s1", {"lid": "111@lid", "pn": "211@s.whatsapp.net"})
    await env.bridge.emit(
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
    await env.relay.keys_set(S1, {"lid-mapping": {"214": "114", "115_reverse": "215"}})
    found = await env.lid_map.pn_for_lids([f"11{i}@lid" for i in range(1, 6)])
    assert found == {f"11{i}@lid": f"21{i}@s.whatsapp.net" for i in range(1, 6)}
    # the lid-mapping keys themselves are stored verbatim
    assert await env.auth.get_keys(S1, "lid-mapping", ["214", "115_reverse"]) == {"214": "114", "115_reverse": "215"}


class BrokenLidMap(MemoryLidMapStore):
    async def put_pairs(self, pairs: list[tuple[str, str]]) -> None:
        raise RuntimeError("dynamodb down")


async def test_lid_map_failure_never_fails_a_key_write(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    env.relay.sessions[S1] = env.relay._new_session(S1)
    env.relay.lid_map = BrokenLidMap()
    with caplog.at_level(logging.WARNING):
        await env.relay.keys_set(S1, {"lid-mapping": {"214": "114"}})
    assert await env.auth.get_keys(S1, "lid-mapping", ["214"]) == {"214": "114"}
    assert "LID map write" in caplog.text


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


async def test_a_pair_already_written_is_not_written_again_but_a_failed_one_is(env: Env) -> None:
    await started(env, "s1")
    env.relay.lid_map = counting = CountingLidMap(fail=1)
    chat = {"type": "notify", "messages": [wa_message("112@lid", "M0", alt="212@s.whatsapp.net")]}
    await env.bridge.emit("messages.upsert", "s1", chat)  # the write fails: not remembered
    for n in range(1, 4):
        chat = {"type": "notify", "messages": [wa_message("112@lid", f"M{n}", alt="212@s.whatsapp.net")]}
        await env.bridge.emit("messages.upsert", "s1", chat)
    await env.relay.keys_set(S1, {"lid-mapping": {"212": "112", "213": "113"}})
    assert counting.writes == [
        [("112@lid", "212@s.whatsapp.net")],
        [("113@lid", "213@s.whatsapp.net")],
    ]
    assert await counting.pn_for_lids(["112@lid", "113@lid"]) == {
        "112@lid": "212@s.whatsapp.net",
        "113@lid": "213@s.whatsapp.net",
    }


async def test_keys_and_creds_pass_through_durably(env: Env) -> None:
    env.relay.sessions[S1] = env.relay._new_session(S1)
    value = {"type": "Buffer", "data": "AQID"}
    await env.relay.keys_set(S1, {"pre-key": {"1": {"public": value}, "2": None}, "tctoken": {"a@lid": {"t": 1}}})
    assert await env.auth.get_keys(S1, "pre-key", ["1", "2"]) == {"1": {"public": value}}
    assert await env.relay.keys_get(S1, "tctoken", ["a@lid", "b@lid"]) == {"a@lid": {"t": 1}}
    await env.relay.keys_set(S1, {"pre-key": {"1": None}})
    assert await env.relay.keys_get(S1, "pre-key", ["1"]) == {}
    await env.relay.creds_save(S1, CREDS)
    assert await env.auth.get_creds(S1) == CREDS


async def test_message_get_from_the_bounded_cache() -> None:
    e = Env(message_cache_size=2)
    await started(e, "s1")
    try:
        for i in range(3):
            await e.bridge.emit(
                "messages.upsert",
                "s1",
                {"type": "append", "messages": [wa_message("1@lid", f"M{i}", message={"conversation": f"t{i}"})]},
            )
        assert await e.relay.message_get(S1, MessageKey(id="M2")) == {"conversation": "t2"}
        assert await e.relay.message_get(S1, MessageKey(id="M0")) is None  # evicted
        assert await e.relay.message_get(SessionId("other"), MessageKey(id="M2")) is None
    finally:
        await e.relay.stop()


async def test_send_requires_open_and_passes_to_unchanged(env: Env) -> None:
    await started(env, "s1")
    with pytest.raises(SessionNotReady):
        await env.relay.send_text(S1, "88887770001@lid", "hi")
    with pytest.raises(SessionNotFound):
        await env.relay.send_text(SessionId("nope"), "88887770001@lid", "hi")
    await env.bridge.emit("connection.update", "s1", OPEN)
    mid = await env.relay.send_text(S1, "88887770001@lid", "hi", message_id="3EB0ABC")
    assert mid == "3EB0ABC"
    assert env.bridge.sent[0]["to"] == "88887770001@lid"
    assert env.bridge.sent[0]["content"] == {"text": "hi"}


async def test_the_echo_of_our_own_send_is_not_published_but_the_phones_own_messages_are(env: Env) -> None:
    await started(env, "s1")
    await env.bridge.emit("connection.update", "s1", OPEN)
    await env.relay.send_text(S1, "88887770001@lid", "reply", message_id="3EB0REPLY")
    api_id = await env.relay.send_text(S1, "88887770001@lid", "from the API")  # the id Baileys chose
    echoes = [wa_message("88887770001@lid", mid, from_me=True) for mid in ("3EB0REPLY", api_id)]
    typed_on_the_phone = wa_message("88887770001@lid", "3EB0PHONE", from_me=True)
    await env.bridge.emit("messages.upsert", "s1", {"type": "append", "messages": [*echoes, typed_on_the_phone]})
    assert [e.message.id for e in env.publisher.envelopes] == ["3EB0PHONE"]
    # Still answerable when a recipient asks Baileys for a retry.
    assert await env.relay.message_get(S1, MessageKey(remoteJid="88887770001@lid", fromMe=True, id="3EB0REPLY"))


async def test_delete_stops_and_wipes(env: Env) -> None:
    await started(env, "s1")
    await env.relay.keys_set(S1, {"session": {"a": {"x": 1}}})
    await env.relay.delete(S1)
    assert env.bridge.count("stop") == 1
    assert await env.auth.get_creds(S1) is None
    assert S1 not in env.relay.sessions
    with pytest.raises(SessionNotFound):
        await env.relay.delete(S1)


async def test_bridge_crash_restarts_it_and_requeues_sessions(env: Env) -> None:
    await started(env, "s1", "s2")
    await env.bridge.emit("connection.update", "s2", {"connection": "close", "statusCode": 440})
    env.bridge.fail_start = 1  # the first restart fails too
    env.bridge.crash()
    await env.bridge.wait_calls("start", 3)
    await asyncio.sleep(0.05)
    assert env.bridge.process_starts == 2
    assert [s for s, _, _ in env.bridge.starts][2:] == ["s1"]  # the conflicted one stays down
    assert env.relay.ready and env.relay.bridge_restarts == 1


async def test_stop_marks_sessions_stopped(env: Env) -> None:
    await started(env, "s1")
    await env.relay.stop()
    assert env.relay.get(S1).state == SessionState.STOPPED
    assert not env.relay.ready
