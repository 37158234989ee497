"""The HEC sink: batches OutEvents, sends them with retries, waits for acks, dead-letters rejects.

    write() -> encoder (envelopes, batches) -> service (POST, classify) -> acks (indexer ack)
                                                        |  Rejected
                                                        v
                                                 dead-letter file (NDJSON, fsync'd)

Delivery is at-least-once: a retryable failure is retried with full-jitter exponential backoff
(forever when `retry.max_attempts` is 0), moving to the next endpoint; a batch whose ackId never
turns true within `retry_limit` polls is sent again. A permanent rejection is never retried
forever: when HEC names the `invalid-event-number` i, events before i were kept by Splunk
(moby/moby#35862), event i is dead-lettered, and the rest is sent again; otherwise the whole
batch is dead-lettered.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Callable, Sequence

from sidecar import config
from sidecar.errors import ConfigError
from sidecar.sinks.hec.acks import EXPIRED, AckTracker
from sidecar.sinks.hec.deadletter import DeadLetterFile
from sidecar.sinks.hec.encoder import (
    USAGE_SOURCETYPE,
    Batcher,
    compress,
    encode_event,
)
from sidecar.sinks.hec.hints import DEFAULT_HINT, HINTS, TOKEN_CODES
from sidecar.sinks.hec.service import Delivered, HecService, Rejected, Retryable
from sidecar.types import OutEvent

log = logging.getLogger("sidecar.sinks.hec")

MAX_PENDING_ACK_BATCHES = 1000  # batches waiting for an ack; beyond it write() waits


class HecSink:
    """Deliver OutEvents to Splunk HEC. Use `start()`, then `write()`/`flush()`, then `close()`."""

    def __init__(
        self,
        cfg: config.HecSink,
        *,
        host: str,
        default_source: str | None,
        dead_letter_path: str,
        config_key: str = "sinks[hec]",
        on_durable: Callable[[list[OutEvent]], None] | None = None,
    ) -> None:
        if not cfg.endpoints:
            raise ConfigError(f"{config_key}.endpoints", "no HEC endpoint", "add https://host:8088")
        self.cfg = cfg
        # issue 8: events handed back once delivered (or dead-lettered), by envelope identity
        self._on_durable = on_durable
        self._origin: dict[int, OutEvent] = {}
        self.dead_letter_path = dead_letter_path
        self._dead_letters = DeadLetterFile(dead_letter_path)
        self.stats: dict[str, int] = {
            "events_sent": 0,
            "batches_sent": 0,
            "retries": 0,
            "events_dead_lettered": 0,
            "bytes_sent": 0,
        }
        self._key = config_key
        self._host = cfg.host or host
        self._default_source = default_source
        self._endpoints = [e.rstrip("/") for e in cfg.endpoints]
        self._next_endpoint = 0
        self._gzip = cfg.compression == "gzip"
        self._service = HecService(
            token=cfg.token,
            channel=str(uuid.uuid4()),  # one channel per sink, as Vector does (reference 1.5)
            timeout_secs=cfg.request_timeout_secs,
            tls=cfg.tls,
        )
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
        self._batcher = Batcher(cfg.batch.max_events, cfg.batch.max_bytes)
        self._batch_started: float | None = None  # monotonic time of the partial batch's 1st event
        self._send_lock = asyncio.Lock()
        self._timer_wake = asyncio.Event()
        self._timer: asyncio.Task[None] | None = None
        self._ack_tasks: set[asyncio.Task[None]] = set()
        self._ack_slots = asyncio.Semaphore(MAX_PENDING_ACK_BATCHES)
        self._warned_no_ack_id = False

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Check each endpoint's health and the token once; warn on problems, never fail."""
        for endpoint in self._endpoints:
            status, code, text = await self._service.health(endpoint)
            if status is None:
                log.warning(
                    "Cannot reach HEC at %s (%s); events will be retried until it answers. "
                    "Check %s.endpoints and the network.",
                    endpoint,
                    text,
                    self._key,
                )
                continue
            if status != 200 or code != 17:
                log.warning(
                    "HEC at %s reports it is unhealthy (HTTP %d, code %s, %s); sending anyway, "
                    "busy replies will be retried.",
                    endpoint,
                    status,
                    code,
                    text or "no text",
                )
            status, code, text = await self._service.probe_token(endpoint + self.cfg.path)
            if code in TOKEN_CODES:
                log.warning(
                    "HEC at %s rejected the token (code %d, %s): %s.",
                    endpoint,
                    code,
                    text,
                    HINTS[code].format(key=self._key),
                )
            elif status == 404:
                log.warning(
                    "HEC at %s has no %s (HTTP 404): check %s.path and %s.endpoints.",
                    endpoint,
                    self.cfg.path,
                    self._key,
                    self._key,
                )
        if self._timer is None:
            self._timer = asyncio.create_task(self._timer_loop(), name="hec-batch-timer")

    async def close(self) -> None:
        """Flush, then release the timer, the ack poller and the HTTP session."""
        try:
            await self.flush()
        finally:
            if self._timer is not None:
                self._timer.cancel()
                await asyncio.gather(self._timer, return_exceptions=True)
                self._timer = None
            for task in list(self._ack_tasks):
                task.cancel()
            await asyncio.gather(*self._ack_tasks, return_exceptions=True)
            if self._acks is not None:
                await self._acks.close()
            await self._service.close()

    # -- data path ------------------------------------------------------------------------
    def _encode(self, ev: OutEvent) -> bytes:
        source = self.cfg.source or ev.source or self._default_source
        # The configured sourcetype replaces the usage default; other sourcetypes (the
        # sidecar's own `llm:sidecar` heartbeat) are kept.
        sourcetype = self.cfg.sourcetype if ev.sourcetype == USAGE_SOURCETYPE else None
        return encode_event(
            ev, host=self._host, index=self.cfg.index, source=source, sourcetype=sourcetype
        )

    async def write(self, events: Sequence[OutEvent]) -> None:
        """Add events to the current batch; full batches are sent before this returns."""
        for ev in events:
            try:
                data = self._encode(ev)
            except (TypeError, ValueError) as exc:  # orjson.JSONEncodeError is a TypeError
                log.error(
                    "Cannot encode an event for HEC (%s); it goes to the dead-letter file %s.",
                    exc,
                    self.dead_letter_path,
                )
                await self._dead_letters.write([None], f"cannot encode: {exc}", None, None)
                self.stats["events_dead_lettered"] += 1
                if self._on_durable is not None:
                    self._on_durable([ev])
                continue
            if self._on_durable is not None:
                self._origin[id(data)] = ev
            full = self._batcher.add(data)
            if full:
                self._batch_started = time.monotonic() if self._batcher.pending else None
            elif self._batch_started is None:
                self._batch_started = time.monotonic()
                self._timer_wake.set()
            for batch in full:
                async with self._send_lock:
                    await self._deliver(batch.events)

    async def flush(self) -> None:
        """Send the partial batch and wait until everything is delivered (acked) or
        dead-lettered."""
        async with self._send_lock:
            batch = self._batcher.take()
            self._batch_started = None
            if batch is not None:
                await self._deliver(batch.events)
        while self._ack_tasks:
            results = await asyncio.gather(*list(self._ack_tasks), return_exceptions=True)
            for r in results:
                if isinstance(r, Exception):
                    log.error("Waiting for a HEC ack failed: %s: %s.", type(r).__name__, r)

    async def _timer_loop(self) -> None:
        timeout = self.cfg.batch.timeout_secs
        while True:
            started = self._batch_started
            if started is None:
                self._timer_wake.clear()
                await self._timer_wake.wait()
                continue
            delay = started + timeout - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            async with self._send_lock:
                if self._batch_started != started:
                    continue  # the batch was sent meanwhile; a new one has its own clock
                batch = self._batcher.take()
                self._batch_started = None
                if batch is not None:
                    try:
                        await self._deliver(batch.events)
                    except OSError as exc:
                        log.error(
                            "Writing the HEC dead-letter file %s failed: %s; check its folder "
                            "and free space.",
                            self.dead_letter_path,
                            exc,
                        )
                    except Exception:
                        log.exception("Sending a timed-out HEC batch failed unexpectedly (a bug).")

    # -- one batch ------------------------------------------------------------------------
    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Full jitter: uniform(0, min(max, initial * 2^(attempt-1))); Retry-After is a floor."""
        r = self.cfg.retry
        cap = min(r.max_backoff_secs, r.initial_backoff_secs * 2 ** min(attempt - 1, 62))
        delay = random.uniform(0, cap)
        return max(delay, retry_after) if retry_after is not None else delay

    async def _deliver(self, events: list[bytes]) -> None:
        """Send until Delivered (or handed to the ack poller) or dead-lettered. Holds the lock."""
        attempt = 0
        while events:
            endpoint = self._endpoints[self._next_endpoint]
            body = b"".join(events)
            wire = compress(body) if self._gzip else body
            outcome = await self._service.send(
                endpoint + self.cfg.path, wire, compressed=self._gzip
            )
            if isinstance(outcome, Delivered):
                self._next_endpoint = (self._next_endpoint + 1) % len(self._endpoints)
                self.stats["batches_sent"] += 1
                self.stats["bytes_sent"] += len(wire)
                await self._delivered(endpoint, outcome.ack_id, events)
                return
            if isinstance(outcome, Retryable):
                attempt += 1
                max_attempts = self.cfg.retry.max_attempts
                if max_attempts and attempt >= max_attempts:
                    log.error(
                        "Giving up on a batch of %d event(s) after %d attempts (last: %s); it "
                        "goes to the dead-letter file %s. Raise %s.retry.max_attempts (0 = "
                        "forever) to keep trying.",
                        len(events),
                        attempt,
                        outcome.reason,
                        self.dead_letter_path,
                        self._key,
                    )
                    await self._dead_letter(
                        events, outcome.reason, outcome.hec_code, outcome.http_status
                    )
                    return
                self.stats["retries"] += 1
                self._next_endpoint = (self._next_endpoint + 1) % len(self._endpoints)
                delay = self._backoff(attempt, outcome.retry_after_secs)
                log.warning(
                    "Sending %d event(s) to HEC at %s failed (%s); retry %d in %.2f s.",
                    len(events),
                    endpoint,
                    outcome.reason,
                    attempt,
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            events = await self._rejected(endpoint, events, outcome)
            if events:
                self.stats["retries"] += 1
                attempt = 0

    async def _rejected(self, endpoint: str, events: list[bytes], rej: Rejected) -> list[bytes]:
        """Dead-letter what HEC refused; return the events still to send."""
        i = rej.invalid_event_number
        partial = i is not None and 0 <= i < len(events)
        hint = HINTS.get(rej.hec_code or -1, DEFAULT_HINT)
        if rej.hec_code in TOKEN_CODES:
            what = "the token"
        elif partial:
            what = f"event {i} of a batch of {len(events)}"
        else:
            what = f"a batch of {len(events)} event(s)"
        log.error(
            "HEC at %s rejected %s (%s): %s. Rejected events are in the dead-letter file %s.",
            endpoint,
            what,
            rej.reason,
            hint.format(key=self._key),
            self.dead_letter_path,
        )
        if not partial:
            await self._dead_letter(events, rej.reason, rej.hec_code, rej.http_status)
            return []
        assert i is not None
        # Splunk kept the events before i (moby/moby#35862): count them, never resend them.
        # With indexer ack on, they come with no ackId, so they count on the reply alone.
        self.stats["events_sent"] += i
        self._durable(events[:i])
        await self._dead_letter([events[i]], rej.reason, rej.hec_code, rej.http_status)
        return events[i + 1 :]

    async def _delivered(self, endpoint: str, ack_id: int | None, events: list[bytes]) -> None:
        if self._acks is None or ack_id is None:
            if self._acks is not None and not self._warned_no_ack_id:
                self._warned_no_ack_id = True
                log.warning(
                    "Indexer acknowledgement is on in %s.acknowledgements, but HEC at %s "
                    "returned no ackId: the token has indexer acknowledgement off. Events count "
                    "as delivered on HTTP 200. Turn useACK on for the token or set "
                    "%s.acknowledgements.enabled to false.",
                    self._key,
                    endpoint,
                    self._key,
                )
            self.stats["events_sent"] += len(events)
            self._durable(events)
            return
        await self._ack_slots.acquire()
        task = asyncio.create_task(self._await_ack(endpoint, ack_id, events))
        self._ack_tasks.add(task)
        task.add_done_callback(self._ack_tasks.discard)

    async def _await_ack(self, endpoint: str, ack_id: int, events: list[bytes]) -> None:
        assert self._acks is not None
        try:
            result = await self._acks.wait(endpoint, ack_id)
        finally:
            self._ack_slots.release()
        if result != EXPIRED:
            self.stats["events_sent"] += len(events)
            self._durable(events)
            return
        ack = self.cfg.acknowledgements
        log.warning(
            "HEC at %s did not confirm indexing of a batch of %d event(s) (ackId %d) after %d "
            "queries %g s apart; sending it again (a duplicate can result: dedup on event_id).",
            endpoint,
            len(events),
            ack_id,
            ack.retry_limit,
            ack.query_interval_secs,
        )
        self.stats["retries"] += 1
        async with self._send_lock:
            await self._deliver(events)

    async def _dead_letter(
        self, events: list[bytes], reason: str, hec_code: int | None, http_status: int | None
    ) -> None:
        await self._dead_letters.write(events, reason, hec_code, http_status)
        self.stats["events_dead_lettered"] += len(events)
        self._durable(events)

    def _durable(self, events: list[bytes]) -> None:
        """Issue 8: these envelopes are accepted (or dead-lettered): hand their events back."""
        if self._on_durable is not None:
            done = [ev for b in events if (ev := self._origin.pop(id(b), None)) is not None]
            if done:
                self._on_durable(done)
