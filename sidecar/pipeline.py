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
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sidecar import config as C
from sidecar.enrich.event import Enricher
from sidecar.enrich.identity import load_or_create_key, make_hasher
from sidecar.enrich.pricing import PricingEngine
from sidecar.enrich.tokens import TokenEstimator
from sidecar.errors import ParseError
from sidecar.join import Joiner
from sidecar.parse.access import parser_for
from sidecar.parse.body import assemble_escaped, decode_bodies_lines, decode_chunk_lines
from sidecar.parse.response import parse_completed
from sidecar.sinks.file import FileSink
from sidecar.sinks.hec.sink import HecSink
from sidecar.sources.keeper import CheckpointKeeper
from sidecar.sources.tail import LineBatch, Tailer
from sidecar.telemetry import Telemetry
from sidecar.types import Completed, OutEvent, Positions

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
        self._init_checkpoints()
        self.sources = [self._make_source(s) for s in cfg.sources]
        host = socket.gethostname()
        self.sinks: list[Any] = []
        for i, s in enumerate(cfg.sinks):
            if isinstance(s, C.FileSink):
                self.sinks.append(
                    FileSink(
                        cfg.resolve(s.path),
                        envelope=s.envelope,
                        host=host,
                        fsync_interval_secs=s.fsync_interval_secs,
                        on_durable=self._events_durable,
                    )
                )
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
                        on_durable=self._events_durable,
                    )
                )
        self._completed_q: asyncio.Queue[list[Completed] | None] = asyncio.Queue(_QUEUE_LISTS)
        self._events_q: asyncio.Queue[list[OutEvent] | None] = asyncio.Queue(_QUEUE_LISTS)

    def _make_source(self, s: C.Source) -> _SourceRuntime:
        cfg = self.cfg
        joiner = Joiner(
            expire_after_secs=cfg.join.expire_after_secs,
            max_pending_requests=cfg.join.max_pending_requests,
            max_body_bytes=s.body_log.max_body_bytes if s.body_log else 0,
            assemble=assemble_escaped,
        )
        joiner.has_body[s.name] = s.body_log is not None
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
        )

    # ------------------------------------------------------------------ stage: tail+parse+join
    async def _run_access(self, src: _SourceRuntime, stop: asyncio.Event) -> None:
        t = self.telemetry
        parse = src.parse_access
        hasher = self.hasher
        name = src.cfg.name
        async for batch in src.access_tail.batches(follow=not self.once, stop=stop):
            out: list[Completed] = []
            t.counters["access_lines_total"] += len(batch.lines)
            replay = self._replaying(batch)
            rids: list[str] = []
            for i, line in enumerate(batch.lines):
                if not line.strip():
                    continue
                try:
                    rec = parse(line, hasher)
                except ParseError as exc:
                    if replay is None:
                        self._set_aside(exc, batch, i)
                    continue
                if replay is not None and rec.request_id not in replay:
                    self.ledger.replay_lines_skipped += 1  # its event is already durable
                    continue
                rids.append(rec.request_id)
                src.joiner.add_access(rec, name, batch.path, out)
            self._note_batch(src.joiner, batch, rids, out)
            if out:
                await self._completed_q.put(out)

    async def _run_body(self, src: _SourceRuntime, stop: asyncio.Event) -> None:
        assert src.body_tail is not None
        t = self.telemetry
        bodies_style = src.cfg.body_log.format.type == "bodies"  # type: ignore[union-attr]
        joiner = src.joiner
        name = src.cfg.name
        async for batch in src.body_tail.batches(follow=not self.once, stop=stop):
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
            joiner.add_chunks(dec.groups, dec.records, name, out)
            rids = [*dec.groups, *(r.request_id for r in dec.records)]
            self._note_batch(joiner, batch, rids, out)
            if out:
                await self._completed_q.put(out)

    def _set_aside(self, exc: ParseError, batch: LineBatch, index: int) -> None:
        # The offset of line `index`: the batch's lines are contiguous from start_offset.
        offset = batch.start_offset + sum(len(x) + 1 for x in batch.lines[:index])
        self.telemetry.set_aside(
            exc.reason, batch.path, offset, len(batch.lines[index]), exc.detail
        )

    async def _run_expiry(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            for src in self.sources:
                out: list[Completed] = []
                src.joiner.expire(out)
                if out:
                    await self._completed_q.put(out)

    # ------------------------------------------------------------------ stage: enrich
    async def _run_enrich(self) -> None:
        t = self.telemetry
        enricher = self.enricher
        providers = {s.cfg.name: s.provider for s in self.sources}
        await self._warm
        while (batch := await self._completed_q.get()) is not None:
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
                    self.ledger.release(c.positions)  # set aside: its lines are done with
                    continue
                ev.positions = c.positions
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
        ckpt_task = asyncio.create_task(self.keeper.run(stop), name="checkpoints")
        try:
            await asyncio.gather(*readers)
        finally:
            if expiry is not None:
                stop.set()
                await expiry
            # `run --once` emits what is still pending. When following, pending requests stay
            # in the checkpoint (below the committed offset) and are read again at the next
            # start, so a request is never cut in two across a restart.
            for src in self.sources if self.once else ():
                out: list[Completed] = []
                src.joiner.flush(out)
                if out:
                    await self._completed_q.put(out)
            await self._completed_q.put(None)
            await enrich_task
            await sink_task
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
                self.telemetry.counters["late_records_total"] += src.joiner.late_records
            self.telemetry.counters.update(self.keeper.counters())
            self.telemetry.estimation = self.estimator.metrics()
            self.telemetry.close()
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
        # Confirmations an event needs: one per sink while the sinks confirm; 1 once the spool
        # (the only confirmer then) calls `_events_durable`.
        self._durable_needed = max(1, len(cfg.sinks))
        self._durable_seen: dict[int, int] = {}  # id(event) -> confirmations (several sinks)

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

    def _note_batch(
        self, joiner: Joiner, batch: LineBatch, rids: list[str], out: list[Completed]
    ) -> None:
        """Hold the batch's position for every request it fed (pending or just completed)."""
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
        ledger.processed(key, batch.end_offset)

    def _events_durable(self, events: list[OutEvent]) -> None:
        """Contract 1: called once events are durable (sink acknowledged / fsync'd; the spool's
        fsync once it exists). Releases their positions so the checkpoints can move on."""
        release = self.ledger.release
        if self._durable_needed == 1:
            for ev in events:
                release(ev.positions)
        else:
            seen = self._durable_seen  # with several sinks, durable = every sink confirmed
            for ev in events:
                n = seen.get(id(ev), 0) + 1
                if n >= self._durable_needed:
                    seen.pop(id(ev), None)
                    release(ev.positions)
                else:
                    seen[id(ev)] = n
        self.keeper.soon()


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
