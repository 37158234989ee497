"""Rate-limit response headers -> the `ratelimit_*` and `retry_after_secs` event fields (pure).

Header names arrive lower-cased. Values are parsed tolerantly: an empty, `-` or garbage value is
None, and a comma list (nginx writes one value per upstream attempt, e.g. `12, 40`) yields its last
parseable value, i.e. the attempt that produced the response. Nothing here raises.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

KEYS = (
    "ratelimit_limit_requests",
    "ratelimit_remaining_requests",
    "ratelimit_reset_requests_secs",
    "ratelimit_limit_tokens",
    "ratelimit_remaining_tokens",
    "ratelimit_reset_tokens_secs",
    "ratelimit_remaining_requests_pct",
    "ratelimit_remaining_tokens_pct",
    "retry_after_secs",
)

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|h|m|s)")
_UNIT_SECS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


_UNIT_ENDS = ("s", "m", "h")  # the last letter of every unit of _DURATION_PART
Number = int | float
_BOUND = 1 << 53  # the largest integer a double holds exactly


def _values(raw: str | None) -> list[str]:
    """Candidate values of a header: the whole value, then a comma list's items, last first.

    The whole value comes first because an HTTP-date (`Wed, 21 Oct 2015 07:28:00 GMT`) has a comma.
    """
    if raw is None:
        return []
    whole = str(raw).strip()
    parts = [p.strip() for p in whole.split(",")] if "," in whole else []
    return [p for p in [whole, *reversed(parts)] if p and p != "-"]


def _first(raw: str | None, parse: Callable[[str], Number | None]) -> Number | None:
    if raw is None:
        return None
    if "," not in raw:  # the common case: one value
        value = raw.strip()
        return parse(value) if value and value != "-" else None
    for value in _values(raw):
        result = parse(value)
        if result is not None:
            return result
    return None


@functools.lru_cache(maxsize=4096)  # pure, and header values repeat from request to request
def _count(value: str) -> int | None:
    """A non-negative integer count; `-1` (Azure: unknown) and garbage are None."""
    try:
        number = int(value)
    except ValueError:
        try:
            f = float(value)
        except ValueError:
            return None
        if not math.isfinite(f) or f != int(f):
            return None
        number = int(f)
    return number if number >= 0 else None


@functools.lru_cache(maxsize=4096)
def _go_duration(value: str) -> float | None:
    """Go duration (`6m0s`, `12ms`, `1h2m3.5s`, `0s`) or a bare number of seconds -> seconds.

    Bare numbers are Azure's: `x-ratelimit-reset-requests: 500`, `x-ratelimit-reset-tokens: 7`.
    Their unit is not documented (read as seconds here; 500 next to a 60 s renewal period hints it
    may be something else).
    """
    if value[-1:] not in _UNIT_ENDS:  # a Go duration ends with its unit: no float does
        seconds = _seconds(value)
        if seconds is not None:
            return seconds
    pos = 0
    total = 0.0
    for match in _DURATION_PART.finditer(value):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _UNIT_SECS[match.group(2)]
        pos = match.end()
    if pos == 0 or pos != len(value) or not math.isfinite(total):
        return None
    return round(total, 6)


def _seconds(value: str) -> float | None:
    try:
        f = float(value)
    except ValueError:
        return None
    if not math.isfinite(f) or f < 0:
        return None
    return f


def _timestamp_from_now(value: str, now: float) -> float | None:
    """RFC 3339 timestamp (`2026-04-05T14:28:37Z`) -> seconds from `now`, never negative."""
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return _from_now(when, now)


def _from_now(when: datetime, now: float) -> float | None:
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    try:
        return round(max(0.0, when.timestamp() - now), 3)
    except (OverflowError, ValueError, OSError):
        return None


def _retry_after(value: str, now: float) -> float | None:
    """`retry-after`: delay-seconds, or an HTTP-date (-> seconds from `now`, never negative)."""
    seconds = _seconds(value)
    if seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    return _from_now(when, now)


def _pct(remaining: Number | None, limit: Number | None) -> float | None:
    if remaining is None or limit is None or limit <= 0:
        return None
    return round(min(100.0, max(0.0, remaining * 100 / limit)), 2)


def _anthropic_family(
    headers: Mapping[str, str], family: str, now: float
) -> tuple[Number | None, Number | None, Number | None]:
    prefix = f"anthropic-ratelimit-{family}-"
    return (
        _first(headers.get(prefix + "limit"), _count),
        _first(headers.get(prefix + "remaining"), _count),
        _first(headers.get(prefix + "reset"), lambda v: _timestamp_from_now(v, now)),
    )


def _has_family(headers: Mapping[str, str], prefix: str) -> bool:
    return any(headers.get(prefix + s) for s in ("limit", "remaining", "reset"))


def parse_ratelimits(
    headers: Mapping[str, str],
    *,
    provider: str | None,
    now: float,
    body_retry_after_secs: float | None = None,
) -> dict[str, int | float | None]:
    """The rate-limit fields of one response; every key of `KEYS`, None when unknown.

    - OpenAI / Azure: `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`; resets are Go
      durations (Azure: bare numbers, read as seconds); a limit of `-1` (Azure) is unknown.
    - Anthropic: `anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}`, resets are
      RFC 3339 timestamps turned into seconds from `now`. When the `tokens` family is missing
      (some responses carry only input-tokens / output-tokens), the `input-tokens` family fills
      the tokens fields. The output-tokens family is not reported.
    - `retry-after-ms` (milliseconds) wins over `retry-after` (seconds or an HTTP-date); with
      neither, `body_retry_after_secs` (e.g. Gemini's RetryInfo) is used. Anthropic sends
      `retry-after` on some 200s: it is reported, but it does not by itself mean throttled.
    - Gemini / Vertex send no rate-limit headers.

    Numbers come from free-form headers: one JSON and Splunk cannot hold exactly (beyond 2^53,
    NaN, infinite) is None.
    """
    h = headers
    anthropic = provider == "anthropic" or (
        provider not in ("openai", "azure")
        and not _has_family(h, "x-ratelimit-")
        and any(k.startswith("anthropic-ratelimit-") for k in h)
    )
    if anthropic:
        lim_r, rem_r, reset_r = _anthropic_family(h, "requests", now)
        token_family = "tokens"
        if not _has_family(h, "anthropic-ratelimit-tokens-") and _has_family(
            h, "anthropic-ratelimit-input-tokens-"
        ):
            token_family = "input-tokens"
        lim_t, rem_t, reset_t = _anthropic_family(h, token_family, now)
    else:
        lim_r = _first(h.get("x-ratelimit-limit-requests"), _count)
        rem_r = _first(h.get("x-ratelimit-remaining-requests"), _count)
        reset_r = _first(h.get("x-ratelimit-reset-requests"), _go_duration)
        lim_t = _first(h.get("x-ratelimit-limit-tokens"), _count)
        rem_t = _first(h.get("x-ratelimit-remaining-tokens"), _count)
        reset_t = _first(h.get("x-ratelimit-reset-tokens"), _go_duration)

    retry_ms = _first(h.get("retry-after-ms"), _seconds)
    if retry_ms is not None:
        retry: Number | None = round(retry_ms / 1000, 6)
    else:
        retry = _first(h.get("retry-after"), lambda v: _retry_after(v, now))
    if retry is None and body_retry_after_secs is not None and body_retry_after_secs >= 0:
        retry = float(body_retry_after_secs)

    limits = {
        "ratelimit_limit_requests": lim_r,
        "ratelimit_remaining_requests": rem_r,
        "ratelimit_reset_requests_secs": reset_r,
        "ratelimit_limit_tokens": lim_t,
        "ratelimit_remaining_tokens": rem_t,
        "ratelimit_reset_tokens_secs": reset_t,
        "ratelimit_remaining_requests_pct": _pct(rem_r, lim_r),
        "ratelimit_remaining_tokens_pct": _pct(rem_t, lim_t),
        "retry_after_secs": retry,
    }
    for k, v in limits.items():  # every value is None, an int or a float here
        if v is not None and not -_BOUND < v < _BOUND:  # also NaN and infinities
            limits[k] = None
    return limits
