"""The spool's segment store on its own: plain files in ``tmp_path``, faults injected into ``os``."""

from __future__ import annotations

import errno
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from connector.publish.spool import (
    CURSOR_FILE,
    LEGACY_FILE,
    REJECTED_FILE,
    Entry,
    Spool,
    SpoolFull,
    append_rejected,
    read_rejected,
    remove_rejected,
)

BIG = 1 << 30


def entries(n: int, start: int = 0, body: str = "x" * 100) -> list[Entry]:
    return [Entry("g", f"e{i:04d}", body) for i in range(start, start + n)]


def segments(d: Path) -> list[Path]:
    return sorted(d.glob("inbound.*.spool"))


def opened(d: Path, **kw: Any) -> Spool:
    spool = Spool(d, max_bytes=kw.pop("max_bytes", BIG), **kw)
    spool.open()
    return spool


def drain(spool: Spool, batch: int = 10) -> list[str]:
    out: list[str] = []
    while got := spool.peek(batch, BIG):
        assert len(got) <= batch, "more than one batch in memory"
        out += [e.dedup for e in got]
        spool.consume(len(got))
    return out


class DiskFault:
    """Makes ``os.<name>`` fail with ``err`` for files under ``directory`` while ``on`` (other files are untouched)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, directory: Path, name: str, err: int = errno.ENOSPC) -> None:
        self.directory, self.err, self.on, self.calls = str(directory), err, True, 0
        self.real: Callable[..., Any] = getattr(os, name)
        monkeypatch.setattr(os, name, self)

    def __call__(self, fd: int, *args: Any) -> Any:
        if self.on and os.readlink(f"/proc/self/fd/{fd}").startswith(self.directory):
            self.calls += 1
            raise OSError(self.err, os.strerror(self.err))
        return self.real(fd, *args)


def test_in_order_across_segments_which_are_deleted_once_sent(tmp_path: Path) -> None:
    spool = opened(tmp_path, segment_bytes=1000)
    for i in range(0, 50, 5):
        assert spool.append(entries(5, i)) == 5
    assert len(segments(tmp_path)) > 5 and spool.depth == 50
    assert spool.bytes == sum(p.stat().st_size for p in segments(tmp_path))
    assert drain(spool) == [f"e{i:04d}" for i in range(50)]
    assert segments(tmp_path) == [] and spool.empty
    spool.append(entries(1, 50))  # a fresh segment after the spool emptied
    assert drain(spool) == ["e0050"]


def test_batches_respect_the_byte_limit(tmp_path: Path) -> None:
    spool = opened(tmp_path)
    spool.append(entries(10, body="y" * 400))
    assert len(spool.peek(10, 1000)) == 2
    assert len(spool.peek(10, 100)) == 1, "one entry always goes, even over the limit"


def test_a_restart_resumes_at_the_cursor_and_repeats_at_most_the_batch_in_flight(tmp_path: Path) -> None:
    spool = opened(tmp_path, segment_bytes=2000)
    spool.append(entries(40))
    for _ in range(2):
        spool.consume(len(spool.peek(10, BIG)))
    in_flight = spool.peek(10, BIG)  # sent, then killed before consume
    del spool  # no close: a kill writes nothing more
    again = opened(tmp_path)
    assert again.depth == 20
    assert again.peek(10, BIG) == in_flight
    assert drain(again) == [f"e{i:04d}" for i in range(20, 40)]


def test_a_torn_last_record_is_skipped_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spool = opened(tmp_path)
    spool.append(entries(3))
    with open(segments(tmp_path)[-1], "ab") as f:
        f.write(entries(1, 3)[0].line()[:30])  # a kill in the middle of a write
    spool.close()
    again = opened(tmp_path)
    again.append(entries(1, 4))  # never appended behind the torn line
    assert again.depth == 4
    with caplog.at_level(logging.WARNING):
        assert drain(again) == ["e0000", "e0001", "e0002", "e0004"]
    assert "torn" in caplog.text
    assert segments(tmp_path) == []


def test_the_legacy_single_file_is_migrated_and_drained_first(tmp_path: Path) -> None:
    spool = opened(tmp_path)
    spool.append(entries(2, 10))  # a segment of this version, left unsent
    spool.close()
    lines = [json.dumps({"group": "g", "dedup": f"old{i}", "body": "b"}) for i in range(3)]
    (tmp_path / LEGACY_FILE).write_text("\n".join(lines) + "\n" + '{"torn": ')
    again = opened(tmp_path)
    assert not (tmp_path / LEGACY_FILE).exists()
    again.append(entries(1, 20))
    assert drain(again) == ["old0", "old1", "old2", "e0010", "e0011", "e0020"]


@pytest.mark.parametrize("call", ["write", "fsync"])
def test_a_failed_append_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, call: str) -> None:
    spool = opened(tmp_path)
    spool.append(entries(2))
    fault = DiskFault(monkeypatch, tmp_path, call)
    with pytest.raises(OSError, match="No space left"):
        spool.append(entries(3, 2))
    assert spool.depth == 2
    fault.on = False
    assert spool.append(entries(3, 2)) == 3
    spool.close()
    assert drain(opened(tmp_path)) == [f"e{i:04d}" for i in range(5)]


def test_a_write_that_cannot_be_undone_abandons_its_segment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spool = opened(tmp_path)
    spool.append(entries(2))
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, bytes(data[:20])))  # a short write, then
    DiskFault(monkeypatch, tmp_path, "fsync", errno.EIO)  # the disk fails,
    DiskFault(monkeypatch, tmp_path, "ftruncate", errno.EIO)  # and the torn bytes cannot be cut off
    with pytest.raises(OSError, match="Input/output error"):
        spool.append(entries(1, 2))
    monkeypatch.undo()
    spool.append(entries(1, 3))
    assert len(segments(tmp_path)) == 2
    assert drain(spool) == ["e0000", "e0001", "e0003"], "this run reads up to the last good byte"
    spool.close()


def test_the_byte_limit_takes_what_fits_and_frees_space_as_segments_are_sent(tmp_path: Path) -> None:
    size = len(entries(1)[0].line())
    spool = opened(tmp_path, max_bytes=10 * size, segment_bytes=5 * size)
    assert spool.append(entries(5)) == 5
    assert spool.append(entries(7, 5)) == 5, "the prefix that fits"
    with pytest.raises(SpoolFull):
        spool.append(entries(1, 10))
    spool.consume(len(spool.peek(10, BIG)))  # the first segment is sent and deleted
    assert spool.bytes == 5 * size
    assert spool.append(entries(2, 10)) == 2


def test_a_damaged_cursor_means_reading_from_the_start(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spool = opened(tmp_path)
    spool.append(entries(5))
    spool.consume(len(spool.peek(2, BIG)))
    spool.close()
    (tmp_path / CURSOR_FILE).write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING):
        again = opened(tmp_path)
    assert "damaged" in caplog.text
    assert drain(again)[0] == "e0000"


_CHILD = """
import sys
from pathlib import Path
from connector.publish.spool import Entry, Spool
spool = Spool(Path(sys.argv[1]), max_bytes=1 << 30, segment_bytes=4096)
spool.open()
for i in range(0, 100000, 3):
    spool.append([Entry("g", f"e{j:06d}", "x" * 200) for j in range(i, i + 3)])
    print("acked", *(f"e{j:06d}" for j in range(i, i + 3)), flush=True)
    if i % 4 == 3:  # sends a little less than it appends: a backlog across segments
        got = spool.peek(10, 1 << 20)
        spool.consume(len(got))
        print("sent", *(e.dedup for e in got), flush=True)
