"""Body-log throughput, `chunks` style, next to a plain `json.loads` baseline in the same run.

    python bench/bench_body.py [--requests 10000] [--chunks-per-stream 100] [--repeat 3]

Generates (once, cached under bench/data/) a realistic interleaved log of >= 1,000,000 body lines,
then measures, best of `--repeat` interleaved runs each:

- baseline: `for line in file: json.loads(line)` (what a naive tailer does, no real work);
- orjson:   `for line in file: orjson.loads(line)` (the floor for one decode per line);
- body path: the sidecar's own hot path on the same bytes: `Tailer` block reads,
  `decode_chunk_batch` (the block scanned as read), `Joiner.add_chunks`, and at each
  request's completion the provider parser (`parse_completed`, usage extraction). Access
  records are fed first so every request completes when its body ends;
- pipeline: the whole `run --once` (tail both logs, join, parse, enrich with pricing and rate
  limits, write NDJSON to a temporary file).

`--split-only` / `--decode-only PATH`: just the body log's first per-line stages on the first
`--lines` lines of PATH (e.g. bench/data/large-*/body.log), for `valgrind --tool=callgrind`
instruction counts (deterministic on a noisy machine): `Lines.feed` on 1 MiB blocks as the
tailer reads them (a batch keeps its block; split-only counts its lines), then (decode-only)
`decode_chunk_batch` per batch. Run with and without
`LLM_HEC_SIDECAR_PURE=1` (the C scanner vs its Python twin); `--split-only` is the fixed part to
subtract. `--pipeline-only DIR`: one `run --once` (file sink) on DIR/access.log + DIR/body.log
(e.g. written by `examples/generate.py --mix large --requests 1000 --seed 7 --out DIR`), for
callgrind of the whole pipeline; an empty pair gives the fixed start-up part to subtract.
`--readers-only DIR`: the same `run --once` with an enrichment stage that only releases each
request's positions: both readers, the join and the hand-back, no enrich, spool or sink (the
body path's own cost; data sets with `--chunk-scale 0.5` and `2` split it per line and per
request; an empty pair gives the start-up; a real access log with an empty body log the access
side).

Figures are printed as lines/s, MB/s and as a ratio to the baseline measured in the same run
(the machine is noisy: compare ratios, not absolute numbers).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sidecar import config as C  # noqa: E402
from sidecar.join import Joiner  # noqa: E402
from sidecar.parse.access import parse_nginx_json  # noqa: E402
from sidecar.parse.body import assemble_escaped, decode_chunk_batch  # noqa: E402
from sidecar.parse.response import parse_completed  # noqa: E402
from sidecar.pipeline import Pipeline  # noqa: E402
from sidecar.sources.tail import Tailer  # noqa: E402


def ensure_log(requests: int, chunks: int) -> Path:
    out = REPO / "bench" / "data" / f"r{requests}-c{chunks}"
    if not (out / "body.log").exists():
        out.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                sys.executable,
                str(REPO / "examples" / "generate.py"),
                "--requests",
                str(requests),
                "--chunks-per-stream",
                str(chunks),
                "--seed",
                "7",
                "--mix",
                "streams",
                "--out",
                str(out),
            ],
            check=True,
        )
    return out


def bench_json(path: Path, loads) -> float:
    t0 = time.perf_counter()
    with open(path, "rb") as fh:
        for line in fh:
            loads(line)
    return time.perf_counter() - t0


def bench_body_path(access: Path, body: Path) -> tuple[float, int, int]:
    joiner = Joiner(expire_after_secs=3600, max_pending_requests=10**7, assemble=assemble_escaped)
    out: list = []
    with open(access, "rb") as fh:
        for line in fh:
            joiner.add_access(parse_nginx_json(line.rstrip(b"\n")), "s", str(access), out)

    async def run() -> tuple[int, int]:
        parsed_n = 0
        usage_n = 0
        tailer = Tailer([str(body)], read_chunk_bytes=4 << 20)  # the body log's default
        async for batch in tailer.batches(follow=False):
            done: list = []
            dec = decode_chunk_batch(batch)
            joiner.add_chunks(dec.groups, dec.records, "s", done, dec.sizes, dec.counts)
            for c in done:
                p = parse_completed(c, provider=None)
                parsed_n += 1
                usage_n += p.usage is not None
        return parsed_n, usage_n

    t0 = time.perf_counter()
    parsed_n, usage_n = asyncio.run(run())
    return time.perf_counter() - t0, parsed_n, usage_n


def run_once(data: Path, clock=time.perf_counter) -> float:
    """One `run --once` (file sink) on DATA/access.log + DATA/body.log; `clock` seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = C.from_dict(
            {
                "sources": [
                    {
                        "access_log": {"paths": [str(data / "access.log")]},
                        "body_log": {"paths": [str(data / "body.log")]},
                    }
                ],
                "state_dir": tmp,
                "identity": {"hash_key": "bench"},
                "sinks": [{"type": "file", "path": os.path.join(tmp, "events.ndjson")}],
            }
        )
        t0 = clock()
        asyncio.run(Pipeline(cfg, once=True).run())
        return clock() - t0


