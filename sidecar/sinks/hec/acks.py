"""Indexer-acknowledgement polling, kept out of the HTTP send path (reference section 1.6).

A batch whose reply carried an `ackId` waits here. One background task polls
`/services/collector/ack` every `query_interval_secs` for all pending ackIds of each endpoint, on
that endpoint's own channel (ack channels are sticky), and resolves each wait with

    ACKED        HEC says the batch is indexed (true is read once: Splunk forgets it after that)
    EXPIRED      still false after `retry_limit` polls: the caller sends the batch again, at
                 most `acknowledgements.max_resends` times
    UNVERIFIED   the ack endpoint answered 4xx (e.g. code 14 "ACK is disabled") or nonsense: the
                 batch counts as delivered on its first 200, with a warning (Vector's behaviour)

A failed poll (5xx, network error) counts as a poll, so an ack endpoint that stays down ends in
EXPIRED and a resend rather than a wait without end.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from sidecar.sinks.hec.service import HecService, Rejected

ACKED = "acked"
EXPIRED = "expired"
UNVERIFIED = "unverified"

log = logging.getLogger("sidecar.sinks.hec")


@dataclass
class _Pending:
    future: asyncio.Future[str]
    channel: str
    polls: int = 0


class AckTracker:
    """Pending ackIds of one sink (one channel), keyed by (endpoint, ackId)."""

    def __init__(
        self,
        service: HecService,
        *,
        query_interval_secs: float,
        retry_limit: int,
        config_key: str = "sinks[hec]",
    ) -> None:
        self.service = service
        self.query_interval_secs = query_interval_secs
        self.retry_limit = max(1, retry_limit)
        self.config_key = config_key
        self._pending: dict[tuple[str, int], _Pending] = {}
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="hec-ack-poller")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for p in self._pending.values():
            p.future.cancel()
        self._pending.clear()

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def wait(self, endpoint: str, channel: str, ack_id: int) -> str:
        """Wait until `ack_id` (issued by `endpoint` on `channel`) is ACKED, EXPIRED or
        UNVERIFIED."""
        self.start()
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        key = (endpoint, ack_id)
        old = self._pending.get(key)
        if old is not None:  # an ackId can only be reused after a server restart
            old.future.set_result(UNVERIFIED)
        entry = _Pending(fut, channel)
        self._pending[key] = entry
        self._wakeup.set()
        try:
            return await fut
        finally:
            if self._pending.get(key) is entry:  # the waiter was cancelled: stop polling for it
                del self._pending[key]

    async def _run(self) -> None:
        while True:
            if not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
            await asyncio.sleep(self.query_interval_secs)
            endpoints = sorted({ep for ep, _ in self._pending})
            for endpoint in endpoints:
                await self._poll(endpoint)

    def _resolve(self, key: tuple[str, int], result: str) -> None:
        p = self._pending.pop(key, None)
        if p is not None and not p.future.done():
            p.future.set_result(result)

    async def _poll(self, endpoint: str) -> None:
        keys = [k for k in self._pending if k[0] == endpoint]
        if not keys:
            return
        channel = self._pending[keys[0]].channel
        reply = await self.service.query_acks(endpoint, channel, [k[1] for k in keys])
        if isinstance(reply.failure, Rejected):
            log.warning(
                "The HEC ack endpoint %s refused the ack query (%s); counting %d batch(es) as "
                "delivered on their HTTP 200 without indexer confirmation. Turn on indexer "
                "acknowledgement for the token in Splunk, or set %s.acknowledgements.enabled to "
                "false.",
                endpoint,
                reply.failure.reason,
                len(keys),
                self.config_key,
            )
            for k in keys:
                self._resolve(k, UNVERIFIED)
            return
        if reply.failure is not None:
            log.warning(
                "Querying HEC acks at %s failed (%s); will ask again in %g s.",
                endpoint,
                reply.failure.reason,
                self.query_interval_secs,
            )
        statuses = reply.statuses or {}
        for k in keys:
            p = self._pending.get(k)
            if p is None:
                continue
            if statuses.get(k[1]) is True:
                self._resolve(k, ACKED)
                continue
            p.polls += 1
            if p.polls >= self.retry_limit:
                self._resolve(k, EXPIRED)
