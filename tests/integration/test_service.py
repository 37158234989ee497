"""`llm-hec-sidecar run` as systemd runs it: a real NOTIFY_SOCKET, real signals, the HEC test
server, /health and /metrics over HTTP, heartbeats.

One subprocess goes through a service's life: READY + STATUS + WATCHDOG; events delivered and
counted in /metrics (parsed with prometheus-client's own parser); the HEC token rejected (/health
503 with the reason) and accepted again (200); SIGHUP with new prices; SIGTERM while a batch is
in flight (exit 0, STOPPING=1, every request delivered).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jsonschema
import orjson
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from sidecar.testing import HecTestServer, TokenSettings
from tests.logs import append, custom_request

REPO = Path(__file__).resolve().parents[2]
LOGS = REPO / "examples" / "logs"
TOKEN = "0a1b2c3d-secret-hec-token"
HEARTBEAT_SCHEMA = json.loads((REPO / "sidecar" / "schema" / "llm_sidecar_1.json").read_text())

pytestmark = pytest.mark.slow


def wait_for(pred, timeout: float = 30.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


class Datagrams:
    """Everything the sidecar sends to our NOTIFY_SOCKET, as parsed assignments."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.messages: list[dict[str, str]] = []

    def poll(self) -> list[dict[str, str]]:
        while True:
            try:
                data = self.sock.recv(4096).decode()
            except BlockingIOError:
                return self.messages
            self.messages.append(dict(x.split("=", 1) for x in data.split("\n")))

    def has(self, key: str) -> bool:
        return any(key in m for m in self.poll())


def usage_events(hec: HecTestServer) -> list[dict]:
    return [e["event"] for e in list(hec.events) if e.get("sourcetype") != "llm:sidecar"]


def metric_values(text: str) -> dict[str, list]:
    out: dict[str, list] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append(s)
    return out


