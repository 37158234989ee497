"""End to end: the shipped examples/nginx proxy config, run for real, read by the sidecar.

A fake OpenAI / Anthropic API (tests/e2e/fake_upstream.py, TLS on 127.0.0.1) stands in for the
providers. The shipped `examples/nginx/nginx.conf` is copied into a temporary prefix with only the
addresses changed (see `render_config`), nginx is started from it as a child process, real
requests go through it, then `llm-hec-sidecar run --once` reads the two logs nginx wrote and every
event is checked against what the fake upstream really sent.

Needs Debian's `nginx libnginx-mod-http-lua lua-cjson` (and `openssl` for the test certificate).
Without them the test is skipped, except under CI (`CI` set), where it fails.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from fake_upstream import ANTHROPIC_MODEL, OPENAI_MODEL, STREAM_EVENTS, FakeUpstream
from nginx_harness import (
    LEVELS,
    free_port,
    make_cert,
    nginx_output,
    render_config,
    require_nginx,
    wait_listening,
)

REPO = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------ the client side
def post(
    port: int,
    path: str,
    body: dict,
    headers: dict[str, str],
    *,
    stop_after_events: int | None = None,
    stop_at_done: bool = False,
) -> dict:
    """One request through the proxy. `stop_after_events`: read that many SSE data lines, then
    close the socket (a cancelled stream). `stop_at_done`: close right after `data: [DONE]`,
    without reading the end of the chunked body (what the OpenAI SDK does)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    conn.request("POST", path, body=json.dumps(body), headers=headers)
    sock = conn.sock  # getresponse() may hand the socket over to the response
    resp = conn.getresponse()
    got = {
        "status": resp.status,
        "proxy_request_id": resp.getheader("x-proxy-request-id"),
        "upstream_request_id": resp.getheader("x-request-id") or resp.getheader("request-id"),
        "content_encoding": resp.getheader("content-encoding"),
    }
    if stop_after_events is not None or stop_at_done:
        events = 0
        while True:
            line = resp.readline()
            assert line, "stream ended early"
            if line.startswith(b"data: "):
                events += 1
                if stop_after_events is not None and events >= stop_after_events:
                    break
                if line.startswith(b"data: [DONE]"):
                    break
        got["events_read"] = events
        sock.shutdown(socket.SHUT_RDWR)  # hang up now, mid-body
    else:
        got["body"] = resp.read()
    resp.close()
    conn.close()
    return got


def run_requests(port: int) -> dict[str, dict]:
    chat = "/v1/chat/completions"
    stream = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Say twenty words."}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }

    def who(n: int, user: str, tenant: str) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "Authorization": f"Bearer sk-test-{n}",
            "X-LLM-User": user,
            "X-LLM-Tenant": tenant,
            "User-Agent": "OpenAI/Python 1.109.1",
        }

    cases = {
        "stream1": lambda: post(port, chat, stream, who(1, "alice", "acme")),
        "stream2": lambda: post(port, chat, stream, who(2, "bob", "acme")),
        "stream3": lambda: post(port, chat, stream, who(3, "carol", "globex")),
        # the SDK stops reading at [DONE] and closes: still a complete request
        "stream_sdk_close": lambda: post(
            port, chat, stream, who(1, "alice", "acme"), stop_at_done=True
        ),
        # sent with Accept-Encoding: gzip: the proxy must clear it towards the upstream
        "json": lambda: post(
            port,
            chat,
            {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]},
            {**who(4, "dave", "globex"), "Accept-Encoding": "gzip, deflate"},
        ),
        "rate_limited": lambda: post(
            port, chat, {**stream, "model": "force-429"}, who(5, "erin", "initech")
        ),
        "cancelled": lambda: post(port, chat, stream, who(6, "alice", "acme"), stop_after_events=3),
        # Anthropic SDK style: x-api-key, not Authorization
        "anthropic": lambda: post(
            port,
            "/v1/messages",
            {
                "model": "claude-sonnet-4-5",
                "max_tokens": 100,
                "stream": True,
                "messages": [{"role": "user", "content": "Hi"}],
            },
            {
                "Content-Type": "application/json",
                "x-api-key": "sk-test-7",
                "anthropic-version": "2023-06-01",
                "X-LLM-User": "bob",
                "X-LLM-Tenant": "acme",
            },
        ),
    }
    with ThreadPoolExecutor(len(cases)) as pool:  # concurrent: records interleave in the logs
        futures = {name: pool.submit(fn) for name, fn in cases.items()}
        return {name: f.result() for name, f in futures.items()}


