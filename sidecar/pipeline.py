"""The only place that wires the stages together.

    tail(access) ─┐                                                  ┌─► sink 1
                  ├─► parse ─► join ─► [q] ─► enrich ─► [q] ─► spool ─┤
    tail(body)  ──┘                                                  └─► sink N

Each source has one `Joiner`; its two tailers feed it in the same event loop. Between the join
and enrichment, and between enrichment and the sinks, bounded queues of *lists* carry the data:
when a sink is slow the queues fill, the tailers stop reading, and the logs on disk are the
buffer (backpressure). Memory stays flat.

The spool (disk) is between enrichment and the sinks: `_run_spool` appends what enrichment made
(fsync'd, then `_events_durable`), each sink reads the spool and releases what its destination
has taken. When the spool is full, `_run_spool` waits, the queues fill and reading pauses.
Shutdown (`_watch_delivery`): SIGTERM stops reading; delivery goes on for up to
`shutdown_timeout_secs`, then stops, leaving the rest in the spool. `run --once` gives up when
nothing was delivered for `shutdown_timeout_secs`; `undelivered` then says how many wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from sidecar import config as C
from sidecar.enrich.event import Enricher
from sidecar.enrich.identity import load_or_create_key, make_hasher
from sidecar.enrich.pricing import PricingEngine
from sidecar.enrich.tokens import TokenEstimator
from sidecar.errors import ParseError
from sidecar.join import Joiner, line_ts, may_read
from sidecar.parse.access import parser_for
from sidecar.parse.body import (
    assemble_escaped,
    decode_bodies_lines,
    decode_chunk_lines,
    part_time,
)
from sidecar.parse.compact import compact_stream
from sidecar.parse.response import parse_completed
from sidecar.sinks.file import FileSink
from sidecar.sinks.hec.sink import HecSink
from sidecar.sources.keeper import CheckpointKeeper
from sidecar.sources.tail import LineBatch, Tailer
from sidecar.spool import Spool, SpoolReader
from sidecar.status import Rate, SourceView, gather_status
from sidecar.telemetry import Telemetry
from sidecar.types import Completed, OutEvent, Positions

log = logging.getLogger("sidecar.pipeline")

_QUEUE_LISTS = 64  # lists in flight between stages
FILE_SINK_GROUP_EVENTS = 100  # events a file sink writes (then fsyncs) at a time


@dataclass
class _SourceRuntime:
    cfg: C.Source
    joiner: Joiner
    access_tail: Tailer
    body_tail: Tailer | None
    parse_access: Callable[..., Any]
    provider: str | None
    last_time: float | None = None  # log time of the newest access record read (for the lag)
    # per reader ("access", "body"): set when its frontier moves (join/clock.py)
    moved: dict[str, asyncio.Event] = field(default_factory=dict)


class Pipeline:
    def __init__(self, cfg: C.Config, *, once: bool = False) -> None:
        self.cfg = cfg
        self.once = once
        self.telemetry = Telemetry(
            set_aside_path=os.path.join(cfg.resolve(cfg.state_dir), "malformed.ndjson")
        )
        self.telemetry.series.cap = cfg.server.max_label_values
        self._started = time.time()
        self._rate = Rate()
        key = load_or_create_key(cfg.identity.hash_key, cfg.resolve(cfg.state_dir))
        self.hasher = make_hasher(key)
        hf = set(cfg.identity.hash_fields)
        self.pricing = PricingEngine(cfg.pricing, base_dir=cfg.base_dir)
        self.estimator = TokenEstimator(cfg.tokens)
        self.enricher = Enricher(
            pricing=self.pricing,
            estimator=self.estimator,
            estimate_missing=cfg.tokens.estimate_missing,
            hash_user=self.hasher if "user" in hf else None,
            hash_tenant=self.hasher if "tenant" in hf else None,
            hash_conversation=self.hasher if "conversation_id" in hf else None,
        )
        self._init_checkpoints()
        self.sources = [self._make_source(s) for s in cfg.sources]
        host = socket.gethostname()
        self.sinks: list[Any] = []
        for i, s in enumerate(cfg.sinks):
            if isinstance(s, C.FileSink):
                self.sinks.append(FileSink(cfg.resolve(s.path), envelope=s.envelope, host=host))
            else:
                self.sinks.append(
                    HecSink(
                        s,
                        host=s.host or host,
                        default_source=None,
                        dead_letter_path=os.path.join(
                            cfg.resolve(cfg.state_dir), "dead-letter.ndjson"
                        ),
                        config_key=f"sinks[{i}]",
                    )
                )
                self.sinks[-1].observe_latency = self.telemetry.hec_latency.observe
        self._completed_q: asyncio.Queue[list[Completed] | None] = asyncio.Queue(_QUEUE_LISTS)
        # bytes of body parts waiting between join and enrich: bounded too, so that the join's
        # byte bound is not undone by the queue (join.max_pending_bytes / 4)
        self._q_bytes = 0
        self._q_max_bytes = cfg.join.max_pending_bytes // 4
        self._q_room = asyncio.Event()
        self._events_q: asyncio.Queue[list[OutEvent] | None] = asyncio.Queue(_QUEUE_LISTS)
        sp = cfg.spool
        self.spool = Spool(
            os.path.join(cfg.resolve(cfg.state_dir), "spool"),
            max_bytes=sp.max_bytes,
            segment_bytes=sp.segment_bytes,
            fsync_interval_ms=sp.fsync_interval_ms,
            cursor_interval_ms=sp.cursor_interval_ms,
            on_durable=self._events_durable,
        )
        self.hurry = asyncio.Event()  # a second signal: stop delivering now
        self.undelivered = 0  # events left in the spool at the end of run()
        self._give_up = asyncio.Event()

    def _make_source(self, s: C.Source) -> _SourceRuntime:
        cfg = self.cfg
        joiner = Joiner(
            expire_after_secs=cfg.join.expire_after_secs,
            skew_secs=cfg.join.skew_secs,
            max_pending_requests=cfg.join.max_pending_requests,
            max_pending_bytes=cfg.join.max_pending_bytes,
            max_body_bytes=s.body_log.max_body_bytes if s.body_log else 0,
            assemble=assemble_escaped,
            compact=compact_stream,
        )
        joiner.has_body[s.name] = s.body_log is not None
        joiner.on_drop = self.ledger.release
        kw = {
            "start_at": s.start_at,
            "read_chunk_bytes": s.read_chunk_bytes,
            "poll_interval_secs": s.poll_interval_secs,
            "rotate_wait_secs": s.rotate_wait_secs,
            "max_line_bytes": s.max_line_bytes,
        }
        fmt = s.access_log.format
        return _SourceRuntime(
            cfg=s,
            joiner=joiner,
            access_tail=self._tailer(s.name + "/access", s.access_log.paths, kw),
            body_tail=self._tailer(s.name + "/body", s.body_log.paths, kw) if s.body_log else None,
            parse_access=parser_for(fmt.type, fmt.fields, fmt.headers_path),
            provider=None if s.provider == "auto" else s.provider,
            moved={"access": asyncio.Event(), "body": asyncio.Event()},
        )

    # ------------------------------------------------------------------ stage: tail+parse+join
    async def _run_access(self, src: _SourceRuntime, stop: asyncio.Event) -> None:
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
                    if out:
                        self._hold(joiner, batch, rids, out)
                        rids = []
                        await self._put_completed(out)
                        out = []
                    await self._wait(
                        src, "access", stop, lambda ts=ts: may_read(mine, other, ts, lead)
                    )
                rids.append(rec.request_id)
                try:
                    joiner.add_access(rec, name, batch.path, out, offset=at)
                except Exception as exc:
                    self._stage_failed_once("join", exc)
                    self._set_aside(ParseError("join_failed", repr(exc)), batch, i)
            if rec is not None and rec.time:
                src.last_time = rec.time
            self._hold(joiner, batch, rids, out)
            self.ledger.processed(batch.key, batch.end_offset)
            src.moved["access"].set()
            if out:
                await self._put_completed(out)
        mine.finish()
        src.moved["access"].set()

    async def _run_body(self, src: _SourceRuntime, stop: asyncio.Event) -> None:
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
            t.counters["body_lines_total"] += len(batch.lines)
            dec = (decode_bodies_lines if bodies_style else decode_chunk_lines)(batch.lines)
            replay = self._replaying(batch)
            if replay is not None:
                self._replay_filter(dec, replay)
            for i, exc in dec.errors:
                self._set_aside(exc, batch, i)
            if dec.lossy:
                t.counters["body_lines_lossy_utf8_total"] += dec.lossy
            if dec.invalid_ts:
                self.telemetry.field_invalid("body.ts", dec.invalid_ts)
            first, last = _batch_times(batch.lines, dec.records)

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
                joiner.add_chunks(dec.groups, dec.records, name, out)
            except Exception as exc:  # a bug must cost this batch's lines, never the pipeline
                self._stage_failed_once("join", exc)
                for i in range(len(batch.lines)):
                    self._set_aside(ParseError("join_failed", repr(exc)), batch, i)
            mine.advance(last)
            if last is None and mine.front == -math.inf:
                mine.advance(math.inf)  # a body log without times: no event-time order to keep
            joiner.advance(out)
            self._hold(joiner, batch, [*dec.groups, *(r.request_id for r in dec.records)], out)
            self.ledger.processed(batch.key, batch.end_offset)
            src.moved["body"].set()
            now = loop.time()
            if now - last_expiry >= 1.0 or joiner.over_budget():
                last_expiry = now
                while joiner.expire(out):
                    await self._put_completed(out)
                    out = []
            if out:
                await self._put_completed(out)
        mine.finish()
        src.moved["body"].set()

    async def _wait(
        self, src: _SourceRuntime, me: str, stop: asyncio.Event, ready: Callable[[], bool]
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
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(other.wait(), 0.05)

    async def _put_completed(self, out: list[Completed]) -> None:
        """Hand completed requests to enrichment in lists of at most 64, each waiting while the
        queue holds more than its byte bound (one list always fits an empty queue)."""
        for i in range(0, len(out), 64):
            part = out[i : i + 64]
            size = _completed_bytes(part)
            while self._q_bytes > 0 and self._q_bytes + size > self._q_max_bytes:
                self._q_room.clear()
                await self._q_room.wait()
            self._q_bytes += size
            await self._completed_q.put(part)

    @staticmethod
    def _sync_idle(src: _SourceRuntime) -> None:
        """Copy the tailers' caught-up state onto the join's frontiers (join/clock.py)."""
        j = src.joiner
        for front, tail in ((j.access_front, src.access_tail), (j.body_front, src.body_tail)):
            if tail is None:
                front.finish()
            elif not front.done:
                front.idle_since = tail.idle_since

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

    def _stage_failed_once(self, stage: str, exc: BaseException) -> None:
        """Log the first unexpected failure of a stage boundary with its traceback (a bug)."""
        key = f"{stage}_failures_total"
        if not self.telemetry.counters[key]:
            log.error(
                "A record failed in the %s stage (%s: %s): this is a bug, please report it. The "
                "record is set aside with its position; the pipeline goes on.",
                stage,
                type(exc).__name__,
                exc,
                exc_info=exc,
            )
        self.telemetry.counters[key] += 1

    async def _run_expiry(self, stop: asyncio.Event) -> None:
        """Follow mode: complete requests without a body once the body log is past them (or
        caught up for `skew_secs`), and expire the rest in bounded batches."""
        loop = asyncio.get_running_loop()
        last = loop.time()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.25)
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

    # ------------------------------------------------------------------ stage: enrich
    async def _run_enrich(self) -> None:
        t = self.telemetry
        enricher = self.enricher
        providers = {s.cfg.name: s.provider for s in self.sources}
        await self._warm
        while (batch := await self._completed_q.get()) is not None:
            self._q_bytes -= _completed_bytes(batch)
            self._q_room.set()
            events: list[OutEvent] = []
            for c in batch:
                provider = providers.get(c.source)
                try:
                    if c.last_ts is None and c.parts:  # the body's own last time (replay-stable)
                        c.last_ts = part_time(c.parts[-1])
                    parsed = parse_completed(c, provider=provider)
                    if enricher.wants_text(c, parsed):
                        parsed = parse_completed(c, provider=provider, want_text=True)
                    ev = enricher.enrich(c, parsed)
                except Exception:  # a bug must cost one request, loudly, never the pipeline
                    self._enrich_failed(c)
                    self.ledger.release(c.positions)  # set aside: its lines are done with
                    continue
                ev.positions = c.positions
                self._count_completed(c, parsed)
                if not encodable(ev):
                    self._stage_failed_once("encode", ValueError(c.request_id))
                    t.set_aside("encode_failed", c.source_path or c.source, None, 0, c.request_id)
                    self.ledger.release(c.positions)  # set aside: its lines are done with
                    continue
                t.observe_event(ev.body)
                events.append(ev)
            await self._events_q.put(events)
        await self._events_q.put(None)

    def _enrich_failed(self, c: Completed) -> None:
        cnt = self.telemetry.counters
        if not cnt["requests_failed_total"]:
            log.exception(
                "Could not build the event of request %s (source %s): this is a bug, please "
                "report it with this traceback. The request is counted and set aside; the "
                "pipeline goes on.",
                c.request_id,
                c.source,
            )
        cnt["requests_failed_total"] += 1
        self.telemetry.set_aside("enrich_failed", c.source_path or c.source, None, 0, c.request_id)

    def _count_completed(self, c: Completed, parsed: Any) -> None:
        cnt = self.telemetry.counters
        if c.access is None:
            cnt["body_records_without_access_total"] += 1
        elif c.expired and c.end is None and not c.has_body():
            cnt["access_without_body_total"] += 1
        if parsed.malformed_events:
            cnt["sse_events_malformed_total"] += parsed.malformed_events
        if parsed.compressed:
            if not cnt["bodies_compressed_total"]:
                log.warning(
                    "The body of request %s is gzip-compressed, so its usage cannot be read: the "
                    "proxy forwards the client's Accept-Encoding upstream. Clear it in the proxy "
                    '(nginx: proxy_set_header Accept-Encoding ""; see examples/nginx/README.md). '
                    "Such requests are counted and flagged compressed_body.",
                    c.request_id,
                )
            cnt["bodies_compressed_total"] += 1
        if c.body_truncated:
            cnt["bodies_truncated_total"] += 1
        if c.body_bad_parts:
            cnt["body_parts_invalid_total"] += c.body_bad_parts
        if c.body_lossy:
            cnt["bodies_lossy_utf8_total"] += 1

    # ------------------------------------------------------------------ stage: spool + sinks
    async def _run_spool(self) -> None:
        """Append what enrichment made; each call takes every list waiting (one fsync)."""
        q = self._events_q
        done = False
        while not done:
            batch = await q.get()
            if batch is None:
                break
            events = list(batch)
            while not q.empty():
                more = q.get_nowait()
                if more is None:
                    done = True
                    break
                events += more
            await self.spool.append(events, self._give_up)
        self.spool.finish_input()

    async def _run_sink(self, sink: Any, reader: SpoolReader) -> None:
        try:
            if isinstance(sink, HecSink):
                await sink.run(reader)
                return
            # Small groups: what a crash can re-deliver is the group being written plus what was
            # delivered since the last cursor save (spool.cursor_interval_ms).
            while entries := await reader.read(FILE_SINK_GROUP_EVENTS, 1 << 18):
                await self._sink_write(sink, [e.event for e in entries])
                await sink.flush()
                reader.release(e.seq for e in entries)
        except Exception:
            log.exception(
                "The sink %s stopped on an unexpected error (a bug, please report it); its events "
                "stay in the spool and are delivered at the next start.",
                reader.name,
            )
            raise

    async def _watch_delivery(self, stop: asyncio.Event, sinks: list[asyncio.Task[None]]) -> None:
        """Bound the delivery: after SIGTERM, `shutdown_timeout_secs`; in `--once`, that long
        without progress. Then give up: stop the sinks, leave the rest in the spool."""
        bound = self.cfg.shutdown_timeout_secs
        spool = self.spool
        last, since = -1, time.monotonic()
        while not all(t.done() for t in sinks):
            if stop.is_set() or self.hurry.is_set():
                deadline = time.monotonic() + bound
                hurry = asyncio.create_task(self.hurry.wait())
                try:
                    while not hurry.done() and (pending := [t for t in sinks if not t.done()]):
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        await asyncio.wait(
                            [*pending, hurry], timeout=left, return_when="FIRST_COMPLETED"
                        )
                finally:
                    hurry.cancel()
                break
            await asyncio.sleep(0.25)
            if not self.once:
                continue
            progress = spool.stats["spool_events_released_total"] + sum(
                r.watermark for r in self._spool_readers
            )
            if progress != last or not spool.pending_events:
                last, since = progress, time.monotonic()
            elif time.monotonic() - since >= bound:
                log.error(
                    "Nothing was delivered for %g s (shutdown_timeout_secs); giving up. Check "
                    "the sinks' errors above.",
                    bound,
                )
                break
        self._give_up.set()
        for t in sinks:
            t.cancel()

    async def _finish_delivery(
        self, spool_task: asyncio.Task[None], sinks: list[asyncio.Task[None]]
    ) -> None:
        await spool_task
        await asyncio.gather(*sinks, return_exceptions=True)
        await self._watchdog
        self.undelivered = self.spool.pending_events
        if self.undelivered:
            log.warning(
                "%d event(s) wait in the spool (%s); they are delivered at the next start.",
                self.undelivered,
                self.spool.directory,
            )

    async def _sink_write(self, sink: Any, events: list[OutEvent]) -> None:
        """Write a batch; if the sink fails on it, write event by event and set aside those
        that fail (with their request id), so one event never stops delivery."""
        try:
            await sink.write(events)
            return
        except Exception as exc:
            if len(events) == 1:
                self._stage_failed_once("sink write", exc)
                ev = events[0]
                rid = str(ev.body.get("request_id"))
                self.telemetry.set_aside("sink_write_failed", ev.source or "", None, 0, rid)
                return
        for ev in events:
            await self._sink_write(sink, [ev])

    async def _supervise(self, readers: list[asyncio.Task], *stages: asyncio.Task) -> Any:
        """Wait for the readers; a stage that ends before them has died. Returns None, or
        (task name, exception) of the first stage that died."""
        gathered = asyncio.ensure_future(asyncio.gather(*readers))
        watch = {gathered, *stages}
        while True:
            done, _ = await asyncio.wait(watch, return_when=asyncio.FIRST_COMPLETED)
            if gathered in done:
                exc = gathered.exception()
                return None if exc is None else ("reader", exc)
            # The readers are cancelled next: retrieve their outcome so that it is not
            # reported as "never retrieved".
            gathered.add_done_callback(lambda f: f.cancelled() or f.exception())
            task = done.pop()
            exc = None if task.cancelled() else task.exception()
            return (task.get_name(), exc or RuntimeError("the stage ended early"))

    async def _salvage(self, failed: Any, readers: list[asyncio.Task], *stages: Any) -> None:
        """A stage died: stop reading, put what was already enriched into the spool (durable:
        it is delivered at the next start), close what can be closed, then raise StageFailed
        (the normal drain would wait on the dead stage forever)."""
        name, exc = failed
        log.error(
            "The %s stage stopped (%s: %s): keeping what can be kept and exiting so that the "
            "service manager restarts the sidecar.",
            name,
            type(exc).__name__,
            exc,
            exc_info=exc,
        )
        spool_task = next((t for t in stages if t is not None and t.get_name() == "spool"), None)
        for task in [*readers, *stages, getattr(self, "_watchdog", None)]:
            if task is not None and not task.done() and task is not spool_task:
                task.cancel()
        if spool_task is not None and not spool_task.done():
            with contextlib.suppress(Exception):
                self._events_q.put_nowait(None)
                await asyncio.wait_for(spool_task, 10)
        self._give_up.set()

        for sink in self.sinks:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(sink.close(), 10)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.spool.close(), 10)
        for src in self.sources:
            src.access_tail.close()
            if src.body_tail is not None:
                src.body_tail.close()
        self.telemetry.close()
        raise StageFailed(name, exc)

    def _count_join(self, joiner: Joiner) -> None:
        """The join's counters in the run summary (every eviction, expiry and late record)."""
        cnt = self.telemetry.counters
        cnt["late_records_total"] += joiner.stats["late_records"]
        for k, v in joiner.stats.items():
            if k != "late_records":
                cnt[f"join_{k}_total"] += v

    # ------------------------------------------------------------------ run
    async def run(self, stop: asyncio.Event | None = None) -> Telemetry:
        stop = stop or asyncio.Event()
        # The price catalogue and the encodings are large, long-lived object graphs: move them out
        # of the collector's sight so that its full passes do not rescan them, and collect young
        # objects less often (the hot path allocates many short-lived ones).
        gc.collect()
        gc.freeze()
        gc.set_threshold(20_000, 20, 20)
        # Loading the tiktoken encodings takes ~1 s: do it in a thread while the logs are read;
        # enrichment waits for it before its first request.
        self._warm = asyncio.get_running_loop().run_in_executor(None, self.estimator.warm_up)
        self.spool.open()
        self._spool_readers = [self.spool.reader(f"sinks[{i}]") for i in range(len(self.sinks))]
        for sink in self.sinks:
            await sink.start()
        enrich_task = asyncio.create_task(self._run_enrich(), name="enrich")
        spool_task = asyncio.create_task(self._run_spool(), name="spool")
        sink_tasks = [
            asyncio.create_task(self._run_sink(s, r), name=f"sink{i}")
            for i, (s, r) in enumerate(zip(self.sinks, self._spool_readers, strict=True))
        ]
        self._watchdog = asyncio.create_task(self._watch_delivery(stop, sink_tasks))
        readers = []
        for src in self.sources:
            readers.append(asyncio.create_task(self._run_access(src, stop), name="access"))
            if src.body_tail is not None:
                readers.append(asyncio.create_task(self._run_body(src, stop), name="body"))
        expiry = None if self.once else asyncio.create_task(self._run_expiry(stop))
        service = None if self.once else await self._start_service(stop)
        failed: Any = None
        ckpt_task = asyncio.create_task(self.keeper.run(stop), name="checkpoints")
        try:
            failed = await self._supervise(readers, enrich_task, spool_task, *sink_tasks)
        finally:
            if service is not None:
                await service.stop()
            if failed is not None and failed[0] != "reader":
                await self._salvage(failed, readers, enrich_task, spool_task, *sink_tasks, expiry)
            if expiry is not None:
                stop.set()
                await expiry
            # `run --once` emits what is still pending, in bounded batches. When following,
            # pending requests stay in the checkpoint (below the committed offset) and are read
            # again at the next start, so a request is never cut in two across a restart.
            for src in self.sources if self.once else ():
                for out in src.joiner.flush_batches():
                    await self._put_completed(out)
            await self._completed_q.put(None)
            await enrich_task
            await self._finish_delivery(spool_task, sink_tasks)
            for sink in self.sinks:
                await sink.close()
                for k, v in getattr(sink, "stats", {}).items():
                    if "dead" in k:
                        self.telemetry.counters["events_dead_lettered_total"] += v
            stop.set()
            await ckpt_task
            self.keeper.save()  # everything handed on is durable now
            for src in self.sources:
                src.access_tail.close()
                if src.body_tail is not None:
                    src.body_tail.close()
                self._count_join(src.joiner)
            await self.spool.close()
            self.telemetry.counters.update(self.keeper.counters())
            self.telemetry.estimation = self.estimator.metrics()
            self.telemetry.close()
        if failed is not None:  # a reader died: what it had read is delivered; still an error
            raise StageFailed(*failed)
        return self.telemetry

    # ------------------------------------------------------------------ issue 8: checkpoints
    # The hand-back (docs/architecture.md, "Checkpoints"): a request's positions are held in
    # the ledger from the batch where the join takes it until its event is durable; the sinks
    # (the spool, once it exists) call `_events_durable`; checkpoints save min(held, read).
    def _init_checkpoints(self) -> None:
        cfg = self.cfg
        self.keeper = CheckpointKeeper(
            os.path.join(cfg.resolve(cfg.state_dir), "checkpoints.json"),
            interval_secs=cfg.checkpoint.interval_secs,
            expire_after_secs=cfg.checkpoint.expire_after_secs,
        )
        self.ledger = self.keeper.ledger

    def _tailer(self, name: str, paths: list[str], kw: dict[str, Any]) -> Tailer:
        return self.keeper.tailer(name, [self.cfg.resolve(p) for p in paths], **kw)

    def _replaying(self, batch: LineBatch) -> set[str] | None:
        """The ids to feed from a batch below the checkpoint's read offset (None: feed all).
        Over-long lines of new batches are set aside here (replayed ones already were)."""
        replay = self.ledger.replaying(batch.key, batch.start_offset)
        if batch.skipped and replay is None:
            for offset, length in batch.skipped:
                self.telemetry.set_aside("line_too_long", batch.path, offset, length)
        return replay

    def _replay_filter(self, dec: Any, replay: set[str]) -> None:
        """Below the checkpoint's read offset: keep only requests still to be rebuilt."""
        groups = {rid: g for rid, g in dec.groups.items() if rid in replay}
        records = [r for r in dec.records if r.request_id in replay]
        skipped = sum(len(g) for g in dec.groups.values()) - sum(len(g) for g in groups.values())
        self.ledger.replay_lines_skipped += skipped + len(dec.records) - len(records)
        dec.groups, dec.records, dec.errors = groups, records, []

    def _hold(
        self, joiner: Joiner, batch: LineBatch, rids: list[str], out: list[Completed]
    ) -> None:
        """Hold the batch's position for every request it fed (pending, or completed in `out`),
        before any of `out` is handed on: a position is always held before it can be released.
        The caller then marks the batch processed (`ledger.processed`) once all of it is in the
        join."""
        key, start, ledger = batch.key, batch.start_offset, self.ledger
        for rid in joiner.note_positions(rids, key, start):
            ledger.hold(key, start, rid)
        if out:
            fed = set(rids)
            for c in out:
                if c.request_id not in fed:
                    continue
                if c.positions is None:
                    c.positions = Positions(c.request_id, {key: start})
                elif key in c.positions.at:
                    continue
                else:
                    c.positions.at[key] = start
                ledger.hold(key, start, c.request_id)

    def _events_durable(self, events: list[OutEvent]) -> None:
        """Contract 1: the spool calls this once `events` are fsync'd. Releases their positions
        so that the tail checkpoints can move on."""
        release = self.ledger.release
        for ev in events:
            release(ev.positions)
        self.keeper.soon()

    # ------------------------------------------------------------------ service (issue 11)
    async def _start_service(self, stop: asyncio.Event) -> Any:
        """systemd READY/STATUS/WATCHDOG, /health + /metrics, heartbeats (follow mode)."""
        from sidecar.metrics import make_renderer
        from sidecar.service import ServiceRuntime

        service = ServiceRuntime(
            self.cfg,
            status=self.status,
            metrics=make_renderer(self.telemetry, self.status, self.estimator.metrics),
            emit=self._events_q.put,
        )
        await service.start(stop)
        return service

    def status(self) -> dict[str, Any]:
        """Lag per source, spool bytes, events/s, counters and health reasons (contract 2): for
        /health, /metrics, STATUS= and the heartbeat. Missing parts read as 0 / healthy."""
        sources = []
        for src in self.sources:
            tails = [src.access_tail] + ([src.body_tail] if src.body_tail else [])
            paths = src.cfg.access_log.paths + (src.cfg.body_log.paths if src.cfg.body_log else [])
            sources.append(
                SourceView(src.cfg.name, tails, src.last_time, [self.cfg.resolve(p) for p in paths])
            )
        return gather_status(
            sources=sources,
            sinks=self.sinks,
            spool=getattr(self, "spool", None),
            telemetry=self.telemetry,
            started=self._started,
            rate=self._rate,
            server=self.cfg.server,
        )


