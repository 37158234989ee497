"""The service side of `run` (follow mode): systemd notification and watchdog, the health and
metrics server, and the heartbeat. `Pipeline.run` starts it once the stages run and stops it
before draining.

    start: server (if enabled) -> READY=1 + STATUS= -> tasks: watchdog/status loop, heartbeat
    stop:  STOPPING=1 -> tasks cancelled -> server closed

It is given plain functions (the status dict, the metrics renderer, a way to hand events to the
sinks), never the pipeline itself.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from sidecar import __version__
from sidecar import config as C
from sidecar.notify import Notifier
from sidecar.status import heartbeat_event, status_line
from sidecar.types import OutEvent
from sidecar.waits import wait_set

log = logging.getLogger("sidecar.service")


class ServiceRuntime:
    def __init__(
        self,
        cfg: C.Config,
        *,
        status: Callable[[], dict[str, Any]],
        metrics: Callable[[], tuple[bytes, str]],
        emit: Callable[[list[OutEvent]], Awaitable[None]],
        notifier: Notifier | None = None,
    ) -> None:
        self.cfg = cfg
        self._status = status
        self._metrics = metrics
        self._emit = emit
        self.notifier = notifier or Notifier()
        self.server: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()

    async def start(self, stop: asyncio.Event) -> None:
        srv = self.cfg.server
        if srv.enabled:
            from sidecar.server import HealthServer

            host, port = C.listen_address(srv.listen)
            server = HealthServer(host, port, status=self._status, metrics=self._metrics)
            try:
                url = await server.start()
            except OSError as exc:  # the data matters more than the endpoint: go on without it
                log.error(
                    "Cannot listen on %s for /health and /metrics (%s); running without them. "
                    "Free the port or change server.listen.",
                    srv.listen,
                    exc.strerror or exc,
                )
            else:
                self.server = server
                log.info("Serving /health and /metrics on %s.", url)
        self.notifier.ready(status_line(self._status()))
        self._tasks.append(asyncio.create_task(self._watch(stop), name="service-stop"))
        self._tasks.append(
            asyncio.create_task(
                self.notifier.watchdog_loop(self._stop, self._tick), name="watchdog"
            )
        )
        if self.cfg.heartbeat.enabled:
            self._tasks.append(asyncio.create_task(self._heartbeats(), name="heartbeat"))

    def _tick(self) -> None:
        if self.notifier.enabled:
            self.notifier.status(status_line(self._status()))

    async def _watch(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self.notifier.stopping()

    async def _heartbeats(self) -> None:
        host = socket.gethostname()
        every = self.cfg.heartbeat.interval_secs
        while not self._stop.is_set():
            if await wait_set(self._stop, every):
                return
            try:
                await self._emit([heartbeat_event(self._status(), host=host, version=__version__)])
            except Exception:  # a heartbeat must never stop the pipeline
                log.exception("Building the heartbeat failed (a bug); the next one will retry.")

    async def stop(self) -> None:
        """Stop the loops and the server; STOPPING=1 has been sent when `stop` was set."""
        self._stop.set()
        for task in self._tasks:  # a heartbeat blocked on a full queue must not hold the stop
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.server is not None:
            await self.server.stop()
            self.server = None
        self.notifier.close()
