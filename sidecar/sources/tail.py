"""Tail files: read from the start (or the end), then follow; hand on batches of whole lines.

A source knows nothing of the data: it yields `LineBatch(path, file_id, lines, end_offset)`,
where `lines` are raw bytes without their newline and `end_offset` is the offset just past the
last line. Reading is done in large blocks and split with `bytes.split`, so the per-line cost is
one slice; downstream stages get lists, never single lines through a queue.

Files are identified by (device, inode), never by path. When the inode behind a path changes
(rename rotation), the old file is drained to EOF before the new one is read, so a stream that
straddles a rotation is read whole. A file that shrinks below the read offset (copytruncate) is
read again from the start. Checkpoints (restart safety) are a later stage: see
docs/architecture.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

log = logging.getLogger("sidecar.sources.tail")


@dataclass(frozen=True, slots=True)
class FileId:
    dev: int
    ino: int


@dataclass(slots=True)
class LineBatch:
    path: str
    file_id: FileId
    lines: list[bytes]
    end_offset: int


@dataclass
class _Open:
    path: str
    fh: object  # io.BufferedReader / FileIO
    file_id: FileId
    offset: int = 0
    rest: bytes = b""  # a partial line waiting for its newline
    stats: dict[str, int] = field(default_factory=dict)


class Tailer:
    """Follows every file matching `patterns` (globs allowed)."""

    def __init__(
        self,
        patterns: list[str],
        *,
        start_at: str = "beginning",
        read_chunk_bytes: int = 1 << 20,
        poll_interval_secs: float = 0.25,
        rescan_interval_secs: float = 5.0,
    ) -> None:
        self.patterns = patterns
        self.start_at = start_at
        self.read_chunk_bytes = read_chunk_bytes
        self.poll_interval_secs = poll_interval_secs
        self.rescan_interval_secs = rescan_interval_secs
        self._open: dict[str, _Open] = {}
        self._draining: list[_Open] = []  # rotated-away files still being read to EOF
        self._first_scan = True
        self.bytes_read = 0
        self.lines_read = 0
        self.rotations = 0
        self.truncations = 0
        self.missing_warned: set[str] = set()
        self.idle_since: float | None = None  # monotonic time it caught up (follow); None: busy

    # ------------------------------------------------------------------ discovery
    def _paths(self) -> list[str]:
        found: list[str] = []
        for pat in self.patterns:
            matches = sorted(glob.glob(pat)) if glob.has_magic(pat) else [pat]
            for m in matches:
                if os.path.isfile(m):
                    found.append(m)
                elif pat not in self.missing_warned:
                    self.missing_warned.add(pat)
                    log.warning("The log file %s does not exist yet; waiting for it.", m)
        return found

    def _scan(self) -> None:
        for path in self._paths():
            try:
                st = os.stat(path)
            except OSError:
                continue
            fid = FileId(st.st_dev, st.st_ino)
            cur = self._open.get(path)
            if cur is not None and cur.file_id == fid:
                continue
            if cur is not None:
                # The path now names another file: rotation. Drain the old one first.
                self.rotations += 1
                log.info("The file %s was rotated; finishing the old file first.", path)
                self._draining.append(cur)
            try:
                fh = open(path, "rb", buffering=0)  # noqa: SIM115 - kept open while following
            except OSError as exc:
                log.warning("Cannot open %s (%s); will retry.", path, exc.strerror)
                continue
            offset = 0
            if self._first_scan and self.start_at == "end" and cur is None:
                offset = fh.seek(0, os.SEEK_END)
            self._open[path] = _Open(path, fh, fid, offset)
        self._first_scan = False

    # ------------------------------------------------------------------ reading
    def _read_one(self, f: _Open, final: bool) -> LineBatch | None:
        """Read up to one block from `f`; return its whole lines, or None at EOF."""
        fh = f.fh
        try:
            size = os.fstat(fh.fileno()).st_size  # type: ignore[attr-defined]
        except OSError:
            return None
        if size < f.offset:
            self.truncations += 1
            log.warning("The file %s was truncated; reading it again from the start.", f.path)
            f.offset = 0
            f.rest = b""
        if size == f.offset:
            if final and f.rest:
                line, f.rest = f.rest, b""
                self.lines_read += 1
                return LineBatch(f.path, f.file_id, [line], f.offset)
            return None
        fh.seek(f.offset)  # type: ignore[attr-defined]
        block = fh.read(self.read_chunk_bytes)  # type: ignore[attr-defined]
        if not block:
            return None
        f.offset += len(block)
        self.bytes_read += len(block)
        if f.rest:
            block = f.rest + block
        lines = block.split(b"\n")
        f.rest = lines.pop()  # bytes after the last newline (b"" when the block ends a line)
        if not lines:
            return LineBatch(f.path, f.file_id, [], f.offset - len(f.rest))
        self.lines_read += len(lines)
        return LineBatch(f.path, f.file_id, lines, f.offset - len(f.rest))

    def _read_all_ready(self, final: bool) -> list[LineBatch]:
        out: list[LineBatch] = []
        for f in list(self._draining):
            while (b := self._read_one(f, final=True)) is not None:
                out.append(b)
            self._draining.remove(f)
            f.fh.close()  # type: ignore[attr-defined]
        for f in self._open.values():
            b = self._read_one(f, final)
            if b is not None:
                out.append(b)
        return out

    async def batches(
        self, *, follow: bool, stop: asyncio.Event | None = None
    ) -> AsyncIterator[LineBatch]:
        """Yield line batches. With `follow=False`, stop at EOF of every file (`run --once`)."""
        try:
            async for b in self._follow(follow, stop):
                yield b
        finally:
            self.close()

    async def _follow(self, follow: bool, stop: asyncio.Event | None) -> AsyncIterator[LineBatch]:
        loop = asyncio.get_running_loop()
        self._scan()
        last_scan = loop.time()
        while True:
            got = self._read_all_ready(final=not follow)
            if got:
                self.idle_since = None
            elif self.idle_since is None:
                self.idle_since = loop.time()
            for b in got:
                yield b
            if got:
                if stop is not None and stop.is_set():
                    return  # stop promptly even when the files keep growing
                await asyncio.sleep(0)  # let downstream stages run between blocks
                continue
            if not follow:
                return
            if stop is not None and stop.is_set():
                return
            now = loop.time()
            if now - last_scan >= self.rescan_interval_secs or self._any_rotated():
                self._scan()
                last_scan = now
                continue
            if stop is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.poll_interval_secs)
            else:
                await asyncio.sleep(self.poll_interval_secs)

    def _any_rotated(self) -> bool:
        for path, f in self._open.items():
            try:
                st = os.stat(path)
            except OSError:
                continue
            if FileId(st.st_dev, st.st_ino) != f.file_id:
                return True
        return any(p not in self._open for p in self._paths())  # a new file appeared

    def close(self) -> None:
        for f in list(self._open.values()) + self._draining:
            with contextlib.suppress(OSError):
                f.fh.close()  # type: ignore[attr-defined]
        self._open.clear()
        self._draining.clear()
