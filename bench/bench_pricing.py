"""Micro-benchmark of the pricing engine next to genai-prices' `calc_price` (not a test).

A realistic mix of events (OpenAI, Azure, Anthropic with cache writes, Gemini above its tier,
Bedrock and Vertex spellings, an off-peak DeepSeek model, batch/flex tiers) is priced after a
warm-up (every (provider, model, tier) compiled and cached). Each sample times one pass over the
mix; the figure is the median per event across samples. genai-prices' `calc_price` runs on the
same events in the same process, and the two totals are checked to agree.

    .venv/bin/python bench/bench_pricing.py [--samples 200] [--passes 20]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal

import genai_prices

from sidecar.config import Pricing
from sidecar.enrich.pricing import PricingEngine
from sidecar.enrich.pricing_models import price_context
from sidecar.types import Usage

AT = datetime(2026, 11, 1, 14, 30, tzinfo=UTC)

# (sidecar provider, model as served, genai-prices provider id, tier, usage)
EVENTS = [
    ("openai", "gpt-4o-2024-08-06", "openai", None, Usage(1600, 1000, 0, 0, 500, 0)),
    ("openai", "gpt-5", "openai", "flex", Usage(12000, 8000, 0, 0, 900, 600)),
    ("openai", "gpt-4.1-mini", "openai", "batch", Usage(3000, 0, 0, 0, 200, 0)),
    ("azure", "gpt-4o-mini-2024-07-18", "azure", None, Usage(800, 0, 0, 0, 120, 0)),
    ("anthropic", "claude-sonnet-4-5", "anthropic", None, Usage(50000, 30000, 15000, 5000, 800, 0)),
    ("anthropic", "claude-haiku-4-5", "anthropic", "batch", Usage(2000, 0, 0, 0, 300, 0)),
    ("gemini", "gemini-2.5-pro", "google", None, Usage(250000, 100000, 0, 0, 4000, 2500)),
    ("vertex", "gemini-2.5-flash", "google", None, Usage(9000, 0, 0, 0, 700, 300)),
    (
        "other",
        "us.anthropic.claude-3-5-sonnet-20240620-v1:0",
        "aws",
        None,
        Usage(4000, 0, 0, 0, 400, 0),
    ),
    ("deepseek", "deepseek-chat", "deepseek", None, Usage(7000, 5000, 0, 0, 600, 0)),
]


def _gp_usage(u: Usage) -> genai_prices.Usage:
    return genai_prices.Usage(
        input_tokens=u.input_tokens,
        cache_read_tokens=u.cached_input_tokens,
        cache_write_tokens=u.cache_write_input_tokens,
        cache_write_1h_tokens=u.cache_write_1h_input_tokens,
        output_tokens=u.output_tokens,
        output_reasoning_tokens=u.reasoning_tokens,
    )


def _median_us(fn: Callable[[], None], samples: int, passes: int) -> float:
    per_event: list[float] = []
    n = len(EVENTS) * passes
    for _ in range(samples):
        t = time.perf_counter_ns()
        for _ in range(passes):
            fn()
        per_event.append((time.perf_counter_ns() - t) / n / 1000)
    return statistics.median(per_event)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--passes", type=int, default=20, help="passes over the mix per sample")
    args = ap.parse_args()

    engine = PricingEngine(Pricing())
    at = AT.timestamp()
    price = engine.price
    ours_events = [(p, m, u, t) for p, m, _, t, u in EVENTS]
    gp_events = [(_gp_usage(u), m, gp, price_context(t)) for _, m, gp, t, u in EVENTS]
    calc = genai_prices.calc_price

    def ours() -> None:
        for p, m, u, t in ours_events:
            price(provider=p, model=m, usage=u, at=at, service_tier=t)

    def theirs() -> None:
        for u, m, gp, ctx in gp_events:
            calc(u, m, provider_id=gp, genai_request_timestamp=AT, price_context=ctx)

    # warm-up, and the two engines agree on every event
    for (p, m, u, t), (gu, gm, gp, ctx) in zip(ours_events, gp_events, strict=True):
        c = price(provider=p, model=m, usage=u, at=at, service_tier=t)
        ref = calc(gu, gm, provider_id=gp, genai_request_timestamp=AT, price_context=ctx)
        exact = ref.total_price.quantize(Decimal("1e-9"), rounding=ROUND_HALF_EVEN).scaleb(9)
        assert c.cost_known and c.total_nusd == int(exact), (m, c.total_nusd, ref.total_price)
    for _ in range(200):
        ours()
        theirs()

    ours_us = _median_us(ours, args.samples, args.passes)
    theirs_us = _median_us(theirs, max(10, args.samples // 10), max(1, args.passes // 10))
    print(f"events in the mix:              {len(EVENTS)}")
    print(f"PricingEngine.price  median:    {ours_us:8.3f} µs/event")
    print(f"genai_prices.calc_price median: {theirs_us:8.3f} µs/event")
    print(f"speed-up:                       {theirs_us / ours_us:8.1f}x")


if __name__ == "__main__":
    main()
