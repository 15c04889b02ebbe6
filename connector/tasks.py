"""The one way the connector creates detached tasks (STYLE rule 5, after ``mautrix/util/background_task.py``).

``spawn`` keeps a strong reference until the task ends (the event loop only holds weak ones, so an unreferenced task
can be garbage-collected mid-flight) and logs an uncaught error together with the call site that created the task.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

log = logging.getLogger("wa_relay.tasks")
_tasks: set[asyncio.Task[Any]] = set()


def spawn(coro: Coroutine[Any, Any, T], *, name: str) -> asyncio.Task[T]:
    """Run ``coro`` detached. Cancel it (and await it) to stop it; an error it raises is logged, not lost."""
    origin = "".join(traceback.format_stack(limit=4)[:-1])
    task = asyncio.get_running_loop().create_task(coro, name=name)
    _tasks.add(task)

    def done(t: asyncio.Task[T]) -> None:
        _tasks.discard(t)
        if t.cancelled():
            return
        exc = t.exception()
        if exc is not None:
            log.error("background task %s failed; created at:\n%s", name, origin, exc_info=exc)

    task.add_done_callback(done)
    return task


async def cancel(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` and wait until it has finished (its own errors were already logged by ``spawn``)."""
    if task is None or task.done():
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        # The task we cancelled ended as asked. Re-raise only if *we* were cancelled while waiting for it (then
        # it may still be running). Checking current_task().cancelling() instead would re-raise during aiohttp's
        # shutdown, whose own cancellation is already handled when cleanup runs, and turn every stop into errors.
        if not task.done():
            raise
    except Exception:
        pass  # already logged by spawn's done callback
