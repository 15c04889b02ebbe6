"""The WhatsApp simulator (``tests/wasim``) as a process, and an async client of its control API."""

from __future__ import annotations

import itertools
import json
import os
import select
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
WASIM_DIR = ROOT / "tests" / "wasim"
TRUST_ROOT_PRELOAD = WASIM_DIR / "trust-root.mjs"


@dataclass(frozen=True)
class WasimInfo:
    ws_url: str
    control_url: str
    root_pub: str

    def baileys_env(self) -> dict[str, str]:
        """Environment for a process that runs Baileys against this simulator (test-only root trust, option C)."""
        node_options = os.environ.get("NODE_OPTIONS", "")
        return {
            "WA_WEBSOCKET_URL": self.ws_url,
            "WA_SIM_ROOT_PUB": self.root_pub,
            "NODE_OPTIONS": f"{node_options} --import {TRUST_ROOT_PRELOAD.as_uri()}".strip(),
        }


class WasimProcess:
    """Runs ``node tests/wasim/bin/wasim.mjs`` and reads its one ready line. Its logs go to ``log_path``."""

    def __init__(self, log_path: Path, state_path: Path | None = None) -> None:
        self.log_path = log_path
        self.state_path = state_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.info: WasimInfo | None = None

    def start(self, timeout: float = 30.0) -> WasimInfo:
        args = ["node", str(WASIM_DIR / "bin" / "wasim.mjs"), "--port", "0", "--control-port", "0"]
        if self.state_path:
            args += ["--state", str(self.state_path)]
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        buf = b""
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"wasim did not become ready; see {self.log_path}")
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    continue
                buf += chunk
        line = json.loads(buf.split(b"\n", 1)[0])
        self.info = WasimInfo(ws_url=line["ws_url"], control_url=line["control_url"], root_pub=line["root_pub"])
        return self.info

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()


class WasimError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"wasim answered {status}: {body}")
        self.status = status
        self.body = body


_numbers = itertools.count(1)


@dataclass(frozen=True)
class Person:
    """A phone number and LID pair (bare user parts), unique within one test run."""

    phone: str
    lid: str

    @property
    def jid(self) -> str:
        return f"{self.phone}@s.whatsapp.net"

    @property
    def lid_jid(self) -> str:
        return f"{self.lid}@lid"


def new_person(prefix: str = "1555") -> Person:
    n = next(_numbers) + os.getpid() % 1000 * 10000
    return Person(phone=f"{prefix}{n:07d}", lid=f"8{prefix}{n:09d}")


class WasimClient:
    def __init__(self, info: WasimInfo, http: aiohttp.ClientSession) -> None:
        self.info = info
        self.http = http

    async def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        timeout: float = 60.0,
    ) -> Any:
        async with self.http.request(
            method,
            self.info.control_url + path,
            json=body,
            params=params,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as resp:
            data = await resp.json(content_type=None)
            if resp.status >= 400:
                raise WasimError(resp.status, data)
            return data

    async def scan_qr(self, qr: str, who: Person, device: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"qr": qr, "phone": who.phone, "lid": who.lid}
        if device is not None:
            body["device"] = device
        return (await self.request("POST", "/qr/scan", body))["account"]  # type: ignore[no-any-return]

    async def enter_pairing_code(self, code: str, who: Person, device: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"code": code, "phone": who.phone, "lid": who.lid}
        if device is not None:
            body["device"] = device
        return (await self.request("POST", "/pairing-code/enter", body))["account"]  # type: ignore[no-any-return]

    async def add_contact(self, who: Person, name: str) -> dict[str, Any]:
        body = {"phone": who.phone, "lid": who.lid, "name": name}
        return (await self.request("POST", "/contacts", body))["contact"]  # type: ignore[no-any-return]

    async def send_text(
        self,
        sender: Person,
        to: Person,
        text: str,
        *,
        addressing: str = "pn",
        msg_id: str | None = None,
        alt: bool = True,
        if_offline: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "from": sender.phone,
            "to": to.phone,
            "text": text,
            "addressing": addressing,
            "alt": alt,
        }
        if msg_id:
            body["id"] = msg_id
        if if_offline:
            body["if_offline"] = if_offline
        return await self.request("POST", "/messages/send", body)  # type: ignore[no-any-return]

    async def read(self, contact: Person, account: Person, ids: list[str] | None = None) -> list[str]:
        """The contact reads the account's messages (all it has not read, or ``ids``): read receipts to the account."""
        body: dict[str, Any] = {"contact": contact.phone, "account": account.phone}
        if ids is not None:
            body["ids"] = ids
        return (await self.request("POST", "/contacts/read", body))["read"]  # type: ignore[no-any-return]

    async def lid_mapping(self, to: Person, lid: str, pn: str) -> None:
        await self.request("POST", "/lid-mapping", {"to": to.phone, "lid": lid, "pn": pn})

    async def disconnect(self, account: Person, code: int | None = None, mode: str = "stream_error") -> int:
        body: dict[str, Any] = {"account": account.phone, "mode": mode}
        if code is not None:
            body["code"] = code
        return (await self.request("POST", "/disconnect", body))["closed"]  # type: ignore[no-any-return]

    async def last_seq(self) -> int:
        return (await self.request("GET", "/events", params={"limit": "1", "after": "1000000000"}))["last_seq"]  # type: ignore[no-any-return]

    async def events(self, type: str | None = None, after: int = 0) -> list[dict[str, Any]]:
        params = {"after": str(after), "limit": "20000"}
        if type:
            params["type"] = type
        return (await self.request("GET", "/events", params=params))["events"]  # type: ignore[no-any-return]

    async def wait_event(
        self, type: str, match: dict[str, Any] | None = None, *, after: int = 0, timeout: float = 30.0
    ) -> dict[str, Any]:
        body = {"type": type, "match": match or {}, "after": after, "timeout_ms": int(timeout * 1000)}
        return (await self.request("POST", "/events/wait", body, timeout=timeout + 10))["event"]  # type: ignore[no-any-return]

    async def accounts(self) -> list[dict[str, Any]]:
        return (await self.request("GET", "/accounts"))["accounts"]  # type: ignore[no-any-return]
