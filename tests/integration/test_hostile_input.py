"""The reproductions of the hostile-input review, each against the real `llm-hec-sidecar run`
process and real files: follow mode with a restart after the hostile lines (no crash loop), and
`run --once` for the values that used to become silent $0s, reprs or wall-clock times."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import yaml

from tests.logs import append

T0 = 1_795_472_000.0


def chat_stream(model: str, usage: dict | None) -> str:
    head = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": model}
    events = [
        {**head, "choices": [{"index": 0, "delta": {"content": "hello there"}}]},
        {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ]
    if usage is not None:
        events.append({**head, "choices": [], "usage": usage})
    return "".join(f"data: {orjson.dumps(e).decode()}\n\n" for e in events) + "data: [DONE]\n\n"


def request(rid, ts: float, *, usage: dict | None = None, end: bool = True, **access) -> tuple:
    a = {
        "ts": ts,
        "request_id": rid,
        "uri": "/v1/chat/completions",
        "status": 200,
        "request_time": "0.100",
        "upstream_host": "api.openai.com",
        **access,
    }
    u = {"prompt_tokens": 10, "completion_tokens": 5} if usage is None else usage
    body = [orjson.dumps({"ts": ts - 0.05, "request_id": rid, "data": chat_stream("gpt-4o", u)})]
    if end:
        body.append(orjson.dumps({"ts": ts, "request_id": rid, "end": "complete"}))
    return json.dumps(a).encode(), body


def write_config(tmp: Path, **extra) -> Path:
    cfg = {
        "sources": [
            {
                "name": "proxy",
                "access_log": {"paths": [str(tmp / "access.log")]},
                "body_log": {"paths": [str(tmp / "body.log")]},
                "poll_interval_secs": 0.05,
            }
        ],
        "join": {"expire_after_secs": 1},
        "identity": {"hash_key": "k"},
        "state_dir": str(tmp / "state"),
        "sinks": [
            {"type": "file", "path": str(tmp / "out" / "events.ndjson")},
            {"type": "file", "path": str(tmp / "out" / "envelopes.ndjson"), "envelope": True},
        ],
        **extra,
    }
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [orjson.loads(x) for x in path.read_bytes().splitlines() if x.strip()]


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sidecar.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


HOSTILE_ACCESS = [
    # The shipped nginx format logs X-Stainless-Retry-Count as a string; a client picks it.
    {"req_x_stainless_retry_count": "nan"},
    {"req_x_stainless_retry_count": "inf"},
    {"req_x_stainless_retry_count": "1e999"},
    {"status": "nan"},
    {"req_x_stainless_retry_count": 99999999999999999999999},
    {"resp_x_ratelimit_limit_requests": "99999999999999999999999"},
]


def wait_for(pred, timeout: float = 40.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


@pytest.mark.slow
def test_follow_mode_survives_hostile_lines_and_restarts_without_a_crash_loop(
    tmp_path: Path,
) -> None:
    access, body = [], []
    for i, extra in enumerate(HOSTILE_ACCESS):
        a, b = request(f"hostile-{i}", T0 + i, **extra)
        access.append(a)
        body += b
    # `"ts": "NaN"` and `"ts": 1e300` are unreadable required times: set aside.
    access.append(orjson.dumps({"ts": "NaN", "request_id": "bad-ts-1", "status": 200}))
    access.append(b'{"ts":1e300,"request_id":"bad-ts-2","status":200}')
    (tmp_path / "access.log").write_bytes(b"".join(x + b"\n" for x in access))
    (tmp_path / "body.log").write_bytes(b"".join(x + b"\n" for x in body))
    cfg = write_config(tmp_path)
    out = tmp_path / "out" / "events.ndjson"
    cmd = [sys.executable, "-m", "sidecar.cli", "run", "-c", str(cfg), "--quiet"]

    log = (tmp_path / "stderr.log").open("ab")
    proc = subprocess.Popen(cmd, cwd=tmp_path, stderr=log)
    try:
        wait_for(lambda: len(events(out)) >= len(HOSTILE_ACCESS))
        first = {e["request_id"]: e for e in events(out)}
        assert set(first) == {f"hostile-{i}" for i in range(len(HOSTILE_ACCESS))}
        assert (
            first["hostile-0"]["attempt"] is None
            and "fields_invalid" in first["hostile-0"]["flags"]
        )
        assert first["hostile-3"]["http_status"] is None
        assert first["hostile-4"]["attempt"] is None
        assert first["hostile-5"]["ratelimit_limit_requests"] is None
        # 30 later requests are all delivered: the sink task did not die.
        later = [request(f"later-{i}", T0 + 100 + i) for i in range(30)]
        append(tmp_path / "body.log", [x for _, b in later for x in b])
        append(tmp_path / "access.log", [a for a, _ in later])
        wait_for(lambda: len({e["request_id"] for e in events(out)}) == 36)
        assert proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

        # Restart over the same hostile lines: without its checkpoints (as after losing the
        # state folder) it reads them all again, and stays up.
        (tmp_path / "state" / "checkpoints.json").unlink()
        n_before = len(events(out))
        proc = subprocess.Popen(cmd, cwd=tmp_path, stderr=log)
        wait_for(lambda: len(events(out)) >= n_before + 36)
        time.sleep(0.5)
        assert proc.poll() is None, "the sidecar died after a restart over the hostile lines"
        evs = events(out)
        assert {e["request_id"] for e in evs} == set(first) | {f"later-{i}" for i in range(30)}
        by_id: dict[str, dict] = {}
        for e in evs:  # the same events again: same event_id, same content
            assert by_id.setdefault(e["event_id"], e) == e
        assert len(by_id) == 36
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        log.close()
    reasons = [
        orjson.loads(x)["reason"]
        for x in (tmp_path / "state" / "malformed.ndjson").read_bytes().splitlines()
    ]
    assert reasons.count("access_invalid_time") == 4  # twice each: once per read of the file


@pytest.mark.slow
def test_run_once_hostile_values(tmp_path: Path) -> None:
    lines: list[tuple[bytes, list[bytes]]] = [
        request("str-usage", T0, usage={"prompt_tokens": "1200", "completion_tokens": "300"}),
        request("huge-usage", T0 + 1, usage={"prompt_tokens": 10**16, "completion_tokens": 5}),
        request("tenant-list", T0 + 2, tenant=[1, 2], user={"x": 1}),
        request(12345, T0 + 3),  # an integer id on both logs
        request("caddyish", T0 + 4, api_key="Bearer sk-secret-1"),
    ]
    access = [a for a, _ in lines]
    body = [x for _, b in lines for x in b]
    # Ids of other types are set aside, never a repr.
    access.append(orjson.dumps({"ts": T0, "request_id": {"x": 1}, "status": 200}))
    access.append(orjson.dumps({"ts": T0, "request_id": ["a", "b"], "status": 200}))
    # The same numeric id written as a string on the body log joins too.
    a, b = request("777", T0 + 5)
    access.append(orjson.dumps({**orjson.loads(a), "request_id": 777}))
    body += b
    # A body-only request without an end record: its time is its own last body time.
    body.append(orjson.dumps({"ts": T0 + 50.5, "request_id": "orphan", "data": "data: {}\n\n"}))
    body.append(orjson.dumps({"ts": T0 + 51.25, "request_id": "orphan", "data": "data: {}\n\n"}))
    # Invalid UTF-8 in an access line: decoded, and counted.
    a, b = request("utf8", T0 + 6, user="cafX")
    access.append(a.replace(b"cafX", b"caf\xe9"))
    body += b
    (tmp_path / "access.log").write_bytes(b"".join(x + b"\n" for x in access))
    (tmp_path / "body.log").write_bytes(b"".join(x + b"\n" for x in body))
    cfg = write_config(tmp_path)

    res = cli("run", "-c", str(cfg), "--once", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = tmp_path / "out" / "events.ndjson"
    got = {e["request_id"]: e for e in events(out)}
    assert set(got) == {
        "str-usage",
        "huge-usage",
        "tenant-list",
        "12345",
        "777",
        "caddyish",
        "orphan",
        "utf8",
    }
    for rid in ("str-usage", "huge-usage"):
        ev = got[rid]
        assert "usage_invalid" in ev["flags"] and ev["cost_status"] != "priced"
        assert ev["tokens_estimated"] is True and ev["output_tokens"] > 0  # estimated, not $0
    assert got["tenant-list"]["tenant"] is None and got["tenant-list"]["user"] is None
    assert "fields_invalid" in got["tenant-list"]["flags"]
    assert got["12345"]["input_tokens"] == 10 and got["777"]["input_tokens"] == 10
    assert got["orphan"]["time"] == T0 + 51.25
    assert "time_from_clock" not in got["orphan"]["flags"]
    assert got["utf8"]["user"] is not None
    assert "fields nulled as invalid: 2: tenant 1, user 1" in res.stdout
    assert "access lines with invalid UTF-8 (replaced): 1" in res.stdout
    # `time` is a plain decimal in the envelope, never an exponent.
    raw = (tmp_path / "out" / "envelopes.ndjson").read_bytes()
    assert b'"time":1795472000.0' in raw and b"e+" not in raw
    # Every file the sidecar created is 0600.
    for f in ("out/events.ndjson", "out/envelopes.ndjson", "state/malformed.ndjson"):
        assert stat.S_IMODE(os.stat(tmp_path / f).st_mode) == 0o600, f
    reasons = [
        orjson.loads(x) for x in (tmp_path / "state/malformed.ndjson").read_bytes().splitlines()
    ]
    assert sorted(r["reason"] for r in reasons) == ["access_invalid_request_id"] * 2
    assert all(r["offset"] is not None for r in reasons)
    assert b"sk-secret-1" not in out.read_bytes()
