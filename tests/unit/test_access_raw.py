"""The access line read from its raw bytes (`_accessscan.scan_line`) gives what orjson gives.

`scan_line` takes a line of the previous line's layout without building its dict; whatever it
reads must be exactly `_scan(orjson.loads(line))` (values, their types, the headers' order), and
whatever it is not sure of must be declined (None), so that `_loads` decides: the same record or
the same rejection. Checked here on every line of the example logs, on hostile values written as
raw JSON tokens (numbers orjson refuses or reads as floats, escapes, lone surrogates, invalid
UTF-8, control bytes, whitespace, trailing data, duplicate and escaped keys), and on the whole
parser against its pure path.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.errors import ParseError
from sidecar.parse import access
from sidecar.parse.access import parse_nginx_json
from sidecar.parse.fields import Fields
from tests.leaks import grown_bytes

pytestmark = pytest.mark.skipif(access._accessscan is None, reason="C extension not built here")
EXAMPLE_ACCESS = Path(__file__).resolve().parents[2] / "examples" / "logs" / "access.log"


def raw(line: bytes, layout: access._Layout | None = None) -> Any:
    lay = layout or access._last_layout
    return access._accessscan.scan_line(line, lay.raw, lay.slots, access._NFIELDS, orjson.loads)


def same(a: Any, b: Any) -> bool:
    """Equal with the same types all the way (1, 1.0 and True differ; NaN equals NaN)."""
    return repr(a) == repr(b) and [type(x) for x in a[1]] == [type(x) for x in b[1]]


def via_orjson(line: bytes) -> Any:
    return access._scan(orjson.loads(line), Fields())


def parsed(line: bytes, native: bool) -> Any:
    """The record (or the rejection) of the C path or of the pure path."""
    saved = access._accessscan
    access._accessscan = saved if native else None
    try:
        return repr(dataclasses.astuple(parse_nginx_json(line, lambda k: "h:" + k)))
    except ParseError as exc:
        return ("rejected", exc.reason)
    finally:
        access._accessscan = saved


def layout_of(keys: list[str]) -> access._Layout:
    return access._Layout(tuple(dict.fromkeys(keys)))


def test_every_example_line_is_read_raw_as_orjson_reads_it() -> None:
    lines = [x for x in EXAMPLE_ACCESS.read_bytes().splitlines() if x.strip()]
    assert len(lines) >= 100
    taken = 0
    for line in lines:
        lay = access._Layout(tuple(orjson.loads(line)))
        got = raw(line, lay)
        assert got is not None  # the usual shape: never declined
        access._last_layout = lay
        assert same(got, via_orjson(line))
        taken += 1
        assert parsed(line, True) == parsed(line, False)
    assert taken == len(lines)


BASE = {
    "ts": 1772442001.797,
    "request_id": "r1",
    "method": "POST",
    "uri": "/v1/chat/completions",
    "status": 200,
    "request_time": 1.797,
    "user": "alice",
    "api_key": "sk-x",
    "time": "2026-03-02T09:00:01+00:00",  # not read: checked, not built
    "resp_x_ratelimit_remaining_requests": "4964",
    "resp_retry_after": "",
    "resp_x_request_id": "req_1",
}
KEYS = list(BASE)


def line_of(tokens: dict[str, bytes], ws: bytes = b"") -> bytes:
    body = b",".join(ws + orjson.dumps(k) + ws + b":" + ws + v + ws for k, v in tokens.items())
    return ws + b"{" + body + b"}" + ws


def tokens_of(d: dict[str, Any]) -> dict[str, bytes]:
    return {k: orjson.dumps(v) for k, v in d.items()}


HOSTILE_TOKENS = [
    # numbers: what orjson refuses, reads as floats past 64 bits, or reads as ints
    b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999", b"1e-999", b"1e5", b"1E+2", b"2.5e-3",
    b"0", b"-0", b"0.0", b"-0.0", b"01", b"1.", b".5", b"+1", b"- 1", b"0x1f", b"1.5.5",
    b"123456789012345678", b"-123456789012345678", b"1234567890123456789",
    b"18446744073709551616", b"-9223372036854775809", b"2" * 400, b"1." + b"7" * 40,
    b"0.1000000000000000055511151231257827", b"9007199254740993.0", b"1772442001.7970001",
    # strings: escapes, surrogates, UTF-8 (valid or not), control and DEL bytes
    b'""', b'"-"', b'"\\u002d"', b'"a\\"b"', b'"\\\\"', b'"\\/"', b'"\\n\\t\\r\\b\\f"',
    b'"\\ud800"', b'"\\udc00x"', b'"\\ud83d\\ude00"', b'"\\ud83dx"', b'"\\u00e9"', b'"\\x41"',
    b'"\\u12"', '"é"'.encode(), "\"\u2028\"".encode(), b'"\xff"', b'"\xed\xa0\x80"',
    b'"\xe2\x82"', b'"\xf0\x9f\x98\x80"', b'"\xc0\xaf"', b'"\x01"', b'"\x00"', b'"\x7f"',
    b'"\\u0000"', b'"unterminated', b'"a\\', b'"1e999"', b'"NaN"', b'"12, 40"', b'"x' * 3,
    # literals and nested values
    b"true", b"false", b"null", b"tru", b"nul", b"nulll", b"True", b"[]", b"{}", b'{"a":1}',
    b'["x"]', b"[", b"{",
]  # fmt: skip


@pytest.mark.parametrize("token", HOSTILE_TOKENS)
@pytest.mark.parametrize("key", ["request_id", "ts", "status", "user", "time", "resp_retry_after"])
def test_each_hostile_value_is_read_as_orjson_reads_it_or_declined(key: str, token: bytes) -> None:
    line = line_of({**tokens_of(BASE), key: token})
    lay = layout_of(KEYS)
    got = raw(line, lay)
    try:
        want: Any = access._scan(orjson.loads(line), Fields())
    except orjson.JSONDecodeError:
        want = "refused"
    if got is not None:
        assert want != "refused", "read a line orjson refuses"
        assert same(got, want)
    elif want != "refused":
        # Declined though orjson reads it: only for the shapes the raw read leaves to orjson.
        assert (
            token[:1] in b"[{"
            or b"e" in token.lower()
            or len(token) > 18
            or (key.startswith("resp_") and token[:1] != b'"')
            or token in (b'"-"', b'"\\u002d"')
        ), token
    access._last_layout = lay
    assert parsed(line, True) == parsed(line, False)


@pytest.mark.parametrize(
    "line",
    [
        b'{"ts":1.5,"request_id":"r1"} x',  # trailing data
        b'{"ts":1.5,"request_id":"r1"}}',
        b'{"ts":1.5,"request_id":"r1"},',
        b'{"ts":1.5,"request_id":"r1"}\x00',
        b'{"ts":1.5,"request_id":"r1"}\x0c',  # not JSON whitespace
        b'\xef\xbb\xbf{"ts":1.5,"request_id":"r1"}',  # byte order mark
        b'{"ts":1.5,"request_id":"r1"',  # torn
        b'{"ts":1.5,"request_id":',
        b'{"ts":1.5,"request_id"',
        b'{"ts":1.5,"request_id":"r1",}',  # trailing comma
        b'{"ts":1.5 "request_id":"r1"}',
        b'{"ts":1.5,"request_id":"r1","request_id":"r2"}',  # a duplicate key
        b'{"ts":1.5,"ts":2.5,"request_id":"r1"}',
        b'{"t\\u0073":1.5,"request_id":"r1"}',  # an escaped key
        b'{"ts" :1.5,"request_idx":"r1"}',  # a longer key
        b'{"ts":1.5,"request_i":"r1"}',  # a shorter key
        b'{"request_id":"r1","ts":1.5}',  # another order
        b'{"ts":1.5}',  # a key fewer
        b'{"ts":1.5,"request_id":"r1","user":"u"}',  # a key more
        b'["ts",1.5]',
        b'"ts"',
        b"",
        b"   ",
    ],
)
def test_other_shapes_are_declined(line: bytes) -> None:
    lay = layout_of(["ts", "request_id"])
    assert raw(line, lay) is None
    access._last_layout = lay
    assert parsed(line, True) == parsed(line, False)


def test_json_whitespace_anywhere_is_read() -> None:
    lay = layout_of(KEYS)
    for ws in (b" ", b"\t", b"\r", b"\n", b" \t\r\n "):
        line = line_of(tokens_of(BASE), ws)
        got = raw(line, lay)
        assert got is not None and same(got, via_orjson(line))


def test_escaped_and_utf8_values_are_orjsons_own() -> None:
    lay = layout_of(KEYS)
    d = dict(BASE, user='a"b\\c\u00e9\U0001f600\u2028', api_key="\x01\x7f")
    line = orjson.dumps(d)
    got = raw(line, lay)
    assert got is not None and same(got, via_orjson(line))
    assert got[1][access._NGINX_KEYS.index("user")] == 'a"b\\c\u00e9\U0001f600\u2028'
    # A lone surrogate (orjson refuses it) or invalid UTF-8: declined, and the line's own
    # path decides (the standard library's reading, or bytes replaced and counted as lossy).
    for bad in (b'"\\ud800"', b'"\xff"'):
        line = line_of({**tokens_of(BASE), "user": bad})
        assert raw(line, lay) is None
        access._last_layout = lay
        assert parsed(line, True) == parsed(line, False)
    assert parse_nginx_json(line_of({**tokens_of(BASE), "user": b'"\xff"'})).lossy_utf8


# Bytes that the string reader must look at, and the printable ones at the edges of the plain
# range (passed over 8 at a time): as raw JSON string content.
SPECIAL = [b'\\"', b"\\\\", b"\\n", b"\x01", b"\x1f", b"\x00", b"\x7f", b"\x80", b"\xff",
           "\u00e9".encode(), b"\xe2\x82", b'"']  # fmt: skip
EDGES = [b" ", b"~", b"!", b"#", b"[", b"]"]


@pytest.mark.parametrize("special", SPECIAL + EDGES)
def test_a_byte_at_any_place_of_a_word_is_read_as_orjson_reads_it(special: bytes) -> None:
    """`read_string` passes over plain bytes 8 at a time: a byte it must look at (or a plain
    one at the edge of the range) at every place of the first three words, and strings that
    end at every place, read as orjson reads them, and declined exactly when orjson refuses
    them (a skipped backslash would stop at the escaped quote and decline the line)."""
    lay = layout_of(KEYS)
    for size in range(25):
        for at in range(size + 1):
            text = b"a" * at + special + b"b" * (size - at)
            line = line_of({**tokens_of(BASE), "user": b'"' + text + b'"'})
            got = raw(line, lay)
            try:
                want: Any = via_orjson(line)
            except orjson.JSONDecodeError:
                want = "refused"
            assert (got is None) == (want == "refused"), (special, size, at)
            if got is not None:
                assert same(got, want), (special, size, at)


def test_headers_keep_line_order_and_the_later_of_one_name() -> None:
    d = dict(BASE, resp_x_a="1", **{"resp_x-a": "2"}, resp_x_b="3")
    lay = layout_of(list(d))
    got = raw(orjson.dumps(d), lay)
    assert got is not None and list(got[0].items())[-2:] == [("x-a", "2"), ("x-b", "3")]
    assert same(got, via_orjson(orjson.dumps(d)))


@pytest.mark.parametrize("value", ["-", 5, 1.5, True, None, 0, False, [], {"a": 1}])
def test_header_values_other_than_strings_take_the_general_loop_once(value: Any) -> None:
    d = dict(BASE, resp_x_a=value)
    line = orjson.dumps(d)
    lay = layout_of(list(d))
    assert raw(line, lay) is None  # only strings are read raw
    got = access._accessscan.scan(orjson.loads(line), lay.keys, lay.slots, access._NFIELDS)
    if value in ("-", 5, 1.5, True, {"a": 1}):  # truthy: the general loop reads the headers
        assert got[0] is None
    access._last_layout = lay
    assert parsed(line, True) == parsed(line, False)


def test_a_layout_with_keys_that_need_escaping_is_not_read_raw() -> None:
    for key in ('a"b', "a\\b", "\u00e9", "a\x01", "a\x7f"):
        d = {"request_id": "r", key: "v"}
        lay = access._Layout(tuple(d))
        assert lay.raw is None
        assert raw(orjson.dumps(d), lay) is None
        access._last_layout = lay
        assert parse_nginx_json(orjson.dumps(d)).request_id == "r"


def test_scan_line_refuses_bad_arguments() -> None:
    lay = layout_of(["request_id"])
    scan_line = access._accessscan.scan_line
    line = b'{"request_id":"r"}'
    assert scan_line(line, lay.raw, lay.slots, 23, orjson.loads)[1][0] == "r"
    assert scan_line(bytearray(line), lay.raw, lay.slots, 23, orjson.loads) is None
    assert scan_line(line.decode(), lay.raw, lay.slots, 23, orjson.loads) is None
    assert scan_line(line, None, lay.slots, 23, orjson.loads) is None
    with pytest.raises(ValueError):
        scan_line(line, lay.raw, (), 23, orjson.loads)
    with pytest.raises(ValueError):
        scan_line(line, lay.raw, (99,), 23, orjson.loads)
    with pytest.raises(TypeError):
        scan_line(line, ("request_id",), lay.slots, 23, orjson.loads)
    with pytest.raises(TypeError):
        scan_line(line, lay.raw, lay.slots, 23)
    # an exception of `loads` other than a refusal is not swallowed
    with pytest.raises(MemoryError):
        scan_line(b'{"request_id":"\\u0041"}', lay.raw, lay.slots, 23, _no_memory)


def _no_memory(_: bytes) -> Any:
    raise MemoryError


def test_scan_line_does_not_leak() -> None:

    d = dict(BASE, user="\u00e9\\x")
    lay = layout_of(list(d))
    lines = [orjson.dumps(d), line_of({**tokens_of(d), "user": b'"\\ud800"'}), b"{"]

    def calls() -> None:
        for line in lines:
            raw(line, lay)

    assert grown_bytes(calls, warm=100) < 10_000


TOKEN = st.one_of(
    st.sampled_from(HOSTILE_TOKENS),
    st.floats(allow_nan=False, allow_infinity=False).map(orjson.dumps),
    st.integers(min_value=-(2**70), max_value=2**70).map(lambda i: str(i).encode()),
    st.text(max_size=8).map(lambda s: orjson.dumps(s)),
    st.decimals(allow_nan=False, allow_infinity=False, places=6).map(lambda x: str(x).encode()),
)


@settings(max_examples=500, deadline=None)
@given(
    st.dictionaries(st.sampled_from(KEYS), TOKEN, max_size=4),
    st.sampled_from([b"", b"", b" ", b"\n\t"]),
)
def test_any_values_raw_or_orjson_the_same(changes: dict[str, bytes], ws: bytes) -> None:
    line = line_of({**tokens_of(BASE), **changes}, ws)
    lay = layout_of(KEYS)
    got = raw(line, lay)
    if got is not None:
        assert same(got, via_orjson(line))
    access._last_layout = lay
    assert parsed(line, True) == parsed(line, False)


TIES = [k / 2**j for j in range(1, 12) for k in range(1, 64, 2)]  # exact halves at some place


@settings(max_examples=1500, deadline=None)
@given(
    st.one_of(
        st.floats(min_value=0, max_value=1e10),
        st.floats(min_value=0, max_value=200),
        st.floats(),  # NaN, infinities, negatives: float.__round__ itself
        st.sampled_from(TIES),
        st.integers(min_value=0, max_value=10**7).map(lambda i: i * 1e-3),
    ),
    st.sampled_from([0, 2, 3, 6]),
)
def test_round_to_is_round(x: float, nd: int) -> None:
    for v in (x, math.nextafter(x, 0.0), math.nextafter(x, math.inf)):
        try:
            want: Any = round(v, nd)
        except OverflowError:
            want = "overflow"
        try:
            got: Any = access._accessscan.round_to(v, nd)
        except OverflowError:
            got = "overflow"
        assert repr(got) == repr(want), (v, nd)


def test_round_to_ties_go_to_even() -> None:
    for x in TIES:
        for nd in (2, 3, 6):
            assert repr(access._accessscan.round_to(x, nd)) == repr(round(x, nd))
    assert (
        access._accessscan.round_to(0.125, 2) == 0.12
        and access._accessscan.round_to(0.375, 2) == 0.38
    )
    assert repr(access._accessscan.round_to(-0.0, 2)) == "-0.0"
    with pytest.raises(ValueError):
        access._accessscan.round_to(1.0, 7)
    with pytest.raises(TypeError):
        access._accessscan.round_to(1, 2)  # a float only: round(1, 2) is the int 1


def test_fields_round_with_the_c_twin() -> None:
    from sidecar.parse import fields

    assert fields._round is access._accessscan.round_to
