"""The inbound spool: an ordered log of SQS entries on disk, in append-only segment files. Pure file I/O, blocking;
the publisher calls it from a thread, one call at a time (it is not thread-safe).

Files in the spool directory:
- ``inbound.<n>.spool`` (``n`` eight or more digits, growing): segments, one JSON line ``{"group","dedup","body"}``
  per entry. New entries go to the newest segment, which rolls over past ``segment_bytes``; entries are read from the
  oldest. A segment is deleted once all of it was sent. A run never appends to a segment of an earlier run, whose
  last line may be torn.
- ``inbound.cursor``: the read position, ``<segment> <offset> <crc32>``, one line of fixed length overwritten in
  place (so moving on needs no new disk blocks while the disk is full) and fsynced after every batch sent. Segments
  numbered below it were sent; its offset applies to its own segment only.
- ``inbound.spool``: the single-file spool of earlier versions, same line format; at ``open`` it becomes the segment
  before the oldest, so it is drained first.
- ``inbound.spool.rejected``: entries SQS refused as invalid, same line format, kept for a human (the dead-letter
  tool lists them and puts back on the queue those that are valid by now).

``append`` returns only once the lines are written and fsynced (and the directory, when it created the segment).
A failed append is truncated away; if even that fails, the segment is abandoned (the next append starts a new one)
and read in this run only up to its last good byte, so the torn tail can only ever be the last line of a segment,
where a reader skips it with a warning.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

LEGACY_FILE = "inbound.spool"
REJECTED_FILE = "inbound.spool.rejected"
CURSOR_FILE = "inbound.cursor"
_SEGMENT_RE = re.compile(r"^inbound\.(\d{8,})\.spool$")
SEGMENT_BYTES_MAX = 16 * 1024 * 1024
"""Segments are at most this large (or an eighth of the limit): the sent head of the oldest one still counts against
the limit until it is deleted, so a small segment frees space sooner."""
_CURSOR_LEN = len(f"{0:010d} {0:015d} {0:08x}\n")


@dataclass(frozen=True, slots=True)
class Entry:
    """One SQS message: ``MessageGroupId``, ``MessageDeduplicationId`` and the body."""

    group: str
    dedup: str
    body: str

    def line(self) -> bytes:
        # Not ASCII-escaped: an envelope in Chinese would otherwise take twice its size on disk.
        return (
            json.dumps({"group": self.group, "dedup": self.dedup, "body": self.body}, ensure_ascii=False) + "\n"
        ).encode()


class SpoolFull(Exception):
    """Not even the first entry fits under the spool's byte limit."""


def batch_len(sizes: Iterable[int], max_entries: int, max_bytes: int) -> int:
    """How many of the leading ``sizes`` one SQS call takes: at most ``max_entries`` and ``max_bytes`` together, and
    always the first (a body alone is never over the limit; the publisher refuses larger ones)."""
    count = total = 0
    for size in sizes:
        if count == max_entries or (count and total + size > max_bytes):
            break
        count += 1
        total += size
    return count


