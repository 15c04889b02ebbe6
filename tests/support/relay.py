"""The real connector as a child process, and a client of its API: shared by the end-to-end tests and the
benchmarks (``tests/bench``)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

from infra.local.emulators import wait_http
from tests.support.wasim import Person, WasimClient


class ConnectorProcess:
    """``python -m connector`` with the stack's environment, so tests can SIGKILL it and start it again."""

    def __init__(self, env: dict[str, str], api_url: str, log_path: Path) -> None:
        self.env, self.api_url, self.log_path = env, api_url, log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "connector"], env=self.env, stdout=log, stderr=log, stdin=subprocess.DEVNULL
        )
        log.close()
        wait_http(f"{self.api_url}/healthz", self.proc, "connector", 60)  # type: ignore[arg-type]

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Api:
    def __init__(self, http: aiohttp.ClientSession, base: str, key: str) -> None:
        self.http, self.base, self.headers = http, base, {"Authorization": f"Bearer {key}"}

    async def call(self, method: str, path: str, body: Any = None, *, key: bool = True) -> tuple[int, Any]:
        async with self.http.request(method, self.base + path, json=body, headers=self.headers if key else {}) as resp:
            data = await resp.json(content_type=None) if resp.content_type == "application/json" else await resp.read()
            return resp.status, data

    async def session(self, sid: str) -> dict[str, Any]:
        status, body = await self.call("GET", f"/v1/sessions/{sid}")
        assert status == 200, body
        return body  # type: ignore[no-any-return]

    async def wait_state(self, sid: str, state: str, timeout: float = 60.0) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        seen = []
        while loop.time() < deadline:
            body = await self.session(sid)
            if not seen or seen[-1] != body["state"]:
                seen.append(body["state"])
            if body["state"] == state:
                return body
            await asyncio.sleep(0.1)
        raise AssertionError(f"session {sid} never reached {state}; states seen: {seen}")

    async def link(self, sim: WasimClient, sid: str, who: Person) -> dict[str, Any]:
        """Create the session, scan its QR with the simulated phone, and wait for ``open``. Returns the states."""
        status, body = await self.call("POST", "/v1/sessions", {"session_id": sid})
        assert status == 201, body
        await self.wait_state(sid, "qr")
        status, qr = await self.call("GET", f"/v1/sessions/{sid}/qr")
        assert status == 200, qr
        await sim.scan_qr(qr["qr"], who)
        return await self.wait_state(sid, "open")
