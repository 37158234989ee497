"""The HEC encoder: envelope shape, time formatting, indexed fields, batching, gzip (no network)."""

from __future__ import annotations

import gzip
import json
import re

import pytest

from sidecar.sinks.hec.encoder import (
    Batcher,
    Envelopes,
    compress,
    cut_batches,
    encode_event,
    format_time,
    indexed_fields,
)
from sidecar.testing import TokenSettings, parse_events
from sidecar.types import OutEvent


def _event(**body: object) -> OutEvent:
    base = {"schema": "llm_usage/1", "provider": "openai", "model": "gpt-4o", "status": "ok"}
    base.update(body)
    return OutEvent(body=base, time=1700000000.5, source="/var/log/nginx/access.log")


def test_envelope_shape_and_key_order() -> None:
    raw = encode_event(_event(tenant="acme"), host="h1", index="llm", source=None)
    env = json.loads(raw)
    assert list(env) == ["time", "host", "source", "sourcetype", "index", "event", "fields"]
    assert env["host"] == "h1"
    assert env["source"] == "/var/log/nginx/access.log"
    assert env["sourcetype"] == "llm:usage"
    assert env["index"] == "llm"
    assert env["event"]["model"] == "gpt-4o"
    assert raw.startswith(b'{"time":1700000000.500,')


def test_null_envelope_keys_are_dropped() -> None:
    ev = OutEvent(body={"x": 1}, time=1.0, source=None)
    env = json.loads(encode_event(ev, host="h", index=None, source=None))
    assert "index" not in env and "source" not in env
    assert "fields" not in env  # no indexed key in the body: no empty `fields`


def test_source_and_sourcetype_overrides() -> None:
    ev = _event()
    env = json.loads(encode_event(ev, host="h", index=None, source="cfg", sourcetype="custom"))
    assert env["source"] == "cfg"
    assert env["sourcetype"] == "custom"


def test_envelopes_keep_what_repeats_and_give_the_bytes_of_the_whole_object() -> None:
    """The kept parts (keys before the event, `fields` per label set) change nothing: each
    envelope is byte for byte orjson's encoding of the envelope object; labels `true` and `1`
    (equal as Python keys) keep their own fields; the cache is bounded."""
    import orjson

    from sidecar.spool.segment import LABEL_KEYS, label_values

    envelopes = Envelopes(max_kept=3)
    cases = [
        ({"model": "m", "is_streaming": True, "user": "u"}, "s", "llm:usage", "llm"),
        ({"model": "m", "is_streaming": 1, "user": "u"}, "s", "llm:usage", "llm"),
        ({"model": 2.0, "status": "ok", "tenant": None}, None, "other", None),
        ({"model": "m", "is_streaming": True, "user": "u"}, "s2", "llm:usage", "llm"),
        ({"n": [1, "é\n"]}, "s", "llm:usage", "llm"),
        ({"model": "m", "is_streaming": True, "user": "u"}, "s", "llm:usage", "llm"),
    ] * 2
    for body, source, sourcetype, index in cases:
        env = envelopes.encode(
            1.5,
            orjson.dumps(label_values(body)),
            orjson.dumps(body),
            host="h",
            index=index,
            source=source,
            sourcetype=sourcetype,
        )
        whole = {
            "time": orjson.Fragment(b"1.500"),
            "host": "h",
            "source": source,
            "sourcetype": sourcetype,
            "index": index,
            "event": body,
            "fields": indexed_fields(body) or None,
        }
        assert env == orjson.dumps({k: v for k, v in whole.items() if v is not None})
        assert len(envelopes._heads) <= 3 and len(envelopes._fields) <= 3
    assert len(LABEL_KEYS) == 6


