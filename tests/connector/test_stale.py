"""Stale detection: an open session that stopped receiving is flagged, with guidance, and unflagged by traffic."""

from __future__ import annotations

import time
from collections.abc import Callable

from connector.api.models import SessionView
from tests.connector.fakes import OPEN, S1, Harness


async def test_open_session_with_no_traffic_is_flagged_stale_with_guidance(
    make_harness: Callable[..., Harness],
) -> None:
    h = await make_harness(stale_after_s=10, stale_check_s=3600).start("s1")
    await h.bridge.emit("connection.update", "s1", OPEN)
    now = time.time()
    await h.manager.stale.check(now + 5)
    assert not SessionView.of(h.manager.get(S1)).stale
    await h.manager.stale.check(now + 11)
    body = SessionView.of(h.manager.get(S1))
    assert body.stale and body.guidance and "Linked devices" in body.guidance and "phone" in body.guidance
    assert h.manager.stale.total == 1
    # a frame on the socket (keep-alive answer) clears it
    h.bridge.received_at["s1"] = int((now + 11) * 1000)
    await h.manager.stale.check(now + 12)
    assert not SessionView.of(h.manager.get(S1)).stale


async def test_no_messages_for_too_long_is_stale_when_enabled(make_harness: Callable[..., Harness]) -> None:
    h = await make_harness(stale_after_s=0, stale_messages_after_s=100, stale_check_s=3600).start("s1")
    await h.bridge.emit("connection.update", "s1", OPEN)
    await h.manager.stale.check(time.time() + 101)
    reason = h.manager.get(S1).stale_reason
    assert reason is not None and "no message" in reason
    assert h.manager.stale.total == 1


async def test_a_session_that_is_not_open_is_never_stale(make_harness: Callable[..., Harness]) -> None:
    h = await make_harness(stale_after_s=10, stale_check_s=3600).start("s1")
    await h.manager.stale.check(time.time() + 100)
    assert h.manager.get(S1).stale_since is None
