"""JSON lines RPC over one duplex stream: requests both ways, responses, events (``bridge/PROTOCOL.md``).

Modelled on mausignald's ``rpc.py``: a dict of response futures, lines without an id are events, a disconnect fails
every pending call with ``SidecarNotConnected``, and a failing handler is logged without stopping the read loop.
Events are handed to consumer tasks, never run by the reader, so a slow event handler (or one that calls back into
the bridge) never blocks the reader that must deliver that call's answer. There is one ordered lane per session:
a session's events are handled one at a time in arrival order (its connection updates and messages must not
overtake each other), while sessions are handled in parallel: with one lane for everything, every session would wait
for every other session's SQS and DynamoDB round trips. A lane's task exists only while the lane has events, so idle
sessions cost nothing.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from connector.errors import LeaseLost, RelayError, StoreError
from connector.sidecar.errors import (
    SidecarNotConnected,
    SidecarResponseError,
    SidecarTimeout,
    make_response_error,
)

TRACE = 5
"""Below DEBUG: raw protocol lines carry key material and message text, so they are logged only here."""
logging.addLevelName(TRACE, "TRACE")

MAX_LINE_BYTES = 64 * 1024 * 1024

RequestHandler = Callable[[dict[str, Any]], Awaitable[Any]]
EventHandler = Callable[[str, str | None, dict[str, Any]], Awaitable[None]]


class JsonLinesRPC:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        log: logging.Logger,
        call_timeout: float = 30.0,
        id_prefix: str = "c",
    ) -> None:
        self._reader = reader
        self._writer = writer
        self.log = log
        self.call_timeout = call_timeout
        self._ids = (f"{id_prefix}-{n}" for n in itertools.count(1))
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._handlers: dict[str, RequestHandler] = {}
        self._event_handler: EventHandler | None = None
        self._lanes: dict[str | None, collections.deque[tuple[str, str | None, dict[str, Any]]]] = {}
        """Events waiting per session (``None``: events of no session), each lane drained by its own task."""
        self._lane_tasks: set[asyncio.Task[None]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._write_lock = asyncio.Lock()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def add_request_handler(self, method: str, handler: RequestHandler) -> None:
        self._handlers[method] = handler

    def set_event_handler(self, handler: EventHandler) -> None:
        self._event_handler = handler

    # ---- sending -------------------------------------------------------------------------------------------

    async def call(self, method: str, params: dict[str, Any] | None = None, *, timeout: float | None = None) -> Any:
        if self._closed:
            raise SidecarNotConnected(f"bridge pipe is closed; cannot call {method}")
        req_id = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = fut
        try:
            await self._send({"id": req_id, "method": method, "params": params or {}})
            return await asyncio.wait_for(fut, timeout or self.call_timeout)
        except TimeoutError as e:
            raise SidecarTimeout(f"bridge did not answer {method} within {timeout or self.call_timeout}s") from e
        finally:
            self._pending.pop(req_id, None)

    async def send_line(self, line: bytes) -> None:
        """Write one raw line (it must end with a newline). Tests use it to send malformed input."""
        await self._write(line)

    async def _send(self, message: dict[str, Any]) -> None:
        await self._write(json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode() + b"\n")

    async def _write(self, data: bytes) -> None:
        if self._closed:
            raise SidecarNotConnected("bridge pipe is closed")
        async with self._write_lock:
            if self.log.isEnabledFor(TRACE):
                self.log.log(TRACE, ">> %s", data[:2000])
            try:
                self._writer.write(data)
                await self._writer.drain()
            except (ConnectionError, RuntimeError) as e:
                raise SidecarNotConnected(f"bridge pipe broke: {e}") from e

    # ---- receiving -----------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Read until EOF, then fail every pending call. Returns when the stream is closed."""
        try:
            while True:
                line = await self._read_line()
                if line is None:
                    break
                if line.strip():
                    await self._on_line(line)
        finally:
            self._closed = True
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(SidecarNotConnected("bridge disconnected before the call completed"))
            while self._lane_tasks:  # the events already read are still handled, in order
                await asyncio.gather(*self._lane_tasks, return_exceptions=True)
            for task in list(self._tasks):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _read_line(self) -> bytes | None:
        while True:
            try:
                line = await self._reader.readuntil(b"\n")
                return line
            except asyncio.IncompleteReadError as e:
                return e.partial or None
            except asyncio.LimitOverrunError as e:
                # Too long: drop the whole line (it cannot be parsed anyway) and go on with the next one.
                self.log.error("bridge sent a line over %d bytes; dropped", MAX_LINE_BYTES)
                await self._reader.readexactly(e.consumed)
                with contextlib.suppress(asyncio.LimitOverrunError):
                    await self._reader.readuntil(b"\n")
            except (ConnectionError, OSError):
                return None

    async def _on_line(self, line: bytes) -> None:
        if self.log.isEnabledFor(TRACE):
            self.log.log(TRACE, "<< %s", line[:2000])
        try:
            msg = json.loads(line)
        except ValueError:
            self.log.warning("bridge sent a line that is not JSON (%d bytes)", len(line))
            await self._reply_error(None, "parse_error", "line is not JSON")
            return
        if not isinstance(msg, dict):
            await self._reply_error(None, "invalid_request", "a protocol message is a JSON object")
            return
        if "event" in msg:
            data = msg.get("data")
            session = msg.get("session")
            self._dispatch(
                (
                    str(msg["event"]),
                    session if isinstance(session, str) else None,
                    data if isinstance(data, dict) else {},
                )
            )
        elif "method" in msg:
            req_id = msg.get("id")
            if not isinstance(req_id, str) or not isinstance(msg["method"], str):
                await self._reply_error(req_id if isinstance(req_id, str) else None, "invalid_request", "bad id/method")
                return
            params = msg.get("params")
            task = asyncio.create_task(
                self._handle_request(req_id, msg["method"], params if isinstance(params, dict) else {}),
                name=f"bridge-request-{msg['method']}",
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif "result" in msg or "error" in msg:
            fut = self._pending.get(msg.get("id"))  # type: ignore[arg-type]
            if fut is None or fut.done():
                self.log.warning("bridge answered an unknown or expired call id %r", msg.get("id"))
            elif msg.get("error") is not None:
                fut.set_exception(make_response_error(msg["error"]))
            else:
                fut.set_result(msg.get("result"))
        else:
            await self._reply_error(
                msg.get("id") if isinstance(msg.get("id"), str) else None,
                "invalid_request",
                "neither a request, a response nor an event",
            )

    async def _handle_request(self, req_id: str, method: str, params: dict[str, Any]) -> None:
        handler = self._handlers.get(method)
        if handler is None:
            await self._reply_error(req_id, "method_not_found", f"unknown method {method}")
            return
        try:
            result = await handler(params)
        except SidecarResponseError as e:
            await self._reply_error(req_id, e.code, str(e), e.data)
        except RelayError as e:
            # A refusal the host means (a write for a deleted session, a store outage): the bridge is told why, and
            # the log gets one line, not a traceback. A store outage is marked retryable: the same call may succeed
            # later, where a lost lease never will.
            self.log.warning("%s refused: %s", method, e)
            retryable = {"retryable": True} if isinstance(e, StoreError) and not isinstance(e, LeaseLost) else None
            await self._reply_error(req_id, "internal", f"{type(e).__name__}: {e}"[:500], retryable)
        except Exception as e:
            self.log.exception("handler of %s failed", method)
            await self._reply_error(req_id, "internal", f"{type(e).__name__}: {e}"[:500])
        else:
            await self._safe_send({"id": req_id, "result": result if result is not None else {}})

    async def _reply_error(self, req_id: str | None, code: str, message: str, data: Any = None) -> None:
        error: dict[str, Any] = {"code": code, "message": message}
        if data is not None:
            error["data"] = data
        await self._safe_send({"id": req_id, "error": error})

    async def _safe_send(self, message: dict[str, Any]) -> None:
        try:
            await self._send(message)
        except SidecarNotConnected:
            self.log.debug("could not answer %s: pipe closed", message.get("id"))

    def _dispatch(self, item: tuple[str, str | None, dict[str, Any]]) -> None:
        lane = self._lanes.get(item[1])
        if lane is not None:
            lane.append(item)  # its task is running and will get to it
            return
        self._lanes[item[1]] = collections.deque([item])
        task = asyncio.create_task(self._drain_lane(item[1]), name=f"bridge-events-{item[1]}")
        self._lane_tasks.add(task)
        task.add_done_callback(self._lane_tasks.discard)

    async def _drain_lane(self, session: str | None) -> None:
        lane = self._lanes[session]
        try:
            while lane:
                item = lane.popleft()
                if self._event_handler is None:
                    continue
                try:
                    await self._event_handler(*item)
                except Exception:
                    self.log.exception("event handler failed for %s", item[0])
        finally:
            # No await between the emptiness check and this: an event dispatched later starts a new lane.
            del self._lanes[session]

    async def close(self) -> None:
        """Close our end of the stream: the bridge sees EOF and shuts down."""
        if not self._writer.is_closing():
            self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()
