#!/usr/bin/env python3
"""Write deterministic example logs: what an nginx + Lua LLM proxy writes, plus the truth.

    python examples/generate.py [--requests N] [--seed S] [--out DIR] [--style chunks|bodies]
                                [--chunks-per-stream K] [--mix default|streams|large]
                                [--concurrency C] [--chunk-scale F]

--mix large (benchmarks and the join's backlog test; use with --requests 100000): streams of
20 to 400 content events (median 120; --chunk-scale multiplies the three), about 70% OpenAI,
20% Anthropic, 10% Gemini, 50 requests in flight unless --concurrency says otherwise, events
merged and split across records as nginx relays them, 429s (some with no body record at all),
server errors and cancels; truth.json is exact for every request.

Files written into DIR (default examples/logs/):
  access.log   preset nginx_json: one JSON line per request, at request end (examples/nginx/)
  body.log     style chunks: {"ts","request_id","data"} per network chunk, then {"ts","request_id",
               "end"}; records of concurrent requests interleave; the file is sorted by ts.
               Style bodies: one {"ts","request_id","content_type","body","truncated"} per request.
  truth.json   per request id: provider, api, served model, statuses and normalised usage.

Same arguments -> byte-identical files. Stdlib + orjson only. The streams copy the byte shape of
the real recordings in the shared fixtures (tests/fixtures/recorded; formats: https://platform.openai.com/docs/api-reference/chat-streaming).
"""

from __future__ import annotations

import argparse
import bisect
import heapq
import itertools
import json
import math
import random
import sys
import time
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import orjson

BASE_MS = 1_772_442_000_000  # 2026-03-02T09:00:00Z, first request start
MAX_RECORD = 4096  # nginx proxy_buffer_size: large bodies are relayed in 4 KiB pieces
P_MERGE = 0.1  # an event boundary that is not a record boundary (events coalesced)
P_CUT = 0.1  # an extra record boundary inside an event (event cut in two)
ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
WORDS = (
    "the", "a", "model", "token", "stream", "cost", "usage", "request", "proxy", "log",
    "splunk", "event", "latency", "cache", "price", "budget", "report", "tenant", "answer",
    "summary", "data", "because", "and", "with", "for", "from", "into", "quickly", "clearly",
    "café", "naïve", "résumé", "é", "世界", "日本語", "🙂", "déjà", "vu", "Größe", "niño",
    "São", "Zürich", "你好", "🚀", "—", "…", "«ok»", '"quoted"', "and/or", "\n\n", "\n-",
)  # fmt: skip
USERS = (  # user, tenant, remote_addr; the weights below make alice the busiest
    ("alice", "acme", "10.0.1.11"),
    ("bob", "acme", "10.0.1.12"),
    ("carol", "globex", "10.0.2.21"),
    ("dave", "globex", "10.0.2.22"),
    ("erin", "initech", "10.0.3.31"),
)
USER_WEIGHTS = (5, 3, 3, 2, 1)
API_KEYS = {  # fake keys; the sidecar must hash them and never forward them
    "openai": (
        "sk-proj-Xq3vT9bL2mR7kP4wZ8nC1dF6hJ0sA5eGxYuIoQwErTyUpAsDfGhJkL",
        "sk-proj-M2nB4vC6xZ8lK0jH1gF3dS5aQ7wE9rT2yU4iO6pA8sD0fG2hJ4kL6z",
        "sk-svcacct-P9oI8uY7tR6eW5qA4sD3fG2hJ1kL0zX9cV8bN7mQ6wE5rT4yU3i",
    ),
    "anthropic": (
        "sk-ant-api03-Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op8Qr9St0Uv1Wx2Yz3Ab4Cd5Ef6Gh7-AA",
        "sk-ant-api03-Zy9Xw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe9Dc8Ba7Zy6Xw5Vu4Ts3-BB",
    ),
    "gemini": ("AIzaSyD3f4k3K3yF0rT3st1ngOnlyAbCdEfGhIj",),
}
UPSTREAMS = {  # provider -> (host, upstream_addr, user agent)
    "openai": ("api.openai.com", "162.159.140.245:443", "OpenAI/Python 1.109.1"),
    "anthropic": ("api.anthropic.com", "160.79.104.10:443", "Anthropic/Python 0.69.0"),
    "gemini": (
        "generativelanguage.googleapis.com",
        "142.250.185.74:443",
        "google-genai-sdk/1.38.0 gl-python/3.11.9",
    ),
}
URIS = {
    "openai": "/v1/chat/completions",
    "anthropic": "/v1/messages",
    "gemini": "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
}
APIS = {"openai": "chat.completions", "anthropic": "messages", "gemini": "generate_content"}
OPENAI_MODELS = (
    ("gpt-4o-mini", "gpt-4o-mini-2024-07-18"),
    ("gpt-4.1-mini", "gpt-4.1-mini-2025-04-14"),
)
ANTHROPIC_MODELS = ("claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001")
SSE_TYPE = "text/event-stream; charset=utf-8"
JSON_TYPE = "application/json"
ANTHROPIC_RL = ("requests", "tokens", "input_tokens", "output_tokens")
ACCESS_KEYS = (
    "ts", "time", "request_id", "remote_addr", "method", "uri", "status", "request_time",
    "request_completion", "upstream_addr", "upstream_host", "upstream_status",
    "upstream_header_time", "req_content_type", "req_user_agent", "req_x_stainless_retry_count",
    "user", "tenant", "api_key", "conversation_id", "client_request_id", "resp_content_type",
    "resp_content_encoding", "resp_x_request_id", "resp_request_id",
    "resp_x_ratelimit_limit_requests", "resp_x_ratelimit_remaining_requests",
    "resp_x_ratelimit_reset_requests", "resp_x_ratelimit_limit_tokens",
    "resp_x_ratelimit_remaining_tokens", "resp_x_ratelimit_reset_tokens", "resp_retry_after",
    "resp_retry_after_ms",
    *(f"resp_anthropic_ratelimit_{n}_{p}" for n in ANTHROPIC_RL
      for p in ("limit", "remaining", "reset")),
)  # fmt: skip
# kind -> share of the requests (at least one each from 20 requests up); the rest is openai_stream
MIX = {
    "openai_json": 0.15,
    "anthropic_stream": 0.15,
    "gemini_stream": 0.12,
    "openai_stream_sdk_close": 0.015,
    "cancelled_before_header": 0.02,
    "cancelled_midstream": 0.025,
    "rate_limited": 0.01,
    "server_error": 0.005,
}
STREAMS_MIX = {"anthropic_stream": 0.2, "gemini_stream": 0.15}
LARGE_MIX = {  # the rest is openai_stream: about 70% OpenAI in all
    "anthropic_stream": 0.2,
    "gemini_stream": 0.1,
    "openai_json": 0.03,
    "openai_stream_sdk_close": 0.01,
    "cancelled_before_header": 0.005,
    "cancelled_midstream": 0.02,
    "rate_limited": 0.01,
    "rate_limited_no_body": 0.005,
    "server_error": 0.003,
}
LARGE_CHUNKS = (20, 120, 400)  # content events per stream: min, median, max


