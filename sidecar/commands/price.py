"""`llm-hec-sidecar price`: what the pricing engine charges for one usage, as one JSON object.

`--input` is the total input (cached and cache-write tokens included); `--output` includes
reasoning, as in events. Prints each cost component in USD (numbers rounded to 1e-9; null when the
cost is not known), the total `estimated_cost_usd`, the USD/MTok rates used, `pricing_model`,
`pricing_source`, `pricing_version`, `cost_known` and `cost_status`. An unknown model prints
`cost_known: false` and still exits 0; bad arguments exit 2 with a message on stderr.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime
from typing import Any

import orjson

from sidecar.config import Config, Pricing
from sidecar.errors import ConfigError
from sidecar.types import Usage, nusd_to_usd


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model name as served")
    parser.add_argument(
        "--provider", default=None, help="openai, azure, anthropic, gemini, vertex, other..."
    )
    parser.add_argument(
        "--input", type=int, default=0, help="all input tokens, cached and cache-write included"
    )
    parser.add_argument(
        "--output", type=int, default=0, help="all output tokens, reasoning included"
    )
    parser.add_argument("--cached-input", type=int, default=0, help="cache-read input tokens")
    parser.add_argument("--cache-write", type=int, default=0, help="cache-write input tokens")
    parser.add_argument(
        "--cache-write-1h",
        type=int,
        default=0,
        help="of --cache-write, tokens written with the 1-hour TTL (Anthropic)",
    )
    parser.add_argument("--reasoning", type=int, default=0, help="reasoning output tokens")
    parser.add_argument(
        "--service-tier", default=None, help="flex, priority, batch, fast... (default: standard)"
    )
    parser.add_argument(
        "--at", default=None, help="ISO date or date-time (UTC if no offset); default: now"
    )


def _parse_at(text: str | None) -> float | None:
    if text is None:
        return None
    text = text.strip()
    try:
        if len(text) == 10:
            d = date.fromisoformat(text)
            return datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--at {text!r} is not an ISO date or date-time") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _check(args: argparse.Namespace) -> Usage:
    counts = {
        "--input": args.input,
        "--output": args.output,
        "--cached-input": args.cached_input,
        "--cache-write": args.cache_write,
        "--cache-write-1h": args.cache_write_1h,
        "--reasoning": args.reasoning,
    }
    for flag, value in counts.items():
        if value < 0:
            raise ValueError(f"{flag} must be >= 0")
    if args.cached_input + args.cache_write > args.input:
        raise ValueError(
            "--input is the total input: it must include --cached-input and --cache-write"
        )
    if args.cache_write_1h > args.cache_write:
        raise ValueError("--cache-write-1h is part of --cache-write")
    if args.reasoning > args.output:
        raise ValueError("--output is the total output: it must include --reasoning")
    return Usage(
        input_tokens=args.input,
        cached_input_tokens=args.cached_input,
        cache_write_input_tokens=args.cache_write,
        cache_write_1h_input_tokens=args.cache_write_1h,
        output_tokens=args.output,
        reasoning_tokens=args.reasoning,
    )


def _usd(nusd: int, known: bool) -> float | None:
    return round(nusd_to_usd(nusd), 9) if known else None


def run(args: argparse.Namespace, cfg: Config | None) -> int:
    """Price one usage and print the JSON object; 0 on success (unknown model included)."""
    from sidecar.enrich.pricing import PricingEngine

    try:
        usage = _check(args)
        at = _parse_at(args.at)
        engine = (
            PricingEngine(cfg.pricing, base_dir=cfg.base_dir)
            if cfg is not None
            else PricingEngine(Pricing())
        )
    except (ValueError, ConfigError) as exc:
        print(f"price: {exc}", file=sys.stderr)
        return 2
    cost = engine.price(
        provider=args.provider,
        model=args.model,
        usage=usage,
        at=at,
        service_tier=args.service_tier,
    )
    known = cost.cost_known
    when = datetime.fromtimestamp(at, UTC) if at is not None else datetime.now(UTC)
    out: dict[str, Any] = {
        "model": args.model,
        "provider": args.provider,
        "service_tier": args.service_tier,
        "at": when.isoformat().replace("+00:00", "Z"),
        "input_tokens": usage.input_tokens,
        "cached_input_tokens": usage.cached_input_tokens,
        "cache_write_input_tokens": usage.cache_write_input_tokens,
        "cache_write_1h_input_tokens": usage.cache_write_1h_input_tokens,
        "output_tokens": usage.output_tokens,
        "reasoning_tokens": usage.reasoning_tokens,
        "cost_input_usd": _usd(cost.input_nusd, known),
        "cost_cached_input_usd": _usd(cost.cached_input_nusd, known),
        "cost_cache_write_usd": _usd(cost.cache_write_nusd, known),
        "cost_cache_write_1h_usd": _usd(cost.cache_write_1h_nusd, known),
        "cost_output_usd": _usd(cost.output_nusd, known),
        "estimated_cost_usd": _usd(cost.total_nusd, known),
        "rates": cost.rates,
        "pricing_model": cost.pricing_model,
        "pricing_source": cost.pricing_source,
        "pricing_version": cost.pricing_version,
        "cost_known": known,
        "cost_status": cost.cost_status,
    }
    sys.stdout.write(orjson.dumps(out).decode() + "\n")
    sys.stdout.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m sidecar.commands.price ...` (the same options, plus -c CONFIG)."""
    parser = argparse.ArgumentParser(prog="llm-hec-sidecar price", description=__doc__)
    add_arguments(parser)
    parser.add_argument("-c", "--config", default=None, help="config.yaml for aliases/overrides")
    args = parser.parse_args(argv)
    cfg = None
    if args.config:
        from sidecar.config import load

        try:
            cfg = load(args.config)
        except ConfigError as exc:
            print(f"{args.config}: {exc}", file=sys.stderr)
            return 2
    return run(args, cfg)


if __name__ == "__main__":
    raise SystemExit(main())
