"""Micro-benchmark of the response-body parsers (not a test).

Times `parse_body(want_text=False)` (the hot path) over each recorded fixture and over a synthetic
100-chunk OpenAI chat stream with a final usage chunk, and prints streams/s and µs per stream.

    .venv/bin/python bench/bench_parse.py [--seconds 1.0]

With `--access FILE` it times the access path instead: `parse_nginx_json` (with an identity
hasher) and `parse_ratelimits` of its response headers, per line of an nginx JSON access log,
as the minimum of 7 passes in CPU time. `--rounds N` runs exactly N untimed passes of both, for
instruction counts: the difference of two callgrind runs (`--rounds 1` and `--rounds 0`) divided
by the number of lines is the instructions per line.

    .venv/bin/python bench/bench_parse.py --access bench/data/<set>/access.log [--rounds N]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import orjson

from sidecar.enrich.identity import make_hasher
from sidecar.enrich.ratelimit import parse_ratelimits
from sidecar.parse.access import parse_nginx_json
from sidecar.parse.providers import parse_body

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "recorded"


def synthetic_chat(chunks: int = 100) -> str:
    """A chat.completions stream: role chunk, `chunks` content chunks, finish, usage, [DONE]."""
    base = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-mini-2024-07-18",
        "service_tier": "default",
        "system_fingerprint": "fp_x",
        "usage": None,
        "obfuscation": "abcdefgh",
    }
    out = []
    for i in range(chunks):
        delta = {"content": f" token{i}"} if i else {"role": "assistant", "content": ""}
        chunk = dict(base, choices=[{"index": 0, "delta": delta, "finish_reason": None}])
        out.append("data: " + orjson.dumps(chunk).decode() + "\n\n")
    finish = dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}])
    out.append("data: " + orjson.dumps(finish).decode() + "\n\n")
    usage = {
        "prompt_tokens": 50,
        "completion_tokens": chunks,
        "total_tokens": 50 + chunks,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }
    out.append("data: " + orjson.dumps(dict(base, choices=[], usage=usage)).decode() + "\n\n")
    out.append("data: [DONE]\n\n")
    return "".join(out)


def bench(name: str, body: str, seconds: float, want_text: bool = False) -> None:
    parse_body(body, want_text=want_text)  # warm up
    n = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(200):
            parse_body(body, want_text=want_text)
        n += 200
        now = time.perf_counter()
        if now >= deadline:
            break
    elapsed = now - start
    print(
        f"{name:42s} {len(body):7d} B  {n / elapsed:10,.0f} streams/s  "
        f"{elapsed / n * 1e6:8.1f} µs/stream"
    )


def _provider(host: str | None) -> str:
    """The provider the event would name, from the upstream host (enough for a benchmark)."""
    host = host or ""
    return "anthropic" if "anthropic" in host else "openai" if "openai" in host else "gemini"


def bench_access(path: Path, rounds: int | None) -> None:
    lines = [line for line in path.read_bytes().splitlines() if line.strip()]
    hasher = make_hasher(b"bench-key")
    recs = [parse_nginx_json(line, hasher) for line in lines]
    providers = [_provider(rec.upstream_host) for rec in recs]

    def parse() -> None:
        for line in lines:
            parse_nginx_json(line, hasher)

    def limits() -> None:
        for rec, provider in zip(recs, providers, strict=True):
            parse_ratelimits(rec.response_headers, provider=provider, now=rec.time or 0.0)

    if rounds is not None:
        for _ in range(rounds):
            parse()
            limits()
        return
    for name, fn in (("parse_nginx_json", parse), ("parse_ratelimits", limits)):
        passes = []
        for _ in range(7):
            start = time.process_time()
            fn()
            passes.append(time.process_time() - start)
        print(f"{name:42s} {len(lines):7d} lines  {min(passes) / len(lines) * 1e6:8.2f} µs/line")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.0, help="time per body")
    ap.add_argument("--access", type=Path, help="time the access path over this access log")
    ap.add_argument("--rounds", type=int, help="with --access: run N untimed passes")
    args = ap.parse_args()
    if args.access:
        bench_access(args.access, args.rounds)
        return
    body = synthetic_chat(100)
    bench("synthetic chat, 100 chunks", body, args.seconds)
    bench("synthetic chat, 100 chunks, want_text", body, args.seconds, want_text=True)
    if FIXTURES.is_dir():
        for path in sorted(FIXTURES.iterdir()):
            if path.suffix in (".sse", ".json"):
                bench(path.name, path.read_text(encoding="utf-8"), args.seconds / 4)


if __name__ == "__main__":
    main()
