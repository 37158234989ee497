"""Long streams through the real hot path, the join's compaction and the provider parsers: usage
is never cut off, memory per open stream stays small, the estimate keeps the whole text."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.join import Joiner
from sidecar.parse.body import assemble_escaped, decode_chunk_lines
from sidecar.parse.compact import compact_stream
from sidecar.parse.response import parse_completed
from sidecar.types import BODY_END, AccessRecord, BodyRecord, Completed

RID = "0123456789abcdef0123456789abcdef"
WORD = "token café 世界 "  # multi-byte text, escaped on the wire


def line(ts: float, piece: str, rid: str = RID) -> bytes:
    return b'{"ts":%.3f,"request_id":"%s","data":%s}' % (ts, rid.encode(), orjson.dumps(piece))


def end_line(ts: float, rid: str = RID, how: str = "complete") -> bytes:
    return orjson.dumps({"ts": ts, "request_id": rid, "end": how})


def chat_events(n: int, usage: bool = True) -> list[str]:
    head = '{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini"'
    role = '{"role":"assistant","content":""}'
    ev = [f'data: {head},"choices":[{{"index":0,"delta":{role}}}]}}\n\n']
    piece = orjson.dumps({"content": WORD}).decode()
    body = f'data: {head},"choices":[{{"index":0,"delta":{piece},"finish_reason":null}}]}}\n\n'
    ev += [body] * n
    ev.append(f'data: {head},"choices":[{{"index":0,"delta":{{}},"finish_reason":"stop"}}]}}\n\n')
    if usage:
        u = {"prompt_tokens": 1000, "completion_tokens": 32000, "total_tokens": 33000}
        ev.append(f'data: {head},"choices":[],"usage":{orjson.dumps(u).decode()}}}\n\n')
    ev.append("data: [DONE]\n\n")
    return ev


def responses_events(n: int, per_delta: int) -> list[str]:
    """A Responses stream whose response.completed repeats the whole output (megabytes)."""
    resp = {"id": "resp_1", "object": "response", "model": "gpt-4o-2024-08-06", "output": []}
    ev = [
        "event: response.created\ndata: "
        + orjson.dumps({"type": "response.created", "response": resp}).decode()
        + "\n\n"
    ]
    text = WORD * per_delta
    delta = orjson.dumps({"type": "response.output_text.delta", "delta": text}).decode()
    ev += ["event: response.output_text.delta\ndata: " + delta + "\n\n"] * n
    done = {
        **resp,
        "status": "completed",
        "output": [
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text * n}],
            }
        ],
        "usage": {
            "input_tokens": 1000,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 32000,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 33000,
        },
    }
    ev.append(
        "event: response.completed\ndata: "
        + orjson.dumps({"type": "response.completed", "response": done}).decode()
        + "\n\n"
    )
    return ev


def records(events: list[str], split: int = 3) -> list[bytes]:
    """Body-log lines as nginx relays them: events merged and cut into 4 KiB-bounded pieces."""
    body = "".join(events)
    out, i, ts = [], 0, 1000.0
    step = max(1, len(events[len(events) // 2]) * split // 2)
    while i < len(body):
        piece = body[i : i + min(step, 4000)]
        out.append(line(ts, piece))
        i += len(piece)
        ts += 0.001
    out.append(end_line(ts))
    return out


def run(
    lines: list[bytes], joiner: Joiner, batch: int = 4000, path: str = "/v1/chat/completions"
) -> tuple[list[Completed], int]:
    """Feed lines as the pipeline does; return what completed and the peak bytes pending."""
    out: list[Completed] = []
    peak = 0
    for i in range(0, len(lines), batch):
        dec = decode_chunk_lines(lines[i : i + batch])
        assert not dec.errors
        joiner.add_chunks(dec.groups, dec.records, "s", out)
        peak = max(peak, joiner.pending_bytes)
    joiner.add_access(AccessRecord(RID, time=2000.0, status=200, path=path), "s", None, out)
    return out, peak


def joiner() -> Joiner:
    return Joiner(assemble=assemble_escaped, compact=compact_stream)


@pytest.mark.slow
@pytest.mark.parametrize("mib", [12, 50])
def test_long_chat_stream_gives_its_exact_usage(mib: int) -> None:
    events = chat_events(mib * 1024 * 1024 // 240)
    lines = records(events)
    out, peak = run(lines, joiner())
    assert len(out) == 1
    c = out[0]
    assert not c.body_truncated and not c.expired
    parsed = parse_completed(c, provider="openai")
    assert parsed.usage is not None and not parsed.usage_partial and parsed.terminal_seen
    assert (parsed.usage.input_tokens, parsed.usage.output_tokens) == (1000, 32000)
    size = sum(map(len, lines))
    assert size > mib * 1024 * 1024
    # what is left raw: the head and the events since the last compaction (at 1 MiB)
    assert sum(map(len, c.parts or [])) <= Joiner().compact_bytes
    assert peak < size / 8  # raw parts never accumulate: what grows is the visible text


def test_responses_stream_with_a_huge_final_event_gives_its_usage() -> None:
    events = responses_events(12 * 1024 * 1024 // 2 // 250, per_delta=16)
    assert len(events[-1]) > 3 * 1024 * 1024 and sum(map(len, events)) > 12 * 1024 * 1024
    out, _ = run(records(events), joiner(), path="/v1/responses")
    parsed = parse_completed(out[0], provider="openai")
    assert parsed.usage is not None and parsed.terminal_seen
    assert (parsed.usage.input_tokens, parsed.usage.output_tokens) == (1000, 32000)
    assert not out[0].body_truncated


def test_compaction_keeps_the_whole_text_for_the_estimate() -> None:
    """A cancelled stream (no usage) compacted many times: the estimation text is the same as
    from the uncompacted body, in the same amount."""
    events = chat_events(3000, usage=False)[:-2]  # cut before the finish chunk and [DONE]
    lines = [*records(events)[:-1], end_line(1100.0, how="client_closed")]
    small = Joiner(assemble=assemble_escaped, compact=compact_stream, compact_bytes=4096)
    out, peak = run(lines, small)
    c = out[0]
    assert c.prior_text and peak < 64 * 1024
    whole, _ = run(lines, Joiner(assemble=assemble_escaped))
    want = "".join(parse_completed(whole[0], provider="openai", want_text=True).output_text)
    got = "".join(parse_completed(c, provider="openai", want_text=True).output_text)
    assert sorted(got) == sorted(want) and len(got) == len(WORD) * 3000


def test_body_that_is_not_a_stream_is_never_compacted_and_is_capped() -> None:
    body = orjson.dumps({"usage": {"prompt_tokens": 1}, "pad": "x" * 300_000}).decode()
    pieces = [body[i : i + 4000] for i in range(0, len(body), 4000)]
    lines = [line(1.0 + k / 1000, piece) for k, piece in enumerate(pieces)]
    j = Joiner(assemble=assemble_escaped, compact=compact_stream, max_body_bytes=200_000)
    out, _ = run([*lines, end_line(2.0)], j)
    assert out[0].body_truncated and j.stats["compactions"] == 0
    assert j.stats["bodies_truncated"] == 1


def interleaved(n_streams: int, events: int) -> tuple[list[bytes], list[str]]:
    """Body-log lines of `n_streams` chat streams written at once, one event per line in turn
    (thousands of open streams in miniature), then their ends; and the request ids."""
    rids = [f"{k:032x}" for k in range(n_streams)]
    evs = chat_events(events)
    out, ts = [], 1000.0
    for ev in evs:
        for rid in rids:
            out.append(line(ts, ev, rid))
            ts += 0.001
    out += [end_line(ts, rid) for rid in rids]
    return out, rids


def feed(lines: list[bytes], j: Joiner, rids: list[str]) -> tuple[dict[str, Completed], int]:
    """Feed in follow-sized batches with expiry as the body reader runs it, then the access
    lines; return the completed requests by id and the peak bytes pending."""
    out: list[Completed] = []
    peak = 0
    for i in range(0, len(lines), 500):
        dec = decode_chunk_lines(lines[i : i + 500])
        j.add_chunks(dec.groups, dec.records, "s", out)
        if j.over_budget():
            j.expire(out, now=0.0)
        peak = max(peak, j.pending_bytes)
        held = [*j._pending.values(), *j._older.values()]
        assert j.pending_bytes == sum(p.cost for p in held)  # the byte bound's count is exact
    for rid in rids:
        j.add_access(AccessRecord(rid, time=2000.0, status=200), "s", None, out)
    return {c.request_id: c for c in out}, peak


def test_many_open_streams_are_packed_losslessly_under_pressure() -> None:
    """Past half the byte bound, open streams' raw parts are packed, not decoded: each request
    completes with exactly the parts (so the usage, the text and the estimate) it would have
    had with memory to spare, no stream is compacted or evicted, and the join stays within its
    bound while holding several times more raw body than the bound."""
    lines, rids = interleaved(60, 300)
    roomy, _ = feed(lines, Joiner(assemble=assemble_escaped, compact=compact_stream), rids)
    j = Joiner(max_pending_bytes=1 << 20, assemble=assemble_escaped, compact=compact_stream)
    tight, peak = feed(lines, j, rids)
    assert j.stats["packed"] > 60 and j.stats["compactions"] == 0 and j.stats["evicted"] == 0
    raw = sum(map(len, lines))
    assert raw > 3 * (1 << 20) and peak <= 1 << 20
    assert set(tight) == set(roomy) == set(rids)
    for rid in rids:
        a, b = tight[rid], roomy[rid]
        assert a.parts == b.parts and a.raw_bytes == b.raw_bytes and not a.expired
        assert (a.first_ts, a.last_ts) == (b.first_ts, b.last_ts) != (None, None)
        pa = parse_completed(a, provider="openai", want_text=True)
        assert pa == parse_completed(b, provider="openai", want_text=True)
        assert pa.usage is not None and pa.usage.output_tokens == 32000
        assert "".join(pa.output_text) == WORD * 300


def test_packed_stream_is_compacted_once_it_passes_compact_bytes() -> None:
    """A packed stream that grows past `compact_bytes` is unpacked and compacted as any other:
    its usage and its whole text are kept."""
    lines, rids = interleaved(4, 3000)
    j = Joiner(
        max_pending_bytes=1 << 20,
        compact_bytes=256 << 10,
        assemble=assemble_escaped,
        compact=compact_stream,
    )
    done, peak = feed(lines, j, rids)
    assert j.stats["packed"] and j.stats["compactions"] and peak <= 1 << 20
    for rid in rids:
        parsed = parse_completed(done[rid], provider="openai", want_text=True)
        assert parsed.usage is not None and parsed.usage.output_tokens == 32000
        assert len("".join(parsed.output_text)) == len(WORD) * 3000


def test_parts_that_cannot_be_packed_are_kept_as_they_are() -> None:
    """A part with a newline in it (not a body-log line) is never packed: packing joins parts
    with newlines and must give back exactly what it was given."""
    j = Joiner(max_pending_bytes=1 << 20)
    j.pending_bytes = 1 << 20  # under pressure
    out: list[Completed] = []
    parts = [b"a\nb" * 4000, b"c" * 9000]
    j.add_chunks({RID: list(parts)}, [], "s", out)
    p = j._pending[RID]
    assert not p.packable and p.packed is None and j.stats["packed"] == 0
    j.add_access(AccessRecord(RID, time=2.0, status=200), "s", None, out)
    j.add_body(BodyRecord(RID, BODY_END, 2.0, None, "complete"), "s", out)
    assert out[0].parts == parts


def test_streams_too_small_to_pack_are_compacted_as_the_last_resort() -> None:
    """Many open streams each under `pack_bytes`: packing cannot help, so the largest are
    compacted (as before packing existed) rather than evicted; usage and text are kept."""
    lines, rids = interleaved(150, 24)
    assert max(sum(len(x) for x in lines if rids[0].encode() in x), 0) < Joiner.pack_bytes
    j = Joiner(max_pending_bytes=1 << 20, assemble=assemble_escaped, compact=compact_stream)
    done, peak = feed(lines, j, rids)
    assert j.stats["compactions"] and not j.stats["packed"] and not j.stats["evicted"]
    assert peak <= 1 << 20 < sum(map(len, lines))
    for rid in rids:
        parsed = parse_completed(done[rid], provider="openai", want_text=True)
        assert parsed.usage is not None and parsed.usage.output_tokens == 32000
        assert "".join(parsed.output_text) == WORD * 24


def test_times_of_data_read_lazily_are_the_last_lines() -> None:
    """The hot path leaves a request's last time to be read from its last part when needed:
    expiry in log time and the event see the last data line's time, also once packed."""
    lines = [line(1000.0 + k / 10, "data: {}\n\n") for k in range(6)]
    j = Joiner(expire_after_secs=60.0)
    out: list[Completed] = []
    dec = decode_chunk_lines(lines)
    j.add_chunks(dec.groups, dec.records, "s", out)
    j._pack(j._pending[RID])  # its last part goes: its time is read first
    j.access_front.advance(1060.4)
    j.body_front.advance(1060.4)
    j.expire(out, now=0.0)
    assert not out  # 1000.5 + 60 not passed yet
    j.access_front.advance(1060.6)
    j.body_front.advance(1060.6)
    j.expire(out, now=0.0)
    assert [(c.first_ts, c.last_ts, c.expired) for c in out] == [(1000.0, 1000.5, True)]
    assert out[0].parts == lines


