"""One pending request's state, and the body-log helper the table needs.

A request in flight costs its `Pending` (slots) plus its raw parts, packed (compressed) while
the join is under pressure, until compaction (join/storage.py); its head and tail after, and the
visible text of its middle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sidecar import native
from sidecar.parse.fields import TIME_MAX, TIME_MIN
from sidecar.types import AccessRecord

# Rough Python cost of a pending request beyond its bytes (object, dict entry, lists), and of
# an access record (the object and its header map). Used for the byte bound only.
PENDING_OVERHEAD = 1024
ACCESS_OVERHEAD = 1500


@dataclass(slots=True)
class Pending:
    source: str
    # raw parts since the head / last compaction: body-log lines, or a read block's lines of the
    # request joined by b"\n" in one bytes object (a *chunk*, see `chunk_lines`)
    parts: list = field(default_factory=list)
    size: int = 0  # bytes in parts (the lines', without the newlines between them)
    lines: int = 0  # body-log lines in parts
    packed: list[bytes] | None = None  # the parts before `parts`, zlib-packed (join/storage.py)
    packed_raw: int = 0  # their raw bytes
    packed_lines: int = 0  # their lines
    packed_size: int = 0  # what the packed blobs cost
    packable: bool = True  # False: a part could not be packed (not bytes, or a newline in it)
    text: str | None = None  # a whole body (`bodies` style)
    head: Any = None  # after compaction: the stream's first events, one raw part
    head_size: int = 0
    prior: list[bytes] | None = None  # visible text of the compacted middle, UTF-8
    prior_len: int = 0
    prior_extra: int = 0
    floor: int = 0  # do not try to compact again below this size
    nocompact: bool = False  # not a stream: never compact
    access: AccessRecord | None = None
    end: str | None = None
    content_type: str | None = None
    truncated: bool = False
    first_ts: float | None = None
    last_ts: float | None = None
    seen: float | None = None  # log time of the last record
    ts_due: bool = False  # last_ts / seen are the time of parts[-1], not read yet (`settle`)
    touched: float = 0.0  # wall (monotonic) time of the last record
    source_path: str | None = None
    records: int = 0
    dup: bool = False  # the id was already emitted complete
    dup_key: str | None = None
    key: tuple | None = None  # its access line's (time, byte offset)
    cost: int = 0  # bytes counted in Joiner.pending_bytes
    positions: Any = None  # issue 8: source bytes of the request (opaque here)


def settle(p: Pending) -> None:
    """Bring `last_ts` / `seen` up to date: the hot path appends data without reading its time
    (a float parse per request per batch, about as much as the rest of `add_chunks`); it is read
    here, from the last raw part, whenever the time is needed or that part is about to go."""
    if p.ts_due:
        p.ts_due = False
        if p.parts:
            ts = last_ts(p.parts[-1])
            if ts is not None:
                p.last_ts = p.seen = ts


def has_data(p: Pending) -> bool:
    """Has body data been seen for `p` (raw, packed or compacted)?"""
    return bool(p.parts) or p.packed is not None or p.head is not None


def _last_ts_pure(part: Any) -> float | None:
    """`line_ts` of a part's last line (after its last newline; a line is a part without one),
    read where it lies (the join asks it once per request per batch)."""
    return _ts_at(part, part.rfind(b"\n") + 1) if type(part) is bytes else None


def chunk_lines(chunk: Any) -> list:
    """A part's body-log lines. Lines never hold a newline (the tailer cuts at them, the careful
    path and compaction escape them), so a bytes part holding some is a chunk: one request's
    lines of a read block, joined (parse/body.py, `decode_chunk_block`)."""
    if type(chunk) is bytes and b"\n" in chunk:
        return chunk.split(b"\n")
    return [chunk]


def lines_of(parts: list) -> list:
    """The body-log lines of `parts`, chunks cut (the paths that read every line)."""
    if not any(type(x) is bytes and b"\n" in x for x in parts):
        return parts
    out: list = []
    for x in parts:
        out += chunk_lines(x)
    return out


def join_str(parts: list) -> tuple[str, int, int]:
    """Assemble plain string parts: (body, bad parts, lossy)."""
    return "".join(parts), 0, 0


def _line_ts_pure(line: Any) -> float | None:
    """The `ts` of a canonical body-log line (`{"ts":T,...`), without decoding it; None unless
    it is a plausible time in epoch seconds (`TIME_MIN`..`TIME_MAX`, as the careful path checks
    it): NaN, 1e999 or a far-off time must not move the join's clock."""
    return _ts_at(line, 0)


def _ts_at(line: Any, start: int) -> float | None:
    """`_line_ts_pure` of the line that starts at `line[start]` (C's `ts_at`)."""
    if type(line) is bytes and line.startswith(b'{"ts":', start):
        end = line.find(b",", start + 6)  # in this line, else -1: not a number
        try:
            t = float(line[start + 6 : end])
        except ValueError:
            return None
        return t if TIME_MIN <= t <= TIME_MAX else None
    return None


_bodylines = native.load("sidecar.join._bodylines")  # the two in C, if built: the join reads
# two or three times per request, each a few Python calls in the twins
line_ts: Callable[[Any], float | None] = _bodylines.line_ts if _bodylines else _line_ts_pure
last_ts: Callable[[Any], float | None] = _bodylines.last_ts if _bodylines else _last_ts_pure
