"""Expiry, the byte bound giving way, and flushing, all in bounded batches.

A mixin of `Joiner` (join/table.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from sidecar.join.clock import Frontier
from sidecar.join.pending import Pending, has_data, settle
from sidecar.types import Completed

log = logging.getLogger("sidecar.join")


class Expiry:
    stats: dict[str, int]
    expire_after_secs: float
    max_pending: int
    max_pending_bytes: int
    pending_bytes: int
    access_front: Frontier
    body_front: Frontier
    _pending: dict[str, Pending]
    _older: dict[str, Pending]
    _warned_evict: float

    def _complete(self, rid: str, p: Pending, *, expired: bool) -> Completed:
        raise NotImplementedError

    def squeezed(self) -> bool:
        raise NotImplementedError

    def advance(self, out: list[Completed], now: float | None = None) -> None:
        raise NotImplementedError

    def _clock(self) -> float:
        raise NotImplementedError

    def _expire_one(self, rid: str, p: Pending, out: list[Completed]) -> None:
        if p.dup and p.access is None:
            # Stray records for an id already emitted complete: late, not a new request.
            if self._pending.get(rid) is p:
                del self._pending[rid]
            self.pending_bytes -= p.cost
            self.stats["late_records"] += p.records
            return
        self.stats["expired"] += 1
        if p.access is None:
            self.stats["expired_no_access"] += 1
        elif p.end is None:
            self.stats["expired_no_body"] += 1
        out.append(self._complete(rid, p, expired=True))

    def expire(
        self, out: list[Completed], *, now: float | None = None, max_items: int = 512
    ) -> bool:
        """Emit up to `max_items` requests whose logs have moved on without them: in log time
        (both readers `expire_after_secs` past the request's last record) while a log is being
        read, in wall time for a reader that is caught up (`_due`). Returns True when more may
        be due."""
        now = self._clock() if now is None else now
        self.advance(out, now)
        limit = self.expire_after_secs
        access, body = self.access_front, self.body_front
        both_quiet = not access.active and not body.active
        if both_quiet and access.done and body.done:
            return self.flush_some(out, max_items)
        due: list[str] = []
        for rid, p in self._pending.items():
            if p.access is not None and p.end is None and not has_data(p):
                continue  # waiting for the body reader to pass it (advance)
            if not self._due(p, now, limit):
                continue
            due.append(rid)
            if len(due) >= max_items:
                break
        for rid in due:
            self._expire_one(rid, self._pending[rid], out)
        for rid, p in list(self._older.items()):
            if self._due(p, now, limit):
                del self._older[rid]
                self._expire_one(rid, p, out)
        self._give_way(out)
        return len(due) >= max_items

    def _due(self, p: Pending, now: float, limit: float) -> bool:
        """Has each reader gone `limit` past the request's last record? A reader that is
        reading answers in log time; one that is caught up (idle) once the request has waited
        `limit` wall seconds since it was last touched: its other half may still be on its way
        (a log written in bursts, such as nginx's buffered `access_log`), and the other reader's
        log time alone must not expire it."""
        waited = now - p.touched >= limit
        settle(p)
        if p.seen is None:
            return waited
        t = p.seen + limit
        for f in (self.access_front, self.body_front):  # a loop, not all(): once per request
            if not (f.done or f.front > t or (f.idle_since is not None and waited)):
                return False
        return True

    def _give_way(self, out: list[Completed]) -> None:
        """Over the byte (or count) bound: emit the oldest open requests that have no access
        record yet, counted and warned. Compaction already keeps each stream small, so this
        means more requests are open at once than the bound allows."""
        self.squeezed()
        if self.pending_bytes <= self.max_pending_bytes and len(self._pending) <= self.max_pending:
            return
        target = self.max_pending_bytes * 9 // 10
        victims: list[str] = []
        freed = 0
        excess = self.pending_bytes - target
        count_excess = len(self._pending) - self.max_pending
        for rid, p in self._pending.items():
            if freed >= excess and len(victims) >= count_excess:
                break
            if p.access is None:
                victims.append(rid)
                freed += p.cost
        for rid in victims:
            p = self._pending[rid]
            self.stats["evicted"] += 1
            out.append(self._complete(rid, p, expired=True))
        now = time.monotonic()
        if victims and now - self._warned_evict > 60:
            self._warned_evict = now
            log.warning(
                "The join holds more open requests than join.max_pending_bytes (%d bytes) "
                "allows: %d open requests without an access record were emitted early (flagged "
                "expired_no_access; their later records count as late). Raise "
                "join.max_pending_bytes if this host has the memory.",
                self.max_pending_bytes,
                len(victims),
            )

    def over_budget(self) -> bool:
        return self.pending_bytes > self.max_pending_bytes

    def flush_some(self, out: list[Completed], max_items: int = 512) -> bool:
        """Emit up to `max_items` pending requests (end of `run --once`, shutdown); True when
        more remain. The caller hands each batch on before asking for the next, so memory stays
        within the bound."""
        n = 0
        while self._older and n < max_items:
            rid, p = self._older.popitem()
            self._expire_one(rid, p, out)
            n += 1
        for rid in list(self._pending)[: max_items - n]:
            p = self._pending[rid]
            if p.access is not None and p.end is None and not has_data(p):
                self.stats["completed_without_body"] += 1
                out.append(self._complete(rid, p, expired=False))
            else:
                self._expire_one(rid, p, out)
            n += 1
        return bool(self._pending) or bool(self._older)

    def flush(self, out: list[Completed]) -> None:
        """Emit everything still pending (tests; the pipeline uses `flush_batches`)."""
        while self.flush_some(out):
            pass

    def flush_batches(self, max_items: int = 512) -> Iterator[list[Completed]]:
        while self._pending or self._older:
            out: list[Completed] = []
            self.flush_some(out, max_items)
            if out:
                yield out
