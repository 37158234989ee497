"""The recorded streams the estimation benchmarks learn from and measure on, and their split.

Shared by `bench/bench_estimation.py` (accuracy) and `bench/fit_estimation.py` (the constants).
Every stream of the pool (`tests/fixtures/streams-pool/`, with the request bodies of
`requests.jsonl.gz`) and every recorded fixture with usage (`tests/fixtures/recorded/`) is a
`Case`: the stream as recorded, the same stream without its usage (OpenAI chat: the usage chunk;
Responses: the terminal event; Anthropic: `message_delta` and `message_stop`; Gemini: every
`usageMetadata`), its request where one was recorded, and its group.

The split (fixed; documented in docs/estimation.md)
    The pool is clustered: one test scenario is recorded sync and async, turn after turn, and
    through two client paths (Anthropic and its beta API, two Azure clients), so many files are
    the same request with the same answer. A split by file would put copies of one stream on both
    sides. Streams are therefore clustered: two streams are in one cluster when they come from
    the same source directory (`repo:dirname(path)` in the manifests) of the same provider
    folder, or when their model and request body are identical (transitively; a recorded fixture
    without a request is its own cluster). Each cluster is given the shape most of its streams
    have (its stratum: the group, and what the request's `tool_choice` asks: nothing or auto,
    any tool, or a named tool), so that both halves see every request shape that has more than
    one cluster; within each stratum the clusters, ordered by the SHA-256 of their key
    (the smallest stream name in the cluster), are dealt one by one to the half that has fewer
    streams of that stratum so far (ties to FIT). FIT is what the constants
    are read off (`bench/fit_estimation.py`) and what calibration learns from; HELD-OUT is what
    the targets are measured on.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections import Counter
from collections.abc import Iterable
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
FIT = "fit"
HELD_OUT = "held-out"
_TERMINAL = ("response.completed", "response.incomplete", "response.failed")


@dataclass
class Case:
    name: str  # <folder>/<file>
    text: str  # the stream as recorded
    stripped: str  # the stream without its usage
    request: str | None
    full: ParsedBody  # parsed with usage and text (the truth, and calibration samples)
    group: str
    cluster: str = ""
    half: str = FIT

    def cut(self) -> ParsedBody:
        """The stream as the sidecar parses it once its usage is gone."""
        pb = parse_body(
            self.stripped, provider=self.full.provider, api=self.full.api, want_text=True
        )
        assert pb.usage is None or pb.usage_partial, self.name
        return pb


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


def _shape(c: Case) -> str:
    """The stratum of a stream: its group and the kind of `tool_choice` its request has."""
    choice = orjson.loads(c.request).get("tool_choice") if c.request else None
    if isinstance(choice, dict):
        choice = "named" if choice.get("name") or choice.get("function") else choice.get("type")
    if choice in ("any", "required"):
        return f"{c.group}/any"
    return f"{c.group}/named" if choice in ("named", "tool", "function") else c.group


def _directories() -> dict[str, str]:
    """Stream name -> its source directory, from the pool's manifests."""
    out = {}
    for folder in ("openai", "anthropic"):
        for row in json.loads((POOL / folder / "manifest.json").read_text(encoding="utf-8")):
            where = f"{folder}:{row['repo']}:{row['path'].rsplit('/', 1)[0]}"
            out[f"{folder}/{row['name']}"] = where
    return out


def cluster(cases: list[Case]) -> None:
    """Set every case's `cluster`: same source directory, or same model and request."""
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    directories = _directories()
    for c in cases:
        links = [f"dir:{directories.get(c.name, c.name)}"]
        if c.request is not None:
            links.append(f"request:{c.full.model}:{c.request}")
        for link in links:
            parent[root(link)] = root(c.name)
    names: dict[str, str] = {}
    for c in sorted(cases, key=lambda c: c.name):
        c.cluster = names.setdefault(root(c.name), c.name)


def split(cases: list[Case]) -> None:
    """Set every case's `cluster` and `half` (see the module's docstring)."""
    cluster(cases)
    members: dict[str, list[Case]] = {}
    for c in cases:
        members.setdefault(c.cluster, []).append(c)
    strata: dict[str, list[str]] = {}
    for key, group in members.items():
        counts = Counter(_shape(c) for c in group)
        stratum = min(counts, key=lambda shape: (-counts[shape], shape))
        strata.setdefault(stratum, []).append(key)
    for keys in strata.values():
        size = {FIT: 0, HELD_OUT: 0}
        for key in sorted(keys, key=lambda k: hashlib.sha256(k.encode()).hexdigest()):
            half = FIT if size[FIT] <= size[HELD_OUT] else HELD_OUT
            for c in members[key]:
                c.half = half
            size[half] += len(members[key])


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
    for name, path in files:
        text = path.read_text(encoding="utf-8")
        full = parse_body(text, want_text=True)
        group = _group(full, text)
        if group is None:
            continue
        cases.append(Case(name, text, strip_usage(text), requests.get(name), full, group))
    split(cases)
    return cases


def calibrated(cases: Iterable[Case]) -> TokenEstimator:
    """An estimator that has observed the complete streams of `cases`, in order."""
    est = TokenEstimator(Tokens())
    for c in cases:
        est.observe(c.full, model=c.full.model, request_body=c.request)
    return est
