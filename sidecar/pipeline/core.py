"""The pipeline object: builds every stage from the config, runs them, and drains them in order
at the end. The stages themselves live beside it (readers, delivery, supervision, handback)."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import time
from typing import Any

from sidecar import config as C
from sidecar.enrich.event import Enricher
from sidecar.enrich.identity import load_or_create_key, make_hasher
from sidecar.enrich.pricing import PricingEngine
from sidecar.enrich.tokenizer import encoding_for, get_encoder, is_loaded
from sidecar.enrich.tokens import TokenEstimator
from sidecar.join import Joiner
from sidecar.parse.access import parser_for
from sidecar.parse.body import assemble_escaped, part_time
from sidecar.parse.compact import compact_stream
from sidecar.parse.response import parse_completed
from sidecar.pipeline.delivery import DeliveryMixin
from sidecar.pipeline.handback import HandbackMixin
from sidecar.pipeline.readers import (
    QUEUE_LISTS,
    QUEUE_MAX_BYTES,
    ReadersMixin,
    SourceRuntime,
    completed_bytes,
)
from sidecar.pipeline.supervision import StageFailed, SupervisionMixin, encodable
from sidecar.sinks.file import FileSink
from sidecar.spool import Spool
from sidecar.status import Rate, SourceView, gather_status
from sidecar.telemetry import Telemetry
from sidecar.types import Completed, OutEvent

log = logging.getLogger("sidecar.pipeline")


class Pipeline(ReadersMixin, DeliveryMixin, SupervisionMixin, HandbackMixin):
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
                # imported only when configured (its HTTP client imports ssl)
                from sidecar.sinks.hec.sink import HecSink

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
        self._completed_q: asyncio.Queue[list[Completed] | None] = asyncio.Queue(QUEUE_LISTS)
        # bytes of body parts waiting between join and enrich: bounded too, so that the join's
        # byte bound is not undone by the queue (join.max_pending_bytes / 4, at most
        # QUEUE_MAX_BYTES: a body block completes about as much at once, which waits beside the
        # queue; more only raises the peak RSS, e.g. while the first estimate waits for the
        # tokenizer)
        self._q_bytes = 0
        self._q_max_bytes = min(cfg.join.max_pending_bytes // 4, QUEUE_MAX_BYTES)
        self._q_room = asyncio.Event()
        self._events_q: asyncio.Queue[list[OutEvent] | None] = asyncio.Queue(QUEUE_LISTS)
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

    def _make_source(self, s: C.Source) -> SourceRuntime:
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
        return SourceRuntime(
            cfg=s,
            joiner=joiner,
            access_tail=self._tailer(
                s.name + "/access",
                s.access_log.paths,
                {**kw, "read_chunk_bytes": s.access_read_chunk_bytes},
            ),
            body_tail=self._tailer(s.name + "/body", s.body_log.paths, kw) if s.body_log else None,
            parse_access=parser_for(fmt.type, fmt.fields, fmt.headers_path),
            provider=None if s.provider == "auto" else s.provider,
            moved={"access": asyncio.Event(), "body": asyncio.Event()},
        )

    # ------------------------------------------------------------------ stage: enrich
    async def _run_enrich(self) -> None:
        t = self.telemetry
        enricher = self.enricher
        providers = {s.cfg.name: s.provider for s in self.sources}
        # the per-request calls, looked up once (the loop runs once per request)
        wants_text, enrich = enricher.wants_text, enricher.enrich
        count, observe = self._count_completed, t.observe_event
        while (batch := await self._completed_q.get()) is not None:
            self._q_bytes -= completed_bytes(batch)
            self._q_room.set()
            events: list[OutEvent] = []
            for c in batch:
                provider = providers.get(c.source)
                try:
                    if c.last_ts is None and c.parts:  # the body's own last time (replay-stable)
                        c.last_ts = part_time(c.parts[-1])
                    parsed = parse_completed(c, provider=provider)
                    if wants_text(c, parsed):
                        await self._tokenizer_ready(c, parsed)
                        parsed = parse_completed(c, provider=provider, want_text=True)
                    elif parsed.usage is None and c.access and c.access.request_body:
                        await self._tokenizer_ready(c, parsed)  # the input may be estimated
                    ev = enrich(c, parsed)
                except Exception:  # a bug must cost one request, loudly, never the pipeline
                    self._enrich_failed(c)
                    self.ledger.release(c.positions)  # set aside: its lines are done with
                    continue
                count(c, parsed)
                if not encodable(ev):
                    self._stage_failed_once("encode", ValueError(c.request_id))
                    t.set_aside("encode_failed", c.source_path or c.source, None, 0, c.request_id)
                    self.ledger.release(c.positions)  # set aside: its lines are done with
                    continue
                observe(ev.body)
                events.append(ev)
            await self._events_q.put(events)
        await self._events_q.put(None)

    async def _tokenizer_ready(self, c: Completed, parsed: Any) -> None:
        """Load the encoding this request may count with, in a thread, if it is not loaded yet:
        the first estimate or calibration sample waits for it (once per encoding, 0.2-0.5 s)
        while the event loop goes on reading and delivering. A run that never counts never
        loads one (start-up memory); an encoding the request's body names differently is
        loaded on the spot by the estimator (correct, just not in a thread)."""
        model = parsed.model or (c.access.model if c.access is not None else None)
        name = encoding_for(model)[0]
        directory = self.cfg.tokens.encodings_dir
        if not is_loaded(name, directory):
            await asyncio.get_running_loop().run_in_executor(None, get_encoder, name, directory)

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
        if (
            c.access is not None
            and not c.expired
            and not parsed.malformed_events
            and not parsed.compressed
            and not c.body_truncated
            and not c.body_bad_parts
            and not c.body_lossy
        ):
            return  # the common request: nothing to count
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

    # ------------------------------------------------------------------ run
    async def run(self, stop: asyncio.Event | None = None) -> Telemetry:
        stop = stop or asyncio.Event()
        # The price catalogue is a large, long-lived object graph: move it out of the collector's
        # sight so that its full passes do not rescan it, and collect young objects less often
        # (the hot path allocates many short-lived ones). The tiktoken encodings load later, when
        # first needed (`_tokenizer_ready`); they hold no Python objects the collector scans.
        gc.collect()
        gc.freeze()
        gc.set_threshold(20_000, 20, 20)
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

    # ------------------------------------------------------------------ service
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
