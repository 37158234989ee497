"""Every fast path of the body path gives what its general path gives, on any input.

The hot path has shortcuts for the common shapes: a batch of canonical body-log lines grouped
in one `find` pass (`decode_chunk_lines` vs the per-line `_decode_each`), SSE blocks of one
`data:` line or `event:` + `data:` (`parse_block` vs `parse_block_lines`), every event framed
by one `str.split` (`Chunks.forward_all` vs `Chunks.forward`), a chat delta that holds only its
content (`openai_chat._texts`). Each is checked here against its general path on generated
input, hostile lines and odd framings included, so that a shortcut can only change the speed.
"""

from __future__ import annotations

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.parse import body
from sidecar.parse.body import _decode_each, decode_chunk_lines
from sidecar.parse.providers import openai_chat
from sidecar.parse.providers._common import Chunks
from sidecar.parse.sse import parse_block, parse_block_lines
from sidecar.types import BODY_END

RIDS = ["a1", "b2", "c3", "x\\u00e9", 'q"q', "", "7", "\u00e9t\u00e9", "a\\b"]


def canonical(ts: float, rid: str, data: str) -> bytes:
    """A line exactly as the nginx module writes it (the request id as written, raw)."""
    esc = orjson.dumps(data).replace(b"/", b"\\/")
    return (
        b'{"ts":'
        + repr(ts).encode()
        + b',"request_id":"'
        + rid.encode()
        + b'","data":'
        + esc
        + b"}"
    )


def odd_line(kind: int, ts: float, rid: str, data: str) -> bytes:
    """Lines off the fast path: an end record, another key order, a torn line, junk, blank,
    a number id, invalid UTF-8, a `ts` that is a string, a nested object before the id."""
    if kind == 0:
        return orjson.dumps({"ts": ts, "request_id": rid, "end": "complete"})
    if kind == 1:
        return orjson.dumps({"data": data, "request_id": rid, "ts": ts})
    if kind == 2:
        return canonical(ts, rid, data)[:-3]
    if kind == 3:
        return b"not json at all"
    if kind == 4:
        return b"   "
    if kind == 5:
        return b'{"ts":' + repr(ts).encode() + b',"request_id":7,"data":"x"}'
    if kind == 6:
        return canonical(ts, rid, data)[:-2] + b'\xff\xfe"}'
    if kind == 7:
        return b'{"ts":"soon","request_id":"' + rid.encode() + b'","data":"y"}'
    return b'{"ts":{"a":1,"request_id":"zz"},"request_id":"' + rid.encode() + b'","data":"w"}'


times = st.floats(min_value=1.7e9, max_value=1.8e9, allow_nan=False)
# An end record's time may be anything parse_time reads or refuses (then nulled and counted in
# `invalid_ts`): past TIME_MAX, epoch milliseconds (above 1e11) in range or not, the epoch
# itself, more digits than the fast read takes, negative, inf (orjson writes null).
end_times = st.one_of(
    times,
    st.sampled_from([0, 0.0, 5e9, 4102444800.0, 4102444800.5, 1e11, 1e11 + 1, 1.7e12]),
    st.sampled_from([999999999999999.0, 1e15, -1.0, float("inf")]),
)
texts = st.text(max_size=12)
line_spec = st.one_of(
    st.tuples(st.integers(min_value=-1, max_value=8), times, st.sampled_from(RIDS), texts),
    st.tuples(st.just(0), end_times, st.sampled_from(RIDS), texts),
)  # kind -1: canonical; 0: an end record


def render(spec: tuple[int, float, str, str]) -> bytes:
    kind, ts, rid, data = spec
    return canonical(ts, rid, data) if kind < 0 else odd_line(kind, ts, rid, data)


def same(a: object, b: object) -> None:
    assert a.groups == b.groups  # type: ignore[attr-defined]
    assert list(a.groups) == list(b.groups)  # type: ignore[attr-defined]  # same order
    assert a.records == b.records  # type: ignore[attr-defined]
    assert [(i, e.reason) for i, e in a.errors] == [(i, e.reason) for i, e in b.errors]  # type: ignore[attr-defined]
    assert (a.lossy, a.invalid_ts) == (b.lossy, b.invalid_ts)  # type: ignore[attr-defined]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(specs=st.lists(line_spec, max_size=30))
def test_decode_chunk_lines_equals_the_per_line_path(specs: list) -> None:
    lines = [render(s) for s in specs]
    same(decode_chunk_lines(lines), _decode_each(lines))