"""


@pytest.mark.parametrize("after_lines", [7, 40, 151])
def test_a_kill_at_any_moment_loses_nothing_acknowledged_and_resends_nothing_recorded(
    tmp_path: Path, after_lines: int
) -> None:
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    lines = [child.stdout.readline().split() for _ in range(after_lines)]
    child.kill()  # SIGKILL, somewhere in the middle of the next append or consume
    child.wait()
    acked = {x for kind, *ids in lines if kind == "acked" for x in ids}
    sent = {x for kind, *ids in lines if kind == "sent" for x in ids}
    left = drain(opened(tmp_path))
    assert left == sorted(left), "order"
    unsent = sorted(acked - sent)
    missing = [x for x in unsent if x not in left]
    # Only the batch a kill caught between ``consume`` and its print may be gone: it was recorded as sent.
    assert missing == unsent[: len(missing)] and len(missing) <= 10, f"acknowledged entries lost: {missing}"
    assert not sent & set(left), "an entry recorded as sent came back"


# ---- the rejected entries, shared with the dead-letter tool ----


def test_rejected_entries_are_kept_and_taken_out_one_copy_at_a_time(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=BIG)
    a, b = entries(2)
    spool.reject([a, b, a])
    assert read_rejected(tmp_path) == [a.line(), b.line(), a.line()]

    assert remove_rejected(tmp_path, [a.line()]) == 1
    assert read_rejected(tmp_path) == [b.line(), a.line()]
    assert remove_rejected(tmp_path, [entries(1, start=9)[0].line()]) == 0, "not stored: nothing taken out"
    assert remove_rejected(tmp_path, [a.line(), b.line()]) == 2
    assert read_rejected(tmp_path) == []
    assert remove_rejected(tmp_path / "missing", [a.line()]) == 0


def test_an_append_waiting_while_the_file_is_replaced_goes_to_the_new_file(tmp_path: Path) -> None:
    import fcntl
    import threading
    import time

    old, new = entries(2)
    append_rejected(tmp_path, [old])
    path = tmp_path / REJECTED_FILE
    with open(path, "rb") as held:
        # GIVEN the dead-letter tool holds the lock, and the connector's append waits for it
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        appender = threading.Thread(target=append_rejected, args=(tmp_path, [new]))
        appender.start()
        time.sleep(0.2)
        assert appender.is_alive(), "the append waits for the lock"
        # WHEN the tool replaces the file (it put the old entry back on the queue) and releases the lock
        tmp = path.with_name("replacement")
        tmp.write_bytes(b"")
        os.replace(tmp, path)
    appender.join(5)

    # THEN the append landed in the file that is there now, not in the replaced one
    assert read_rejected(tmp_path) == [new.line()]