# ------------------------------------------------------------------ the checks
def check_upstream_saw(client: dict[str, dict], records: dict[str, dict]) -> None:
    """What the clients got and what the upstream saw of `run_requests` through a proxy."""
    for name, got in client.items():
        assert got["proxy_request_id"], name
        assert got["upstream_request_id"] in records, name
        seen = records[got["upstream_request_id"]]["request_headers"]
        assert not seen.get("accept-encoding"), (name, seen)  # cleared by the proxy
        assert "x-llm-user" not in seen and "x-llm-tenant" not in seen, (name, seen)
    for name in ("stream1", "json", "anthropic"):
        rec = records[client[name]["upstream_request_id"]]
        host = "api.anthropic.com" if name == "anthropic" else "api.openai.com"
        assert rec["request_headers"]["host"] == host
        assert rec["sni"] == host
    assert client["json"]["content_encoding"] is None
    assert (
        json.loads(client["json"]["body"])["usage"]
        == records[client["json"]["upstream_request_id"]]["usage"]
    )
    assert client["rate_limited"]["status"] == 429
    assert client["cancelled"]["events_read"] == 3
    assert not records[client["cancelled"]["upstream_request_id"]]["completed"]


def run_sidecar_once(tmp_path: Path, access: Path, body: Path) -> tuple[list[dict], list[str]]:
    """`llm-hec-sidecar run --once` over the two logs: (events, [events file, stdout, stderr])."""
    out = tmp_path / "events.ndjson"
    cfg = {
        "sources": [
            {
                "name": "nginx-e2e",
                "access_log": {
                    "paths": [str(access)],
                    "format": {"type": "nginx_json"},
                },
                "body_log": {
                    "paths": [str(body)],
                    "format": {"type": "chunks"},
                },
            }
        ],
        "identity": {"hash_key": "x"},
        "state_dir": str(tmp_path / "state"),
        "sinks": [{"type": "file", "path": str(out)}],
    }
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.run(
        [sys.executable, "-m", "sidecar.cli", "run", "--once", "-c", str(cfg_path)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    raw = out.read_text()
    events = [json.loads(line) for line in raw.splitlines()]

    return events, [raw, proc.stdout, proc.stderr]


def check_events(
    client: dict[str, dict], records: dict[str, dict], events: list[dict], texts: list[str]
) -> None:
    """Every event of `run_requests` against what the fake upstream really sent."""
    by_id = {e["request_id"]: e for e in events}
    assert len(by_id) == len(events), "a request was emitted twice"
    assert set(by_id) == {got["proxy_request_id"] for got in client.values()}

    # no raw key anywhere; identities hashed
    for text in texts:
        assert "sk-test-" not in text
    key_ids = {}
    for name, got in client.items():
        ev = by_id[got["proxy_request_id"]]
        assert ev["api_key_id"], name
        assert "compressed_body" not in ev["flags"], (name, ev["flags"])
        assert ev["user"] and ev["user"] not in ("alice", "bob", "carol", "dave", "erin"), ev
        # the sidecar prefers the id in the body (chatcmpl-..., msg_...) over the header's
        rec = records[got["upstream_request_id"]]
        assert ev["provider_request_id"] == rec.get("response_id", got["upstream_request_id"])
        key_ids.setdefault(ev["api_key_id"], set()).add(name)
    # sk-test-1 was used by stream1 and stream_sdk_close, every other key once
    assert sorted(map(sorted, key_ids.values())) == sorted(
        [["stream1", "stream_sdk_close"]]
        + [[n] for n in client if n not in ("stream1", "stream_sdk_close")]
    )
    assert by_id[client["stream1"]["proxy_request_id"]]["tenant"] == "acme"

    # streams and the JSON call: the upstream's exact usage
    for name in ("stream1", "stream2", "stream3", "stream_sdk_close", "json"):
        ev = by_id[client[name]["proxy_request_id"]]
        usage = records[client[name]["upstream_request_id"]]["usage"]
        assert ev["status"] == "ok", (name, ev)
        assert ev["http_status"] == 200
        assert (ev["provider"], ev["api"], ev["model"]) == (
            "openai",
            "chat.completions",
            OPENAI_MODEL,
        )
        assert ev["is_streaming"] is (name != "json")
        assert ev["tokens_estimated"] is False
        assert ev["input_tokens"] == usage["prompt_tokens"], name
        assert ev["cached_input_tokens"] == usage["prompt_tokens_details"]["cached_tokens"]
        assert ev["output_tokens"] == usage["completion_tokens"] == STREAM_EVENTS
        assert ev["total_tokens"] == usage["total_tokens"]
        assert ev["ratelimit_remaining_requests"] == 4987

    ev = by_id[client["anthropic"]["proxy_request_id"]]
    usage = records[client["anthropic"]["upstream_request_id"]]["usage"]
    assert ev["status"] == "ok", ev
    assert (ev["provider"], ev["api"], ev["model"]) == ("anthropic", "messages", ANTHROPIC_MODEL)
    assert ev["input_tokens"] == (
        usage["input_tokens"]
        + usage["cache_read_input_tokens"]
        + usage["cache_creation_input_tokens"]
    )
    assert ev["cached_input_tokens"] == usage["cache_read_input_tokens"]
    assert ev["output_tokens"] == usage["output_tokens"] == STREAM_EVENTS
    assert ev["ratelimit_remaining_requests"] == 3999

    ev = by_id[client["rate_limited"]["proxy_request_id"]]
    assert ev["status"] == "rate_limited", ev
    assert ev["http_status"] == 429
    assert ev["ratelimit_limit_requests"] == 500
    assert ev["ratelimit_remaining_requests"] == 0
    assert ev["ratelimit_reset_requests_secs"] == pytest.approx(8.679)
    assert ev["ratelimit_limit_tokens"] == 150000
    assert ev["ratelimit_remaining_tokens"] == 0
    assert ev["ratelimit_reset_tokens_secs"] == pytest.approx(360)
    assert ev["retry_after_secs"] == pytest.approx(8.679)

    ev = by_id[client["cancelled"]["proxy_request_id"]]
    assert ev["status"] == "cancelled", ev
    assert ev["http_status"] == 200  # hung up after the first byte: 200, not 499


# ------------------------------------------------------------------ the test


@pytest.mark.slow
def test_shipped_nginx_config_end_to_end(tmp_path: Path, prefix: Path) -> None:
    nginx = require_nginx()
    cert, key = make_cert(tmp_path)
    port = free_port()

    with FakeUpstream(cert, key) as upstream:
        render_config(prefix, port, upstream.port, cert)
        with open(prefix / "nginx.stderr", "wb") as err:
            proc = subprocess.Popen(
                [nginx, "-p", f"{prefix}/", "-c", "nginx.conf", "-g", "daemon off;"],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
            )
        try:
            wait_listening(proc, port, prefix)
            client = run_requests(port)
        finally:
            proc.send_signal(signal.SIGQUIT)  # graceful: workers finish and log everything
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        records = upstream.records
    assert proc.returncode == 0, nginx_output(prefix)

    check_upstream_saw(client, records)

    # ---- nginx side: no errors (e.g. the Lua module unable to write), parseable logs
    error_log = (prefix / "logs" / "error.log").read_text(errors="replace")
    bad = [ln for ln in error_log.splitlines() if any(f"[{lv}]" in ln for lv in LEVELS)]
    assert not bad, "\n".join(bad)
    access_lines = (prefix / "logs" / "access.log").read_bytes().splitlines()
    body_lines = (prefix / "logs" / "body" / "body.log").read_bytes().splitlines()
    access = [json.loads(line) for line in access_lines]
    body = [json.loads(line) for line in body_lines]
    assert len(access) == len(client)
    ends = [r["request_id"] for r in body if "end" in r]
    assert sorted(ends) == sorted(a["request_id"] for a in access), "one end record per request"

    events, texts = run_sidecar_once(
        tmp_path, prefix / "logs" / "access.log", prefix / "logs" / "body" / "body.log"
    )
    check_events(client, records, events, texts)