class StageFailed(Exception):
    """A stage task died: the process must exit non-zero (systemd restarts it)."""

    def __init__(self, stage: str, exc: BaseException) -> None:
        self.stage = stage
        self.exc = exc
        super().__init__(f"the {stage} stage stopped: {type(exc).__name__}: {exc}")


def encodable(ev: OutEvent) -> bool:
    """Whether the event can be written by every sink (orjson, a plain-decimal time); a value
    that slipped past validation costs this event, never the sink task."""
    try:
        orjson.dumps(ev.body)
    except (TypeError, ValueError):
        return False
    return math.isfinite(ev.time) and 0 <= ev.time < 1e11


def _completed_bytes(batch: list[Completed]) -> int:
    return sum(c.raw_bytes for c in batch)


def _batch_times(lines: list[bytes], records: list[Any]) -> tuple[float | None, float | None]:
    """Log times of a body batch's first and last records (two lines looked at, not all)."""
    first = line_ts(lines[0]) if lines else None
    last = line_ts(lines[-1]) if lines else None
    if first is None or last is None:
        times = [r.ts for r in records if isinstance(r.ts, int | float)]
        if times:
            first = min(times) if first is None else first
            last = max(times) if last is None else last
    return first, last


def install_signal_handlers(
    stop: asyncio.Event, hurry: asyncio.Event | None = None, backstop_secs: float | None = None
) -> None:
    """SIGTERM/SIGINT stop reading and deliver for up to `shutdown_timeout_secs`; a second one
    sets `hurry`: delivery stops at once, what is undelivered stays in the spool. With
    `backstop_secs`, a shutdown that hangs longer than that (a bug) ends the process, exit 1."""
    loop = asyncio.get_running_loop()

    def give_up() -> None:
        log.error(
            "Shutdown did not finish within %g s although delivery stops after "
            "shutdown_timeout_secs: a stage is stuck (a bug, please report it). Exiting now with "
            "status 1; what is in the spool is delivered at the next start.",
            backstop_secs,
        )
        logging.shutdown()
        os._exit(1)

    def handler(signame: str) -> None:
        if stop.is_set():
            log.warning(
                "Second %s: stopping delivery now; undelivered events stay in the spool.", signame
            )
            if hurry is not None:
                hurry.set()
            return
        log.info("%s received: stopping reading, delivering what is spooled.", signame)
        stop.set()
        if backstop_secs:
            loop.call_later(backstop_secs, give_up)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, handler, sig.name)