def test_an_end_record_s_time_is_the_request_s_last_time_else_its_data_s() -> None:
    """The end record in the same batch as the data: its time is the last time (the data's
    is not read for it); an end without a readable time leaves the last data line's."""
    for end_ts, want in ((1000.9, 1000.9), (None, 1000.5)):
        lines = [line(1000.0 + k / 10, "data: {}\n\n") for k in range(6)]
        raw_end = end_line(0.0).replace(
            b'"ts":0.0', b'"ts":%.1f' % end_ts if end_ts else b'"ts":"x"'
        )
        out: list[Completed] = []
        j = Joiner()
        dec = decode_chunk_lines([*lines, raw_end])
        j.add_chunks(dec.groups, dec.records, "s", out)
        j.add_access(AccessRecord(RID, time=1001.0, status=200), "s", None, out)
        assert [(c.first_ts, c.last_ts, c.end) for c in out] == [(1000.0, want, "complete")]


_TS_PIECES = [
    b'{"ts":1700000000.5,"request_id":"r","data":"x"}',
    b'{"ts":1700000001,"request_id":"r"}',
    b'{"ts":1e999,"x":1}',
    b'{"ts":NaN,"x":1}',
    b'{"ts":-5,"x":1}',
    b'{"ts":1700000000.25}',
    b'{"ts":1700000000.25',
    b'{"ts": 1700000002 ,"x":1}',
    b'{"ts":"1700000000","x":1}',
    b'{"ts":',
    b'{"ts":,',
    b'{"t":1700000000,"x":1}',
    b'  {"ts":1700000000,"x":1}',
    b'{"ts":1_700_000_000,"x":1}',
    b'{"ts":\xff\xfe,"x":1}',
    b"",
    b"\n",
    b"x",
]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_TS_PIECES) | st.binary(max_size=40), max_size=5))
def test_last_ts_reads_the_last_line_s_time_as_line_ts_does(pieces: list[bytes]) -> None:
    """`last_ts` (the join's time of a part's last line, read in place) is `line_ts` of the
    line `last_line` cuts, for any bytes: chunks, single lines, odd and hostile times."""
    from sidecar.join.pending import last_ts, line_ts

    def last_line(part: bytes) -> bytes:
        return part[part.rfind(b"\n") + 1 :]

    part = b"\n".join(pieces)
    assert last_ts(part) == line_ts(last_line(part))
    assert last_ts(part.decode("latin-1")) is None  # not a raw line: no time, as line_ts


