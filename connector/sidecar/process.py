"""The Node bridge as a child process: spawn it with a private socket on an extra fd, relay its logs, stop it.

The protocol runs over one end of a ``socketpair`` passed to the child; the child learns the descriptor number from
``BRIDGE_RPC_FD``. stdout is never part of the protocol: anything the child writes there is counted and dropped,
because only libraries that print key material would write there. stderr carries the bridge's JSON log lines, which
are re-logged under ``wa_relay.sidecar.node``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from connector.sidecar.errors import SidecarNotConnected
from connector.sidecar.rpc import MAX_LINE_BYTES

OutputSink = Callable[[str, bytes], None]
"""Receives every raw line the child writes, tagged ``"stdout"`` or ``"stderr"`` (tests scan them for keys)."""

_LEVELS = {
    "trace": 5,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "fatal": logging.CRITICAL,
    10: 5,
    20: logging.DEBUG,
    30: logging.INFO,
    40: logging.WARNING,
    50: logging.ERROR,
    60: logging.CRITICAL,
}


@dataclass(frozen=True)
class BridgeCommand:
    """How to start the bridge. ``env`` is added to the connector's own environment (the child inherits
    ``NODE_OPTIONS`` and ``WA_WEBSOCKET_URL`` from it)."""

    script: Path
    node: str = "node"
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None


class BridgeProcess:
    def __init__(self, command: BridgeCommand, *, log: logging.Logger, output_sink: OutputSink | None = None) -> None:
        self.command = command
        self.log = log
        self.node_log = logging.getLogger("wa_relay.sidecar.node")
        self.output_sink = output_sink
        self._proc: asyncio.subprocess.Process | None = None
        self._pipes: list[asyncio.Task[None]] = []

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc else None

    async def start(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Spawn the child; returns the stream pair of our end of the protocol socket."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            env = {**os.environ, **self.command.env, "BRIDGE_RPC_FD": str(theirs.fileno())}
            self._proc = await asyncio.create_subprocess_exec(
                self.command.node,
                str(self.command.script),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=(theirs.fileno(),),
                env=env,
                cwd=self.command.cwd,
                limit=MAX_LINE_BYTES,
            )
        except OSError as e:
            ours.close()
            raise SidecarNotConnected(
                f"cannot start the bridge ({self.command.node} {self.command.script}): {e}"
            ) from e
        finally:
            theirs.close()
        assert self._proc.stdout is not None and self._proc.stderr is not None
        self._pipes = [
            asyncio.create_task(self._relay_stderr(self._proc.stderr), name="bridge-stderr"),
            asyncio.create_task(self._drop_stdout(self._proc.stdout), name="bridge-stdout"),
        ]
        self.log.info("bridge started (pid %d)", self._proc.pid)
        return await asyncio.open_unix_connection(sock=ours, limit=MAX_LINE_BYTES)

    async def wait(self) -> int:
        if self._proc is None:
            raise SidecarNotConnected("bridge was never started")
        code = await self._proc.wait()
        # Drain the log pipes so the last lines (often the reason it died) are not lost.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._pipes, return_exceptions=True)
        return code

    async def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM (graceful: the bridge closes its sockets and flushes its writes), then SIGKILL after ``timeout``."""
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return proc.returncode if proc else None
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.wait(), timeout)
        except TimeoutError:
            self.log.warning("bridge did not exit %.0fs after SIGTERM; killing it", timeout)
            self.kill()
            return await self.wait()

    def kill(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()

    async def _relay_stderr(self, stream: asyncio.StreamReader) -> None:
        async for raw in _lines(stream):
            if self.output_sink:
                self.output_sink("stderr", raw)
            text = raw.decode("utf-8", "replace").rstrip("\n")
            try:
                entry = json.loads(text)
                if not isinstance(entry, dict):
                    raise ValueError
            except ValueError:
                # Not one of the bridge's log lines: Node itself (a crash trace, a warning).
                self.node_log.warning("%s", text[:2000])
                continue
            level = _LEVELS.get(entry.pop("level", "info"), logging.INFO)
            msg = str(entry.pop("msg", ""))
            entry.pop("time", None)
            extras = " ".join(f"{k}={v}" for k, v in entry.items() if k not in ("pid", "hostname"))
            self.node_log.log(level, "%s%s", msg, f" [{extras}]" if extras else "")

    async def _drop_stdout(self, stream: asyncio.StreamReader) -> None:
        async for raw in _lines(stream):
            if self.output_sink:
                self.output_sink("stdout", raw)
            self.log.warning(
                "bridge wrote %d bytes to stdout; dropped unread (stdout may carry key material)", len(raw)
            )


async def _lines(stream: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while True:
        try:
            line = await stream.readline()
        except (ValueError, asyncio.LimitOverrunError):
            continue
        if not line:
            return
        yield line
