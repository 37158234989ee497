"""The enrich stage alone, in process: CPU per request of `Pipeline._run_enrich` (parse the
finished body, estimate, price, build, encode and count each event) over the requests of the
generated large mix, without the readers and the join around it.

    .venv/bin/python bench/bench_enrich.py [--requests 20000] [--every 10] [--repeat 3]
                                           [--profile N]

Data: the same cached logs as bench/bench_e2e.py (`--requests`, generated once under
bench/data/). One `run --once` of the real pipeline (file sink, in a temporary folder) captures
the completed requests as the join hands them to enrichment: every `--every`-th batch (10: about
a tenth of the requests, in the run's own order; 1: all of them, about 1.2 GB of body parts held
in memory for 20,000). A subset is not quite the run's mix: the first 20 complete streams of
each model are all calibration samples (parsed again with their text), so with `--every 10`
samples and estimates weigh about twice their share of the whole run (8 % of the requests
against 3.4 % for 20,000); compare like with like.
Each repeat then runs the stage on fresh copies of them in a new pipeline (the tokenizer loaded
first, as the run loads it in a thread) and reports CPU seconds (`time.process_time`) per
request; the median of the repeats is the figure. `--profile N` prints the N functions with the
most own time of one more, profiled, pass.

For exact, noise-free comparisons run it under `valgrind --tool=callgrind` (instruction counts)
with `--repeat 1`; CPU figures on a shared machine move by 10-20 % from run to run.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import cProfile
import gc
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_e2e

from sidecar import config as C
from sidecar.enrich.tokenizer import encoding_for, get_encoder
from sidecar.pipeline.core import Pipeline
from sidecar.types import Completed


def _config(tmp: Path, logs: Path) -> C.Config:
    sink = {"type": "file", "path": str(tmp / "events.ndjson")}
    return C.load(str(bench_e2e.sidecar_config(tmp, logs, sink)))


def capture(logs: Path, every: int) -> list[list[Completed]]:
    """Every `every`-th batch of completed requests of one real `run --once`, copied before
    enrichment touches them."""
    kept: list[list[Completed]] = []
    seen = 0

    async def run() -> None:
        nonlocal seen
        with tempfile.TemporaryDirectory() as tmp:
            pipeline = Pipeline(_config(Path(tmp), logs), once=True)
            queue = pipeline._completed_q
            get = queue.get

            async def get_and_keep() -> Any:
                nonlocal seen
                batch = await get()
                if batch is not None:
                    if seen % every == 0:
                        kept.append([copy.copy(c) for c in batch])
                    seen += 1
                return batch

            queue.get = get_and_keep  # type: ignore[method-assign]
            await pipeline.run()

    asyncio.run(run())
    return kept


def stage_cpu(logs: Path, batches: list[list[Completed]], prof: cProfile.Profile | None) -> float:
    """CPU seconds of `_run_enrich` over fresh copies of `batches`."""
    fresh = [[copy.copy(c) for c in batch] for batch in batches]

    async def run() -> float:
        with tempfile.TemporaryDirectory() as tmp:
            pipeline = Pipeline(_config(Path(tmp), logs), once=True)
            pipeline.ledger.release = lambda *a: None  # type: ignore[method-assign]
            pipeline._completed_q = asyncio.Queue()
            pipeline._events_q = asyncio.Queue()
            for batch in fresh:
                pipeline._completed_q.put_nowait(batch)
            pipeline._completed_q.put_nowait(None)
            gc.collect()
            gc.freeze()  # as Pipeline.run does
            if prof is not None:
                prof.enable()
            t0 = time.process_time()
            await pipeline._run_enrich()
            took = time.process_time() - t0
            if prof is not None:
                prof.disable()
            gc.unfreeze()
            return took

    return asyncio.run(run())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--every", type=int, default=10, help="keep every N-th batch (1: all)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--profile", type=int, default=0, metavar="N")
    args = ap.parse_args()
    logs = bench_e2e.data_dir(args.requests, args.seed, 50, 1.0)
    batches = capture(logs, max(1, args.every))
    n = sum(map(len, batches))
    get_encoder(encoding_for(None)[0])  # the run loads it in a thread before the first count
    print(f"{n:,} requests ({len(batches)} batches of {logs.name})")
    runs = []
    for i in range(args.repeat):
        runs.append(stage_cpu(logs, batches, None))
        print(f"  repeat {i + 1}: {runs[-1]:.3f} CPU s, {runs[-1] / n * 1e6:.1f} us/request")
    med = statistics.median(runs)
    print(f"enrich stage: median {med:.3f} CPU s, {med / n * 1e6:.1f} us/request")
    if args.profile:
        prof = cProfile.Profile()
        stage_cpu(logs, batches, prof)
        pstats.Stats(prof).sort_stats("tottime").print_stats(args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
