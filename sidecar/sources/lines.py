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

from sidecar import native


def _split_pure(block: bytes, start: int = 0, end: int | None = None) -> list[bytes]:
    return (block[start:end] if start or end is not None else block).split(b"\n")


def _count_pure(block: bytes, start: int, end: int) -> int:
    return block.count(b"\n", start, end) + 1


_splitlines = native.load("sidecar.sources._splitlines")
# split(block[, start, end]) -> block[start:end].split(b"\n"), the range not copied first (C)
_split: Callable[..., list[bytes]] = _splitlines.split_newlines if _splitlines else _split_pure
# count_lines(block, start, end) -> len(block[start:end].split(b"\n")), without the pieces
count_lines: Callable[[bytes, int, int], int] = (
    _splitlines.count_lines if _splitlines else _count_pure
)


class LineBatch:
    """Whole lines of one file, contiguous from `start_offset` to `end_offset`.

    A batch cut from one read block keeps the block instead of a list of its lines: its lines
    are `head` (the partial line the block completed, if any) and then the pieces of
    `block[block_from:block_to]` between newlines. `lines` cuts them on first use (a list of
    bytes, as always); the body reader scans the block itself (parse/body.py,
    `decode_chunk_block`) and never makes an object per line. `count` is the number of lines."""

    __slots__ = (
        "_count",
        "_lines",
        "block",
        "block_from",
        "block_to",
        "end_offset",
        "head",
        "key",
        "path",
        "skipped",
        "start_offset",
    )

    def __init__(
        self,
        path: str,
        key: str,  # "<tailer name>|<identity key>": the ledger's file key
        lines: list[bytes],  # every line; with `block`: the lines before the block's
        start_offset: int,  # offset of the first line
        end_offset: int,  # offset just past the last line (and its newline, if it had one)
        skipped: list[tuple[int, int]] | None = None,  # over-long lines (offset, length)
        *,
        block: bytes | None = None,
        block_from: int = 0,
        block_to: int = 0,
        count: int | None = None,
    ) -> None:
        self.path = path
        self.key = key
        self.start_offset = start_offset
        self.end_offset = end_offset
        self.skipped = [] if skipped is None else skipped
        self.block = block
        self.block_from = block_from
        self.block_to = block_to
        if block is None:
            self._lines: list[bytes] | None = lines
            self.head: list[bytes] = []
            self._count: int | None = len(lines)
        else:
            self._lines = None
            self.head = lines
            self._count = count

    @property
    def count(self) -> int:
        """The number of lines (counted on first use, unless the reader that scanned the block
        set it: `count = n`)."""
        if self._count is None:
            if self._lines is not None:
                self._count = len(self._lines)
            else:
                assert self.block is not None
                self._count = len(self.head) + count_lines(
                    self.block, self.block_from, self.block_to
                )
        return self._count

    @count.setter
    def count(self, n: int) -> None:
        self._count = n

    @property
    def lines(self) -> list[bytes]:
        """The batch's lines (cut from the block on first use, which then lets the block go:
        the lines hold the same bytes, and a block and its lines held together were twice the
        read size, e.g. the access reader's whole batch while it waits for the body log)."""
        if self._lines is None:
            assert self.block is not None
            self._lines = self.head + _split(self.block, self.block_from, self.block_to)
            self.block, self.head = None, []
        return self._lines

    def edge_lines(self) -> tuple[bytes | None, bytes | None]:
        """(first line, last line), without cutting every line; None when there are none."""
        if self._lines is not None or self.block is None:
            lines = self.lines
            return (lines[0], lines[-1]) if lines else (None, None)
        block, a, b = self.block, self.block_from, self.block_to
        nl = block.find(b"\n", a, b)
        first = block[a : b if nl < 0 else nl]
        nl = block.rfind(b"\n", a, b)
        last = block[nl + 1 if nl >= 0 else a : b]
        return (self.head[0] if self.head else first), last

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LineBatch):
            return NotImplemented
        return (self.path, self.key, self.lines, self.start_offset, self.end_offset) == (
            other.path,
            other.key,
            other.lines,
            other.start_offset,
            other.end_offset,
        ) and self.skipped == other.skipped

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"LineBatch({self.path!r}, {self.key!r}, {self.count} lines, {self.start_offset}, "
            f"{self.end_offset}, {self.skipped!r})"
        )


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
        if last >= 0 and last - pos <= self.max_line_bytes:  # no line can be too long
            self.start = end = base + last + 1
            out.append(
                LineBatch(
                    path,
                    key,
                    lines,
                    start,
                    end,
                    skipped,
                    block=block,
                    block_from=pos,
                    block_to=last,
                )
            )
            rest = block[last + 1 :]
            if rest:
                self._grow(rest)
            return out
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