@given(specs=st.lists(st.tuples(st.just(-1), times, st.sampled_from(["a1", "b2", "7"]), texts)))
def test_canonical_batches_keep_every_line_as_it_is(specs: list) -> None:
    lines = [render(s) for s in specs]
    dec = decode_chunk_lines(lines)
    same(dec, _decode_each(lines))
    kept = [p for parts in dec.groups.values() for p in parts]
    assert sorted(map(id, kept)) == sorted(map(id, lines))  # the line objects themselves


def test_end_records_next_to_data_stay_records() -> None:
    lines = [
        canonical(1.0, "r1", "data: {}\n\n"),
        orjson.dumps({"ts": 2.0, "request_id": "r1", "end": "complete"}),
        canonical(1.5, "r2", "data: {}\n\n"),
    ]
    dec = decode_chunk_lines(lines)
    assert dec.groups == {"r1": [lines[0]], "r2": [lines[2]]}
    assert [(r.request_id, r.end) for r in dec.records] == [("r1", "complete")]


sse_line = st.tuples(
    st.sampled_from(["data", "event", "id", "", ": note", "data:", "x"]),
    st.sampled_from([":", ": ", ":  ", ""]),
    st.text(alphabet="ab :é", max_size=4),
).map("".join)
sse_block = st.lists(sse_line, max_size=4).map("\n".join)


@given(block=sse_block)
def test_parse_block_equals_parse_block_lines(block: str) -> None:
    assert parse_block(block) == parse_block_lines(block)


@given(
    events=st.lists(
        st.tuples(
            st.one_of(st.none(), st.sampled_from(["", "a", " b", "c:d"])), st.text(max_size=6)
        ),
        max_size=8,
    ),
    seps=st.lists(st.sampled_from(["\n\n", "\n\n\n", "\n\n\n\n", "\n", "\n\n\n\n\n"]), max_size=8),
    tail=st.sampled_from(["", "\n", "\n\n", "\n\n\n"]),
)
def test_forward_all_gives_the_events_of_forward(
    events: list[tuple[str | None, str]], seps: list[str], tail: str
) -> None:
    text = ""
    for i, (name, data) in enumerate(events):
        block = (f"event:{name}\n" if name is not None else "") + f"data: {data}"
        text += block + (seps[i] if i < len(seps) else "\n\n")
    text = text.rstrip("\n") + tail if text else tail

    def seen(events_: object) -> list[tuple[object, object, object]]:
        return [(e.name, e.data, e.last) for e in events_]  # type: ignore[attr-defined]

    assert seen(Chunks(text).forward_all()) == seen(Chunks(text).forward())
    both = Chunks(text)  # sharing one cache, in either order, changes nothing
    assert seen(both.forward()) == seen(both.forward_all())


payload = st.one_of(
    st.sampled_from(['{"a":1}', '{"b":[2]}', "[DONE]", "", "  ", "[1]", "7", "{bad", '{"c":"é"}']),
    st.text(alphabet='{}":ab1', max_size=6),
)


@given(
    events=st.lists(
        st.tuples(st.one_of(st.none(), st.sampled_from(["", "a", "error"])), payload),
        max_size=8,
    ),
    seps=st.lists(st.sampled_from(["\n\n", "\n\n\n", "\n", "\n\n\n\n\n"]), max_size=8),
    tail=st.sampled_from(["", "\n", "\n\n", "\n\n\n"]),
    walk_back=st.integers(0, 9),
)
def test_forward_objects_gives_what_obj_gives_and_counts_junk_once(
    events: list[tuple[str | None, str]], seps: list[str], tail: str, walk_back: int
) -> None:
    """`forward_objects()` (no Event per event) against `forward_all()` + `obj()`: the same
    payloads, and after walking back over the last events as a parser does, the same count of
    payloads that did not decode (a cut last event not counted)."""
    text = ""
    for i, (name, data) in enumerate(events):
        block = (f"event:{name}\n" if name is not None else "") + f"data: {data}"
        text += block + (seps[i] if i < len(seps) else "\n\n")
    text = text.rstrip("\n") + tail if text else tail

    def walk(chunks: Chunks) -> list[object]:
        return [ev.obj() for _, ev in zip(range(walk_back), chunks.backward(), strict=False)]

    ref = Chunks(text)
    want = [ev.obj() for ev in ref.forward_all()]
    want_back = walk(ref)
    got_chunks = Chunks(text)
    assert list(got_chunks.forward_objects()) == want
    assert walk(got_chunks) == want_back
    assert got_chunks.malformed == ref.malformed


delta = st.dictionaries(
    st.sampled_from(["content", "refusal", "role", "reasoning_content", "tool_calls"]),
    st.one_of(st.none(), st.text(max_size=4), st.integers(), st.just([{"text": "t"}])),
    max_size=3,
)


