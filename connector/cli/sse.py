"""Server-sent events on the client side: a line parser (the WHATWG rules for ``event:``, ``data:``, ``id:``,
``retry:`` and comments) and ``follow``, which keeps a stream going across the connector's ends and breaks.

``follow`` reconnects with ``Last-Event-ID`` so the connector replays what the reader missed, and yields ``Connected``
each time a stream opens: after a reconnect the reader re-reads whatever state it tracks, because a replay cannot
cover everything (a restarted connector numbers its events afresh, and ``event: reset`` says the history did not
reach back far enough). A failure to open the very first stream is raised: it is a wrong URL or key, not a break.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass

DEFAULT_RETRY_S = 2.0
MAX_BACKOFF_S = 30.0


@dataclass(frozen=True)
class Event:
    event: str
    data: str
    id: str | None


@dataclass(frozen=True)
class Connected:
    """A stream (re)opened; ``first`` only for the first one."""

    first: bool


class Parser:
    def __init__(self) -> None:
        self.last_id: str | None = None
        """The id to resume after: an ``id:`` counts once the blank line ending its event was read."""
        self.retry_s = DEFAULT_RETRY_S
        self._id: str | None = None
        self._event = ""
        self._data: list[str] = []

    def feed(self, line: str) -> Event | None:
        """One line without its line end; the event a blank line completes, if any."""
        if not line:
            self.last_id = self._id
            event, data, self._event, self._data = self._event, self._data, "", []
            return Event(event or "message", "\n".join(data), self.last_id) if data else None
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id = value or None
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry_s = int(value) / 1000
        return None

    def interrupted(self) -> None:
        """The stream broke: an event it did not finish is dropped (the replay sends it again)."""
        self._id, self._event, self._data = self.last_id, "", []


OpenStream = Callable[[str | None, float | None], AbstractContextManager[Iterator[str]]]
"""Opens a stream after an event id, ending within the given seconds (``None``: when the server likes); its lines."""


def follow(
    open_stream: OpenStream,
    *,
    deadline: float | None = None,
    after: str | None = None,
    retry_on: tuple[type[Exception], ...] = (),
    on_retry: Callable[[Exception, float], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Generator[Event | Connected, None, None]:
    """Events until ``deadline`` (a ``clock`` time; ``None``: for ever; a past one still opens one stream, for what it
    replays), across reconnects. A stream the server ended
    is reopened after its ``retry:`` delay; one that broke with a ``retry_on`` error after a growing delay, reported
    to ``on_retry`` first. ``after``: the first stream replays what the server holds after this id."""
    parser = Parser()
    parser.last_id = parser._id = after
    opened = False
    failures = 0
    while (left := _left(deadline, clock)) is None or left > 0 or not opened:
        try:
            with open_stream(parser.last_id, left if left is None else max(0.0, left)) as lines:
                yield Connected(first=not opened)
                opened, failures = True, 0
                for line in lines:
                    if (event := parser.feed(line)) is not None:
                        yield event
            wait = parser.retry_s
        except retry_on as e:
            if not opened:
                raise
            parser.interrupted()
            failures += 1
            wait = min(parser.retry_s * failures, MAX_BACKOFF_S)
            if on_retry is not None:
                on_retry(e, wait)
        left = _left(deadline, clock)
        sleep(wait if left is None else max(0.0, min(wait, left)))


def _left(deadline: float | None, clock: Callable[[], float]) -> float | None:
    return None if deadline is None else deadline - clock()
