"""Join access records and body records per request id (like Vector's `reduce`).

A request is complete when its access record and the end of its body are both seen (or only
the access record, for a source without a body log). Otherwise it is emitted when it expires
(`expire_after_secs` of silence) or when the pending table is full (the oldest goes first), with
what is known; `Completed.expired` says so. Completed ids are remembered for a while so that a
record arriving after its request was emitted is counted as late instead of making a second
event.

Body data is kept as the list of chunk strings and joined once, at completion. A request's body
is capped at `max_body_bytes`: past it, chunks are dropped and the body is flagged truncated.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from sidecar.types import BODY_DATA, BODY_END, AccessRecord, BodyRecord, Completed, Positions


@dataclass(slots=True)
class _Pending:
    source: str
    parts: list = field(default_factory=list)  # body parts, in the form `assemble` takes
    text: str | None = None  # a whole body (`bodies` style)
    size: int = 0
    access: AccessRecord | None = None
    end: str | None = None
    whole: bool = False
    content_type: str | None = None
    truncated: bool = False
    first_ts: float | None = None
    last_ts: float | None = None
    touched: float = 0.0  # monotonic time of the last record
    source_path: str | None = None
    positions: Positions | None = None  # issue 8: source offsets (see note_positions)


def _join_str(parts: list) -> tuple[str, int, int]:
    """Assemble plain string parts: (body, bad parts, lossy)."""
    return "".join(parts), 0, 0


class Joiner:
    def __init__(
        self,
        *,
        expire_after_secs: float = 60.0,
        max_pending_requests: int = 100_000,
        max_body_bytes: int = 8 * 1024 * 1024,
        clock: object = time.monotonic,
        assemble: Callable[[list], tuple[str, int, int]] = _join_str,
    ) -> None:
        self._assemble = assemble
        self.expire_after_secs = expire_after_secs
        self.max_pending = max_pending_requests
        self.max_body_bytes = max_body_bytes
        self._clock = clock
        self._pending: dict[str, _Pending] = {}  # insertion order = age order
        self._done: OrderedDict[str, None] = OrderedDict()  # recently completed ids
        self._done_cap = max(10_000, max_pending_requests)
        self.has_body: dict[str, bool] = {}  # source name -> has a body log
        self.late_records = 0
        self.expired = 0
        self.evicted = 0
        self.duplicate_access = 0
        self.bodies_truncated = 0

    def __len__(self) -> int:
        return len(self._pending)

    def _get(self, rid: str, source: str) -> _Pending | None:
        p = self._pending.get(rid)
        if p is None:
            if rid in self._done:
                self.late_records += 1
                return None
            p = _Pending(source)
            self._pending[rid] = p
        return p

    def add_chunks(
        self,
        groups: dict[str, list],
        records: list[BodyRecord],
        source: str,
        out: list[Completed],
    ) -> None:
        """The hot path: a batch from `parse.body.decode_chunk_lines`.

        `groups` holds each request's data parts of the batch (appended in one step per request,
        nothing done per chunk); `records` are the batch's end records and whole bodies, which
        take the general path after the data. The clock is read once per batch.
        """
        pending = self._pending
        now = self._clock()  # type: ignore[operator]
        cap = self.max_body_bytes
        for rid, parts in groups.items():
            p = pending.get(rid)
            if p is None:
                p = self._get(rid, source)
                if p is None:
                    continue
            p.touched = now
            n = sum(map(len, parts))
            if p.size + n > cap:
                for part in parts:  # keep what fits, in order
                    if p.size + len(part) > cap:
                        break
                    p.parts.append(part)
                    p.size += len(part)
                if not p.truncated:
                    p.truncated = True
                    self.bodies_truncated += 1
                continue
            p.parts += parts
            p.size += n
        for rec in records:
            self.add_body(rec, source, out, now=now)

    def add_body(
        self, rec: BodyRecord, source: str, out: list[Completed], *, now: float | None = None
    ) -> None:
        """Add one body record; append to `out` any request it completes."""
        p = self._get(rec.request_id, source)
        if p is None:
            return
        p.touched = self._clock() if now is None else now  # type: ignore[operator]
        ts = rec.ts
        if ts is not None:
            if p.first_ts is None:
                p.first_ts = ts
            p.last_ts = ts
        kind = rec.kind
        if kind == BODY_DATA:
            data = rec.data
            n = len(data)
            if p.size + n > self.max_body_bytes:
                if not p.truncated:
                    p.truncated = True
                    self.bodies_truncated += 1
                return
            p.parts.append(data)
            p.size += n
            return
        if kind == BODY_END:
            p.end = rec.end
        else:  # BODY_WHOLE
            p.parts = []
            p.text = rec.data
            p.size = len(rec.data)
            p.end = rec.end
            p.whole = True
            p.content_type = rec.content_type
            if rec.truncated:
                p.truncated = True
        if p.access is not None:
            out.append(self._complete(rec.request_id, p, expired=False))

    def add_access(
        self, rec: AccessRecord, source: str, source_path: str | None, out: list[Completed]
    ) -> None:
        p = self._get(rec.request_id, source)
        if p is None:
            return
        if p.access is not None:
            self.duplicate_access += 1  # a second line for one id: keep the first
            return
        p.access = rec
        p.source_path = source_path
        p.touched = self._clock()  # type: ignore[operator]
        if p.end is not None or not self.has_body.get(source, True):
            out.append(self._complete(rec.request_id, p, expired=False))
        elif len(self._pending) > self.max_pending:
            self._evict(out)

    def _complete(self, rid: str, p: _Pending, *, expired: bool) -> Completed:
        del self._pending[rid]
        self._done[rid] = None
        if len(self._done) > self._done_cap:
            self._done.popitem(last=False)
        body: str | None = p.text
        if body is None and not p.parts and p.end is not None:
            body = ""  # an end record and no data: an empty body
        content_type = p.content_type
        if content_type is None and p.access is not None:
            content_type = p.access.response_headers.get("content-type")
        return Completed(
            request_id=rid,
            source=p.source,
            access=p.access,
            body=body,
            end=p.end,
            content_type=content_type,
            body_truncated=p.truncated,
            expired=expired,
            first_ts=p.first_ts,
            last_ts=p.last_ts,
            source_path=p.source_path,
            parts=p.parts if p.text is None and p.parts else None,
            assemble=self._assemble,
            positions=p.positions,
        )

    def _evict(self, out: list[Completed]) -> None:
        while len(self._pending) > self.max_pending:
            rid = next(iter(self._pending))
            self.evicted += 1
            out.append(self._complete(rid, self._pending[rid], expired=True))

    def expire(self, out: list[Completed], *, now: float | None = None) -> None:
        """Emit requests that have been silent for `expire_after_secs`."""
        if len(self._pending) > self.max_pending:
            self._evict(out)
        now = self._clock() if now is None else now  # type: ignore[operator]
        limit = now - self.expire_after_secs
        stale = [rid for rid, p in self._pending.items() if p.touched <= limit]
        for rid in stale:
            self.expired += 1
            out.append(self._complete(rid, self._pending[rid], expired=True))

    def note_positions(self, rids: list[str], key: str, offset: int) -> list[str]:
        """Issue 8: record that requests `rids` (pending after a batch of file `key` starting at
        `offset`) have lines there; returns the ids newly recorded for this file (the caller
        holds their position in the ledger). Requests completed by the batch are not pending:
        the caller records those on `Completed.positions` itself."""
        new: list[str] = []
        pending = self._pending
        for rid in rids:
            p = pending.get(rid)
            if p is None:
                continue
            pos = p.positions
            if pos is None:
                p.positions = Positions(rid, {key: offset})
            elif key not in pos.at:
                pos.at[key] = offset
            else:
                continue
            new.append(rid)
        return new

    def flush(self, out: list[Completed]) -> None:
        """Emit everything still pending (end of `run --once`, or shutdown)."""
        for rid in list(self._pending):
            self.expired += 1
            out.append(self._complete(rid, self._pending[rid], expired=True))
