"""The reading stages: both tailers of a source feed its join in log time (a frontier per log;
the reader ahead waits), expiry, and the byte-bounded hand-over to enrichment."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sidecar import config as C
from sidecar.errors import ParseError
from sidecar.join import Joiner, line_ts, may_read
from sidecar.parse.body import (
    decode_bodies_lines,
    decode_chunk_batch,
)
from sidecar.sources.tail import LineBatch, Tailer
from sidecar.types import Completed
from sidecar.waits import wait_set

log = logging.getLogger("sidecar.pipeline")


QUEUE_LISTS = 64  # lists in flight between stages
# body bytes of completed requests waiting for enrichment, at most: a 4 MiB body block completes
# about as many at once, which wait beside the queue (`_put_completed`); more only adds memory
QUEUE_MAX_BYTES = 2 << 20


@dataclass
class SourceRuntime:
    cfg: C.Source
    joiner: Joiner
    access_tail: Tailer
    body_tail: Tailer | None
    parse_access: Callable[..., Any]
    provider: str | None
    last_time: float | None = None  # log time of the newest access record read (for the lag)
    # per reader ("access", "body"): set when its frontier moves (join/clock.py)
    moved: dict[str, asyncio.Event] = field(default_factory=dict)


class ReadersMixin:
    """Pipeline's tail -> parse -> join stage (one per log of each source)."""

    async def _run_access(self, src: SourceRuntime, stop: asyncio.Event) -> None:
        t = self.telemetry
        parse = src.parse_access
        hasher = self.hasher
        name = src.cfg.name
        joiner = src.joiner
        mine, other = joiner.access_front, joiner.body_front
        lead = joiner.skew_secs + 1.0
        async for batch in src.access_tail.batches(follow=not self.once, stop=stop):
            mine.busy()
            out: list[Completed] = []
            rec = None
            t.counters["access_lines_total"] += len(batch.lines)
            replay = self._replaying(batch)
            rids: list[str] = []
            path = batch.path
            offset = batch.start_offset  # the batch's lines are contiguous from here
            for i, line in enumerate(batch.lines):
                at = offset
                offset += len(line) + 1
                if not line.strip():
                    continue
                try:
                    rec = parse(line, hasher)
                except ParseError as exc:
                    if replay is None:
                        self._set_aside(exc, batch, i)
                    continue
                except Exception as exc:  # a bug must cost one line, never the pipeline
                    self._stage_failed_once("access parse", exc)
                    if replay is None:
                        self._set_aside(ParseError("access_parse_failed", repr(exc)), batch, i)
                    continue
                if replay is not None and rec.request_id not in replay:
                    self.ledger.replay_lines_skipped += 1  # its event is already durable
                    continue
                if rec.invalid_fields or rec.lossy_utf8:
                    self._count_invalid(rec.invalid_fields, "access_lines_lossy_utf8_total", rec)
                ts = rec.time
                if not may_read(mine, other, ts, lead):  # event time: wait for the body log
                    # The lines before this one are in the join and their events may become
                    # durable (and release their positions) while this reader waits: hold what
                    # they fed and mark them processed first, so that a checkpoint written
                    # meanwhile replays them by id instead of reading them again as new data
                    # (which fed a durable request's access line without its body).
                    self._hold(joiner, batch, rids, out)
                    rids = []
                    self.ledger.processed(batch.key, at)
                    if out:
                        await self._put_completed(out)
                        out = []
                    await self._wait(
                        src, "access", stop, lambda ts=ts: may_read(mine, other, ts, lead)
                    )
                rids.append(rec.request_id)
                try:
                    joiner.add_access(rec, name, path, out, offset=at)
                except Exception as exc:
                    self._stage_failed_once("join", exc)
                    self._set_aside(ParseError("join_failed", repr(exc)), batch, i)
            if rec is not None and rec.time:
                src.last_time = rec.time
            self._hold(joiner, batch, rids, out)
            self.ledger.processed(batch.key, batch.end_offset)
            src.moved["access"].set()
            del batch  # its lines are not held through the next read
            if out:
                await self._put_completed(out)
        mine.finish()
        src.moved["access"].set()

    async def _run_body(self, src: SourceRuntime, stop: asyncio.Event) -> None:
        assert src.body_tail is not None
        t = self.telemetry
        bodies_style = src.cfg.body_log.format.type == "bodies"  # type: ignore[union-attr]
        joiner = src.joiner
        name = src.cfg.name
        mine, other = joiner.body_front, joiner.access_front
        lead = joiner.skew_secs + 1.0
        loop = asyncio.get_running_loop()
        last_expiry = loop.time()
        async for batch in src.body_tail.batches(follow=not self.once, stop=stop):
            mine.busy()
            out: list[Completed] = []
            # a chunks log's block is scanned as read: no object per line
            dec = decode_bodies_lines(batch.lines) if bodies_style else decode_chunk_batch(batch)
            t.counters["body_lines_total"] += batch.count
            replay = self._replaying(batch)
            if replay is not None:
                self._replay_filter(dec, replay)
            for i, exc in dec.errors:
                self._set_aside(exc, batch, i)
            if dec.lossy:
                t.counters["body_lines_lossy_utf8_total"] += dec.lossy
            if dec.invalid_ts:
                self.telemetry.field_invalid("body.ts", dec.invalid_ts)
            first, last = _batch_times(batch, dec.records, dec.errors)

            def go(first: float | None = first) -> bool:
                # event time, then memory: an over-full join waits for the access reader
                # while that one can make progress
                if not may_read(mine, other, first, lead):
                    return False
                return not (
                    joiner.over_budget() and other.active and other.front <= mine.front + lead
                )

            if not go():
                await self._wait(src, "body", stop, go)
            try:
                joiner.add_chunks(dec.groups, dec.records, name, out, dec.sizes, dec.counts)
            except Exception as exc:  # a bug must cost this batch's lines, never the pipeline
                self._stage_failed_once("join", exc)
                for i in range(batch.count):
                    self._set_aside(ParseError("join_failed", repr(exc)), batch, i)
            mine.advance(last)
            if last is None and mine.front == -math.inf:
                mine.advance(math.inf)  # a body log without times: no event-time order to keep
            joiner.advance(out)
            self._hold(joiner, batch, [*dec.groups, *(r.request_id for r in dec.records)], out)
            self.ledger.processed(batch.key, batch.end_offset)
            src.moved["body"].set()
            now = loop.time()
            # following, `_run_expiry` scans every second: here only `--once`, or when over budget
            if (self.once and now - last_expiry >= 1.0) or joiner.over_budget():
                last_expiry = now
                while joiner.expire(out):
                    await self._put_completed(out)
                    out = []
            del batch, dec  # the block is not held through the next read
            if out:
                await self._put_completed(out)
        mine.finish()
        src.moved["body"].set()

    async def _wait(
        self, src: SourceRuntime, me: str, stop: asyncio.Event, ready: Callable[[], bool]
    ) -> None:
        """Wait until `ready()` (the other reader moved on, or became idle) or stop. `me`
        names the waiting reader; its own frontier has moved (it waits with a record in hand)."""
        src.moved[me].set()
        other = src.moved["body" if me == "access" else "access"]
        while not stop.is_set():
            self._sync_idle(src)
            if ready():
                return
            other.clear()
            await wait_set(other, 0.05)  # about once per body block in `run --once`

    async def _put_completed(self, out: list[Completed]) -> None:
        """Hand completed requests to enrichment in lists of at most 64, each waiting while the
        queue holds more than its byte bound (one list always fits an empty queue)."""
        for i in range(0, len(out), 64):
            part = out[i : i + 64]
            size = completed_bytes(part)
            while self._q_bytes > 0 and self._q_bytes + size > self._q_max_bytes:
                self._q_room.clear()
                await self._q_room.wait()
            self._q_bytes += size
            await self._completed_q.put(part)

    @staticmethod
    def _sync_idle(src: SourceRuntime) -> None:
        """Copy the tailers' caught-up state onto the join's frontiers (join/clock.py)."""
        j = src.joiner
        for front, tail in ((j.access_front, src.access_tail), (j.body_front, src.body_tail)):
            if tail is None:
                front.finish()
            elif not front.done:
                front.idle_since = tail.idle_since

    async def _run_expiry(self, stop: asyncio.Event) -> None:
        """Follow mode: complete requests without a body once the body log is past them (or
        caught up for `skew_secs`), and expire the rest in bounded batches."""
        loop = asyncio.get_running_loop()
        last = loop.time()
        while not stop.is_set():
            await wait_set(stop, 0.25)
            full = loop.time() - last >= 1.0
            if full:
                last = loop.time()
            for src in self.sources:
                self._sync_idle(src)
                out: list[Completed] = []
                src.joiner.advance(out)
                if full:
                    while src.joiner.expire(out):
                        await self._put_completed(out)
                        out = []
                if out:
                    await self._put_completed(out)

    def _set_aside(self, exc: ParseError, batch: LineBatch, index: int) -> None:
        # The offset of line `index`: the batch's lines are contiguous from start_offset.
        offset = batch.start_offset + sum(len(x) + 1 for x in batch.lines[:index])
        self.telemetry.set_aside(
            exc.reason, batch.path, offset, len(batch.lines[index]), exc.detail
        )

    def _count_invalid(self, names: list[str], lossy_counter: str, rec: Any) -> None:
        for n in names:
            self.telemetry.field_invalid(n)
        if rec.lossy_utf8:
            self.telemetry.counters[lossy_counter] += 1

    def _count_join(self, joiner: Joiner) -> None:
        """The join's counters in the run summary (every eviction, expiry and late record)."""
        cnt = self.telemetry.counters
        cnt["late_records_total"] += joiner.stats["late_records"]
        for k, v in joiner.stats.items():
            if k != "late_records":
                cnt[f"join_{k}_total"] += v


