""" "typing…" and read marks (``connector.chatstate``) with a fake clock and fake signals: refreshed while shown,
ended by a reply, by the function or by its bound, bounded in memory, and never in the way when a session cannot
send."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from connector.chatstate import ChatState, ChatStates, ChatStateSettings
from connector.errors import SessionNotOpen
from connector.types import SessionId

S1 = SessionId("s1")
BOB = "88887770002@lid"
ALICE = "15557770001@s.whatsapp.net"
NOW = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Signals:
    """The session manager's two calls, recorded in the order they were made."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.closed: set[str] = set()
        self.read_fails = 0

    async def send_chat_state(self, sid: SessionId, to: str, state: ChatState) -> None:
        if sid in self.closed:
            raise SessionNotOpen(f"session {sid} is reconnecting, not open")
        self.calls.append((state, sid, to))

    async def mark_read(self, sid: SessionId, key: dict[str, Any]) -> None:
        if self.read_fails:
            self.read_fails -= 1
            raise SessionNotOpen("closed")
        self.calls.append(("read", sid, str(key["id"])))

    def states(self, to: str | None = None) -> list[str]:
        return [c[0] for c in self.calls if c[0] != "read" and (to is None or c[2] == to)]


def make(**settings: Any) -> tuple[ChatStates, Signals, Clock]:
    signals, clock = Signals(), Clock()
    states = ChatStates(signals, ChatStateSettings(**settings), clock=clock, wall=lambda: NOW + clock.t - 1000.0)
    return states, signals, clock


def ms(seconds_from_now: float) -> int:
    return int((NOW + seconds_from_now) * 1000)


async def test_typing_is_refreshed_every_refresh_s_until_a_reply_ends_it() -> None:
    states, signals, clock = make(refresh_s=10)
    assert await states.typing(S1, BOB, ms(60))
    assert signals.states() == ["composing"]
    for _ in range(9):
        clock.t += 1
        await states.tick()
    assert signals.states() == ["composing"], "not before refresh_s"
    clock.t += 1
    await states.tick()
    clock.t += 10
    await states.tick()
    assert signals.states() == ["composing"] * 3

    await states.paused(S1, BOB)  # the reply is about to go out

    assert signals.states() == ["composing"] * 3 + ["paused"]
    clock.t += 30
    await states.tick()
    assert signals.states()[-1] == "paused" and not states.is_typing(S1, BOB)


async def test_typing_ends_with_paused_when_its_bound_passes() -> None:
    states, signals, clock = make(refresh_s=10)
    assert await states.typing(S1, BOB, ms(25))
    for _ in range(30):
        clock.t += 1
        await states.tick()
    assert signals.states() == ["composing", "composing", "composing", "paused"], "at 0, 10 and 20 s; ended at 25"
    assert states.typing_chats == 0


async def test_the_bound_is_capped_by_max_for_s() -> None:
    states, signals, clock = make(refresh_s=10, max_for_s=15)
    assert await states.typing(S1, BOB, ms(3600))
    clock.t += 16
    await states.tick()
    assert signals.states()[-1] == "paused"


async def test_a_typing_message_that_arrives_after_its_bound_is_not_shown() -> None:
    states, signals, _ = make()
    assert not await states.typing(S1, BOB, ms(-1))
    assert signals.calls == [] and states.dropped == 1


async def test_paused_without_typing_sends_nothing() -> None:
    states, signals, _ = make()
    await states.paused(S1, BOB)
    assert signals.calls == []


async def test_chats_are_separate() -> None:
    states, signals, clock = make(refresh_s=10)
    await states.typing(S1, BOB, ms(60))
    await states.typing(S1, ALICE, ms(60))
    await states.typing(SessionId("s2"), BOB, ms(60))
    await states.paused(S1, BOB)
    clock.t += 10
    await states.tick()
    assert signals.states(BOB) == ["composing", "composing", "paused", "composing"]
    assert [c[1] for c in signals.calls if c[2] == BOB] == ["s1", "s2", "s1", "s2"]
    assert signals.states(ALICE) == ["composing", "composing"]


