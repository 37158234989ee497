"""Live, end to end, with real clients: the official SDKs -> the shipped nginx config -> a replay of
the recorded provider streams; the sidecar follows nginx's logs the whole time and ships to HEC.

* The upstream (`replay_upstream.py`, TLS on 127.0.0.1) answers with the byte-exact recorded
  bodies of `tests/fixtures/recorded/` and their recorded response headers, one SSE event every
  20 ms, and with 429 (rate-limit headers, `retry-after`, `retry-after-ms`) and 500 replies.
* The clients are the official `openai` (chat streaming with `include_usage`, without it,
  non-streaming, Responses streaming, `with_options(max_retries=...)` against 429 and 500),
  `anthropic` (streaming with cache reads and writes) and `google-genai` (Gemini `alt=sse`) SDKs,
  unmodified: 195 calls, 225 HTTP attempts, 24 at a time, 20 of them cancelled mid-stream by
  closing the stream object. Each call carries its own `X-Client-Request-Id`, which nginx logs
  (`client_request_id` -> the event's `retry_group`) and forwards; the SDKs number their retries
  in `x-stainless-retry-count` (-> `attempt`).
* nginx runs the shipped `examples/nginx/nginx.conf` (only port, upstream addresses and CA
  changed, see `nginx_harness.render_config`).
* `llm-hec-sidecar run` (follow mode, a subprocess) tails the two logs from before the first
  request to after the last, with the project's HEC test server as its sink. Half-way through
  the calls both logs are rotated as logrotate does it: rename, then `nginx -s reopen`.

Asserted: every HTTP attempt that reached the provider is exactly one HEC event (a retried call:
one event per attempt, all in one retry_group); usage is the recorded usage; cost is what
`llm-hec-sidecar price` says for that usage; cancelled streams are `cancelled` with estimated
tokens; rate-limit fields are the replayed headers; no prompt text, API key or Authorization
header value appears in any event, in the sidecar's output or in its state directory.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from nginx_harness import (
    LEVELS,
    RunningNginx,
    free_port,
    make_cert,
    nginx_output,
    render_config,
    require_nginx,
)
from replay_upstream import ReplayUpstream
from sdk_calls import (
    ANTHROPIC_KEY,
    GEMINI_KEY,
    MODEL_REQUESTED,
    OPENAI_KEY,
    PROMPT,
    Call,
    Clients,
    expected_attempts,
    failing,
    plan,
    run_call,
    run_calls,
    succeeds,
)

from sidecar.testing.protocol import TokenSettings
from sidecar.testing.server import HecTestServer

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
HEC_TOKEN = "11111111-2222-3333-4444-E2EHECTOKEN"
SECRETS = (PROMPT[:21], "lorem ipsum", "E2ESECRET", "Bearer", HEC_TOKEN)

# The recorded usage of each fixture (its .source.txt), in the event's terms: input_tokens is all
# input (Anthropic: input + cache read + cache write), output includes reasoning.
#        fixture: (provider, input, cached_input, cache_write, output, reasoning)
USAGE = {
    "openai_chat_usage_1": ("openai", 53, 0, 0, 15, 0),
    # Azure-shaped bodies, sent on the shipped config's OpenAI route: the upstream host
    # (api.openai.com) names the provider, not the body's shape
    "azure_chat_usage_1": ("openai", 15, 0, 0, 12, 0),
    "azure_responses_usage_1": ("openai", 16, 0, 0, 11, 0),
    "openai_responses_usage_1": ("openai", 16, 0, 0, 11, 0),
    "openai_responses_reasoning_1": ("openai", 53, 0, 0, 469, 448),
    "anthropic_cache_read_1": ("anthropic", 4 + 1165, 1165, 0, 221, 0),
    "anthropic_cache_write_1": ("anthropic", 4 + 1165, 0, 1165, 201, 0),
    "anthropic_stream_1": ("anthropic", 10, 0, 0, 4, 0),
    "gemini_stream_1": ("gemini", 13, 0, 0, 8, 0),
}
# The rate-limit fields the replayed headers must give (None: no such header was recorded).
_NO_LIMITS = (None, None, None, None, None, None, None)
# (limit_req, remaining_req, reset_req_secs, limit_tok, remaining_tok, reset_tok_secs, retry_after)
LIMITS = {
    "openai_chat_nousage_1": (5000, 4999, 0.012, 160000, 159974, 0.009, None),
    "azure_chat_usage_1": (100, 96, None, 100000, 99977, None, None),
    "azure_responses_usage_1": (300, 286, None, None, None, None, None),
    "anthropic_cache_read_1": (4000, 3999, 0, 480000, 478000, 0, None),  # resets are past
    "anthropic_cache_write_1": (4000, 3999, 0, 480000, 478000, 0, None),
    "anthropic_stream_1": (20000, 19999, 0, 4800000, 4800000, 0, None),
    "429": (500, 0, 0.12, 30000, 0, 90.0, 0.15),  # replay_upstream.RATE_LIMITED_HEADERS
}
LIMIT_KEYS = (
    "ratelimit_limit_requests",
    "ratelimit_remaining_requests",
    "ratelimit_reset_requests_secs",
    "ratelimit_limit_tokens",
    "ratelimit_remaining_tokens",
    "ratelimit_reset_tokens_secs",
    "retry_after_secs",
)


# ------------------------------------------------------------------ the sidecar
def start_sidecar(tmp: Path, prefix: Path, hec_url: str) -> tuple[subprocess.Popen, Path]:
    cfg = {
        "sources": [
            {
                "name": "nginx-live",
                "access_log": {
                    "paths": [str(prefix / "logs" / "access.log")],
                    "format": {"type": "nginx_json"},
                },
                "body_log": {
                    "paths": [str(prefix / "logs" / "body" / "body.log")],
                    "format": {"type": "chunks"},
                },
            }
        ],
        "identity": {"hash_key": "e2e-hash-key", "hash_fields": ["api_key", "user"]},
        "state_dir": str(tmp / "state"),
        "sinks": [
            {
                "type": "hec",
                "endpoints": [hec_url],
                "token": "${E2E_HEC_TOKEN}",  # defaults otherwise, as a user would start
            }
        ],
    }
    path = tmp / "sidecar.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp / "sidecar.out"
    with open(out, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sidecar.cli", "run", "-c", str(path)],
            cwd=tmp,
            env={**os.environ, "PYTHONPATH": str(REPO), "E2E_HEC_TOKEN": HEC_TOKEN},
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    return proc, out


def stop_sidecar(proc: subprocess.Popen) -> None:
    """SIGTERM (a clean stop is part of the test); SIGKILL if it hangs, so nothing outlives it."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_for_events(hec: HecTestServer, n: int, proc: subprocess.Popen, out: Path) -> None:
    """Until HEC holds `n` events (a generous bound: the machine may be loaded)."""
    deadline = time.monotonic() + 120
    while len(hec.events) < n:
        if proc.poll() is not None:
            pytest.fail(f"the sidecar exited ({proc.returncode}):\n{out.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(
                f"HEC got {len(hec.events)} events of {n} in 120 s:\n{out.read_text()[-3000:]}"
            )
        time.sleep(0.1)


