"""Chaos: 20,000 requests written while both logs rotate and the sidecar is SIGKILLed and
restarted at random moments. Every request must arrive at least once; every duplicate must be
the same event (same event_id, same content); duplicates stay within what was in flight at each
kill (at most 1,000 per kill, where reading a log again from its start would re-send thousands).
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import orjson
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
N_REQUESTS = 20_000
WRITE_SECS = 22.0
ROTATE_SECS = 3.0
MIN_KILLS = 5


def generate(out: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            str(REPO / "examples" / "generate.py"),
            "--requests",
            str(N_REQUESTS),
            "--chunks-per-stream",
            "2",
            "--seed",
            "8",
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
    )


def start_sidecar(cfg: Path, log: Path) -> subprocess.Popen:
    with log.open("ab") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "sidecar.cli", "run", "-c", str(cfg)],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


def size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def wait_working(ckpt: Path, started: float, out: Path, size0: int, writing: bool) -> None:
    """Until this run has written a checkpoint and (while there is input) events."""
    end = time.monotonic() + 60
    while time.monotonic() < end:
        if ckpt.exists() and ckpt.stat().st_mtime > started and (size(out) > size0 or not writing):
            return
        time.sleep(0.05)
    raise AssertionError("the sidecar wrote no checkpoint or no event")


def wait_started(err_log: Path, proc: subprocess.Popen) -> None:
    """Until the sidecar has started (it logs its /health endpoint, or that it cannot listen,
    once its readers have been made: their files are open)."""
    end = time.monotonic() + 60
    while time.monotonic() < end:
        if b"/health and /metrics" in err_log.read_bytes():
            return
        assert proc.poll() is None, err_log.read_text(errors="replace")[-2000:]
        time.sleep(0.05)
    raise AssertionError("the sidecar did not start")


def read_events(path: Path) -> tuple[list[dict], int]:
    events, torn = [], 0
    if path.exists():
        for line in path.read_bytes().splitlines():
            if not line.strip():
                continue
            try:
                events.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                torn += 1  # a write cut by SIGKILL; the event was not durable, so it is re-sent
    return events, torn


@pytest.mark.slow
def test_sigkill_and_rotation_lose_nothing_and_duplicate_only_whole_events(
    tmp_path: Path,
) -> None:
    src, logs = tmp_path / "src", tmp_path / "logs"
    logs.mkdir()
    generate(src)
    truth = orjson.loads((src / "truth.json").read_bytes())
    truth_ids = set(truth)
    assert len(truth_ids) == N_REQUESTS
    out = tmp_path / "events.ndjson"
    cfg = {
        "sources": [
            {
                "name": "proxy",
                # plain paths: files renamed away are found again by their inode after a restart
                "access_log": {"paths": [str(logs / "access.log")]},
                "body_log": {"paths": [str(logs / "body.log")]},
                "poll_interval_secs": 0.05,
                "rotate_wait_secs": 1.0,
            }
        ],
        "identity": {"hash_key": "chaos"},
        # Calibration learns per-model ratios from the streams seen so far in one process, so a
        # request replayed after a restart could get another estimate: off, to compare content.
        "tokens": {"calibrate": False},
        "join": {"expire_after_secs": 300},
        # A duplicate is an event made durable after the last checkpoint write: the writes are
        # paced tighter than the defaults (0.2 s each) so that the group being committed at a
        # kill stays small at this rate (~1,000 requests/s, several times that while catching
        # up after a restart).
        "checkpoint": {"interval_secs": 0.01},
        "state_dir": str(tmp_path / "state"),
        # The spool fsyncs each batch (at most every 5 ms here): then the events are durable.
        "spool": {"fsync_interval_ms": 5, "cursor_interval_ms": 5},
        "sinks": [{"type": "file", "path": str(out)}],
    }
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    err_log = tmp_path / "sidecar.stderr"
    rng = random.Random(8)

    ckpt = tmp_path / "state" / "checkpoints.json"
    started, size0 = time.time(), 0
    # The sidecar looks at the logs first (the proxy's, empty): on a first start, a file rotated
    # away before its first look is history (`start_at` applies), and a loaded machine can take
    # longer than a rotation to start.
    for name in ("access.log", "body.log"):
        (logs / name).touch()
    proc = start_sidecar(cfg_path, err_log)
    writer = None
    kills = 0
    try:
        wait_started(err_log, proc)
        writer = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).parent / "chaos_writer.py"),
                str(src),
                str(logs),
                str(WRITE_SECS),
                str(ROTATE_SECS),
                "8",
            ]
        )
        while writer.poll() is None or kills < MIN_KILLS:
            # A random moment while it works: once this run has written a checkpoint and events
            # (start-up, a few seconds on a busy machine, is not an interesting moment to die).
            wait_working(ckpt, started, out, size0, writer.poll() is None)
            time.sleep(rng.uniform(0.3, 5.0))
            assert proc.poll() is None, err_log.read_text(errors="replace")[-2000:]
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            time.sleep(rng.uniform(0.0, 0.5))
            started, size0 = time.time(), size(out)
            proc = start_sidecar(cfg_path, err_log)
        assert writer.wait() == 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            events, _ = read_events(out)
            if {e["request_id"] for e in events} >= truth_ids:
                break
            time.sleep(0.5)
        wait_working(ckpt, started, out, size0, writing=False)  # its handlers are installed
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        for p in (proc, writer):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()

    events, torn = read_events(out)
    by_id: dict[str, list[dict]] = defaultdict(list)
    for e in events:
        by_id[e["request_id"]].append(e)
    missing = truth_ids - set(by_id)
    duplicates = len(events) - len(by_id)
    rate = duplicates / N_REQUESTS
    rotated = len(list(logs.glob("access.log.*"))) + len(list(logs.glob("body.log.*")))
    print(
        f"\nchaos: {N_REQUESTS} requests, {kills} SIGKILLs, {rotated} rotations, "
        f"{len(events)} events, {duplicates} duplicates ({rate:.3%}), {torn} torn lines"
    )
    assert not missing, f"{len(missing)} requests lost, e.g. {sorted(missing)[:3]}"
    assert set(by_id) == truth_ids
    for rid, evs in by_id.items():
        for e in evs[1:]:
            assert e == evs[0], f"request {rid}: a duplicate differs from the first event"
    # Every request was rebuilt whole, also those cut by a kill: its usage is the true one.
    wrong = []
    for rid, evs in by_id.items():
        t, e = truth[rid], evs[0]
        fields = ["status", "http_status", "is_streaming"]
        if t.get("output_tokens") is not None:
            fields += ["model", "input_tokens", "cached_input_tokens", "output_tokens"]
        wrong += [(rid, f, e[f], t[f]) for f in fields if e[f] != t[f]]
        if "truncated" in e["flags"] or "expired_no_access" in e["flags"]:
            wrong.append((rid, "flags", e["flags"], None))
    assert not wrong, f"{len(wrong)} wrong fields, e.g. {wrong[:3]}"
    # What a kill re-sends is what was in flight then: events made durable (or delivered) since
    # the last checkpoint (or spool cursor) write, about throughput x commit latency. On an idle
    # machine that is 0-0.5 % of the requests over 5-6 kills; on a loaded 2-core machine the
    # commits lag and 80-120 per kill were measured (0.7-3.6 %), and once, with seven other
    # processes on the two cores, 515 per kill (the sidecar descheduled between its commits).
    # The failure this guards against, a restart reading a log again from the start, re-sends
    # everything read so far: with the kills spread over the 20,000 requests, about 10,000 per
    # kill on average. 1,000 per kill sits well between.
    assert duplicates <= 1000 * kills, f"{duplicates} duplicates over {kills} kills"
    assert torn <= kills
    assert kills >= MIN_KILLS
    assert "Traceback" not in err_log.read_text(errors="replace")
