"""Issue 4 in the relay, with the fake bridge: start queue, flap breaker, close policy, leases, pairing rules,
logout/delete, bridge supervision and stale detection."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

from connector.errors import SessionNotReady
from connector.lease import LeaseKeeper
from connector.relay import EXIT_BRIDGE_CRASHLOOP, SessionState
from connector.startqueue import FlapBreaker, StartQueue, backoff
from connector.store import MemoryAuthStore
from connector.store.abstract import Lease
from connector.types import SessionId
from tests.connector.test_relay import CREDS, OPEN, S1, Env, env, started

__all__ = ["env"]  # the fixture, shared with test_relay

log = logging.getLogger("test")


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


def close(code: int | None) -> dict[str, Any]:
    return {"connection": "close", "statusCode": code}


# ---- the start queue ------------------------------------------------------------------------------------------


async def test_queue_spaces_connects_keeps_fifo_order_and_dedupes() -> None:
    seen: list[tuple[str, float]] = []

    async def connect(sid: SessionId) -> bool:
        seen.append((sid, time.monotonic()))
        return True

    q = StartQueue(connect, interval=0.05, jitter=0.0, log=log)
    for sid in ["a", "b", "a", "c", "b"]:  # duplicates keep their place
        q.put(SessionId(sid))
    assert q.waiting() == ["a", "b", "c"]
    q.start()
    try:
        await until(lambda: len(seen) >= 3)
        q.put(SessionId("a"))  # served again: to the back
        q.put(SessionId("d"))
        await until(lambda: len(seen) >= 5)
    finally:
        await q.stop()
    assert [s for s, _ in seen] == ["a", "b", "c", "a", "d"]
    gaps = [b[1] - a[1] for a, b in itertools.pairwise(seen)]
    assert all(g >= 0.045 for g in gaps), gaps
    assert q.connects == 5


async def test_queue_skips_the_wait_when_nothing_was_started_and_connect_now_counts() -> None:
    seen: list[tuple[str, float]] = []

    async def connect(sid: SessionId) -> bool:
        seen.append((sid, time.monotonic()))
        return sid != "skip"

    q = StartQueue(connect, interval=0.2, jitter=0.0, log=log)
    q.put(SessionId("skip"))
    q.put(SessionId("x"))
    q.start()
    try:
        await until(lambda: len(seen) >= 2)
        assert seen[1][1] - seen[0][1] < 0.1  # nothing started: no wait
        await q.connect_now(SessionId("now"))  # immediate (515)...
        q.put(SessionId("y"))
        await until(lambda: len(seen) >= 4)
    finally:
        await q.stop()
    assert seen[2][0] == "now" and seen[2][1] - seen[1][1] < 0.1
    assert seen[3][1] - seen[2][1] >= 0.19  # ...but the next queued connect waits a full interval after it


def test_backoff_is_exponential_jittered_and_capped() -> None:
    assert all(0.5 <= backoff(1, initial=1, cap=300) <= 2 for _ in range(50))
    assert all(4 <= backoff(4, initial=1, cap=300) <= 9 for _ in range(50))
    assert all(150 <= backoff(30, initial=1, cap=300) <= 300 for _ in range(50))
    assert len({backoff(5, initial=1, cap=300) for _ in range(20)}) > 1


def test_flap_breaker_trips_after_more_than_max_closes_in_the_window() -> None:
    b = FlapBreaker(max_closes=3, window_s=10, hold_s=100)
    sid = SessionId("s")
    assert [b.record(sid, now=t) for t in (0, 1, 2)] == [None, None, None]
    assert b.record(sid, now=3) == 103
    assert b.trips == 1 and b.recent(sid) == 0
    # closes spread wider than the window never trip it
    assert all(b.record(sid, now=100 + 11 * i) is None for i in range(10))


async def test_boot_connects_are_spaced_by_the_interval_and_jitter() -> None:
    e = Env(start_interval_s=0.05, start_jitter_s=0.02)
    try:
        await started(e, *[f"s{i}" for i in range(6)])
        gaps = [b[2] - a[2] for a, b in itertools.pairwise(e.bridge.starts)]
        assert all(g >= 0.048 for g in gaps), gaps
    finally:
        await e.relay.stop()


async def test_a_flapping_session_is_held_back_and_reported(caplog: pytest.LogCaptureFixture) -> None:
    e = Env(flap_max=2, flap_window_s=60, flap_hold_s=0.3, backoff_initial_s=0.01, backoff_max_s=0.01)
    try:
        await started(e, "s1")
        with caplog.at_level(logging.ERROR, "wa_relay.relay"):
            for n in range(3):
                await e.bridge.wait_calls("start", n + 1)
                await e.bridge.emit("connection.update", "s1", close(503))
        s = e.relay.get(S1)
        assert s.held_until is not None and s.state == SessionState.RECONNECTING
        body = s.as_dict()
        assert "held_until" in body and "flapping" in body["last_error"]["message"]
        assert any(r.levelno == logging.ERROR and "flapping" in r.getMessage() for r in caplog.records)
        assert e.relay.breaker.trips == 1
        starts = e.bridge.count("start")
        await asyncio.sleep(0.15)
        assert e.bridge.count("start") == starts, "held: no connect during the hold"
        await e.bridge.wait_calls("start", starts + 1, timeout=2)  # after the hold it comes back through the queue
        assert e.relay.get(S1).held_until is None
    finally:
        await e.relay.stop()


# ---- close-code policy ----------------------------------------------------------------------------------------


async def test_515_reconnects_at_once_even_with_a_long_interval() -> None:
    e = Env(start_interval_s=5.0)
    try:
        await started(e, "s1")
        t0 = time.monotonic()
        await e.bridge.emit("connection.update", "s1", close(515))
        await e.bridge.wait_calls("start", 2, timeout=1)
        assert time.monotonic() - t0 < 1
    finally:
        await e.relay.stop()


async def test_logged_out_counts_releases_and_wipes_every_item(env: Env) -> None:
    await started(env, "s1")
    await env.relay.keys_set(S1, {"session": {"a.0": {"x": 1}}})
    await env.bridge.emit("connection.update", "s1", OPEN)
    await env.bridge.emit("connection.update", "s1", close(401))
    assert env.relay.logged_out_total == 1
    assert env.relay.get(S1).state == SessionState.LOGGED_OUT
    with pytest.raises(Exception, match="write refused"):  # a late write from the bridge does not resurrect it
        await env.relay.creds_save(S1, CREDS)
    assert await env.auth.get_creds(S1) is None and await env.auth.list_sessions() == []
    # the id can be created again and starts clean (a fresh QR: no creds)
    await env.relay.create(S1)
    await env.bridge.wait_calls("start", 2)
    assert env.bridge.starts[-1][1] is None


async def test_conflict_counts_and_is_visible(env: Env) -> None:
    await started(env, "s1")
    await env.bridge.emit("connection.update", "s1", close(440))
    body = env.relay.get(S1).as_dict()
    assert body["state"] == "conflict" and body["last_error"]["code"] == 440
    assert env.relay.conflicts_total == 1


# ---- pairing ----------------------------------------------------------------------------------------------------


async def test_pairing_code_only_while_the_qr_window_is_open(env: Env) -> None:
    await started(env)
    await env.relay.create(S1)
    await env.bridge.wait_calls("start", 1)
    with pytest.raises(SessionNotReady, match="QR window"):
        await env.relay.request_pairing_code(S1, "15550001111")
    await env.bridge.emit("connection.update", "s1", {"qr": "2@x"})
    assert await env.relay.request_pairing_code(S1, "15550001111") == "ABCD1234"
    assert env.relay.get(S1).state == SessionState.PAIRING_CODE
    await env.bridge.emit("connection.update", "s1", OPEN)
    with pytest.raises(SessionNotReady):
        await env.relay.request_pairing_code(S1, "15550001111")


async def test_qr_window_ending_before_pairing_wipes_the_creds(env: Env) -> None:
    await started(env)
    await env.relay.create(S1)
    await env.bridge.wait_calls("start", 1)
    await env.relay.creds_save(S1, {**CREDS, "me": {"id": "15550001111:0@s.whatsapp.net"}})  # set by the code
    await env.bridge.emit("connection.update", "s1", {"qr": "2@x"})
    await env.relay.request_pairing_code(S1, "15550001111")
    await env.bridge.emit("connection.update", "s1", {**close(408), "reason": "QR refs attempts ended"})
    s = env.relay.get(S1)
    assert s.state == SessionState.STOPPED and "pairing expired" in s.as_dict()["last_error"]["message"]
    assert await env.auth.get_creds(S1) is None
    await asyncio.sleep(0.1)
    assert env.bridge.count("start") == 1
    await env.relay.create(S1)  # allowed again, and clean
    await env.bridge.wait_calls("start", 2)
    assert env.bridge.starts[-1][1] is None


async def test_other_close_during_pairing_restarts_with_fresh_creds(env: Env) -> None:
    await started(env)
    await env.relay.create(S1)
    await env.bridge.wait_calls("start", 1)
    await env.relay.creds_save(S1, CREDS)
    await env.bridge.emit("connection.update", "s1", {"qr": "2@x"})
    await env.bridge.emit("connection.update", "s1", close(503))
    await env.bridge.wait_calls("start", 2)
    assert env.bridge.starts[-1][1] is None


# ---- logout and delete ------------------------------------------------------------------------------------------


async def test_logout_unlinks_when_open_then_wipes_everything(env: Env) -> None:
    await started(env, "s1")
    await env.relay.keys_set(S1, {"pre-key": {"1": {"k": 1}}})
    await env.bridge.emit("connection.update", "s1", OPEN)
    await env.relay.logout(S1)
    assert env.bridge.count("logout") == 1 and env.bridge.count("stop") == 1
    assert await env.auth.get_creds(S1) is None and await env.auth.get_keys(S1, "pre-key", ["1"]) == {}
    assert S1 not in env.relay.sessions


async def test_logout_when_not_open_wipes_locally(env: Env) -> None:
    await started(env, "s1")
    await env.bridge.emit("connection.update", "s1", close(503))
    await env.relay.logout(S1)
    assert env.bridge.count("logout") == 0
    assert await env.auth.list_sessions() == []


# ---- leases -----------------------------------------------------------------------------------------------------


def with_keeper(owner: str, auth: MemoryAuthStore | None = None, **opts: Any) -> Env:
    e = Env(lease_ttl_s=1.0, **opts)
    if auth is not None:
        e.auth = auth
        e.relay.auth = auth
    leases = e.relay.lease_store = e.auth.leases
    e.relay.leases = LeaseKeeper(leases, e.auth, owner, ttl_s=1.0, renew_every_s=0.3, on_lost=e.relay.on_lease_lost)
    return e


async def test_a_session_owned_elsewhere_is_not_started_and_is_taken_over_after_expiry() -> None:
    e = with_keeper("me")
    await e.auth.put_creds(S1, CREDS)
    await e.auth.leases.acquire(S1, "other", 0.8)
    assert e.relay.leases is not None
    await e.relay.leases.start()
    try:
        await e.relay.start()
        for _ in range(50):
            if e.relay.get(S1).owner:
                break
            await asyncio.sleep(0.01)
        body = e.relay.get(S1).as_dict()
        assert body["state"] == "stopped" and body["owner"]["id"] == "other"
        assert body["last_error"]["message"].startswith("owned by other until")
        assert e.bridge.count("start") == 0
        await e.bridge.wait_calls("start", 1, timeout=4)  # the other lease expired: taken over
        lease = await e.auth.leases.get_lease(S1)
        assert lease is not None and lease.owner == "me" and lease.token == 2
        assert e.relay.get(S1).owner is None
    finally:
        await e.relay.stop()
        await e.relay.leases.stop()


async def test_a_lost_lease_closes_the_socket_at_once_and_retries(caplog: pytest.LogCaptureFixture) -> None:
    e = with_keeper("me")
    assert e.relay.leases is not None
    await e.relay.leases.start()
    try:
        await started(e, "s1")
        await e.bridge.emit("connection.update", "s1", OPEN)
        # another connector takes the lease over (as if ours had expired)
        ours = await e.auth.leases.get_lease(S1)
        assert ours is not None
        e.auth.leases._leases[S1] = Lease(S1, "thief", ours.token + 1, time.time() + 0.5)
        with caplog.at_level(logging.ERROR, "wa_relay.relay"):
            with pytest.raises(Exception, match="lease lost"):
                await e.relay.keys_set(S1, {"pre-key": {"9": {"k": 1}}})  # a fenced write fails...
            await e.bridge.wait_calls("stop", 1, timeout=2)  # ...and the socket is closed at once
        s = e.relay.get(S1)
        assert s.state == SessionState.STOPPED and s.owner == "thief"
        assert e.relay.leases_lost_total == 1
        assert await e.auth.get_keys(S1, "pre-key", ["9"]) == {}
        await e.bridge.wait_calls("start", 2, timeout=4)  # the thief's lease expires: taken back
    finally:
        await e.relay.stop()
        await e.relay.leases.stop()


async def test_delete_releases_the_lease_and_is_refused_while_owned_elsewhere() -> None:
    e = with_keeper("me")
    assert e.relay.leases is not None
    await e.relay.leases.start()
    try:
        await started(e, "s1")
        await e.relay.delete(S1)
        lease = await e.auth.leases.get_lease(S1)
        assert lease is None or lease.expires_at <= time.time()  # released
        assert await e.auth.list_sessions() == []
        e.relay.sessions[S1] = e.relay._new_session(S1)
        e.relay.sessions[S1].owner = "other"
        with pytest.raises(SessionNotReady, match="owned by connector other"):
            await e.relay.delete(S1)
    finally:
        await e.relay.stop()
        await e.relay.leases.stop()


# ---- bridge supervision -----------------------------------------------------------------------------------------


async def test_bridge_restart_requeues_every_session_from_stored_creds() -> None:
    e = Env(start_interval_s=0.02)
    try:
        await started(e, "a", "b", "c")
        for sid in "abc":
            await e.bridge.emit("connection.update", sid, OPEN)
        e.bridge.crash()
        await e.bridge.wait_calls("start", 6)
        assert sorted(s for s, _, _ in e.bridge.starts[3:]) == ["a", "b", "c"]
        assert all(c is not None for _, c, _ in e.bridge.starts[3:]), "stored creds: no QR"
        gaps = [b[2] - a[2] for a, b in itertools.pairwise(e.bridge.starts[3:])]
        assert all(g >= 0.018 for g in gaps), "through the queue"
    finally:
        await e.relay.stop()


async def test_a_crash_looping_bridge_ends_the_process_with_a_dedicated_code() -> None:
    e = Env(bridge_max_crashes=3)
    codes: list[int] = []
    e.relay.on_fatal = codes.append
    try:
        await started(e)
        e.bridge.fail_start = 10
        e.bridge.crash()
        for _ in range(200):
            if codes:
                break
            await asyncio.sleep(0.01)
        assert codes == [EXIT_BRIDGE_CRASHLOOP] and e.relay.fatal_code == 14
        assert not e.relay.ready
    finally:
        await e.relay.stop()


# ---- stale detection --------------------------------------------------------------------------------------------


async def test_open_session_with_no_traffic_is_flagged_stale_with_guidance() -> None:
    e = Env(stale_after_s=10, stale_check_s=3600)
    try:
        await started(e, "s1")
        await e.bridge.emit("connection.update", "s1", OPEN)
        now = time.time()
        await e.relay.check_stale(now + 5)
        assert not e.relay.get(S1).as_dict()["stale"]
        await e.relay.check_stale(now + 11)
        body = e.relay.get(S1).as_dict()
        assert body["stale"] and "Linked devices" in body["guidance"] and "phone" in body["guidance"]
        # a frame on the socket (keep-alive answer) clears it
        e.bridge.received_at["s1"] = int((now + 11) * 1000)
        await e.relay.check_stale(now + 12)
        assert not e.relay.get(S1).as_dict()["stale"]
    finally:
        await e.relay.stop()


async def test_no_messages_for_too_long_is_stale_when_enabled() -> None:
    e = Env(stale_after_s=0, stale_messages_after_s=100, stale_check_s=3600)
    try:
        await started(e, "s1")
        await e.bridge.emit("connection.update", "s1", OPEN)
        now = time.time()
        await e.relay.check_stale(now + 101)
        assert e.relay.get(S1).stale_reason is not None and "no message" in e.relay.get(S1).stale_reason  # type: ignore[operator]
        assert e.relay.stale_total == 1
    finally:
        await e.relay.stop()


async def test_a_watched_session_deleted_elsewhere_is_forgotten_not_restarted_with_a_qr() -> None:
    e = with_keeper("me")
    await e.auth.put_creds(S1, CREDS)
    await e.auth.leases.acquire(S1, "other", 0.5)
    assert e.relay.leases is not None
    await e.relay.leases.start()
    try:
        await e.relay.start()
        await until(lambda: e.relay.get(S1).owner is not None)
        other = await e.auth.leases.get_lease(S1)
        assert other is not None
        e.auth.fence(S1, other)
        await e.auth.delete_session(S1)  # the owner logs the session out
        e.auth.fence(S1, None)
        await until(lambda: S1 not in e.relay.sessions, timeout=4)
        assert e.bridge.count("start") == 0, "a deleted session must not come back as a fresh QR"
    finally:
        await e.relay.stop()
        await e.relay.leases.stop()


async def test_a_standby_discovers_sessions_created_elsewhere_after_its_boot() -> None:
    e = with_keeper("me")
    assert e.relay.leases is not None
    await e.relay.leases.start()
    try:
        await e.relay.start()
        assert e.relay.sessions == {}
        await e.auth.leases.acquire(S1, "other", 0.5)
        await e.auth.put_creds(S1, CREDS)  # created and owned by another connector
        await until(lambda: S1 in e.relay.sessions, timeout=4)
        await e.bridge.wait_calls("start", 1, timeout=4)  # its owner never renews: taken over
        lease = await e.auth.leases.get_lease(S1)
        assert lease is not None and lease.owner == "me"
    finally:
        await e.relay.stop()
        await e.relay.leases.stop()
