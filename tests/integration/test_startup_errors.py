"""Start-up problems end with one sentence naming the path and the fix, a non-zero exit and no
traceback; `validate` explains range and http:// errors the same way."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sidecar.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def config(tmp: Path, **kw: object) -> Path:
    (tmp / "a.log").touch()
    (tmp / "b.log").touch()
    data = {
        "sources": [
            {"name": "p", "access_log": {"paths": ["a.log"]}, "body_log": {"paths": ["b.log"]}}
        ],
        "state_dir": "state",
        "identity": {"hash_key": "k"},
        "sinks": [{"type": "file", "path": "out/events.ndjson"}],
        **kw,
    }
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def one_sentence(res: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in res.stderr, res.stderr
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, res.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({"state_dir": "blocker/state"}, "state_dir: cannot create"),
        ({"sinks": [{"type": "file", "path": "blocker/events.ndjson"}]}, "sinks[0].path"),
        ({"sources": [{"name": "p", "access_log": {"paths": ["nope-*.log"]}}]}, "no file"),
        ({"join": {"expire_after_secs": 0}}, "join.expire_after_secs: 0.0 is out of range"),
        ({"unknown_key": 1}, "unknown_key: unknown key"),
    ],
    ids=["state_dir", "sink_path", "no_file", "range", "unknown_key"],
)
def test_run_startup_errors_are_one_sentence(tmp_path: Path, kw: dict, expected: str) -> None:
    (tmp_path / "blocker").write_text("a file where a folder should be")
    res = cli("run", "--once", "-c", str(config(tmp_path, **kw)), cwd=tmp_path)
    assert res.returncode == 2
    line = one_sentence(res)
    assert expected in line
    assert line.startswith(str(tmp_path / "config.yaml"))


def test_validate_explains_http_and_exits_non_zero(tmp_path: Path) -> None:
    sink = {"type": "hec", "endpoints": ["http://splunk.example.com:8088"], "token": "t\n"}
    res = cli("validate", "-c", str(config(tmp_path, sinks=[sink])), cwd=tmp_path)
    assert res.returncode == 2
    line = one_sentence(res)
    assert "sinks[0].endpoints[0]" in line and "allow_insecure_http: true" in line
