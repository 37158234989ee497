"""The FIT / HELD-OUT split of the recorded pool that the estimation benchmarks use
(bench/estimation_pool.py): fixed, balanced, and never the same stream on both sides.

The constants of the estimator are read off the FIT half (bench/fit_estimation.py) and its
accuracy is reported on the HELD-OUT half (bench/bench_estimation.py); these tests keep that
measurement honest when the pool or the split changes.
"""

from __future__ import annotations

import importlib
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def pool() -> ModuleType:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))  # the bench scripts import each other by name
    return importlib.import_module("estimation_pool")


@pytest.fixture(scope="module")
def cases(pool: ModuleType) -> list:
    return pool.load_cases()


def test_the_split_is_fixed(pool: ModuleType, cases: list) -> None:
    again = {c.name: c.half for c in pool.load_cases()}
    assert {c.name: c.half for c in cases} == again
    # and does not depend on the order the streams are found in
    shuffled = sorted(cases, key=lambda c: c.name, reverse=True)
    for c in shuffled:
        c.half = ""
    pool.split(shuffled)
    assert {c.name: c.half for c in shuffled} == again


def test_no_request_or_source_is_on_both_sides(cases: list) -> None:
    halves_of: dict[tuple, set[str]] = {}
    for c in cases:
        if c.request is not None:
            halves_of.setdefault(("request", c.full.model, c.request), set()).add(c.half)
        halves_of.setdefault(("cluster", c.cluster), set()).add(c.half)
    assert all(len(h) == 1 for h in halves_of.values())


def test_both_halves_hold_every_main_group(pool: ModuleType, cases: list) -> None:
    counts = Counter((c.group, c.half) for c in cases)
    for group in ("openai text", "openai tool calls", "openai reasoning", "anthropic"):
        fit, held = counts[(group, pool.FIT)], counts[(group, pool.HELD_OUT)]
        assert min(fit, held) >= 0.35 * (fit + held), (group, fit, held)


def test_every_held_out_stream_is_estimated(pool: ModuleType, cases: list) -> None:
    est = pool.calibrated(c for c in cases if c.half == pool.FIT)
    for c in cases:
        if c.half == pool.HELD_OUT:
            e = est.estimate(c.cut(), model=c.full.model, request_body=c.request)
            assert e.output_tokens > 0, c.name  # never null or zero for a stream with output
