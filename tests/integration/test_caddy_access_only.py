"""Caddy's JSON access log as an access-log-only source: exactly the fields docs/proxies.md says.

The lines are Caddy's `http.log.access` shape (header values are lists, `Authorization` is
logged as `REDACTED` unless `log_credentials` is on) plus the two `log_append` fields the doc's
Caddyfile adds (`request_id`, `upstream_host`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def caddy_line(rid: str, uri: str, upstream: str, status: int, req: dict, resp: dict) -> str:
    return json.dumps(
        {
            "level": "info",
            "ts": 1795471580.608,
            "logger": "http.log.access.log0",
            "msg": "handled request",
            "request": {
                "remote_ip": "127.0.0.1",
                "remote_port": "41342",
                "client_ip": "127.0.0.1",
                "proto": "HTTP/1.1",
                "method": "POST",
                "host": "llm-gateway.internal:8080",
                "uri": uri,
                "headers": {k: [v] for k, v in req.items()},
            },
            "bytes_read": 210,
            "user_id": "",
            "duration": 1.2034,
            "size": 5120,
            "status": status,
            "resp_headers": {k: [v] for k, v in resp.items()},
            "request_id": rid,  # log_append request_id {http.request.uuid}
            # log_append upstream_host {http.reverse_proxy.upstream.host}
            "upstream_host": upstream,
        }
    )


LINES = [
    caddy_line(
        "6f1c0c5e-9b1e-4d7f-8a2b-3c4d5e6f7a8b",
        "/v1/chat/completions",
        "api.openai.com",
        200,
        {
            "User-Agent": "OpenAI/Python 1.109.1",
            "Authorization": "REDACTED",
            "X-Stainless-Retry-Count": "0",
            "X-Llm-User": "alice",
            "X-Llm-Tenant": "acme",
            "X-Client-Request-Id": "c0ffee01",
        },
        {
            "Content-Type": "text/event-stream; charset=utf-8",
            "X-Request-Id": "req_abc",
            "X-Ratelimit-Limit-Requests": "5000",
            "X-Ratelimit-Remaining-Requests": "4999",
            "X-Ratelimit-Reset-Requests": "12ms",
        },
    ),
    caddy_line(
        "7f1c0c5e-9b1e-4d7f-8a2b-3c4d5e6f7a8b",
        "/v1/messages",
        "api.anthropic.com",
        429,
        {"X-Api-Key": "sk-ant-api03-caddysecret", "X-Stainless-Retry-Count": "1"},
        {
            "Content-Type": "application/json",
            "Request-Id": "req_011",
            "Anthropic-Ratelimit-Requests-Limit": "4000",
            "Anthropic-Ratelimit-Requests-Remaining": "0",
            "Retry-After": "7",
        },
    ),
]
# what an access log alone cannot give (docs/proxies.md, "Caddy")
MISSING = (
    "model",
    "service_tier",
    "finish_reason",
    "ttft_ms",
    "input_tokens",
    "cached_input_tokens",
    "cache_write_input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "total_tokens",
    "estimated_cost_usd",
)


def test_caddy_access_log_alone(tmp_path: Path) -> None:
    access = tmp_path / "caddy-access.json"
    access.write_text("\n".join(LINES) + "\n")
    cfg = {
        "sources": [
            {"name": "caddy", "access_log": {"paths": [str(access)], "format": {"type": "caddy"}}}
        ],
        "identity": {"hash_key": "k"},
        "state_dir": str(tmp_path / "state"),
        "sinks": [{"type": "file", "path": str(tmp_path / "events.ndjson")}],
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.run(
        [sys.executable, "-m", "sidecar.cli", "run", "--once", "-c", str(tmp_path / "c.yaml")],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(x) for x in (tmp_path / "events.ndjson").read_text().splitlines()]
    ok, limited = sorted(events, key=lambda e: e["http_status"])
    for ev in events:
        for key in MISSING:
            assert ev[key] is None, (key, ev)
        assert ev["cost_known"] is False and ev["cost_status"] == "no_usage"
        assert ev["tokens_estimated"] is False
        assert ev["duration_ms"] == 1203.4
    assert (ok["provider"], ok["api"], ok["status"]) == ("openai", "chat.completions", "ok")
    assert ok["is_streaming"] is True  # from the response Content-Type only
    assert ok["provider_request_id"] == "req_abc"
    assert (ok["retry_group"], ok["attempt"], ok["tenant"]) == ("c0ffee01", 0, "acme")
    assert ok["user"] and ok["user"] != "alice"  # hashed
    assert ok["ratelimit_remaining_requests"] == 4999
    # Caddy logs Authorization as REDACTED: every such request gets the same api_key_id
    assert ok["api_key_id"] is not None
    assert (limited["provider"], limited["status"], limited["retry_after_secs"]) == (
        "anthropic",
        "rate_limited",
        7.0,
    )
    assert limited["ratelimit_remaining_requests"] == 0 and limited["attempt"] == 1
    assert "caddysecret" not in json.dumps(events) + proc.stdout + proc.stderr