async def test_at_most_max_typing_chats_are_kept() -> None:
    states, _, _ = make(max_typing=3)
    chats = [f"1555000{i:04d}@s.whatsapp.net" for i in range(5)]
    shown = [await states.typing(S1, chat, ms(60)) for chat in chats]
    assert shown == [True, True, True, False, False]
    assert states.typing_chats == 3 and states.dropped == 2
    assert await states.typing(S1, chats[0], ms(90)), "a chat already shown may be extended"
    await states.paused(S1, chats[1])
    assert await states.typing(S1, chats[4], ms(60)), "room again once one ended"
    assert states.typing_chats == 3


async def test_a_session_that_cannot_send_loses_the_indicator_and_nothing_else() -> None:
    states, signals, clock = make(refresh_s=10)
    signals.closed.add(S1)
    assert not await states.typing(S1, BOB, ms(60))
    assert states.typing_chats == 0 and states.dropped == 1

    signals.closed.clear()
    assert await states.typing(S1, BOB, ms(60))
    signals.closed.add(S1)  # closed while "typing…" is shown
    clock.t += 10
    await states.tick()
    assert states.typing_chats == 0, "nothing left to refresh"


async def test_a_slow_bridge_is_given_up_after_call_timeout_s() -> None:
    states, signals, _ = make(call_timeout_s=0.05)

    async def stuck(sid: SessionId, to: str, state: ChatState) -> None:
        await asyncio.sleep(10)

    signals.send_chat_state = stuck  # type: ignore[method-assign]
    async with asyncio.timeout(2):
        assert not await states.typing(S1, BOB, ms(60))
        await states.paused(S1, BOB)


async def test_a_refresh_never_follows_the_replys_paused() -> None:
    """The tick picks the chats due for a refresh, then sends; a reply's ``paused`` issued in between must stay the
    last word in the chat, or "typing…" would show again under the answer."""
    states, signals, clock = make(refresh_s=10)
    await states.typing(S1, BOB, ms(60))
    clock.t += 10
    tick = asyncio.create_task(states.tick())
    await asyncio.sleep(0)  # the tick has chosen BOB's refresh; its send has not run yet
    await states.paused(S1, BOB)
    await tick
    assert signals.states() == ["composing", "paused"]


async def test_a_message_is_marked_read_once_however_many_replies_name_it() -> None:
    states, signals, _ = make(read_memory=2)
    key = {"remoteJid": BOB, "fromMe": False, "id": "M1"}
    for _ in range(3):
        await states.read(S1, key)
    await states.read(SessionId("s2"), key)
    assert [c for c in signals.calls if c[0] == "read"] == [("read", "s1", "M1"), ("read", "s2", "M1")]
    assert states.read_sent == 2


async def test_a_read_that_failed_is_tried_again_by_the_next_reply() -> None:
    states, signals, _ = make()
    signals.read_fails = 1
    key = {"remoteJid": BOB, "fromMe": False, "id": "M2"}
    await states.read(S1, key)
    await states.read(S1, key)
    assert [c for c in signals.calls if c[0] == "read"] == [("read", "s1", "M2")]


async def test_read_memory_is_bounded() -> None:
    states, signals, _ = make(read_memory=2)
    for i in (1, 2, 3, 1):
        await states.read(S1, {"remoteJid": BOB, "id": f"M{i}"})
    assert [c[2] for c in signals.calls] == ["M1", "M2", "M3", "M1"], "M1 was forgotten: marked again, harmlessly"


async def test_stop_ends_every_indicator_with_paused() -> None:
    states, signals, _ = make()
    await states.start()
    await states.typing(S1, BOB, ms(60))
    await states.typing(S1, ALICE, ms(60))
    await states.stop()
    assert sorted(c for c in signals.calls if c[0] == "paused") == [("paused", "s1", ALICE), ("paused", "s1", BOB)]
    assert states.typing_chats == 0
    await states.stop()  # idempotent


async def test_the_running_ticker_refreshes_and_ends() -> None:
    """The same with real time: the ticker task does what the ticks above do."""
    signals = Signals()
    states = ChatStates(signals, ChatStateSettings(refresh_s=0.1, tick_s=0.02))
    await states.start()
    try:
        await states.typing(S1, BOB, int((time.time() + 0.35) * 1000))
        await asyncio.sleep(0.6)
    finally:
        await states.stop()
    got = signals.states()
    assert got[0] == "composing" and got[-1] == "paused"
    assert 3 <= got.count("composing") <= 4, got
