"""`llm-hec-sidecar run --once` as a real subprocess against the HEC test server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import orjson
import pytest
import yaml

from sidecar.testing import HecTestServer, TokenSettings
from tests.logs import TOKEN_FIELDS

REPO = Path(__file__).resolve().parents[2]
LOGS = REPO / "examples" / "logs"
SCHEMA = json.loads((REPO / "sidecar" / "schema" / "llm_usage_1.json").read_text())
HASH_KEY = "integration-test-key"
HEC_TOKEN = "6f0e1c2a-1111-2222-3333-444455556666"


def run_cli(
    args: list[str], *, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "sidecar.cli", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def write_config(tmp: Path, access: Path, body: Path, sinks: list[dict]) -> Path:
    cfg = {
        "sources": [
            {
                "name": "proxy",
                "access_log": {"paths": [str(access)]},
                "body_log": {"paths": [str(body)]},
            }
        ],
        "identity": {"hash_key": "${SIDECAR_HASH_KEY}"},
        "state_dir": str(tmp / "state"),
        "sinks": sinks,
    }
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def raw_api_keys() -> set[str]:
    keys = set()
    for line in (LOGS / "access.log").read_bytes().splitlines():
        k = orjson.loads(line).get("api_key")
        if k:
            keys.add(k)
    return keys


@pytest.fixture(scope="module")
def hec_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("run")
    server = HecTestServer(tokens={HEC_TOKEN: TokenSettings()})
    url, stop = server.run_in_thread()
    try:
        cfg = write_config(
            tmp,
            LOGS / "access.log",
            LOGS / "body.log",
            [
                {
                    "type": "hec",
                    "endpoints": [url],
                    "token": "${HEC_TOKEN}",
                    "index": "llm",
                    "batch": {"max_events": 50, "timeout_secs": 0.2},
                    "tls": {"verify": False},
                    "allow_insecure_http": True,
                },
                {"type": "file", "path": str(tmp / "events.ndjson")},
            ],
        )
        proc = run_cli(
            ["run", "--once", "-c", str(cfg)],
            cwd=tmp,
            env={"SIDECAR_HASH_KEY": HASH_KEY, "HEC_TOKEN": HEC_TOKEN},
        )
    finally:
        stop()
    return {"proc": proc, "server": server, "tmp": tmp}


def test_every_example_request_arrives_once_with_true_usage(hec_run: dict) -> None:
    proc = hec_run["proc"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    truth = json.loads((LOGS / "truth.json").read_text())
    envelopes = hec_run["server"].events
    events = [e["event"] for e in envelopes]
    ids = [e["request_id"] for e in events]
    assert len(ids) == len(set(ids)), "a request arrived twice"
    assert set(ids) == set(truth), "missing or unexpected requests"
    for ev in events:
        t = truth[ev["request_id"]]
        assert ev["status"] == t["status"], (ev["request_id"], ev["status"], t)
        assert ev["http_status"] == t["http_status"]
        assert ev["provider"] == t["provider"]
        assert ev["is_streaming"] == t["is_streaming"]
        if t.get("output_tokens") is not None:
            assert ev["tokens_estimated"] is False
            assert ev["token_source"] == "usage"
            for f in TOKEN_FIELDS:
                assert ev[f] == t[f], (ev["request_id"], f, ev[f], t[f])
            assert ev["model"] == t["model"]
        if t["status"] == "cancelled":
            assert ev["status"] == "cancelled"
            assert ev["tokens_estimated"] is bool(t.get("tokens_estimated"))
        jsonschema.validate(ev, SCHEMA)


def test_cancelled_stream_is_estimated_and_flagged(hec_run: dict) -> None:
    events = [e["event"] for e in hec_run["server"].events]
    cancelled = [e for e in events if e["status"] == "cancelled"]
    assert cancelled, "the examples hold cancelled requests"
    with_text = [e for e in cancelled if e["tokens_estimated"]]
    assert with_text, "a cancelled stream that streamed text gets an estimate"
    for ev in with_text:
        assert ev["token_source"].startswith("estimated_")
        assert ev["output_tokens"] > 0
        assert ev["cost_status"] in ("estimated", "unpriced_model")


def test_envelope_and_indexed_fields(hec_run: dict) -> None:
    server = hec_run["server"]
    env = server.events[0]
    assert env["sourcetype"] == "llm:usage" and env["index"] == "llm"
    assert env["source"].endswith("access.log")
    assert isinstance(env["time"], int | float)
    assert set(env["fields"]) <= {"provider", "model", "status", "tenant", "user", "is_streaming"}
    assert all(isinstance(v, str) for v in env["fields"].values())
    assert any(r.compressed for r in server.requests), "batches are gzip-compressed"


def test_no_secret_leaves_only_the_keyed_hash(hec_run: dict) -> None:
    proc = hec_run["proc"]
    keys = raw_api_keys()
    assert keys, "the example access log carries api_key"
    blob = json.dumps(hec_run["server"].events)
    file_blob = (hec_run["tmp"] / "events.ndjson").read_text()
    for k in keys:
        for where in (blob, file_blob, proc.stdout, proc.stderr):
            assert k not in where
    assert HEC_TOKEN not in proc.stdout + proc.stderr + blob
    expected = {
        hmac.new(HASH_KEY.encode(), k.encode(), hashlib.sha256).hexdigest()[:24] for k in keys
    }
    seen = {e["event"]["api_key_id"] for e in hec_run["server"].events} - {None}
    assert seen and seen <= expected


def test_file_sink_matches_hec(hec_run: dict) -> None:
    lines = (hec_run["tmp"] / "events.ndjson").read_text().splitlines()
    from_file = sorted(orjson.loads(x)["event_id"] for x in lines)
    from_hec = sorted(e["event"]["event_id"] for e in hec_run["server"].events)
    assert from_file == from_hec


def test_summary_table_printed(hec_run: dict) -> None:
    out = hec_run["proc"].stdout
    assert "model" in out and "status" in out and "total" in out
    assert "cancelled" in out and "rate_limited" in out


def test_bad_input_is_counted_and_the_rest_flows(tmp_path: Path) -> None:
    access = tmp_path / "access.log"
    body = tmp_path / "body.log"
    a_lines = (LOGS / "access.log").read_bytes().splitlines()[:20]
    b_lines = (LOGS / "body.log").read_bytes().splitlines()
    ids = {orjson.loads(x)["request_id"] for x in a_lines}
    keep = [x for x in b_lines if orjson.loads(x)["request_id"] in ids]
    bad_sse = orjson.dumps({"ts": 1.0, "request_id": "badsse", "data": "data: {not json}\n\n"})
    bad_access = orjson.dumps(
        {"ts": 2.0, "request_id": "badsse", "uri": "/v1/chat/completions", "status": 200}
    )
    access.write_bytes(
        b"\n".join([*a_lines[:10], b"{this is not json", *a_lines[10:], bad_access]) + b"\n"
    )
    orphan = orjson.dumps({"ts": 1.0, "request_id": "nobody-knows", "data": "data: [DONE]\n\n"})
    orphan_end = orjson.dumps({"ts": 1.0, "request_id": "nobody-knows", "end": "complete"})
    body.write_bytes(
        b"\n".join([keep[0], b'{"request_id": 5, "data"', orphan, bad_sse, *keep[1:], orphan_end])
        + b"\n"
        + orjson.dumps({"ts": 3.0, "request_id": "badsse", "end": "complete"})
        + b"\n"
    )
    cfg = write_config(
        tmp_path, access, body, [{"type": "file", "path": str(tmp_path / "ev.ndjson")}]
    )
    proc = run_cli(["run", "--once", "-c", str(cfg)], cwd=tmp_path, env={"SIDECAR_HASH_KEY": "k"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = [orjson.loads(x) for x in (tmp_path / "ev.ndjson").read_text().splitlines()]
    got = {e["request_id"] for e in events}
    assert ids <= got, "every good request still flows"
    assert "nobody-knows" in got and "badsse" in got
    orphan_ev = next(e for e in events if e["request_id"] == "nobody-knows")
    assert "expired_no_access" in orphan_ev["flags"]
    bad_ev = next(e for e in events if e["request_id"] == "badsse")
    assert "malformed_events" in bad_ev["flags"]
    out = proc.stdout
    assert "malformed records set aside: 2" in out
    assert "access_invalid_json 1" in out and "body_invalid_json 1" in out
    assert "body records for requests with no access line: 1" in out
    assert "SSE payloads that were not JSON: 1" in out
    aside = [
        orjson.loads(x) for x in (tmp_path / "state" / "malformed.ndjson").read_text().splitlines()
    ]
    assert {a["reason"] for a in aside} == {"access_invalid_json", "body_invalid_json"}
    # the position points at the bad bytes in the original file
    a = next(x for x in aside if x["reason"] == "access_invalid_json")
    with open(a["path"], "rb") as fh:
        fh.seek(a["offset"])
        assert fh.read(a["length"]) == b"{this is not json"


def test_readme_default_command_on_a_fresh_copy(tmp_path: Path) -> None:
    """The README's first command: the shipped config.yaml on the bundled logs, no Splunk."""
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    shutil.copytree(LOGS, tmp_path / "examples" / "logs")
    env = {k: v for k, v in os.environ.items() if k != "SIDECAR_HASH_KEY"}
    proc = subprocess.run(
        [sys.executable, "-m", "sidecar.cli", "run", "--once"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    truth = json.loads((LOGS / "truth.json").read_text())
    lines = (tmp_path / "out" / "events.ndjson").read_text().splitlines()
    assert len(lines) == len(truth)
    assert "total" in proc.stdout
    assert (tmp_path / ".sidecar-state" / "hash_key").stat().st_mode & 0o077 == 0


def test_bodies_style_log_gives_the_true_usage(tmp_path: Path) -> None:
    """The other body-log style: one `bodies` record per response, from the same generator."""
    gen = subprocess.run(
        [
            sys.executable,
            str(REPO / "examples" / "generate.py"),
            "--requests",
            "80",
            "--seed",
            "5",
            "--style",
            "bodies",
            "--out",
            str(tmp_path / "logs"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert gen.returncode == 0, gen.stderr
    cfg = write_config(
        tmp_path,
        tmp_path / "logs" / "access.log",
        tmp_path / "logs" / "body.log",
        [{"type": "file", "path": str(tmp_path / "ev.ndjson")}],
    )
    data = yaml.safe_load(cfg.read_text())
    data["sources"][0]["body_log"]["format"] = {"type": "bodies"}
    cfg.write_text(yaml.safe_dump(data))
    proc = run_cli(["run", "--once", "-c", str(cfg)], cwd=tmp_path, env={"SIDECAR_HASH_KEY": "k"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    truth = json.loads((tmp_path / "logs" / "truth.json").read_text())
    events = {
        e["request_id"]: e
        for e in map(orjson.loads, (tmp_path / "ev.ndjson").read_text().splitlines())
    }
    assert set(events) == set(truth)
    for rid, t in truth.items():
        ev = events[rid]
        assert ev["status"] == t["status"], (rid, ev["status"], t)
        if t.get("output_tokens") is not None:
            for f in TOKEN_FIELDS:
                assert ev[f] == t[f], (rid, f)


def test_gzip_body_is_detected_counted_and_explained(tmp_path: Path) -> None:
    import gzip

    raw = gzip.compress(b'{"id":"chatcmpl-1","object":"chat.completion","usage":{}}')
    # What a proxy that forwards Accept-Encoding logs: the gzip bytes, as Latin-1 escapes.
    data = raw.decode("latin-1")
    access = tmp_path / "access.log"
    body = tmp_path / "body.log"
    access.write_bytes(
        orjson.dumps({"ts": 1.0, "request_id": "gz1", "uri": "/v1/chat/completions", "status": 200})
        + b"\n"
    )
    body.write_bytes(
        orjson.dumps({"ts": 1.0, "request_id": "gz1", "data": data})
        + b"\n"
        + orjson.dumps({"ts": 1.0, "request_id": "gz1", "end": "complete"})
        + b"\n"
    )
    cfg = write_config(
        tmp_path, access, body, [{"type": "file", "path": str(tmp_path / "e.ndjson")}]
    )
    proc = run_cli(["run", "--once", "-c", str(cfg)], cwd=tmp_path, env={"SIDECAR_HASH_KEY": "k"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    (ev,) = [orjson.loads(x) for x in (tmp_path / "e.ndjson").read_text().splitlines()]
    assert "compressed_body" in ev["flags"] and ev["cost_status"] == "no_usage"
    assert "Accept-Encoding" in proc.stderr
    assert "gzip bodies (clear Accept-Encoding in the proxy): 1" in proc.stdout
