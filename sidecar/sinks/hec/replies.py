"""Reply classes: what one HEC reply means for the batch that got it. Pure: no network.

`classify` is THE rule (HEC status table, reference 1.7; retry habits of the shippers, 1.8),
applied in this order:

| reply                                                  | class        | what the sink does      |
|--------------------------------------------------------|--------------|-------------------------|
| any 2xx (with or without `code: 0`)                    | Delivered    | release (or await ack)  |
| 413 Payload Too Large                                  | TooLarge     | split in halves down to |
|                                                        |              | one event; dead-letter  |
|                                                        |              | only a lone event       |
| HEC code 1-4, 21, 22 (token), any 3xx, 401, 403, 404,  | ConfigFault  | keep all spooled,       |
| any other 4xx with no HEC code or an unknown one       |              | health red, one error a |
| (a 400 without a code is a whole-batch fault)          |              | minute, retry with      |
|                                                        |              | backoff: resumes itself |
| HEC code 8, 9, 18-20; 408, 429, any 5xx; no reply      | Retryable    | backoff with jitter,    |
| (network error, timeout)                               |              | Retry-After honoured    |
| HEC code 5-7, 10-16                                    | Rejected     | dead-letter event N of  |
|                                                        |              | `invalid-event-number`, |
|                                                        |              | bisect when none given  |

Whatever the class, when a reply names `invalid-event-number` N, HEC kept the N events before N
(moby/moby#35862): they are released and never sent again.
"""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass
from typing import Any

import orjson

TOKEN_CODES = frozenset({1, 2, 3, 4, 21, 22})
RETRY_CODES = frozenset({8, 9, 18, 19, 20})
EVENT_CODES = frozenset({5, 6, 7, 10, 11, 12, 13, 14, 15, 16})
RETRY_HTTP = frozenset({408, 429})
MAX_RETRY_AFTER_SECS = 600.0  # a larger Retry-After is clamped (a misbehaving proxy)


@dataclass(frozen=True, slots=True)
class Delivered:
    ack_id: int | None = None
    http_status: int = 200


@dataclass(frozen=True, slots=True)
class Retryable:
    reason: str
    retry_after_secs: float | None = None
    http_status: int | None = None  # None: no reply (network error, timeout)
    hec_code: int | None = None
    invalid_event_number: int | None = None


@dataclass(frozen=True, slots=True)
class ConfigFault:
    reason: str
    http_status: int
    hec_code: int | None = None
    location: str | None = None  # a redirect's target
    invalid_event_number: int | None = None


@dataclass(frozen=True, slots=True)
class TooLarge:
    reason: str
    http_status: int = 413
    hec_code: int | None = None
    invalid_event_number: int | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: str
    http_status: int
    hec_code: int | None = None
    invalid_event_number: int | None = None


Outcome = Delivered | Retryable | ConfigFault | TooLarge | Rejected


def parse_reply(body: bytes) -> dict[str, Any]:
    """The HEC reply object, or {} when the body is not a JSON object (a proxy's HTML page)."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    return obj if isinstance(obj, dict) else {}


def int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """`Retry-After` as seconds: an integer, or an HTTP date (RFC 9110 section 10.2.3)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        secs = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        secs = when.timestamp() - (time.time() if now is None else now)
    if secs != secs:  # NaN
        return None
    return min(max(secs, 0.0), MAX_RETRY_AFTER_SECS)


def classify(
    http_status: int, body: bytes, retry_after: str | None = None, location: str | None = None
) -> Outcome:
    """Map one HTTP reply of an event POST to its class (see the module table)."""
    reply = parse_reply(body)
    code = int_or_none(reply.get("code"))
    text = reply.get("text") if isinstance(reply.get("text"), str) else None
    if 200 <= http_status < 300:
        return Delivered(int_or_none(reply.get("ackId")), http_status)
    invalid = int_or_none(reply.get("invalid-event-number"))
    what = f"HTTP {http_status}" + (f", code {code}" if code is not None else "")
    reason = f"{what}, {text}" if text else what
    if http_status == 413:
        return TooLarge(reason, http_status, code, invalid)
    if code in TOKEN_CODES or 300 <= http_status < 400 or http_status in (401, 403, 404):
        return ConfigFault(reason, http_status, code, location, invalid)
    if code in RETRY_CODES or http_status >= 500 or http_status in RETRY_HTTP:
        return Retryable(reason, parse_retry_after(retry_after), http_status, code, invalid)
    if code in EVENT_CODES:
        return Rejected(reason, http_status, code, invalid)
    # Any other 4xx: no HEC code (a load balancer's or another receiver's answer, e.g. Fluent
    # Bit's "400 invalid HTTP endpoint") or an unknown one says nothing about single events.
    return ConfigFault(reason, http_status, code, location, invalid)


def config_hint(outcome: ConfigFault, key: str, path: str) -> str:
    """What the operator should do about a configuration fault."""
    code, status = outcome.hec_code, outcome.http_status
    if code in (1, 22):
        return "the token is disabled in Splunk: enable it (Settings > Data inputs > HEC)"
    if code in TOKEN_CODES or status in (401, 403):
        return f"the token was refused: check {key}.token and the token in Splunk"
    if 300 <= status < 400:
        target = f" to {outcome.location}" if outcome.location else ""
        return (
            f"HEC redirects{target}; the sidecar never follows redirects (the token would "
            f"follow): put the final https:// URL in {key}.endpoints"
        )
    if status == 404 or status == 400:
        return f"the endpoint or path is wrong: check {key}.endpoints and {key}.path ({path})"
    return f"check {key}.endpoints, {key}.path and the proxy or load balancer in front of HEC"
