"""The pending table: access records and body records joined per request id, in log time.

A request is complete when (docs/architecture.md, "Join"):
- its access record and the end of its body are both seen; or
- its access record is seen and the body reader has gone `skew_secs` of log time past the access
  record's time without an end for it (the access line is written when a request ends, after its
  body: a request with no body, such as most 429s, is complete then, not expired); when the body
  log is caught up and idle, `skew_secs` of wall time stand in for it; or
- its source has no body log: at its access record.
Otherwise it *expires* once both logs have gone `expire_after_secs` of log time past its last
record (wall time only when both are caught up and idle), and is emitted with what is known,
flagged.

Memory is bounded by bytes (`max_pending_bytes`). An open stream keeps its raw body-log parts
only until they exceed a threshold (`compact_bytes`); then the injected `compact` callable (the
join does not import parse) decodes the prefix: the first events are kept as a small raw head,
the last events (where every provider puts its usage) stay raw, and what lies between is reduced
to its visible text and per-item token overheads (`Completed.prior_text` /
`prior_extra_tokens`). Under pressure (thousands of open streams) the largest raw holdings are
packed, losslessly and cheaply, instead (join/storage.py); if the bound is still exceeded,
the oldest open requests that have no access record yet are emitted early (counted, warned),
never a complete request.

Duplicate request ids: a request whose id was already emitted complete (or is pending with its
body ended) and which then completes again is a second request: it gets its own event, flagged,
with `duplicate_key` (the access line's time and byte offset in its file, stable across replays
and restarts). Records for an id that was emitted incomplete (expired, evicted) are late records.
"""

from __future__ import annotations

import heapq
import math
import struct
import time
from collections.abc import Callable
from typing import Any

from sidecar.join.bodylines import BodyLines
from sidecar.join.clock import Frontier
from sidecar.join.expiry import Expiry
from sidecar.join.pending import (
    ACCESS_OVERHEAD,
    PENDING_OVERHEAD,
    Pending,
    chunk_lines,
    has_data,
    join_str,
    last_ts,
    line_ts,
    settle,
)
from sidecar.join.positions import PositionNotes
from sidecar.join.recent import DIGEST_MASK, RecentIds
from sidecar.join.storage import CompactFn, Storage, unpacked
from sidecar.types import BODY_DATA, BODY_END, AccessRecord, BodyRecord, Completed

_INCOMPLETE = 0  # `_done` value of an id emitted incomplete; else its access line's key, digested
_KEY = struct.Struct("<dq")  # (time, offset) of an access line in 16 bytes


def _packed(key: tuple[float | None, int | None]) -> int:
    """An access line's key as `_done` keeps it: a 60-bit digest (odd: never `_INCOMPLETE`) of
    its time and offset packed in 16 bytes (a missing time or offset packs as NaN or -1;
    offsets are never negative), an int of 32 bytes (the bytes took 64; at 100,000 ids about
    3 MB less). Were two keys to share a digest, a second request with an id already emitted
    would be taken for the first one's access line read again (its records counted as late
    records): 2^-59 per duplicate id (`join/recent.py` digests the ids the same way)."""
    t, offset = key
    packed = _KEY.pack(math.nan if t is None else t, -1 if offset is None else offset)
    return hash(packed) & DIGEST_MASK | 1


