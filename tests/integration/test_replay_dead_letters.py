"""`llm-hec-sidecar replay-dead-letters` as a real process against the HEC test server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import yaml

from sidecar.sinks.hec.deadletter import DeadLetterFile
from sidecar.testing import HecTestServer, TokenSettings

TOKEN = "0b9c8d7e-6f5a-4b3c-8d2e-1f0a9b8c7d6e"


def envelope(i: int) -> bytes:
    return orjson.dumps({"time": "1700000000.500", "index": "llm", "event": {"event_id": f"e{i}"}})


def replay(tmp: Path, url: str) -> subprocess.CompletedProcess[str]:
    cfg = {
        "sources": [{"access_log": {"paths": [str(tmp / "access.log")]}}],
        "state_dir": str(tmp / "state"),
        "sinks": [
            {"type": "file", "path": str(tmp / "out.ndjson")},
            {
                "type": "hec",
                "endpoints": [url],
                "token": TOKEN,
                "allow_insecure_http": True,
                "retry": {"initial_backoff_secs": 0.05, "max_backoff_secs": 0.1},
            },
        ],
    }
    (tmp / "config.yaml").write_text(yaml.safe_dump(cfg))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "sidecar.cli",
            "replay-dead-letters",
            "-c",
            str(tmp / "config.yaml"),
            "--timeout-secs",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_replay_after_the_fix_delivers_and_keeps_what_is_refused_again(tmp_path: Path) -> None:
    dead = tmp_path / "state" / "dead-letter.ndjson"
    dead.parent.mkdir(parents=True)
    lines = [DeadLetterFile.record(envelope(i), "HTTP 400, code 7", 7, 400) for i in range(6)]
    lines.append(DeadLetterFile.record(None, "cannot encode", None, None))  # nothing to send
    dead.write_bytes(b"".join(lines))

    # Not fixed yet: index llm is still not allowed; everything is refused again, nothing lost.
    hec = HecTestServer({TOKEN: TokenSettings(indexes=["main"])})
    url, stop = hec.run_in_thread()
    try:
        first = replay(tmp_path, url)
        assert first.returncode == 3, first.stderr
        assert "0 delivered, 6 refused again and 1 not sent" in first.stdout
        assert len(dead.read_bytes().splitlines()) == 7 and hec.events == []
        hec.tokens[TOKEN].indexes = ["main", "llm"]  # the fix
        second = replay(tmp_path, url)
    finally:
        stop()
    assert second.returncode == 3, second.stderr
    assert "6 delivered, 0 refused again and 1 not sent" in second.stdout
    assert sorted(e["event"]["event_id"] for e in hec.events) == [f"e{i}" for i in range(6)]
    (left,) = [orjson.loads(x) for x in dead.read_bytes().splitlines()]
    assert left["envelope"] is None and left["reason"] == "cannot encode"
    assert not (tmp_path / "state" / "dead-letter.ndjson.replaying").exists()
