"""The Python proxy of docs/proxies.md (`examples/python_proxy/gateway.py`), run for real.

The example gateway is imported from its file and served on 127.0.0.1 in front of the fake
OpenAI / Anthropic API (`fake_upstream.py`, verified TLS: the gateway's client session resolves
the provider host names to the fake upstream, nothing else differs). The same eight concurrent
requests as the nginx test go through it (streams, JSON with gzip asked for, 429, a client
cancel, an SDK-style close after `[DONE]`, Anthropic), then `llm-hec-sidecar run --once` reads
the two logs it wrote, and every event must match what the upstream really sent, exactly as for
nginx (`test_nginx_proxy.check_events`).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import shutil
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver
from fake_upstream import FakeUpstream
from nginx_harness import make_cert
from test_nginx_proxy import check_events, check_upstream_saw, run_requests, run_sidecar_once

REPO = Path(__file__).resolve().parents[2]
GATEWAY = REPO / "examples" / "python_proxy" / "gateway.py"
DOC = REPO / "docs" / "proxies.md"
HOSTS = ("api.openai.com", "api.anthropic.com", "generativelanguage.googleapis.com")


def load_gateway() -> Any:
    spec = importlib.util.spec_from_file_location("llm_gateway_example", GATEWAY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _ToFakeUpstream(AbstractResolver):
    """Resolves the provider host names to the fake upstream (like an /etc/hosts entry)."""

    def __init__(self, port: int) -> None:
        self.port = port

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list:
        assert host in HOSTS, host
        return [
            {
                "hostname": host,
                "host": "127.0.0.1",
                "port": self.port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        pass


def serve_gateway(logs: Path, upstream_port: int, ca: Path) -> tuple[int, Callable[[], None]]:
    """The example app on its own event loop in a thread: (port, stop)."""
    gateway = load_gateway()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        connector = aiohttp.TCPConnector(
            resolver=_ToFakeUpstream(upstream_port),
            ssl=ssl.create_default_context(cafile=str(ca)),
        )
        session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        runner = web.AppRunner(gateway.make_app(logs, session))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        box["port"] = runner.addresses[0][1]
        box["done"] = loop.create_future()
        ready.set()
        try:
            await box["done"]
        finally:
            await runner.cleanup()
            await session.close()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(10), "the gateway did not start"

    def stop() -> None:
        loop.call_soon_threadsafe(box["done"].set_result, None)
        thread.join(10)
        loop.close()

    return box["port"], stop


@pytest.fixture
def logs(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "gateway-logs"
    path.mkdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.slow
def test_python_proxy_logs_give_exact_events(tmp_path: Path, logs: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl for the test certificate")
    cert, key = make_cert(tmp_path)
    with FakeUpstream(cert, key) as upstream:
        port, stop = serve_gateway(logs, upstream.port, cert)
        try:
            client = run_requests(port)
        finally:
            stop()
        records = upstream.records
    check_upstream_saw(client, records)

    # the two logs: valid JSON lines, mode 0640, one end record per access line
    access = [json.loads(x) for x in (logs / "access.log").read_bytes().splitlines()]
    body = [json.loads(x) for x in (logs / "body.log").read_bytes().splitlines()]
    for name in ("access.log", "body.log"):
        assert (logs / name).stat().st_mode & 0o777 == 0o640, name
    assert len(access) == len(client)
    ends = {r["request_id"]: r["end"] for r in body if "end" in r}
    assert sorted(ends) == sorted(a["request_id"] for a in access)
    assert ends[client["cancelled"]["proxy_request_id"]] == "client_closed"
    assert ends[client["stream1"]["proxy_request_id"]] == "complete"

    events, texts = run_sidecar_once(tmp_path, logs / "access.log", logs / "body.log")
    check_events(client, records, events, texts)


def test_doc_snippet_is_the_tested_code() -> None:
    """The logging snippet in docs/proxies.md is, verbatim, the code of the gateway tested above."""
    section = DOC.read_text().split("## A Python proxy", 1)[1].split("\n## ", 1)[0]
    snippets = [b.split("```", 1)[0] for b in section.split("```python\n")[1:]]
    assert snippets and "class BodyLog" in snippets[0] and "def append_line" in snippets[0]
    assert snippets[0].strip() in GATEWAY.read_text()
