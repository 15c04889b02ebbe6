"""``make demo``: wa-relay without a phone. ``python -m infra.local.demo``.

Runs the WhatsApp simulator (``tests/wasim``) and the whole ``make up`` stack pointed at it, then plays a phone and
its contacts: the simulated phone scans the session's QR (a few seconds after it shows, so the dashboard can be
watched turning from ``qr`` to ``open``), and three contacts (two writing from their phone number, one from a LID)
write to it in turn, forever; the demo bot answers each. The terminal shows the conversation as the contacts'
phones see it; the dashboard (printed URL and key) shows the session, its counters and the live feed.

Decisions:
- **Its own data directory** (``.data/demo``), never ``make up``'s: a real account's creds must not be tried against
  the simulator (its login would fail, and a failed login wipes a session).
- **Only this mode trusts the simulator's certificate root** (``WasimInfo.baileys_env``: a preload in the bridge's
  Node process); ``make up`` strips that trust from its environment (``infra.local.stack.untrusted``).
- The simulator keeps its state in the demo directory, so a restarted demo logs the same phone in again.
- It drives the simulator through the test suite's client (``tests.support.wasim``): the simulator lives with the
  tests, and the demo is development tooling, never part of what is deployed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp

from infra.local.emulators import ROOT
from infra.local.stack import ChildFailed, LocalStack
from tests.support.wasim import Person, WasimClient, WasimError, WasimInfo, WasimProcess

log = logging.getLogger("wa_relay.local.demo")

DEFAULT_DATA_DIR = ROOT / ".data" / "demo"
SESSION = "demo-phone"
PHONE = Person(phone="15550100001", lid="99990100001")
"""The simulated phone whose WhatsApp account the session links."""
CONTACTS = [
    ("Ana", Person(phone="15550100011", lid="99990100011"), "pn"),
    ("Bo", Person(phone="15550100012", lid="99990100012"), "lid"),
    ("Chen", Person(phone="15550100013", lid="99990100013"), "pn"),
]
LINES = [
    "Hi! Are you open today?",
    "Can I book a table for two at eight?",
    "Do you have vegetarian dishes?",
    "Thanks, see you later!",
    "What is the wifi password?",
    "Is parking available nearby?",
]
OPEN_TIMEOUT_S = 120.0


class Demo:
    def __init__(self, stack: LocalStack, sim: WasimInfo, *, link_after_s: float, interval_s: float) -> None:
        self.stack = stack
        self.sim_info = sim
        self.link_after_s = link_after_s
        self.interval_s = interval_s
        self.seen: dict[str, int] = {}
        """Per contact: how many of the bot's messages the terminal has shown."""

    async def run(self, stopping: asyncio.Event, messages: int = 0) -> None:
        headers = {"Authorization": f"Bearer {self.stack.api_key}"}
        async with aiohttp.ClientSession(headers=headers) as api, aiohttp.ClientSession() as control:
            self.api, self.sim = api, WasimClient(self.sim_info, control)
            await self.link(stopping)
            for name, person, _ in CONTACTS:
                await self.sim.add_contact(person, name)
            for turn in itertools.count():
                if stopping.is_set() or (messages and turn >= messages):
                    break
                name, person, addressing = CONTACTS[turn % len(CONTACTS)]
                text = LINES[turn % len(LINES)]
                try:
                    await self.sim.send_text(person, PHONE, text, addressing=addressing)
                    print(f"  {name:>5} -> demo: {text}", flush=True)
                except WasimError as e:  # the socket is reconnecting: the next turn tries again
                    log.info("%s could not write (%s)", name, e)
                await _wait(stopping, self.interval_s)
                await self.show_answers()
            # A bounded run (tests, a quick look) waits for the last answers before it returns.
            deadline = asyncio.get_running_loop().time() + 20.0
            while messages and sum(self.seen.values()) < messages and asyncio.get_running_loop().time() < deadline:
                await _wait(stopping, 0.5)
                await self.show_answers()

    async def _session(self) -> dict[str, Any] | None:
        async with self.api.get(f"{self.stack.api_url}/v1/sessions/{SESSION}") as resp:
            return None if resp.status == 404 else await resp.json()

    async def link(self, stopping: asyncio.Event) -> None:
        """Create the session (again, if it was logged out) and let the simulated phone scan its QR."""
        session = await self._session()
        if session is not None and session["state"] in ("logged_out", "conflict", "stopped"):
            await self.api.delete(f"{self.stack.api_url}/v1/sessions/{SESSION}")
            session = None
        if session is None:
            async with self.api.post(f"{self.stack.api_url}/v1/sessions", json={"session_id": SESSION}) as resp:
                resp.raise_for_status()
            print(f"  created session {SESSION}: its QR is on the dashboard", flush=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + OPEN_TIMEOUT_S
        scanned = False
        while not stopping.is_set() and loop.time() < deadline:
            session = await self._session() or {}
            if session.get("state") == "open":
                me = session.get("me", {})
                print(f"  session {SESSION} is open as {me.get('pn')} ({me.get('lid')})", flush=True)
                return
            if session.get("qr") and not scanned:
                await _wait(stopping, self.link_after_s)
                await self.sim.scan_qr(session["qr"], PHONE)
                scanned = True
                print(f"  the simulated phone +{PHONE.phone} scanned the QR", flush=True)
            await _wait(stopping, 0.5)
        if not stopping.is_set():
            raise RuntimeError(f"session {SESSION} did not open within {OPEN_TIMEOUT_S:.0f}s; see the logs above")

    async def show_answers(self) -> None:
        for name, person, _ in CONTACTS:
            got = await self.sim.request("GET", f"/contacts/{person.phone}/received", params={"account": PHONE.phone})
            messages = got["messages"]
            new = messages[self.seen.get(name, 0) :]
            for m in new:
                print(f"   demo -> {name}: {m['text']}", flush=True)
            if new:  # the contact opens the chat: the dashboard's feed shows the answers read
                await self.sim.read(person, PHONE)
            self.seen[name] = len(messages)


async def _wait(stopping: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="wa-relay with a simulated phone and contacts (make demo).")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--link-after-s", type=float, default=8.0, help="how long the QR shows before the scan")
    parser.add_argument("--interval-s", type=float, default=6.0, help="seconds between two contact messages")
    parser.add_argument("--messages", type=int, default=0, help="stop after this many messages (0: run until Ctrl-C)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The functions run in this process: their info lines would bury the conversation the terminal shows.
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    data_dir: Path = args.data_dir.resolve()
    (data_dir / "logs").mkdir(parents=True, exist_ok=True)
    simulator = WasimProcess(data_dir / "logs" / "wasim.log", state_path=data_dir / "wasim-state.json")
    info = simulator.start()
    env = {**info.baileys_env(), "CONNECTOR_PORT": os.environ.get("CONNECTOR_PORT") or "8080", "LOG_LEVEL": "WARNING"}
    for name in ("CHATBOT_URL", "CHATBOT_SECRET", "AWS_ENDPOINT_URL"):
        env[name] = ""  # the demo bot and the embedded emulators, whatever the shell has set
    with (data_dir / "logs" / "stack.log").open("a") as output:
        stack = LocalStack(data_dir, env=env, output=output)
        try:
            stack.start()
        except ChildFailed as e:
            simulator.stop()
            print(f"make demo: {e} (see {data_dir / 'logs' / 'stack.log'})", file=sys.stderr)
            return 1
        print(
            "\nwa-relay demo: a simulated phone and contacts, no real WhatsApp account\n\n"
            f"  Dashboard  {stack.api_url}/   sign in with the key below\n"
            f"  API key    {stack.api_key}\n"
            f"  API docs   {stack.api_url}/docs\n"
            f"  Logs       {data_dir / 'logs'}\n\n"
            "  Ctrl-C stops everything.\n",
            flush=True,
        )
        code = asyncio.run(_drive(stack, info, args))
        stack.stop()
    simulator.stop()
    return code


async def _drive(stack: LocalStack, info: WasimInfo, args: argparse.Namespace) -> int:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    demo = Demo(stack, info, link_after_s=args.link_after_s, interval_s=args.interval_s)
    try:
        await demo.run(stopping, args.messages)
    except (RuntimeError, aiohttp.ClientError, WasimError) as e:
        print(f"make demo: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
