"""Bridge supervision with the session manager: a crashed bridge is restarted and every session queued again from
its stored creds; a bridge that keeps crashing ends the process with its own exit code."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

from connector.sidecar.supervisor import EXIT_BRIDGE_CRASHLOOP
from tests.connector.fakes import OPEN, Harness, close, until


async def test_a_crashed_bridge_is_restarted_and_sessions_queued_from_stored_creds(
    make_harness: Callable[..., Harness],
) -> None:
    h = await make_harness(session_start_interval_s=0.02).start("a", "b", "c", "d")
    for sid in "abc":
        await h.bridge.emit("connection.update", sid, OPEN)
    await h.bridge.emit("connection.update", "d", close(440))  # a conflicted session stays down
    h.bridge.fail_start = 1  # the first restart fails too
    h.bridge.crash()
    await until(lambda: not h.manager.ready)
    assert {s.state.value for s in h.manager.list_sessions()} == {"reconnecting", "conflict"}
    await h.bridge.wait_calls("start", 7)
    await asyncio.sleep(0.05)
    assert h.bridge.process_starts == 2
    restarted = h.bridge.starts[4:]
    assert sorted(s for s, _, _ in restarted) == ["a", "b", "c"]
    assert all(c is not None for _, c, _ in restarted), "stored creds: no QR"
    gaps = [b[2] - a[2] for a, b in itertools.pairwise(restarted)]
    assert all(g >= 0.018 for g in gaps), "through the queue"
    assert h.manager.ready and h.manager.supervisor.restarts == 1


async def test_a_crash_looping_bridge_ends_the_process_with_a_dedicated_code(
    make_harness: Callable[..., Harness],
) -> None:
    h = await make_harness(bridge_max_crashes=3).start()
    h.bridge.fail_start = 10
    h.bridge.crash()
    await until(lambda: bool(h.fatal))
    assert h.fatal == [EXIT_BRIDGE_CRASHLOOP] and h.manager.supervisor.fatal_code == 14
    assert not h.manager.ready
