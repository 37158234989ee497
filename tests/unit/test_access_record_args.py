"""The record's checked arguments in C (`_accessscan.record_args`) are what the general steps give.

`parse_nginx_json` hands the fields `_read` gives to `record_args`; when every field is in its
usual form it returns `AccessRecord`'s arguments and the raw key at once, else None and the pure
steps (`Fields`) decide. Checked here: the usual line is taken (so the comparisons below compare
the C path, not the pure path with itself); each value outside the usual forms is declined; and
the whole record (or the rejection) equals the pure path's for hostile values in every field the
parser reads, through the raw line and through the dict.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.parse import access
from sidecar.parse.access import parse_nginx_json
from sidecar.parse.fields import Fields
from tests.leaks import grown_bytes
from tests.unit.test_access_raw import parsed  # the record (or rejection), C or pure path

pytestmark = pytest.mark.skipif(access._accessscan is None, reason="C extension not built here")

# A line with every field the parser reads, each in its usual form.
USUAL: dict[str, Any] = {
    "ts": 1772442001.978,
    "time": "2026-03-02T09:00:01+00:00",  # not read
    "request_id": "c9bf34ca8c6a8fcfe4d7738ae6d20df9",
    "method": "POST",
    "uri": "/v1/chat/completions",
    "path": "/ignored",
    "status": 200,
    "request_time": 1.018,
    "ttft_ms": 250.5,
    "stream": True,
    "request_completion": "OK",
    "upstream_host": "api.openai.com",
    "req_x_stainless_retry_count": "0",
    "attempt": "",
    "user": "alice",
    "tenant": "acme",
    "api_key": "Bearer sk-proj-Xq3",
    "model": "gpt-4o-mini",
    "conversation_id": "conv_5a",
    "client_request_id": "",
    "response_headers": "",
    "response_body": "-",
    "usage": None,
    "request_body": "",
    "resp_content_type": "application/json",
    "resp_x_ratelimit_limit_requests": "5000",
    "resp_retry_after": "",
}
READ = [k for k in access._NGINX_KEYS if k in USUAL]
assert len(READ) == len(access._NGINX_KEYS)  # every field the parser reads


def fields_of(d: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, str]]:
    f = Fields()
    headers, fields = access._scan(d, f)
    assert not f.invalid
    return fields, headers


def test_the_usual_line_is_checked_in_c_as_the_pure_steps_check_it() -> None:
    fields, headers = fields_of(USUAL)
    got = access._accessscan.record_args(fields, headers)
    assert got is not None
    args, key = got
    assert key == "Bearer sk-proj-Xq3"
    assert args[17] is headers  # the headers dict itself, not a copy
    line = orjson.dumps(USUAL)
    assert parsed(line, True) == parsed(line, False)
    rec = parse_nginx_json(line, lambda k: "h:" + k)
    assert (rec.path, rec.duration_ms, rec.attempt, rec.response_body, rec.api_key_id) == (
        "/v1/chat/completions", 1018.0, 0, None, "h:sk-proj-Xq3",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("request_id", 12345), ("request_id", ""), ("request_id", "-"), ("request_id", None),
        ("ts", 1772442001), ("ts", "1772442001.5"), ("ts", -1.0), ("ts", 5e9), ("ts", ""),
        ("ts", math.nan), ("uri", 5), ("uri", ["/x"]), ("status", 99), ("status", 600),
        ("status", 200.0), ("status", True), ("status", "200"), ("status", 2**70),
        ("request_time", 1), ("request_time", "1.0"), ("request_time", -0.5),
        ("request_time", 3e6), ("request_time", math.inf), ("request_time", ""),
        ("ttft_ms", 3e9), ("ttft_ms", 7), ("stream", 1), ("stream", "true"),
        ("req_x_stainless_retry_count", 0), ("req_x_stainless_retry_count", "1.0"),
        ("req_x_stainless_retry_count", "1234567890123456"),
        ("req_x_stainless_retry_count", "\u0661"), ("req_x_stainless_retry_count", " 1"),
        ("request_completion", 1), ("response_headers", {}), ("response_headers", {"a": "b"}),
        ("response_headers", "x"), ("usage", "x"), ("usage", []), ("response_body", 1),
        ("request_body", {}), ("user", 7), ("model", False), ("api_key", ["k"]),
    ],
)  # fmt: skip
def test_a_value_outside_the_usual_forms_is_declined(key: str, value: Any) -> None:
    d = {**USUAL, key: value}
    if key == "req_x_stainless_retry_count":
        d["attempt"] = "2"
    fields = tuple(d.get(k) for k in access._NGINX_KEYS)
    assert access._accessscan.record_args(fields, {}) is None


def test_the_attempt_falls_back_to_the_attempt_field_only_when_absent() -> None:
    for retry, attempt, want in [("", "2", 2), ("-", "2", 2), (None, "", None), ("3", "2", 3)]:
        d = {**USUAL, "req_x_stainless_retry_count": retry, "attempt": attempt}
        fields = tuple(d.get(k) for k in access._NGINX_KEYS)
        args, _ = access._accessscan.record_args(fields, {})
        assert args[15] == want
        assert type(args[15]) is type(want)


def test_record_args_refuses_bad_arguments() -> None:
    fields, headers = fields_of(USUAL)
    record_args = access._accessscan.record_args
    for bad in [(fields,), (fields[:-1], headers), (list(fields), headers), (fields, [])]:
        with pytest.raises(TypeError):
            record_args(*bad)


def test_record_args_does_not_leak() -> None:
    fields, headers = fields_of(USUAL)
    declined = tuple(
        math.nan if k == "request_time" else v
        for k, v in zip(access._NGINX_KEYS, fields, strict=True)
    )

    def calls() -> None:
        access._accessscan.record_args(fields, headers)
        access._accessscan.record_args(declined, headers)

    assert grown_bytes(calls, warm=100) < 10_000


HOSTILE = st.one_of(
    st.sampled_from(
        [None, "", "-", " ", "0", "007", "1e3", "NaN", "12, 40", "Bearer x", "?key=abc", "\u00e9",
         True, False, 0, 1, -1, 99, 100, 599, 600, 2**53, 2**70, -(2**70), 0.0, -0.0, 0.5, 1.0005,
         1772442001.5, 4102444800.0, 4102444800.5, 2592000.0, 2592000.5, 2592000000.0, 1e300,
         [], ["x"], {}, {"a": 1}]
    ),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**60), max_value=2**60),
    st.text(max_size=6),
)  # fmt: skip
NUMBERS_ORJSON_REFUSES = [math.nan, math.inf, -math.inf]


@settings(max_examples=800, deadline=None)
@given(st.dictionaries(st.sampled_from(READ), HOSTILE, max_size=5))
def test_any_values_in_the_read_fields_give_the_pure_record(changes: dict[str, Any]) -> None:
    d = {**USUAL, **changes}
    line = json.dumps(d, separators=(",", ":"), ensure_ascii=False).encode()  # ints past 64 bits
    access._last_layout = access._Layout(tuple(d))
    assert parsed(line, True) == parsed(line, False)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(READ),
        st.one_of(HOSTILE, st.sampled_from(NUMBERS_ORJSON_REFUSES)),
        max_size=4,
    )
)
def test_any_values_through_the_standard_library_give_the_pure_record(
    changes: dict[str, Any],
) -> None:
    """NaN and Infinity as the standard library writes them: orjson refuses the line, `_loads`
    reads it with the standard library, then `_scan` and `record_args` (or the pure steps)."""
    line = json.dumps({**USUAL, **changes}).encode()
    assert parsed(line, True) == parsed(line, False)
