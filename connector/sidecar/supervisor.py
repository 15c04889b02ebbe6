"""Supervision of the bridge process (STYLE rule 6): start it, notice when it exits, restart it.

When the bridge exits, ``on_down`` is called at once (the manager marks every session ``reconnecting``), the process
is restarted with linear backoff (failures times ``restart_step_s``, capped at ``restart_max_s``), and ``on_up`` is
awaited once it runs again (the manager queues every session that should run, from its stored creds: no QR). A run
longer than ``stable_s`` resets the failure count. More than ``max_crashes`` exits without a stable run in between
call ``on_fatal(EXIT_BRIDGE_CRASHLOOP)``: restarting in place is not helping, so ``python -m connector`` stops cleanly
and exits with that code, and the orchestrator restarts the whole connector.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from connector.tasks import cancel, spawn

log = logging.getLogger("wa_relay.sidecar.supervisor")

EXIT_BRIDGE_CRASHLOOP = 14
"""Exit code of ``python -m connector`` when the bridge keeps crashing (config errors are 11)."""


class Supervised(Protocol):
    @property
    def connected(self) -> bool: ...

    async def start(self) -> Any: ...

    async def stop(self, timeout: float = 10.0) -> int | None: ...

    async def wait_closed(self) -> None: ...


class BridgeSupervisor:
    def __init__(
        self,
        bridge: Supervised,
        *,
        on_down: Callable[[], None],
        on_up: Callable[[], Awaitable[None]],
        on_fatal: Callable[[int], None],
        restart_step_s: float,
        restart_max_s: float,
        max_crashes: int,
        stable_s: float,
    ) -> None:
        self.bridge = bridge
        self.on_down = on_down
        self.on_up = on_up
        self.on_fatal = on_fatal
        self.restart_step_s = restart_step_s
        self.restart_max_s = restart_max_s
        self.max_crashes = max_crashes
        self.stable_s = stable_s
        self.restarts = 0
        self.fatal_code: int | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the bridge (raises if it cannot start at all), then watch it."""
        await self.bridge.start()
        self._task = spawn(self._watch(), name="bridge-supervisor")

    async def stop(self) -> None:
        """Stop watching first (an exit on purpose is not a crash), then stop the bridge."""
        await cancel(self._task)
        self._task = None
        try:
            await self.bridge.stop()
        except Exception:
            log.exception("stopping the bridge failed")

    async def _watch(self) -> None:
        failures = 0
        while True:
            started_at = time.monotonic()
            await self.bridge.wait_closed()
            if time.monotonic() - started_at > self.stable_s:
                failures = 0
            self.on_down()
            while True:
                failures += 1
                if failures > self.max_crashes:
                    self.fatal_code = EXIT_BRIDGE_CRASHLOOP
                    log.critical(
                        "the bridge exited %d times in a row without a stable run; giving up (exit code %d)",
                        failures - 1,
                        EXIT_BRIDGE_CRASHLOOP,
                    )
                    self.on_fatal(EXIT_BRIDGE_CRASHLOOP)
                    return
                delay = min(self.restart_max_s, failures * self.restart_step_s)
                log.error("bridge exited; restarting it in %.1fs (failure %d)", delay, failures)
                await asyncio.sleep(delay)
                try:
                    await self.bridge.start()
                except Exception as e:
                    log.error("bridge restart failed: %s", e)
                    continue
                break
            self.restarts += 1
            await self.on_up()
