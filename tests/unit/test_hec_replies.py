"""The reply-class table (sidecar/sinks/hec/replies.py), row by row."""

from __future__ import annotations

import json

import pytest

from sidecar.sinks.hec.replies import (
    ConfigFault,
    Delivered,
    Rejected,
    Retryable,
    TooLarge,
    classify,
    config_hint,
    parse_retry_after,
)


def body(code: int | None = None, **kw: object) -> bytes:
    obj: dict[str, object] = {"text": "x", **kw}
    if code is not None:
        obj["code"] = code
    return json.dumps(obj).encode()


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (200, 0, Delivered),
        (200, None, Delivered),  # another receiver's 200 without code 0
        (201, 200, Delivered),
        (413, None, TooLarge),
        *[(s, c, ConfigFault) for s, c in [(403, 1), (401, 2), (401, 3), (403, 4)]],
        (400, 21, ConfigFault),
        (400, 22, ConfigFault),
        (301, None, ConfigFault),
        (308, None, ConfigFault),
        (401, None, ConfigFault),
        (403, None, ConfigFault),
        (404, None, ConfigFault),  # wrong path
        (400, None, ConfigFault),  # a 400 without a HEC code: the whole batch, not an event
        (405, None, ConfigFault),
        (400, 99, ConfigFault),  # an unknown code never dead-letters
        (500, 8, Retryable),
        (503, 9, Retryable),
        *[(503, c, Retryable) for c in (18, 19, 20)],
        (408, None, Retryable),
        (429, None, Retryable),
        (502, None, Retryable),
        (504, None, Retryable),
        *[(400, c, Rejected) for c in (5, 6, 7, 10, 11, 12, 13, 14, 15, 16)],
    ],
)
def test_reply_class(status: int, code: int | None, cls: type) -> None:
    assert type(classify(status, body(code))) is cls


def test_details_travel_with_the_class() -> None:
    out = classify(400, body(6, **{"invalid-event-number": 3}))
    assert isinstance(out, Rejected) and out.invalid_event_number == 3 and out.hec_code == 6
    out = classify(503, body(9, **{"invalid-event-number": 10}), retry_after="7")
    assert isinstance(out, Retryable) and out.retry_after_secs == 7.0
    assert out.invalid_event_number == 10
    assert classify(200, body(0, ackId=5)) == Delivered(5, 200)
    assert classify(502, b"<html>bad gateway</html>").reason == "HTTP 502"
    redirect = classify(301, b"", location="https://h:8088/services/collector/event")
    assert isinstance(redirect, ConfigFault)
    assert "https://h:8088" in config_hint(redirect, "sinks[0]", "/services/collector/event")


def test_hints_name_the_key_to_fix() -> None:
    path = "/services/collector/event"
    hint = config_hint(ConfigFault("r", 403, 4), "sinks[0]", path)
    assert "sinks[0].token" in hint
    assert "sinks[0].path" in config_hint(ConfigFault("r", 404), "sinks[0]", path)
    assert "enable it" in config_hint(ConfigFault("r", 403, 1), "sinks[0]", path)


def test_retry_after_forms() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("99999") == 600.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