# ------------------------------------------------------------------ UTF-8-safe splitting
def utf8_boundary(data: bytes, pos: int) -> int:
    """Move pos back to the start of the UTF-8 character it falls in (as bodylog.lua's carry)."""
    while 0 < pos < len(data) and data[pos] & 0xC0 == 0x80:
        pos -= 1
    return pos


def utf8_cut_points(data: bytes, cuts: Iterable[int], max_len: int = MAX_RECORD) -> list[int]:
    """Record end offsets: the wanted cuts moved to character starts, no piece over max_len."""
    out: list[int] = []
    prev, n = 0, len(data)
    for want in [*sorted(set(cuts)), n]:
        while min(want, n) - prev > max_len:
            mid = utf8_boundary(data, prev + max_len)
            out.append(mid)
            prev = mid
        c = utf8_boundary(data, min(want, n))
        if c > prev:
            out.append(c)
            prev = c
    return out


def split_utf8(data: bytes, cuts: Iterable[int], max_len: int = MAX_RECORD) -> list[bytes]:
    """Cut data near the given byte offsets, never inside a multi-byte character."""
    pieces, prev = [], 0
    for end in utf8_cut_points(data, cuts, max_len):
        pieces.append(data[prev:end])
        prev = end
    return pieces


# ------------------------------------------------------------------ small helpers
def ts_text(ms: int) -> str:
    return f"{ms // 1000}.{ms % 1000:03d}"


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def rfc3339(ms: int) -> str:
    return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def go_duration(ms: int) -> str:
    """OpenAI's x-ratelimit-reset-* values are Go durations: 12ms, 8.64s, 6m0s."""
    if ms < 1000:
        return f"{ms}ms"
    minutes, rest = divmod(ms, 60_000)
    secs = f"{rest / 1000:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{minutes}m{secs}" if minutes else secs


