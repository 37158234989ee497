"""Field validation (parse/fields.py) through the presets: types, ranges, times, durations, ids,
API-key headers, usage counts."""

from __future__ import annotations

import json

import orjson
import pytest

from sidecar.enrich.identity import make_hasher
from sidecar.errors import ParseError
from sidecar.parse.access import make_generic, parse_caddy, parse_nginx_json
from sidecar.parse.body import decode_chunk_lines, parse_chunks_line
from sidecar.parse.fields import parse_time
from sidecar.parse.providers._common import Counts

HASH = make_hasher(b"k")
T = 1_795_436_049.0  # 2026-11-23T12:14:09Z


def nginx(**kw: object) -> bytes:
    return orjson.dumps({"ts": T, "request_id": "r", "status": 200, **kw})


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-23T12:14:09Z",
        "2026-11-23T12:14:09+00:00",
        "2026-11-23T13:14:09+01:00",
        "2026-11-23T12:14:09",
        "23/Nov/2026:13:14:09 +0100",
        1795436049,
        "1795436049",
        1795436049000,
        "1795436049000.0",
    ],
)
def test_times_as_proxies_write_them(value: object) -> None:
    assert parse_time(value) == T


@pytest.mark.parametrize("value", ["NaN", "inf", 1e300, -5, "yesterday", [1], {"t": 1}, True])
def test_unreadable_times_are_refused(value: object) -> None:
    assert parse_time(value) is None
    with pytest.raises(ParseError) as err:
        parse_nginx_json(nginx(ts=value))
    assert err.value.reason == "access_invalid_time"


@pytest.mark.parametrize(
    ("field", "value", "attr"),
    [
        ("req_x_stainless_retry_count", "nan", "attempt"),
        ("req_x_stainless_retry_count", "inf", "attempt"),
        ("req_x_stainless_retry_count", "1e999", "attempt"),
        ("req_x_stainless_retry_count", 99999999999999999999999, "attempt"),
        ("req_x_stainless_retry_count", -1, "attempt"),
        ("status", "nan", "status"),
        ("status", 99, "status"),
        ("status", 600, "status"),
        ("request_time", "-1", "duration_ms"),
        ("request_time", "1e12", "duration_ms"),
        ("tenant", [1, 2], "tenant"),
        ("user", {"x": 1}, "user"),
        ("conversation_id", 7, "conversation_id"),
        ("stream", "maybe", "stream"),
        ("usage", [1], "usage"),
    ],
)
def test_bad_optional_fields_are_nulled_and_named(field: str, value: object, attr: str) -> None:
    rec = parse_nginx_json(_line(field, value))
    assert getattr(rec, attr) is None
    assert rec.invalid_fields == [{"request_time": "duration_ms"}.get(field, attr)]


def _line(field: str, value: object) -> bytes:
    return json.dumps({"ts": T, "request_id": "r", "status": 200, field: value}).encode()


def test_numbers_orjson_refuses_cost_the_field_not_the_line() -> None:
    rec = parse_nginx_json(b'{"ts":1795472049,"request_id":"r","status":200,"attempt":1e999}')
    assert rec.request_id == "r" and rec.attempt is None and rec.invalid_fields == ["attempt"]
    rec = parse_nginx_json(b'{"ts":1795472049,"request_id":"r","status":NaN}')
    assert rec.status is None


@pytest.mark.parametrize(("rid", "expected"), [(12345, "12345"), ("abc", "abc"), (0, "0")])
def test_request_ids_strings_or_integers_on_both_logs(rid: object, expected: str) -> None:
    assert parse_nginx_json(nginx(request_id=rid)).request_id == expected
    line = orjson.dumps({"ts": T, "request_id": rid, "data": "x"})
    rec, _ = parse_chunks_line(line)
    assert rec.request_id == expected
    assert list(decode_chunk_lines([line]).groups) == [expected]


@pytest.mark.parametrize("rid", [{"x": 1}, ["a", "b"], 1.5, True, ""])
def test_other_request_ids_are_set_aside_on_both_logs(rid: object) -> None:
    with pytest.raises(ParseError, match="request_id"):
        parse_nginx_json(nginx(request_id=rid))
    dec = decode_chunk_lines([orjson.dumps({"ts": T, "request_id": rid, "data": "x"})])
    assert not dec.groups and len(dec.errors) == 1


def test_escaped_body_id_joins_its_decoded_access_id() -> None:
    line = orjson.dumps({"ts": T, "request_id": 'a\\b"c', "data": "x"})
    assert list(decode_chunk_lines([line]).groups) == ['a\\b"c']


def test_body_ts_that_is_not_a_time_is_nulled_and_counted() -> None:
    dec = decode_chunk_lines([b'{"request_id":"r","end":"complete","ts":"NaN"}'])
    assert dec.records[0].ts is None and dec.invalid_ts == 1


@pytest.mark.parametrize(
    "header", ["Authorization", "Api-Key", "X-Api-Key", "X-Goog-Api-Key", "query"]
)
def test_caddy_api_key_headers(header: str) -> None:
    headers = {} if header == "query" else {header: ["Bearer sk-1" if header[0] == "A" else "sk-1"]}
    uri = "/v1beta/models/x:generateContent?alt=sse&key=sk-1" if header == "query" else "/v1/x"
    line = orjson.dumps(
        {"ts": T, "request_id": "r", "status": 200, "request": {"uri": uri, "headers": headers}}
    )
    rec = parse_caddy(line, HASH)
    assert rec.api_key_id == HASH("sk-1")
    assert "sk-1" not in repr(rec)


def test_nginx_query_key_is_hashed_and_cut_from_the_path() -> None:
    rec = parse_nginx_json(
        nginx(uri="/v1beta/models/m:streamGenerateContent?key=AIza1&alt=sse"), HASH
    )
    assert rec.api_key_id == HASH("AIza1") and "AIza1" not in (rec.path or "")


def test_generic_times_durations_and_request_headers() -> None:
    parse = make_generic(
        {
            "request_id": "id",
            "time": "at",
            "duration_secs": "took",
            "request_headers": "req.h",
        },
        None,
    )
    line = orjson.dumps(
        {"id": "r", "at": "2026-11-23T12:14:09Z", "took": 1.5, "req": {"h": {"X-Api-Key": "k1"}}}
    )
    rec = parse(line, HASH)
    assert rec.time == T and rec.duration_ms == 1500.0 and rec.api_key_id == HASH("k1")
    ms = make_generic({"request_id": "id", "duration_ms": "took"}, None)
    assert ms(orjson.dumps({"id": "r", "took": 1.5}), None).duration_ms == 1.5


@pytest.mark.parametrize(
    ("value", "n", "invalid"),
    [
        (1200, 1200, False),
        (1200.0, 1200, False),
        (None, 0, False),
        ("1200", 0, True),
        (-1, 0, True),
        (1.5, 0, True),
        (2**53 + 1, 0, True),
        (1e16, 0, True),
        (True, 0, True),
        ([1], 0, True),
    ],
)
def test_usage_counts(value: object, n: int, invalid: bool) -> None:
    c = Counts()
    assert c(value) == n and c.invalid is invalid