class Joiner(Storage, Expiry, PositionNotes):
    def __init__(
        self,
        *,
        expire_after_secs: float = 60.0,
        skew_secs: float = 1.0,
        max_pending_requests: int = 100_000,
        max_pending_bytes: int = 64 << 20,
        max_body_bytes: int = 8 * 1024 * 1024,
        compact_bytes: int = 1 << 20,
        clock: Callable[[], float] = time.monotonic,
        assemble: Callable[[list], tuple[str, int, int]] = join_str,
        compact: CompactFn | None = None,
    ) -> None:
        self._assemble = assemble
        self._compact = compact
        self.expire_after_secs = expire_after_secs
        self.skew_secs = skew_secs
        self.max_pending = max_pending_requests
        self.max_pending_bytes = max_pending_bytes
        self.max_body_bytes = max_body_bytes
        self.compact_bytes = compact_bytes
        self._clock = clock
        self.access_front = Frontier()
        self.body_front = Frontier()
        self._pending: dict[str, Pending] = {}  # insertion order = age order
        # called with the positions of a request dropped without an event (issue 8's ledger)
        self.on_drop: Callable[[Any], None] | None = None
        self._awaiting: list[tuple[float, int, float, str, Pending]] = []  # heap: access, no end
        self._seq = 0
        # recently emitted ids -> the key of their access line (see `_packed`), or _INCOMPLETE
        self._done: RecentIds[int] = RecentIds(max(100_000, max_pending_requests))
        self.has_body: dict[str, bool] = {}  # source name -> has a body log
        self.pending_bytes = 0
        self.stats: dict[str, int] = dict.fromkeys(
            (
                "late_records",  # records for a request already emitted incomplete
                "expired",  # requests emitted because both logs moved on without them
                "expired_no_access",
                "expired_no_body",
                "evicted",  # open requests emitted early to keep within max_pending_bytes
                "completed_without_body",  # access record, no body record: complete by time
                "duplicate_request_id",
                "duplicate_access",  # a second access line for one pending request
                "bodies_truncated",  # raw body cut at max_body_bytes (not a stream)
                "text_truncated",  # estimation text capped at max_body_bytes
                "compactions",
                "packed",  # raw parts packed under pressure (lossless)
                "compaction_invalid_parts",
            ),
            0,
        )
        self._warned_evict = 0.0
        self._older: dict[str, Pending] = {}  # ended bodies displaced by a newer request
        self._out: list[Completed] = []

    # ------------------------------------------------------------------ compatibility
    @property
    def late_records(self) -> int:
        return self.stats["late_records"]

    @property
    def evicted(self) -> int:
        return self.stats["evicted"]

    @property
    def expired(self) -> int:
        return self.stats["expired"]

    @property
    def bodies_truncated(self) -> int:
        return self.stats["bodies_truncated"]

    def __len__(self) -> int:
        return len(self._pending)

    # ------------------------------------------------------------------ the table
    def _start(self, rid: str, source: str) -> Pending | None:
        """A record for `rid`, which is not pending: start its request, or None when the id
        was emitted incomplete (a late record, counted). The callers look in `_pending` first,
        inline: most records find their request there."""
        how = self._done.get(rid)
        if how == _INCOMPLETE:
            self.stats["late_records"] += 1
            return None
        return self._new(rid, source, dup=how is not None)

    def _new(self, rid: str, source: str, *, dup: bool) -> Pending:
        """Start a pending request (`dup`: a request with this id was already emitted)."""
        p = Pending(source)  # positional: a keyword call costs about 3x (per request)
        p.dup = dup
        p.cost = PENDING_OVERHEAD
        self.pending_bytes += PENDING_OVERHEAD
        self._pending[rid] = p
        return p

    def _recost(self, p: Pending) -> None:
        cost = PENDING_OVERHEAD + p.size + p.packed_size + p.head_size + p.prior_len
        if p.text is not None:
            cost += len(p.text)
        if p.access is not None:
            cost += ACCESS_OVERHEAD
        self.pending_bytes += cost - p.cost
        p.cost = cost

    def _restart_if_ended(self, rid: str, p: Pending, source: str) -> Pending:
        """Body data after the body's end: a second request with the same id. The first one
        (ended, waiting for its access record) is set aside for the next access line with this
        id; the new one starts."""
        if p.end is None:
            return p
        prev = self._older.pop(rid, None)
        if prev is not None:  # a third request before the first's access line: emit the first
            self._expire_one(rid, prev, self._out)
        self._older[rid] = p
        del self._pending[rid]
        return self._new(rid, source, dup=True)

    def add_chunks(
        self,
        groups: dict[str, list],
        records: list[BodyRecord],
        source: str,
        out: list[Completed],
        sizes: list[int] | None = None,
        counts: list[int] | None = None,
    ) -> None:
        """The hot path: a batch from `parse.body.decode_chunk_block` (or `decode_chunk_lines`).

        `groups` holds each request's data parts of the batch (appended in one step per request,
        nothing done per chunk but for the first line's time): a list of lines, or with
        `counts` (their number per group, in `groups` order) one bytes object of the lines
        joined by b"\n", kept as it is (a chunk: see `chunk_lines`); `sizes`, when given, the
        lines' bytes per group in `groups` order (`Decoded.sizes`; else counted here); `records`
        are the batch's end records and whole bodies, which take the general path after the
        data."""
        pending = self._pending
        now = self._clock()
        self._out = out
        threshold = self.compact_bytes
        max_body = self.max_body_bytes
        added = 0  # bytes appended to requests whose cost is otherwise unchanged
        ends: dict[str, list[BodyRecord]] = {}
        for rec in records:
            if rec.kind == BODY_END:
                ends.setdefault(rec.request_id, []).append(rec)
        done_ends: list[BodyRecord] = []
        if sizes is None:
            sizes = [sum(map(len, parts)) for parts in groups.values()]
        if counts is None:
            counts = [len(parts) for parts in groups.values()]
        for (rid, parts), n, lines in zip(groups.items(), sizes, counts, strict=True):
            if ends and rid in ends and self._split_at_ends(rid, parts, ends[rid], source, out):
                done_ends += ends[rid]
                continue
            p = pending.get(rid)
            if p is None:
                p = self._start(rid, source)
                if p is None:
                    continue
            elif p.end is not None:
                p = self._restart_if_ended(rid, p, source)
            p.touched = now
            chunk = type(parts) is bytes
            if p.first_ts is None:  # a chunk starts with its first line; line_ts reads only
                # up to the first comma after `{"ts":`, and a grouped line has one (`","data"`)
                p.first_ts = line_ts(parts if chunk else parts[0])
            p.records += lines
            raw = p.packed_raw + p.size + n
            if raw <= max_body:
                p.ts_due = True  # last_ts / seen: the last line's time, read when needed
            else:
                settle(p)
                if chunk:
                    parts = chunk_lines(parts)
                ts = line_ts(parts[-1])
                if ts is not None:
                    p.last_ts = p.seen = ts
                if not self._try_compact(p, parts):
                    self._cap(p, parts)
                self._recost(p)
                continue
            if chunk:
                p.parts.append(parts)
            else:
                p.parts += parts
            p.size += n
            p.lines += lines
            if raw > threshold and raw > p.floor and not p.nocompact:
                self._try_compact(p, [])
                self._recost(p)
            else:  # only its raw size changed: `_recost` in short
                p.cost += n
                added += n
        self.pending_bytes += added
        self.squeezed()  # under pressure: pack the largest (join/storage.py)
        for rec in records:
            if not done_ends or all(rec is not e for e in done_ends):
                self.add_body(rec, source, out, now=now)

    def _split_at_ends(
        self, rid: str, parts: Any, ends: list[BodyRecord], source: str, out: list[Completed]
    ) -> bool:
        """Data for `rid` after its end record in the same batch: a second request with the
        same id. The batch's grouping lost the order, the times give it back: data up to each
        end's time goes before that end. False when there is nothing to split (the usual).
        `parts`: the group's lines, or one chunk of them (see `add_chunks`)."""
        t_end = ends[0].ts
        if t_end is None:
            return False
        chunk = type(parts) is bytes
        # the usual: the end is the request's last record, >= last
        last = last_ts(parts if chunk else parts[-1])  # a line is a part without a newline
        if last is None or not t_end < last:
            return False
        if chunk:
            parts = chunk_lines(parts)
        first = line_ts(parts[0])
        if first is None or not first <= t_end:
            return False  # no data after the end (times that disagree: keep the batch order)
        rest = parts
        for end in sorted(ends, key=lambda r: r.ts if r.ts is not None else 0.0):
            t = end.ts if end.ts is not None else 0.0
            before = [x for x in rest if (line_ts(x) or 0.0) <= t]
            rest = [x for x in rest if (line_ts(x) or 0.0) > t]
            if before:
                self.add_chunks({rid: before}, [], source, out)
            self.add_body(end, source, out)
        if rest:
            self.add_chunks({rid: rest}, [], source, out)
        return True

    def add_body(
        self, rec: BodyRecord, source: str, out: list[Completed], *, now: float | None = None
    ) -> None:
        """Add one body record; append to `out` any request it completes."""
        self._out = out
        rid = rec.request_id
        kind = rec.kind
        if kind == BODY_DATA:  # a data record outside the hot path (tests, odd lines)
            self.add_chunks({rid: [rec.data]}, [], source, out)
            p = self._pending.get(rid)
        else:
            p = self._pending.get(rid)
            if p is None:
                p = self._start(rid, source)
            if p is not None:
                if p.end is not None:
                    p = self._restart_if_ended(rid, p, source)
                p.touched = self._clock() if now is None else now
                p.records += 1
        if p is None:
            return
        ts = rec.ts
        if ts is not None:
            p.ts_due = False  # the record's time replaces what `settle` would read
            if p.first_ts is None:
                p.first_ts = ts
            p.last_ts = p.seen = ts
        else:
            settle(p)
        if kind == BODY_DATA:
            return
        if kind == BODY_END:
            p.end = rec.end
        else:  # BODY_WHOLE
            p.parts = []
            p.size = p.lines = 0
            p.packed = None
            p.packed_raw = p.packed_size = p.packed_lines = 0
            p.text = rec.data
            p.end = rec.end
            p.content_type = rec.content_type
            if rec.truncated:
                p.truncated = True
            self._recost(p)
        if p.access is not None:
            out.append(self._complete(rec.request_id, p, expired=False))

    def add_access(
        self,
        rec: AccessRecord,
        source: str,
        source_path: str | None,
        out: list[Completed],
        *,
        offset: int | None = None,
    ) -> None:
        """Add one access record (`offset`: its byte offset in its file, for duplicates)."""
        self._out = out
        rid = rec.request_id
        p = self._pending.get(rid)
        if p is None:
            p = self._start(rid, source)
            if p is None:
                return
        older = self._older.pop(rid, None)
        if older is not None:  # the ended body this access line belongs to (see add_chunks)
            p = older
        elif p.access is not None:
            # A second access line while the first waits for its body: two requests, one id.
            self.stats["duplicate_access"] += 1
            out.append(self._complete(rid, p, expired=p.end is None and has_data(p)))
            p = self._new(rid, source, dup=True)
        p.access = rec
        p.source_path = source_path
        p.key = (rec.time, offset)
        if p.dup:
            if self._done.get(rid) == _packed(p.key):
                # The very line already emitted, read again (a rotated file seen under a second
                # name): a late record, not a second request.
                self.stats["late_records"] += p.records + 1
                self._drop(rid, p)
                return
            p.dup_key = f"{rec.time!r}@{offset}"
        if p.end is not None or p.text is not None or not self.has_body.get(source, True):
            # Complete now (most requests: the body came first); `_complete` settles its time
            # and takes its cost off `pending_bytes`, so nothing else is noted on it.
            out.append(self._complete(rid, p, expired=False))
            return
        p.touched = self._clock()
        settle(p)
        if rec.time is not None:
            p.seen = rec.time
        self._recost(p)
        t = rec.time if rec.time is not None else self.body_front.front
        self._seq += 1
        heapq.heappush(self._awaiting, (t, self._seq, p.touched, rid, p))
        self.advance(out)

    # ------------------------------------------------------------------ completion
    def advance(self, out: list[Completed], now: float | None = None) -> None:
        """Complete the requests whose access record the body reader has now passed."""
        aw = self._awaiting
        if not aw:
            return
        now = self._clock() if now is None else now
        skew = self.skew_secs
        body = self.body_front
        while aw:
            t, _, since, rid, p = aw[0]
            if self._pending.get(rid) is not p or p.access is None:
                heapq.heappop(aw)  # completed meanwhile (its end came)
                continue
            if not body.passed(t + skew, now, skew, since):
                return
            heapq.heappop(aw)
            if has_data(p):
                # Body data but no end record: the body was cut (the proxy lost the end).
                self.stats["expired_no_body"] += 1
                out.append(self._complete(rid, p, expired=True))
            else:
                self.stats["completed_without_body"] += 1
                out.append(self._complete(rid, p, expired=False))

    def _drop(self, rid: str, p: Pending) -> None:
        if self._pending.get(rid) is p:
            del self._pending[rid]
        self.pending_bytes -= p.cost
        p.cost = 0
        if p.positions is not None and self.on_drop is not None:
            self.on_drop(p.positions)  # no event will carry them: release them now

    def _complete(self, rid: str, p: Pending, *, expired: bool) -> Completed:
        settle(p)
        if self._pending.get(rid) is p:
            del self._pending[rid]
        self.pending_bytes -= p.cost
        p.cost = 0
        access, end, key, dup, text, head = p.access, p.end, p.key, p.dup, p.text, p.head
        complete = not expired or (access is not None and end is not None)
        self._done.put(
            rid,
            _packed(key) if complete and key is not None else _INCOMPLETE,
            absent=not dup,  # not in the window when the request began (`_start`)
        )
        if dup and access is not None:
            self.stats["duplicate_request_id"] += 1
        parts: list | BodyLines = unpacked(p)
        if head is not None:
            parts = [head, *parts]
        n = p.lines + p.packed_lines + (head is not None)
        if n != len(parts):  # chunks among them: lines cut where read (join/bodylines.py)
            parts = BodyLines(parts, n)  # type: ignore[arg-type]
        body: str | None = text
        if body is None and not parts and end is not None:
            body = ""  # an end record and no data: an empty body
        content_type = p.content_type
        if content_type is None and access is not None:
            content_type = access.response_headers.get("content-type")
        # Positional, in the order of Completed's fields (a unit test checks it): a call with
        # 20 keywords costs three times one without.
        return Completed(
            rid,  # request_id
            p.source,
            access,
            body,
            end,
            content_type,
            p.truncated,  # body_truncated
            expired,
            p.first_ts,
            p.last_ts,
            p.source_path,
            0,  # body_bad_parts: counted when the body is decoded (`Completed.text`)
            False,  # body_lossy: likewise
            parts if text is None and parts else None,  # parts
            [b.decode("utf-8", "replace") for b in p.prior] if p.prior else [],  # prior_text
            p.prior_extra,  # prior_extra_tokens
            self._assemble,  # assemble
            p.positions,
            p.dup_key if dup and access is not None else None,  # duplicate_key
            p.size
            + p.packed_raw
            + p.head_size
            + (len(text) if text is not None else 0),  # raw_bytes
        )
