"""A test-side parent for the bridge: answers key/creds calls from memory and records every event."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connector.sidecar import BridgeClient, BridgeCommand
from connector.sidecar.types import ConnectionUpdate, MessageKey, WireModel
from connector.store import MemoryAuthStore
from connector.types import SessionId

ROOT = Path(__file__).resolve().parents[2]
BRIDGE_SCRIPT = ROOT / "bridge" / "dist" / "main.js"


@dataclass
class Recorded:
    seq: int
    event: str
    session: SessionId | None
    data: Any


class RecordingHost:
    def __init__(self, store: MemoryAuthStore | None = None) -> None:
        self.store = store or MemoryAuthStore()
        self.events: list[Recorded] = []
        self.messages: dict[str, dict[str, Any]] = {}
        self.calls: dict[str, int] = {}
        self.written: list[Any] = []
        """Every creds object and key value the bridge handed over, deletions included: the secrets to look
        for in the bridge's output even after a logout wiped the store."""
        self._changed = asyncio.Condition()
        self.read_delay: Callable[[str, list[str]], float] | None = None
        """Seconds to hold a ``keys.get`` of (type, ids) before answering: a slow store read, injected."""

    # ---- BridgeHost ----
    async def keys_get(self, session: SessionId, type: str, ids: list[str]) -> dict[str, Any]:
        self.calls["keys.get"] = self.calls.get("keys.get", 0) + 1
        if self.read_delay is not None and (delay := self.read_delay(type, ids)) > 0:
            await asyncio.sleep(delay)
        return await self.store.get_keys(session, type, ids)

    async def keys_set(self, session: SessionId, data: dict[str, dict[str, Any]]) -> None:
        self.calls["keys.set"] = self.calls.get("keys.set", 0) + 1
        for type_, values in data.items():
            # A pre-key item is a bare key pair: mark it secret as a whole.
            self.written += [{"private": v} if type_ == "pre-key" else v for v in values.values() if v is not None]
        await self.store.set_keys(session, data)

    async def creds_save(self, session: SessionId, creds: dict[str, Any]) -> None:
        self.calls["creds.save"] = self.calls.get("creds.save", 0) + 1
        self.written.append(creds)
        await self.store.put_creds(session, creds)

    async def message_get(self, session: SessionId, key: MessageKey) -> dict[str, Any] | None:
        return self.messages.get(key.id or "")

    async def on_event(self, event: str, session: SessionId | None, data: WireModel | dict[str, Any]) -> None:
        async with self._changed:
            self.events.append(Recorded(len(self.events), event, session, data))
            self._changed.notify_all()

    # ---- test helpers ----
    def cursor(self) -> int:
        return len(self.events)

    async def wait_for(
        self,
        event: str,
        session: str | None = None,
        pred: Callable[[Any], bool] = lambda _d: True,
        *,
        after: int = 0,
        timeout: float = 30.0,
    ) -> Any:
        """The data of the first matching event at or after position ``after``."""

        def find() -> Any:
            for rec in self.events[after:]:
                if rec.event == event and (session is None or rec.session == session) and pred(rec.data):
                    return rec
            return None

        async with self._changed:
            try:
                rec = await asyncio.wait_for(self._changed.wait_for(find), timeout)
            except TimeoutError:
                seen = [(r.event, r.session) for r in self.events[after:]][-20:]
                raise AssertionError(f"no {event} for {session} within {timeout}s; last events: {seen}") from None
        return rec.data

    async def wait_connection(
        self, session: str, pred: Callable[[ConnectionUpdate], bool], *, after: int = 0, timeout: float = 30.0
    ) -> ConnectionUpdate:
        data = await self.wait_for("connection.update", session, pred, after=after, timeout=timeout)
        assert isinstance(data, ConnectionUpdate)
        return data

    def of(self, event: str, session: str | None = None) -> list[Any]:
        return [r.data for r in self.events if r.event == event and (session is None or r.session == session)]


class BridgeRun:
    """One bridge process with its host, plus the raw lines it wrote (for the key-leak check)."""

    def __init__(self, env: dict[str, str], host: RecordingHost, output: list[tuple[str, bytes]]) -> None:
        self.host = host
        self.output = output
        self.client = BridgeClient(
            BridgeCommand(script=BRIDGE_SCRIPT, env=env, cwd=ROOT),
            host,
            output_sink=lambda stream, line: output.append((stream, line)),
        )

    async def __aenter__(self) -> BridgeRun:
        await self.client.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.client.process.returncode is None:
            await self.client.stop()
