"""Test doubles for the connector service: a fake bridge the session manager drives, a harness that wires a
manager over memory stores, and message builders."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from connector.config import SessionSettings
from connector.manager import SessionManager
from connector.publish import InboundPublisher, MemoryPublisher
from connector.sidecar.errors import SidecarNotConnected, SocketNotOpen
from connector.sidecar.types import (
    EVENT_MODELS,
    MessageKey,
    MessageSendResult,
    SessionInfo,
    SessionListResult,
    SessionStartResult,
    WireModel,
)
from connector.store import LidMapStore, MemoryAuthStore, MemoryLidMapStore, ReplyLog
from connector.types import Jid, SessionId

S1 = SessionId("s1")
CREDS = {"me": {"id": "15550001111:5@s.whatsapp.net"}, "noiseKey": {"private": {"type": "Buffer", "data": "AA=="}}}
OPEN = {"connection": "open", "me": {"id": "15550001111:5@s.whatsapp.net", "lid": "99990001111:5@lid"}}
FAST = SessionSettings(
    session_start_interval_s=0.0, session_start_jitter_s=0.0, reconnect_initial_s=0.05, bridge_restart_step_s=0.01
)
"""Session settings for unit tests: no spacing between connects, short backoffs."""


class FakeBridge:
    """Has the ``BridgeClient`` methods the manager calls; records them and lets the test emit events."""

    def __init__(self, host: Any) -> None:
        self.host = host
        self.connected = False
        self.calls: list[tuple[str, Any]] = []
        self.starts: list[tuple[SessionId, dict[str, Any] | None, float]] = []
        self.sent: list[dict[str, Any]] = []
        self.not_open: set[str] = set()
        self.fail_start = 0
        self.process_starts = 0
        self.released: list[tuple[SessionId, str]] = []
        """Every message whose receipt the manager released, in order."""
        self.received_at: dict[str, int] = {}
        """``lastReceivedAt`` (ms) that ``session.list`` reports per session."""
        self._closed = asyncio.Event()
        self._changed = asyncio.Condition()

    async def start(self) -> None:
        if self.fail_start:
            self.fail_start -= 1
            raise RuntimeError("bridge failed to start")
        self.process_starts += 1
        self._closed = asyncio.Event()
        self.connected = True

    async def stop(self, timeout: float = 10.0) -> int | None:
        self.connected = False
        self._closed.set()
        return 0

    async def wait_closed(self) -> None:
        await self._closed.wait()

    def crash(self) -> None:
        self.connected = False
        self._closed.set()

    async def _record(self, name: str, value: Any) -> None:
        if not self.connected:
            raise SidecarNotConnected("bridge not running")  # as the real client: its pipe is closed
        async with self._changed:
            self.calls.append((name, value))
            self._changed.notify_all()

    async def start_session(
        self, session: SessionId, creds: dict[str, Any] | None, config: Any = None
    ) -> SessionStartResult:
        self.starts.append((session, creds, time.monotonic()))
        await self._record("start", session)
        return SessionStartResult(session=session, generated_creds=creds is None)

    async def stop_session(self, session: SessionId) -> None:
        await self._record("stop", session)

    async def logout(self, session: SessionId) -> None:
        await self._record("logout", session)

    async def list_sessions(self) -> SessionListResult:
        return SessionListResult(
            sessions=[SessionInfo(session=s, lastReceivedAt=ms) for s, ms in self.received_at.items()]
        )

    async def request_pairing_code(self, session: SessionId, phone: str, code: str | None = None) -> str:
        await self._record("pairing", (session, phone))
        return "ABCD1234"

    async def send_message(
        self,
        session: SessionId,
        to: Jid,
        content: dict[str, Any],
        *,
        message_id: str | None = None,
        quoted: dict[str, Any] | None = None,
    ) -> MessageSendResult:
        if session in self.not_open:
            raise SocketNotOpen("not open", code="not_connected")
        self.sent.append({"session": session, "to": to, "content": content, "message_id": message_id, "quoted": quoted})
        await self._record("send", session)
        return MessageSendResult(key=MessageKey(remoteJid=to, fromMe=True, id=message_id or "3EB0GENERATED"))

    async def release_receipts(self, session: SessionId, ids: list[str]) -> int:
        self.released.extend((session, i) for i in ids)
        await self._record("release", (session, list(ids)))
        return len(ids)

    async def send_presence(self, session: SessionId, type: str, to: Jid | None = None) -> None:
        await self._record("presence", (session, type, to))

    async def send_read(self, session: SessionId, keys: list[MessageKey]) -> None:
        await self._record("read", (session, [k.model_dump(exclude_none=True) for k in keys]))

    # ---- test helpers ----

    async def emit(self, event: str, session: str | None, data: dict[str, Any]) -> None:
        model = EVENT_MODELS.get(event)
        parsed: WireModel | dict[str, Any] = model.model_validate(data) if model else data
        await self.host.on_event(event, SessionId(session) if session else None, parsed)

    async def wait_calls(self, name: str, count: int, timeout: float = 5.0) -> list[Any]:
        def found() -> bool:
            return len([c for c in self.calls if c[0] == name]) >= count

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(found), timeout)
        return [v for n, v in self.calls if n == name]

    def count(self, name: str) -> int:
        return len([c for c in self.calls if c[0] == name])


def wa_message(
    remote: str,
    msg_id: str,
    *,
    alt: str | None = None,
    participant: str | None = None,
    participant_alt: str | None = None,
    from_me: bool = False,
    message: dict[str, Any] | None = None,
    stub: int | None = None,
    stub_params: list[Any] | None = None,
    push_name: str | None = "Alice",
    ts: int | str = 1795646775,
) -> dict[str, Any]:
    key: dict[str, Any] = {"remoteJid": remote, "fromMe": from_me, "id": msg_id, "participant": participant or ""}
    if alt:
        key["remoteJidAlt"] = alt
        key["addressingMode"] = "lid" if remote.endswith("@lid") else "pn"
    if participant_alt:
        key["participantAlt"] = participant_alt
    out: dict[str, Any] = {"key": key, "messageTimestamp": ts, "pushName": push_name}
    if message is not None or stub is None:
        out["message"] = message if message is not None else {"conversation": "hello"}
    if stub is not None:
        out["messageStubType"] = stub
        out["messageStubParameters"] = stub_params or ["Bad MAC"]
    return out


def close(code: int | None, **extra: Any) -> dict[str, Any]:
    """A ``connection.update`` that closes the socket with ``code``."""
    return {"connection": "close", "statusCode": code, **extra}


class Harness:
    """A session manager over memory stores and a ``FakeBridge``. With ``leases=True`` it runs a lease keeper over
    the memory lease store (``settings.connector_id`` is this connector)."""

    def __init__(
        self,
        settings: SessionSettings = FAST,
        *,
        leases: bool = False,
        publisher: InboundPublisher | None = None,
        lid_map: LidMapStore | None = None,
        auth: MemoryAuthStore | None = None,
        reply_log: ReplyLog | None = None,
    ) -> None:
        self.auth = auth or MemoryAuthStore()
        self.leases = self.auth.leases
        self.lid_map = lid_map or MemoryLidMapStore()
        self.publisher = publisher or MemoryPublisher()
        self.fatal: list[int] = []
        self.manager = SessionManager(
            settings,
            bridge=FakeBridge,
            auth=self.auth,
            lid_map=self.lid_map,
            publisher=self.publisher,
            leases=self.leases if leases else None,
            reply_log=reply_log,
            on_fatal=self.fatal.append,
        )

    @property
    def bridge(self) -> FakeBridge:
        assert isinstance(self.manager.bridge, FakeBridge)
        return self.manager.bridge

    async def start(self, *sessions: str) -> Harness:
        """Store creds for ``sessions``, start the manager and wait until each was started."""
        for sid in sessions:
            await self.auth.put_creds(SessionId(sid), {**CREDS, "sid": sid})
        await self.manager.start()
        if sessions:
            await self.bridge.wait_calls("start", len(sessions))
        return self


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")
