"""The access parser's fast paths give what the general rules give, for any value.

The `Fields` readers start with the common type, `Fields.text_values` reads several text fields
with one type check, `_resp_headers` keeps a bounded cache of header names, and `_resp_headers_of`
picks the headers of a known key layout without a Python step per key. Each is compared here
with the rule it shortcuts, written out plainly, over hostile values."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.parse import access
from sidecar.parse.access import parse_nginx_json
from sidecar.parse.fields import COUNT_MAX, DURATION_MAX_MS, Fields, finite, is_absent, parse_time

HOSTILE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(),  # NaN and infinities too
    st.sampled_from([2**53, 2**53 + 1, 2**70, 1e300, 1e-300, 0.0, -0.0, 599.5, 1e11, 4.2e9]),
    st.text(max_size=12),
    st.sampled_from(["", "-", "0", "007", "12", " 3", "1.0", "1e3", "٣", "²", "1" * 20, "true"]),
    st.lists(st.one_of(st.text(max_size=4), st.integers(), st.none()), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
RESP_KEYS = ["resp_x_a", "resp_x-a", "resp_retry_after", "resp_content_type", "resp_", "resp_x_b"]
OTHER_KEYS = ["request_id", "ts", "status", "user", "uri", "respx"]


def reference_headers(d: dict[str, Any], f: Fields) -> dict[str, str]:
    """The rule: every `resp_<name>` key, in line order, is the header `<name>` (`_` -> `-`)."""
    headers: dict[str, str] = {}
    for k, v in d.items():
        name = k[5:].replace("_", "-")
        if k.startswith("resp_") and name and v:  # a bare `resp_` names no header
            sv = v if type(v) is str else f.header(name, v)
            if sv is not None and sv != "-":
                headers[name] = sv
    return headers


@settings(max_examples=400)
@given(st.lists(st.tuples(st.sampled_from(RESP_KEYS + OTHER_KEYS), HOSTILE), max_size=10).map(dict))
def test_resp_headers_follow_the_rule(d: dict[str, Any]) -> None:
    for _ in range(2):  # the first read may fill the name cache, the second uses it
        fast, slow = Fields(), Fields()
        assert access._resp_headers(d, fast) == reference_headers(d, slow)
        assert Counter(fast.invalid) == Counter(slow.invalid)


def test_header_values_of_every_kind() -> None:
    d = {"resp_x_a": "1", "resp_x_b": "-", "resp_x_c": 7, "resp_x_d": 1.5, "resp_x_e": ""}
    f = Fields()
    assert access._resp_headers(d, f) == {"x-a": "1", "x-c": "7", "x-d": "1.5"}
    assert f.invalid == []
    f = Fields()
    assert access._resp_headers({"resp_x_a": "1", "resp_x_b": True, "resp_x_c": {}}, f) == {
        "x-a": "1"
    }
    assert f.invalid == ["response_headers"]  # True counts; {} is empty, i.e. absent
    # The same name twice: the later present value wins, as in line order.
    assert access._resp_headers({"resp_x_a": "1", "resp_x-a": "2"}, Fields()) == {"x-a": "2"}
    assert access._resp_headers({"resp_x_a": "1", "resp_x-a": "-"}, Fields()) == {"x-a": "1"}


def test_header_name_cache_is_bounded() -> None:
    access._RESP_NAMES.clear()
    huge = "resp_" + "k" * 1_000_000
    d = {"request_id": "r", huge: "v", "resp_x_a": "1"}
    rec = parse_nginx_json(orjson.dumps(d))
    assert rec.response_headers == {huge[5:].replace("_", "-"): "v", "x-a": "1"}
    # The layout of a line with a huge key is used for that line only.
    assert all(huge not in keys for keys in access._LAYOUTS)
    assert huge not in access._last_layout.keys
    assert access._resp_headers(d, Fields()) == rec.response_headers  # the general loop
    assert huge not in access._RESP_NAMES and "resp_x_a" in access._RESP_NAMES
    for i in range(access._RESP_NAMES_MAX + 10):  # lines with made-up keys
        access._resp_headers({f"resp_h{i}": str(i)}, Fields())
    assert len(access._RESP_NAMES) == access._RESP_NAMES_MAX


# --- Fields: each reader against the general rule ---------------------------------------------


def ref_number(v: Any, lo: float, hi: float) -> tuple[float | None, bool]:
    if is_absent(v):
        return None, False
    f = finite(v)
    if f is None or not lo <= f <= hi:
        return None, True
    return f, False


def ref_integral(v: Any, lo: float, hi: float) -> tuple[int | None, bool]:
    f, bad = ref_number(v, lo, hi)
    if f is None:
        return None, bad
    return (int(f), False) if f.is_integer() else (None, True)


def same_number(a: Any, b: Any) -> bool:
    return type(a) is type(b) and (a == b or (a != a and b != b))


@settings(max_examples=600)
@given(HOSTILE)
def test_readers_match_the_general_rules(v: Any) -> None:
    f = Fields()
    assert (f.count("n", v), bool(f.invalid)) == ref_integral(v, 0, COUNT_MAX)
    f = Fields()
    assert (f.status(v), bool(f.invalid)) == ref_integral(v, 100, 599)
    for unit in (1.0, 1000.0):
        f = Fields()
        got = f.duration_ms("d", v, unit)
        want, bad = ref_number(v, 0, DURATION_MAX_MS / unit)
        want = None if want is None else round(want * unit, 3)
        assert same_number(got, want) and bool(f.invalid) == bad
    try:
        got_t = Fields().time("ts", v, "access")
    except Exception:  # compared with the rule below
        got_t = "raised"
    want_t = None if is_absent(v) else parse_time(v)
    want_t = "raised" if want_t is None and not is_absent(v) else want_t
    assert same_number(got_t, want_t) if got_t != "raised" else want_t == "raised"


@settings(max_examples=300)
@given(st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), HOSTILE, max_size=4))
def test_text_values_is_text_of_each(d: dict[str, Any]) -> None:
    names = ("a", "b", "c", "d")
    fast, slow = Fields(), Fields()
    values = tuple(map(d.get, names))
    assert list(fast.text_values(values, names)) == [slow.text(n, d.get(n)) for n in names]
    assert Counter(fast.invalid) == Counter(slow.invalid)


def test_flag_absent_and_bool() -> None:
    f = Fields()
    assert (f.flag("s", None), f.flag("s", True), f.flag("s", "no"), f.flag("s", 2)) == (
        None,
        True,
        False,
        None,
    )
    assert f.invalid == ["s"]


# --- the layout fast path of the response headers -----------------------------------------------


@settings(max_examples=400)
@given(st.lists(st.tuples(st.sampled_from(RESP_KEYS + OTHER_KEYS), HOSTILE), max_size=10).map(dict))
def test_layout_headers_follow_the_rule(d: dict[str, Any]) -> None:
    for _ in range(2):  # the first read works the layout out, the second reuses it
        fast, slow = Fields(), Fields()
        got = access._resp_headers_of(d, access._layout(d), fast)
        want = reference_headers(d, slow)
        assert got == want and list(got) == list(want)  # the same order too
        assert Counter(fast.invalid) == Counter(slow.invalid)


def nginx_line(**resp: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"ts": 1772442001.978, "request_id": "r1", "status": 200}
    d.update({f"resp_x_{i}": "" for i in range(20)})  # mostly empty, as nginx writes them
    d.update(resp)
    return d


def test_layout_is_reused_and_bounded() -> None:
    access._LAYOUTS.clear()
    d = nginx_line(resp_x_3="7")
    assert parse_nginx_json(orjson.dumps(d)).response_headers == {"x-3": "7"}
    assert access._layout(d) is access._last_layout and len(access._LAYOUTS) == 1
    # the same keys in another order are another layout (the later of one name wins)
    e = dict(reversed(list(nginx_line(resp_x_3="7", **{"resp_x-3": "8"}).items())))
    assert parse_nginx_json(orjson.dumps(e)).response_headers == {"x-3": "7"}
    for i in range(access._LAYOUTS_MAX + 5):  # lines with made-up keys
        parse_nginx_json(orjson.dumps(nginx_line(**{f"resp_made_up_{i}": "v"})))
    assert len(access._LAYOUTS) <= access._LAYOUTS_MAX


@pytest.mark.parametrize(
    "raw",
    [
        # a key repeated: the later value stands, in the first key's place
        b'{"request_id":"r","resp_x_a":"1","resp_x_b":"2","resp_x_a":"3"}',
        b'{"request_id":"r","resp_x_a":"1","resp_x_b":"2","resp_x_a":""}',
        # escaped keys and values
        rb'{"request_id":"r","resp_\u0078_a":"1","resp_x_b":"\"q\"","resp_x\u005fc":"\ud83d\ude00"}',
        # values of every JSON type, and numbers orjson refuses
        b'{"request_id":"r","resp_x_a":7,"resp_x_b":1.5,"resp_x_c":true,"resp_x_d":null,'
        b'"resp_x_e":[],"resp_x_f":{"a":1},"resp_x_g":["1"],"resp_x_h":"-","resp_x_i":0}',
        b'{"request_id":"r","resp_x_a":NaN,"resp_x_b":"1","resp_x_c":Infinity}',
        b'{"request_id":"r","resp_x_a":1e999,"resp_x_b":"1","resp_x_c":-1e999}',
        b'{"request_id":"r","resp_x_a":1180591620717411303424,"resp_x_b":"2"}',
        # invalid UTF-8 in a value and in a key; a lone surrogate escape
        b'{"request_id":"r","resp_x_a":"\xff\xfe","resp_x_b":"ok","resp_\xe9":"v"}',
        rb'{"request_id":"r","resp_x_a":"\ud800","resp_x_b":"ok"}',
        # a megabyte value
        b'{"request_id":"r","resp_x_a":"' + b"m" * 1_000_000 + b'","resp_x_b":""}',
    ],
)
def test_hostile_lines_keep_the_general_rule(raw: bytes) -> None:
    """Each line twice (the second read uses the cached layout): the headers and the invalid
    fields are those of the general loop over the same decoded object."""
    d, _ = access._loads(raw)
    slow = Fields()
    want = reference_headers(d, slow)
    for _ in range(2):
        rec = parse_nginx_json(raw)
        assert rec.response_headers == want and list(rec.response_headers) == list(want)
        assert Counter(rec.invalid_fields) == Counter(slow.invalid)


def test_hostile_header_values_are_named() -> None:
    raw = (
        b'{"request_id":"r","resp_x_a":7,"resp_x_b":1.5,"resp_x_c":true,"resp_x_d":null,'
        b'"resp_x_e":NaN,"resp_x_f":1e999,"resp_x_g":"-","resp_x_h":"ok","resp_x_h":""}'
    )
    rec = parse_nginx_json(raw)
    assert rec.response_headers == {"x-a": "7", "x-b": "1.5"}  # "" later: "ok" is gone
    assert Counter(rec.invalid_fields) == Counter({"response_headers": 3})  # true, NaN, 1e999


def test_access_record_is_built_in_field_order() -> None:
    """parse_nginx_json builds AccessRecord positionally: each value lands in its field."""
    raw = orjson.dumps(
        {
            "request_id": "r9",
            "ts": 1772442001.5,
            "method": "POST",
            "uri": "/v1/x",
            "status": 201,
            "request_time": 0.25,
            "ttft_ms": 12.5,
            "upstream_host": "h.example",
            "stream": True,
            "model": "m1",
            "user": "u1",
            "tenant": "t1",
            "api_key": "k1",
            "conversation_id": "c1",
            "client_request_id": "cr1",
            "attempt": 3,
            "request_completion": "OK",
            "resp_x_a": "1",
            "resp_x_b": "2",
            "response_body": "body",
            "usage": {"prompt_tokens": 1},
            "request_body": "req",
        }
    )
    rec = parse_nginx_json(raw, lambda v: "hash:" + v)
    assert [f.name for f in dataclasses.fields(rec)] == [
        "request_id", "time", "method", "path", "status", "duration_ms", "ttft_ms",
        "upstream_host", "stream", "model", "user", "tenant", "api_key_id", "conversation_id",
        "client_request_id", "attempt", "request_completion", "response_headers",
        "response_body", "usage", "request_body", "invalid_fields", "lossy_utf8",
    ]  # fmt: skip
    assert dataclasses.astuple(rec) == (
        "r9", 1772442001.5, "POST", "/v1/x", 201, 250.0, 12.5, "h.example", True, "m1", "u1",
        "t1", "hash:k1", "c1", "cr1", 3, "OK", {"x-a": "1", "x-b": "2"}, "body",
        {"prompt_tokens": 1}, "req", [], False,
    )  # fmt: skip


# --- the C twin (`_accessscan.c`) against the pure path -------------------------------------------

needs_c = pytest.mark.skipif(access._accessscan is None, reason="C extension not built here")


def pure_scan(d: dict[str, Any], lay: Any) -> tuple[Any, Any, list[str]]:
    f = Fields()
    return access._resp_headers_of(d, lay, f), tuple(map(d.get, access._NGINX_KEYS)), f.invalid


@needs_c
@settings(max_examples=600)
@given(st.lists(st.tuples(st.sampled_from(RESP_KEYS + OTHER_KEYS), HOSTILE), max_size=10).map(dict))
def test_c_scan_is_the_pure_path_or_declines(d: dict[str, Any]) -> None:
    lay = access._Layout(tuple(d))
    got = access._accessscan.scan(d, lay.keys, lay.slots, len(access._NGINX_KEYS))
    headers, fields, invalid = pure_scan(d, lay)
    plain = all(
        not v or (type(v) is str and v != "-")
        for k, v in d.items()
        if k.startswith("resp_") and len(k) > 5
    )
    assert got is not None  # the layout is d's own
    if got[0] is None:
        assert not plain  # the general loop only for a truthy non-string or a "-"
    else:
        assert plain and invalid == []
        assert got[0] == headers and list(got[0]) == list(headers)
    assert all(a is b for a, b in zip(got[1], fields, strict=True))  # the same objects
    if len(d) > 1:  # another key order, one key more or less: another layout, declined
        for keys in (tuple(reversed(lay.keys)), lay.keys[1:], (*lay.keys, "resp_other")):
            other = access._Layout(keys)
            assert access._accessscan.scan(d, other.keys, other.slots, 23) is None


@needs_c
def test_c_scan_refuses_bad_arguments() -> None:
    lay = access._Layout(("request_id", "resp_x_a"))
    d = {"request_id": "r", "resp_x_a": "1"}
    assert access._accessscan.scan(d, lay.keys, lay.slots, 23) == (
        {"x-a": "1"},
        ("r",) + (None,) * 22,
    )
    with pytest.raises(ValueError):
        access._accessscan.scan(d, lay.keys, lay.slots[:1], 23)
    with pytest.raises(ValueError):
        access._accessscan.scan(d, lay.keys, (99, "x-a"), 23)  # a place past the fields
    with pytest.raises(TypeError):
        access._accessscan.scan(list(d), lay.keys, lay.slots, 23)
    # keys that are not strings (only a hand-made layout can hold them): declined
    assert (
        access._accessscan.scan({1: "r", "resp_x_a": "1"}, (2, "resp_x_a"), lay.slots, 23) is None
    )


@needs_c
def test_c_scan_does_not_leak() -> None:
    from tests.leaks import grown_bytes

    d = nginx_line(resp_x_3="7", request_id="r", user="u")
    lay = access._Layout(tuple(d))
    bad = dict(d, resp_x_4=5)

    def calls() -> None:
        access._accessscan.scan(d, lay.keys, lay.slots, 23)
        access._accessscan.scan(bad, lay.keys, lay.slots, 23)

    assert grown_bytes(calls, warm=100) < 10_000


def test_the_parser_uses_the_extension_unless_told_not_to() -> None:
    import os

    pure = os.environ.get("LLM_HEC_SIDECAR_PURE", "") not in ("", "0")
    assert access.NATIVE is (not pure and access._accessscan is not None)
    if os.environ.get("CI") and not pure:  # CI installs with a compiler
        assert access.NATIVE


@pytest.mark.parametrize("first", [True, 5, "-", "1"])
def test_two_keys_of_one_name_count_what_the_general_loop_counts(first: Any) -> None:
    d = {"resp_x_a": first, "resp_x-a": "0", "resp_x_b": ""}
    for lay in (access._layout(d), access._Layout(tuple(d))):
        fast, slow = Fields(), Fields()
        assert access._resp_headers_of(d, lay, fast) == reference_headers(d, slow) == {"x-a": "0"}
        assert fast.invalid == slow.invalid == (["response_headers"] if first is True else [])
    rec = parse_nginx_json(orjson.dumps(dict(d, request_id="r")))
    assert rec.response_headers == {"x-a": "0"}
    assert rec.invalid_fields == (["response_headers"] if first is True else [])