_TIMES = [
    b"0",
    b"0.0",
    b"-0",
    b"4102444800",
    b"4102444800.0000005",
    b"4102444801",
    b"1772442001.978",
    b"1772442001.9785000000000000000000001",
    b"9" * 63,
    b"9" * 64,
    b"1" + b"0" * 400,
    b"0." + b"0" * 70 + b"1",
    b".",
    b"..",
    b"5.",
    b".5",
    b"1.2.3",
    b"1e3",
    b"+1",
    b" 1 ",
    b"1_0",
    b"inf",
    b"nan",
    b"\xff",
    b"1\x00",
]


def _bodylines_c() -> ModuleType:
    """`sidecar.join._bodylines`: skipped where it was not built, except under CI, where it
    must be (`.ci/run` installs a compiler; a silent fallback fails here)."""
    if os.environ.get("CI"):
        return importlib.import_module("sidecar.join._bodylines")
    return pytest.importorskip("sidecar.join._bodylines")


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.sampled_from(_TS_PIECES) | st.binary(max_size=40), max_size=5),
    st.sampled_from(_TIMES) | st.text("0123456789.", max_size=30).map(str.encode),
    st.sampled_from([b",", b"", b"}", b',"x":1}']),
)
def test_line_times_in_c_equal_their_twins(pieces: list[bytes], t: bytes, tail: bytes) -> None:
    """`_bodylines.line_ts` / `last_ts` (what the join calls when built) give exactly what
    their pure twins give: on hostile lines, on every kind of number float() reads or refuses,
    on the range's edges (`TIME_MIN`, `TIME_MAX`: C's are sidecar/_limits.h's), on what is not
    bytes."""
    c = _bodylines_c()
    from sidecar.join.pending import _last_ts_pure, _line_ts_pure

    line = b'{"ts":' + t + tail
    for x in (line, *pieces, b"\n".join([*pieces, line])):
        assert repr(c.line_ts(x)) == repr(_line_ts_pure(x))  # repr: -0.0 and nan too
        assert repr(c.last_ts(x)) == repr(_last_ts_pure(x))


