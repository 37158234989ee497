"""`llm-hec-sidecar usage FILE...`: what the sidecar sees in captured response bodies.

For each file (raw `.sse` text, a JSON body, a Gemini JSON-array stream) print one JSON line
with the event-schema keys that describe usage and cost, and how an estimate was made
(`token_source`, `estimate_lower_bound`, `calibration_ratio`). A file that cannot be read or
parsed gets a clear message on stderr and a non-zero exit, after the other files are printed.

Each file is estimated on its own: one file's figures never depend on the others. With
`--share-calibration` the files that carry usage first calibrate one estimator, then every file
is described against that same calibration (a copy per file), so the order of the arguments
still does not matter. `--request FILE` gives the logged request body (JSON) whose input tokens
are estimated when a body carries no usage.
"""

from __future__ import annotations

import argparse
import copy
import sys
from typing import TYPE_CHECKING, Any

import orjson

from sidecar.config import Config, Tokens
from sidecar.config import Pricing as PricingConfig
from sidecar.types import AccessRecord, Completed

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
    "estimate_lower_bound",
    "calibration_ratio",
)
PROVIDERS = ("openai", "azure", "anthropic", "gemini", "vertex", "other")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", metavar="FILE", help="captured response bodies")
    p.add_argument("--provider", choices=PROVIDERS, help="override provider detection")
    p.add_argument("-c", "--config", default=None, help="config.yaml for pricing and tokens")
    p.add_argument(
        "--request",
        metavar="REQUEST_FILE",
        help="the request body (JSON) sent with these responses, to estimate input tokens",
    )
    p.add_argument(
        "--share-calibration",
        action="store_true",
        help="calibrate one estimator on the files that carry usage and use it for all files",
    )


def describe(
    text: str, *, provider: str | None, enricher: Enricher, request_body: str | None = None
) -> dict[str, Any]:
    from sidecar.parse.response import parse_completed

    access = None
    if request_body is not None:
        access = AccessRecord(request_id="usage", request_body=request_body)
    c = Completed(request_id="usage", source="usage", access=access, body=text, end=None)
    parsed = parse_completed(c, provider=provider)
    if enricher.wants_text(c, parsed):
        parsed = parse_completed(c, provider=provider, want_text=True)
    body = enricher.enrich(c, parsed).body
    return {k: body[k] for k in KEYS}


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        print(f"{path}: cannot read: {exc.strerror}", file=sys.stderr)
        return None
    return raw.decode("utf-8", "surrogateescape")


def run(args: argparse.Namespace, cfg: Config | None) -> int:
    # Heavy imports (tiktoken, the price catalogue) only when the command runs.
    from sidecar.enrich.event import Enricher
    from sidecar.enrich.pricing import PricingEngine
    from sidecar.enrich.tokens import TokenEstimator

    pricing_cfg = cfg.pricing if cfg is not None else PricingConfig()
    tokens_cfg = cfg.tokens if cfg is not None else Tokens()
    pricing = PricingEngine(pricing_cfg, base_dir=cfg.base_dir if cfg else ".")

    def enricher(estimator: TokenEstimator) -> Enricher:
        return Enricher(
            pricing=pricing,
            estimator=estimator,
            estimate_missing=tokens_cfg.estimate_missing,
            source_host="usage",
        )

    failed = 0
    request_body: str | None = None
    if args.request:
        request_body = _read(args.request)
        if request_body is None:
            return 1
    texts: dict[str, str | None] = {path: _read(path) for path in args.files}
    shared: TokenEstimator | None = None
    if args.share_calibration:
        # Calibrate on every file first, so the order of the files does not matter.
        shared = TokenEstimator(tokens_cfg)
        learner = enricher(shared)
        for text in texts.values():
            if text is not None:
                describe(text, provider=args.provider, enricher=learner)
    for path, text in texts.items():
        if text is None:
            failed += 1
            continue
        estimator = copy.deepcopy(shared) if shared is not None else TokenEstimator(tokens_cfg)
        row = describe(
            text, provider=args.provider, enricher=enricher(estimator), request_body=request_body
        )
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
