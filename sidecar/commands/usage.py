"""`llm-hec-sidecar usage FILE...`: what the sidecar sees in captured response bodies.

For each file (raw `.sse` text, a JSON body, a Gemini JSON-array stream) print one JSON line
with the event-schema keys that describe usage and cost. A file that cannot be read or parsed
gets a clear message on stderr and a non-zero exit, after the other files are printed.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

import orjson

from sidecar.config import Config, Tokens
from sidecar.config import Pricing as PricingConfig
from sidecar.types import Completed

if TYPE_CHECKING:
    from sidecar.enrich.event import Enricher

KEYS = (
    "provider",
    "api",
    "model",
    "status",
    "finish_reason",
    "input_tokens",
    "cached_input_tokens",
    "cache_write_input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "total_tokens",
    "tokens_estimated",
    "token_source",
    "estimated_cost_usd",
    "cost_known",
    "cost_status",
)
PROVIDERS = ("openai", "azure", "anthropic", "gemini", "vertex", "other")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", metavar="FILE", help="captured response bodies")
    p.add_argument("--provider", choices=PROVIDERS, help="override provider detection")
    p.add_argument("-c", "--config", default=None, help="config.yaml for pricing and tokens")


def describe(text: str, *, provider: str | None, enricher: Enricher) -> dict[str, Any]:
    from sidecar.parse.response import parse_completed

    c = Completed(request_id="usage", source="usage", access=None, body=text, end=None)
    parsed = parse_completed(c, provider=provider)
    if enricher.wants_text(c, parsed):
        parsed = parse_completed(c, provider=provider, want_text=True)
    body = enricher.enrich(c, parsed).body
    return {k: body[k] for k in KEYS}


def run(args: argparse.Namespace, cfg: Config | None) -> int:
    # Heavy imports (tiktoken, the price catalogue) only when the command runs.
    from sidecar.enrich.event import Enricher
    from sidecar.enrich.pricing import PricingEngine
    from sidecar.enrich.tokens import TokenEstimator

    pricing_cfg = cfg.pricing if cfg is not None else PricingConfig()
    tokens_cfg = cfg.tokens if cfg is not None else Tokens()
    enricher = Enricher(
        pricing=PricingEngine(pricing_cfg, base_dir=cfg.base_dir if cfg else "."),
        estimator=TokenEstimator(tokens_cfg),
        estimate_missing=tokens_cfg.estimate_missing,
        source_host="usage",
    )
    failed = 0
    for path in args.files:
        try:
            with open(path, "rb") as fh:
                raw = fh.read()
        except OSError as exc:
            print(f"{path}: cannot read: {exc.strerror}", file=sys.stderr)
            failed += 1
            continue
        text = raw.decode("utf-8", "surrogateescape")
        row = describe(text, provider=args.provider, enricher=enricher)
        if row["provider"] in (None, "other") and row["input_tokens"] is None and not args.provider:
            print(
                f"{path}: no provider response found in this file (not SSE or a known JSON body); "
                "pass --provider if it is one",
                file=sys.stderr,
            )
            failed += 1
            continue
        sys.stdout.buffer.write(orjson.dumps({"file": path, **row}) + b"\n")
        sys.stdout.flush()
    return 1 if failed else 0
