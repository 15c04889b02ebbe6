"""The session manager with a fake bridge: boot, create → QR → open, what each close leads to, pairing codes, sends,
logout and delete in every state, and leases (owned elsewhere, lost, taken over, discovered)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable

import pytest

from connector.api.models import SessionView
from connector.errors import (
    SessionExists,
    SessionNotFound,
    SessionNotOpen,
    SessionNotReady,
    SessionOwnedElsewhere,
    StoreError,
)
from connector.session import Readiness, SessionState
from connector.store import Lease
from connector.types import SessionId
from tests.connector.fakes import CREDS, OPEN, S1, Harness, close, until

MakeHarness = Callable[..., Harness]


def view(h: Harness, sid: SessionId = S1) -> dict[str, object]:
    return SessionView.of(h.manager.get(sid)).model_dump(mode="json")


# ---- boot and the way to open ----


async def test_boot_starts_stored_sessions_one_at_a_time_from_stored_creds(make_harness: MakeHarness) -> None:
    h = await make_harness(session_start_interval_s=0.1, session_start_jitter_s=0.02).start("a", "b", "c")
    starts = h.bridge.starts
    assert [s for s, _, _ in starts] == ["a", "b", "c"]
    assert [c["sid"] for _, c, _ in starts if c] == ["a", "b", "c"]  # stored creds, so no QR
    gaps = [b[2] - a[2] for a, b in itertools.pairwise(starts)]
    assert all(g >= 0.095 for g in gaps), gaps
    assert h.manager.ready


async def test_create_starts_without_creds_then_qr_then_open(harness: Harness) -> None:
    await harness.start()
    await harness.manager.create(S1)
    await harness.bridge.wait_calls("start", 1)
    assert harness.bridge.starts[0][1] is None
    with pytest.raises(SessionExists):
        await harness.manager.create(S1)
    await harness.bridge.emit("connection.update", "s1", {"connection": "connecting"})
    assert harness.manager.get(S1).state == SessionState.CONNECTING
    await harness.bridge.emit("connection.update", "s1", {"qr": "2@abc,def"})
    s = harness.manager.get(S1)
    assert (s.state, s.qr) == (SessionState.QR, "2@abc,def")
    await harness.bridge.emit("connection.update", "s1", OPEN)
    assert s.state == SessionState.OPEN and s.qr is None
    assert view(harness)["me"] == {"pn": "15550001111@s.whatsapp.net", "lid": "99990001111@lid"}
    # me feeds the LID map, too
    found = await harness.lid_map.pn_for_lids(["99990001111@lid"])
    assert found == {"99990001111@lid": "15550001111@s.whatsapp.net"}


# ---- what a close leads to (the policy itself has its table test) ----


async def test_515_restarts_at_once_from_the_stored_creds_even_with_a_long_interval(make_harness: MakeHarness) -> None:
    h = await make_harness(session_start_interval_s=5.0).start("s1")
    await h.manager.host.creds_save(S1, {"registered": True})  # what the pairing saved
    t0 = time.monotonic()
    await h.bridge.emit("connection.update", "s1", close(515, reason="restart"))
    await h.bridge.wait_calls("start", 2, timeout=1)
    assert time.monotonic() - t0 < 1
    assert h.bridge.starts[1][1] == {"registered": True}
    last_error = h.manager.get(S1).last_error
    assert last_error is not None and last_error.code == 515


@pytest.mark.parametrize("code", [401, 403, 411, 419])
async def test_logged_out_wipes_every_item_counts_and_does_not_reconnect(
    harness: Harness, code: int, caplog: pytest.LogCaptureFixture
) -> None:
    await harness.start("s1")
    await harness.manager.host.keys_set(S1, {"session": {"a.0": {"x": 1}}})
    await harness.bridge.emit("connection.update", "s1", OPEN)
    with caplog.at_level(logging.WARNING, "wa_relay.manager"):
        await harness.bridge.emit("connection.update", "s1", close(code))
    assert harness.manager.get(S1).state == SessionState.LOGGED_OUT
    assert harness.manager.logged_out_total == 1
    assert await harness.auth.get_creds(S1) is None and await harness.auth.list_sessions() == []
    assert await harness.auth.get_keys(S1, "session", ["a.0"]) == {}
    assert any(r.levelno == logging.WARNING and "logged out" in r.getMessage() for r in caplog.records)
    with pytest.raises(Exception, match="write refused"):  # a late write from the bridge does not resurrect it
        await harness.manager.host.creds_save(S1, CREDS)
    await asyncio.sleep(0.2)
    assert harness.bridge.count("start") == 1
    # the id can be created again and starts clean (a fresh QR: no creds)
    await harness.manager.create(S1)
    await harness.bridge.wait_calls("start", 2)
    assert harness.bridge.starts[-1][1] is None


async def test_440_conflict_is_visible_counted_and_not_reconnected(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    await harness.start("s1")
    with caplog.at_level(logging.ERROR, "wa_relay.manager"):
        await harness.bridge.emit("connection.update", "s1", close(440))
    body = view(harness)
    assert body["state"] == "conflict" and body["last_error"]["code"] == 440  # type: ignore[index]
    assert harness.manager.conflicts_total == 1
    assert any(r.levelno == logging.ERROR and "440" in r.getMessage() for r in caplog.records)
    assert await harness.auth.get_creds(S1) is not None  # kept: not a logout
    await asyncio.sleep(0.2)
    assert harness.bridge.count("start") == 1


async def test_other_codes_reconnect_with_backoff_and_open_resets_it(harness: Harness) -> None:
    await harness.start("s1")
    t0 = asyncio.get_running_loop().time()
    await harness.bridge.emit("connection.update", "s1", close(503))
    assert harness.manager.get(S1).state == SessionState.RECONNECTING
    await harness.bridge.wait_calls("start", 2)
    assert asyncio.get_running_loop().time() - t0 >= 0.02  # reconnect_initial 0.05 * [0.5, 1] at least
    assert harness.manager.get(S1).failures == 1
    await harness.bridge.emit("connection.update", "s1", OPEN)
    assert harness.manager.get(S1).failures == 0


async def test_a_requested_close_stops_without_reconnect(harness: Harness) -> None:
    await harness.start("s1")
    await harness.bridge.emit("connection.update", "s1", close(None, requested=True))
    assert harness.manager.get(S1).state == SessionState.STOPPED
    await asyncio.sleep(0.1)
    assert harness.bridge.count("start") == 1


async def test_a_flapping_session_is_held_back_and_reported(
    make_harness: MakeHarness, caplog: pytest.LogCaptureFixture
) -> None:
    h = make_harness(flap_max=2, flap_window_s=60, flap_hold_s=0.3, reconnect_initial_s=0.01, reconnect_max_s=0.01)
    await h.start("s1")
    with caplog.at_level(logging.ERROR, "wa_relay.manager"):
        for n in range(3):
            await h.bridge.wait_calls("start", n + 1)
            await h.bridge.emit("connection.update", "s1", close(503))
    s = h.manager.get(S1)
    assert s.held_until is not None and s.state == SessionState.RECONNECTING
    body = view(h)
    assert "held_until" in body and "flapping" in body["last_error"]["message"]  # type: ignore[index]
    assert any(r.levelno == logging.ERROR and "flapping" in r.getMessage() for r in caplog.records)
    assert h.manager.breaker.trips == 1
    starts = h.bridge.count("start")
    await asyncio.sleep(0.15)
    assert h.bridge.count("start") == starts, "held: no connect during the hold"
    await h.bridge.wait_calls("start", starts + 1, timeout=2)  # after the hold it comes back through the queue
    assert h.manager.get(S1).held_until is None


# ---- pairing ----


async def test_pairing_code_only_while_the_qr_window_is_open(harness: Harness) -> None:
    await harness.start()
    await harness.manager.create(S1)
    await harness.bridge.wait_calls("start", 1)
    with pytest.raises(SessionNotReady, match="QR window"):
        await harness.manager.request_pairing_code(S1, "15550001111")
    await harness.bridge.emit("connection.update", "s1", {"qr": "2@x"})
    assert await harness.manager.request_pairing_code(S1, "15550001111") == "ABCD1234"
    assert harness.manager.get(S1).state == SessionState.PAIRING_CODE
    await harness.bridge.emit("connection.update", "s1", OPEN)
    with pytest.raises(SessionNotReady):
        await harness.manager.request_pairing_code(S1, "15550001111")


async def test_qr_window_ending_before_pairing_wipes_the_creds(harness: Harness) -> None:
    await harness.start()
    await harness.manager.create(S1)
    await harness.bridge.wait_calls("start", 1)
    await harness.manager.host.creds_save(S1, {**CREDS, "me": {"id": "15550001111:0@s.whatsapp.net"}})  # the code
    await harness.bridge.emit("connection.update", "s1", {"qr": "2@x"})
    await harness.manager.request_pairing_code(S1, "15550001111")
    await harness.bridge.emit("connection.update", "s1", close(408, reason="QR refs attempts ended"))
    s = harness.manager.get(S1)
    assert s.state == SessionState.STOPPED and "pairing expired" in view(harness)["last_error"]["message"]  # type: ignore[index]
    assert await harness.auth.get_creds(S1) is None
    await asyncio.sleep(0.1)
    assert harness.bridge.count("start") == 1
    await harness.manager.create(S1)  # allowed again, and clean
    await harness.bridge.wait_calls("start", 2)
    assert harness.bridge.starts[-1][1] is None


async def test_other_close_during_pairing_restarts_with_fresh_creds(harness: Harness) -> None:
    await harness.start()
    await harness.manager.create(S1)
    await harness.bridge.wait_calls("start", 1)
    await harness.manager.host.creds_save(S1, CREDS)
    await harness.bridge.emit("connection.update", "s1", {"qr": "2@x"})
    await harness.bridge.emit("connection.update", "s1", close(503))
    await harness.bridge.wait_calls("start", 2)
    assert harness.bridge.starts[-1][1] is None


# ---- sending ----


async def test_send_requires_open_and_passes_to_unchanged(harness: Harness) -> None:
    await harness.start("s1")
    with pytest.raises(SessionNotOpen):
        await harness.manager.send_text(S1, "88887770001@lid", "hi")
    with pytest.raises(SessionNotFound):
        await harness.manager.send_text(SessionId("nope"), "88887770001@lid", "hi")
    await harness.bridge.emit("connection.update", "s1", OPEN)
    mid = await harness.manager.send_text(S1, "88887770001@lid", "hi", message_id="3EB0ABC")
    assert mid == "3EB0ABC"
    assert harness.bridge.sent[0]["to"] == "88887770001@lid"
    assert harness.bridge.sent[0]["content"] == {"text": "hi"}
    assert harness.manager.replies_sent == 1
    harness.bridge.not_open.add("s1")  # the bridge's own refusal is the same error
    with pytest.raises(SessionNotOpen):
        await harness.manager.send_text(S1, "88887770001@lid", "hi")


async def test_chat_states_and_read_marks_need_an_open_session_and_keep_the_chat_as_addressed(
    harness: Harness,
) -> None:
    await harness.start("s1")
    key = {"remoteJid": "88887770001@lid", "fromMe": False, "id": "3EB0IN", "addressingMode": "lid"}
    with pytest.raises(SessionNotOpen):
        await harness.manager.send_chat_state(S1, "88887770001@lid", "composing")
    with pytest.raises(SessionNotOpen):
        await harness.manager.mark_read(S1, key)
    await harness.bridge.emit("connection.update", "s1", OPEN)
    await harness.manager.send_chat_state(S1, "88887770001@lid", "composing")
    await harness.manager.mark_read(S1, key)
    assert harness.bridge.calls[-2:] == [
        ("presence", ("s1", "composing", "88887770001@lid")),
        ("read", ("s1", [key])),
    ]


# ---- logout and delete ----


async def test_logout_unlinks_when_open_then_wipes_everything(harness: Harness) -> None:
    await harness.start("s1")
    await harness.manager.host.keys_set(S1, {"pre-key": {"1": {"k": 1}}})
    await harness.bridge.emit("connection.update", "s1", OPEN)
    assert await harness.manager.logout(S1) is True
    assert harness.bridge.count("logout") == 1 and harness.bridge.count("stop") == 1
    assert await harness.auth.get_creds(S1) is None and await harness.auth.get_keys(S1, "pre-key", ["1"]) == {}
    assert S1 not in harness.manager.sessions


async def test_logout_when_not_open_or_the_bridge_is_down_wipes_locally(harness: Harness) -> None:
    await harness.start("s1", "s2")
    await harness.bridge.emit("connection.update", "s1", close(503))
    assert await harness.manager.logout(S1) is False
    await harness.bridge.emit("connection.update", "s2", OPEN)
    harness.bridge.connected = False  # the bridge went away between the state and the call
    assert await harness.manager.logout(SessionId("s2")) is False
    assert harness.bridge.count("logout") == 0
    assert await harness.auth.list_sessions() == []


async def test_delete_stops_and_wipes(harness: Harness) -> None:
    await harness.start("s1")
    await harness.manager.host.keys_set(S1, {"session": {"a": {"x": 1}}})
    await harness.manager.delete(S1)
    assert harness.bridge.count("stop") == 1
    assert await harness.auth.get_creds(S1) is None
    assert S1 not in harness.manager.sessions
    with pytest.raises(SessionNotFound):
        await harness.manager.delete(S1)


@pytest.mark.parametrize("how", ["delete", "logout"])
@pytest.mark.parametrize("state", ["starting", "qr", "pairing_code", "reconnecting", "held", "conflict", "open"])
async def test_delete_and_logout_work_in_every_state(make_harness: MakeHarness, how: str, state: str) -> None:
    h = make_harness(flap_max=0, flap_hold_s=60, session_start_interval_s=0.5)
    await h.start()
    await h.manager.create(S1)
    if state != "starting":
        await h.bridge.wait_calls("start", 1)
        if state in ("qr", "pairing_code"):
            await h.bridge.emit("connection.update", "s1", {"qr": "2@x"})
            if state == "pairing_code":
                await h.manager.request_pairing_code(S1, "15550001111")
        elif state == "reconnecting":
            await h.bridge.emit("connection.update", "s1", OPEN)
            await h.bridge.emit("connection.update", "s1", close(503))
        elif state == "held":
            await h.bridge.emit("connection.update", "s1", OPEN)
            await h.bridge.emit("connection.update", "s1", close(503))
            assert h.manager.get(S1).held
        elif state == "conflict":
            await h.bridge.emit("connection.update", "s1", close(440))
        else:
            await h.bridge.emit("connection.update", "s1", OPEN)
    expected = "reconnecting" if state == "held" else state
    assert h.manager.get(S1).state.value == expected
    await (h.manager.delete(S1) if how == "delete" else h.manager.logout(S1))
    assert S1 not in h.manager.sessions and await h.auth.list_sessions() == []
    await asyncio.sleep(0.05)
    starts = h.bridge.count("start")
    await asyncio.sleep(0.6)
    assert h.bridge.count("start") == starts, "nothing of a deleted session is started again"


async def test_a_session_deleted_while_its_socket_starts_does_not_keep_the_socket(harness: Harness) -> None:
    await harness.start()
    started = asyncio.Event()
    release = asyncio.Event()
    original = harness.bridge.start_session

    async def slow_start(session: SessionId, creds: object, config: object = None) -> object:
        started.set()
        await release.wait()
        return await original(session, creds)  # type: ignore[arg-type]

    harness.bridge.start_session = slow_start  # type: ignore[method-assign]
    await harness.manager.create(S1)
    await started.wait()
    await harness.manager.delete(S1)
    release.set()
    await harness.bridge.wait_calls("stop", 2)  # once by delete, once when the late start returned


async def test_stop_marks_sessions_stopped(harness: Harness) -> None:
    await harness.start("s1")
    await harness.manager.stop()
    assert harness.manager.get(S1).state == SessionState.STOPPED
    assert not harness.manager.ready


# ---- leases ----


def with_leases(make_harness: MakeHarness) -> Harness:
    return make_harness(leases=True, lease_ttl_s=1.0, lease_renew_s=0.3, connector_id="me")


async def owned_by_other(h: Harness, ttl_s: float) -> Lease:
    """S1 stored and leased by connector "other" for ``ttl_s``; ``h`` started and showing it as owned elsewhere."""
    await h.auth.put_creds(S1, CREDS)
    lease = await h.leases.acquire(S1, "other", ttl_s)
    assert lease is not None
    await h.manager.start()
    await until(lambda: h.manager.get(S1).owner is not None)
    return lease


async def test_a_session_owned_elsewhere_is_not_started_and_is_taken_over_after_expiry(
    make_harness: MakeHarness,
) -> None:
    h = with_leases(make_harness)
    await owned_by_other(h, 0.8)
    body = view(h)
    assert body["state"] == "stopped" and body["owner"]["id"] == "other"  # type: ignore[index]
    assert body["last_error"]["message"].startswith("owned by other until")  # type: ignore[index]
    assert h.bridge.count("start") == 0
    await h.bridge.wait_calls("start", 1, timeout=4)  # the other lease expired: taken over
    lease = await h.leases.get_lease(S1)
    assert lease is not None and lease.owner == "me" and lease.token == 2
    assert h.manager.get(S1).owner is None


async def test_a_lost_lease_closes_the_socket_at_once_and_retries(
    make_harness: MakeHarness, caplog: pytest.LogCaptureFixture
) -> None:
    h = with_leases(make_harness)
    await h.start("s1")
    await h.bridge.emit("connection.update", "s1", OPEN)
    # another connector takes the lease over (as if ours had expired)
    ours = await h.leases.get_lease(S1)
    assert ours is not None
    h.leases._leases[S1] = Lease(S1, "thief", ours.token + 1, time.time() + 0.5)
    with caplog.at_level(logging.ERROR, "wa_relay.manager"):
        with pytest.raises(Exception, match="lease lost"):
            await h.manager.host.keys_set(S1, {"pre-key": {"9": {"k": 1}}})  # a fenced write fails...
        await h.bridge.wait_calls("stop", 1, timeout=2)  # ...and the socket is closed at once
    s = h.manager.get(S1)
    assert s.state == SessionState.STOPPED and s.owner == "thief"
    assert h.manager.leases_lost_total == 1
    assert await h.auth.get_keys(S1, "pre-key", ["9"]) == {}
    await h.bridge.wait_calls("start", 2, timeout=4)  # the thief's lease expires: taken back


async def test_delete_releases_the_lease_and_is_refused_while_owned_elsewhere(make_harness: MakeHarness) -> None:
    h = with_leases(make_harness)
    await h.start("s1")
    await h.manager.delete(S1)
    lease = await h.leases.get_lease(S1)
    assert lease is None or lease.expires_at <= time.time()  # released
    assert await h.auth.list_sessions() == []
    other = await h.leases.acquire(S1, "other", 30)
    h.auth.fence(S1, other)  # the other connector, sharing this store, creates it again
    await h.auth.put_creds(S1, CREDS)
    h.auth.fence(S1, None)
    h.manager._adopt(S1)
    await until(lambda: h.manager.get(S1).owner == "other")
    with pytest.raises(SessionOwnedElsewhere, match="owned by connector other"):
        await h.manager.delete(S1)
    with pytest.raises(SessionOwnedElsewhere):
        await h.manager.logout(S1)


async def test_a_watched_session_deleted_elsewhere_is_forgotten_not_restarted_with_a_qr(
    make_harness: MakeHarness,
) -> None:
    h = with_leases(make_harness)
    other = await owned_by_other(h, 0.5)
    h.auth.fence(S1, other)
    await h.auth.delete_session(S1)  # the owner logs the session out
    h.auth.fence(S1, None)
    await until(lambda: S1 not in h.manager.sessions, timeout=4)
    assert h.bridge.count("start") == 0, "a deleted session must not come back as a fresh QR"


async def test_a_standby_discovers_sessions_created_elsewhere_after_its_boot(make_harness: MakeHarness) -> None:
    h = with_leases(make_harness)
    await h.manager.start()
    assert h.manager.sessions == {}
    await h.leases.acquire(S1, "other", 0.5)
    await h.auth.put_creds(S1, CREDS)  # created and owned by another connector
    await until(lambda: S1 in h.manager.sessions, timeout=4)
    await h.bridge.wait_calls("start", 1, timeout=4)  # its owner never renews: taken over
    lease = await h.leases.get_lease(S1)
    assert lease is not None and lease.owner == "me"


async def test_a_delete_the_store_refuses_keeps_the_session_visible_for_a_retry(harness: Harness) -> None:
    await harness.start("s1")
    wipe = harness.auth.delete_session

    async def down(session: SessionId) -> None:
        raise StoreError("failed to delete")

    harness.auth.delete_session = down  # type: ignore[method-assign]
    with pytest.raises(StoreError):
        await harness.manager.delete(S1)
    s = harness.manager.get(S1)
    assert s.state == SessionState.STOPPED and s.last_error is not None and "retry" in s.last_error.message
    harness.auth.delete_session = wipe  # type: ignore[method-assign]
    await harness.manager.delete(S1)
    assert S1 not in harness.manager.sessions and await harness.auth.list_sessions() == []


async def test_deleting_an_id_created_again_before_its_first_connect_is_not_refused(
    make_harness: MakeHarness,
) -> None:
    h = with_leases(make_harness)
    await h.start("s1")
    await h.manager.delete(S1)  # its lease item is gone with it
    h.manager.queue.discard(S1)
    await h.manager.create(S1)
    h.manager.queue.discard(S1)  # not connected yet: no new lease, so no new fence
    await h.manager.delete(S1)
    assert S1 not in h.manager.sessions


async def test_creds_that_cannot_be_read_are_retried_with_backoff_and_the_lease_given_back(
    make_harness: MakeHarness,
) -> None:
    h = with_leases(make_harness)
    await h.auth.put_creds(S1, CREDS)
    read = h.auth.get_creds
    failures = 2

    async def flaky(session: SessionId) -> dict[str, object] | None:
        nonlocal failures
        if failures:
            failures -= 1
            raise StoreError("throttled")
        return await read(session)

    h.auth.get_creds = flaky  # type: ignore[method-assign]
    await h.manager.start()
    await h.bridge.wait_calls("start", 1, timeout=5)
    s = h.manager.get(S1)
    assert failures == 0 and s.last_error is not None and "reading the creds failed" in s.last_error.message
    assert h.bridge.starts[0][1] == CREDS


async def test_a_pairing_whose_creds_never_reached_the_store_is_stopped_not_shown_a_new_qr(harness: Harness) -> None:
    await harness.start()
    await harness.manager.create(S1)
    await harness.bridge.wait_calls("start", 1)
    await harness.bridge.emit("connection.update", "s1", {"qr": "2@x"})
    await harness.bridge.emit("connection.update", "s1", {"isNewLogin": True})
    await harness.bridge.emit("connection.update", "s1", close(515, credsSaved=False))
    s = harness.manager.get(S1)
    assert s.state == SessionState.STOPPED
    assert s.last_error is not None and "Linked devices" in s.last_error.message
    assert await harness.auth.get_creds(S1) is None
    await asyncio.sleep(0.2)
    assert harness.bridge.count("start") == 1, "no fresh QR for a device the phone already lists"


# ---- what a reply for a session can do (the outbound consumer asks) ----


async def test_reply_readiness_follows_each_session(harness: Harness) -> None:
    m, bridge = harness.manager, harness.bridge
    await harness.start("s1", "s2", "s3")
    assert await m.reply_readiness(S1) is Readiness.WAIT, "starting after a restart"
    for sid in ("s1", "s2", "s3"):
        await bridge.emit("connection.update", sid, OPEN)
    assert await m.reply_readiness(S1) is Readiness.READY
    await bridge.emit("connection.update", "s1", close(503))
    assert m.get(S1).state == SessionState.RECONNECTING
    assert await m.reply_readiness(S1) is Readiness.WAIT
    await bridge.emit("connection.update", "s2", close(440))
    assert await m.reply_readiness(SessionId("s2")) is Readiness.WAIT, "a conflict ends with a restart"
    await bridge.emit("connection.update", "s3", close(401))
    assert await m.reply_readiness(SessionId("s3")) is Readiness.WIPED
    await m.delete(S1)
    assert await m.reply_readiness(S1) is Readiness.UNKNOWN
    assert await m.reply_readiness(SessionId("never")) is Readiness.UNKNOWN
    await harness.auth.put_creds(SessionId("new-elsewhere"), CREDS)  # created by another connector, not seen yet
    assert await m.reply_readiness(SessionId("new-elsewhere")) is Readiness.ELSEWHERE


async def test_reply_readiness_of_a_session_owned_elsewhere(make_harness: MakeHarness) -> None:
    h = with_leases(make_harness)
    await owned_by_other(h, 30)
    assert await h.manager.reply_readiness(S1) is Readiness.ELSEWHERE


async def test_reply_readiness_after_the_qr_window_ended_unpaired(harness: Harness) -> None:
    await harness.start()
    await harness.manager.create(S1)
    await harness.bridge.wait_calls("start", 1)
    await harness.bridge.emit("connection.update", "s1", {"qr": "2@x"})
    assert await harness.manager.reply_readiness(S1) is Readiness.WAIT
    await harness.bridge.emit("connection.update", "s1", close(408, reason="QR refs attempts ended"))
    assert await harness.manager.reply_readiness(S1) is Readiness.WIPED


async def test_its_own_lease_not_renewed_in_time_reconnects_rather_than_showing_owned_elsewhere(
    make_harness: MakeHarness,
) -> None:
    """The store was unreachable for a while: the keeper counts the lease as lost, but nobody else holds it."""
    h = with_leases(make_harness)
    await h.start("s1")
    await h.bridge.emit("connection.update", "s1", OPEN)
    assert h.manager.ownership.keeper is not None
    lease = h.manager.ownership.keeper.held(S1)
    assert lease is not None
    h.manager.ownership.keeper._lost(lease, "it could not be renewed before it expires")
    await h.bridge.wait_calls("stop", 1, timeout=2)
    s = h.manager.get(S1)
    assert s.owner is None and s.state == SessionState.RECONNECTING
    assert await h.manager.reply_readiness(S1) is Readiness.WAIT, "its replies wait, they do not bounce"
    await h.bridge.wait_calls("start", 2, timeout=5)  # the lease is taken again
