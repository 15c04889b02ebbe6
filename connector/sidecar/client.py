"""Typed client of the Node bridge: starts the process, answers its key-store calls, dispatches its events.

The connector (or a test) supplies a ``BridgeHost``: the bridge never persists anything, it asks its host. The
host's answers to ``keys_set``/``creds_save`` must only return once the data is durable (DESIGN section 4).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from connector.sidecar.errors import InvalidParams, SidecarNotConnected, SidecarProtocolError, SidecarTimeout
from connector.sidecar.process import BridgeCommand, BridgeProcess, OutputSink
from connector.sidecar.rpc import JsonLinesRPC
from connector.sidecar.types import (
    EVENT_MODELS,
    PROTOCOL_VERSION,
    BridgeReady,
    CredsSaveParams,
    KeysGetParams,
    KeysSetParams,
    MessageGetParams,
    MessageKey,
    MessageSendResult,
    PairingCodeParams,
    PairingCodeResult,
    PingResult,
    ReceiptsReleaseResult,
    SessionConfig,
    SessionListResult,
    SessionStartParams,
    SessionStartResult,
    WireModel,
)
from connector.types import Jid, SessionId

M = TypeVar("M", bound=BaseModel)

SEND_TIMEOUT_S = 150.0
"""A send waits longer than the bridge's own bound on it (Baileys' 60 s query timeout plus 30 s): giving up first
would leave the connector not knowing a message the bridge then sent, and a redelivered reply would go out twice."""


class BridgeHost(Protocol):
    """What the bridge's parent provides. Every method may raise; the bridge then sees an error answer."""

    async def keys_get(self, session: SessionId, type: str, ids: list[str]) -> dict[str, Any]: ...

    async def keys_set(self, session: SessionId, data: dict[str, dict[str, Any]]) -> None: ...

    async def creds_save(self, session: SessionId, creds: dict[str, Any]) -> None: ...

    async def message_get(self, session: SessionId, key: MessageKey) -> dict[str, Any] | None: ...

    async def on_event(self, event: str, session: SessionId | None, data: WireModel | dict[str, Any]) -> None: ...


class Bridge(Protocol):
    """The bridge as its users see it: ``BridgeClient`` has it; unit tests pass a fake with the same methods."""

    @property
    def connected(self) -> bool: ...

    async def start(self) -> Any: ...

    async def stop(self, timeout: float = 10.0) -> int | None: ...

    async def wait_closed(self) -> None: ...

    async def start_session(
        self, session: SessionId, creds: dict[str, Any] | None, config: Any = None
    ) -> SessionStartResult: ...

    async def stop_session(self, session: SessionId) -> None: ...

    async def logout(self, session: SessionId) -> None: ...

    async def list_sessions(self) -> SessionListResult: ...

    async def request_pairing_code(self, session: SessionId, phone: str, code: str | None = None) -> str: ...

    async def send_message(
        self,
        session: SessionId,
        to: Jid,
        content: dict[str, Any],
        *,
        message_id: str | None = None,
        quoted: dict[str, Any] | None = None,
    ) -> MessageSendResult: ...

    async def release_receipts(self, session: SessionId, ids: list[str]) -> int: ...

    async def send_presence(self, session: SessionId, type: str, to: Jid | None = None) -> None: ...

    async def send_read(self, session: SessionId, keys: list[MessageKey]) -> None: ...


BridgeFactory = Callable[[BridgeHost], Bridge]
"""Builds a bridge client around the host that answers its requests."""


