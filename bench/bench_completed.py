"""The finished-body parse alone: CPU per request of `parse_completed` (the head and tail window,
the whole-body fallback) over the requests of the generated large mix, as the join hands them on.

    .venv/bin/python bench/bench_completed.py [--requests 20000] [--every 10] [--repeat 5]
                                          [--save FILE] [--check FILE] [--profile N]
                                          [--items FILE] [--limit N]

Captures the completed requests as bench/bench_enrich.py does (one real `run --once`, every
`--every`-th batch), then times `parse_completed(c, provider=...)` on fresh copies of them
(`time.process_time`, the median of `--repeat` passes), and says how many took the window and
how many fell back to the whole body. `--save` writes every result (the whole `ParsedBody`,
by request id) to a file, `--check` compares this run's results with such a file: a change to
the parse must leave them identical. `--items` keeps the captured requests in a file (written
once, then read: the same requests for every run, since the run's batches depend on timing);
`--limit` keeps the first N (for a short run under callgrind).
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import gc
import pickle
import pstats
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_e2e
import bench_enrich

from sidecar.parse.response import parse_completed
from sidecar.types import Completed


def one_pass(items: list[tuple[Completed, str | None]]) -> tuple[float, list, int]:
    fresh = [(copy.copy(c), p) for c, p in items]
    gc.collect()
    gc.freeze()  # as Pipeline.run does
    t0 = time.process_time()
    out = [parse_completed(c, provider=p) for c, p in fresh]
    took = time.process_time() - t0
    gc.unfreeze()
    whole = sum(1 for c, _ in fresh if c.body is not None and c.parts)
    return took, out, whole


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--save", type=Path)
    ap.add_argument("--check", type=Path)
    ap.add_argument("--profile", type=int, default=0, metavar="N")
    ap.add_argument("--items", type=Path, help="keep the captured requests in this file")
    ap.add_argument("--limit", type=int, default=0, help="only the first N requests")
    args = ap.parse_args()
    if args.items and args.items.exists():
        captured = pickle.loads(args.items.read_bytes())
    else:
        logs = bench_e2e.data_dir(args.requests, args.seed, 50, 1.0)
        captured = [c for batch in bench_enrich.capture(logs, max(1, args.every)) for c in batch]
        for c in captured:
            c.positions = None
        if args.items:
            args.items.write_bytes(pickle.dumps(captured))
    if args.limit:
        captured = captured[: args.limit]
    items = [(c, None) for c in captured]
    n = len(items)
    runs = []
    for _ in range(args.repeat):
        took, out, whole = one_pass(items)
        runs.append(took)
    med = statistics.median(runs)
    print(f"{n:,} requests; {whole:,} decoded whole")
    print(
        f"parse_completed: median {med / n * 1e6:.1f} us/request (runs: "
        + ", ".join(f"{r / n * 1e6:.1f}" for r in runs)
        + ")"
    )
    results = {
        c.request_id + "/" + str(c.duplicate_key): r for (c, _), r in zip(items, out, strict=True)
    }
    if args.save:
        args.save.write_bytes(pickle.dumps(results))
    if args.check:
        before = pickle.loads(args.check.read_bytes())
        diff = [k for k in before if before[k] != results.get(k)]
        print(f"check: {len(diff)} of {len(before):,} results differ")
        for k in diff[:5]:
            print(" ", k, before[k], results.get(k), sep="\n  ")
        if diff or len(before) != len(results):
            return 1
    if args.profile:
        prof = cProfile.Profile()
        fresh = [(copy.copy(c), p) for c, p in items]
        prof.enable()
        for c, p in fresh:
            parse_completed(c, provider=p)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
