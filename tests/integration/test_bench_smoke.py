"""The end-to-end benchmark's own parts stay right (fast: the 200 example requests, no timing):
its truth check passes on the sidecar's events and catches a wrong one, and the naive baseline
it measures against delivers every request with the true tokens."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from sidecar.testing import HecTestServer, TokenSettings
from tests.logs import file_sink_config, run_once

REPO = Path(__file__).resolve().parents[2]
LOGS = REPO / "examples" / "logs"


@pytest.fixture(scope="module")
def e2e() -> ModuleType:
    if str(REPO / "bench") not in sys.path:  # as when it runs as a script: it imports its sibling
        sys.path.insert(0, str(REPO / "bench"))
    spec = importlib.util.spec_from_file_location("bench_e2e", REPO / "bench" / "bench_e2e.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_truth_check_on_the_sidecars_events(e2e: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "events.ndjson"
    run_once("-c", str(file_sink_config(tmp_path, LOGS)), cwd=REPO)
    res = e2e.verify(LOGS / "truth.json", out, "file")
    assert res["exact"], res
    assert res["events"] == res["truth"] == 200 and res["cost_checked"] > 150

    # one event with a wrong cost and one missing: both are reported
    lines = out.read_bytes().splitlines()[:-1]
    i = next(i for i, x in enumerate(lines) if json.loads(x)["cost_status"] == "priced")
    ev = json.loads(lines[i])
    ev["estimated_cost_usd"] += 0.000001
    lines[i] = json.dumps(ev).encode()
    bad = tmp_path / "bad.ndjson"
    bad.write_bytes(b"\n".join(lines) + b"\n")
    res = e2e.verify(LOGS / "truth.json", bad, "file")
    assert not res["exact"] and res["problems"]["cost"] >= 1 and res["problems"]["missing"] == 1


def test_naive_baseline_delivers_the_truth(e2e: ModuleType, tmp_path: Path) -> None:
    hec = HecTestServer({e2e.TOKEN: TokenSettings()})
    url, stop = hec.run_in_thread()
    try:
        proc = subprocess.run(
            [
                *(sys.executable, str(REPO / "bench" / "naive_shipper.py")),
                *(str(LOGS / "access.log"), str(LOGS / "body.log"), url, e2e.TOKEN),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        stop()
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "events sent 200"
    assert len(hec.requests) == 200  # one request per event
    accepted = tmp_path / "accepted.ndjson"
    accepted.write_text("".join(json.dumps({"event": e}) + "\n" for e in hec.events))
    res = e2e.verify(LOGS / "truth.json", accepted, "naive")
    assert res["exact"], res


def test_delivery_bench_delivers_every_event_through_each_sink(tmp_path: Path) -> None:
    """bench_delivery.py: the spool and each sink deliver every event (its children check the
    count), and it prints a figure per sink."""
    run_once("-c", str(file_sink_config(tmp_path, LOGS)), cwd=REPO)
    argv = [
        sys.executable,
        str(REPO / "bench" / "bench_delivery.py"),
        str(tmp_path / "events.ndjson"),
    ]
    argv += ["--repeat=1", "--batch=20", "--period-ms=1"]
    out = subprocess.run(argv, check=True, capture_output=True, text=True, cwd=REPO).stdout
    for kind in ("null", "file", "hec"):
        assert f"{kind:5s} 200 events, delivery CPU" in out.replace("round 1/1 ", ""), out
        assert any(
            line.startswith(f"{kind:5s} ") and "us per event" in line for line in out.splitlines()
        )


def test_tokenizer_load_bench_loads_the_encoding() -> None:
    """bench_tokenizer_load.py: its children load the encoding (each checks a count, so a
    fall-back to the heuristic fails the run) and it prints one row of figures."""
    argv = [sys.executable, str(REPO / "bench" / "bench_tokenizer_load.py")]
    argv += ["--repeat=1", "--encoding=cl100k_base"]
    out = subprocess.run(argv, check=True, capture_output=True, text=True, cwd=REPO).stdout
    rows = [line.split() for line in out.splitlines() if line.endswith(sys.executable)]
    assert len(rows) == 1 and len(rows[0]) == 7, out
    cpu, user, sys_, hwm, rss, py_peak = map(float, rows[0][:6])
    assert cpu > 0 and user >= 0 and sys_ >= 0 and 5 < hwm < 200 and 5 < py_peak < 100, out
    assert 20 < rss < 300, out  # the interpreter, imports and the encoding's tables
