"""Enrich: one joined request and its parsed body -> one `llm_usage/1` event. Pure but for state
that learns (token calibration, unpriced-model counters).

The event has every key of the schema on every request (nullable ones set to null) so SPL sees
the same columns everywhere. Nothing secret gets in: no text, no raw key, no header values other
than the rate-limit numbers.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable
from hashlib import sha256
from pathlib import Path
from typing import Any

from orjson import dumps, loads

from sidecar.enrich.pricing import PricingEngine
from sidecar.enrich.ratelimit import KEYS as LIMIT_KEYS
from sidecar.enrich.ratelimit import parse_ratelimits
from sidecar.enrich.status import classify
from sidecar.enrich.timing import stream_timing
from sidecar.enrich.tokens import TokenEstimator
from sidecar.types import (
    COST_NO_USAGE,
    NANO,
    STATUS_CANCELLED,
    STATUS_OK,
    TOKENS_FROM_USAGE,
    TOKENS_NONE,
    Completed,
    Cost,
    OutEvent,
    ParsedBody,
    Usage,
)

SCHEMA = "llm_usage/1"
PROVIDERS = frozenset({"openai", "azure", "anthropic", "gemini", "vertex", "other"})
APIS = frozenset({"chat.completions", "responses", "messages", "generate_content", "embeddings"})


_NO_HEADERS: dict[str, str] = {}


def _schema_keys() -> tuple[str, ...]:
    """The event's keys in the order of the schema's `required` list
    (sidecar/schema/llm_usage_1.json): every event has them all, the rate-limit fields
    (ratelimit.KEYS, which `parse_ratelimits` always returns) together in their order."""
    path = Path(__file__).resolve().parent.parent / "schema" / "llm_usage_1.json"
    # interned: the same objects as the constant keys `enrich` stores by (a pointer compare)
    keys = tuple(map(sys.intern, loads(path.read_bytes())["required"]))
    i = keys.index(LIMIT_KEYS[0])
    if keys[i : i + len(LIMIT_KEYS)] != LIMIT_KEYS:
        raise RuntimeError("the schema lists the rate-limit fields apart from ratelimit.KEYS")
    return keys


_EVENT_KEYS = _schema_keys()


def event_id(source: str, request_id: str, duplicate_key: str | None = None) -> str:
    """Deterministic: the same request from the same source always gets the same id.
    `duplicate_key` tells apart requests that share an id: the access line's time, and for a
    second request seen with the same id and time, also its byte offset (join/table.py). Both
    come from the logs, so a replay after a crash or a restart gives the same id, and two
    requests with one id stay two events even when a restart lies between them."""
    if duplicate_key is None:
        identity = f"{source}\x00{request_id}"
    else:
        identity = f"{source}\x00{request_id}\x00{duplicate_key}"
    return sha256(identity.encode()).hexdigest()[:32]


def _event_id(c: Completed) -> str:
    """`event_id` of a request: its duplicate key, else the text of its access time."""
    key = c.duplicate_key
    if key is None and c.access is not None and c.access.time is not None:
        key = time_repr(c.access.time)
    return event_id(c.source, c.request_id, key)


def time_repr(t: Any) -> str:
    """`repr(t)`, the text of the access time in the event id. For a float from 0.001 up to
    1e15 (every log time), orjson writes the same shortest round-trip digits in the same plain
    notation as `repr` at a fraction of the cost (`float.__repr__` costs ~6k instructions);
    anything else goes to `repr` itself. tests/unit/test_enrich_event.py checks the two agree."""
    if type(t) is float and 1e-3 <= t < 1e15:
        return dumps(t).decode()
    return repr(t)


class Enricher:
    def __init__(
        self,
        *,
        pricing: PricingEngine,
        estimator: TokenEstimator,
        estimate_missing: bool = True,
        hash_user: Callable[[str], str] | None = None,
        hash_tenant: Callable[[str], str] | None = None,
        hash_conversation: Callable[[str], str] | None = None,
        source_host: str | None = None,
    ) -> None:
        self.pricing = pricing
        self.estimator = estimator
        self.estimate_missing = estimate_missing
        self.hash_user = hash_user
        self.hash_tenant = hash_tenant
        self.hash_conversation = hash_conversation
        self.source_host = source_host or socket.gethostname()
        template = dict.fromkeys(_EVENT_KEYS)
        template["schema"] = SCHEMA
        template["source_host"] = self.source_host
        self._template = template

    # -------------------------------------------------------------- text wanted?
    def wants_text(self, c: Completed, parsed: ParsedBody) -> bool:
        """Should the body be parsed again with its text (estimation or a calibration sample)?"""
        if not parsed.is_stream or parsed.compressed:
            return False
        if parsed.usage is None or parsed.usage_partial or parsed.usage.invalid:
            return self.estimate_missing and c.has_body()
        return parsed.terminal_seen and self.estimator.wants_sample(parsed.model)

    # -------------------------------------------------------------- the event
    def enrich(self, c: Completed, parsed: ParsedBody) -> OutEvent:
        a = c.access
        # Without an access record the HTTP status is unknown; a plain error envelope (not a
        # stream) still says it (Gemini's `code`, Anthropic's error type).
        http_status = (
            a.status
            if a is not None
            else (parsed.error_http_status if not parsed.is_stream else None)
        )
        status, error_type = classify(
            http_status,
            parsed,
            end=c.end,
            request_completion=a.request_completion if a is not None else None,
            body_seen=c.end is not None
            or c.has_body()
            or (a is not None and (a.response_body is not None or a.usage is not None)),
        )
        model = parsed.model or (a.model if a is not None else None)
        provider = parsed.provider if parsed.provider in PROVIDERS else "other"
        api = parsed.api if parsed.api in APIS else None
        end_time = self._end_time(c)

        usage = parsed.usage
        usage_invalid = usage is not None and usage.invalid
        if usage_invalid:
            usage = None  # never priced as it stands (a silent $0): estimated, or no usage
        tokens_estimated = False
        token_source = TOKENS_FROM_USAGE if usage is not None else TOKENS_NONE
        calibration_ratio: float | None = None
        lower_bound = False
        input_unknown = False
        media_uncounted = False
        partial = usage is not None and parsed.usage_partial
        request_body = a.request_body if a is not None else None
        # A calibration sample (a complete stream parsed with its text), or a request whose
        # tokens may be estimated: only these ask whether the model reasons in hidden tokens.
        sample = (
            usage is not None
            and not partial
            and parsed.terminal_seen
            and bool(parsed.output_text or parsed.output_extra_tokens)
        )
        may_estimate = (usage is None or partial) and self.estimate_missing
        hidden = (
            (sample or may_estimate)
            and parsed.is_stream
            and self.estimator.reasons_hidden(parsed, model)
        )
        if sample:
            timing = stream_timing(c) if hidden else None
            self.estimator.observe(parsed, model=model, timing=timing, request_body=request_body)
        # Estimate when the provider gave no usage (or only a snapshot from before the cut) and
        # there is something to count: streamed text, a reasoning model's stream that ran (its
        # hidden tokens), or the logged request of a request that reached the model (a
        # cancelled or unfinished one; errors before the model are free).
        if may_estimate and (
            bool(parsed.output_text or c.prior_text)
            or (hidden and c.has_body())
            or (request_body is not None and status in (STATUS_OK, STATUS_CANCELLED))
        ):
            est = self.estimator.estimate(
                parsed,
                model=model,
                request_body=request_body,
                timing=stream_timing(c) if hidden else None,
                prior_text=c.prior_text,
                prior_extra_tokens=c.prior_extra_tokens,
            )
            if partial and usage is not None:
                # A snapshot taken before the stream was cut (Anthropic message_start, a Gemini
                # running snapshot): its input counts are right, its output is a lower bound.
                usage = Usage(
                    input_tokens=usage.input_tokens,
                    cached_input_tokens=usage.cached_input_tokens,
                    cache_write_input_tokens=usage.cache_write_input_tokens,
                    cache_write_1h_input_tokens=usage.cache_write_1h_input_tokens,
                    output_tokens=max(usage.output_tokens, est.output_tokens),
                    reasoning_tokens=max(usage.reasoning_tokens, est.reasoning_tokens or 0),
                    reasoning_unknown=usage.reasoning_unknown or est.reasoning_tokens is None,
                )
            else:
                input_unknown = est.input_tokens is None
                usage = Usage(
                    input_tokens=est.input_tokens or 0,
                    output_tokens=est.output_tokens,
                    reasoning_tokens=est.reasoning_tokens or 0,
                    reasoning_unknown=est.reasoning_tokens is None,
                )
            if est.input_media_uncounted:
                media_uncounted = True
            tokens_estimated = True
            token_source = est.token_source
            calibration_ratio = est.calibration_ratio
            lower_bound = est.lower_bound
        elif partial:
            lower_bound = True  # the provider's own snapshot, taken before the stream was cut

        if usage is None:
            cost = Cost(cost_known=False, cost_status=COST_NO_USAGE)
        else:
            cost = self.pricing.price(
                provider=provider,
                model=model,
                usage=usage,
                billing_parts=parsed.billing_parts,
                at=end_time,
                service_tier=parsed.service_tier,
                tokens_estimated=tokens_estimated,
            )

        headers = a.response_headers if a is not None else _NO_HEADERS
        flags = self._flags(c, parsed, status)
        if input_unknown:
            flags.append("input_unknown")
        if usage_invalid:
            flags.append("usage_invalid")
        if a is not None and a.invalid_fields:
            flags.append("fields_invalid")
        if media_uncounted:
            flags.append("input_media_not_counted")

        if usage is not None:
            input_tokens = None if input_unknown else usage.input_tokens
            cached = usage.cached_input_tokens
            cache_write = usage.cache_write_input_tokens
            cache_write_1h = usage.cache_write_1h_input_tokens
            output_tokens = usage.output_tokens
            reasoning = None if usage.reasoning_unknown else usage.reasoning_tokens
            total = usage.total_tokens
        else:
            input_tokens = cached = cache_write = cache_write_1h = None
            output_tokens = reasoning = total = None
        if cost.cost_known:
            # nusd_to_usd, inlined (six calls a request): the nearest double to the exact amount
            cost_input = cost.input_nusd / NANO
            cost_cached = cost.cached_input_nusd / NANO
            cost_write = cost.cache_write_nusd / NANO
            cost_write_1h = cost.cache_write_1h_nusd / NANO
            cost_output = cost.output_nusd / NANO
            cost_total = cost.total_nusd / NANO
        else:
            cost_input = cost_cached = cost_write = cost_write_1h = None
            cost_output = cost_total = None
        if a is not None:
            model_requested = a.model
            duration_ms = a.duration_ms
            ttft_ms = a.ttft_ms
            user = a.user
            tenant = a.tenant
            conversation = a.conversation_id
            api_key_id = a.api_key_id
            retry_group = a.client_request_id
            attempt = a.attempt
            if user is not None and self.hash_user is not None:
                user = self.hash_user(user)
            if tenant is not None and self.hash_tenant is not None:
                tenant = self.hash_tenant(tenant)
            if conversation is not None and self.hash_conversation is not None:
                conversation = self.hash_conversation(conversation)
        else:
            model_requested = duration_ms = ttft_ms = user = tenant = conversation = None
            api_key_id = retry_group = attempt = None

        # Filled in a copy of a template holding every key in schema order: a copy and one
        # store per key cost about half of building a 60-key dict from a display (and less than
        # dict(template, **fields): past 14 keywords the call builds a dict of them first).
        body = self._template.copy()
        body["event_id"] = _event_id(c)
        body["request_id"] = c.request_id
        body["provider_request_id"] = (
            parsed.provider_request_id or headers.get("x-request-id") or headers.get("request-id")
        )
        body["time"] = end_time
        body["provider"] = provider
        body["api"] = api
        body["model"] = model
        body["model_requested"] = model_requested
        body["pricing_model"] = cost.pricing_model
        body["is_streaming"] = parsed.is_stream
        body["service_tier"] = parsed.service_tier
        body["status"] = status
        body["http_status"] = http_status
        body["finish_reason"] = parsed.finish_reason
        body["error_type"] = error_type if status != STATUS_OK else None
        body["duration_ms"] = duration_ms
        body["ttft_ms"] = ttft_ms
        body["input_tokens"] = input_tokens
        body["cached_input_tokens"] = cached
        body["cache_write_input_tokens"] = cache_write
        body["cache_write_1h_input_tokens"] = cache_write_1h
        body["output_tokens"] = output_tokens
        body["reasoning_tokens"] = reasoning
        body["total_tokens"] = total
        body["tokens_estimated"] = tokens_estimated
        body["token_source"] = token_source
        body["cost_input_usd"] = cost_input
        body["cost_cached_input_usd"] = cost_cached
        body["cost_cache_write_usd"] = cost_write
        body["cost_cache_write_1h_usd"] = cost_write_1h
        body["cost_output_usd"] = cost_output
        body["estimated_cost_usd"] = cost_total
        body["cost_known"] = cost.cost_known
        body["cost_status"] = cost.cost_status
        body["pricing_source"] = cost.pricing_source
        body["pricing_version"] = cost.pricing_version
        body["user"] = user
        body["tenant"] = tenant
        body["api_key_id"] = api_key_id
        body["conversation_id"] = conversation
        body["retry_group"] = retry_group
        body["attempt"] = attempt
        body["calibration_ratio"] = calibration_ratio
        body["estimate_lower_bound"] = lower_bound
        body["flags"] = flags
        # exactly ratelimit.KEYS, set in the template's places
        parse_ratelimits(
            headers,
            provider=provider,
            now=end_time,
            body_retry_after_secs=parsed.retry_after_secs,
            into=body,
        )
        ev = OutEvent(body, end_time, c.source_path)  # positional: keywords cost about 3x
        ev.positions = c.positions
        return ev

    @staticmethod
    def _end_time(c: Completed) -> float:
        """The access line's time, else the body's own last (or first) time: never the wall
        clock when the logs hold a time, so a replay gives the same events. Only a request
        whose logs hold no readable time at all gets the clock (flagged `time_from_clock`)."""
        a = c.access
        if a is not None and a.time is not None:
            return float(a.time)
        if c.last_ts is not None:
            return float(c.last_ts)
        if c.first_ts is not None:
            return float(c.first_ts)
        import time

        return round(time.time(), 3)

    @staticmethod
    def _flags(c: Completed, parsed: ParsedBody, status: str) -> list[str]:
        flags: list[str] = []
        a = c.access
        if (a is None or a.time is None) and c.last_ts is None and c.first_ts is None:
            flags.append("time_from_clock")
        if c.expired and c.access is None:
            flags.append("expired_no_access")
        if c.expired and c.access is not None and c.end is None:
            flags.append("expired_no_body")
        if c.body_truncated or parsed.truncated:
            flags.append("truncated")
        if c.duplicate_key is not None:
            flags.append("duplicate_request_id")
        if parsed.compressed:
            flags.append("compressed_body")
        if parsed.malformed_events:
            flags.append("malformed_events")
        if parsed.is_stream and not parsed.terminal_seen and status != STATUS_CANCELLED:
            flags.append("stream_incomplete")
        return flags
