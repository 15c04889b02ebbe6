"""The bridge's host: key and creds writes pass through durably, are refused once the session is gone, and
``message.get`` answers from the bounded message cache, else from the reply log's send records."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from connector.errors import SessionGone, StoreError
from connector.replies import Replies
from connector.sidecar.types import MessageKey
from connector.store import MemoryReplyLog, SentReply
from connector.types import SessionId
from tests.connector.fakes import CREDS, OPEN, S1, Harness, close, wa_message


async def test_keys_and_creds_pass_through_durably(harness: Harness) -> None:
    await harness.start("s1")
    host = harness.manager.host
    value = {"type": "Buffer", "data": "AQID"}
    await host.keys_set(S1, {"pre-key": {"1": {"public": value}, "2": None}, "tctoken": {"a@lid": {"t": 1}}})
    assert await harness.auth.get_keys(S1, "pre-key", ["1", "2"]) == {"1": {"public": value}}
    assert await host.keys_get(S1, "tctoken", ["a@lid", "b@lid"]) == {"a@lid": {"t": 1}}
    await host.keys_set(S1, {"pre-key": {"1": None}})
    assert await host.keys_get(S1, "pre-key", ["1"]) == {}
    await host.creds_save(S1, CREDS)
    assert await harness.auth.get_creds(S1) == CREDS


async def test_writes_for_an_unknown_or_deleted_session_are_refused(harness: Harness) -> None:
    await harness.start("s1")
    host = harness.manager.host
    with pytest.raises(SessionGone):
        await host.keys_set(SessionId("nobody"), {"pre-key": {"1": {"k": 1}}})
    await harness.manager.delete(S1)
    with pytest.raises(SessionGone):
        await host.creds_save(S1, CREDS)
    with pytest.raises(SessionGone):
        await host.keys_set(S1, {"session": {"a": {"x": 1}}})
    assert await harness.auth.list_sessions() == []


async def test_message_get_from_the_bounded_cache(make_harness: Callable[..., Harness]) -> None:
    h = await make_harness(message_cache_size=2).start("s1")
    for i in range(3):
        message = wa_message("1@lid", f"M{i}", message={"conversation": f"t{i}"})
        await h.bridge.emit("messages.upsert", "s1", {"type": "append", "messages": [message]})
    host = h.manager.host
    assert await host.message_get(S1, MessageKey(id="M2")) == {"conversation": "t2"}
    assert await host.message_get(S1, MessageKey(id="M0")) is None  # evicted
    assert await host.message_get(SessionId("other"), MessageKey(id="M2")) is None


async def test_a_failing_event_handler_is_logged_and_the_next_event_still_handled(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    await harness.start("s1")

    async def broken(*args: object) -> None:
        raise RuntimeError("boom")

    harness.manager.ingest.on_upsert = broken  # type: ignore[method-assign]
    await harness.bridge.emit("messages.upsert", "s1", {"type": "notify", "messages": [wa_message("1@lid", "A")]})
    assert "handling messages.upsert of s1 failed" in caplog.text
    await harness.bridge.emit("connection.update", "s1", {"qr": "2@x"})
    assert harness.manager.get(S1).qr == "2@x"


async def test_a_write_from_a_closed_socket_is_refused_until_the_next_one_runs(harness: Harness) -> None:
    await harness.start("s1")
    host = harness.manager.host
    await harness.bridge.emit("connection.update", "s1", close(503))
    with pytest.raises(SessionGone, match="no socket running"):
        await host.keys_set(S1, {"session": {"a": {"x": 1}}})
    await harness.bridge.wait_calls("start", 2)  # reconnected after the backoff
    await host.keys_set(S1, {"session": {"a": {"x": 2}}})
    assert await harness.auth.get_keys(S1, "session", ["a"]) == {"a": {"x": 2}}


async def test_the_next_socket_waits_for_a_write_of_the_previous_one_still_in_flight(harness: Harness) -> None:
    await harness.start("s1")
    landed = asyncio.Event()
    release = asyncio.Event()
    original = harness.auth.set_keys

    async def slow(session: SessionId, data: dict[str, dict[str, object]]) -> None:
        await release.wait()
        await original(session, data)
        landed.set()

    harness.auth.set_keys = slow  # type: ignore[method-assign]
    write = asyncio.create_task(harness.manager.host.keys_set(S1, {"session": {"a": {"v": "old"}}}))
    await asyncio.sleep(0.05)
    await harness.bridge.emit("connection.update", "s1", close(515))  # restart at once...
    await asyncio.sleep(0.2)
    assert harness.bridge.count("start") == 1, "...but not while the old socket's write is still running"
    release.set()
    await write
    await harness.bridge.wait_calls("start", 2)
    assert landed.is_set()


async def test_message_get_falls_back_to_what_was_sent_after_a_restart() -> None:
    """A retry the contact's phone asks for after a restart: the new process's cache is empty, the log is not."""
    log = MemoryReplyLog()
    before = await Harness(reply_log=log).start("s1")
    try:
        await before.bridge.emit("connection.update", "s1", OPEN)
        replies = Replies(before.manager, log, before.manager.messages)
        await replies.record(await replies.send(S1, "1@lid", "sent before the restart", message_id="3EB0AAA"))
    finally:
        await before.manager.stop()
    after = await Harness(reply_log=log).start("s1")
    try:
        host = after.manager.host
        assert await host.message_get(S1, MessageKey(id="3EB0AAA")) == {
            "extendedTextMessage": {"text": "sent before the restart"}
        }
        assert await host.message_get(SessionId("s2"), MessageKey(id="3EB0AAA")) is None, "another session's"
        assert await host.message_get(S1, MessageKey(id="3EB0BBB")) is None
    finally:
        await after.manager.stop()


async def test_message_get_answers_unknown_when_the_log_fails(caplog: pytest.LogCaptureFixture) -> None:
    class Down(MemoryReplyLog):
        async def get_sent(self, session: SessionId, message_id: str) -> SentReply | None:
            raise StoreError("table unreachable")

    h = await Harness(reply_log=Down()).start("s1")
    try:
        assert await h.manager.host.message_get(S1, MessageKey(id="3EB0AAA")) is None
        assert "the reply log failed" in caplog.text
    finally:
        await h.manager.stop()


async def test_a_key_read_the_store_refuses_for_a_moment_is_retried_not_failed(harness: Harness) -> None:
    """Baileys does not retry a failed read: it would NACK the message, which comes back only at the next login."""
    await harness.start("s1")
    await harness.auth.set_keys(S1, {"session": {"a": {"x": 1}}})
    read = harness.auth.get_keys
    failures = 3

    async def throttled(session: SessionId, type: str, ids: list[str]) -> dict[str, object]:
        nonlocal failures
        if failures:
            failures -= 1
            raise StoreError("ThrottlingException")
        return await read(session, type, ids)

    harness.auth.get_keys = throttled  # type: ignore[method-assign]
    assert await harness.manager.host.keys_get(S1, "session", ["a"]) == {"a": {"x": 1}}
    assert failures == 0
