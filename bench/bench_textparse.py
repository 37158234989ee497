"""The parse with text alone: CPU per request of `parse_completed(..., want_text=True)` and of
counting the text it collects, over the requests of the generated large mix that a real run
parses again with their text (calibration samples and estimates).

    .venv/bin/python bench/bench_textparse.py [--requests 20000] [--repeat 5] [--items FILE]
                                              [--save FILE] [--check FILE] [--limit N]
                                              [--profile N]

One `run --once` of the real pipeline (file sink, in a temporary folder) keeps a copy of every
completed request for which `Enricher.wants_text` said yes (about 3.5 % of the requests).
`--items` keeps them in a file (written once, then read: the same requests for every run).
Each repeat parses fresh copies of them with their text and counts the text as the estimator
does (`TokenEstimator.count_output`); the median of `--repeat` passes of CPU seconds
(`time.process_time`) is the figure, split into parse and count. `--save` writes every result
(the whole `ParsedBody` and its token count, by request id), `--check` compares with such a
file: a change to the text mode must leave them identical. For noise-free figures run it under
`valgrind --tool=callgrind` with `--parse-only --limit 200`, once with `--repeat 1` and once
with `--repeat 3`: half the difference of the two totals is one pass of the parse alone.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import cProfile
import gc
import pickle
import pstats
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_e2e

from sidecar import config as C
from sidecar.enrich.tokenizer import encoding_for, get_encoder
from sidecar.enrich.tokens import TokenEstimator
from sidecar.parse.response import parse_completed
from sidecar.pipeline.core import Pipeline
from sidecar.types import Completed


def capture(logs: Path) -> list[Completed]:
    """Every completed request of one real `run --once` that the enricher parses again with its
    text, copied as the pipeline hands it to `parse_completed(..., want_text=True)`."""
    kept: list[Completed] = []

    async def run() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = C.load(str(bench_e2e.sidecar_config(Path(tmp), logs, _sink(Path(tmp)))))
            pipeline = Pipeline(cfg, once=True)
            wants = pipeline.enricher.wants_text

            def wants_and_keep(c: Completed, parsed: Any) -> bool:
                yes = wants(c, parsed)
                if yes:
                    kept.append(copy.copy(c))
                return yes

            pipeline.enricher.wants_text = wants_and_keep  # type: ignore[method-assign]
            await pipeline.run()

    asyncio.run(run())
    for c in kept:
        c.positions = None
    return kept


def _sink(tmp: Path) -> dict[str, Any]:
    return {"type": "file", "path": str(tmp / "events.ndjson")}


def one_pass(
    items: list[Completed], est: TokenEstimator, parse_only: bool = False
) -> tuple[float, float, list[Any]]:
    fresh = [copy.copy(c) for c in items]
    gc.collect()
    gc.freeze()  # as Pipeline.run does
    t0 = time.process_time()
    parsed = [parse_completed(c, provider=None, want_text=True) for c in fresh]
    t1 = time.process_time()
    if parse_only:
        gc.unfreeze()
        return t1 - t0, 0.0, []
    counts = [
        est.count_output(p, p.model, c.prior_text) for c, p in zip(fresh, parsed, strict=True)
    ]
    t2 = time.process_time()
    gc.unfreeze()
    out = [(c.request_id, asdict(p), n) for c, p, n in zip(fresh, parsed, counts, strict=True)]
    return t1 - t0, t2 - t1, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--items", type=Path, help="keep the captured requests in this file")
    ap.add_argument("--limit", type=int, default=0, help="only the first N requests")
    ap.add_argument("--save", type=Path)
    ap.add_argument("--check", type=Path)
    ap.add_argument("--profile", type=int, default=0, metavar="N")
    ap.add_argument("--parse-only", action="store_true", help="no counting, no results kept")
    args = ap.parse_args()
    if args.items and args.items.exists():
        items = pickle.loads(args.items.read_bytes())
    else:
        items = capture(bench_e2e.data_dir(args.requests, args.seed, 50, 1.0))
        if args.items:
            args.items.write_bytes(pickle.dumps(items))
    if args.limit:
        items = items[: args.limit]
    n = len(items)
    get_encoder(encoding_for(None)[0])  # loaded before timing, as the run loads it in a thread
    est = TokenEstimator(C.Tokens())
    parse_runs, count_runs = [], []
    out: list[Any] = []
    for _ in range(args.repeat):
        took_parse, took_count, out = one_pass(items, est, args.parse_only)
        parse_runs.append(took_parse)
        count_runs.append(took_count)
    p, k = statistics.median(parse_runs), statistics.median(count_runs)
    print(
        f"{n:,} requests parsed with their text: parse {p / n * 1e6:.0f} us, "
        f"count {k / n * 1e6:.0f} us per request (medians of {args.repeat})"
    )
    if args.save:
        args.save.write_bytes(pickle.dumps(out))
    if args.check:
        want = pickle.loads(args.check.read_bytes())
        bad = [a[0] for a, b in zip(out, want, strict=False) if a != b]
        if len(want) != len(out) or bad:
            print(f"DIFFERENT: {len(bad)} of {n} requests, e.g. {bad[:5]}")
            return 1
        print(f"identical to {args.check} ({n} requests)")
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        one_pass(items, est)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