@given(
    choices=st.lists(
        st.fixed_dictionaries(
            {"index": st.integers(0, 2)}, optional={"delta": delta, "message": delta}
        ),
        max_size=3,
    )
)
def test_chat_texts_fast_path_equals_the_general_path(choices: list[dict]) -> None:
    obj = {"choices": choices}
    out: list[str] = []
    calls: dict = {}
    text = openai_chat._texts(obj, out, calls)
    ref_out: list[str] = []
    ref_calls: dict = {}
    ref_text = False
    for choice in choices:
        index = choice.get("index")
        for key in ("delta", "message"):
            part = choice.get(key)
            got = openai_chat._choice_text(
                ref_out, part if type(part) is dict else {}, ref_calls, index
            )
            ref_text = got or ref_text
    assert (text, out, calls) == (ref_text, ref_out, ref_calls)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(specs=st.lists(line_spec, max_size=30))
def test_decode_chunk_lines_same_with_the_c_scanner_and_without(specs: list) -> None:
    """`decode_chunk_lines` with `_bodyscan.c` and with its Python twin: the same `Decoded`
    (whichever one `LLM_HEC_SIDECAR_PURE` chose for the hot path)."""
    scan = pytest.importorskip("sidecar.parse._bodyscan")  # test_native.py: required under CI
    lines = [render(s) for s in specs]
    saved, out = body._group, []
    try:
        for group in (scan.group_chunk_lines, body._group_pure):
            body._group = group
            out.append(body.decode_chunk_lines(lines))
    finally:
        body._group = saved
    same(*out)


_END_TS = st.one_of(
    st.sampled_from(
        [
            *(b"0", b"01", b"00", b"-1", b"1e3", b"1.", b".5", b"1.5.5", b"NaN", b"", b" 1"),
            *(b"1_0", b"1772442001.978", b"4102444800", b"4102444800.0000001", b"100000000000"),
            *(b"4102444800000", b"4102444800001", b"999999999999999", b"1000000000000000"),
            *(b"1." + b"9" * 17, b"1." + b"9" * 18, b"17724420019784.99999999999999999"),
        ]
    ),
    st.from_regex(rb"\A[0-9]{1,16}(\.[0-9]{0,19})?\Z"),
)
_END_TEXT = st.one_of(
    st.sampled_from([b"complete", b"client_closed", b"", b"-", b"a b", b'q"q', b"a\\b"]),
    st.sampled_from([b"\xc3\xa9", b"\x7f", b"\x1f", b"~ !", b"x\ny", b'","end":"']),
    st.binary(max_size=6),
)


@settings(max_examples=2000, suppress_health_check=[HealthCheck.too_slow])
@given(
    ts=_END_TS,
    rid=_END_TEXT,
    end=_END_TEXT,
    shape=st.sampled_from(["proxy", "spaced", "extra", "cut", "tail"]),
)
def test_end_records_read_as_the_careful_path_reads_them(
    ts: bytes, rid: bytes, end: bytes, shape: str
) -> None:
    """`_end_record` (C when built) equals its pure twin on any near-canonical end line, and
    whatever it reads is exactly what `parse_chunks_checked` (orjson and the checks) reads:
    request id, time (ms, ranges, ints and floats), end; anything it refuses takes that path."""
    line = b'{"ts":' + ts + b',"request_id":"' + rid + b'","end":"' + end + b'"}'
    line = {
        "proxy": line,
        "spaced": line.replace(b",", b", ", 1),
        "extra": line[:-1] + b',"x":1}',
        "cut": line[:-2],
        "tail": line + b" ",
    }[shape]
    got = body._end_record_pure(line)
    if body.NATIVE:
        assert repr(body._bodyscan.end_record(line)) == repr(got)  # repr: nan, -0.0 too
    if got is None:
        return
    rec, lossy, bad_ts = body.parse_chunks_checked(line)
    assert (rec.request_id, rec.ts, rec.end) == got and rec.kind == BODY_END
    assert rec.data == "" and not lossy and bad_ts == (got[1] is None)


def test_end_records_edges() -> None:
    assert body._end_record(b'{"ts":1,"request_id":"a","end":"x"}') == ("a", 1.0, "x")
    assert body._end_record(b'{"ts":100000000000.5,"request_id":"a","end":"x"}') == (
        "a",
        100000000.0005,
        "x",
    )  # epoch milliseconds, as parse_time
    for line in (b"", b"{}", b'{"ts":1,"request_id":"a","end":"x"', "str", bytearray(b"{")):
        assert body._end_record(line) is None  # type: ignore[arg-type]
    if body.NATIVE:
        with pytest.raises(TypeError):
            body._bodyscan.end_record()