def test_line_times_in_c_edges() -> None:
    c = _bodylines_c()
    from sidecar.parse.fields import TIME_MAX, TIME_MIN

    class B(bytes):
        pass

    assert c.line_ts(b'{"ts":%r,' % TIME_MAX) == TIME_MAX
    assert c.line_ts(b'{"ts":%r,' % TIME_MIN) == TIME_MIN
    assert c.line_ts(b'{"ts":4102444800.000001,') is None  # just past TIME_MAX
    assert c.line_ts(b'{"ts":-0.000001,') is None
    for x in (B(b'{"ts":1,'), bytearray(b'{"ts":1,'), memoryview(b'{"ts":1,'), "{", None, 1):
        assert c.line_ts(x) is None and c.last_ts(x) is None  # `type(x) is bytes` only
    assert c.last_ts(b'{"ts":5,"a"\n{"ts":7,"b"') == 7.0
    assert c.last_ts(b'{"ts":5,"a"\n') is None  # the last line is the empty one after it
    with pytest.raises(TypeError):
        c.line_ts()  # type: ignore[call-arg]
    from sidecar.join.pending import _last_ts_pure, _line_ts_pure

    for f in (c.line_ts, c.last_ts, _line_ts_pure, _last_ts_pure):  # one argument, as the twin
        with pytest.raises(TypeError):
            f(b'{"ts":5,"a"', 0)  # type: ignore[call-arg]