class Spool:
    def __init__(self, directory: Path, *, max_bytes: int, segment_bytes: int | None = None) -> None:
        self.log = logging.getLogger("wa_relay.publish.spool")
        self.dir = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes or max(64 * 1024, min(SEGMENT_BYTES_MAX, max_bytes // 8))
        self.depth = 0
        """Entries (complete lines) not yet sent."""
        self.bytes = 0
        """Bytes of the segments in use, their sent heads included (what counts against ``max_bytes``)."""
        self._sizes: dict[int, int] = {}
        """Segment number → its good length (reads stop there), oldest first."""
        self._next = 1
        self._read_pos = 0
        self._reader: tuple[int, BinaryIO] | None = None
        self._peeked: list[tuple[Entry, int, int]] = []
        """The last ``peek``: each entry with the position and line count after it."""
        self._peek_end = (0, 0)
        self._writer: tuple[int, int] | None = None
        """(segment number, fd) of the segment appends go to."""
        self._cursor_fd: int | None = None

    @property
    def empty(self) -> bool:
        """Nothing to send, and nothing to clean up (a segment holding only a torn line still needs a ``peek``)."""
        return self.depth == 0 and self.bytes == 0

    # ---- opening and closing ----

    def open(self) -> None:
        """Find what an earlier run left (and migrate a legacy file); count it without reading it into memory."""
        self.close()
        self._peeked = []
        self.dir.mkdir(parents=True, exist_ok=True)
        self._cursor_fd = os.open(self.dir / CURSOR_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        cursor_seg, offset = self._read_cursor()
        self._read_pos = 0
        numbers = sorted(n for n in (self._number(p) for p in self.dir.iterdir()) if n is not None)
        for n in [n for n in numbers if n < cursor_seg]:
            numbers.remove(n)
            try:
                os.unlink(self._path(n))
            except OSError as e:  # still ignored: it is below the cursor
                self.log.warning("segment %d was sent but cannot be deleted (%s)", n, e)
        legacy = self.dir / LEGACY_FILE
        if legacy.exists():
            n = (numbers[0] if numbers else cursor_seg + 1) - 1
            if n < 0:
                self.log.error("%s cannot be put before segment 0; left in place until that one is sent", legacy)
            else:
                if numbers and numbers[0] == cursor_seg:
                    self.log.warning("%s migrated before a partly sent segment: its sent part is sent again", legacy)
                self._write_cursor(n, 0)  # first: the new segment must not count as already sent
                os.rename(legacy, self._path(n))
                self._fsync_dir()
                numbers.insert(0, n)
                cursor_seg, offset = n, 0
                self.log.warning("migrated the single-file spool %s to segment %d", legacy, n)
        self._sizes = {n: self._path(n).stat().st_size for n in numbers}
        self.bytes = sum(self._sizes.values())
        self.depth = sum(_count_lines(self._path(n)) for n in numbers)
        self._next = max([*numbers, cursor_seg]) + 1
        if numbers and numbers[0] == cursor_seg:
            if offset > self._sizes[cursor_seg]:
                self.log.warning("cursor %d is past the end of segment %d; reading it from its end", offset, cursor_seg)
                offset = self._sizes[cursor_seg]
            self._read_pos = offset
            self.depth -= _count_lines(self._path(cursor_seg), offset)

    def close(self) -> None:
        self._close_reader()
        if self._writer is not None:
            os.close(self._writer[1])
            self._writer = None
        if self._cursor_fd is not None:
            os.close(self._cursor_fd)
            self._cursor_fd = None

    # ---- writing ----

    def append(self, entries: Sequence[Entry]) -> int:
        """Durably append the longest prefix of ``entries`` that fits under ``max_bytes`` (an empty spool takes one
        entry even over it); returns how many. Raises ``SpoolFull`` when none fits, ``OSError`` when the disk fails
        (then nothing of this call is kept)."""
        lines: list[bytes] = []
        size = 0
        for entry in entries:
            line = entry.line()
            if self.bytes + size > 0 and self.bytes + size + len(line) > self.max_bytes:
                break
            lines.append(line)
            size += len(line)
        if not lines:
            raise SpoolFull(f"spool full ({self.bytes} of {self.max_bytes} bytes)")
        current = None if self._writer is None else self._sizes[self._writer[0]]
        if current is None or (current > 0 and current + size > self.segment_bytes):
            self._roll()
        assert self._writer is not None
        n, fd = self._writer
        try:
            data = memoryview(b"".join(lines))
            while data:
                data = data[os.write(fd, data) :]
            os.fsync(fd)
        except OSError:
            self._undo_write()
            raise
        self._sizes[n] += size
        self.bytes += size
        self.depth += len(lines)
        return len(lines)

    def append_closed(self, entries: Sequence[Entry]) -> int:
        """``append`` to a spool nobody holds open (its publisher is stopped)."""
        self.open()
        try:
            return self.append(entries)
        finally:
            self.close()

    def _roll(self) -> None:
        if self._writer is not None:
            os.close(self._writer[1])
            self._writer = None
        n = self._next
        self._next += 1  # also after a failure: the next try must not meet a half-created file
        fd = os.open(self._path(n), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        try:
            self._fsync_dir()
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(self._path(n))
            raise
        self._writer = (n, fd)
        self._sizes[n] = 0

    def _undo_write(self) -> None:
        assert self._writer is not None
        n, fd = self._writer
        try:
            os.ftruncate(fd, self._sizes[n])
        except OSError:
            # The tail keeps what the failed write left; reads in this run stop before it, and the next append
            # starts a new segment, so after a restart it is at worst the torn last line of this one.
            os.close(fd)
            self._writer = None

    # ---- reading ----

    def peek(self, max_entries: int, max_bytes: int) -> list[Entry]:
        """The oldest entries, as many as ``batch_len`` allows (never across segments), without consuming them.
        Empty when nothing is spooled. Holds only this batch in memory."""
        self._peeked = []
        while self._sizes:
            n = next(iter(self._sizes))
            end = self._sizes[n]
            if self._read_pos >= end:
                if self._writer is not None and self._writer[0] == n:
                    self.depth = 0  # everything written was sent
                    return []
                self._finish(n)
                continue
            f = self._open_reader(n)
            f.seek(self._read_pos)
            pos, lines, total = self._read_pos, 0, 0
            while pos < end and len(self._peeked) < max_entries:
                raw = f.readline(end - pos)
                if not raw.endswith(b"\n"):
                    self.log.warning("segment %d ends in a torn line (a write a kill interrupted); skipped", n)
                    pos = end
                    break
                entry = parse_line(raw)
                if entry is None:
                    self.log.warning("segment %d: invalid line at byte %d; skipped", n, pos)
                else:
                    size = len(entry.body.encode())
                    if self._peeked and total + size > max_bytes:
                        break
                    total += size
                    self._peeked.append((entry, pos + len(raw), lines + 1))
                pos += len(raw)
                lines += 1
            self._peek_end = (pos, lines)
            if self._peeked:
                return [entry for entry, _, _ in self._peeked]
            self._advance(n, pos, lines)  # only skipped lines: move past them and look again
        self.depth = self.bytes = 0
        return []

    def consume(self, count: int) -> None:
        """The first ``count`` entries of the last ``peek`` are in SQS: move past them (and past skipped lines after
        the last), persist the position, delete the segment once all of it is sent. The position moves on in
        memory even when persisting it fails (``OSError`` then): a restart re-sends from the last persisted one."""
        if count <= 0:
            return
        pos, lines = self._peek_end if count >= len(self._peeked) else self._peeked[count - 1][1:]
        self._peeked = []
        self._advance(next(iter(self._sizes)), pos, lines)

    def _advance(self, n: int, pos: int, lines: int) -> None:
        self._read_pos = pos
        self.depth -= lines
        if pos < self._sizes[n]:
            self._write_cursor(n, pos)
        elif self._writer is not None and self._writer[0] == n:
            os.close(self._writer[1])  # the spool is empty: the next append starts a fresh segment
            self._writer = None
            self._finish(n)
        else:
            self._finish(n)

    def _finish(self, n: int) -> None:
        """Segment ``n`` is sent: delete it, and point the cursor past it (so a deletion a crash undoes is redone)."""
        self._close_reader()
        self.bytes -= self._sizes.pop(n)
        self._read_pos = 0
        try:
            os.unlink(self._path(n))
        except OSError as e:
            self.log.warning("segment %d was sent but cannot be deleted (%s); deleted at the next start", n, e)
        self._write_cursor(n + 1, 0)

    def _open_reader(self, n: int) -> BinaryIO:
        if self._reader is None or self._reader[0] != n:
            self._close_reader()
            self._reader = (n, open(self._path(n), "rb"))  # noqa: SIM115 - kept open across calls
        return self._reader[1]

    def _close_reader(self) -> None:
        if self._reader is not None:
            self._reader[1].close()
            self._reader = None

    # ---- the cursor and the rest ----

    def _read_cursor(self) -> tuple[int, int]:
        assert self._cursor_fd is not None
        raw = os.pread(self._cursor_fd, _CURSOR_LEN, 0)
        if not raw:
            return 0, 0
        try:
            seg, offset, crc = raw.decode().split()
            if int(crc, 16) != zlib.crc32(f"{seg} {offset}".encode()):
                raise ValueError("checksum mismatch")
            return int(seg), int(offset)
        except ValueError:
            # Every segment is read from its start: what was sent of the oldest is sent again, nothing is lost.
            self.log.warning("spool cursor %r is damaged; reading every segment from its start", raw)
            return 0, 0

    def _write_cursor(self, seg: int, offset: int) -> None:
        assert self._cursor_fd is not None
        head = f"{seg:010d} {offset:015d}"
        os.pwrite(self._cursor_fd, f"{head} {zlib.crc32(head.encode()):08x}\n".encode(), 0)
        os.fsync(self._cursor_fd)

    def reject(self, entries: Sequence[Entry]) -> None:
        """Keep entries SQS refused as invalid (they can never be sent as they are) beside the spool, durably."""
        append_rejected(self.dir, entries)

    def _fsync_dir(self) -> None:
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _path(self, n: int) -> Path:
        return self.dir / f"inbound.{n:08d}.spool"

    @staticmethod
    def _number(path: Path) -> int | None:
        m = _SEGMENT_RE.match(path.name)
        return int(m.group(1)) if m else None


# ---- the rejected entries (shared with the dead-letter tool, ``connector.deadletters``) ----
#
# Two processes write ``inbound.spool.rejected``: the connector appends, the dead-letter tool takes out what it put
# back on the queue. Both hold an exclusive ``flock`` on the file while they change it. The tool writes what remains
# to a new file and renames it over the old one (a crash leaves one of the two whole, never a half-rewritten file);
# an append that waited for the lock on the replaced file finds it replaced (another inode at the path) and appends
# to the new one instead, so nothing the connector set aside meanwhile is lost.


def append_rejected(directory: Path, entries: Sequence[Entry]) -> None:
    """Append ``entries`` to the rejected file, durably, under its lock."""
    path = Path(directory) / REJECTED_FILE
    data = b"".join(entry.line() for entry in entries)
    while True:
        with open(path, "ab") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            if not _is_current(path, f.fileno()):
                continue  # replaced while we waited for the lock
            created = os.fstat(f.fileno()).st_size == 0
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if created:
            _fsync_directory(path.parent)
        return


def read_rejected(directory: Path) -> list[bytes]:
    """The rejected file's lines as stored (each with its newline; a torn last line without), oldest first."""
    try:
        return (Path(directory) / REJECTED_FILE).read_bytes().splitlines(keepends=True)
    except FileNotFoundError:
        return []


def remove_rejected(directory: Path, lines: Sequence[bytes]) -> int:
    """Take one stored copy of each of ``lines`` (as ``read_rejected`` returned them) out of the rejected file, under
    its lock, keeping everything else, also what was appended since it was read; returns how many were taken out."""
    path = Path(directory) / REJECTED_FILE
    while True:
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed below, after the rename
        except FileNotFoundError:
            return 0
        with f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            if not _is_current(path, f.fileno()):
                continue
            stored = f.read().splitlines(keepends=True)
            wanted = list(lines)
            kept: list[bytes] = []
            for line in stored:
                if line in wanted:
                    wanted.remove(line)
                else:
                    kept.append(line)
            removed = len(stored) - len(kept)
            if removed:
                tmp = path.with_name(path.name + ".tmp")
                with open(tmp, "wb") as out:
                    out.write(b"".join(kept))
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, path)  # still under the old file's lock: a waiting append then sees it replaced
                _fsync_directory(path.parent)
            return removed


def _is_current(path: Path, fd: int) -> bool:
    """Whether ``fd`` is still the file at ``path`` (not renamed over or deleted since it was opened)."""
    try:
        at_path, opened = os.stat(path), os.fstat(fd)
    except FileNotFoundError:
        return False
    return (at_path.st_dev, at_path.st_ino) == (opened.st_dev, opened.st_ino)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def parse_line(raw: bytes) -> Entry | None:
    """One stored line as an ``Entry``; ``None`` when it is not one (torn or damaged)."""
    try:
        data = json.loads(raw)
        return Entry(str(data["group"]), str(data["dedup"]), str(data["body"]))
    except (ValueError, KeyError, TypeError):
        return None


def _count_lines(path: Path, limit: int | None = None) -> int:
    """Complete lines in the first ``limit`` bytes (all of them by default), read in chunks: never the whole file."""
    count, left = 0, limit
    with open(path, "rb") as f:
        while left is None or left > 0:
            chunk = f.read(1 << 20 if left is None else min(1 << 20, left))
            if not chunk:
                break
            count += chunk.count(b"\n")
            if left is not None:
                left -= len(chunk)
    return count