def price(ev: dict[str, Any], usage: tuple) -> dict[str, Any]:
    """What `llm-hec-sidecar price` charges for `usage` of this event's model at its time."""
    _, inp, cached, write, outp, reasoning = usage
    at = datetime.fromtimestamp(ev["time"], UTC).isoformat()
    args = ["--provider", ev["provider"], "--model", ev["model"], "--at", at]
    args += ["--input", str(inp), "--cached-input", str(cached), "--cache-write", str(write)]
    args += ["--output", str(outp), "--reasoning", str(reasoning)]
    if ev["service_tier"]:
        args += ["--service-tier", ev["service_tier"]]
    proc = subprocess.run(
        [sys.executable, "-m", "sidecar.cli", "price", *args],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def event_usage(ev: dict[str, Any]) -> tuple:
    """The event's usage; an unknown input (an estimate without the request) is priced as 0."""
    return (
        ev["provider"],
        ev["input_tokens"] or 0,
        ev["cached_input_tokens"],
        ev["cache_write_input_tokens"],
        ev["output_tokens"],
        ev["reasoning_tokens"],
    )


# ------------------------------------------------------------------ the test
def test_sdks_through_shipped_nginx_live_with_rotation(tmp_path: Path, prefix: Path) -> None:
    nginx = require_nginx()
    cert, key = make_cert(tmp_path)
    port = free_port()
    hec = HecTestServer({HEC_TOKEN: TokenSettings()})
    hec_url, hec_stop = hec.run_in_thread()
    calls = plan()
    logs = prefix / "logs"
    rotated = threading.Event()
    shipped_before_rotation: list[int] = []
    try:
        with ReplayUpstream(cert, key, list(MODEL_REQUESTED)) as upstream:
            render_config(prefix, port, upstream.port, cert)
            with RunningNginx(nginx, prefix, port) as ngx:
                sidecar, out = start_sidecar(tmp_path, prefix, hec_url)

                def rotate() -> None:  # logrotate: rename, then postrotate `nginx -s reopen`
                    shipped_before_rotation.append(len(hec.events))
                    os.rename(logs / "access.log", logs / "access.log.1")
                    os.rename(logs / "body" / "body.log", logs / "body" / "body.log.1")
                    ngx.reopen()
                    rotated.set()

                try:
                    cl = Clients(port)
                    try:
                        # one call first: once its event is at HEC, the sidecar is up and
                        # follows both logs (so it has the old files open when they are renamed)
                        warm_up = Call("chat_stream", "openai_chat_usage_1")
                        run_call(cl, warm_up)
                        wait_for_events(hec, 1, sidecar, out)
                        run_calls(cl, calls, rotate)
                        calls.insert(0, warm_up)
                    finally:
                        cl.close()
                    attempts = list(upstream.attempts)
                    wait_for_events(hec, len(attempts), sidecar, out)
                    time.sleep(1.0)  # anything more would be a duplicate
                finally:
                    stop_sidecar(sidecar)
            assert ngx.returncode == 0, nginx_output(prefix)
    finally:
        hec_stop()
    sidecar_out = out.read_text(errors="replace")
    assert sidecar.returncode == 0, sidecar_out[-3000:]
    assert rotated.is_set()

    # ---- what nginx wrote: both generations of both logs, no errors
    error_log = (logs / "error.log").read_text(errors="replace")
    bad = [ln for ln in error_log.splitlines() if any(f"[{lv}]" in ln for lv in LEVELS)]
    assert not bad, "\n".join(bad)
    access = []
    for name in ("access.log.1", "access.log"):
        lines = (logs / name).read_bytes().splitlines()
        assert len(lines) > len(attempts) // 5, f"{name}: {len(lines)} lines, not half-way"
        access += [json.loads(line) for line in lines]
    body_ids = []
    for name in ("body.log.1", "body.log"):
        lines = (logs / "body" / name).read_bytes().splitlines()
        body_ids.append({json.loads(line)["request_id"] for line in lines})
    assert body_ids[0] & body_ids[1], "no stream was in flight during the rotation"
    # the sidecar was following when the logs were renamed (the warm-up's event, at least)
    assert shipped_before_rotation[0] >= 1
    assert len(access) == len(attempts) >= 200

    # ---- the clients: every call ended as planned
    by_crid = {c.crid: c for c in calls}
    for c in calls:
        if succeeds(c):
            assert c.outcome == "ok", (c, c.outcome)
            if c.kind == "chat_json":  # the SDK parsed the recorded usage too
                assert c.client_input_tokens == USAGE[c.fixture][1], c
        else:
            assert c.outcome in ("RateLimitError", "InternalServerError"), c
        if c.cancel_after:  # closed mid-stream, and the provider saw the hang-up
            assert c.events_read == c.cancel_after, c
            assert [a.completed for a in attempts if a.client_request_id == c.crid] == [False]
    tries = Counter(a.client_request_id for a in attempts)
    assert {k: tries[k] for k in by_crid} == {c.crid: expected_attempts(c) for c in calls}

    # ---- HEC: every attempt exactly once, grouped by retry_group
    events = [e["event"] for e in hec.events]
    assert len(events) == len(attempts), "events != attempts"
    assert len({e["event_id"] for e in events}) == len(events), "an event was sent twice"
    assert sorted(e["request_id"] for e in events) == sorted(a["request_id"] for a in access)
    groups: dict[str, list[dict]] = {}
    for ev in events:
        groups.setdefault(ev["retry_group"], []).append(ev)
    assert set(groups) == set(by_crid)
    for crid, evs in groups.items():
        c = by_crid[crid]
        assert len(evs) == expected_attempts(c), (c, evs)
        if c.kind != "gemini":  # google-genai does not number its attempts
            assert sorted(e["attempt"] for e in evs) == list(range(len(evs))), (c, evs)
        if c.proxy_request_id:  # the attempt the client saw is the group's last one
            last = max(evs, key=lambda e: e["attempt"] or 0)
            assert last["request_id"] == c.proxy_request_id, c

    # ---- per attempt: status, usage, rate limits
    to_price: dict[tuple, list[dict]] = {}
    estimated_nousage = set()
    for crid, evs in groups.items():
        c = by_crid[crid]
        for ev in sorted(evs, key=lambda e: e["attempt"] or 0):
            assert ev["api_key_id"] and ev["user"] != c.user, ev
            assert ev["tenant"] == "acme"
            limits = tuple(ev[k] for k in LIMIT_KEYS)
            if (ev["attempt"] or 0) < failing(c):
                status = "rate_limited" if c.fail.startswith("429") else "error"
                assert (ev["status"], ev["http_status"]) == (status, int(c.fail[:3])), ev
                assert ev["input_tokens"] is None and ev["cost_known"] is False, ev
                want = LIMITS["429"] if status == "rate_limited" else _NO_LIMITS
                assert limits == pytest.approx(want), ev
                continue
            assert ev["http_status"] == 200, ev
            assert limits == pytest.approx(LIMITS.get(c.fixture, _NO_LIMITS)), (c.fixture, ev)
            if c.cancel_after:
                assert ev["status"] == "cancelled", ev
                assert ev["tokens_estimated"] is True, ev
                assert ev["output_tokens"] and ev["output_tokens"] > 0, ev
                if c.kind == "anthropic":  # message_start's input counts are exact
                    assert ev["input_tokens"] == USAGE[c.fixture][1], ev
                    assert ev["cached_input_tokens"] == USAGE[c.fixture][2], ev
            elif c.kind == "chat_nousage":  # no usage recorded: estimated, every time the same
                assert ev["status"] == "ok", ev
                assert ev["tokens_estimated"] is True, ev
                estimated_nousage.add(ev["output_tokens"])
            else:
                assert ev["status"] == "ok", ev
                assert ev["tokens_estimated"] is False, ev
                assert event_usage(ev) == USAGE[c.fixture], (c.fixture, ev)
            if ev["output_tokens"] is not None:
                key = (ev["provider"], ev["model"], ev["service_tier"], event_usage(ev))
                to_price.setdefault(key, []).append(ev)
    assert len(estimated_nousage) == 1 and next(iter(estimated_nousage)) > 0

    # ---- cost: exactly what `llm-hec-sidecar price` says for that usage
    with ThreadPoolExecutor(4) as pool:
        keys = list(to_price)
        quoted = dict(zip(keys, pool.map(lambda k: price(to_price[k][0], k[3]), keys), strict=True))
    cost_keys = (
        "cost_input_usd",
        "cost_cached_input_usd",
        "cost_cache_write_usd",
        "cost_output_usd",
        "estimated_cost_usd",
    )
    priced_known = 0
    for key, evs in to_price.items():
        q = quoted[key]
        for ev in evs:
            assert ev["cost_known"] == q["cost_known"], (key, ev, q)
            assert ev["pricing_model"] == q["pricing_model"], (key, ev, q)
            for k in cost_keys:
                got = None if ev[k] is None else round(ev[k], 9)
                assert got == q[k], (k, key, ev, q)
            priced_known += ev["cost_known"]
    assert priced_known > len(events) // 2, "most events should be priced"

    # ---- secrets: no prompt, API key, Authorization or HEC token anywhere the sidecar wrote
    texts = {"hec events": json.dumps(hec.events), "sidecar output": sidecar_out}
    for p in (tmp_path / "state").rglob("*"):
        if p.is_file():
            texts[str(p)] = p.read_text(errors="replace")
            assert p.stat().st_mode & 0o077 == 0, f"{p} is readable by others"
    for where, text in texts.items():
        for secret in (*SECRETS, OPENAI_KEY, ANTHROPIC_KEY, GEMINI_KEY):
            assert secret not in text, f"{secret!r} in {where}"