class BridgeClient:
    def __init__(
        self,
        command: BridgeCommand,
        host: BridgeHost,
        *,
        call_timeout: float = 30.0,
        ready_timeout: float = 30.0,
        output_sink: OutputSink | None = None,
    ) -> None:
        self.log = logging.getLogger("wa_relay.sidecar")
        self.host = host
        self.call_timeout = call_timeout
        self.ready_timeout = ready_timeout
        self.process = BridgeProcess(command, log=self.log, output_sink=output_sink)
        self.ready: BridgeReady | None = None
        self._rpc: JsonLinesRPC | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._ready_fut: asyncio.Future[BridgeReady] | None = None

    # ---- lifecycle -----------------------------------------------------------------------------------------

    async def start(self) -> BridgeReady:
        reader, writer = await self.process.start()
        rpc = JsonLinesRPC(reader, writer, log=self.log, call_timeout=self.call_timeout)
        rpc.add_request_handler("keys.get", self._on_keys_get)
        rpc.add_request_handler("keys.set", self._on_keys_set)
        rpc.add_request_handler("creds.save", self._on_creds_save)
        rpc.add_request_handler("message.get", self._on_message_get)
        rpc.set_event_handler(self._on_event)
        self._rpc = rpc
        self._ready_fut = asyncio.get_running_loop().create_future()
        self._reader_task = asyncio.create_task(rpc.run(), name="bridge-rpc")
        try:
            ready = await asyncio.wait_for(asyncio.shield(self._ready_fut), self.ready_timeout)
        except TimeoutError as e:
            await self.stop()
            raise SidecarTimeout(f"bridge sent no bridge.ready within {self.ready_timeout}s") from e
        except SidecarNotConnected:
            await self.stop()
            raise
        if ready.protocol != PROTOCOL_VERSION:
            await self.stop()
            raise SidecarProtocolError(f"bridge speaks protocol {ready.protocol}, connector {PROTOCOL_VERSION}")
        self.ready = ready
        self.log.info(
            "bridge ready: protocol %d, baileys %s, node %s",
            ready.protocol,
            ready.baileys_version,
            ready.node_version,
        )
        return ready

    async def stop(self, timeout: float = 10.0) -> int | None:
        """Graceful stop: the bridge closes its sockets and we answer its last writes until it exits."""
        code = await self.process.stop(timeout)
        await self._finish()
        return code

    async def kill(self) -> int:
        """SIGKILL, as a crash would (tests, and the supervisor's last resort)."""
        self.process.kill()
        code = await self.process.wait()
        await self._finish()
        return code

    async def wait_closed(self) -> None:
        """Returns when the bridge's pipe closes (the process exited or crashed)."""
        if self._reader_task is not None:
            await asyncio.shield(self._reader_task)

    @property
    def connected(self) -> bool:
        return self._rpc is not None and not self._rpc.closed

    async def _finish(self) -> None:
        if self._rpc is not None:
            await self._rpc.close()
        if self._reader_task is not None:
            await self._reader_task
        if self._ready_fut is not None and not self._ready_fut.done():
            self._ready_fut.set_exception(SidecarNotConnected("bridge exited before bridge.ready"))
            self._ready_fut.exception()

    # ---- calls to the bridge -------------------------------------------------------------------------------

    @property
    def rpc(self) -> JsonLinesRPC:
        if self._rpc is None:
            raise SidecarNotConnected("bridge not started")
        return self._rpc

    async def ping(self) -> PingResult:
        return PingResult.model_validate(await self.rpc.call("ping"))

    async def start_session(
        self, session: SessionId, creds: dict[str, Any] | None, config: SessionConfig | None = None
    ) -> SessionStartResult:
        params = SessionStartParams(session=session, creds=creds, config=config)
        result = await self.rpc.call("session.start", params.model_dump(exclude_none=True) | {"creds": creds})
        return SessionStartResult.model_validate(result)

    async def stop_session(self, session: SessionId) -> None:
        await self.rpc.call("session.stop", {"session": session})

    async def logout(self, session: SessionId) -> None:
        await self.rpc.call("session.logout", {"session": session})

    async def request_pairing_code(self, session: SessionId, phone: str, code: str | None = None) -> str:
        params = PairingCodeParams(session=session, phone=phone, code=code)
        result = await self.rpc.call("session.requestPairingCode", params.model_dump(exclude_none=True))
        return PairingCodeResult.model_validate(result).code

    async def list_sessions(self) -> SessionListResult:
        return SessionListResult.model_validate(await self.rpc.call("session.list"))

    async def send_message(
        self,
        session: SessionId,
        to: Jid,
        content: dict[str, Any],
        *,
        message_id: str | None = None,
        quoted: dict[str, Any] | None = None,
    ) -> MessageSendResult:
        options: dict[str, Any] = {}
        if message_id:
            options["messageId"] = message_id
        if quoted:
            options["quoted"] = quoted
        result = await self.rpc.call(
            "message.send",
            {"session": session, "to": to, "content": content, "options": options},
            timeout=SEND_TIMEOUT_S,
        )
        return MessageSendResult.model_validate(result)

    async def send_presence(self, session: SessionId, type: str, to: Jid | None = None) -> None:
        params: dict[str, Any] = {"session": session, "type": type}
        if to:
            params["to"] = to
        await self.rpc.call("presence.send", params)

    async def release_receipts(self, session: SessionId, ids: list[str]) -> int:
        """Send the held delivery receipts of these messages (they are durable); how many were held."""
        result = await self.rpc.call("receipts.release", {"session": session, "ids": ids})
        return ReceiptsReleaseResult.model_validate(result).released

    async def send_read(self, session: SessionId, keys: list[MessageKey]) -> None:
        await self.rpc.call("read.send", {"session": session, "keys": [k.model_dump(exclude_none=True) for k in keys]})

    # ---- calls from the bridge -----------------------------------------------------------------------------

    async def _on_keys_get(self, params: dict[str, Any]) -> dict[str, Any]:
        p = _parse(KeysGetParams, params)
        return {"values": await self.host.keys_get(SessionId(p.session), p.type, p.ids)}

    async def _on_keys_set(self, params: dict[str, Any]) -> dict[str, Any]:
        p = _parse(KeysSetParams, params)
        await self.host.keys_set(SessionId(p.session), p.data)
        return {}

    async def _on_creds_save(self, params: dict[str, Any]) -> dict[str, Any]:
        p = _parse(CredsSaveParams, params)
        await self.host.creds_save(SessionId(p.session), p.creds)
        return {}

    async def _on_message_get(self, params: dict[str, Any]) -> dict[str, Any]:
        p = _parse(MessageGetParams, params)
        return {"message": await self.host.message_get(SessionId(p.session), p.key)}

    async def _on_event(self, event: str, session: str | None, data: dict[str, Any]) -> None:
        model = EVENT_MODELS.get(event)
        parsed: WireModel | dict[str, Any] = data
        if model is not None:
            try:
                parsed = model.model_validate(data)
            except ValidationError as e:
                self.log.warning("bridge event %s does not match the contract: %s", event, e.errors()[:3])
        if isinstance(parsed, BridgeReady) and self._ready_fut is not None and not self._ready_fut.done():
            self._ready_fut.set_result(parsed)
        await self.host.on_event(event, SessionId(session) if session else None, parsed)


def _parse(model: type[M], params: dict[str, Any]) -> M:
    try:
        return model.model_validate(params)
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise InvalidParams(f"{field}: {first['msg']}", data={"field": field}) from e
