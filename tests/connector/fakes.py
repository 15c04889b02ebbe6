"""Test doubles for the connector service: a fake bridge the relay drives, and message builders."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from connector.sidecar.errors import SocketNotOpen
from connector.sidecar.types import (
    EVENT_MODELS,
    MessageKey,
    MessageSendResult,
    SessionInfo,
    SessionListResult,
    SessionStartResult,
    WireModel,
)
from connector.types import Jid, SessionId


class FakeBridge:
    """Has the ``BridgeClient`` methods the relay calls; records them and lets the test emit events."""

    def __init__(self, host: Any) -> None:
        self.host = host
        self.connected = False
        self.calls: list[tuple[str, Any]] = []
        self.starts: list[tuple[SessionId, dict[str, Any] | None, float]] = []
        self.sent: list[dict[str, Any]] = []
        self.not_open: set[str] = set()
        self.fail_start = 0
        self.process_starts = 0
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
