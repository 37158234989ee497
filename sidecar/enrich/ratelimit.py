"""Rate-limit response headers -> the `ratelimit_*` and `retry_after_secs` event fields (pure).

Header names arrive lower-cased. Values are parsed tolerantly: an empty, `-` or garbage value is
None, and a comma list (nginx writes one value per upstream attempt, e.g. `12, 40`) yields its last
parseable value, i.e. the attempt that produced the response. Nothing here raises.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from sidecar import native

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
_BOUND_F = float(_BOUND)  # float.__gt__ compares exactly with any int, and is False for NaN


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


def _pct(remaining: Number | None, limit: Number | None) -> float | None:
    if remaining is None or limit is None or limit <= 0:
        return None
    try:
        pct = remaining * 100 / limit
    except OverflowError:  # a count of hundreds of digits over a small limit
        return None
    return round(min(100.0, max(0.0, pct)), 2)


def _epoch(value: str) -> float | None:
    """RFC 3339 timestamp (`2026-04-05T14:28:37Z`; UTC when it has no zone) -> epoch seconds."""
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return _timestamp(when)


def _timestamp(when: datetime) -> float | None:
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    try:
        return when.timestamp()
    except (OverflowError, ValueError, OSError):
        return None


def _retry(value: str) -> tuple[bool, float] | None:
    """`retry-after`: (False, delay-seconds), or (True, epoch seconds) of an HTTP-date."""
    seconds = _seconds(value)
    if seconds is not None:
        return False, seconds
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    at = _timestamp(when)
    return None if at is None else (True, at)


def _from_now(at: float | None, now: float) -> float | None:
    return None if at is None else round(max(0.0, at - now), 3)


class _Memo(dict):
    """Raw header value -> `_first(value, parse)`: header values repeat from request to request
    (limits, resets), so most reads are one dict lookup in C. Absent (None) reads None. Bounded:
    short values only, and emptied when full."""

    MAX_ENTRIES = 4096
    MAX_CHARS = 64  # longer values are parsed every time, never kept

    def __init__(self, parse: Callable[[str], object]) -> None:
        super().__init__({None: None})
        self.parse = parse

    def __missing__(self, raw: str) -> object:
        result = _first(raw, self.parse)  # only on a miss: the value's first read
        if len(raw) <= self.MAX_CHARS:
            if len(self) >= self.MAX_ENTRIES:
                self.clear()
                self[None] = None
            self[raw] = result
        return result


_COUNTS = _Memo(_count)
_DURATIONS = _Memo(_go_duration)
_SECONDS = _Memo(_seconds)
_EPOCHS = _Memo(_epoch)
_RETRIES = _Memo(_retry)


def _family(prefix: str) -> tuple[str, str, str]:
    """The limit, remaining and reset header names of a family."""
    return (prefix + "limit", prefix + "remaining", prefix + "reset")


_GENERIC = _family("x-ratelimit-")
_ANTHROPIC_REQUESTS = _family("anthropic-ratelimit-requests-")
_ANTHROPIC_TOKENS = _family("anthropic-ratelimit-tokens-")
_ANTHROPIC_INPUT_TOKENS = _family("anthropic-ratelimit-input-tokens-")
_ratelimit = native.load("sidecar.enrich._ratelimit")  # the C twin of the usual header forms
# The header names `_ratelimit.limits` reads: the requests family, the tokens family, then the
# retry headers; and how it reads each family's limit, remaining and reset (a count, a Go
# duration, an RFC 3339 time).
_RETRY_NAMES = ("retry-after-ms", "retry-after")
_GENERIC_NAMES = (
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
    *_RETRY_NAMES,
)
_GENERIC_KINDS = b"ccdccd"
_ANTHROPIC_KINDS = b"ccecce"
# `_ratelimit.limits`' names for each tokens family of Anthropic's
_ANTHROPIC_NAMES = {
    tokens: (*_ANTHROPIC_REQUESTS, *tokens, *_RETRY_NAMES)
    for tokens in (_ANTHROPIC_TOKENS, _ANTHROPIC_INPUT_TOKENS)
}


def _anthropic_family(
    headers: Mapping[str, str], names: tuple[str, str, str], now: float
) -> tuple[Number | None, Number | None, Number | None]:
    get = headers.get
    limit, remaining, reset = names
    return _COUNTS[get(limit)], _COUNTS[get(remaining)], _from_now(_EPOCHS[get(reset)], now)


def _has_family(headers: Mapping[str, str], names: tuple[str, str, str]) -> bool:
    get = headers.get
    return bool(get(names[0]) or get(names[1]) or get(names[2]))


def parse_ratelimits(
    headers: Mapping[str, str],
    *,
    provider: str | None,
    now: float,
    body_retry_after_secs: float | None = None,
    into: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The rate-limit fields of one response; every key of `KEYS`, None when unknown. With
    `into` (the event being built), they are set in it and `into` is returned.

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
        and not _has_family(h, _GENERIC)
        and any(k.startswith("anthropic-ratelimit-") for k in h)
    )
    if anthropic:
        tokens = _ANTHROPIC_TOKENS
        if not _has_family(h, tokens) and _has_family(h, _ANTHROPIC_INPUT_TOKENS):
            tokens = _ANTHROPIC_INPUT_TOKENS
        names, kinds = _ANTHROPIC_NAMES[tokens], _ANTHROPIC_KINDS
    else:
        names, kinds = _GENERIC_NAMES, _GENERIC_KINDS
    if (
        _ratelimit is not None
        and body_retry_after_secs is None
        and type(now) is float
        and type(h) is dict
        and (into is None or type(into) is dict)  # as C takes it
    ):
        limits = (
            _ratelimit.limits(h, names, kinds, KEYS, now)
            if into is None
            else _ratelimit.limits(h, names, kinds, KEYS, now, into)
        )
        if limits is not None:
            return limits  # the usual forms, read in C as below
    if anthropic:
        lim_r, rem_r, reset_r = _anthropic_family(h, _ANTHROPIC_REQUESTS, now)
        lim_t, rem_t, reset_t = _anthropic_family(h, tokens, now)
    else:
        lim_r, rem_r, reset_r, lim_t, rem_t, reset_t = map(h.get, _GENERIC_NAMES[:6])
        lim_r, rem_r, reset_r = _COUNTS[lim_r], _COUNTS[rem_r], _DURATIONS[reset_r]
        lim_t, rem_t, reset_t = _COUNTS[lim_t], _COUNTS[rem_t], _DURATIONS[reset_t]

    retry_ms = _SECONDS[h.get("retry-after-ms")]
    if retry_ms is not None:
        retry: Number | None = round(retry_ms / 1000, 6)
    else:
        retry_at = _RETRIES[h.get("retry-after")]
        if retry_at is None:
            retry = None
        else:
            is_date, value = retry_at
            retry = _from_now(value, now) if is_date else value
    if retry is None and body_retry_after_secs is not None and body_retry_after_secs >= 0:
        retry = float(body_retry_after_secs)

    pct_r = _pct(rem_r, lim_r)
    pct_t = _pct(rem_t, lim_t)
    limits = {
        "ratelimit_limit_requests": lim_r,
        "ratelimit_remaining_requests": rem_r,
        "ratelimit_reset_requests_secs": reset_r,
        "ratelimit_limit_tokens": lim_t,
        "ratelimit_remaining_tokens": rem_t,
        "ratelimit_reset_tokens_secs": reset_t,
        "ratelimit_remaining_requests_pct": pct_r,
        "ratelimit_remaining_tokens_pct": pct_t,
        "retry_after_secs": retry,
    }
    # Every value is None, an int or a float >= 0 (never NaN) here: one comparison in the
    # common case; a value out of range (or infinite) is refused one by one.
    top = max(
        lim_r or 0, rem_r or 0, lim_t or 0, rem_t or 0, reset_r or 0, reset_t or 0, retry or 0
    )
    if top >= _BOUND:
        for k, v in limits.items():
            if v is not None and not -_BOUND < v < _BOUND:  # also NaN and infinities
                limits[k] = None
    if into is None:
        return limits
    into.update(limits)
    return into
