"""Accuracy of the token estimates on real recorded streams (a benchmark, not a test).

Every stream of the pool (`tests/fixtures/streams-pool/`, with the request bodies of
`requests.jsonl.gz`) and every recorded fixture with usage (`tests/fixtures/recorded/`) has its
usage removed (OpenAI chat: the usage chunk; Responses: the terminal event; Anthropic:
`message_delta` and `message_stop`; Gemini: every `usageMetadata`), is parsed again as the
sidecar would parse a cut stream, and estimated. The estimate is compared with the removed
numbers. Streams are split in two halves by position; calibration (Anthropic, Gemini) is
learned on the complete streams of one half and measured on the other, so every figure is on
streams the estimator has not learned from. Prints mean and median absolute percentage error
per group for output and, where a request exists, input.

The pool has no chunk timestamps: a reasoning model's hidden tokens cannot be estimated here
(the timing estimator is tested on generated streams, tests/unit/test_estimation.py); the
reasoning group is shown for its visible part (output - reasoning) and, for information, for
the total (a lower bound without timing).

    .venv/bin/python bench/bench_estimation.py [--per-stream]
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
from dataclasses import dataclass
from pathlib import Path

import orjson

from sidecar.config import Tokens
from sidecar.enrich.tokenizer import is_reasoning_family
from sidecar.enrich.tokens import TokenEstimator
from sidecar.parse.providers import parse_body
from sidecar.types import ParsedBody

ROOT = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
POOL = ROOT / "streams-pool"
RECORDED = ROOT / "recorded"
_TERMINAL = ("response.completed", "response.incomplete", "response.failed")


@dataclass
class Case:
    name: str
    text: str  # the stream as recorded
    stripped: str  # the stream without its usage
    request: str | None
    full: ParsedBody  # parsed with usage and text (the truth, and calibration samples)
    group: str
    half: int


def _strip_event(block: str) -> str | None:
    """One SSE event without its usage; None to drop the event."""
    data = "".join(line[5:].lstrip() for line in block.split("\n") if line.startswith("data:"))
    if not data or data.startswith("[DONE]"):
        return block
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return block
    if not isinstance(obj, dict):
        return block
    kind = obj.get("type")
    if kind in ("message_delta", "message_stop") or kind in _TERMINAL:
        return None
    if obj.get("usage") is not None and obj.get("choices") == []:
        return None  # the chat usage chunk
    changed = False
    for key in ("usage", "usageMetadata"):
        if key in obj and obj[key] is not None:
            obj[key] = None if key == "usage" else {}
            changed = True
    if not changed:
        return block
    return "data: " + orjson.dumps(obj).decode()


def strip_usage(text: str) -> str:
    if text.lstrip().startswith("["):  # a Gemini JSON-array stream
        items = json.loads(text)
        for item in items:
            if isinstance(item, dict):
                item.pop("usageMetadata", None)
        return json.dumps(items)
    blocks = text.replace("\r\n", "\n").split("\n\n")
    kept = [b for b in (_strip_event(b) for b in blocks) if b is not None]
    return "\n\n".join(kept)


def _group(pb: ParsedBody, text: str) -> str | None:
    if pb.usage is None or pb.usage.output_tokens <= 0:
        return None
    if pb.provider in ("anthropic",):
        return "anthropic thinking" if pb.reasoning_model_hint else "anthropic"
    if pb.provider in ("gemini", "vertex"):
        return "gemini thinking" if pb.usage.reasoning_tokens else "gemini"
    if pb.usage.reasoning_tokens > 0 or is_reasoning_family(pb.model):
        return "openai reasoning"
    compact = text.replace(" ", "")
    tools = '"tool_calls":[{' in compact or "function_call" in compact
    return "openai tool calls" if tools else "openai text"


def load_cases() -> list[Case]:
    requests: dict[str, str] = {}
    with gzip.open(POOL / "requests.jsonl.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            requests[row["name"]] = json.dumps(row["request"])
    files: list[tuple[str, Path]] = []
    for folder in ("openai", "anthropic"):
        files += [(f"{folder}/{p.name}", p) for p in sorted((POOL / folder).glob("*.sse"))]
    files += [
        (f"recorded/{p.name}", p)
        for p in sorted(RECORDED.glob("*"))
        if p.suffix in (".sse", ".json")
    ]
    cases = []
    for i, (name, path) in enumerate(files):
        text = path.read_text(encoding="utf-8")
        full = parse_body(text, want_text=True)
        group = _group(full, text)
        if group is None:
            continue
        cases.append(Case(name, text, strip_usage(text), requests.get(name), full, group, i % 2))
    return cases


def pct(est: float, truth: int) -> float:
    return abs(est - truth) * 100 / truth


def run(per_stream: bool) -> None:
    cases = load_cases()
    # one estimator per half, calibrated on the complete streams of the OTHER half
    estimators = {}
    for half in (0, 1):
        est = TokenEstimator(Tokens())
        for c in cases:
            if c.half != half:
                est.observe(c.full, model=c.full.model, request_body=c.request)
        estimators[half] = est
    rows: dict[tuple[str, int], dict[str, list[float]]] = {}
    nulls = 0
    for c in cases:
        cut = parse_body(c.stripped, provider=c.full.provider, api=c.full.api, want_text=True)
        assert cut.usage is None or cut.usage_partial, c.name
        model = cut.model or c.full.model
        e = estimators[c.half].estimate(cut, model=model, request_body=c.request)
        bare = estimators[c.half].estimate(cut, model=model)  # as when no request is logged
        truth = c.full.usage
        assert truth is not None
        if e.output_tokens is None:
            nulls += 1
        r = rows.setdefault((c.group, c.half), {"out": [], "in": [], "vis": [], "bare": []})
        r["bare"].append(pct(bare.output_tokens, truth.output_tokens))
        if truth.reasoning_tokens and not c.group.startswith("anthropic"):
            visible_truth = truth.output_tokens - truth.reasoning_tokens
            if visible_truth > 0:
                r["vis"].append(pct(e.output_tokens - (e.reasoning_tokens or 0), visible_truth))
        r["out"].append(pct(e.output_tokens, truth.output_tokens))
        if e.input_tokens is not None and truth.input_tokens:
            r["in"].append(pct(e.input_tokens, truth.input_tokens))
        if per_stream:
            print(
                f"{c.name:42} {c.group:18} out {truth.output_tokens:>6} est {e.output_tokens:>6}"
                f"  in {truth.input_tokens:>6} est {e.input_tokens!s:>6} {e.token_source}"
            )

    def stat(values: list[float]) -> str:
        if not values:
            return f"{'-':>7} {'-':>7}"
        return f"{statistics.fmean(values):6.2f}% {statistics.median(values):6.2f}%"

    print(
        f"{'group':22} {'half':>4} {'n':>4}  {'output mean':>11} {'median':>7}"
        f"  {'n in':>4} {'input mean':>10} {'median':>7}  {'output, no request: mean':>24}"
    )
    groups = sorted({g for g, _ in rows})
    for g in groups:
        for half in (0, 1, None):
            if half is None:
                data = {
                    k: rows.get((g, 0), {}).get(k, []) + rows.get((g, 1), {}).get(k, [])
                    for k in ("out", "in", "vis", "bare")
                }
                label = "all"
            else:
                data = rows.get((g, half), {"out": [], "in": [], "vis": [], "bare": []})
                label = str(half)
            print(
                f"{g:22} {label:>4} {len(data['out']):>4}  {stat(data['out'])}"
                f"  {len(data['in']):>4} {stat(data['in'])}  {stat(data['bare']):>24}"
            )
            if data["vis"]:
                print(
                    f"{'  visible part only':22} {label:>4} {len(data['vis']):>4}"
                    f"  {stat(data['vis'])}"
                )
    print(f"null output estimates: {nulls}")
    for half, est in estimators.items():
        for model, m in sorted(est.metrics()["models"].items()):
            if m["ratio"] is not None or m["input_ratio"] is not None:
                print(
                    f"calibration learned on half {1 - half}: {model}: output ratio {m['ratio']}"
                    f" (held-out error raw {m['mape_uncalibrated_pct']}%, calibrated"
                    f" {m['mape_calibrated_pct']}%), input ratio {m['input_ratio']}"
                )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--per-stream", action="store_true", help="print every stream's figures")
    run(p.parse_args().per_stream)


if __name__ == "__main__":
    main()
