"""`llm-hec-sidecar run` in follow mode, as a real process: appends, rotation, SIGHUP, SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import yaml

from tests.logs import append, custom_request

REPO = Path(__file__).resolve().parents[2]
LOGS = REPO / "examples" / "logs"


def wait_for(pred, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [orjson.loads(x) for x in path.read_bytes().splitlines() if x.strip()]


def test_follow_rotation_sighup_and_clean_sigterm(tmp_path: Path) -> None:
    access, body = tmp_path / "access.log", tmp_path / "body.log"
    access.touch()
    body.touch()
    overrides = tmp_path / "prices.yaml"
    overrides.write_text(
        yaml.safe_dump(
            [{"model": "my-llama-70b", "input_usd_per_mtok": "1", "output_usd_per_mtok": "1"}]
        )
    )
    out = tmp_path / "events.ndjson"
    cfg = {
        "sources": [
            {
                "name": "proxy",
                "access_log": {"paths": [str(tmp_path / "access.log*")]},
                "body_log": {"paths": [str(body)]},
                "poll_interval_secs": 0.05,
            }
        ],
        "join": {"expire_after_secs": 5},
        "identity": {"hash_key": "k"},
        "pricing": {"overrides_file": str(overrides)},
        "state_dir": str(tmp_path / "state"),
        "sinks": [{"type": "file", "path": str(out)}],
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.Popen(
        [sys.executable, "-m", "sidecar.cli", "run", "-c", str(tmp_path / "config.yaml")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        a_lines = (LOGS / "access.log").read_bytes().splitlines()
        b_lines = (LOGS / "body.log").read_bytes().splitlines()
        first = a_lines[:40]
        ids = {orjson.loads(x)["request_id"] for x in first}
        append(body, [x for x in b_lines if orjson.loads(x)["request_id"] in ids])
        append(access, first)
        wait_for(lambda: len(events(out)) == 40)

        # A custom model priced by the overrides file at $1 per million input tokens.
        acc, bod = custom_request("c" * 32, 1_000_000)
        append(body, bod)
        append(access, [acc])
        wait_for(lambda: len(events(out)) == 41)
        assert events(out)[-1]["estimated_cost_usd"] == 1.0
        assert events(out)[-1]["pricing_source"] == "override"

        # SIGHUP re-reads the overrides: $2 from now on.
        overrides.write_text(
            yaml.safe_dump(
                [{"model": "my-llama-70b", "input_usd_per_mtok": "2", "output_usd_per_mtok": "2"}]
            )
        )
        proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        # Rename rotation of the access log (the glob picks up the new file).
        os.rename(access, tmp_path / "access.log.1")
        access.touch()
        acc, bod = custom_request("d" * 32, 1_000_000)
        append(body, bod)
        append(access, [acc])
        wait_for(lambda: len(events(out)) == 42)
        assert events(out)[-1]["request_id"] == "d" * 32
        assert events(out)[-1]["estimated_cost_usd"] == 2.0

        # A body whose access line never comes is emitted after expire_after_secs, flagged.
        append(
            body, [orjson.dumps({"ts": 1.0, "request_id": "e" * 32, "data": "data: [DONE]\n\n"})]
        )
        wait_for(lambda: len(events(out)) == 43, timeout=20)
        assert "expired_no_access" in events(out)[-1]["flags"]

        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr[-2000:]
    assert "SIGTERM received" in stderr
    assert "total" in stdout
    got = [e["request_id"] for e in events(out)]
    assert len(got) == len(set(got)) == 43
