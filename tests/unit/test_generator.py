"""examples/generate.py: deterministic, well-formed, realistic logs whose usage matches truth.json.

The SSE and usage parsing here is deliberately independent of the sidecar's parsers: a few lines of
orjson per provider, enough to check the generator, not to replace the real parsers.
"""

from __future__ import annotations

import importlib.util
import itertools
import sys
from collections import defaultdict
from pathlib import Path
from types import ModuleType

import orjson
import pytest

from tests.logs import TOKEN_FIELDS

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

ACCESS_KEYS = [
    "ts", "time", "request_id", "remote_addr", "method", "uri", "status", "request_time",
    "request_completion", "upstream_addr", "upstream_host", "upstream_status",
    "upstream_header_time", "req_content_type", "req_user_agent", "req_x_stainless_retry_count",
    "user", "tenant", "api_key", "conversation_id", "client_request_id", "resp_content_type",
    "resp_content_encoding", "resp_x_request_id", "resp_request_id",
    "resp_x_ratelimit_limit_requests", "resp_x_ratelimit_remaining_requests",
    "resp_x_ratelimit_reset_requests", "resp_x_ratelimit_limit_tokens",
    "resp_x_ratelimit_remaining_tokens", "resp_x_ratelimit_reset_tokens", "resp_retry_after",
    "resp_retry_after_ms",
    *(f"resp_anthropic_ratelimit_{n}_{p}"
      for n in ("requests", "tokens", "input_tokens", "output_tokens")
      for p in ("limit", "remaining", "reset")),
]  # fmt: skip


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("examples_generate", EXAMPLES / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gen() -> ModuleType:
    return load_generator()


@pytest.fixture(scope="module")
def logs(gen: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("logs")
    gen.generate(out, n=200, seed=42)
    return out


@pytest.fixture(scope="module")
def access(logs: Path) -> list[dict]:
    return [orjson.loads(line) for line in (logs / "access.log").read_bytes().splitlines()]


@pytest.fixture(scope="module")
def body(logs: Path) -> list[dict]:
    return [orjson.loads(line) for line in (logs / "body.log").read_bytes().splitlines()]


@pytest.fixture(scope="module")
def truth(logs: Path) -> dict[str, dict]:
    return orjson.loads((logs / "truth.json").read_bytes())


@pytest.fixture(scope="module")
def bodies(body: list[dict]) -> dict[str, str]:
    out: dict[str, list[str]] = defaultdict(list)
    for rec in body:
        if "data" in rec:
            out[rec["request_id"]].append(rec["data"])
    return {rid: "".join(parts) for rid, parts in out.items()}


# ------------------------------------------------------------------ independent parsing
def sse_payloads(text: str) -> list[tuple[str | None, str]]:
    """(event name, data) of every complete SSE event; CRLF or LF framing."""
    text = text.replace("\r\n", "\n")
    out = []
    for block in text.split("\n\n")[:-1]:  # the part after the last blank line is incomplete
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
        if data:
            out.append((name, "\n".join(data)))
    return out


def usage_from_body(provider: str, text: str, streaming: bool) -> dict | None:
    """Normalised usage per truth.json's rules, or None when the body carries none."""
    if not streaming:
        obj = orjson.loads(text)
        u = obj.get("usage")
        if u is None:
            return None
        return {
            "input_tokens": u["prompt_tokens"],
            "cached_input_tokens": u["prompt_tokens_details"]["cached_tokens"],
            "cache_write_input_tokens": 0,
            "output_tokens": u["completion_tokens"],
            "reasoning_tokens": u["completion_tokens_details"]["reasoning_tokens"],
        }
    events = [(name, orjson.loads(d)) for name, d in sse_payloads(text) if d != "[DONE]"]
    if provider == "openai":
        found = [o["usage"] for _, o in events if o.get("usage") is not None]
        if not found:
            return None
        u = found[-1]
        return {
            "input_tokens": u["prompt_tokens"],
            "cached_input_tokens": u["prompt_tokens_details"]["cached_tokens"],
            "cache_write_input_tokens": 0,
            "output_tokens": u["completion_tokens"],
            "reasoning_tokens": u["completion_tokens_details"]["reasoning_tokens"],
        }
    if provider == "anthropic":
        start = next(o["message"]["usage"] for n, o in events if n == "message_start")
        deltas = [o["usage"] for n, o in events if n == "message_delta"]
        u = {**start, **deltas[-1]}
        cw, cr = u["cache_creation_input_tokens"], u["cache_read_input_tokens"]
        return {
            "input_tokens": u["input_tokens"] + cw + cr,
            "cached_input_tokens": cr,
            "cache_write_input_tokens": cw,
            "output_tokens": u["output_tokens"],
            "reasoning_tokens": 0,
        }
    u = events[-1][1]["usageMetadata"]  # gemini: the last snapshot is authoritative
    thoughts = u.get("thoughtsTokenCount", 0)
    return {
        "input_tokens": u["promptTokenCount"],
        "cached_input_tokens": u.get("cachedContentTokenCount", 0),
        "cache_write_input_tokens": 0,
        "output_tokens": u["candidatesTokenCount"] + thoughts,
        "reasoning_tokens": thoughts,
    }


# ------------------------------------------------------------------ tests
def test_deterministic_byte_identical(gen: ModuleType, logs: Path, tmp_path: Path) -> None:
    gen.generate(tmp_path, n=200, seed=42)
    for name in ("access.log", "body.log", "truth.json"):
        assert (tmp_path / name).read_bytes() == (logs / name).read_bytes(), name


def test_checked_in_logs_are_current(logs: Path) -> None:
    for name in ("access.log", "body.log", "truth.json"):
        shipped = EXAMPLES / "logs" / name
        assert shipped.read_bytes() == (logs / name).read_bytes(), f"regenerate {shipped}"


def test_other_seed_differs(gen: ModuleType, logs: Path, tmp_path: Path) -> None:
    gen.generate(tmp_path, n=200, seed=7)
    assert (tmp_path / "body.log").read_bytes() != (logs / "body.log").read_bytes()


def test_every_line_is_json_and_utf8(logs: Path) -> None:
    for name in ("access.log", "body.log"):
        raw = (logs / name).read_bytes()
        assert raw.endswith(b"\n")
        raw.decode("utf-8")
        for line in raw.splitlines():
            assert isinstance(orjson.loads(line), dict)


def test_access_log_fields(access: list[dict], truth: dict[str, dict]) -> None:
    assert len(access) == 200
    assert [a["request_id"] for a in access if a["request_id"] in truth] == [
        a["request_id"] for a in access
    ]
    assert {a["request_id"] for a in access} == set(truth)
    for a in access:
        assert list(a) == ACCESS_KEYS
        assert isinstance(a["ts"], float) and isinstance(a["request_time"], float)
        assert isinstance(a["status"], int)
        assert len(a["request_id"]) == 32 and int(a["request_id"], 16) >= 0
        assert a["request_completion"] in ("OK", "")
        assert a["api_key"].startswith(("sk-proj-", "sk-svcacct-", "sk-ant-", "AIza"))
        others = {k: v for k, v in a.items() if k not in ("ts", "status", "request_time")}
        assert all(isinstance(v, str) for v in others.values())
    assert [a["ts"] for a in access] == sorted(a["ts"] for a in access)
    assert len({a["user"] for a in access}) == 5 and len({a["tenant"] for a in access}) == 3


def test_body_log_sorted_one_end_per_request(body: list[dict], access: list[dict]) -> None:
    assert [r["ts"] for r in body] == sorted(r["ts"] for r in body)
    ends: dict[str, list[dict]] = defaultdict(list)
    seen_end: set[str] = set()
    for rec in body:
        rid = rec["request_id"]
        assert rid not in seen_end, "a record after the end record"
        assert set(rec) in ({"ts", "request_id", "data"}, {"ts", "request_id", "end"})
        if "end" in rec:
            assert rec["end"] in ("complete", "client_closed", "upstream_error")
            ends[rid].append(rec)
            seen_end.add(rid)
    by_rid = {a["request_id"]: a for a in access}
    assert set(ends) == set(by_rid)
    for rid, recs in ends.items():
        assert len(recs) == 1
        assert recs[0]["ts"] <= by_rid[rid]["ts"], "the end record precedes the access line"


def test_records_interleave(body: list[dict]) -> None:
    open_now: set[str] = set()
    peak = 0
    for rec in body:
        open_now.add(rec["request_id"])
        if "end" in rec:
            open_now.discard(rec["request_id"])
        peak = max(peak, len(open_now))
    assert peak >= 10
    runs = [rid for rid, _ in itertools.groupby(r["request_id"] for r in body)]
    assert len(runs) > 2 * len(set(runs)), "records of concurrent requests interleave"


def test_stream_shapes(body: list[dict], bodies: dict[str, str], truth: dict[str, dict]) -> None:
    merged = cut = 0
    for rec in body:
        if "data" not in rec:
            continue
        d = rec["data"]
        if truth[rec["request_id"]]["provider"] == "gemini":
            merged += d.count("\r\n\r\n") > 1
        else:
            merged += d.count("\n\n") > 1
            cut += not d.endswith("\n\n")
    assert merged > 10 and cut > 10
    for rid, t in truth.items():
        text = bodies.get(rid, "")
        if t["provider"] == "gemini" and t["status"] == "ok":
            assert text.endswith("\r\n\r\n") and "\n\n" not in text.replace("\r\n\r\n", "")
        if t["provider"] == "openai" and t["status"] == "ok" and t["is_streaming"]:
            assert text.endswith("data: [DONE]\n\n")
            chunks = [orjson.loads(d) for _, d in sse_payloads(text)[:-1]]
            assert all(set(c) >= {"usage", "obfuscation", "service_tier"} for c in chunks)
            assert chunks[-1]["choices"] == [] and chunks[-2]["choices"][0]["finish_reason"]
        if t["provider"] == "anthropic":
            names = [n for n, _ in sse_payloads(text)]
            assert names[:3] == ["message_start", "content_block_start", "ping"]
            assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]


def test_usage_matches_truth(bodies: dict[str, str], truth: dict[str, dict]) -> None:
    for rid, t in truth.items():
        text = bodies.get(rid, "")
        if t["status"] == "ok":
            usage = usage_from_body(t["provider"], text, t["is_streaming"])
            assert usage == {k: t[k] for k in TOKEN_FIELDS}, rid
            assert t["tokens_estimated"] is False
        else:
            assert all(t[k] is None for k in TOKEN_FIELDS), rid
            if t["status"] in ("error", "rate_limited"):
                assert "error" in orjson.loads(text)
                assert t["tokens_estimated"] is False


def test_cancelled_requests(
    body: list[dict], access: list[dict], bodies: dict[str, str], truth: dict[str, dict]
) -> None:
    ends = {r["request_id"]: r["end"] for r in body if "end" in r}
    kinds = {"499": 0, "midstream": 0, "done_then_closed": 0}
    for a in access:
        rid, t = a["request_id"], truth[a["request_id"]]
        if t["status"] == "cancelled" and a["status"] == 499:
            kinds["499"] += 1
            assert rid not in bodies and ends[rid] == "client_closed"
            assert t["tokens_estimated"] is False
        elif t["status"] == "cancelled":
            kinds["midstream"] += 1
            assert a["status"] == 200 and a["request_completion"] == ""
            assert ends[rid] == "client_closed" and t["tokens_estimated"] is True
            text = bodies[rid]
            assert '"usage":{' not in text and "[DONE]" not in text
            texts = [orjson.loads(d)["choices"][0]["delta"].get("content") for _, d in
                     sse_payloads(text)]  # fmt: skip
            assert any(texts), "a cancelled stream that streamed some text"
        elif ends[rid] == "client_closed":
            kinds["done_then_closed"] += 1
            assert t["status"] == "ok" and bodies[rid].endswith("data: [DONE]\n\n")
    assert all(kinds.values()), kinds


def test_mix_covers_the_cases(access: list[dict], truth: dict[str, dict]) -> None:
    ts = list(truth.values())
    assert {t["provider"] for t in ts} == {"openai", "anthropic", "gemini"}
    assert {t["status"] for t in ts} == {"ok", "error", "rate_limited", "cancelled"}
    assert {t["model"] for t in ts} >= {
        "gpt-4o-mini-2024-07-18",
        "gpt-4.1-mini-2025-04-14",
        "claude-sonnet-4-5-20250929",
        "gemini-2.5-flash",
    }
    assert any(not t["is_streaming"] and (t["cached_input_tokens"] or 0) > 0 for t in ts)
    assert any(t["provider"] == "anthropic" and t["cached_input_tokens"] > 0 for t in ts)
    assert any(t["provider"] == "anthropic" and t["cache_write_input_tokens"] > 0 for t in ts)
    assert any(t["provider"] == "gemini" and t["reasoning_tokens"] > 0 for t in ts)
    limited = [a for a in access if a["status"] == 429]
    assert limited and all(
        a["resp_x_ratelimit_remaining_requests"] == "0"
        and a["resp_retry_after"]
        and a["resp_content_type"] == "application/json"
        for a in limited
    )
    retried = {a["client_request_id"] for a in limited}
    assert any(
        a["client_request_id"] in retried and a["req_x_stainless_retry_count"] == "1"
        for a in access
    )


@pytest.mark.parametrize("text", ["aé世界🙂b", "🙂🙂🙂🙂", "x" * 10 + "世" * 10, "é"])
def test_split_utf8_never_splits_a_character(gen: ModuleType, text: str) -> None:
    data = text.encode()
    for cut in range(len(data) + 1):  # every single cut position
        pieces = gen.split_utf8(data, [cut])
        assert b"".join(pieces) == data
        assert all(p and p.decode("utf-8") for p in pieces)
    pieces = gen.split_utf8(data, range(len(data)))  # a cut at every byte
    assert b"".join(pieces) == data and [p.decode() for p in pieces] == list(text)
    pieces = gen.split_utf8(data, [], max_len=5)  # the 4 KiB rule, scaled down
    assert b"".join(pieces) == data
    assert all(len(p) <= 5 and p.decode("utf-8") for p in pieces)


def test_bodies_style(gen: ModuleType, bodies: dict[str, str], tmp_path: Path) -> None:
    gen.generate(tmp_path, n=200, seed=42, style="bodies")
    recs = [orjson.loads(line) for line in (tmp_path / "body.log").read_bytes().splitlines()]
    assert len(recs) == 200
    for r in recs:
        assert list(r) == ["ts", "request_id", "content_type", "body", "truncated"]
        assert r["truncated"] is False
        assert r["body"] == bodies.get(r["request_id"], "")


def test_bench_size_is_fast(gen: ModuleType, tmp_path: Path) -> None:
    counts = gen.generate(tmp_path, n=300, seed=1, k=100, mix="streams")
    lines = (tmp_path / "body.log").read_bytes().count(b"\n")
    assert sum(counts.values()) == 300 and lines > 300 * 100


def test_large_mode_shape(gen: ModuleType, tmp_path: Path) -> None:
    """--mix large: 70/20/10 providers, stream lengths around the median, and the requested
    number of requests in flight (the arrival gap follows the streams' real durations)."""
    gen.generate(tmp_path, n=2000, seed=3, mix="large", concurrency=50, chunk_scale=0.1)
    access = [orjson.loads(x) for x in (tmp_path / "access.log").read_bytes().splitlines()]
    hosts = [a["upstream_host"] for a in access]
    assert abs(hosts.count("api.openai.com") / 2000 - 0.70) < 0.02
    assert abs(hosts.count("api.anthropic.com") / 2000 - 0.20) < 0.02
    spans = [(float(a["ts"]) - float(a["request_time"]), float(a["ts"])) for a in access]
    starts = sorted(s for s, _ in spans)
    a, b = starts[len(starts) // 10], starts[-len(starts) // 10]  # no ramp up or down
    busy = sum(max(0.0, min(e, b) - max(s, a)) for s, e in spans)
    assert 45 < busy / (b - a) < 55
    per_rid: dict[str, int] = defaultdict(int)
    for line in (tmp_path / "body.log").read_bytes().splitlines():
        per_rid[orjson.loads(line)["request_id"]] += 1
    lengths = sorted(per_rid.values())
    assert 10 <= lengths[len(lengths) // 2] <= 18  # median 12 content events (x0.1), plus framing
