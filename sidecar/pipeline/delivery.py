"""Enrichment's events -> the spool -> every sink, each reading the spool on its own; the
shutdown bound (`shutdown_timeout_secs`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from sidecar.sinks.file import FileSink
from sidecar.spool import SpoolReader
from sidecar.spool.segment import decode_event

log = logging.getLogger("sidecar.pipeline")


# What a file sink writes (then fsyncs, then releases) at a time: everything the spool has made
# durable since, up to these bounds (usually one spool batch). Each group costs a write, an fsync,
# the hand-offs to and from the worker thread and a release: in groups of 100 events the file
# sink cost about 8 us of CPU per event on top of the spool's own, in groups of up to 1 MiB
# about 4 us (bench/bench_delivery.py). A crash re-sends at most the group being written plus
# what was delivered since the last cursor save (`spool.cursor_interval_ms`), the larger term
# when catching up.
FILE_SINK_GROUP_EVENTS = 1000
FILE_SINK_GROUP_BYTES = 1 << 20


class DeliveryMixin:
    """Pipeline's spool and sink stages."""

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
            if not isinstance(sink, FileSink):  # the HEC sink reads the spool itself
                await sink.run(reader)
                return
            while True:
                seqs, payloads = await reader.read_payloads(
                    FILE_SINK_GROUP_EVENTS, FILE_SINK_GROUP_BYTES
                )
                if not payloads:
                    break
                await self._sink_write(sink, payloads)
                await sink.flush()
                reader.release(seqs)
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
            await asyncio.wait(sinks, timeout=0.25)  # returns at once when the sinks are done
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

    async def _sink_write(self, sink: Any, payloads: list[bytes]) -> None:
        """Write a batch of spool records; if the sink fails on it, write them one by one and
        set aside those that fail (with their request id), so one event never stops delivery."""
        try:
            await sink.write_payloads(payloads)
            return
        except Exception as exc:
            if len(payloads) == 1:
                self._stage_failed_once("sink write", exc)
                rid, source = "", ""
                with contextlib.suppress(Exception):  # the record may be what fails
                    ev = decode_event(payloads[0])
                    rid, source = str(ev.body.get("request_id")), ev.source or ""
                self.telemetry.set_aside("sink_write_failed", source, None, 0, rid)
                return
        for p in payloads:
            await self._sink_write(sink, [p])
