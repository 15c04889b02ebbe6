"""Carrying out the schedule's faults on a running world (``tests.bench.world.World``).

- Process faults (SIGKILL of the connector, SIGKILL of the bridge alone, SIGTERM and start again) run one at a
  time under one lock, which the watchdog shares: a connector that exits by itself (exit code 14 after too many
  bridge crashes, a crash) is started again, as an orchestrator would, and counted.
- Windows (AWS faults through the proxy's interceptor, chatbot failure modes) start and end on their own; a later
  window on the same slot replaces an earlier one, which then does not end it.
- Every injection is logged with its actual start and end beside the plan, and a marker line goes into the
  connector's log before each start, so log excerpts show which incarnation a line came from.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from tests.bench.world import World
from tests.chaos.chatbot import ChaosResponder
from tests.chaos.faults import AwsFaults
from tests.chaos.schedule import PROCESS_KINDS, Fault

GRACEFUL_STOP_S = 60.0
START_ATTEMPTS = 3


@dataclass
class Injection:
    fault: Fault
    started: float | None = None
    """Seconds after the traffic started."""
    ended: float | None = None
    note: str = ""


class Injector:
    def __init__(self, world: World, aws: AwsFaults, bot: ChaosResponder, say: Callable[[str], None]) -> None:
        self.world = world
        self.aws = aws
        self.bot = bot
        self.say = say
        self.lock = asyncio.Lock()
        self.t0 = time.monotonic()
        self.done: Counter[str] = Counter()
        """Faults carried out, by kind."""
        self.self_exits: list[str] = []
        """Connector exits nobody asked for."""
        self.anomalies: list[str] = []
        """Things the harness noticed that are not counted by the checks (a stop that hung, a start that failed)."""
        self._bot_window = 0

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 2)

    def mark(self, text: str) -> None:
        """A marker line in the connector's log (the next process appends to the same file)."""
        with open(self.world.root / "connector.log", "a") as log:
            log.write(f"---- chaos t+{self.now():.1f}s: {text} ----\n")

    # ---- process faults ----

    async def start_connector(self, why: str) -> None:
        for attempt in range(1, START_ATTEMPTS + 1):
            self.mark(f"starting the connector ({why}, attempt {attempt})")
            try:
                await self.world.start_connector()
                return
            except Exception as e:
                self.anomalies.append(f"t+{self.now():.0f}s connector start failed ({why}): {e}")
                self.say(f"  connector start failed ({e}); retrying")
                if self.world.connector is not None and self.world.connector.proc is not None:
                    with contextlib.suppress(ProcessLookupError):
                        self.world.connector.proc.kill()
                    self.world.connector = None
                await asyncio.sleep(2)
        raise RuntimeError(f"the connector did not start after {START_ATTEMPTS} attempts ({why})")

    async def kill_connector(self, down_s: float) -> str:
        connector = self.world.connector
        assert connector is not None and connector.proc is not None
        self.mark("SIGKILL")
        await asyncio.to_thread(connector.kill)
        self.world.connector = None
        await asyncio.sleep(down_s)
        await self.start_connector("after SIGKILL")
        return ""

    async def restart_connector(self, down_s: float) -> str:
        connector = self.world.connector
        assert connector is not None and connector.proc is not None
        proc = connector.proc
        self.mark("SIGTERM")
        t = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        note = ""
        try:
            code = await asyncio.to_thread(proc.wait, GRACEFUL_STOP_S)
            note = f"stopped in {time.monotonic() - t:.1f}s, exit {code}"
            if code != 0:
                self.anomalies.append(f"t+{self.now():.0f}s graceful stop exited with {code}")
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait)
            note = f"did not stop within {GRACEFUL_STOP_S:.0f}s of SIGTERM; killed"
            self.anomalies.append(f"t+{self.now():.0f}s {note}")
        self.world.connector = None
        await asyncio.sleep(down_s)
        await self.start_connector("after SIGTERM")
        return note

    async def kill_bridge(self) -> str:
        pid = 0
        for _ in range(50):
            with contextlib.suppress(Exception):
                pid = await self.world.bridge_pid()
            if pid:
                break
            await asyncio.sleep(0.2)
        if not pid:
            return "skipped: no bridge running for 10 s"
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return f"skipped: bridge {pid} already gone"
        self.mark(f"SIGKILL of the bridge {pid}")
        return f"pid {pid}"

    async def process_fault(self, fault: Fault) -> str:
        async with self.lock:
            if fault.kind == "kill-connector":
                return await self.kill_connector(fault.duration_s)
            if fault.kind == "restart-connector":
                return await self.restart_connector(fault.duration_s)
            return await self.kill_bridge()

    async def watchdog(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            if self.lock.locked():
                continue
            async with self.lock:
                connector = self.world.connector
                proc = connector.proc if connector is not None else None
                if proc is not None and (code := proc.poll()) is not None:
                    self.self_exits.append(f"t+{self.now():.0f}s exit code {code}")
                    self.say(f"  t+{self.now():.0f}s the connector exited by itself (code {code}); starting it")
                    self.world.connector = None
                    await self.start_connector(f"it exited with {code}")

    # ---- windows ----

    async def aws_window(self, fault: Fault) -> None:
        self.aws.start(fault)
        try:
            await asyncio.sleep(fault.duration_s)
        finally:
            self.aws.end(fault)

    async def chatbot_window(self, fault: Fault) -> None:
        self._bot_window += 1
        mine = self._bot_window
        self.bot.window = fault.chatbot
        try:
            await asyncio.sleep(fault.duration_s)
        finally:
            if self._bot_window == mine:
                self.bot.window = None

    def stop_all(self) -> None:
        self.aws.end_all()
        self._bot_window += 1
        self.bot.window = None

    # ---- one fault ----

    async def inject(self, fault: Fault, record: Injection) -> None:
        record.started = self.now()
        self.say(f"  t+{record.started:.1f}s {fault.describe()}")
        try:
            if fault.kind in PROCESS_KINDS:
                record.note = await self.process_fault(fault)
            elif fault.kind == "aws":
                await self.aws_window(fault)
            else:
                await self.chatbot_window(fault)
            if not record.note.startswith("skipped"):
                family = (
                    fault.kind if fault.kind in PROCESS_KINDS else f"{fault.kind} {fault.aws_kind or fault.chatbot}"
                )
                self.done[family] += 1
        finally:
            record.ended = self.now()
