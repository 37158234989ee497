"""The health and metrics HTTP server (aiohttp server; the only importer of it besides the HEC test
server). Bound to 127.0.0.1 by default (`server.listen`).

    GET /health   200 {"health": "ok", ...}  or  503 {"health": "degraded",
                  "health_reasons": ["HEC token rejected (code 4) at https://...", ...], ...}
    GET /metrics  Prometheus text format (rendered by sidecar/metrics.py)

The server only calls the two functions it is given; it knows nothing of the pipeline.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

log = logging.getLogger("sidecar.server")


class HealthServer:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        status: Callable[[], dict[str, Any]],
        metrics: Callable[[], tuple[bytes, str]],
    ) -> None:
        self.host, self.port = host, port
        self._status = status
        self._metrics = metrics
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._render_metrics)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, self.host, self.port).start()
        except OSError:
            await self._runner.cleanup()
            self._runner = None
            raise
        self.port = int(self._runner.addresses[0][1])
        self.url = f"http://{self.host}:{self.port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _health(self, request: web.Request) -> web.Response:
        st = self._status()
        status = 200 if not st.get("health_reasons") else 503
        return web.Response(status=status, body=orjson.dumps(st), content_type="application/json")

    async def _render_metrics(self, request: web.Request) -> web.Response:
        body, content_type = self._metrics()
        # aiohttp wants the charset apart from the media type.
        media, _, params = content_type.partition(";")
        resp = web.Response(status=200, body=body)
        resp.headers["Content-Type"] = content_type if params else media
        return resp
