"""Tail files: read from the start (or the end, or a checkpoint), follow, survive rotation.

A source knows nothing of the data: it yields `LineBatch(path, key, lines, start_offset,
end_offset, skipped)`: whole lines without their newline, read in large blocks; a batch keeps
its block and cuts the lines only when asked (`LineBatch.lines`: the body reader scans the
block itself). `key` names the file identity (see fingerprint.py), never its path.

Rotation, the Fluent Bit in_tail way:
- rename + create: the path names another file at the next scan; the old file keeps being read
  (first: a request that straddles the rotation is read in order) and is let go once it has had
  no new data for `rotate_wait_secs`; its partial last line is then flushed.
- copytruncate: the size drops below the offset, or the first line changed (truncated and
  regrown past the old size between two polls): read again from 0. The copy (same first line,
  another inode: `<path>.1`, or any file the patterns match) resumes at the old offset: it
  holds the lines written between our last read and the cut, and is not read twice.
- delete + recreate, a file that appears later: found by the next scan (read from the start).
- rotated twice between two scans (a reader held back, a busy machine): when a matched path
  names a new file, its siblings rotated away unread are found and read first (recover.py),
  as after a restart.
- symlinks: followed; the identity is the target's. Two paths to one file are read once.
- compressed rotated names (`.gz`, `.zst`, `.bz2`, `.xz`) are never read.

The files are first looked at when the tailer is made (the sidecar's start), not at its first
read. Files that cannot be opened are warned about once (then at most every `WARN_EVERY_SECS`), with
the fix, and retried with a growing back-off; the other files go on. A line longer than
`max_line_bytes` is skipped up to its newline without being held in memory and reported in
`LineBatch.skipped` as (offset, length) so it can be set aside.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import logging
import os
import stat
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from sidecar.sources.checkpoint import FileEntry
from sidecar.sources.fingerprint import Identity, identify, is_compressed, same_fingerprint
from sidecar.sources.lines import LineBatch, Lines
from sidecar.sources.recover import Found, copies_of, missed_siblings, rotated_while_down
from sidecar.waits import wait_set

log = logging.getLogger("sidecar.sources.tail")

WARN_EVERY_SECS = 300.0  # repeat an unreadable-file warning at most this often
MAX_BACKOFF_SECS = 60.0


@dataclass(slots=True)
class _File:
    path: str
    fd: int
    dev: int
    ino: int
    mtime: float
    ident: Identity | None = None
    offset: int = 0  # next byte to read
    lines: Lines = field(default_factory=lambda: Lines(0))  # the partial line, bounded
    replay_until: int = 0  # batches stay below this offset while under it
    draining: bool = False  # no longer matched by the patterns
    last_data: float = 0.0  # monotonic time of the last read that returned data


@dataclass(slots=True)
class _Blocked:
    next_try: float
    backoff: float
    last_warn: float


class Tailer:
    """Follows every file matching `patterns` (globs allowed)."""

    def __init__(
        self,
        patterns: list[str],
        *,
        name: str = "",
        start_at: str = "beginning",
        read_chunk_bytes: int = 1 << 20,
        poll_interval_secs: float = 0.25,
        rescan_interval_secs: float = 1.0,
        rotate_wait_secs: float = 5.0,
        max_line_bytes: int = 8 << 20,
        checkpoint: dict[str, FileEntry] | None = None,
    ) -> None:
        self.patterns = patterns
        self.name = name
        self.start_at = start_at
        self.read_chunk_bytes = read_chunk_bytes
        self.poll_interval_secs = poll_interval_secs
        self.rescan_interval_secs = rescan_interval_secs
        self.rotate_wait_secs = rotate_wait_secs
        self.max_line_bytes = max_line_bytes
        self.known: dict[str, FileEntry] = dict(checkpoint or {})  # identity key -> entry
        self._restored = dict(self.known)  # as saved: what recover.py compares the disk with
        self._files: dict[tuple[int, int], _File] = {}  # (dev, ino) -> open file
        self._blocked: dict[str, _Blocked] = {}
        # a copytruncate'd file's fingerprint -> (offset read, dev, ino): to resume its copy
        self._copies: dict[tuple[str, int], tuple[int, int, int]] = {}
        self._left: dict[str, int] = {}  # identity key of a file let go -> offset read
        self._first_scan = True
        self._missing_warned: set[str] = set()
        self.bytes_read = 0
        self.lines_read = 0
        self.rotations = 0
        self.truncations = 0
        self.lines_too_long = 0
        self.idle_since: float | None = None  # monotonic time it caught up (follow); None: busy
        # The first look, now rather than at the first read (after the rest of start-up): a
        # file rotated away in between is then a rotation like any other, read to its end.
        self._scan()

    @property
    def unreadable(self) -> int:
        """Matched files that cannot be opened right now."""
        return len(self._blocked)

    # ------------------------------------------------------------------ discovery
    def _matches(self) -> list[str]:
        found: list[str] = []
        for pat in self.patterns:
            if glob.has_magic(pat):
                found += sorted(glob.glob(pat))
            elif os.path.lexists(pat):
                found.append(pat)
            elif pat not in self._missing_warned:
                self._missing_warned.add(pat)
                log.warning("The log file %s does not exist yet; waiting for it.", pat)
        return [p for p in found if not is_compressed(p)]

    def _scan(self) -> None:
        now = time.monotonic()
        seen: set[tuple[int, int]] = set()
        renewed: list[str] = []  # matched paths that name a file newly opened
        matches = self._matches()
        for path in set(self._blocked) - set(matches):
            del self._blocked[path]  # an unreadable file that went away
        for path in matches:
            try:
                st = os.stat(path)  # follows a symlink: the identity is the target's
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            did = (st.st_dev, st.st_ino)
            if did in seen:
                continue  # the same file through another path or link
            seen.add(did)
            f = self._files.get(did)
            if f is not None:
                f.path, f.draining = path, False
                continue
            if self._open(path, now, st.st_mtime):
                renewed.append(path)
        for did, f in self._files.items():
            if did not in seen and not f.draining:
                f.draining = True  # renamed away or deleted: read to its end, then let go
                f.last_data = now
                self.rotations += 1
                log.info("The file %s was rotated or removed; reading it to its end.", f.path)
        if self._first_scan:
            self._first_scan = False
            self._find_rotated_while_down()
        elif renewed:
            self._find_missed(renewed)

    def _open(self, path: str, now: float, mtime: float, *, rotated: bool = False) -> bool:
        """Open and place a file; whether it is newly open."""
        blocked = self._blocked.get(path)
        if blocked is not None and now < blocked.next_try:
            return False
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            self._cannot_open(path, exc, now, blocked)
            return False
        if blocked is not None:
            del self._blocked[path]
            log.info("The log file %s can be read now.", path)
        st = os.fstat(fd)
        did = (st.st_dev, st.st_ino)
        if did in self._files:
            os.close(fd)
            return False
        f = _File(path, fd, st.st_dev, st.st_ino, mtime, last_data=now)
        f.lines = Lines(self.max_line_bytes)
        self._files[did] = f
        with contextlib.suppress(OSError):  # unreadable head: identified at the first read
            f.ident = identify(fd)
        f.draining = rotated
        if f.ident is not None:
            self._place(f, st.st_size)
        elif self._first_scan and self.start_at == "end":
            f.offset = st.st_size
            f.lines.reset(f.offset)
        return True

    def _place(self, f: _File, size: int) -> None:
        """Pick the start offset of a file whose identity just became known."""
        f.offset = self._start_offset(f, size)
        f.lines.reset(f.offset)

    def _start_offset(self, f: _File, size: int) -> int:
        assert f.ident is not None
        key = f.ident.key
        entry = self.known.get(key)
        if entry is not None:
            entry.path = f.path
            if key in self._left:  # let go earlier in this run, matched again
                return min(self._left.pop(key), size)
            offset = min(entry.offset, size)  # known from the checkpoint
            f.replay_until = entry.read_offset if entry.read_offset > offset else 0
            return offset
        offset = f.offset
        copied = self._copies.get((f.ident.fp, f.ident.fp_len))
        if copied is not None and copied[1:] != (f.dev, f.ino):
            del self._copies[(f.ident.fp, f.ident.fp_len)]  # the copy of a copytruncate'd file
            offset = min(copied[0], size)  # a shorter copy holds only lines read already
        elif self._first_scan and self.start_at == "end" and offset == 0:
            offset = size
        self.known[key] = FileEntry(
            f.path, f.dev, f.ino, f.ident.fp, f.ident.fp_len, offset, offset, [], time.time()
        )
        return offset

    def _find_rotated_while_down(self) -> None:
        """Files renamed away while we were down (see recover.py): read them to their end."""
        matched = {(f.dev, f.ino) for f in self._files.values()}
        for found in rotated_while_down(self.patterns, self._restored, matched):
            e = found.copy_of
            if e is not None:  # the copy of a file truncated meanwhile: resume at our offset
                self._copies[(e.fp, e.fp_len)] = (e.offset, e.dev, e.ino)
            self._open_rotated(found, "rotated while the sidecar was stopped")

    def _find_missed(self, renewed: list[str]) -> None:
        """Files rotated away from `renewed` paths since the last scan, never seen: read them
        (before the new files: they are older)."""
        for found in missed_siblings(renewed, self.known, set(self._files)):
            if self._open_rotated(found, "rotated away before it was read"):
                self.rotations += 1

    def _open_rotated(self, found: Found, why: str) -> bool:
        opened = self._open(found.path, time.monotonic(), found.mtime, rotated=True)
        if opened:
            log.info("Reading %s, %s.", found.path, why)
        return opened

    def _cannot_open(self, path: str, exc: OSError, now: float, b: _Blocked | None) -> None:
        if b is None:
            b = self._blocked[path] = _Blocked(now, 0.5, -WARN_EVERY_SECS)
        b.backoff = min(b.backoff * 2, MAX_BACKOFF_SECS)
        b.next_try = now + b.backoff
        if now - b.last_warn >= WARN_EVERY_SECS:
            b.last_warn = now
            fix = (
                "give the sidecar's user read access, e.g. add it to the file's group "
                "(usermod -aG <group> <user>) or fix the proxy's log file mode"
                if isinstance(exc, PermissionError)
                else "check the path and its folder"
            )
            log.warning(
                "Cannot open the log file %s (%s): %s. Retrying with back-off; the other "
                "files are read meanwhile.",
                path,
                exc.strerror,
                fix,
            )

    # ------------------------------------------------------------------ reading
    def _read(self, f: _File, final: bool) -> list[LineBatch] | None:
        """Read one block; the batches it completes ([] on progress without whole lines), or
        None at the end of the file."""
        try:
            size = os.fstat(f.fd).st_size
            if f.ident is None:
                f.ident = identify(f.fd)
                if f.ident is None:
                    return self._flush(f) if final else None
                self._place(f, size)
            elif size < f.offset or (
                size > f.offset and not same_fingerprint(f.fd, f.ident.fp, f.ident.fp_len)
            ):
                self._truncated(f)
                return []
            if size <= f.offset:
                return self._flush(f) if final else None
            limit = self.read_chunk_bytes
            if f.replay_until > f.offset:
                limit = min(limit, f.replay_until - f.offset)
            block = os.pread(f.fd, limit, f.offset)
        except OSError as exc:
            log.warning("Reading %s failed (%s); will retry.", f.path, exc.strerror)
            return None
        if not block:
            return None
        base = f.offset
        f.offset += len(block)
        self.bytes_read += len(block)
        return self._split(f, block, base)

    def _truncated(self, f: _File) -> None:
        self.truncations += 1
        log.warning("The file %s was truncated; reading it again from the start.", f.path)
        old = f.ident
        if old is not None:
            self._copies[(old.fp, old.fp_len)] = (f.lines.start, f.dev, f.ino)
        f.ident = identify(f.fd)
        f.offset = f.replay_until = 0
        f.lines.reset(0)
        if f.ident is not None:
            self._place(f, os.fstat(f.fd).st_size)
        if old is not None:  # the copy holds what was written between our last read and the cut
            for found in copies_of(f.path, old.fp, old.fp_len, self.known, set(self._files)):
                self._open_rotated(found, f"the copy of {f.path} (the rest of what it held)")

    def _split(self, f: _File, block: bytes, base: int) -> list[LineBatch]:
        out = f.lines.feed(block, base, f.path, f"{self.name}|{f.ident.key}")  # type: ignore[union-attr]
        for b in out:
            self.lines_too_long += len(b.skipped)
        return out

    def _flush(self, f: _File) -> list[LineBatch] | None:
        """At the end of a file that is let go (or of `run --once`): the partial last line."""
        if f.ident is None:
            return None
        b = f.lines.flush(f.offset, f.path, f"{self.name}|{f.ident.key}")
        if b is None:
            return None
        self.lines_too_long += len(b.skipped)
        return [b]

    # ------------------------------------------------------------------ the loop
    async def batches(
        self, *, follow: bool, stop: asyncio.Event | None = None
    ) -> AsyncIterator[LineBatch]:
        """Yield line batches. With `follow=False`, stop at EOF of every file (`run --once`)."""
        try:
            async for b in self._follow(follow, stop):
                try:
                    yield b
                finally:  # once read: a reader that scanned the block has set its count
                    self.lines_read += b.count
                b = None  # type: ignore[assignment]  # not held through the next read (its block)
        finally:
            self.close()

    def _order(self) -> list[_File]:
        # Rotated-away files first (their data is older), then the oldest file first.
        return sorted(self._files.values(), key=lambda f: (not f.draining, f.mtime, f.path))

    async def _follow(self, follow: bool, stop: asyncio.Event | None) -> AsyncIterator[LineBatch]:
        loop = asyncio.get_running_loop()
        self._scan()  # what changed since the first look
        last_scan = loop.time()
        while True:
            got = None
            for f in self._order():
                got = self._read(f, final=not follow)
                if got is not None:
                    f.last_data = loop.time()
                    break  # one block per round, oldest data first
            if got:
                self.idle_since = None
            elif self.idle_since is None:
                self.idle_since = loop.time()
            for b in got or ():
                yield b
            # the batches (their blocks) are not held through the next read
            read, got, b = got is not None, None, None
            if stop is not None and stop.is_set():
                return  # stop promptly even when the files keep growing
            now = loop.time()
            if read:
                if now - last_scan >= self.rescan_interval_secs:  # busy: still notice rotation
                    self._scan()
                    last_scan = now
                await asyncio.sleep(0)  # let downstream stages run between blocks
                continue
            if not follow:
                return
            for b in self._let_go(now):
                yield b
            b = None  # type: ignore[assignment]  # not held through the sleep and next read
            if now - last_scan >= min(self.poll_interval_secs, self.rescan_interval_secs):
                self._scan()
                last_scan = now
                continue  # a new or rotated file may have data: look before sleeping
            await wait_set(stop, self.poll_interval_secs)

    def _let_go(self, now: float) -> list[LineBatch]:
        """Close rotated-away files idle for `rotate_wait_secs`; flush their partial line."""
        out: list[LineBatch] = []
        for did, f in list(self._files.items()):
            if f.draining and now - f.last_data >= self.rotate_wait_secs:
                out += self._flush(f) or []
                del self._files[did]
                os.close(f.fd)
                if f.ident is not None:
                    self._left[f.ident.key] = f.offset
                    if f.ident.key in self.known:
                        self.known[f.ident.key].seen = time.time()
        return out

    def pending_bytes(self) -> int:
        """Bytes already in the followed files but not read yet (0 when caught up)."""
        n = 0
        for f in self._files.values():
            with contextlib.suppress(OSError):
                n += max(os.fstat(f.fd).st_size - f.offset, 0)
        return n

    def close(self) -> None:
        for f in self._files.values():
            with contextlib.suppress(OSError):
                os.close(f.fd)
        self._files.clear()

    def entries(self, now: float, expire_after_secs: float) -> dict[str, FileEntry]:
        """The checkpoint entries of this tailer (seen times refreshed; old ones dropped)."""
        open_keys = {f.ident.key for f in self._files.values() if f.ident is not None}
        for key in list(self.known):
            e = self.known[key]
            if key in open_keys:
                e.seen = now
            elif now - e.seen > expire_after_secs:
                del self.known[key]
        return self.known