def rand_id(rng: random.Random, n: int, alphabet: str = ALNUM) -> str:
    return "".join(rng.choices(alphabet, k=n))


def words(rng: random.Random, n: int) -> list[str]:
    return rng.choices(WORDS, k=n)


def join_words(ws: list[str], first: bool) -> str:
    return "".join(w if (first and i == 0) else " " + w for i, w in enumerate(ws))


def gjson(obj: object) -> bytes:
    """Gemini's wire JSON: `"key": value` with a space, items joined by a bare comma."""
    return json.dumps(obj, separators=(",", ": "), ensure_ascii=False).encode()


def usage_truth(inp: int, cached: int, cache_write: int, out: int, reasoning: int) -> dict:
    return {
        "input_tokens": inp,
        "cached_input_tokens": cached,
        "cache_write_input_tokens": cache_write,
        "output_tokens": out,
        "reasoning_tokens": reasoning,
    }


NO_USAGE = dict.fromkeys(usage_truth(0, 0, 0, 0, 0))


def openai_usage(prompt: int, completion: int, cached: int = 0) -> dict:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def openai_headers(rng: random.Random, start: int, prompt: int) -> dict:
    lim_r, lim_t = rng.choice(((5000, 4_000_000), (10000, 10_000_000)))
    used_r = rng.randint(1, 60)
    rem_t = lim_t - prompt - rng.randint(0, lim_t // 20)
    return {
        "resp_x_request_id": f"req_{rng.getrandbits(128):032x}",
        "resp_x_ratelimit_limit_requests": str(lim_r),
        "resp_x_ratelimit_remaining_requests": str(lim_r - used_r),
        "resp_x_ratelimit_reset_requests": go_duration(used_r * 60_000 // lim_r),
        "resp_x_ratelimit_limit_tokens": str(lim_t),
        "resp_x_ratelimit_remaining_tokens": str(rem_t),
        "resp_x_ratelimit_reset_tokens": go_duration((lim_t - rem_t) * 60_000 // lim_t),
    }


def anthropic_headers(rng: random.Random, start: int, inp: int, out: int) -> dict:
    limits = {"requests": 4000, "input_tokens": 400_000, "output_tokens": 80_000}
    used = {
        "requests": rng.randint(1, 30),
        "input_tokens": -(-inp // 1000) * 1000,
        "output_tokens": -(-max(out, 1) // 1000) * 1000,
    }
    limits["tokens"] = limits["input_tokens"] + limits["output_tokens"]
    used["tokens"] = used["input_tokens"] + used["output_tokens"]
    h = {"resp_request_id": "req_011C" + rand_id(rng, 20)}
    for name in ANTHROPIC_RL:
        h[f"resp_anthropic_ratelimit_{name}_limit"] = str(limits[name])
        h[f"resp_anthropic_ratelimit_{name}_remaining"] = str(limits[name] - used[name])
        h[f"resp_anthropic_ratelimit_{name}_reset"] = rfc3339(start + rng.randint(0, 2000))
    return h


def event_times(rng: random.Random, t0: int, n: int, lo: int, hi: int) -> list[int]:
    times, t = [], t0
    for _ in range(n):
        times.append(t)
        t += rng.randint(lo, hi)
    return times


# ------------------------------------------------------------------ provider bodies
# Each builder returns (events, times, resp headers, truth, served model) for a 200 stream.
def openai_stream(rng: random.Random, start: int, k: int) -> tuple:
    _, served = OPENAI_MODELS[0] if rng.random() < 0.75 else OPENAI_MODELS[1]
    cid, created = "chatcmpl-" + rand_id(rng, 29), start // 1000
    fp = "fp_" + f"{rng.getrandbits(40):010x}"
    head = orjson.dumps(
        {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": served,
            "service_tier": "default",
            "system_fingerprint": fp,
        }
    )[:-1]

    def chunk(choices: list, usage: dict | None) -> bytes:
        rest = orjson.dumps(
            {"choices": choices, "usage": usage, "obfuscation": rand_id(rng, rng.randint(1, 15))}
        )
        return b"data: " + head + b"," + rest[1:] + b"\n\n"

    def delta(d: dict, finish: str | None = None) -> list:
        return [{"index": 0, "delta": d, "logprobs": None, "finish_reason": finish}]

    ws = words(rng, k)
    events = [chunk(delta({"role": "assistant", "content": "", "refusal": None}), None)]
    events += [chunk(delta({"content": join_words([w], i == 0)}), None) for i, w in enumerate(ws)]
    prompt = rng.randint(12, 4000)
    finish = "length" if rng.random() < 0.05 else "stop"
    events.append(chunk(delta({}, finish), None))
    events.append(chunk([], openai_usage(prompt, k)))
    events.append(b"data: [DONE]\n\n")
    times = event_times(rng, start + rng.randint(250, 1200), len(events) - 2, 3, 60)
    times += [times[-1] + rng.randint(0, 30)] * 2
    truth = usage_truth(prompt, 0, 0, k, 0)
    return events, times, openai_headers(rng, start, prompt), truth, served


def anthropic_stream(rng: random.Random, start: int, k: int) -> tuple:
    model = ANTHROPIC_MODELS[0] if rng.random() < 0.7 else ANTHROPIC_MODELS[1]
    flavour = rng.choice(("plain", "plain", "cache_read", "cache_write"))
    inp = rng.randint(8, 3000) if flavour == "plain" else rng.randint(4, 300)
    cache_read = rng.randint(1024, 20000) if flavour == "cache_read" else 0
    cache_write = rng.randint(1024, 20000) if flavour == "cache_write" else 0
    write_1h = cache_write if rng.random() < 0.25 else 0
    chunks = [words(rng, rng.randint(1, 4)) for _ in range(k)]
    out = sum(len(c) for c in chunks) + rng.randint(1, 4)
    totals = {
        "input_tokens": inp,
        "cache_creation_input_tokens": cache_write,
        "cache_read_input_tokens": cache_read,
    }
    start_usage = {
        **totals,
        "cache_creation": {
            "ephemeral_5m_input_tokens": cache_write - write_1h,
            "ephemeral_1h_input_tokens": write_1h,
        },
        "output_tokens": rng.randint(1, 2),
        "service_tier": "standard",
        "inference_geo": "not_available",
    }

    def ev(name: str, obj: dict) -> bytes:
        data = orjson.dumps(obj)
        if rng.random() < 0.5:  # Anthropic pads some data lines with spaces inside the JSON
            data = data[:-1] + b" " * rng.randint(1, 15) + b"}"
        return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"

    msg = {
        "model": model,
        "id": "msg_01" + rand_id(rng, 22),
        "type": "message",
        "role": "assistant",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "stop_details": None,
        "usage": start_usage,
    }
    events = [
        ev("message_start", {"type": "message_start", "message": msg}),
        ev(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        b'event: ping\ndata: {"type": "ping"}\n\n',
    ]
    for i, c in enumerate(chunks):
        d = {"type": "text_delta", "text": join_words(c, i == 0)}
        events.append(
            ev("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": d})
        )
    stop = "max_tokens" if rng.random() < 0.05 else "end_turn"
    events += [
        ev("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ev(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None, "stop_details": None},
                "usage": {**totals, "output_tokens": out},
            },
        ),
        ev("message_stop", {"type": "message_stop"}),
    ]
    times = event_times(rng, start + rng.randint(400, 1500), len(events), 5, 80)
    truth = usage_truth(inp + cache_read + cache_write, cache_read, cache_write, out, 0)
    return events, times, anthropic_headers(rng, start, inp, out), truth, model


def gemini_stream(rng: random.Random, start: int, k: int) -> tuple:
    prompt = rng.randint(5, 2000)
    thoughts = rng.randint(40, 1500) if rng.random() < 0.6 else 0
    sparse = rng.random() < 0.3  # fixture gemini_stream_1: early snapshots lack candidates
    resp_id, events, words_so_far = rand_id(rng, 23), [], 0
    for i in range(k):
        ws = words(rng, rng.randint(1, 6))
        words_so_far += len(ws)
        last = i == k - 1
        cand = {"content": {"parts": [{"text": join_words(ws, i == 0)}], "role": "model"}}
        if last:
            cand["finishReason"] = "STOP"
        cand["index"] = 0
        p = prompt if last or not sparse else prompt + 2
        um: dict = {"promptTokenCount": p}
        cands = int(words_so_far * 1.3) + 1
        if last or not sparse:
            um["candidatesTokenCount"] = cands
        um["totalTokenCount"] = p + (cands if "candidatesTokenCount" in um else 0) + thoughts
        um["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": p}]
        if thoughts:
            um["thoughtsTokenCount"] = thoughts
        obj = {
            "candidates": [cand],
            "usageMetadata": um,
            "modelVersion": "gemini-2.5-flash",
            "responseId": resp_id,
        }
        events.append(b"data: " + gjson(obj) + b"\r\n\r\n")
    times = event_times(rng, start + rng.randint(400, 1500) + thoughts, k, 40, 250)
    truth = usage_truth(prompt, 0, 0, cands + thoughts, thoughts)
    headers = {"resp_content_type": "text/event-stream"}
    return events, times, headers, truth, "gemini-2.5-flash"


STREAM_KINDS = (
    "openai_stream", "openai_stream_sdk_close", "cancelled_midstream", "anthropic_stream",
    "gemini_stream",
)  # fmt: skip
STREAMS = {"openai": openai_stream, "anthropic": anthropic_stream, "gemini": gemini_stream}


def openai_json(rng: random.Random, start: int) -> tuple:
    _, served = OPENAI_MODELS[0] if rng.random() < 0.7 else OPENAI_MODELS[1]
    n = rng.randint(800, 1600) if rng.random() < 0.2 else rng.randint(5, 200)
    prompt = rng.randint(12, 6000)
    cached = 1024 + 128 * rng.randint(0, (prompt - 1024) // 128) if prompt >= 1024 else 0
    cached = cached if rng.random() < 0.4 else 0
    out = int(n * 1.25) + 1
    body = {
        "id": "chatcmpl-" + rand_id(rng, 29),
        "object": "chat.completion",
        "created": start // 1000,
        "model": served,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": join_words(words(rng, n), True),
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": openai_usage(prompt, out, cached),
        "service_tier": "default",
        "system_fingerprint": "fp_" + f"{rng.getrandbits(40):010x}",
    }
    data = orjson.dumps(body, option=orjson.OPT_INDENT_2)
    truth = usage_truth(prompt, cached, 0, out, 0)
    return data, openai_headers(rng, start, prompt), truth, served, 300 + out * 12


def openai_error(message: str, etype: str, code: str | None) -> bytes:
    err = {"error": {"message": message, "type": etype, "param": None, "code": code}}
    return json.dumps(err, indent=4).encode() + b"\n"


# ------------------------------------------------------------------ one request
class Built:
    """Everything one request contributes: body records, access line, truth."""

    __slots__ = ("access", "bodies", "end", "records", "rid", "truth")

    def __init__(self, rid: str) -> None:
        self.rid, self.records, self.truth = rid, [], {}
        self.end, self.access, self.bodies = 0, b"", b""


def data_line(ms: int, rid: str, piece: bytes) -> bytes:
    # Debian's lua-cjson writes "/" as "\/"; reproduce it (valid JSON either way).
    s = orjson.dumps(piece.decode()).replace(b"/", b"\\/")
    return b'{"ts":%s,"request_id":"%s","data":%s}\n' % (ts_text(ms).encode(), rid.encode(), s)


def end_line(ms: int, rid: str, reason: str) -> bytes:
    return b'{"ts":%s,"request_id":"%s","end":"%s"}\n' % (
        ts_text(ms).encode(),
        rid.encode(),
        reason.encode(),
    )


def stream_records(rng: random.Random, events: list[bytes], times: list[int]) -> list:
    """[(ts, piece)]: events coalesced or cut at random byte offsets, as nginx relays them."""
    body, cuts, ends, pos = b"".join(events), [], [], 0
    for i, e in enumerate(events):
        if rng.random() < P_CUT and len(e) > 2:
            cuts.append(pos + rng.randrange(1, len(e)))
        pos += len(e)
        ends.append(pos)
        if i == len(events) - 1 or rng.random() >= P_MERGE:
            cuts.append(pos)
    out, prev = [], 0
    for end in utf8_cut_points(body, cuts):
        out.append((times[min(bisect.bisect_left(ends, end), len(times) - 1)], body[prev:end]))
        prev = end
    return out


def build(plan: dict, k_fixed: int | None) -> Built:
    rng = random.Random(plan["seed"])
    kind, start, rid = plan["kind"], plan["start"], plan["rid"]
    provider = kind.split("_")[0] if kind.split("_")[0] in STREAMS else "openai"
    b = Built(rid)
    access = dict.fromkeys(ACCESS_KEYS, "")
    host, addr, agent = UPSTREAMS[provider]
    user, tenant, remote = USERS[plan["user"]]
    keys = API_KEYS[provider]
    access.update(
        request_id=rid,
        remote_addr=remote,
        method="POST",
        uri=URIS[provider],
        upstream_addr=addr,
        upstream_host=host,
        upstream_status="200",
        req_content_type="application/json",
        req_user_agent=agent,
        req_x_stainless_retry_count="" if provider == "gemini" else plan["retry_count"],
        user=user,
        tenant=tenant,
        api_key=keys[plan["user"] % len(keys)],
        conversation_id=plan["conv"],
        client_request_id=plan["creq"],
    )
    status, completion, end_reason = 200, "OK", "complete"
    truth = {
        "provider": provider,
        "api": APIS[provider],
        "model": None,
        "http_status": 200,
        "status": "ok",
        "is_streaming": False,
    }
    usage, estimated, header_ms = NO_USAGE, False, None
    records: list = []
    if kind in STREAM_KINDS:
        k = (
            k_fixed
            or plan.get("k")
            or rng.randint(*{"gemini": (2, 14), "anthropic": (3, 40)}.get(provider, (4, 60)))
        )
        if kind == "cancelled_midstream":
            k = max(k, 8)
        events, times, headers, usage, model = STREAMS[provider](rng, start, k)
        access["resp_content_type"] = SSE_TYPE
        access.update(headers)
        records = stream_records(rng, events, times)
        header_ms = times[0] - rng.randint(1, 40)
        truth.update(model=model, is_streaming=True)
        if kind == "cancelled_midstream":  # client hung up after some text: 200, completion ""
            # keep from the record holding the first text delta up to the last before finish
            ends = list(itertools.accumulate(len(p) for _, p in records))
            lo = bisect.bisect_left(ends, len(events[0]) + len(events[1])) + 1
            hi = bisect.bisect_right(ends, sum(len(e) for e in events[: 1 + k]))
            records = records[: rng.randint(lo, max(lo, hi))]
            completion, end_reason = "", "client_closed"
            truth["status"], usage, estimated = "cancelled", NO_USAGE, True
        elif kind == "openai_stream_sdk_close":  # SDK closes after [DONE]: a complete stream
            completion, end_reason = "", "client_closed"
    elif kind == "openai_json":
        data, headers, usage, model, dur = openai_json(rng, start)
        access.update(resp_content_type=JSON_TYPE, **headers)
        t = start + dur + rng.randint(0, 800)
        records = [(t, p) for p in split_utf8(data, [])]
        header_ms = t - rng.randint(0, 3)
        truth["model"] = model
    elif kind == "cancelled_before_header":  # 499: nothing sent, only an end record
        status, completion, end_reason = 499, "", "client_closed"
        access.update(upstream_status="-", upstream_header_time="-")
        truth.update(http_status=499, status="cancelled")
        b.end = start + rng.randint(1000, 8000)
    elif kind == "rate_limited_no_body":  # rejected by the proxy itself: no body record at all
        status = 429
        access.update(resp_content_type=JSON_TYPE, upstream_status="-", upstream_header_time="-")
        truth.update(http_status=429, status="rate_limited")
        b.end = start + rng.randint(1, 5)
    elif kind == "rate_limited":
        status, reset_ms = 429, rng.randint(500, 20000)
        model = OPENAI_MODELS[0][0]
        msg = (
            f"Rate limit reached for {model} in organization org-q8VtPzX3n2LkR7sYwM4bJd0e on "
            f"requests per min (RPM): Limit 500, Used 500, Requested 1. Please try again in "
            f"{go_duration(reset_ms)}. Visit https://platform.openai.com/account/rate-limits "
            "to learn more."
        )
        data = openai_error(msg, "requests", "rate_limit_exceeded")
        access.update(openai_headers(rng, start, 0))
        access.update(
            resp_content_type=JSON_TYPE,
            resp_x_ratelimit_limit_requests="500",
            resp_x_ratelimit_remaining_requests="0",
            resp_x_ratelimit_reset_requests=go_duration(reset_ms),
            resp_retry_after=str(math.ceil(reset_ms / 1000)),
            resp_retry_after_ms=str(reset_ms),
        )
        t = start + rng.randint(40, 250)
        records, header_ms = [(t, data)], t - 1
        truth.update(http_status=429, status="rate_limited")
    elif kind == "server_error":
        status = 500
        msg = "The server had an error while processing your request. Sorry about that!"
        data = openai_error(msg, "server_error", None)
        access.update(
            resp_content_type=JSON_TYPE, resp_x_request_id=f"req_{rng.getrandbits(128):032x}"
        )
        t = start + rng.randint(200, 3000)
        records, header_ms = [(t, data)], t - 1
        truth.update(http_status=500, status="error")
    else:
        raise ValueError(f"unknown kind {kind!r}")
    if records:
        b.end = records[-1][0] + rng.randint(0, 1)
    for ts, piece in records:
        b.records.append((ts, data_line(ts, rid, piece)))
    if kind != "rate_limited_no_body":
        b.records.append((b.end, end_line(b.end, rid, end_reason)))
    if status != 499 and kind != "rate_limited_no_body":
        access["upstream_status"] = str(status)
        access["upstream_header_time"] = ts_text(header_ms - start)
    access.update(
        ts=orjson.Fragment(ts_text(b.end).encode()),
        time=iso(b.end),
        status=status,
        request_time=orjson.Fragment(ts_text(b.end - start).encode()),
        request_completion=completion,
    )
    b.access = orjson.dumps(access) + b"\n"
    b.truth = {**truth, **usage, "tokens_estimated": estimated}
    ctype = access["resp_content_type"]
    whole = b"".join(p for _, p in records).decode()
    b.bodies = (
        orjson.dumps(
            {
                "ts": orjson.Fragment(ts_text(b.end).encode()),
                "request_id": rid,
                "content_type": ctype,
                "body": whole,
                "truncated": False,
            }
        )
        + b"\n"
    )
    return b


# ------------------------------------------------------------------ the whole run
def large_k(rng: random.Random, scale: float) -> int:
    """Content events of one large-mode stream: log-normal around the median, clipped."""
    lo, med, hi = (max(2, round(x * scale)) for x in LARGE_CHUNKS)
    return min(hi, max(lo, round(med * math.exp(rng.gauss(0.0, 0.6)))))


def expected_ms(kind: str, k: int) -> float:
    """Mean duration (start to access line) of a request of this kind with k content events,
    from the builders' timing draws; large mode spaces arrivals with it."""
    if kind in ("openai_stream", "openai_stream_sdk_close"):
        return 725 + 31.5 * (k + 1) + 16
    if kind == "cancelled_midstream":  # cut about halfway through its text
        return 725 + 31.5 * max(k, 8) / 2
    if kind == "anthropic_stream":
        return 950 + 42.5 * (k + 5) + 1
    if kind == "gemini_stream":  # 60% think first: 40 to 1500 ms
        return 950 + 0.6 * 770 + 145 * (k - 1) + 1
    return {
        "openai_json": 300 + 12 * 1.25 * (0.2 * 1200 + 0.8 * 102.5) + 400,
        "cancelled_before_header": 4500,
        "rate_limited": 145,
        "rate_limited_no_body": 3,
        "server_error": 1600,
    }[kind]


def plan_requests(
    n: int, seed: int, mix: str, k: int | None, concurrency: int, chunk_scale: float = 1.0
) -> list[dict]:
    rng = random.Random(seed)
    shares = {"default": MIX, "streams": STREAMS_MIX, "large": LARGE_MIX}[mix]
    kinds: list[str] = []
    for kind, share in shares.items():
        kinds += [kind] * (max(1, round(n * share)) if n >= 20 else round(n * share))
    kinds = kinds[:n] + ["openai_stream"] * max(0, n - len(kinds))
    rng.shuffle(kinds)
    large = mix == "large" and k is None
    # large: the arrival gap is set once every stream's length is drawn (below)
    gap = (700 + 35 * (k or 30)) / concurrency
    convs = [[f"conv_{rng.getrandbits(48):012x}" for _ in range(4)] for _ in USERS]
    plans, t = [], BASE_MS
    for i, kind in enumerate(kinds):
        u = rng.choices(range(len(USERS)), USER_WEIGHTS)[0]
        sdk = kind.split("_")[0] != "gemini"
        plans.append(
            {
                "i": i,
                "kind": kind,
                "start": t,
                "rid": f"{rng.getrandbits(128):032x}",
                "seed": rng.getrandbits(64),
                "user": u,
                "retry_count": "0",
                "conv": rng.choice(convs[u]) if rng.random() < 0.6 else "",
                "creq": f"{rng.getrandbits(128):032x}" if sdk and rng.random() < 0.5 else "",
            }
        )
        if large:
            plans[-1]["k"] = large_k(rng, chunk_scale)
            plans[-1]["gap"] = rng.expovariate(1.0)  # in units of the mean gap
        else:
            t += int(rng.expovariate(1 / gap)) + 1
    if large:  # Little's law: mean gap = mean duration / requests in flight
        gap = sum(expected_ms(p["kind"], p["k"]) for p in plans) / len(plans) / concurrency
        for p in plans:
            p["start"] = t
            t += int(p.pop("gap") * gap) + 1
    # each 429 is retried by the SDK: a later openai_stream with the same client id and user
    taken: set[int] = set()
    for p in plans:
        if p["kind"] == "rate_limited":
            p["creq"] = p["creq"] or f"{p['rid'][:16]}{p['seed'] % 16**16:016x}"
            for q in plans[p["i"] + 1 :]:
                ok = q["kind"] == "openai_stream" and q["start"] > p["start"] + 1000
                if ok and q["i"] not in taken:
                    taken.add(q["i"])
                    q.update(creq=p["creq"], user=p["user"], conv=p["conv"], retry_count="1")
                    break
    return plans


def generate(
    out: Path,
    n: int = 200,
    seed: int = 42,
    style: str = "chunks",
    k: int | None = None,
    mix: str = "default",
    concurrency: int = 25,
    chunk_scale: float = 1.0,
) -> Counter:
    """Write access.log, body.log and truth.json into out; return counts per request kind."""
    out.mkdir(parents=True, exist_ok=True)
    plans = plan_requests(n, seed, mix, k, concurrency, chunk_scale)
    access: list[tuple[int, int, bytes]] = []
    truth: dict[str, dict] = {}
    bodies: list[tuple[int, int, bytes]] = []
    heap: list = []
    nxt = 0
    with open(out / "body.log", "wb", buffering=1 << 20) as body:
        while heap or nxt < len(plans):
            # start every request that begins before the earliest pending record
            while nxt < len(plans) and (not heap or plans[nxt]["start"] <= heap[0][0]):
                b = build(plans[nxt], k)
                access.append((b.end, nxt, b.access))
                truth[b.rid] = b.truth
                if style == "bodies":
                    bodies.append((b.end, nxt, b.bodies))
                elif b.records:
                    heapq.heappush(heap, (b.records[0][0], nxt, 0, b.records))
                nxt += 1
            if not heap:
                continue
            _, i, j, recs = heap[0]
            body.write(recs[j][1])
            if j + 1 < len(recs):
                heapq.heapreplace(heap, (recs[j + 1][0], i, j + 1, recs))
            else:
                heapq.heappop(heap)
        if style == "bodies":
            body.writelines(line for _, _, line in sorted(bodies))
    with open(out / "access.log", "wb") as f:
        f.writelines(line for _, _, line in sorted(access))
    (out / "truth.json").write_bytes(orjson.dumps(truth, option=orjson.OPT_INDENT_2) + b"\n")
    return Counter(p["kind"] for p in plans)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=200, help="number of requests (200)")
    ap.add_argument("--seed", type=int, default=42, help="random seed (42)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "logs")
    ap.add_argument("--style", choices=("chunks", "bodies"), default="chunks")
    ap.add_argument(
        "--chunks-per-stream",
        type=int,
        default=None,
        help="content events per stream (default: random per stream)",
    )
    ap.add_argument(
        "--mix",
        choices=("default", "streams", "large"),
        default="default",
        help="streams: only complete streams (benchmarks); large: long streams (see above)",
    )
    ap.add_argument(
        "--concurrency", type=int, default=None, help="mean concurrent requests (25; large: 50)"
    )
    ap.add_argument(
        "--chunk-scale", type=float, default=1.0, help="large: scale the events per stream"
    )
    a = ap.parse_args(argv)
    conc = a.concurrency or (50 if a.mix == "large" else 25)
    t0 = time.perf_counter()
    counts = generate(
        a.out, a.requests, a.seed, a.style, a.chunks_per_stream, a.mix, conc, a.chunk_scale
    )
    with open(a.out / "body.log", "rb") as f:
        lines = sum(1 for _ in f)
    print(
        f"wrote {a.requests} requests, {lines} body lines to {a.out} in "
        f"{time.perf_counter() - t0:.1f}s: "
        + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())),
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
