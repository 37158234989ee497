"""Delivery through the spool, end to end: `llm-hec-sidecar run` as a real process against the
HEC test server on 127.0.0.1 (stopped, faulted, restarted); real signals, real files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from sidecar.testing import HecTestServer, TokenSettings

TOKEN = "8d1c2b3a-4e5f-4a6b-9c7d-0e1f2a3b4c5d"
BATCH = 1000  # batch.max_events: with indexer ack off, one batch is in flight at a time


def access_lines(start: int, n: int) -> bytes:
    return b"".join(
        orjson.dumps(
            {
                "ts": 1.7e9 + i * 0.001,
                "request_id": f"r{i:06d}",
                "uri": "/v1/chat/completions",
                "status": 200,
                "upstream_host": "api.openai.com",
                "model": "gpt-4o",
                "request_completion": "OK",
            }
        )
        + b"\n"
        for i in range(start, start + n)
    )


def write_config(tmp: Path, url: str, **hec: Any) -> Path:
    shutdown = hec.pop("shutdown_timeout_secs", 5)
    spool = hec.pop("spool", {})
    sink = {
        "type": "hec",
        "endpoints": [url],
        "token": TOKEN,
        "allow_insecure_http": True,
        "batch": {"max_events": BATCH, "timeout_secs": 0.2},
        "retry": {"initial_backoff_secs": 0.2, "max_backoff_secs": 1.0},
        **hec,
    }
    cfg = {
        "sources": [
            {"name": "p", "access_log": {"paths": [str(tmp / "access.log")]}, **POLL},
        ],
        "state_dir": str(tmp / "state"),
        "shutdown_timeout_secs": shutdown,
        "spool": spool,
        "sinks": [sink],
    }
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


POLL = {"poll_interval_secs": 0.05}


def start(cfg: Path, *args: str) -> subprocess.Popen[str]:
    """The sidecar in follow mode; its stderr goes to `stderr.log` next to the config."""
    with (cfg.parent / "stderr.log").open("w") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "sidecar.cli", "run", "--quiet", "-c", str(cfg), *args],
            stdout=subprocess.DEVNULL,
            stderr=err,
            text=True,
        )


def request_ids(*servers: HecTestServer) -> Counter[str]:
    return Counter(e["event"]["request_id"] for s in servers for e in s.events)


def wait_for(pred: Any, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def spooled_bytes(tmp: Path) -> int:
    seg = tmp / "state" / "spool" / "segments"
    return sum(p.stat().st_size for p in seg.iterdir()) if seg.exists() else 0


def free_port_url() -> tuple[str, int]:
    dead = HecTestServer()
    url, stop = dead.run_in_thread()
    stop()  # nothing listens there now
    return url, dead.port


@pytest.mark.slow
def test_outage_loses_nothing_and_memory_stays_flat(tmp_path: Path) -> None:
    """HEC stops for OUTAGE_SECS while 50,000 events flow; afterwards every event is there,
    duplicates are within one batch (the one in flight), and RSS stays within 50 MB."""
    outage_secs = float(os.environ.get("OUTAGE_SECS", "20"))
    total, first = 50_000, 10_000
    hec = HecTestServer({TOKEN: TokenSettings()})
    url, stop_hec = hec.run_in_thread()
    port = hec.port
    log = tmp_path / "access.log"
    log.write_bytes(access_lines(0, first))
    proc = start(write_config(tmp_path, url))
    servers = [hec]
    try:
        wait_for(lambda: len(request_ids(*servers)) == first, 60, "the first events")
        time.sleep(1.0)
        base = rss_mb(proc.pid)
        stop_hec()
        t0 = time.monotonic()
        samples = []
        written = first
        # The rest flows during the outage, at a pace the pipeline keeps up with (a burst
        # faster than enrichment is held in the stage queues, which count lists, not bytes).
        per_tick = -(-(total - first) // int(outage_secs * 4 * 0.8))
        while time.monotonic() - t0 < outage_secs:
            if written < total:
                n = min(per_tick, total - written)
                with log.open("ab") as fh:
                    fh.write(access_lines(written, n))
                written += n
            samples.append(rss_mb(proc.pid))
            time.sleep(0.25)
        assert written == total
        wait_for(lambda: spooled_bytes(tmp_path) > 0, 30, "events in the spool")
        assert len(request_ids(*servers)) == first  # nothing reached HEC meanwhile
        hec2 = HecTestServer({TOKEN: TokenSettings()}, port=port)
        _, stop_hec2 = hec2.run_in_thread()
        servers.append(hec2)
        try:
            wait_for(lambda: len(request_ids(*servers)) == total, 120, "every event")
            samples.append(rss_mb(proc.pid))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
            stop_hec2()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    counts = request_ids(*servers)
    assert set(counts) == {f"r{i:06d}" for i in range(total)}
    dups = sum(c - 1 for c in counts.values())
    print(
        f"outage {outage_secs:g} s: {dups} duplicates, RSS {base:.0f} -> max {max(samples):.0f} MB"
    )
    assert dups <= BATCH, f"{dups} duplicates, more than the one batch in flight"
    assert max(samples) - base < 50, f"RSS grew from {base:.0f} MB to {max(samples):.0f} MB"
    assert proc.returncode == 0
    assert not (tmp_path / "state" / "dead-letter.ndjson").exists()


@pytest.mark.slow
def test_sigterm_with_hec_down_exits_0_in_time_and_a_restart_delivers(tmp_path: Path) -> None:
    n = 500
    (tmp_path / "access.log").write_bytes(access_lines(0, n))
    cfg = write_config(tmp_path, free_port_url()[0], shutdown_timeout_secs=2)
    proc = start(cfg)
    wait_for(lambda: spooled_bytes(tmp_path) > 0, 30, "events in the spool")
    time.sleep(0.5)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    elapsed = time.monotonic() - t0
    err = (tmp_path / "stderr.log").read_text()
    assert proc.returncode == 0, err
    assert elapsed <= 2 + 1, f"exit took {elapsed:.1f} s after SIGTERM"
    assert f"{n} event(s) wait in the spool" in err
    # The restart reads an empty log: the events can only come from the spool.
    (tmp_path / "access.log").write_bytes(b"")
    hec = HecTestServer({TOKEN: TokenSettings()})
    url, stop_hec = hec.run_in_thread()
    try:
        cfg = write_config(tmp_path, url)
        done = subprocess.run(
            [sys.executable, "-m", "sidecar.cli", "run", "--once", "-c", str(cfg)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        stop_hec()
    assert done.returncode == 0, done.stderr
    assert set(request_ids(hec)) == {f"r{i:06d}" for i in range(n)}
    assert spooled_bytes(tmp_path) == 0


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["token_revoked", "redirect", "wrong_path", "unreachable"])
def test_fault_once_ends_in_time_dead_letters_nothing_and_delivers_later(
    tmp_path: Path, fault: str
) -> None:
    n = 300
    (tmp_path / "access.log").write_bytes(access_lines(0, n))
    hec = HecTestServer({TOKEN: TokenSettings()})
    url, stop_hec = hec.run_in_thread()
    try:
        extra: dict[str, Any] = {"shutdown_timeout_secs": 2}
        if fault == "token_revoked":
            hec.revoke_token(TOKEN)
        elif fault == "redirect":
            hec.redirect_to("https://splunk.example.com:8088/services/collector/event")
        elif fault == "wrong_path":
            extra["path"] = "/services/collector/evnet"
        else:
            stop_hec()  # Splunk is down
        cfg = write_config(tmp_path, url, **extra)
        t0 = time.monotonic()
        first = subprocess.run(
            [sys.executable, "-m", "sidecar.cli", "run", "--once", "-c", str(cfg)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        elapsed = time.monotonic() - t0
        assert first.returncode == 3, first.stderr
        assert f"{n} event(s) could not be delivered and wait in the spool" in first.stderr
        assert elapsed < 15
        assert hec.events == [] and not (tmp_path / "state" / "dead-letter.ndjson").exists()
        if fault != "unreachable":
            assert "Every event stays in the spool" in first.stderr
        # The fault is cured; the next run delivers everything from the spool.
        hec.restore_token(TOKEN)
        hec.redirect_to(None)
        if fault == "unreachable":
            hec = HecTestServer({TOKEN: TokenSettings()}, port=hec.port)
            url, stop_hec = hec.run_in_thread()
        (tmp_path / "access.log").write_bytes(b"")
        cfg = write_config(tmp_path, url)
        second = subprocess.run(
            [sys.executable, "-m", "sidecar.cli", "run", "--once", "-c", str(cfg)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        stop_hec()
    assert second.returncode == 0, second.stderr
    assert set(request_ids(hec)) == {f"r{i:06d}" for i in range(n)}
    assert not (tmp_path / "state" / "dead-letter.ndjson").exists()


@pytest.mark.slow
def test_full_spool_warns_pauses_reading_and_resumes_without_corruption(tmp_path: Path) -> None:
    n, cap = 4000, 1 << 20  # about 4 MB of events for a 1 MiB spool
    (tmp_path / "access.log").write_bytes(access_lines(0, n))
    url, port = free_port_url()
    proc = start(write_config(tmp_path, url, spool={"max_bytes": cap}))
    stderr = tmp_path / "stderr.log"
    hec = None
    try:
        wait_for(lambda: "THE SPOOL IS FULL" in stderr.read_text(), 60, "the full warning")
        assert 0 < spooled_bytes(tmp_path) <= cap
        time.sleep(1.0)
        assert spooled_bytes(tmp_path) <= cap  # reading is paused, the cap holds
        assert "raise spool.max_bytes" in stderr.read_text()
        hec = HecTestServer({TOKEN: TokenSettings()}, port=port)
        _, stop_hec = hec.run_in_thread()
        try:
            wait_for(lambda: len(request_ids(hec)) == n, 90, "every event")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
            stop_hec()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert set(request_ids(hec)) == {f"r{i:06d}" for i in range(n)}
    assert "has room again" in stderr.read_text()
    assert "damaged" not in stderr.read_text()


@pytest.mark.slow
def test_sigkill_then_restart_delivers_everything_spooled(tmp_path: Path) -> None:
    n = 400
    (tmp_path / "access.log").write_bytes(access_lines(0, n))
    url, port = free_port_url()
    proc = start(write_config(tmp_path, url))
    wait_for(lambda: spooled_bytes(tmp_path) > 0, 30, "events in the spool")
    time.sleep(0.5)
    proc.kill()  # SIGKILL: no shutdown code runs
    proc.wait(10)
    (tmp_path / "access.log").write_bytes(b"")  # only the spool can deliver them now
    hec = HecTestServer({TOKEN: TokenSettings()}, port=port)
    _, stop_hec = hec.run_in_thread()
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "sidecar.cli",
                "run",
                "--once",
                "-c",
                str(tmp_path / "config.yaml"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        stop_hec()
    assert done.returncode == 0, done.stderr
    assert set(request_ids(hec)) == {f"r{i:06d}" for i in range(n)}
    assert "damaged" not in done.stderr
