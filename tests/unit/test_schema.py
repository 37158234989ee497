"""The llm_usage/1 JSON Schema: valid itself, accepts a complete event, rejects broken ones."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "sidecar" / "schema" / "llm_usage_1.json"

# DESIGN.md section 4 plus the sidecar extras, group by group.
FIELDS = {
    "identity": ["schema", "event_id", "request_id", "provider_request_id", "time", "source_host"],
    "request": [
        "provider",
        "api",
        "model",
        "model_requested",
        "pricing_model",
        "is_streaming",
        "service_tier",
    ],
    "outcome": ["status", "http_status", "finish_reason", "error_type", "duration_ms", "ttft_ms"],
    "tokens": [
        "input_tokens",
        "cached_input_tokens",
        "cache_write_input_tokens",
        "cache_write_1h_input_tokens",
        "output_tokens",
        "reasoning_tokens",
        "total_tokens",
        "tokens_estimated",
        "token_source",
    ],
    "cost": [
        "cost_input_usd",
        "cost_cached_input_usd",
        "cost_cache_write_usd",
        "cost_cache_write_1h_usd",
        "cost_output_usd",
        "estimated_cost_usd",
        "cost_known",
        "cost_status",
        "pricing_source",
        "pricing_version",
    ],
    "limits": [
        "ratelimit_limit_requests",
        "ratelimit_remaining_requests",
        "ratelimit_reset_requests_secs",
        "ratelimit_limit_tokens",
        "ratelimit_remaining_tokens",
        "ratelimit_reset_tokens_secs",
        "ratelimit_remaining_requests_pct",
        "ratelimit_remaining_tokens_pct",
        "retry_after_secs",
    ],
    "who": ["user", "tenant", "api_key_id", "conversation_id", "retry_group", "attempt"],
    "extras": ["calibration_ratio", "estimate_lower_bound", "flags"],
}

VALID_EVENT = {
    "schema": "llm_usage/1",
    "event_id": "9f1c2e4b7a3d5f60",
    "request_id": "51772f20d28fd34c6bacaa03eee53762",
    "provider_request_id": "req_32f2cc1b653e448486542c5f267cf80c",
    "time": 1772442001.078,
    "source_host": "proxy-1",
    "provider": "openai",
    "api": "chat.completions",
    "model": "gpt-4o-mini-2024-07-18",
    "model_requested": None,
    "pricing_model": "gpt-4o-mini",
    "is_streaming": True,
    "service_tier": "default",
    "status": "ok",
    "http_status": 200,
    "finish_reason": "stop",
    "error_type": None,
    "duration_ms": 458.0,
    "ttft_ms": 276.0,
    "input_tokens": 2048,
    "cached_input_tokens": 1024,
    "cache_write_input_tokens": 0,
    "cache_write_1h_input_tokens": 0,
    "output_tokens": 15,
    "reasoning_tokens": 0,
    "total_tokens": 2063,
    "tokens_estimated": False,
    "token_source": "usage",
    "cost_input_usd": 0.0001536,
    "cost_cached_input_usd": 0.0000768,
    "cost_cache_write_usd": 0.0,
    "cost_cache_write_1h_usd": 0.0,
    "cost_output_usd": 0.000009,
    "estimated_cost_usd": 0.0002394,
    "cost_known": True,
    "cost_status": "priced",
    "pricing_source": "genai-prices",
    "pricing_version": "0.0.30",
    "ratelimit_limit_requests": 5000,
    "ratelimit_remaining_requests": 4999,
    "ratelimit_reset_requests_secs": 0.012,
    "ratelimit_limit_tokens": 4000000,
    "ratelimit_remaining_tokens": 3997952,
    "ratelimit_reset_tokens_secs": 0.03,
    "ratelimit_remaining_requests_pct": 99.98,
    "ratelimit_remaining_tokens_pct": 99.9488,
    "retry_after_secs": None,
    "user": "alice",
    "tenant": "acme",
    "api_key_id": "k_3b1f9e0c2d4a",
    "conversation_id": "conv_568c1064005c",
    "retry_group": None,
    "attempt": 0,
    "calibration_ratio": None,
    "estimate_lower_bound": False,
    "flags": [],
}


@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def validator(schema: dict) -> Draft202012Validator:
    return Draft202012Validator(schema)


def test_schema_is_a_valid_draft_2020_12_schema(schema: dict) -> None:
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False


def test_schema_has_exactly_the_design_fields_all_required(schema: dict) -> None:
    expected = [name for group in FIELDS.values() for name in group]
    assert len(expected) == len(set(expected))
    assert set(schema["properties"]) == set(expected)
    assert set(schema["required"]) == set(expected)


def test_complete_event_is_valid(validator: Draft202012Validator) -> None:
    assert list(validator.iter_errors(VALID_EVENT)) == []
    assert set(VALID_EVENT) == set(validator.schema["properties"])


def test_cancelled_estimated_event_with_nulls_is_valid(validator: Draft202012Validator) -> None:
    event = copy.deepcopy(VALID_EVENT)
    nullable = [
        "provider_request_id",
        "api",
        "model",
        "http_status",
        "ttft_ms",
        "cached_input_tokens",
        "estimated_cost_usd",
        "ratelimit_limit_requests",
        "user",
        "attempt",
    ]
    for name in nullable:
        event[name] = None
    event.update(
        status="cancelled",
        tokens_estimated=True,
        token_source="estimated_tiktoken",
        cost_status="estimated",
        calibration_ratio=1.07,
        estimate_lower_bound=True,
        flags=["stream_incomplete", "truncated"],
    )
    assert list(validator.iter_errors(event)) == []


@pytest.mark.parametrize("name", ["event_id", "time", "flags", "tokens_estimated", "attempt"])
def test_missing_field_is_invalid(validator: Draft202012Validator, name: str) -> None:
    event = copy.deepcopy(VALID_EVENT)
    del event[name]
    assert not validator.is_valid(event)


@pytest.mark.parametrize("name", ["prompt", "api_key", "authorization", "extra"])
def test_extra_field_is_invalid(validator: Draft202012Validator, name: str) -> None:
    event = copy.deepcopy(VALID_EVENT)
    event[name] = "x"
    assert not validator.is_valid(event)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("schema", "llm_usage/2"),
        ("provider", "mistral"),
        ("api", "completions"),
        ("status", "failed"),
        ("token_source", "estimated"),
        ("cost_status", "free"),
        ("flags", ["unknown_flag"]),
        ("flags", ["truncated", "truncated"]),
        ("input_tokens", -1),
        ("output_tokens", 1.5),
        ("estimated_cost_usd", -0.01),
        ("is_streaming", "true"),
        ("http_status", "200"),
        ("event_id", None),
    ],
)
def test_wrong_value_is_invalid(validator: Draft202012Validator, name: str, value: object) -> None:
    event = copy.deepcopy(VALID_EVENT)
    event[name] = value
    assert not validator.is_valid(event)


def test_docs_list_every_field(schema: dict) -> None:
    docs = (SCHEMA_PATH.parents[2] / "docs" / "events.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([a-z0-9_]+)` \|", docs, flags=re.MULTILINE))
    assert set(schema["properties"]) <= documented
