"""The bridge's side of the protocol, spoken raw: malformed input is answered, never fatal."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from connector.sidecar.process import BridgeCommand, BridgeProcess
from tests.support.bridge_host import BRIDGE_SCRIPT, ROOT

pytestmark = pytest.mark.e2e


class RawBridge:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, line: bytes) -> None:
        self.writer.write(line)
        await self.writer.drain()

    async def next(self, timeout: float = 10.0) -> dict[str, Any]:
        line = await asyncio.wait_for(self.reader.readline(), timeout)
        assert line, "bridge closed the pipe"
        msg = json.loads(line)
        assert isinstance(msg, dict)
        return msg

    async def answer_to(self, req_id: str | None) -> dict[str, Any]:
        while True:
            msg = await self.next()
            if "event" not in msg and msg.get("id") == req_id:
                return msg


@pytest.fixture
async def raw_bridge() -> Any:
    output: list[tuple[str, bytes]] = []
    proc = BridgeProcess(BridgeCommand(script=BRIDGE_SCRIPT, cwd=ROOT), log=logging.getLogger("test.bridge"),
                         output_sink=lambda s, line: output.append((s, line)))
    reader, writer = await proc.start()
    raw = RawBridge(reader, writer)
    ready = await raw.next()
    assert ready["event"] == "bridge.ready" and ready["data"]["protocol"] == 1
    assert ready["data"]["baileys_version"] == "7.0.0-rc14"
    yield raw, proc, output
    if proc.returncode is None:
        await proc.stop()


async def test_malformed_lines_are_answered_and_the_bridge_keeps_serving(raw_bridge: Any) -> None:
    raw, proc, output = raw_bridge

    await raw.send(b"this is not json\n")
    assert (await raw.answer_to(None))["error"]["code"] == "parse_error"
    await raw.send(b"[1, 2, 3]\n")
    assert (await raw.answer_to(None))["error"]["code"] == "invalid_request"
    await raw.send(b'{"id": "r1"}\n')
    assert (await raw.answer_to("r1"))["error"]["code"] == "invalid_request"
    await raw.send(b'{"id": "r2", "method": "no.such.method", "params": {}}\n')
    assert (await raw.answer_to("r2"))["error"]["code"] == "method_not_found"
    await raw.send(b'{"id": "r3", "method": "session.start", "params": {"session": "bad id!", "creds": null}}\n')
    bad = (await raw.answer_to("r3"))["error"]
    assert bad["code"] == "invalid_params" and bad["data"]["field"] == "session"
    await raw.send(b'{"id": "r4", "method": "message.send", "params": {"session": "s", "to": "x", "content": {}}}\n')
    assert (await raw.answer_to("r4"))["error"]["code"] == "invalid_params"
    await raw.send(b'{"id": "r5", "method": "session.stop", "params": {"session": "nobody"}}\n')
    assert (await raw.answer_to("r5"))["error"]["code"] == "session_not_found"
    await raw.send(b"\xff\xfe garbage bytes \x00\n")
    assert (await raw.answer_to(None))["error"]["code"] == "parse_error"

    await raw.send(b'{"id": "r6", "method": "ping", "params": {}}\n')
    pong = (await raw.answer_to("r6"))["result"]
    assert pong["pong"] is True and pong["sessions"] == 0
    assert proc.returncode is None
    assert not [line for stream, line in output if stream == "stdout"]


async def test_sigterm_exits_cleanly(raw_bridge: Any) -> None:
    _raw, proc, output = raw_bridge
    assert await proc.stop() == 0
    assert not [line for stream, line in output if stream == "stdout"]


async def test_eof_on_the_pipe_ends_the_bridge(raw_bridge: Any) -> None:
    raw, proc, _output = raw_bridge
    raw.writer.close()
    assert await asyncio.wait_for(proc.wait(), 10) == 0
