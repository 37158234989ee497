"""The HEC sink: reads the spool, sends batches, releases what HEC has taken.

    spool reader ─► encoder (envelopes, batches) ─► endpoints (round robin, health)
                 ─► service (POST) ─► replies.classify ─► release / retry / split / dead-letter
                                                      └─► acks (indexer ack, bounded resends)

Delivery is at-least-once: an event leaves the spool only when HEC has taken it (HTTP 2xx, or
its ackId turned true with indexer acknowledgement on) or it went to the dead-letter file. What
each reply class does is in `replies.py`. One batch is in flight at a time (plus, with indexer
ack on, up to MAX_PENDING_ACK_BATCHES batches awaiting their ack): after a crash or a shutdown
the duplicates are at most those batches, and they carry the same `event_id`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from sidecar import config
from sidecar.errors import ConfigError
from sidecar.sinks.hec.acks import EXPIRED, AckTracker
from sidecar.sinks.hec.deadletter import DeadLetterFile
from sidecar.sinks.hec.encoder import USAGE_SOURCETYPE, Envelopes, compress, cut_items
from sidecar.sinks.hec.endpoints import Endpoint, EndpointPool
from sidecar.sinks.hec.faults import FaultBoard
from sidecar.sinks.hec.replies import (
    TOKEN_CODES,
    ConfigFault,
    Delivered,
    Rejected,
    Retryable,
    TooLarge,
    config_hint,
)
from sidecar.sinks.hec.service import HecService
from sidecar.spool.segment import split_payload

log = logging.getLogger("sidecar.sinks.hec")

MAX_PENDING_ACK_BATCHES = 100  # batches awaiting an ack; beyond it reading waits
UNREACHABLE_HEALTH_SECS = 10.0  # failing this long makes the sink unhealthy

Item = tuple[int, bytes]  # (spool sequence, envelope): see encoder.cut_items
Release = Callable[[list[int]], None]


class Reader(Protocol):
    """What the sink needs of a spool reader (sidecar.spool.SpoolReader)."""

    async def read(self, max_events: int, max_bytes: int, linger_secs: float = 0.0) -> Any: ...

    def release(self, seqs: Any) -> None: ...


class HecSink:
    """Deliver spooled events to Splunk HEC: `start()`, `run(reader)`, `close()`."""

    def __init__(
        self,
        cfg: config.HecSink,
        *,
        host: str,
        default_source: str | None,
        dead_letter_path: str,
        config_key: str = "sinks[hec]",
    ) -> None:
        if not cfg.endpoints:
            raise ConfigError(f"{config_key}.endpoints", "no HEC endpoint", "add https://host:8088")
        self.cfg = cfg
        self.dead_letter_path = dead_letter_path
        self._dead_letters = DeadLetterFile(dead_letter_path)
        self.stats: dict[str, int] = {
            "events_sent_total": 0,
            "events_failed_total": 0,
            "events_dead_lettered_total": 0,
            "events_retried_total": 0,
            "events_resent_unacked_total": 0,
            "batches_sent_total": 0,
            "bytes_sent_total": 0,
            "config_faults_total": 0,
        }
        self._key = config_key
        self._host = cfg.host or host
        self._default_source = default_source
        self._gzip = cfg.compression == "gzip"
        self._envelopes = Envelopes()
        self._service = HecService(
            token=cfg.token,
            timeout_secs=cfg.request_timeout_secs,
            tls=cfg.tls,
            https=any(e.lower().startswith("https:") for e in cfg.endpoints),
        )
        urls = [e for e in cfg.endpoints if config.plain_http_allowed(cfg, e)]
        self._refused = [e for e in cfg.endpoints if e not in urls]
        self._pool = EndpointPool(urls, self._service) if urls else None
        self._faults = FaultBoard()
        self._failing_since: float | None = None
        self._last_failure = ""
        ack = cfg.acknowledgements
        self._acks = (
            AckTracker(
                self._service,
                query_interval_secs=ack.query_interval_secs,
                retry_limit=ack.retry_limit,
                config_key=config_key,
            )
            if ack.enabled
            else None
        )
        self._ack_tasks: set[asyncio.Task[None]] = set()
        self._ack_slots = asyncio.Semaphore(MAX_PENDING_ACK_BATCHES)
        self._warned_no_ack_id = False
        self.observe_latency: Callable[[float], None] | None = None  # seconds per POST (metrics)

    # -- lifecycle and status -------------------------------------------------------------
    async def start(self) -> None:
        """Check each endpoint's health once; warn on problems, never fail."""
        for url in self._refused:
            log.error(
                "Refusing to send the HEC token in clear text to %s: use https://, or set "
                "%s.allow_insecure_http: true on a trusted network.",
                url,
                self._key,
            )
        if self._pool is not None:
            for ep in self._pool.endpoints:
                await self._pool.check(ep)

    def health(self) -> list[str]:
        """Reasons this sink is unhealthy (contract 2); empty when fine."""
        reasons = [
            f"HEC endpoint {u} not used: http:// without allow_insecure_http" for u in self._refused
        ]
        reasons += self._faults.reasons()
        if (
            self._failing_since is not None
            and time.monotonic() - self._failing_since >= UNREACHABLE_HEALTH_SECS
        ):
            secs = time.monotonic() - self._failing_since
            reasons.append(
                f"HEC unreachable: nothing delivered for {secs:.0f} s ({self._last_failure})"
            )
        return reasons

    async def close(self) -> None:
        """Release the ack waits, the ack poller and the HTTP session (unsent events stay in
        the spool)."""
        for task in list(self._ack_tasks):
            task.cancel()
        await asyncio.gather(*self._ack_tasks, return_exceptions=True)
        if self._acks is not None:
            await self._acks.close()
        await self._service.close()

    # -- reading the spool ----------------------------------------------------------------
    def _encode(self, payload: bytes) -> bytes:
        """The envelope of a spool record."""
        (t, source, sourcetype), labels, body = split_payload(payload)
        # The configured sourcetype replaces the usage default; other sourcetypes (the
        # sidecar's own `llm:sidecar` heartbeat) are kept.
        if sourcetype == USAGE_SOURCETYPE:
            sourcetype = self.cfg.sourcetype
        return self._envelopes.encode(
            t,
            labels,
            body,
            host=self._host,
            index=self.cfg.index,
            source=self.cfg.source or source or self._default_source,
            sourcetype=sourcetype,
        )

    async def run(self, reader: Reader) -> None:
        """Deliver what the reader yields until it returns nothing (the spool's input is
        finished and read), then wait for pending acks. Cancel it to stop: what is not
        released stays in the spool. The next batch is read and encoded while the current one
        is on the wire (at most one batch waits)."""
        ready: asyncio.Queue[list[Item] | None] = asyncio.Queue(1)
        producer = asyncio.create_task(self._prepare(reader, ready))
        try:
            while (batch := await ready.get()) is not None:
                await self.deliver(batch, reader.release)
            await producer
        finally:
            producer.cancel()
            await asyncio.gather(producer, return_exceptions=True)
        await self.drain_acks()

    async def _prepare(self, reader: Reader, ready: asyncio.Queue[list[Item] | None]) -> None:
        b = self.cfg.batch
        while entries := await reader.read(b.max_events, b.max_bytes, b.timeout_secs):
            items: list[Item] = []
            for e in entries:
                env = await self._encode_or_dead_letter(e.seq, e.payload, reader.release)
                if env is not None:
                    items.append((e.seq, env))
            del entries  # encoded: the records are not kept while the batches wait
            for batch in self.cut(items):
                await ready.put(batch)
        await ready.put(None)

    async def drain_acks(self) -> None:
        """Wait until no batch awaits its ack (each ends released, resent or dead-lettered)."""
        while self._ack_tasks:
            await asyncio.gather(*list(self._ack_tasks), return_exceptions=True)

    async def _encode_or_dead_letter(
        self, seq: int, payload: bytes, release: Release
    ) -> bytes | None:
        try:
            env = self._encode(payload)
        except (TypeError, ValueError) as exc:  # orjson.JSONEncodeError is a TypeError
            log.error("Cannot encode an event for HEC (%s); it goes to the dead-letter file.", exc)
            await self._dead_letter([(seq, b"")], f"cannot encode: {exc}", None, None, release)
            return None
        if len(env) > self.cfg.max_event_bytes:
            log.error(
                "An event of %d bytes is larger than %s.max_event_bytes (%d); it goes to the "
                "dead-letter file %s.",
                len(env),
                self._key,
                self.cfg.max_event_bytes,
                self.dead_letter_path,
            )
            await self._dead_letter([(seq, env)], "event too large", None, None, release)
            return None
        return env

    def cut(self, items: list[Item]) -> list[list[Item]]:
        """Batches of at most `batch.max_events` and `batch.max_bytes` (uncompressed)."""
        return cut_items(items, self.cfg.batch.max_events, self.cfg.batch.max_bytes)

    # -- one batch ------------------------------------------------------------------------
    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Capped exponential backoff with jitter (uniform in the upper half of the step, so
        retries never bunch near zero); Retry-After is a floor."""
        r = self.cfg.retry
        cap = min(r.max_backoff_secs, r.initial_backoff_secs * 2 ** min(attempt - 1, 62))
        delay = random.uniform(cap / 2, cap)
        return max(delay, retry_after) if retry_after is not None else delay

    async def deliver(self, batch: list[Item], release: Release, sends: int = 1) -> None:
        """Send until every item is released: delivered (or awaiting its ack) or dead-lettered.
        `sends` counts the sends of this batch after ack expiries."""
        work: deque[list[Item]] = deque([batch])
        attempt = 0
        tried: set[str] = set()  # endpoints that failed this round: back off once all have
        while work:
            items = work.popleft()
            if self._pool is None:  # every endpoint refused: a configuration fault for good
                self._faults.report(
                    ",".join(self._refused), "plain http:// refused", "use https://"
                )
                attempt += 1
                work.appendleft(items)
                await asyncio.sleep(self._backoff(attempt, None))
                continue
            ep = await self._pool.pick()
            body = b"".join(e for _, e in items)
            # zlib releases the GIL: compressing in a thread keeps the event loop (tailing,
            # enrichment) running meanwhile.
            wire = (
                await asyncio.to_thread(compress, body, self.cfg.compression_level)
                if self._gzip
                else body
            )
            del body  # not kept while the batch is on the wire
            started = time.monotonic()
            outcome = await self._service.send(
                ep.url + self.cfg.path, wire, compressed=self._gzip, channel=ep.channel
            )
            if self.observe_latency is not None:
                self.observe_latency(time.monotonic() - started)
            if isinstance(outcome, Delivered):
                attempt = 0
                tried.clear()
                self._delivered_ok(ep, len(wire))
                await self._taken(ep, outcome.ack_id, items, release, sends)
                continue
            # Whatever the class, HEC kept the events before `invalid-event-number`.
            n = outcome.invalid_event_number
            named = n is not None and 0 <= n < len(items)
            if named and n:
                self._released_sent(items[:n], release)
                items = items[n:]
            if isinstance(outcome, TooLarge | Rejected):
                if len(items) == 1 or (isinstance(outcome, Rejected) and named):
                    await self._dead_letter(
                        items[:1], outcome.reason, outcome.hec_code, outcome.http_status, release
                    )
                    if items[1:]:
                        work.appendleft(items[1:])
                else:  # split in halves until the offending events stand alone
                    half = len(items) // 2
                    work.appendleft(items[half:])
                    work.appendleft(items[:half])
                continue
            work.appendleft(items)
            self._pool.failed(ep)
            self.stats["events_failed_total"] += len(items)
            self.stats["events_retried_total"] += len(items)
            if self._failing_since is None:
                self._failing_since = time.monotonic()
            self._last_failure = f"{ep.url}: {outcome.reason}"
            if isinstance(outcome, ConfigFault):
                self.stats["config_faults_total"] += 1
                hint = config_hint(outcome, self._key, self.cfg.path)
                token = outcome.hec_code in TOKEN_CODES or outcome.http_status in (401, 403)
                self._faults.report(ep.url, outcome.reason, hint, token=token)
            tried.add(ep.url)
            if len(tried) < len(self._pool.endpoints):
                continue  # failover: another endpoint first, at once
            tried.clear()
            attempt += 1
            retry_after = None
            if isinstance(outcome, Retryable):
                max_attempts = self.cfg.retry.max_attempts
                if max_attempts and attempt >= max_attempts:
                    work.popleft()
                    log.error(
                        "Giving up on %d event(s) after %d attempts (last: %s); they go to the "
                        "dead-letter file %s. Raise %s.retry.max_attempts (0 = forever).",
                        len(items),
                        attempt,
                        outcome.reason,
                        self.dead_letter_path,
                        self._key,
                    )
                    await self._dead_letter(
                        items, outcome.reason, outcome.hec_code, outcome.http_status, release
                    )
                    attempt = 0
                    continue
                retry_after = outcome.retry_after_secs
            delay = self._backoff(attempt, retry_after)
            if isinstance(outcome, Retryable):
                log.warning(
                    "Sending %d event(s) to HEC at %s failed (%s); retry %d in %.2f s.",
                    len(items),
                    ep.url,
                    outcome.reason,
                    attempt,
                    delay,
                )
            await asyncio.sleep(delay)

    def _delivered_ok(self, ep: Endpoint, wire_bytes: int) -> None:
        self._faults.clear(ep.url)
        if self._failing_since is not None:
            self._failing_since = None
        self.stats["batches_sent_total"] += 1
        self.stats["bytes_sent_total"] += wire_bytes

    def _released_sent(self, items: Sequence[Item], release: Release) -> None:
        self.stats["events_sent_total"] += len(items)
        release([s for s, _ in items])

    async def _taken(
        self, ep: Endpoint, ack_id: int | None, items: list[Item], release: Release, sends: int
    ) -> None:
        if self._acks is None or ack_id is None:
            if self._acks is not None and not self._warned_no_ack_id:
                self._warned_no_ack_id = True
                log.warning(
                    "Indexer acknowledgement is on in %s.acknowledgements, but HEC at %s returned "
                    "no ackId (the token has it off): events count as delivered on HTTP 200. Turn "
                    "useACK on for the token, or set %s.acknowledgements.enabled to false.",
                    self._key,
                    ep.url,
                    self._key,
                )
            self._released_sent(items, release)
            return
        await self._ack_slots.acquire()
        task = asyncio.create_task(self._await_ack(ep, ack_id, items, release, sends))
        self._ack_tasks.add(task)
        task.add_done_callback(self._ack_tasks.discard)

    async def _await_ack(
        self, ep: Endpoint, ack_id: int, items: list[Item], release: Release, sends: int
    ) -> None:
        assert self._acks is not None
        try:
            result = await self._acks.wait(ep.url, ep.channel, ack_id)
        finally:
            self._ack_slots.release()
        if result != EXPIRED:
            self._released_sent(items, release)
            return
        ack = self.cfg.acknowledgements
        if sends > ack.max_resends:
            log.error(
                "HEC at %s never confirmed indexing of %d event(s) after %d send(s); they go "
                "to the dead-letter file %s (they may be indexed: dedup on event_id after a "
                "replay). Check the indexers, or raise %s.acknowledgements.max_resends.",
                ep.url,
                len(items),
                sends,
                self.dead_letter_path,
                self._key,
            )
            reason = f"indexer acknowledgement never confirmed after {sends} send(s)"
            await self._dead_letter(items, reason, None, 200, release)
            return
        log.warning(
            "HEC at %s did not confirm indexing of %d event(s) (ackId %d) after %d queries; "
            "sending them again (send %d of at most %d; a duplicate can result: dedup on "
            "event_id).",
            ep.url,
            len(items),
            ack_id,
            ack.retry_limit,
            sends + 1,
            1 + ack.max_resends,
        )
        self.stats["events_resent_unacked_total"] += len(items)
        await self.deliver(items, release, sends + 1)

    async def _dead_letter(
        self,
        items: list[Item],
        reason: str,
        hec_code: int | None,
        http_status: int | None,
        release: Release,
    ) -> None:
        envelopes = [e or None for _, e in items]
        try:
            await self._dead_letters.write(envelopes, reason, hec_code, http_status)
        except OSError as exc:
            log.error(
                "Writing the HEC dead-letter file %s failed (%s); the events stay in the spool. "
                "Check its folder and free space.",
                self.dead_letter_path,
                exc,
            )
            return
        self.stats["events_dead_lettered_total"] += len(items)
        release([s for s, _ in items])
