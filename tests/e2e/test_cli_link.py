"""``wa-relay link`` end to end: the installed console script, as a terminal user runs it, links a simulated phone
through the real connector, bridge and Baileys: by the QR it prints (scanned by the simulator) and by the pairing code
it prints (entered on the simulator). One run finds its key in ``.data/api-key`` of the folder it runs in, as after
``make up``; the other reads ``CONNECTOR_API_KEY``."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from infra.local.stack import LocalStack
from tests.e2e.conftest import API_KEY, Api, ConnectorProcess
from tests.support.wasim import Person, WasimClient, new_person

pytestmark = pytest.mark.e2e

WA_RELAY = Path(sys.executable).with_name("wa-relay")
"""The console script `pip install` made from ``[project.scripts]``."""


class LinkRun:
    """``wa-relay link …`` as a child process, its output read line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []

    async def line(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        """The first line (from here on) that ``pattern`` matches."""
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            while raw := await self.proc.stdout.readline():
                self.lines.append(raw.decode().rstrip("\n"))
                if found := re.match(pattern, self.lines[-1]):
                    return found
        raise AssertionError(f"no line matched {pattern!r}; output:\n" + "\n".join(self.lines))

    async def linked(self, sid: str, who: Person, timeout: float = 90) -> str:
        """Waits for the exit; asserts it says the session is open on ``who``'s number. Its output."""
        out, err = await asyncio.wait_for(self.proc.communicate(), timeout)
        text = "\n".join([*self.lines, out.decode()])
        assert API_KEY not in text + err.decode(), "the key never appears in the output"
        assert self.proc.returncode == 0, text + err.decode()
        assert text.rstrip().endswith(f"session {sid} is open: linked to +{who.phone}")
        return text


@asynccontextmanager
async def link(*args: str, env: dict[str, str], cwd: Path) -> AsyncIterator[LinkRun]:
    assert WA_RELAY.is_file(), f"{WA_RELAY} is missing: install the package (make deps)"
    proc = await asyncio.create_subprocess_exec(
        str(WA_RELAY), "link", *args, env=env, cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        yield LinkRun(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def base_env(local: LocalStack) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CONNECTOR_API_KEY", "WA_RELAY_URL", "CONNECTOR_PORT")}
    return {**env, "WA_RELAY_URL": local.api_url}


async def test_link_by_the_qr_it_prints_with_the_key_file_of_the_checkout(
    stack: tuple[LocalStack, ConnectorProcess], api: Api, wasim: WasimClient, tmp_path: Path
) -> None:
    checkout = tmp_path / "checkout"
    (checkout / ".git").mkdir(parents=True)
    (checkout / ".data").mkdir()
    (checkout / ".data" / "api-key").write_text(API_KEY + "\n")
    (checkout / "docs").mkdir()
    me = new_person()
    async with link("cli-qr", "--print-raw", env=base_env(stack[0]), cwd=checkout / "docs") as run:
        await wasim.scan_qr((await run.line(r"qr: (\S+)$"))[1], me)
        out = await run.linked("cli-qr", me)
    assert "This QR is valid for" in out
    session = await api.session("cli-qr")
    assert session["state"] == "open" and session["me"]["pn"] == me.jid


async def test_link_by_the_pairing_code_it_prints(
    stack: tuple[LocalStack, ConnectorProcess], api: Api, wasim: WasimClient, tmp_path: Path
) -> None:
    me = new_person()
    env = {**base_env(stack[0]), "CONNECTOR_API_KEY": API_KEY}
    async with link("cli-code", "--phone", f"+{me.phone}", env=env, cwd=tmp_path) as run:
        await wasim.enter_pairing_code((await run.line(r"pairing code: (\S+)$"))[1], me)
        out = await run.linked("cli-code", me)
    assert "qr: " not in out
    assert (await api.session("cli-code"))["me"]["pn"] == me.jid
