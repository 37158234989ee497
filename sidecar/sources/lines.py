"""Cut a file's blocks into whole lines, holding at most `max_line_bytes` of a partial line.

`Lines.feed(block, base, ...)` takes the next block read at file offset `base` and returns the
batches of whole lines it completes. A batch's lines are contiguous from `start_offset` (line i
starts at start_offset + the lengths of lines 0..i-1 plus their newlines), so a position can be
computed for any line. The partial last line is kept as a list of pieces (joined once, when its
newline comes: no quadratic re-copying); once it passes `max_line_bytes` the pieces are dropped
and the rest of the line is skipped up to its newline, then reported in `LineBatch.skipped` as
(offset, length). Splitting is one pass per block: `_splitlines.c` (memchr) when built, else
`bytes.split` (which looks at one byte at a time); both give the same list.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sidecar import native


def _split_pure(block: bytes) -> list[bytes]:
    return block.split(b"\n")


_splitlines = native.load("sidecar.sources._splitlines")
_split: Callable[[bytes], list[bytes]] = _splitlines.split_newlines if _splitlines else _split_pure


@dataclass(slots=True)
class LineBatch:
    path: str
    key: str  # "<tailer name>|<identity key>": the ledger's file key
    lines: list[bytes]
    start_offset: int  # offset of the first line
    end_offset: int  # offset just past the last line (and its newline, if it had one)
    skipped: list[tuple[int, int]] = field(default_factory=list)  # over-long lines (off, len)


class Lines:
    __slots__ = ("max_line_bytes", "part_len", "parts", "skipping", "start")

    def __init__(self, max_line_bytes: int, start: int = 0) -> None:
        self.max_line_bytes = max_line_bytes
        self.reset(start)

    def reset(self, start: int) -> None:
        self.start = start  # offset of the partial line's first byte
        self.parts: list[bytes] = []
        self.part_len = 0
        self.skipping = False  # inside an over-long line

    @property
    def pending(self) -> bool:
        """A partial line (or an over-long one being skipped) waits for its newline."""
        return bool(self.parts) or self.skipping

    def feed(self, block: bytes, base: int, path: str, key: str) -> list[LineBatch]:
        out: list[LineBatch] = []
        skipped: list[tuple[int, int]] = []
        lines: list[bytes] = []
        pos = 0
        if self.parts or self.skipping:  # the block continues a partial line
            nl = block.find(b"\n")
            if nl < 0:
                self._grow(block)
                return out
            if self.skipping:
                skipped.append((self.start, base + nl - self.start))
            else:
                line = b"".join(self.parts) + block[:nl]
                if len(line) > self.max_line_bytes:
                    skipped.append((self.start, len(line)))
                else:
                    lines.append(line)
            self.parts, self.part_len, self.skipping = [], 0, False
            pos = nl + 1
        start = self.start if lines else base + pos
        last = block.rfind(b"\n", pos)
        if last >= 0:
            mid = _split(block)  # the whole block: no copy of it first
            rest = mid.pop()  # after the last newline
            if pos:
                del mid[0]  # it completed the partial line
            if last - pos > self.max_line_bytes and max(map(len, mid)) > self.max_line_bytes:
                lines, start = self._cut(mid, lines, start, base + pos, skipped, out, path, key)
            else:
                lines = lines + mid if lines else mid
            end = base + last + 1
        else:
            end = base + pos
            rest = block[pos:]
        self.start = end
        if lines or skipped:
            out.append(LineBatch(path, key, lines, start, end, skipped))
        if rest:
            self._grow(rest)
        return out

    def _cut(
        self,
        mid: list[bytes],
        lines: list[bytes],
        start: int,
        at: int,
        skipped: list[tuple[int, int]],
        out: list[LineBatch],
        path: str,
        key: str,
    ) -> tuple[list[bytes], int]:
        """Cut the batch around over-long lines (rare): each batch stays contiguous."""
        limit = self.max_line_bytes
        for line in mid:
            if len(line) > limit:
                skipped.append((at, len(line)))
                if lines:
                    out.append(LineBatch(path, key, lines, start, at, []))
                lines = []
                start = at + len(line) + 1
            else:
                lines.append(line)
            at += len(line) + 1
        return lines, start

    def _grow(self, data: bytes) -> None:
        if self.skipping:
            return
        self.part_len += len(data)
        if self.part_len > self.max_line_bytes:
            self.parts, self.part_len, self.skipping = [], 0, True  # never hold it whole
        else:
            self.parts.append(data)

    def flush(self, end: int, path: str, key: str) -> LineBatch | None:
        """At the end of a file that is let go (or of `run --once`): the partial last line."""
        if not self.pending:
            return None
        start = self.start
        if self.skipping:
            b = LineBatch(path, key, [], start, end, [(start, end - start)])
        else:
            b = LineBatch(path, key, [b"".join(self.parts)], start, end)
        self.reset(end)
        return b
