"""The sidecar as a real process: restarts resume from the checkpoint, a partial line waits for
its newline across a restart, an unreadable file does not stop the others (nor SIGTERM), and
hostile lines are set aside by position with bounded memory."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ACCESS = (REPO / "examples" / "logs" / "access.log").read_bytes().splitlines(keepends=True)


def write_config(tmp: Path, paths: list[str], **source: object) -> Path:
    cfg = {
        "sources": [
            {
                "name": "proxy",
                "access_log": {"paths": paths},
                "poll_interval_secs": 0.05,
                **source,
            }
        ],
        "identity": {"hash_key": "k"},
        "tokens": {"calibrate": False},
        "checkpoint": {"interval_secs": 0.1},
        "state_dir": str(tmp / "state"),
        "sinks": [{"type": "file", "path": str(tmp / "events.ndjson")}],
    }
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def start(cfg: Path, prefix: list[str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [*(prefix or []), sys.executable, "-m", "sidecar.cli", "run", "-c", str(cfg)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


def events(tmp: Path) -> list[dict]:
    p = tmp / "events.ndjson"
    return [orjson.loads(x) for x in p.read_bytes().splitlines() if x.strip()] if p.exists() else []


def wait_for(pred, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def checkpointed(tmp: Path, offset: int) -> bool:
    """The checkpoint commits `offset` of the access log."""
    p = tmp / "state" / "checkpoints.json"
    if not p.exists():
        return False
    doc = orjson.loads(p.read_bytes())
    return any(e["offset"] == offset for e in doc["tailers"]["proxy/access"].values())


def stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]
    return err


@pytest.mark.slow
def test_restart_resumes_from_saved_offsets_whatever_start_at_says(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(b"".join(ACCESS[:100]))
    cfg = write_config(tmp_path, [str(log)])
    proc = start(cfg)
    try:
        wait_for(lambda: len(events(tmp_path)) == 100)
        stop(proc)
        ckpt = tmp_path / "state" / "checkpoints.json"
        assert stat.S_IMODE(ckpt.stat().st_mode) == 0o600
        assert orjson.loads(ckpt.read_bytes())["version"] == 1
        with log.open("ab") as fh:  # written while the sidecar is stopped
            fh.write(b"".join(ACCESS[100:150]))
        cfg = write_config(tmp_path, [str(log)], start_at="end")  # known files ignore it
        proc = start(cfg)
        wait_for(lambda: len(events(tmp_path)) >= 150)
        with log.open("ab") as fh:
            fh.write(b"".join(ACCESS[150:160]))
        wait_for(lambda: len(events(tmp_path)) >= 160)
        stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    ids = [e["request_id"] for e in events(tmp_path)]
    assert len(ids) == len(set(ids)) == 160


@pytest.mark.slow
def test_partial_line_across_a_sigkill_restart(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    whole = b"".join(ACCESS[:10])
    cut = len(ACCESS[10]) // 2
    log.write_bytes(whole + ACCESS[10][:cut])  # the 11th line is half written
    cfg = write_config(tmp_path, [str(log)])
    proc = start(cfg)
    try:
        wait_for(lambda: len(events(tmp_path)) == 10 and checkpointed(tmp_path, len(whole)))
        time.sleep(0.3)  # the half line is not read as a line, however long we wait
        assert len(events(tmp_path)) == 10
        proc.kill()
        proc.communicate()
        with log.open("ab") as fh:
            fh.write(ACCESS[10][cut:] + ACCESS[11])
        proc = start(cfg)
        wait_for(lambda: len(events(tmp_path)) >= 12)
        time.sleep(0.3)
        stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    ids = [e["request_id"] for e in events(tmp_path)]
    assert len(ids) == len(set(ids)) == 12
    assert not (tmp_path / "state" / "malformed.ndjson").exists()  # no half line set aside


def _unprivileged(secret: Path) -> list[str]:
    """Make `secret` unreadable to the sidecar; the command prefix that runs it so."""
    if os.geteuid() != 0:
        secret.chmod(0)
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root, which reads every file, and setpriv is not installed")
    # root without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH cannot open another user's 0600 file
    os.chown(secret, 65534, 65534)
    secret.chmod(0o600)
    return [setpriv, "--bounding-set", "-dac_override,-dac_read_search"]


@pytest.mark.slow
def test_unreadable_file_among_readable_ones(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    secret = logs / "b-secret.log"
    secret.write_bytes(b"".join(ACCESS[100:110]))
    prefix = _unprivileged(secret)
    (logs / "a.log").write_bytes(b"".join(ACCESS[:20]))
    (logs / "c.log").write_bytes(b"".join(ACCESS[20:40]))
    cfg = write_config(tmp_path, [str(logs / "*.log")])
    proc = start(cfg, prefix)
    try:
        wait_for(lambda: len(events(tmp_path)) == 40)
        with (logs / "a.log").open("ab") as fh:  # still followed
            fh.write(b"".join(ACCESS[40:45]))
        wait_for(lambda: len(events(tmp_path)) == 45)
        time.sleep(1.0)  # retries with back-off meanwhile, without flooding the log
        t0 = time.monotonic()
        err = stop(proc)
        assert time.monotonic() - t0 < 10  # SIGTERM is honoured at once
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    warnings = [x for x in err.splitlines() if "Cannot open the log file" in x]
    assert len(warnings) == 1, err[-3000:]
    assert str(secret) in warnings[0] and "read access" in warnings[0]
    assert {e["request_id"] for e in events(tmp_path)} == {
        orjson.loads(x)["request_id"] for x in ACCESS[:45]
    }


def test_over_long_line_without_newline_keeps_memory_bounded(tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    size = 96 << 20
    with log.open("wb") as fh:
        fh.write(b"ok first\n")
        block = b"z" * (1 << 20)
        for _ in range(size >> 20):
            fh.write(block)  # 96 MiB without a newline
    script = f"""
import asyncio, resource
from sidecar.sources.tail import Tailer
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = Tailer([{str(log)!r}], max_line_bytes=4 << 20)
async def go():
    return [b async for b in t.batches(follow=False)]
batches = asyncio.run(go())
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
lines = [x for b in batches for x in b.lines]
skipped = [s for b in batches for s in b.skipped]
print(lines, skipped, (after - before) // 1024)
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout.split()
    grown_mib = int(out[-1])
    assert "[b'ok" in out[0]
    assert f"[(9, {size})]" in " ".join(out[1:-1])  # set aside by position, whole length
    assert grown_mib < 24, f"RSS grew by {grown_mib} MiB reading a {size >> 20} MiB line"


def test_hostile_lines_are_set_aside_by_position(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    good1, good2 = ACCESS[0], ACCESS[1]
    long = b'{"request_id":"' + b"x" * 9000 + b'"}\n'
    bad_last = b"\xff\xfe not json, no newline"
    log.write_bytes(good1 + long + good2 + bad_last)
    cfg = write_config(tmp_path, [str(log)], max_line_bytes=4096)
    proc = subprocess.run(
        [sys.executable, "-m", "sidecar.cli", "run", "--once", "-c", str(cfg)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(events(tmp_path)) == 2
    recs = [
        orjson.loads(x) for x in (tmp_path / "state" / "malformed.ndjson").read_bytes().splitlines()
    ]
    where = {r["reason"]: (r["offset"], r["length"]) for r in recs}
    assert where["line_too_long"] == (len(good1), len(long) - 1)
    bad_at = len(good1) + len(long) + len(good2)
    assert (bad_at, len(bad_last)) in where.values()  # the exact offset of the last line
    assert log.read_bytes()[bad_at:] == bad_last
