"""Property: hostile log lines never stop the real pipeline, never change a well-formed request's
event, and every line read is either part of an event or set aside with a reason.

Each example writes an access log and a body log (temp files) in which well-formed requests are
interleaved with lines whose every field may be any JSON value (NaN, Infinity, 1e999, 2^70,
objects, lists, null, invalid UTF-8, very long strings), runs the real `Pipeline` with
`run --once` semantics, and checks the result against a run of the well-formed requests alone.
"""

from __future__ import annotations

import asyncio
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar import config as C
from sidecar.pipeline import Pipeline

BAD_BYTE = "\ue000"  # written as a raw 0xff byte: invalid UTF-8


class Raw:
    """A JSON number text orjson refuses (NaN, Infinity, 1e999)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def ser(v: Any) -> str:
    if isinstance(v, Raw):
        return v.text
    if isinstance(v, dict):
        return "{" + ",".join(f"{ser(str(k))}:{ser(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ",".join(ser(x) for x in v) + "]"
    return json.dumps(v, ensure_ascii=False)


def to_line(obj: dict[str, Any]) -> bytes:
    return ser(obj).encode("utf-8", "surrogatepass").replace(BAD_BYTE.encode(), b"\xff")


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.sampled_from([2**70, 2**64, -1, 0, 1e300, 1e-300, 99999999999999999999999]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([Raw("NaN"), Raw("Infinity"), Raw("-Infinity"), Raw("1e999"), Raw("-1e999")]),
    st.just(Raw(r'"\ud800x"')),  # a lone surrogate
    st.text(max_size=12),
    st.sampled_from(["nan", "inf", "1e999", "-", "", "2026-01-02T03:04:05Z", BAD_BYTE + "x"]),
    st.integers(min_value=2_000, max_value=60_000).map(lambda n: "x" * n),
)
values = st.recursive(
    scalars,
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=3)
    ),
    max_leaves=6,
)
ACCESS_KEYS = [
    "request_id",
    "ts",
    "status",
    "request_time",
    "uri",
    "upstream_host",
    "req_x_stainless_retry_count",
    "user",
    "tenant",
    "conversation_id",
    "api_key",
    "usage",
    "stream",
    "model",
    "resp_x_ratelimit_limit_requests",
    "resp_x_ratelimit_remaining_tokens",
    "response_headers",
    "request_completion",
]
BODY_KEYS = ["request_id", "ts", "data", "end", "body", "truncated"]


def hostile_ids(v: Any) -> bool:
    return not (isinstance(v, str) and v.startswith("good-"))


def hostile_line(keys: list[str]) -> st.SearchStrategy[bytes]:
    obj = st.dictionaries(st.sampled_from(keys), values, max_size=len(keys)).filter(
        lambda d: hostile_ids(d.get("request_id"))
    )
    # Often a readable id, so that the hostile fields reach the join, enrichment and the sinks.
    named = st.tuples(obj, st.text(max_size=6), st.booleans()).map(
        lambda t: {**t[0], "request_id": "h" + t[1] if t[2] else len(t[1])}
    )
    obj = st.one_of(obj, named)
    raw = st.binary(max_size=40).filter(lambda b: b"\n" not in b and b"good-" not in b)
    return st.one_of(obj.map(to_line), raw, st.just(b"[1,2]"), st.just(b'"x"'))


def good_request(n: int, p: int, c: int, ts: float) -> tuple[bytes, list[bytes]]:
    rid = f"good-{n}"
    access = orjson.dumps(
        {
            "ts": ts,
            "request_id": rid,
            "uri": "/v1/chat/completions",
            "status": 200,
            "request_time": "0.250",
            "upstream_host": "api.openai.com",
            "user": f"user-{n}",
            "api_key": "Bearer sk-good",
        }
    )
    head = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-4o-mini"}
    events = [
        {**head, "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]},
        {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {**head, "choices": [], "usage": {"prompt_tokens": p, "completion_tokens": c}},
    ]
    sse = "".join(f"data: {orjson.dumps(e).decode()}\n\n" for e in events) + "data: [DONE]\n\n"
    body = [
        orjson.dumps({"ts": ts - 0.2, "request_id": rid, "data": sse[:50]}),
        orjson.dumps({"ts": ts - 0.1, "request_id": rid, "data": sse[50:]}),
        orjson.dumps({"ts": ts, "request_id": rid, "end": "complete"}),
    ]
    return access, body


def run_pipeline(tmp: Path, access: list[bytes], body: list[bytes]) -> tuple[Any, Path, Path]:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "access.log").write_bytes(b"".join(x + b"\n" for x in access))
    (tmp / "body.log").write_bytes(b"".join(x + b"\n" for x in body))
    cfg = C.from_dict(
        {
            "sources": [
                {
                    "name": "proxy",
                    "access_log": {"paths": [str(tmp / "access.log")]},
                    "body_log": {"paths": [str(tmp / "body.log")]},
                }
            ],
            "identity": {"hash_key": "k"},
            "state_dir": str(tmp / "state"),
            "sinks": [{"type": "file", "path": str(tmp / "events.ndjson")}],
        }
    )
    pipeline = Pipeline(cfg, once=True)
    asyncio.run(pipeline.run())
    return pipeline, tmp / "events.ndjson", tmp / "state" / "malformed.ndjson"


def read_events(path: Path) -> dict[str, dict]:
    """Events by request id. Two hostile requests may share an id: each is its own event then
    (flagged `duplicate_request_id`, with its own event_id); a well-formed id appears once."""
    out: dict[str, dict] = {}
    ids: set[str] = set()
    if path.exists():
        for x in path.read_bytes().splitlines():
            ev = orjson.loads(x)
            assert ev["event_id"] not in ids, "one event per request"
            ids.add(ev["event_id"])
            rid = ev["request_id"]
            if rid in out:
                assert "duplicate_request_id" in (out[rid]["flags"] + ev["flags"]), rid
                assert not rid.startswith("good-"), "a well-formed request was split in two"
            out.setdefault(rid, ev)
    return out


def my_id(line: bytes) -> str | None:
    """The request id as the sidecar reads it (None: the line cannot name one)."""
    try:
        obj = json.loads(line.decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        return None
    if not isinstance(obj, dict):
        return None
    rid = obj.get("request_id")
    if isinstance(rid, bool):
        return None
    if isinstance(rid, int):
        return str(rid)
    if not isinstance(rid, str) or rid in ("", "-"):
        return None
    # A lone surrogate (valid JSON, not valid Unicode) cannot be hashed or written: the access
    # parser turns its bytes into U+FFFD, as it does for invalid UTF-8.
    return rid.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def starts(data: bytes) -> dict[int, bytes]:
    out, pos = {}, 0
    for line in data.split(b"\n")[:-1]:
        out[pos] = line
        pos += len(line) + 1
    return out


requests = st.lists(
    st.tuples(
        st.integers(0, 2**40),
        st.integers(0, 2**20),
        st.floats(min_value=1.7e9, max_value=1.8e9).map(lambda t: round(t, 3)),
    ),
    max_size=3,
)


@pytest.mark.slow
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    good=requests,
    bad_access=st.lists(hostile_line(ACCESS_KEYS), max_size=6),
    bad_body=st.lists(hostile_line(BODY_KEYS), max_size=6),
    seed=st.randoms(use_true_random=False),
)
def test_hostile_lines_never_stop_or_change_the_pipeline(good, bad_access, bad_body, seed) -> None:
    goods = [good_request(n, p, c, ts) for n, (p, c, ts) in enumerate(good)]
    good_access = [a for a, _ in goods]
    good_body = [b for _, bs in goods for b in bs]
    with tempfile.TemporaryDirectory() as d1, tempfile.TemporaryDirectory() as d2:
        _, base_path, _ = run_pipeline(Path(d1), good_access, good_body)
        baseline = read_events(base_path)

        # Interleave the hostile lines at random places, keeping each log's good order.
        access = list(good_access)
        for line in bad_access:
            access.insert(seed.randint(0, len(access)), line)
        body = list(good_body)
        for line in bad_body:
            body.insert(seed.randint(0, len(body)), line)
        pipeline, ev_path, bad_path = run_pipeline(Path(d2), access, body)
        got = read_events(ev_path)
        counters = pipeline.telemetry.counters

        # Every well-formed request comes out exactly as it does alone.
        for n, (p, c, ts) in enumerate(good):
            ev = got[f"good-{n}"]
            assert ev == baseline[f"good-{n}"]
            assert (ev["input_tokens"], ev["output_tokens"]) == (p, c)
            assert ev["cost_status"] == "priced" and ev["time"] == ts and ev["flags"] == []
        assert counters["requests_failed_total"] == 0, "an event could not be built (a bug)"
        bugs = {k: v for k, v in counters.items() if k.endswith("_failures_total") and v}
        assert not bugs, f"a stage boundary caught an unexpected failure: {bugs}"
        for ev in got.values():
            assert isinstance(ev["time"], float) and math.isfinite(ev["time"])

        # Every line read is part of an event or set aside with a reason and its position.
        aside: dict[str, dict[int, str]] = {"access.log": {}, "body.log": {}}
        if bad_path.exists():
            for x in bad_path.read_bytes().splitlines():
                rec = orjson.loads(x)
                assert rec["reason"]
                aside[Path(rec["path"]).name][rec["offset"]] = rec["reason"]
        for name in ("access.log", "body.log"):
            lines = starts((Path(d2) / name).read_bytes())
            assert set(aside[name]) <= set(lines), "a set-aside offset is not a line start"
            for offset, line in lines.items():
                if not line.strip() or offset in aside[name]:
                    continue
                rid = my_id(line)
                assert rid is not None and rid in got, (name, line[:200])
        total = sum(1 for x in access + body if x.strip())
        set_aside = sum(len(v) for v in aside.values())
        assert counters["records_malformed_total"] == set_aside
        assert counters["access_lines_total"] + counters["body_lines_total"] >= total


@pytest.mark.parametrize(
    "bad",
    [
        b'{"ts":1700000003}',  # set aside (no request id)
        b'{"ts":1700000003,"data":"x"}',
        b'{"ts":1e999,"request_id":"h1","data":"x"}',  # a record whose time is not one
        b'{"ts":NaN,"request_id":"h2","data":"x"}',
        b'{"ts":99999999999,"request_id":"h3","data":"x"}',  # past 2100
    ],
)
@pytest.mark.parametrize("where", ["first", "last"])
def test_a_bad_time_does_not_move_the_join_clock(tmp_path: Path, bad: bytes, where: str) -> None:
    """Found by the property test above: a set-aside line, or a record whose `ts` is not a
    plausible time, first or last in a read, set the body reader's clock; the access line then
    looked complete without its body, which came too late."""
    access, body = good_request(0, 7, 3, 1700000000.0)
    _, base_path, _ = run_pipeline(tmp_path / "base", [access], body)
    body = [bad, *body] if where == "first" else [*body, bad]
    _, ev_path, _ = run_pipeline(tmp_path / "bad", [access], body)
    ev = read_events(ev_path)["good-0"]
    assert ev == read_events(base_path)["good-0"]
    assert (ev["input_tokens"], ev["output_tokens"], ev["token_source"]) == (7, 3, "usage")
