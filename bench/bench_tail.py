"""Benchmark of the tailer's read throughput against `cat FILE > /dev/null` (not a test).

Writes a large log of body-log-sized lines into a temporary folder, then times, in the same run
and with the file in the page cache for both, the best of N passes of:
- `cat FILE > /dev/null` (the floor: reading the bytes, nothing else);
- a plain Python loop reading 1 MiB blocks and `bytes.split`-ting them (the floor for any
  Python code that hands on lines);
- `Tailer.batches(follow=False)`: block reads, identity and fingerprint checks, splitting into
  lines (bounded partial lines, over-long-line checks) and the LineBatch objects.

    .venv/bin/python bench/bench_tail.py [--mib 256] [--passes 3]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import tempfile
import time
from pathlib import Path

from sidecar.sources.tail import Tailer

LINE = (
    b'{"ts":1772442000.591,"request_id":"b6db95fb8d737aa20ab832eabac70b9c","data":"data: '
    b'{\\"id\\":\\"chatcmpl-x\\",\\"choices\\":[{\\"delta\\":{\\"content\\":\\" token\\"}}]}'
    b'\\n\\n"}\n'
)


def write_log(path: Path, mib: int) -> int:
    block = LINE * ((1 << 20) // len(LINE))
    with path.open("wb") as fh:
        for _ in range(mib):
            fh.write(block)
    return path.stat().st_size


def time_cat(path: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(f"cat '{path}' > /dev/null", shell=True, check=True)
    return time.perf_counter() - t0


def time_split(path: Path) -> float:
    t0 = time.perf_counter()
    rest = b""
    with path.open("rb", buffering=0) as fh:
        while block := fh.read(1 << 20):
            lines = (rest + block).split(b"\n")
            rest = lines.pop()
    return time.perf_counter() - t0


def time_tailer(path: Path) -> tuple[float, int]:
    async def go() -> int:
        n = 0
        async for b in Tailer([str(path)]).batches(follow=False):
            n += len(b.lines)
        return n

    t0 = time.perf_counter()
    lines = asyncio.run(go())
    return time.perf_counter() - t0, lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--passes", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "body.log"
        size = write_log(path, a.mib)
        time_cat(path)  # warm the page cache
        cat = min(time_cat(path) for _ in range(a.passes))
        split = min(time_split(path) for _ in range(a.passes))
        runs = [time_tailer(path) for _ in range(a.passes)]
        tail = min(t for t, _ in runs)
        lines = runs[0][1]
    mib = size / (1 << 20)
    print(f"file: {mib:.0f} MiB, {lines:,} lines of {len(LINE)} bytes")
    print(f"cat > /dev/null : {cat:6.3f} s  {mib / cat:8.0f} MiB/s")
    print(f"read + split    : {split:6.3f} s  {mib / split:8.0f} MiB/s")
    print(f"Tailer          : {tail:6.3f} s  {mib / tail:8.0f} MiB/s  {lines / tail:,.0f} lines/s")
    print(f"ratio (Tailer time / cat time): {tail / cat:.2f}x")
    print(f"ratio (Tailer time / read + split time): {tail / split:.2f}x")


if __name__ == "__main__":
    main()