@pytest.mark.parametrize(
    ("t", "text"),
    [
        (1700000000.5, "1700000000.500"),
        (1433188255.5, "1433188255.500"),
        (1700000000, "1700000000.000"),
        (1e9, "1000000000.000"),
        (1e22, "10000000000000000000000.000"),
        (1e-7, "0.000"),
        (0.0015, "0.002"),
        (1700000000.1234, "1700000000.123"),
    ],
)
def test_time_is_plain_decimal_with_ms(t: float, text: str) -> None:
    assert format_time(t) == text
    raw = encode_event(
        OutEvent(body={"a": 1}, time=t, source=None), host="h", index=None, source=None
    )
    m = re.match(rb'\{"time":([^,]+),', raw)
    assert m is not None and m.group(1).decode() == text
    assert b"e" not in m.group(1).lower()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_time_is_refused(bad: float) -> None:
    with pytest.raises(ValueError):
        format_time(bad)


def test_indexed_fields_are_strings_and_nulls_dropped() -> None:
    body = {
        "provider": "anthropic",
        "model": "claude-sonnet-4",
        "status": "ok",
        "tenant": None,
        "user": 42,
        "is_streaming": True,
        "input_tokens": 10,  # not an indexed field
    }
    fields = indexed_fields(body)
    assert fields == {
        "provider": "anthropic",
        "model": "claude-sonnet-4",
        "status": "ok",
        "user": "42",
        "is_streaming": "true",
    }
    assert indexed_fields({"is_streaming": False}) == {"is_streaming": "false"}
    env = json.loads(encode_event(_event(is_streaming=False), host="h", index=None, source=None))
    assert all(isinstance(v, str) for v in env["fields"].values())


def test_encoded_envelope_is_accepted_by_the_test_server_rules() -> None:
    raws = [
        encode_event(_event(user=f"u{i}"), host="h", index="llm", source=None) for i in range(3)
    ]
    accepted, error = parse_events(b"".join(raws), TokenSettings(indexes=["llm"]))
    assert error is None
    assert [e["fields"]["user"] for e in accepted] == ["u0", "u1", "u2"]


def test_batcher_cuts_by_max_events() -> None:
    items = [b"x" * 10 for _ in range(7)]
    batches = cut_batches(items, max_events=3, max_bytes=10_000)
    assert [len(b) for b in batches] == [3, 3, 1]
    assert b"".join(b.body() for b in batches) == b"".join(items)


def test_batcher_cuts_by_max_bytes() -> None:
    items = [bytes([65 + i]) * 40 for i in range(5)]  # 40 bytes each
    batches = cut_batches(items, max_events=100, max_bytes=100)
    assert [len(b) for b in batches] == [2, 2, 1]
    assert all(b.size <= 100 for b in batches)
    assert [e for b in batches for e in b.events] == items


def test_oversized_event_goes_alone() -> None:
    small, big = b"s" * 10, b"B" * 500
    batches = cut_batches([small, big, small], max_events=100, max_bytes=100)
    assert [b.events for b in batches] == [[small], [big], [small]]


def test_batcher_take_returns_partial_once() -> None:
    b = Batcher(max_events=10, max_bytes=1000)
    assert b.add(b"a") == []
    assert b.pending == 1
    part = b.take()
    assert part is not None and part.events == [b"a"]
    assert b.take() is None


def test_batcher_rejects_bad_limits() -> None:
    with pytest.raises(ValueError):
        Batcher(0, 10)


def test_gzip_round_trip_is_deterministic() -> None:
    body = b"".join(encode_event(_event(), host="h", index=None, source=None) for _ in range(50))
    packed = compress(body)
    assert gzip.decompress(packed) == body
    assert compress(body) == packed  # mtime 0: same bytes every time
    assert len(packed) < len(body)


def test_gzip_level_is_applied() -> None:
    body = b"".join(
        encode_event(_event(), host=f"h{i}", index=None, source=f"s{i * 7919}") for i in range(300)
    )
    fast, small = compress(body, 1), compress(body, 9)
    assert gzip.decompress(fast) == gzip.decompress(small) == body
    assert len(small) < len(fast)
