"""The only place that wires the stages together.

    tail(access) ─┐                                     ┌─► sink 1
                  ├─► parse ─► join ─► [q] ─► enrich ─► [q] ─┤
    tail(body)  ──┘                                     └─► sink N

Each source has one `Joiner`; its two tailers feed it in the same event loop. Between the join
and enrichment, and between enrichment and the sinks, bounded queues of *lists* carry the data:
when a sink is slow the queues fill, the tailers stop reading, and the logs on disk are the
buffer (backpressure). Memory stays flat.
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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sidecar import config as C
from sidecar.enrich.event import Enricher
from sidecar.enrich.identity import load_or_create_key, make_hasher
from sidecar.enrich.pricing import PricingEngine
from sidecar.enrich.tokens import TokenEstimator
from sidecar.errors import ParseError
from sidecar.join import Joiner, line_ts, may_read
from sidecar.parse.access import parser_for
from sidecar.parse.body import assemble_escaped, decode_bodies_lines, decode_chunk_lines
from sidecar.parse.compact import compact_stream
from sidecar.parse.response import parse_completed
from sidecar.sinks.file import FileSink
from sidecar.sinks.hec.sink import HecSink
from sidecar.sources.tail import LineBatch, Tailer
from sidecar.telemetry import Telemetry
from sidecar.types import Completed, OutEvent

log = logging.getLogger("sidecar.pipeline")

_QUEUE_LISTS = 64  # lists in flight between stages


@dataclass
class _SourceRuntime:
    cfg: C.Source
    joiner: Joiner
    access_tail: Tailer
    body_tail: Tailer | None
    parse_access: Callable[..., Any]
    provider: str | None
    # per reader ("access", "body"): set when its frontier moves (join/clock.py)
    moved: dict[str, asyncio.Event] = field(default_factory=dict)


class Pipeline:
    def __init__(self, cfg: C.Config, *, once: bool = False) -> None:
        self.cfg = cfg
        self.once = once
        self.telemetry = Telemetry(
            set_aside_path=os.path.join(cfg.resolve(cfg.state_dir), "malformed.ndjson")
        )
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
        self._completed_q: asyncio.Queue[list[Completed] | None] = asyncio.Queue(_QUEUE_LISTS)
        # bytes of body parts waiting between join and enrich: bounded too, so that the join's
        # byte bound is not undone by the queue (join.max_pending_bytes / 4)
        self._q_bytes = 0
        self._q_max_bytes = cfg.join.max_pending_bytes // 4
        self._q_room = asyncio.Event()
        self._events_q: asyncio.Queue[list[OutEvent] | None] = asyncio.Queue(_QUEUE_LISTS)

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
        kw = {
            "start_at": s.start_at,
            "read_chunk_bytes": s.read_chunk_bytes,
            "poll_interval_secs": s.poll_interval_secs,
        }
        fmt = s.access_log.format
        return _SourceRuntime(
            cfg=s,
            joiner=joiner,
            access_tail=Tailer([cfg.resolve(p) for p in s.access_log.paths], **kw),
            body_tail=Tailer([cfg.resolve(p) for p in s.body_log.paths], **kw)
            if s.body_log
            else None,
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
            t.counters["access_lines_total"] += len(batch.lines)
            offset = batch.end_offset - sum(map(len, batch.lines)) - len(batch.lines)
            for i, line in enumerate(batch.lines):
                at = offset
                offset += len(line) + 1
                if not line.strip():
                    continue
                try:
                    rec = parse(line, hasher)
                except ParseError as exc:
                    self._set_aside(exc, batch, i)
                    continue
                ts = rec.time
                if not may_read(mine, other, ts, lead):  # event time: wait for the body log
                    if out:
                        await self._put_completed(out)
                        out = []
                    await self._wait(
                        src, "access", stop, lambda ts=ts: may_read(mine, other, ts, lead)
                    )
                joiner.add_access(rec, name, batch.path, out, offset=at)
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
            for i, exc in dec.errors:
                self._set_aside(exc, batch, i)
            if dec.lossy:
                t.counters["body_lines_lossy_utf8_total"] += dec.lossy
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
            joiner.add_chunks(dec.groups, dec.records, name, out)
            mine.advance(last)
            if last is None and mine.front == -math.inf:
                mine.advance(math.inf)  # a body log without times: no event-time order to keep
            joiner.advance(out)
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
        # The offset of line `index`: the batch ends at end_offset; walk back over later lines.
        tail = sum(len(x) + 1 for x in batch.lines[index:])
        offset = batch.end_offset - tail
        self.telemetry.set_aside(
            exc.reason, batch.path, offset, len(batch.lines[index]), exc.detail
        )

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
                    parsed = parse_completed(c, provider=provider)
                    if enricher.wants_text(c, parsed):
                        parsed = parse_completed(c, provider=provider, want_text=True)
                    ev = enricher.enrich(c, parsed)
                except Exception:  # a bug must cost one request, loudly, never the pipeline
                    self._enrich_failed(c)
                    continue
                self._count_completed(c, parsed)
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

    def _count_join(self, joiner: Joiner) -> None:
        """The join's counters in the run summary (every eviction, expiry and late record)."""
        cnt = self.telemetry.counters
        cnt["late_records_total"] += joiner.stats["late_records"]
        for k, v in joiner.stats.items():
            if k != "late_records":
                cnt[f"join_{k}_total"] += v

    # ------------------------------------------------------------------ stage: sinks
    async def _run_sinks(self) -> None:
        while (events := await self._events_q.get()) is not None:
            for sink in self.sinks:
                await sink.write(events)
        for sink in self.sinks:
            await sink.flush()

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
        for sink in self.sinks:
            await sink.start()
        enrich_task = asyncio.create_task(self._run_enrich(), name="enrich")
        sink_task = asyncio.create_task(self._run_sinks(), name="sinks")
        readers = []
        for src in self.sources:
            readers.append(asyncio.create_task(self._run_access(src, stop), name="access"))
            if src.body_tail is not None:
                readers.append(asyncio.create_task(self._run_body(src, stop), name="body"))
        expiry = None if self.once else asyncio.create_task(self._run_expiry(stop))
        try:
            await asyncio.gather(*readers)
        finally:
            if expiry is not None:
                stop.set()
                await expiry
            # Emit what is still pending, in bounded batches: nothing read is lost at shutdown.
            for src in self.sources:
                for out in src.joiner.flush_batches():
                    await self._put_completed(out)
            await self._completed_q.put(None)
            await enrich_task
            await sink_task
            for sink in self.sinks:
                await sink.close()
                for k, v in getattr(sink, "stats", {}).items():
                    if "dead" in k:
                        self.telemetry.counters["events_dead_lettered_total"] += v
            for src in self.sources:
                src.access_tail.close()
                if src.body_tail is not None:
                    src.body_tail.close()
                self._count_join(src.joiner)
            self.telemetry.estimation = self.estimator.metrics()
            self.telemetry.close()
        return self.telemetry


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


def install_signal_handlers(stop: asyncio.Event) -> None:
    """SIGTERM/SIGINT stop cleanly; a second one forces exit (uvicorn's habit)."""
    loop = asyncio.get_running_loop()

    def handler(signame: str) -> None:
        if stop.is_set():
            log.warning("Second %s: exiting now without draining.", signame)
            os._exit(130)
        log.info("%s received: draining and stopping.", signame)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, handler, sig.name)