def test_service_life(tmp_path: Path) -> None:
    access, body = tmp_path / "access.log", tmp_path / "body.log"
    access.touch()
    body.touch()
    prices = tmp_path / "prices.yaml"
    prices.write_text(
        yaml.safe_dump(
            [{"model": "my-llama-70b", "input_usd_per_mtok": "1", "output_usd_per_mtok": "1"}]
        )
    )
    hec = HecTestServer(tokens={TOKEN: TokenSettings()})
    url, stop_hec = hec.run_in_thread()
    port = free_port()
    cfg = {
        "sources": [
            {
                "name": "proxy",
                "access_log": {"paths": [str(access)]},
                "body_log": {"paths": [str(body)]},
                "poll_interval_secs": 0.05,
            }
        ],
        "identity": {"hash_key": "k" * 16},
        "pricing": {"overrides_file": str(prices)},
        "state_dir": str(tmp_path / "state"),
        "sinks": [
            {
                "type": "hec",
                "endpoints": [url],
                "token": "${SPLUNK_HEC_TOKEN}",
                "batch": {"max_events": 10, "timeout_secs": 0.1},
                "retry": {"initial_backoff_secs": 0.05, "max_backoff_secs": 0.2},
            }
        ],
        "server": {"listen": f"127.0.0.1:{port}"},
        "heartbeat": {"interval_secs": 1},
        "log": {"format": "json"},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    folder = tempfile.mkdtemp(prefix="ntf")  # AF_UNIX paths are short: not under tmp_path
    notify_path = os.path.join(folder, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(notify_path)
    sock.setblocking(False)
    dgrams = Datagrams(sock)
    env = {
        **os.environ,
        "NOTIFY_SOCKET": notify_path,
        "WATCHDOG_USEC": "1000000",
        "SPLUNK_HEC_TOKEN": TOKEN,
    }
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sidecar.cli",
            "run",
            "--quiet",
            "-c",
            str(tmp_path / "config.yaml"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        # READY, STATUS and the watchdog (every 0.5 s: half of WATCHDOG_USEC).
        wait_for(lambda: dgrams.has("READY"), what="READY=1")
        ready = next(m for m in dgrams.messages if "READY" in m)
        assert ready["MAINPID"] == str(proc.pid)
        assert "events/s" in ready["STATUS"] and "spool" in ready["STATUS"]
        wait_for(lambda: sum("WATCHDOG" in m for m in dgrams.poll()) >= 2, what="WATCHDOG=1")

        # 40 real requests: delivered, and counted alike in /metrics.
        a_lines = (LOGS / "access.log").read_bytes().splitlines()[:40]
        ids = {orjson.loads(x)["request_id"] for x in a_lines}
        b_lines = (LOGS / "body.log").read_bytes().splitlines()
        append(body, [x for x in b_lines if orjson.loads(x)["request_id"] in ids])
        append(access, a_lines)
        wait_for(lambda: len(usage_events(hec)) == 40, what="40 events at HEC")
        wait_for(lambda: any(e.get("sourcetype") == "llm:sidecar" for e in hec.events), what="hb")
        status, text = http_get(port, "/metrics")
        assert status == 200
        m = metric_values(text.decode())
        delivered = usage_events(hec)
        assert sum(s.value for s in m["llm_sidecar_requests_total"]) == 40
        in_metrics = sum(
            s.value for s in m["llm_sidecar_tokens_total"] if s.labels["direction"] == "input"
        )
        assert in_metrics == sum(e["input_tokens"] or 0 for e in delivered)
        by_model = {}
        for e in delivered:
            by_model[e["model"] or "unknown"] = by_model.get(e["model"] or "unknown", 0) + 1
        got_by_model = {}
        for s in m["llm_sidecar_requests_total"]:
            got_by_model[s.labels["model"]] = got_by_model.get(s.labels["model"], 0) + s.value
        assert got_by_model == by_model

        def sent_matches() -> bool:  # usage events + heartbeats, once no reply is in flight
            n = len(hec.events)
            sent = metric_values(http_get(port, "/metrics")[1].decode())
            return sent["llm_sidecar_events_sent_total"][0].value == n == len(hec.events)

        wait_for(sent_matches, what="events_sent_total == events accepted by HEC")
        assert m["llm_sidecar_lines_read_total"]
        assert m["llm_sidecar_hec_request_duration_seconds_count"][0].value >= 4
        hb = next(e["event"] for e in hec.events if e.get("sourcetype") == "llm:sidecar")
        assert hb["schema"] == "llm_sidecar/1" and hb["kind"] == "heartbeat"
        assert hb["health"] == "ok" and isinstance(hb["events_per_sec"], int | float)
        jsonschema.validate(hb, HEARTBEAT_SCHEMA)
        status, health = http_get(port, "/health")
        assert status == 200 and json.loads(health)["health"] == "ok"

        # The token is rejected: /health says so (503), and says it no more once accepted.
        settings = hec.tokens.pop(TOKEN)
        acc, bod = custom_request("r" * 32, 10)
        append(body, bod)
        append(access, [acc])

        def unhealthy() -> bool:
            st, data = http_get(port, "/health")
            return st == 503 and any(
                "rejects the token" in r for r in json.loads(data)["health_reasons"]
            )

        wait_for(unhealthy, what="/health 503 token rejected")
        hec.tokens[TOKEN] = settings
        wait_for(lambda: http_get(port, "/health")[0] == 200, what="/health 200 again")

        # SIGHUP: new prices are used from then on.
        acc, bod = custom_request("a" * 32, 1_000_000)
        append(body, bod)
        append(access, [acc])
        wait_for(lambda: any(e["request_id"] == "a" * 32 for e in usage_events(hec)), what="a")
        assert (
            next(e for e in usage_events(hec) if e["request_id"] == "a" * 32)["estimated_cost_usd"]
            == 1.0
        )
        prices.write_text(
            yaml.safe_dump(
                [{"model": "my-llama-70b", "input_usd_per_mtok": "3", "output_usd_per_mtok": "3"}]
            )
        )
        cfg["log"]["level"] = "warning"  # SIGHUP also re-reads the log level
        (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
        proc.send_signal(signal.SIGHUP)
        n_ready = sum("READY" in m for m in dgrams.poll())
        wait_for(lambda: sum("READY" in m for m in dgrams.poll()) > n_ready, what="reloaded")
        assert any("RELOADING" in m for m in dgrams.messages)
        acc, bod = custom_request("b" * 32, 1_000_000)
        append(body, bod)
        append(access, [acc])
        wait_for(lambda: any(e["request_id"] == "b" * 32 for e in usage_events(hec)), what="b")
        assert (
            next(e for e in usage_events(hec) if e["request_id"] == "b" * 32)["estimated_cost_usd"]
            == 3.0
        )

        # SIGTERM while a batch is in flight: the rest is drained, exit 0, nothing lost.
        hec.delay_next(1, secs=1.0)
        n_requests = len(hec.requests)
        rest_a = (LOGS / "access.log").read_bytes().splitlines()[40:100]
        rest_ids = {orjson.loads(x)["request_id"] for x in rest_a}
        append(body, [x for x in b_lines if orjson.loads(x)["request_id"] in rest_ids])
        append(access, rest_a)
        wait_for(lambda: len(hec.requests) > n_requests, what="a batch in flight")
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
        dgrams.poll()
    finally:
        if proc.poll() is None:
            proc.kill()
            _, err = proc.communicate()
            print("sidecar stderr:", err[-5000:])
        stop_hec()
        sock.close()
        os.unlink(notify_path)
        os.rmdir(folder)
    assert proc.returncode == 0, stderr[-3000:]
    assert any("STOPPING" in m for m in dgrams.messages)
    delivered_ids = {e["request_id"] for e in usage_events(hec)}
    assert rest_ids <= delivered_ids and ids <= delivered_ids
    # Own logs: one JSON object per line, never the HEC token.
    for line in stderr.splitlines():
        rec = json.loads(line)
        assert {"level", "logger", "msg"} <= rec.keys()
    assert TOKEN not in stderr
    assert "SIGHUP: log level warning." in stderr
    assert "SIGTERM received" not in stderr  # an info line, below the reloaded level


def test_unreachable_hec_and_missing_log_are_unhealthy_and_sigterm_ends_within_bound(
    tmp_path: Path,
) -> None:
    access, body = tmp_path / "access.log", tmp_path / "body.log"
    a_lines = (LOGS / "access.log").read_bytes().splitlines()[:5]
    ids = {orjson.loads(x)["request_id"] for x in a_lines}
    b_lines = (LOGS / "body.log").read_bytes().splitlines()
    append(body, [x for x in b_lines if orjson.loads(x)["request_id"] in ids])
    append(access, a_lines)
    port = free_port()
    closed = free_port()  # nothing listens there
    cfg = {
        "sources": [
            {
                "access_log": {"paths": [str(access), str(tmp_path / "missing.log")]},
                "body_log": {"paths": [str(body)]},
            }
        ],
        "identity": {"hash_key": "k" * 16},
        "state_dir": str(tmp_path / "state"),
        "sinks": [
            {
                "type": "hec",
                "endpoints": [f"http://127.0.0.1:{closed}"],
                "token": TOKEN,
                "batch": {"timeout_secs": 0.1},
                "retry": {"initial_backoff_secs": 0.05, "max_backoff_secs": 0.2},
            }
        ],
        "server": {"listen": f"127.0.0.1:{port}"},
        "shutdown_timeout_secs": 1,
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.Popen(
        [sys.executable, "-m", "sidecar.cli", "run", "-c", str(tmp_path / "config.yaml")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def reasons() -> list[str]:
            try:
                st, data = http_get(port, "/health")
            except OSError:
                return []
            return json.loads(data)["health_reasons"] if st == 503 else []

        wait_for(lambda: any("HEC unreachable" in r for r in reasons()), what="HEC unreachable")
        assert f"source proxy: no log file matches {tmp_path / 'missing.log'}" in reasons()
        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        _, stderr = proc.communicate(timeout=30)  # HEC never answers: only the bound ends it
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # Delivery gives up after shutdown_timeout_secs; the events stay in the spool: exit 0.
    assert proc.returncode == 0, stderr[-2000:]
    assert took < 1 + 10, took  # the bound plus start-up slack on a loaded machine
    assert "wait in the spool" in stderr
