"""The join under a backlog, as real processes over the example generator's large mode:
`run --once` over 100,000 requests with the default settings gives every request its true
status and tokens, with no late record; the same logs written while a follow-mode process reads
them give identical events; a 429 with no body appears promptly, unflagged."""

from __future__ import annotations

import importlib.util
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import orjson
import pytest
import yaml

from tests.logs import TOKEN_FIELDS

REPO = Path(__file__).resolve().parents[2]


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "examples_generate_i9", REPO / "examples" / "generate.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def write_config(
    tmp: Path, access: Path, body: Path, out: Path, top: dict | None = None, **extra: object
) -> Path:
    cfg = {
        "sources": [
            {
                "name": "proxy",
                "access_log": {"paths": [str(access)]},
                "body_log": {"paths": [str(body)]},
                **extra,
            }
        ],
        "identity": {"hash_key": "k"},
        "state_dir": str(tmp / "state"),
        "sinks": [{"type": "file", "path": str(out)}],
        **(top or {}),
    }
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [orjson.loads(x) for x in path.read_bytes().splitlines() if x.strip()]


def run_once(
    tmp: Path, logs: Path, top: dict | None = None
) -> tuple[subprocess.CompletedProcess, list[dict]]:
    out = tmp / "events.ndjson"
    cfg = write_config(tmp, logs / "access.log", logs / "body.log", out, top)
    proc = subprocess.run(
        [sys.executable, "-m", "sidecar.cli", "run", "--once", "-c", str(cfg)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, events(out)


def mismatches(evs: list[dict], truth: dict) -> list[tuple]:
    bad: list[tuple] = []
    seen = [e["request_id"] for e in evs]
    if len(seen) != len(set(seen)):
        bad.append(("request emitted twice",))
    bad += [("missing", rid) for rid in set(truth) - set(seen)]
    for e in evs:
        t = truth.get(e["request_id"])
        if t is None:
            bad.append(("unexpected", e["request_id"]))
            continue
        if (e["status"], e["http_status"]) != (t["status"], t["http_status"]):
            bad.append(("status", e["request_id"], e["status"], t["status"], e["flags"]))
        elif any(f.startswith("expired") for f in e["flags"]):
            bad.append(("expired", e["request_id"], e["flags"]))
        elif t.get("output_tokens") is not None:
            got = [e[f] for f in TOKEN_FIELDS]
            if e["tokens_estimated"] or got != [t[f] for f in TOKEN_FIELDS]:
                bad.append(("tokens", e["request_id"], got, t))
    return bad


@pytest.fixture(scope="session")
def backlog_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """100,000 requests of the large mode, generated once per session. The events per stream
    are scaled down tenfold (2 to 40, median 12) to keep the suite's time budget; the full
    shape (20 to 400, median 120) is the same code path, measured in bench/bench_join_memory.py
    and by hand (docs/architecture.md)."""
    out = tmp_path_factory.mktemp("backlog")
    load_generator().generate(out, 100_000, seed=9, mix="large", concurrency=50, chunk_scale=0.1)
    return out


@pytest.mark.slow
def test_backlog_of_100k_requests_gives_the_truth(
    backlog_logs: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    proc, evs = run_once(tmp_path_factory.mktemp("once"), backlog_logs)
    truth = orjson.loads((backlog_logs / "truth.json").read_bytes())
    assert len(truth) == 100_000
    bad = mismatches(evs, truth)
    assert not bad, (len(bad), bad[:5])
    for label in ("records after their request was emitted", "emitted early", "expired"):
        assert label not in proc.stdout, proc.stdout[-2000:]


def merged_lines(logs: Path) -> list[tuple[float, int, bytes]]:
    """Both logs' lines in time order, access lines after body lines of the same time (the
    access line is written when the request ends, after its body)."""
    out: list[tuple[float, int, bytes]] = []
    for kind, name in ((0, "body.log"), (1, "access.log")):
        for ln in (logs / name).read_bytes().splitlines(keepends=True):
            out.append((float(orjson.loads(ln)["ts"]), kind, ln))
    out.sort(key=lambda x: (x[0], x[1]))
    return out


@pytest.mark.slow
def test_follow_while_written_gives_the_same_events_as_once(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    logs = tmp_path_factory.mktemp("follow_logs")
    load_generator().generate(logs, 2_500, seed=5, mix="large", concurrency=50, chunk_scale=0.2)
    # Token calibration learns from events in the order they are enriched, which two runs need
    # not share; without it every field of every event must be the same.
    fixed = {"tokens": {"calibrate": False}}
    _, once = run_once(tmp_path_factory.mktemp("once4k"), logs, fixed)
    assert not mismatches(once, orjson.loads((logs / "truth.json").read_bytes()))

    tmp = tmp_path_factory.mktemp("follow")
    access, body, out = tmp / "access.log", tmp / "body.log", tmp / "events.ndjson"
    access.touch()
    body.touch()
    cfg = write_config(tmp, access, body, out, fixed, poll_interval_secs=0.05)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sidecar.cli", "run", "-c", str(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = merged_lines(logs)
        slices = 30  # a steady pace: one slice of both logs every 0.1 s
        step = -(-len(lines) // slices)
        with access.open("ab") as fa, body.open("ab") as fb:
            for i in range(0, len(lines), step):
                for _, kind, ln in lines[i : i + step]:
                    (fa if kind else fb).write(ln)
                fa.flush()
                fb.flush()
                time.sleep(0.1)
        deadline = time.monotonic() + 60
        while len(events(out)) < len(once) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    follow = events(out)
    assert len(follow) == len(once)
    by_id = {e["event_id"]: e for e in once}
    differ = [e["request_id"] for e in follow if by_id.get(e["event_id"]) != e]
    assert not differ, differ[:5]


def test_429_without_body_appears_promptly_and_unflagged(tmp_path: Path) -> None:
    access, body, out = tmp_path / "access.log", tmp_path / "body.log", tmp_path / "ev.ndjson"
    body.write_bytes(orjson.dumps({"ts": time.time(), "request_id": "x", "end": "complete"}))
    body.write_bytes(b"")
    access.touch()
    cfg = write_config(tmp_path, access, body, out, poll_interval_secs=0.05)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sidecar.cli", "run", "-c", str(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)  # let it start and reach the end of both (empty) files
        line = {
            "ts": time.time(),
            "request_id": "r429",
            "uri": "/v1/chat/completions",
            "status": 429,
            "upstream_host": "api.openai.com",
        }
        with access.open("ab") as fh:
            fh.write(orjson.dumps(line) + b"\n")
        seen_at = time.monotonic()
        # join.expire_after_secs is 60: anything well below proves it was not expiry
        while not events(out) and time.monotonic() - seen_at < 20:
            time.sleep(0.05)
        waited = time.monotonic() - seen_at
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    evs = events(out)
    assert [e["request_id"] for e in evs] == ["r429"], waited
    assert evs[0]["status"] == "rate_limited" and evs[0]["flags"] == []
    assert waited < 20


def chat_request(rid: str, t: float, prompt: int, completion: int) -> tuple[bytes, list[bytes]]:
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": 0}
    chunks = [
        'data: {"id":"c","object":"chat.completion.chunk","model":"gpt-4o-mini-2024-07-18",'
        '"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}\n\n',
        'data: {"id":"c","object":"chat.completion.chunk","model":"gpt-4o-mini-2024-07-18",'
        '"choices":[],"usage":' + orjson.dumps(usage).decode() + "}\n\ndata: [DONE]\n\n",
    ]
    body = [
        orjson.dumps({"ts": t + i * 0.1, "request_id": rid, "data": c})
        for i, c in enumerate(chunks)
    ]
    body.append(orjson.dumps({"ts": t + 0.3, "request_id": rid, "end": "complete"}))
    access = orjson.dumps(
        {
            "ts": t + 0.3,
            "request_id": rid,
            "uri": "/v1/chat/completions",
            "status": 200,
            "upstream_host": "api.openai.com",
            "request_completion": "OK",
            "resp_content_type": "text/event-stream",
        }
    )
    return access, body


def test_two_requests_with_one_id_are_both_accounted(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    a1, b1 = chat_request("dup1", 1000.0, 100, 50)
    a2, b2 = chat_request("dup1", 1005.0, 7000, 3000)
    (logs / "body.log").write_bytes(b"\n".join([*b1, *b2]) + b"\n")
    (logs / "access.log").write_bytes(a1 + b"\n" + a2 + b"\n")
    proc, evs = run_once(tmp_path, logs)
    got = sorted(((e["input_tokens"], e["output_tokens"], e["flags"]) for e in evs), key=str)
    assert got == [(100, 50, []), (7000, 3000, ["duplicate_request_id"])]
    assert len({e["event_id"] for e in evs}) == 2
    assert "second requests with an id already seen: 1" in proc.stdout
    # a replay of the same logs gives the same two event ids
    (tmp_path / "again").mkdir()
    _, again = run_once(tmp_path / "again", logs)
    assert sorted(e["event_id"] for e in again) == sorted(e["event_id"] for e in evs)
