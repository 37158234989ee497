"""How an open request's body is stored: appended raw, packed under pressure, compacted when it
grows, capped.

Two ways to make an open stream smaller:

- *packing* (lossless, cheap): once the join holds more than `squeeze_at` (7/8) of its byte
  bound, the open requests holding the most raw bytes (at least `pack_bytes`) have them joined
  and zlib-compressed (level 1: about 10x smaller at 8 KiB, 150-250 MB/s) into one blob each,
  until the join is back under `squeeze_to` (3/4) of the bound. Only raw parts are ever
  packed, nothing is packed twice, and the request completes with exactly the parts it would
  have had (unpacked then). This is what thousands of open streams need: it costs O(new
  bytes) at C speed, and only for the bytes that do not fit.
- *compaction* (lossy, decodes every event): once a stream's raw bytes pass `compact_bytes`
  (1 MiB), the injected `compact` callable keeps a raw head and tail and reduces the middle to
  its visible text (parse/compact.py), so one endless stream stays bounded. Decoding every
  event for its text costs about 30x packing per byte, so it is kept for long streams.

A mixin of `Joiner` (join/table.py): it uses the table's `stats`, `max_body_bytes`, `_compact`
and `_recost`.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

from sidecar.join.pending import Pending, lines_of, settle
from sidecar.types import NOT_A_STREAM, Compacted

# compact(parts, head) -> Compacted | NOT_A_STREAM | None (no event boundary to cut at yet)
CompactFn = Callable[[list, Any], Compacted | None]

BLOB_OVERHEAD = 48  # a packed blob's object header and list slot, for the byte bound


def _raw_size(p: Pending) -> int:
    return p.size


def _held(p: Pending) -> int:
    return p.size + p.packed_size


def unpacked(p: Pending) -> list:
    """`p`'s raw parts, its packed ones first (a new list when any are packed): each packed
    blob comes back as one chunk, its lines joined by b"\n" (see `chunk_lines`)."""
    if not p.packed:
        return p.parts
    return [zlib.decompress(blob) for blob in p.packed] + p.parts


class Storage:
    stats: dict[str, int]
    max_body_bytes: int
    _compact: CompactFn | None

    _pending: dict[str, Pending]
    max_pending_bytes: int
    pending_bytes: int
    pack_bytes = 8192  # raw parts are packed only past this many bytes (smaller pack badly)
    squeeze_at = 0.875  # of max_pending_bytes: pack from here ...
    squeeze_to = 0.75  # ... down to here
    squeeze_bytes = 2048  # the last resort compacts streams past this many raw bytes

    def _recost(self, p: Pending) -> None:
        raise NotImplementedError

    def squeezed(self) -> bool:
        """Pack (then, if that is not enough, compact) open requests when the join holds more
        than `squeeze_at` of its byte bound; True when it did."""
        if self.pending_bytes <= self.max_pending_bytes * self.squeeze_at:
            return False
        self.squeeze()
        return True

    def squeeze(self) -> None:
        """Make room before anything has to give way: pack the largest raw holdings first until
        the join is under `squeeze_to` of its byte bound. Streams packed already and still too
        many (tens of thousands open): compact the largest, as a last resort (it decodes)."""
        goal = self.max_pending_bytes * self.squeeze_to
        if self.pending_bytes <= goal:
            return
        limit = self.pack_bytes
        big = [p for p in self._pending.values() if p.size > limit and p.packable]
        big.sort(key=_raw_size, reverse=True)
        for p in big:
            self._pack(p)
            if self.pending_bytes <= goal:
                return
        limit = self.squeeze_bytes
        big = [p for p in self._pending.values() if p.size + p.packed_raw > limit]
        big.sort(key=_held, reverse=True)
        for p in big:
            if p.size + p.packed_raw > p.floor:
                self._try_compact(p, [])
                if self.pending_bytes <= goal:
                    return

    def _pack(self, p: Pending) -> None:
        """Pack `p`'s raw parts into one zlib blob (lossless; see the module docstring). Parts
        are body-log lines or chunks of them, so a newline joins them; a part that is not bytes
        or a line that holds a newline (not from the tailer) leaves the request unpacked for
        good."""
        settle(p)  # before its last part goes
        parts = p.parts
        if not all(type(x) is bytes for x in parts):
            p.packable = False
            return
        raw = b"\n".join(parts)
        if raw.count(b"\n") != p.lines - 1:
            p.packable = False
            return
        blob = zlib.compress(raw, 1)
        self.stats["packed"] += 1
        if p.packed is None:
            p.packed = []
        p.packed.append(blob)
        p.packed_raw += p.size
        p.packed_lines += p.lines
        p.packed_size += len(blob) + BLOB_OVERHEAD
        p.parts = []
        p.size = p.lines = 0
        self._recost(p)

    def _unpack(self, p: Pending) -> None:
        """Make `p`'s packed parts raw again (before compaction decodes them)."""
        p.parts = unpacked(p)
        p.size += p.packed_raw
        p.lines += p.packed_lines
        p.packed = None
        p.packed_raw = p.packed_size = p.packed_lines = 0

    def _cap(self, p: Pending, parts: list) -> None:
        """Keep what fits of a body that cannot be compacted (not a stream, or one event larger
        than max_body_bytes); `parts` are lines."""
        for part in parts:
            if p.packed_raw + p.size + len(part) > self.max_body_bytes:
                break
            p.parts.append(part)
            p.size += len(part)
            p.lines += 1
        if not p.truncated:
            p.truncated = True
            self.stats["bodies_truncated"] += 1
        self._recost(p)

    def _try_compact(self, p: Pending, more: list) -> bool:
        """Compact `p` with `more` parts appended; False when it cannot be done."""
        if self._compact is None or p.nocompact or p.text is not None:
            return False
        settle(p)  # before its last part is re-encoded without its time
        if p.packed:
            self._unpack(p)
        parts = lines_of(p.parts) + more if more else lines_of(p.parts)
        r = self._compact(parts, p.head)
        if r is NOT_A_STREAM:
            p.nocompact = True
            return False
        if r is None:  # no event boundary yet (one large event): try again at twice the size
            if more:
                return False
            p.floor = p.size * 2
            return True
        self.stats["compactions"] += 1
        if r.bad_parts:
            self.stats["compaction_invalid_parts"] += r.bad_parts
        if r.head is not None:
            p.head = r.head
            p.head_size = len(r.head)
        p.parts = r.tail
        p.size = sum(map(len, r.tail))
        p.lines = len(r.tail)
        p.floor = p.size * 2
        if r.text:
            # kept as one UTF-8 string per compaction: thousands of small str objects cost more
            # in headers than their text, and one emoji makes a str 4 bytes per character (the
            # estimator counts the text joined anyway)
            text = "".join(r.text).encode()
            room = self.max_body_bytes - p.prior_len
            if len(text) > room:
                if not p.truncated:
                    p.truncated = True
                    self.stats["text_truncated"] += 1
                text = text[: max(0, room)]  # a character cut here decodes as U+FFFD: harmless
            if p.prior is None:
                p.prior = []
            p.prior.append(text)
            p.prior_len += len(text)
        p.prior_extra += r.extra_tokens
        self._recost(p)
        return p.size <= self.max_body_bytes
