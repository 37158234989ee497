"""The enrich stage on hand-made joined requests: estimation rules, flags, secrets."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import orjson
import pytest
from jsonschema import Draft202012Validator

from sidecar.config import Pricing, Tokens
from sidecar.enrich.event import Enricher, event_id
from sidecar.enrich.identity import make_hasher
from sidecar.enrich.pricing import PricingEngine
from sidecar.enrich.tokens import TokenEstimator
from sidecar.types import AccessRecord, Completed, ParsedBody, Usage
from tests.conftest import REPO

VALIDATOR = Draft202012Validator(
    orjson.loads((REPO / "sidecar" / "schema" / "llm_usage_1.json").read_bytes())
)
AT = datetime(2026, 11, 1, 12, tzinfo=UTC).timestamp()


@pytest.fixture(scope="module")
def enricher() -> Enricher:
    return Enricher(
        pricing=PricingEngine(Pricing()),
        estimator=TokenEstimator(Tokens()),
        hash_user=make_hasher(b"k"),
        source_host="h",
    )


def completed(access: AccessRecord | None, end: str | None = "complete") -> Completed:
    return Completed(request_id="r1", source="proxy", access=access, body="x", end=end)


def test_cancelled_before_any_byte_counts_input_from_the_logged_request(enricher: Enricher) -> None:
    req = orjson.dumps(
        {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello there " * 50}]}
    ).decode()
    a = AccessRecord("r1", status=499, request_body=req, model="gpt-4o")
    ev = enricher.enrich(completed(a, "client_closed"), ParsedBody(model="gpt-4o")).body
    assert ev["status"] == "cancelled" and ev["tokens_estimated"] is True
    assert ev["input_tokens"] > 100 and ev["output_tokens"] == 0
    assert ev["cost_status"] == "estimated" and ev["estimated_cost_usd"] > 0
    assert "input_unknown" not in ev["flags"]


def test_a_rejected_request_is_never_estimated(enricher: Enricher) -> None:
    a = AccessRecord("r1", status=429, request_body='{"messages":[{"content":"hi"}]}')
    ev = enricher.enrich(completed(a), ParsedBody(error_type="rate_limit_exceeded")).body
    assert ev["status"] == "rate_limited" and ev["tokens_estimated"] is False
    assert ev["input_tokens"] is None and ev["cost_status"] == "no_usage"


def test_partial_usage_without_text_is_marked_a_lower_bound(enricher: Enricher) -> None:
    parsed = ParsedBody(
        provider="anthropic",
        model="claude-sonnet-4-5",
        is_stream=True,
        usage=Usage(input_tokens=100, output_tokens=1),
        usage_partial=True,
    )
    ev = enricher.enrich(completed(AccessRecord("r1", status=200), "client_closed"), parsed).body
    assert ev["status"] == "cancelled"
    assert ev["input_tokens"] == 100 and ev["estimate_lower_bound"] is True


def test_partial_usage_with_text_keeps_input_and_estimates_output(enricher: Enricher) -> None:
    parsed = ParsedBody(
        provider="anthropic",
        model="claude-sonnet-4-5",
        is_stream=True,
        usage=Usage(input_tokens=100, cached_input_tokens=40, output_tokens=1),
        usage_partial=True,
        output_text=["one two three four five six seven eight nine ten"],
    )
    ev = enricher.enrich(completed(AccessRecord("r1", status=200), "client_closed"), parsed).body
    assert ev["input_tokens"] == 100 and ev["cached_input_tokens"] == 40
    assert ev["output_tokens"] >= 10 and ev["tokens_estimated"] is True


def test_one_hour_cache_writes_are_their_own_fields(enricher: Enricher) -> None:
    usage = Usage(
        input_tokens=1_600,
        cache_write_input_tokens=1_500,
        cache_write_1h_input_tokens=1_000,
        output_tokens=10,
    )
    parsed = ParsedBody(provider="anthropic", model="claude-sonnet-4-5", usage=usage)
    ev = enricher.enrich(completed(AccessRecord("r1", status=200, time=AT)), parsed).body
    assert ev["cache_write_input_tokens"] == 1_500 and ev["cache_write_1h_input_tokens"] == 1_000
    rates = enricher.pricing.price(
        provider="anthropic", model="claude-sonnet-4-5", usage=usage, at=AT
    ).rates
    assert rates is not None
    per_mtok = (
        Decimal(rates["cache_write_usd_per_mtok"]),
        Decimal(rates["cache_write_1h_usd_per_mtok"]),
    )
    assert per_mtok == (Decimal("3.75"), Decimal("6"))
    assert ev["cost_cache_write_1h_usd"] == 0.006  # 1,000 x $6 / MTok
    assert ev["cost_cache_write_usd"] == 0.007875  # + 500 x $3.75 / MTok
    assert list(VALIDATOR.iter_errors(ev)) == []
    # null exactly when the siblings are: no usage (a 429), or a model without a price
    a = AccessRecord("r1", status=429, time=AT)
    none = enricher.enrich(completed(a), ParsedBody(error_type="rate_limit_exceeded")).body
    unpriced = enricher.enrich(
        completed(AccessRecord("r1", status=200, time=AT)),
        ParsedBody(provider="anthropic", model="no-such-model", usage=usage),
    ).body
    for e in (none, unpriced):
        assert list(VALIDATOR.iter_errors(e)) == []
        for tokens, sibling in (
            ("cache_write_1h_input_tokens", "cache_write_input_tokens"),
            ("cost_cache_write_1h_usd", "cost_cache_write_usd"),
        ):
            assert (e[tokens] is None) == (e[sibling] is None), (tokens, e)
    assert none["cache_write_1h_input_tokens"] is None and none["cost_cache_write_1h_usd"] is None
    assert unpriced["cache_write_1h_input_tokens"] == 1_000
    assert unpriced["cost_cache_write_1h_usd"] is None


def test_identity_fields_and_event_id(enricher: Enricher) -> None:
    a = AccessRecord("r1", status=200, user="alice", tenant="acme", api_key_id="abc")
    ev = enricher.enrich(completed(a), ParsedBody()).body
    assert ev["user"] == make_hasher(b"k")("alice") and ev["tenant"] == "acme"
    assert ev["api_key_id"] == "abc"
    assert ev["event_id"] == event_id("proxy", "r1") != event_id("other", "r1")


def test_a_bug_in_enrichment_costs_one_request_not_the_run(tmp_path, monkeypatch) -> None:
    """A request that makes enrichment raise is counted, logged and set aside; the rest flows."""
    import asyncio

    import orjson as _orjson

    from sidecar import config as C
    from sidecar.enrich import event as event_mod
    from sidecar.pipeline import Pipeline

    access = tmp_path / "a.log"
    lines = [
        {"ts": 1.0, "request_id": rid, "uri": "/v1/chat/completions", "status": 200}
        for rid in ("good1", "boom", "good2")
    ]
    access.write_bytes(b"".join(_orjson.dumps(x) + b"\n" for x in lines))
    cfg = C.from_dict(
        {
            "sources": [{"access_log": {"paths": [str(access)]}}],
            "state_dir": str(tmp_path / "state"),
            "identity": {"hash_key": "k"},
            "sinks": [{"type": "file", "path": str(tmp_path / "e.ndjson")}],
        }
    )
    real = event_mod.Enricher.enrich

    def enrich(self, c, parsed):
        if c.request_id == "boom":
            raise RuntimeError("simulated bug")
        return real(self, c, parsed)

    monkeypatch.setattr(event_mod.Enricher, "enrich", enrich)
    telemetry = asyncio.run(Pipeline(cfg, once=True).run())
    got = [
        _orjson.loads(x)["request_id"] for x in (tmp_path / "e.ndjson").read_bytes().splitlines()
    ]
    assert sorted(got) == ["good1", "good2"]
    assert telemetry.counters["requests_failed_total"] == 1
    assert telemetry.malformed["enrich_failed"] == 1


def test_requests_sharing_an_id_keep_their_own_event_ids_across_a_restart(
    enricher: Enricher,
) -> None:
    """After a restart the join no longer knows that an id was already emitted (no
    duplicate_key): the access line's own time still keeps the two requests apart, and the same
    line read again (a replay) gives the same id."""
    first = enricher.enrich(completed(AccessRecord("dup", time=1_795_000_000.5)), ParsedBody())
    second = enricher.enrich(completed(AccessRecord("dup", time=1_795_000_090.25)), ParsedBody())
    replay = enricher.enrich(completed(AccessRecord("dup", time=1_795_000_090.25)), ParsedBody())
    assert first.body["event_id"] != second.body["event_id"]
    assert replay.body["event_id"] == second.body["event_id"]


@pytest.mark.parametrize(
    "usage",
    [
        {"prompt_tokens": 2**70, "completion_tokens": 5},
        {"prompt_tokens": 10, "completion_tokens": 5, "details": {"x": "\udcff", "y": [2**80]}},
    ],
)
def test_access_log_usage_orjson_cannot_write_is_flagged_invalid_not_a_crash(
    enricher: Enricher, usage: dict
) -> None:
    # An access log's `usage` object is parsed as a body when there is no body: a value orjson
    # cannot write (beyond 64 bits, a lone surrogate) used to raise out of parse_completed.
    from sidecar.parse.response import parse_completed

    c = Completed(
        request_id="r1",
        source="s",
        access=AccessRecord(
            "r1",
            status=200,
            path="/v1/chat/completions",
            upstream_host="api.openai.com",
            usage=usage,
        ),
        body=None,
        end=None,
    )
    ev = enricher.enrich(c, parse_completed(c, provider="openai")).body
    big = usage["prompt_tokens"] > 2**53
    assert ("usage_invalid" in ev["flags"]) is big
    assert ev["cost_status"] != "priced" or not big
    if not big:
        assert (ev["input_tokens"], ev["output_tokens"]) == (10, 5)


def test_the_event_keys_come_in_schema_order(enricher: Enricher) -> None:
    """The event is filled in a copy of a template: its keys are the schema's `required` list,
    in order, and each event is a dict of its own. The rate-limit fields land in their places
    because `parse_ratelimits` returns exactly ratelimit.KEYS, whatever the headers."""
    schema = orjson.loads((REPO / "sidecar" / "schema" / "llm_usage_1.json").read_bytes())
    a = AccessRecord("r1", status=200, time=AT, model="gpt-4o", user="u")
    parsed = ParsedBody(model="gpt-4o", usage=Usage(input_tokens=10, output_tokens=5))
    ev = enricher.enrich(completed(a), parsed).body
    assert list(ev) == schema["required"] and len(ev) == len(schema["properties"])
    first = enricher.enrich(completed(a), parsed).body
    first["model"] = "changed"  # each event is a dict of its own, never the template
    assert enricher.enrich(completed(a), parsed).body == ev

    for headers in [
        {},
        {"anthropic-ratelimit-tokens-remaining": "5", "retry-after": "x"},
        {"x-ratelimit-limit-requests": str(2**70), "retry-after-ms": "NaN"},
    ]:
        a = AccessRecord("r2", status=429, time=AT, model="gpt-4o", response_headers=headers)
        got = list(enricher.enrich(completed(a), parsed).body)
        assert got == schema["required"], headers


@pytest.mark.parametrize("seed", [1, 2])
def test_the_time_in_the_event_id_is_written_as_repr_writes_it(seed: int) -> None:
    """`time_repr` (orjson for a float in range) is `repr`, digit for digit: random access
    times, random bit patterns, the edges of the range and what is outside it."""
    import random
    import struct

    from sidecar.enrich.event import time_repr

    rnd = random.Random(seed)
    values: list[object] = [
        1e-3,
        0.001000000000001,
        9.999999999999998e14,
        1e15,
        1e16,
        1.5e-5,
        0.0,
        -0.0,
        -1.5,
        float("nan"),
        float("inf"),
        -float("inf"),
        5e-324,
        1.7976931348623157e308,
        2**70,
        7,
        True,
        1764190000.0,
        1764190000.1,
        0.1 + 0.2,
        123456789012345.67,
    ]
    for _ in range(20_000):
        values.append(rnd.uniform(1e9, 2e9))
        values.append(round(rnd.uniform(1e9, 2e9), 3))
        values.append(10 ** rnd.uniform(-5, 16))
        values.append(struct.unpack("<d", struct.pack("<Q", rnd.getrandbits(64)))[0])
    for v in values:
        assert time_repr(v) == repr(v), v
