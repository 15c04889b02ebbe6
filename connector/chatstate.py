"""What a contact sees of the chatbot at work besides its replies: "typing…" in their chat while the bot works on
their message, and the message marked read once it is answered (DESIGN section 7). The outbound consumer drives it
from the queue: an ``outbound.typing`` message starts or stops "typing…", a reply stops it just before it is sent,
and a sent reply's ``mark_read`` key is marked read.

- "Typing…" is Baileys' chat presence (``sendPresenceUpdate("composing", jid)``: a ``<chatstate>`` stanza to that
  chat only). The contact's phone drops it after about 25 s, so it is sent again every ``refresh_s`` until a reply
  goes out, the function says the bot finished without one, or the bound the function gave (``expires_at``: when
  it stops waiting for the bot) passes; then ``paused`` is sent.
- ``paused`` goes *before* the reply's send, not after: sent after, a refresh falling between the two would show
  "typing…" again under the answer. The phone replaces the indicator with the message anyway.
- Neither ``available`` presence nor ``presenceSubscribe`` is sent first. A chat state needs neither in Baileys
  (it sends the stanza as is), and announcing the account online is what the bridge avoids on purpose
  (``markOnlineOnConnect`` off: an account that is online gets no notifications on the owner's phone).
  ``presenceSubscribe`` asks for the *contact's* presence, which nothing here uses.
- Best effort throughout: a session that is not open here, a bridge that fails or is slow (``call_timeout_s``)
  loses the indicator, never a reply. A chat's typing state lives in memory only (a restart loses it, which ends
  "typing…" on the phone by itself), for at most ``max_typing`` chats at once; beyond that new ones are not shown.
- A message is marked read once, however many replies name it: the keys marked recently (``read_memory``) are
  remembered; one marked again after they are forgotten or after a restart costs a redundant receipt, nothing else.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from connector.lru import Lru
from connector.tasks import cancel, spawn
from connector.types import SessionId

ChatState = Literal["composing", "paused"]


class ChatSignals(Protocol):
    """The session manager as ``ChatStates`` sees it. Both raise when the session is not open here."""

    async def send_chat_state(self, sid: SessionId, to: str, state: ChatState) -> None: ...

    async def mark_read(self, sid: SessionId, key: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class ChatStateSettings:
    refresh_s: float = 10.0
    """How often "typing…" is sent again while shown (the phone drops it after about 25 s without one)."""
    tick_s: float = 1.0
    """How often shown indicators are checked for a refresh or their end."""
    max_typing: int = 1000
    """Chats showing "typing…" at once at most."""
    max_for_s: float = 900.0
    """Longest "typing…" whatever the bound a message asks for (the longest a Lambda invocation can wait)."""
    read_memory: int = 10_000
    """Messages remembered as marked read."""
    call_timeout_s: float = 5.0
    """A presence or read call the bridge has not answered by then is given up (a reply may be waiting behind it)."""


@dataclass
class _Typing:
    until: float
    refresh_at: float


class ChatStates:
    def __init__(
        self,
        signals: ChatSignals,
        settings: ChatStateSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.log = logging.getLogger("wa_relay.chatstate")
        self.signals = signals
        self.settings = settings or ChatStateSettings()
        self._clock = clock
        self._wall = wall
        self._typing: dict[tuple[SessionId, str], _Typing] = {}
        self._read: Lru[tuple[SessionId, str, str, str], bool] = Lru(self.settings.read_memory)
        self._ticker: asyncio.Task[None] | None = None
        self.composing_sent = 0
        self.paused_sent = 0
        self.read_sent = 0
        self.dropped = 0
        """Typing messages not shown: expired on arrival, over ``max_typing``, or their session not open here."""

    @property
    def typing_chats(self) -> int:
        return len(self._typing)

    def is_typing(self, sid: SessionId, to: str) -> bool:
        return (sid, to) in self._typing

    async def start(self) -> None:
        self._ticker = spawn(self._tick_forever(), name="chat-states")

    async def stop(self) -> None:
        """Stop refreshing and say ``paused`` where "typing…" is shown (the bridge is still up: it stops later)."""
        await cancel(self._ticker)
        self._ticker = None
        shown, self._typing = list(self._typing), {}
        await asyncio.gather(*(self._send(sid, to, "paused") for sid, to in shown))

    # ---- what the outbound consumer asks for ----

    async def typing(self, sid: SessionId, to: str, expires_at_ms: int) -> bool:
        """Show "typing…" in chat ``to`` until ``expires_at_ms`` (Unix ms) at most; whether it is shown."""
        left = min(expires_at_ms / 1000 - self._wall(), self.settings.max_for_s)
        key = (sid, to)
        if left <= 0:
            return self._drop(sid, to, "its bound has passed")
        if key not in self._typing and len(self._typing) >= self.settings.max_typing:
            return self._drop(sid, to, f"{len(self._typing)} chats show it already")
        if not await self._send(sid, to, "composing"):
            return self._drop(sid, to, "its session cannot send")
        now = self._clock()
        current = self._typing.get(key)
        until = max(now + left, current.until if current else 0.0)
        self._typing[key] = _Typing(until=until, refresh_at=now + self.settings.refresh_s)
        return True

    async def paused(self, sid: SessionId, to: str) -> None:
        """End "typing…" in chat ``to`` if it is shown (a reply is about to go out, or the bot gave none)."""
        if self._typing.pop((sid, to), None) is not None:
            await self._send(sid, to, "paused")

    async def read(self, sid: SessionId, key: dict[str, Any]) -> None:
        """Mark the message ``key`` read, unless it was already."""
        marker = (sid, str(key.get("remoteJid")), str(key.get("participant") or ""), str(key.get("id")))
        if marker in self._read:
            return
        try:
            await asyncio.wait_for(self.signals.mark_read(sid, key), self.settings.call_timeout_s)
        except Exception as e:
            self.log.getChild(sid).debug("marking message %s read failed: %s", key.get("id"), e)
            return
        self._read.put(marker, True)
        self.read_sent += 1

    # ---- refreshing ----

    async def tick(self) -> None:
        """Refresh the indicators that are due, end the ones whose bound passed."""
        now = self._clock()
        ended = [key for key, t in self._typing.items() if t.until <= now]
        for key in ended:
            del self._typing[key]
        due = [key for key, t in self._typing.items() if t.refresh_at <= now]
        for key in due:
            self._typing[key].refresh_at = now + self.settings.refresh_s
        await asyncio.gather(
            *(self._send(sid, to, "paused") for sid, to in ended),
            *(self._refresh(sid, to) for sid, to in due),
        )

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.tick_s)
            await self.tick()

    async def _refresh(self, sid: SessionId, to: str) -> None:
        # Checked when the call is made, not when the tick began: a reply's ``paused`` issued in between must stay
        # the last word.
        if (sid, to) not in self._typing:
            return
        if not await self._send(sid, to, "composing"):
            self._typing.pop((sid, to), None)  # the session closed: nothing to refresh any more

    async def _send(self, sid: SessionId, to: str, state: ChatState) -> bool:
        try:
            await asyncio.wait_for(self.signals.send_chat_state(sid, to, state), self.settings.call_timeout_s)
        except Exception as e:
            self.log.getChild(sid).debug("chat state %s to %s not sent: %s", state, to, e)
            return False
        if state == "composing":
            self.composing_sent += 1
        else:
            self.paused_sent += 1
        return True

    def _drop(self, sid: SessionId, to: str, why: str) -> bool:
        self.dropped += 1
        self.log.getChild(sid).debug("typing in %s not shown: %s", to, why)
        return False