def bench_pipeline(data: Path) -> float:
    return run_once(data)


def bench_readers(data: Path) -> float:
    """One `run --once` of DIR whose enrichment only releases each request's positions: both
    readers, the join, the hand-back (the body path and the access reader, no enrich/spool/sink).
    Returns CPU seconds."""

    async def drain(self: Pipeline) -> None:
        while (batch := await self._completed_q.get()) is not None:
            self._q_bytes -= sum(c.raw_bytes for c in batch)
            self._q_room.set()
            for c in batch:
                self.ledger.release(c.positions)
        await self._events_q.put(None)

    Pipeline._run_enrich = drain  # type: ignore[method-assign]
    return run_once(data, time.process_time)


def bench_decode(path: Path, n_lines: int, decode: bool) -> None:
    """`Lines.feed` + `decode_chunk_batch` on the first `n_lines` lines of `path` (see above)."""
    from sidecar.parse import body as B
    from sidecar.sources.lines import Lines

    with open(path, "rb") as fh:
        data = b"".join(fh.readline() for _ in range(n_lines))
    blocks = [data[i : i + (1 << 20)] for i in range(0, len(data), 1 << 20)]
    del data
    t0 = time.process_time()
    cut = Lines(1 << 20)
    n = groups = 0
    for i, block in enumerate(blocks):
        for batch in cut.feed(block, i << 20, "body.log", "k"):
            if decode:
                groups += len(B.decode_chunk_batch(batch).groups)
            n += batch.count
    secs = time.process_time() - t0
    what = f"decode ({'C' if B.NATIVE else 'pure Python'})" if decode else "split only"
    print(f"{what}: {n:,} lines, {groups:,} groups, {secs:.3f} CPU s, {n / secs:,.0f} lines/s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--decode-only", type=Path, metavar="BODY_LOG")
    ap.add_argument("--split-only", action="store_true")
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--pipeline-only", type=Path, metavar="DIR")
    ap.add_argument("--readers-only", type=Path, metavar="DIR")
    ap.add_argument("--requests", type=int, default=10_000)  # x100 chunks: ~1.05M lines
    ap.add_argument("--chunks-per-stream", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-pipeline", action="store_true")
    a = ap.parse_args()
    if a.readers_only:
        print(f"readers only: {bench_readers(a.readers_only):.3f} CPU s")
        return
    if a.pipeline_only:
        print(f"run --once: {bench_pipeline(a.pipeline_only):.3f} s")
        return
    if a.decode_only:
        bench_decode(a.decode_only, a.lines, decode=not a.split_only)
        return
    data = ensure_log(a.requests, a.chunks_per_stream)
    body = data / "body.log"
    size = body.stat().st_size
    with open(body, "rb") as fh:
        lines = sum(1 for _ in fh)
    print(f"body log: {lines:,} lines, {size / 1e6:.1f} MB, {a.requests:,} requests")

    # Interleave the measurements so that each sees the same machine noise; keep the best run.
    base = fast = ours = whole = float("inf")
    parsed_n = usage_n = 0
    for _ in range(a.repeat):
        base = min(base, bench_json(body, json.loads))
        fast = min(fast, bench_json(body, orjson.loads))
        secs, parsed_n, usage_n = bench_body_path(data / "access.log", body)
        ours = min(ours, secs)
        if not a.skip_pipeline:
            whole = min(whole, bench_pipeline(data))

    def row(name: str, secs: float) -> None:
        print(
            f"{name:<28} {lines / secs:>12,.0f} lines/s {size / secs / 1e6:>8.1f} MB/s "
            f"{base / secs:>6.2f}x baseline"
        )

    row("json.loads per line", base)
    row("orjson.loads per line", fast)
    row("sidecar body path", ours)
    print(f"  (requests completed and parsed: {parsed_n:,}; with usage: {usage_n:,})")
    if not a.skip_pipeline:
        row("sidecar run --once (all)", whole)


if __name__ == "__main__":
    main()
