"""The endpoints of one HEC sink: round robin, a health check before first use and after a
failure, failover and recovery. Each endpoint has its own channel GUID (reference 1.5), so
indexer-ack channels stay sticky to the endpoint that issued the ackIds.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field

from sidecar.sinks.hec.service import HecService

log = logging.getLogger("sidecar.sinks.hec")

RECHECK_SECS = 2.0  # an unhealthy endpoint is asked again at most this often


@dataclass
class Endpoint:
    url: str
    channel: str = field(default_factory=lambda: str(uuid.uuid4()))
    checked: bool = False  # a health check since the last failure
    healthy: bool = True
    checked_at: float = float("-inf")


class EndpointPool:
    def __init__(self, urls: list[str], service: HecService) -> None:
        self.endpoints = [Endpoint(u.rstrip("/")) for u in urls]
        self._service = service
        self._next = 0

    async def check(self, ep: Endpoint) -> bool:
        h = await self._service.health(ep.url)
        ep.checked, ep.checked_at = True, time.monotonic()
        if h.healthy != ep.healthy:
            if h.healthy:
                log.warning("HEC at %s is healthy again (%s).", ep.url, h.detail)
            else:
                others = " the other endpoints are used meanwhile;" if self._many else ""
                log.warning("HEC at %s is not healthy (%s);%s retrying.", ep.url, h.detail, others)
        ep.healthy = h.healthy
        return h.healthy

    @property
    def _many(self) -> bool:
        return len(self.endpoints) > 1

    async def pick(self) -> Endpoint:
        """The next endpoint in turn that is healthy; if none is, the next one anyway (the send
        tells what is wrong, and the caller backs off)."""
        n = len(self.endpoints)
        start = self._next
        for i in range(n):
            ep = self.endpoints[(start + i) % n]
            due = time.monotonic() - ep.checked_at >= RECHECK_SECS
            if not ep.checked or (not ep.healthy and due):
                await self.check(ep)
            if ep.healthy:
                self._next = (start + i + 1) % n
                return ep
        self._next = (start + 1) % n
        return self.endpoints[start % n]

    def failed(self, ep: Endpoint) -> None:
        """A send failed: check its health before it is used again."""
        ep.checked = False

    def by_url(self, url: str) -> Endpoint | None:
        return next((e for e in self.endpoints if e.url == url), None)