def completed_bytes(batch: list[Completed]) -> int:
    return sum(c.raw_bytes for c in batch)


def _batch_times(
    batch: LineBatch, records: list[Any], errors: list[tuple[int, Any]]
) -> tuple[float | None, float | None]:
    """Log times of a body batch's first and last records (two lines looked at, not all).
    A line set aside (`errors`) is not a record: its `ts` must not move the join's clock. (Not
    `records`' times instead: data lines are in the decoded groups, not in `records`, which
    hold only end records; a batch of data lines with one line set aside would have no time,
    and as the first body batch would let the access reader stop waiting for good.)"""
    if not errors:
        head, tail = batch.edge_lines()
    else:  # rare: the lines were cut for the per-line path already
        lines, bad = batch.lines, {k for k, _ in errors}
        i, j = 0, len(lines) - 1
        while i <= j and i in bad:
            i += 1
        while j >= i and j in bad:
            j -= 1
        head, tail = (lines[i], lines[j]) if i <= j else (None, None)
    first = line_ts(head) if head is not None else None
    last = line_ts(tail) if tail is not None else None
    if first is None or last is None:
        times = [r.ts for r in records if isinstance(r.ts, int | float)]
        if times:
            first = min(times) if first is None else first
            last = max(times) if last is None else last
    return first, last
