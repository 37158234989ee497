from __future__ import annotations

import pytest

from sidecar.errors import ParseError
from sidecar.parse.body import parse_bodies_line, parse_chunks_line
from sidecar.types import BODY_DATA, BODY_END, BODY_WHOLE


def test_chunk_and_end_records() -> None:
    rec, lossy = parse_chunks_line(b'{"ts":1.5,"request_id":"r","data":"data: {}\\n\\n"}')
    assert (rec.kind, rec.request_id, rec.data, rec.ts, lossy) == (
        BODY_DATA,
        "r",
        "data: {}\n\n",
        1.5,
        False,
    )
    rec, _ = parse_chunks_line(b'{"ts":2,"request_id":"r","end":"client_closed"}')
    assert (rec.kind, rec.end) == (BODY_END, "client_closed")


def test_invalid_utf8_is_replaced_and_reported() -> None:
    rec, lossy = parse_chunks_line(b'{"request_id":"r","data":"caf\xc3"}')
    assert lossy and rec.data.startswith("caf")


def test_bodies_style() -> None:
    rec, _ = parse_bodies_line(
        b'{"ts":1,"request_id":"r","content_type":"application/json","body":"{}","truncated":true}'
    )
    assert (rec.kind, rec.data, rec.content_type, rec.truncated) == (
        BODY_WHOLE,
        "{}",
        "application/json",
        True,
    )


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"garbage", "body_invalid_json"),
        (b'"str"', "body_not_an_object"),
        (b'{"data":"x"}', "body_missing_request_id"),
        (b'{"request_id":"r","data":5}', "body_data_not_a_string"),
        (b'{"request_id":"r"}', "body_record_without_data_or_end"),
    ],
)
def test_bad_lines(raw: bytes, reason: str) -> None:
    with pytest.raises(ParseError) as exc:
        parse_chunks_line(raw)
    assert exc.value.reason == reason
