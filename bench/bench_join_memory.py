"""The join's memory: many open streams at once, and a blocked sink while the logs keep growing.

    python bench/bench_join_memory.py [--streams 10000] [--stall-secs 90]

Data: the example generator's large mode (streams of 20 to 400 events, median 120; 70% OpenAI,
20% Anthropic, 10% Gemini), generated once and cached under bench/data/.

1. Open streams. The body-log records of `--streams` requests, with neither their end record
   nor their access line, are fed to a `Joiner` set up as the pipeline sets it up (the real hot
   path: `decode_chunk_block`, `add_chunks`, compaction through `parse.compact`, the byte bound
   with the default `join.max_pending_bytes`). All of them are open at once at the end. Reported:
   RSS before (the baseline, same process), peak RSS, RSS per open stream, the join's own byte
   count, and what gave way (compactions, evictions).
2. Blocked sink. A real `llm-hec-sidecar run` process follows logs that a writer appends at a
   steady pace, with its only sink an HEC endpoint on 127.0.0.1 where nothing listens (HEC
   down: the sink retries forever, the queues fill, the readers stop). Its RSS
   (/proc/<pid>/status) is sampled every second for `--stall-secs`. Reported: RSS once the
   queues are full (at half the time), the maximum after, and the growth; the documented
   bound is 10% (docs/architecture.md, "Join").
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "examples"))

from sidecar import config as C  # noqa: E402
from sidecar.join import Joiner  # noqa: E402
from sidecar.parse.body import assemble_escaped, decode_chunk_block  # noqa: E402
from sidecar.parse.compact import compact_stream  # noqa: E402

DATA = REPO / "bench" / "data"


def rss_mib(pid: int | None = None) -> float:
    with open(f"/proc/{pid or 'self'}/status") as fh:
        for ln in fh:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1]) / 1024
    return 0.0


def large_logs(n: int) -> Path:
    out = DATA / f"large-{n}"
    if not (out / "truth.json").exists():
        import generate

        t0 = time.perf_counter()
        generate.generate(out, n, seed=11, mix="large", concurrency=50)
        print(f"generated {n} large-mode requests in {time.perf_counter() - t0:.0f}s")
    return out


def open_streams(n: int) -> None:
    logs = large_logs(n)
    cfg = C.Join()
    j = Joiner(
        max_pending_bytes=cfg.max_pending_bytes,
        max_pending_requests=cfg.max_pending_requests,
        assemble=assemble_escaped,
        compact=compact_stream,
    )
    j.access_front.idle(0.0)  # no access line comes: the body reader never waits for it
    base = peak = rss_mib()
    out: list = []
    raw = blocks = 0
    t0 = time.perf_counter()
    with open(logs / "body.log", "rb") as fh:  # read as the tailer does: 1 MiB blocks
        rest = b""
        while block := fh.read(1 << 20):
            lines = (rest + block).split(b"\n")
            rest = lines.pop()
            # keep every stream open: no end record (and no access line)
            lines = [ln for ln in lines if b'"end":' not in ln[-40:]]
            raw += sum(map(len, lines))
            block = b"\n".join(lines)  # as read: one scan, a chunk per request
            dec = decode_chunk_block([], block, 0, len(block))
            j.add_chunks(dec.groups, dec.records, "proxy", out, dec.sizes, dec.counts)
            blocks += 1
            if j.over_budget() or blocks % 16 == 0:  # as the body reader: about every second
                j.expire(out)
            out.clear()
            peak = max(peak, rss_mib())
    secs = time.perf_counter() - t0
    end = rss_mib()
    text = sum(p.prior_len for p in j._pending.values())
    n_open = max(1, len(j))
    raw_tail = sum(p.size for p in j._pending.values()) / n_open / 1024
    head = sum(p.head_size for p in j._pending.values()) / n_open / 1024
    print(
        f"open streams: {len(j)} open of {n}, body log {raw / 2**20:.0f} MiB fed in {secs:.1f}s\n"
        f"  RSS baseline {base:.0f} MiB, peak {peak:.0f} MiB, end {end:.0f} MiB; "
        f"per open stream {(end - base) * 1024 / max(1, len(j)):.2f} KiB "
        f"(join's own count {j.pending_bytes / max(1, len(j)) / 1024:.2f} KiB, "
        f"bound join.max_pending_bytes = {cfg.max_pending_bytes / 2**20:.0f} MiB); of which "
        f"visible text {text / max(1, len(j)) / 1024:.2f} KiB: beyond it "
        f"{(j.pending_bytes - text) / max(1, len(j)) / 1024:.2f} KiB\n"
        f"  (raw tail {raw_tail:.2f} KiB, raw head {head:.2f} KiB per stream on average)\n"
        f"  compactions {j.stats['compactions']}, evicted {j.stats['evicted']}, "
        f"text truncated {j.stats['text_truncated']}"
    )


def merged(logs: Path) -> list[tuple[float, int, bytes]]:
    rows = []
    for kind, name in ((0, "body.log"), (1, "access.log")):
        for ln in (logs / name).read_bytes().splitlines(keepends=True):
            rows.append((float(orjson.loads(ln)["ts"]), kind, ln))
    rows.sort(key=lambda r: (r[0], r[1]))
    return rows


def blocked_sink(stall: float, n: int) -> None:
    logs = large_logs(n)
    rows = merged(logs)
    with socket.socket() as s:  # a port where nothing listens: HEC down
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        access, body = tmp / "access.log", tmp / "body.log"
        access.touch()
        body.touch()
        cfg = {
            "sources": [
                {
                    "name": "proxy",
                    "access_log": {"paths": [str(access)]},
                    "body_log": {"paths": [str(body)]},
                }
            ],
            "identity": {"hash_key": "k"},
            "state_dir": str(tmp / "state"),
            "sinks": [
                {"type": "hec", "endpoints": [f"http://127.0.0.1:{port}"], "token": "t" * 36}
            ],
        }
        (tmp / "c.yaml").write_text(yaml.safe_dump(cfg))
        proc = subprocess.Popen(
            [sys.executable, "-m", "sidecar.cli", "run", "-c", str(tmp / "c.yaml")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=REPO,
        )
        stop = threading.Event()
        written = [0]

        def writer() -> None:  # a steady pace: about 4 MiB/s of logs
            with access.open("ab") as fa, body.open("ab") as fb:
                i = 0
                while not stop.is_set() and i < len(rows):
                    size = 0
                    while i < len(rows) and size < 400_000:
                        _, kind, ln = rows[i]
                        (fa if kind else fb).write(ln)
                        size += len(ln)
                        i += 1
                    fa.flush()
                    fb.flush()
                    written[0] += size
                    time.sleep(0.1)

        th = threading.Thread(target=writer)
        th.start()
        samples = []
        try:
            t0 = time.monotonic()
            while time.monotonic() - t0 < stall:
                time.sleep(1.0)
                samples.append((time.monotonic() - t0, rss_mib(proc.pid), written[0]))
        finally:
            stop.set()
            th.join()
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    half = len(samples) // 2
    settled = samples[half][1]
    top = max(r for _, r, _ in samples[half:])
    print(
        f"blocked sink: HEC down for {stall:.0f}s while {samples[-1][2] / 2**20:.0f} MiB of logs "
        f"were written\n"
        f"  RSS at {samples[half][0]:.0f}s {settled:.0f} MiB, max after {top:.0f} MiB: growth "
        f"{top - settled:.1f} MiB ({(top / settled - 1) * 100:.1f}%, bound 10%)\n"
        f"  samples (s, MiB): " + ", ".join(f"{t:.0f}:{r:.0f}" for t, r, _ in samples)
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--streams", type=int, default=10_000)
    ap.add_argument("--stall-secs", type=float, default=90.0)
    a = ap.parse_args()
    os.nice(5)
    open_streams(a.streams)
    if a.stall_secs > 0:
        blocked_sink(a.stall_secs, a.streams)
    return 0


if __name__ == "__main__":
    sys.exit(main())
