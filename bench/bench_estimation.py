"""Accuracy of the token estimates on real recorded streams (a benchmark, not a test).

Every stream of the pool and every recorded fixture with usage has its usage removed, is parsed
again as the sidecar would parse a cut stream, and is estimated; the estimate is compared with
the removed numbers (`bench/estimation_pool.py` loads them). The pool is split in a FIT half
(what the constants in the code were read off, see `bench/fit_estimation.py`, and what
calibration learns from) and a HELD-OUT half (what the targets are measured on); the split is
by source directory, fixed, and described in `bench/estimation_pool.py` and
docs/estimation.md. Prints mean and median absolute percentage error per group and half for
output, for input where a request exists, and for output as when no request is logged; then
the targets on the held-out half.

The pool has no chunk timestamps: a reasoning model's hidden tokens cannot be estimated here
(the timing estimator is tested on generated streams, tests/unit/test_estimation.py); the
reasoning group is shown for its visible part (output - reasoning) and, for information, for
the total (a lower bound without timing).

    .venv/bin/python bench/bench_estimation.py [--per-stream] [--half fit|held-out]
"""

from __future__ import annotations

import argparse
import statistics

from estimation_pool import FIT, HELD_OUT, calibrated, load_cases
from fit_estimation import unlearned

HALVES = (HELD_OUT, FIT, "all")
LEARNED = "held-out, learned"  # HELD-OUT streams whose every rule the FIT half has
KEYS = ("out", "in", "vis", "bare")
# The issue's targets (mean absolute error on the held-out half, percent); the groups they
# cover. Anthropic is after calibration; thinking streams are a flagged lower bound (Claude 4
# streams a summary of its thinking) and are shown, not targeted.
TARGETS = (
    ("OpenAI/Azure non-reasoning output", ("openai text", "openai tool calls"), "out", 3.0),
    ("OpenAI/Azure input from the request", ("openai text", "openai tool calls"), "in", 3.0),
    ("OpenAI reasoning input from the request", ("openai reasoning",), "in", 3.0),
    ("Anthropic output, calibrated", ("anthropic",), "out", 10.0),
)


def pct(est: float, truth: int) -> float:
    return abs(est - truth) * 100 / truth


def stat(values: list[float]) -> str:
    if not values:
        return f"{'-':>7} {'-':>7}"
    return f"{statistics.fmean(values):6.2f}% {statistics.median(values):6.2f}%"


def run(per_stream: bool, only: str | None) -> None:
    cases = load_cases()
    est = calibrated(c for c in cases if c.half == FIT)  # calibration never sees HELD-OUT
    rows: dict[tuple[str, str], dict[str, list[float]]] = {}
    nulls = 0
    untested = unlearned(cases, est)
    for c in cases:
        cut = c.cut()
        model = cut.model or c.full.model
        e = est.estimate(cut, model=model, request_body=c.request)
        bare = est.estimate(cut, model=model)  # as when no request is logged
        truth = c.full.usage
        assert truth is not None
        if e.output_tokens is None or (truth.output_tokens and not e.output_tokens):
            nulls += 1
        halves = [c.half, "all"] + (
            [LEARNED] if c.half == HELD_OUT and c.name not in untested else []
        )
        for half in halves:
            r = rows.setdefault((c.group, half), {k: [] for k in KEYS})
            r["out"].append(pct(e.output_tokens, truth.output_tokens))
            r["bare"].append(pct(bare.output_tokens, truth.output_tokens))
            visible_truth = truth.output_tokens - truth.reasoning_tokens
            if truth.reasoning_tokens and not c.group.startswith("anthropic") and visible_truth:
                r["vis"].append(pct(e.output_tokens - (e.reasoning_tokens or 0), visible_truth))
            if e.input_tokens is not None and truth.input_tokens:
                r["in"].append(pct(e.input_tokens, truth.input_tokens))
        if per_stream and (only is None or c.half == only):
            err = pct(e.output_tokens, truth.output_tokens)
            in_err = pct(e.input_tokens, truth.input_tokens) if e.input_tokens else None
            print(
                f"{c.name:34} {c.half:8} {c.group:18} out {truth.output_tokens:>6}"
                f" est {e.output_tokens:>6} ({err:5.1f}%)  in {truth.input_tokens:>6}"
                f" est {e.input_tokens!s:>6}"
                f" ({'-' if in_err is None else f'{in_err:4.1f}'}%) {e.token_source}"
            )

    print(
        f"{'group':22} {'half':>8} {'n':>4}  {'output mean':>11} {'median':>7}"
        f"  {'n in':>4} {'input mean':>10} {'median':>7}  {'output, no request: mean':>24}"
    )
    for g in sorted({g for g, _ in rows}):
        for half in HALVES:
            data = rows.get((g, half), {k: [] for k in KEYS})
            print(
                f"{g:22} {half:>8} {len(data['out']):>4}  {stat(data['out'])}"
                f"  {len(data['in']):>4} {stat(data['in'])}  {stat(data['bare']):>24}"
            )
            if data["vis"]:
                print(
                    f"{'  visible part only':22} {half:>8} {len(data['vis']):>4}"
                    f"  {stat(data['vis'])}"
                )
    print(f"null or zero output estimates (streams that produced tokens): {nulls}")
    print(
        f"targets (mean absolute error)            held-out     fit     all  target"
        f"   held-out without the {len(untested)} streams of rules FIT lacks"
    )
    for label, groups, key, limit in TARGETS:
        means = []
        for half in (*HALVES, LEARNED):
            values = [v for g in groups for v in rows.get((g, half), {}).get(key, [])]
            means.append(statistics.fmean(values) if values else float("nan"))
        ok = "ok" if means[0] <= limit else "MISSED"
        print(
            f"  {label:42} {means[0]:6.2f}% {means[1]:6.2f}% {means[2]:6.2f}%  {limit:4.0f}% {ok:6}"
            f"  {means[3]:6.2f}%"
        )
    print(f"  no null estimate: {'ok' if not nulls else 'MISSED'}")
    for model, m in sorted(est.metrics()["models"].items()):
        if m["ratio"] is not None or m["input_ratio"] is not None:
            print(
                f"calibration learned on the fit half: {model}: output ratio {m['ratio']}"
                f" (sequential held-out error raw {m['mape_uncalibrated_pct']}%, calibrated"
                f" {m['mape_calibrated_pct']}%), input ratio {m['input_ratio']}"
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--per-stream", action="store_true", help="print every stream's figures")
    p.add_argument("--half", choices=(FIT, HELD_OUT), help="--per-stream: only this half")
    args = p.parse_args()
    run(args.per_stream, args.half)


if __name__ == "__main__":
    main()
