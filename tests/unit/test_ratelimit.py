"""Rate-limit headers -> event fields (the providers' documented headers, e.g.
https://platform.openai.com/docs/guides/rate-limits, and the fixtures' recorded headers)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.enrich import ratelimit
from sidecar.enrich.ratelimit import KEYS, parse_ratelimits

NOW = datetime(2026, 4, 5, 14, 28, 14, tzinfo=UTC).timestamp()


def parse(headers: dict[str, str], provider: str | None = "openai", **kw) -> dict:
    out = parse_ratelimits(headers, provider=provider, now=kw.pop("now", NOW), **kw)
    assert tuple(out) == KEYS
    return out


def pick(out: dict, *keys: str) -> tuple:
    return tuple(out[k] for k in keys)


REQ = ("ratelimit_limit_requests", "ratelimit_remaining_requests", "ratelimit_reset_requests_secs")
TOK = ("ratelimit_limit_tokens", "ratelimit_remaining_tokens", "ratelimit_reset_tokens_secs")
PCT = ("ratelimit_remaining_requests_pct", "ratelimit_remaining_tokens_pct")


def test_keys_are_the_schema_keys() -> None:
    assert KEYS == (
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
    assert set(parse({}).values()) == {None}


# --- OpenAI -----------------------------------------------------------------------------------


def test_openai_documented_table() -> None:
    out = parse(
        {
            "x-ratelimit-limit-requests": "60",
            "x-ratelimit-limit-tokens": "150000",
            "x-ratelimit-remaining-requests": "59",
            "x-ratelimit-remaining-tokens": "149984",
            "x-ratelimit-reset-requests": "1s",
            "x-ratelimit-reset-tokens": "6m0s",
        }
    )
    assert pick(out, *REQ) == (60, 59, 1.0)
    assert pick(out, *TOK) == (150000, 149984, 360.0)
    assert pick(out, *PCT) == (98.33, 99.99)
    assert out["retry_after_secs"] is None


def test_openai_fixture_headers() -> None:  # openai_chat_nousage_1.source.txt
    out = parse(
        {
            "x-ratelimit-limit-requests": "5000",
            "x-ratelimit-limit-tokens": "160000",
            "x-ratelimit-remaining-requests": "4999",
            "x-ratelimit-remaining-tokens": "159974",
            "x-ratelimit-reset-requests": "12ms",
            "x-ratelimit-reset-tokens": "9ms",
        }
    )
    assert pick(out, *REQ) == (5000, 4999, 0.012)
    assert pick(out, *TOK) == (160000, 159974, 0.009)
    assert pick(out, *PCT) == (99.98, 99.98)


@pytest.mark.parametrize(
    ("value", "secs"),
    [
        ("6m0s", 360.0),
        ("12ms", 0.012),
        ("9ms", 0.009),
        ("1s", 1.0),
        ("0s", 0.0),
        ("1h2m3.5s", 3723.5),
        ("1m30s", 90.0),
        ("2.5s", 2.5),
        ("1h", 3600.0),
        ("17m", 1020.0),
        ("500us", 0.0005),
        ("7", 7.0),  # bare number (Azure): seconds
        ("0", 0.0),
        ("", None),
        ("-", None),
        ("s", None),
        ("1x", None),
        ("1s garbage", None),
        ("-1s", None),
        ("soon", None),
    ],
)
def test_go_durations(value: str, secs: float | None) -> None:
    out = parse({"x-ratelimit-reset-tokens": value})
    assert out["ratelimit_reset_tokens_secs"] == secs


def test_retry_after_ms_wins_over_retry_after() -> None:
    headers = {"retry-after-ms": "1500", "retry-after": "2"}
    assert parse(headers)["retry_after_secs"] == 1.5
    assert parse({"retry-after": "2"})["retry_after_secs"] == 2.0
    assert parse({"retry-after-ms": "junk", "retry-after": "2"})["retry_after_secs"] == 2.0


def test_retry_after_http_date() -> None:
    later = "Sun, 05 Apr 2026 14:29:00 GMT"  # 46 s after NOW
    assert parse({"retry-after": later})["retry_after_secs"] == 46.0
    earlier = "Sun, 05 Apr 2026 14:00:00 GMT"
    assert parse({"retry-after": earlier})["retry_after_secs"] == 0.0


# --- Azure ------------------------------------------------------------------------------------


def test_azure_fixture_without_resets() -> None:  # azure_chat_nousage_1.source.txt
    out = parse(
        {
            "x-ratelimit-limit-requests": "300",
            "x-ratelimit-limit-tokens": "30000",
            "x-ratelimit-remaining-requests": "288",
            "x-ratelimit-remaining-tokens": "26744",
        },
        provider="azure",
    )
    assert pick(out, *REQ) == (300, 288, None)
    assert pick(out, *TOK) == (30000, 26744, None)
    assert pick(out, *PCT) == (96.0, 89.15)


def test_azure_bare_integer_resets() -> None:  # observed 2026-03, api-version 2024-02-01
    out = parse(
        {
            "x-ratelimit-reset-requests": "500",
            "x-ratelimit-reset-tokens": "7",
            "x-ratelimit-renewalperiod-requests": "60",
        },
        provider="azure",
    )
    assert (out["ratelimit_reset_requests_secs"], out["ratelimit_reset_tokens_secs"]) == (500, 7)


def test_azure_responses_minus_one_is_unknown() -> None:
    out = parse(
        {
            "x-ratelimit-limit-requests": "100",
            "x-ratelimit-remaining-requests": "99",
            "x-ratelimit-limit-tokens": "-1",
            "x-ratelimit-remaining-tokens": "-1",
            "x-ratelimit-reset-tokens": "0",
        },
        provider="azure",
    )
    assert pick(out, *TOK) == (None, None, 0.0)
    assert pick(out, *PCT) == (99.0, None)


def test_azure_429_retry_after_ms() -> None:
    out = parse({"retry-after-ms": "86400000", "retry-after": "86400"}, provider="azure")
    assert out["retry_after_secs"] == 86400.0


# --- Anthropic --------------------------------------------------------------------------------


def anthropic_headers(*families: str) -> dict[str, str]:
    values = {
        "requests": ("50", "49", "2026-04-05T14:28:15Z"),
        "tokens": ("480000", "478000", "2026-04-05T14:28:37Z"),
        "input-tokens": ("400000", "399000", "2026-04-05T14:28:40Z"),
        "output-tokens": ("80000", "79000", "2026-04-05T14:28:20Z"),
    }
    out = {}
    for fam in families:
        limit, remaining, reset = values[fam]
        out[f"anthropic-ratelimit-{fam}-limit"] = limit
        out[f"anthropic-ratelimit-{fam}-remaining"] = remaining
        out[f"anthropic-ratelimit-{fam}-reset"] = reset
    return out


def test_anthropic_all_twelve_headers() -> None:
    headers = anthropic_headers("requests", "tokens", "input-tokens", "output-tokens")
    out = parse(headers, provider="anthropic")
    assert pick(out, *REQ) == (50, 49, 1.0)
    assert pick(out, *TOK) == (480000, 478000, 23.0)  # the tokens family, not input-tokens
    assert pick(out, *PCT) == (98.0, 99.58)
    assert out["retry_after_secs"] is None


def test_anthropic_legacy_requests_and_tokens_only() -> None:
    out = parse(anthropic_headers("requests", "tokens"), provider="anthropic")
    assert pick(out, *REQ) == (50, 49, 1.0)
    assert pick(out, *TOK) == (480000, 478000, 23.0)


def test_anthropic_without_tokens_family_uses_input_tokens() -> None:
    out = parse(
        anthropic_headers("requests", "input-tokens", "output-tokens"), provider="anthropic"
    )
    assert pick(out, *TOK) == (400000, 399000, 26.0)


def test_anthropic_retry_after_on_a_200_without_requests_family() -> None:
    # openllmetry test_structured_outputs: tokens/input/output families and retry-after: 59
    headers = anthropic_headers("tokens", "input-tokens", "output-tokens") | {"retry-after": "59"}
    out = parse(headers, provider="anthropic")
    assert pick(out, *REQ) == (None, None, None)
    assert out["ratelimit_limit_tokens"] == 480000
    assert out["retry_after_secs"] == 59.0


def test_anthropic_reset_in_the_past_is_zero() -> None:
    later = NOW + 3600
    out = parse(anthropic_headers("requests"), provider="anthropic", now=later)
    assert out["ratelimit_reset_requests_secs"] == 0.0


def test_anthropic_detected_without_provider() -> None:
    out = parse(anthropic_headers("requests", "tokens"), provider=None)
    assert out["ratelimit_limit_requests"] == 50


@pytest.mark.parametrize("reset", ["", "-", "tomorrow", "2026-13-45T99:00:00Z", "12ms"])
def test_anthropic_bad_reset(reset: str) -> None:
    headers = anthropic_headers("requests") | {"anthropic-ratelimit-requests-reset": reset}
    out = parse(headers, provider="anthropic")
    assert pick(out, *REQ) == (50, 49, None)


# --- Gemini -----------------------------------------------------------------------------------


def test_gemini_body_retry_info() -> None:
    out = parse({}, provider="gemini", body_retry_after_secs=47.434392449)
    assert out["retry_after_secs"] == 47.434392449
    assert all(v is None for k, v in out.items() if k != "retry_after_secs")


def test_header_retry_after_wins_over_body() -> None:
    out = parse({"retry-after": "3"}, provider="vertex", body_retry_after_secs=38.601)
    assert out["retry_after_secs"] == 3.0


# --- bad values -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", None),
        ("-", None),
        ("garbage", None),
        ("12, 40", 40),  # nginx: one value per upstream attempt, the last one answered
        ("12,40", 40),
        ("40, garbage", 40),
        ("garbage, 40", 40),
        ("-, 40", 40),
        ("12, -", 12),
        (" 7 ", 7),
        ("1e3", 1000),
        ("1.5", None),
        ("1e400", None),
        ("nan", None),
        ("9" * 5000, None),
    ],
)
def test_bad_counts(value: str, expected: int | None) -> None:
    out = parse({"x-ratelimit-remaining-requests": value, "x-ratelimit-limit-requests": "100"})
    assert out["ratelimit_remaining_requests"] == expected


def test_nginx_comma_lists_everywhere() -> None:
    out = parse(
        {
            "x-ratelimit-reset-tokens": "1s, 6m0s",
            "retry-after": "12, 40",
            "x-ratelimit-limit-tokens": "100, 200",
            "x-ratelimit-remaining-tokens": "50, 150",
        }
    )
    assert out["ratelimit_reset_tokens_secs"] == 360.0
    assert out["retry_after_secs"] == 40.0
    assert out["ratelimit_remaining_tokens_pct"] == 75.0


def test_pct_edges() -> None:
    zero = parse({"x-ratelimit-limit-requests": "0", "x-ratelimit-remaining-requests": "0"})
    assert zero["ratelimit_remaining_requests_pct"] is None
    over = parse({"x-ratelimit-limit-requests": "10", "x-ratelimit-remaining-requests": "12"})
    assert over["ratelimit_remaining_requests_pct"] == 100.0
    empty = parse({"x-ratelimit-limit-requests": "10", "x-ratelimit-remaining-requests": "0"})
    assert empty["ratelimit_remaining_requests_pct"] == 0.0
    no_limit = parse({"x-ratelimit-remaining-requests": "5"})
    assert no_limit["ratelimit_remaining_requests_pct"] is None


@pytest.mark.parametrize(
    "value", ["", "-", "soon", "-5", "nan", "inf", "Mon, 99 Foo 99999 99:99:99 GMT", "1e999"]
)
def test_bad_retry_after(value: str) -> None:
    assert parse({"retry-after": value})["retry_after_secs"] is None
    assert parse({"retry-after-ms": value})["retry_after_secs"] is None


HEADER_NAMES = [
    *(
        f"x-ratelimit-{a}-{b}"
        for a in ("limit", "remaining", "reset")
        for b in ("requests", "tokens")
    ),
    *(
        f"anthropic-ratelimit-{f}-{a}"
        for f in ("requests", "tokens", "input-tokens")
        for a in ("limit", "remaining", "reset")
    ),
    "retry-after",
    "retry-after-ms",
]


@given(
    headers=st.dictionaries(st.sampled_from(HEADER_NAMES), st.text(max_size=40), max_size=12),
    provider=st.sampled_from([None, "openai", "azure", "anthropic", "gemini", "other"]),
    body_retry=st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False)),
)
def test_never_raises(headers: dict[str, str], provider: str | None, body_retry) -> None:
    out = parse_ratelimits(headers, provider=provider, now=NOW, body_retry_after_secs=body_retry)
    assert tuple(out) == KEYS
    for key in PCT:
        assert out[key] is None or 0 <= out[key] <= 100
    for key in ("ratelimit_reset_requests_secs", "ratelimit_reset_tokens_secs"):
        assert out[key] is None or out[key] >= 0


# --- the memo tables (header value -> parsed value) ---------------------------------------------

MEMOS = [
    (ratelimit._COUNTS, ratelimit._count),
    (ratelimit._DURATIONS, ratelimit._go_duration),
    (ratelimit._SECONDS, ratelimit._seconds),
    (ratelimit._EPOCHS, ratelimit._epoch),
    (ratelimit._RETRIES, ratelimit._retry),
]


@given(
    raw=st.one_of(
        st.text(max_size=30),
        st.sampled_from(["12, 40", "1s", "6m0s", "-1", "2026-04-05T14:28:37Z", "-", "", " 7 "]),
    )
)
def test_memo_reads_are_first_reads(raw: str) -> None:
    for memo, parse in MEMOS:
        for _ in range(2):  # a miss, then a hit
            got, want = memo[raw], ratelimit._first(raw, parse)
            assert got == want or (got != got and want != want)
        assert memo[None] is None


def test_time_relative_values_follow_now() -> None:
    """What the tables keep does not depend on `now`: resets and HTTP-date retries do."""
    headers = {
        "anthropic-ratelimit-requests-reset": "2026-04-05T14:28:37Z",
        "retry-after": "Sun, 05 Apr 2026 14:28:44 GMT",
    }
    first = parse(headers, provider="anthropic")
    later = parse(headers, provider="anthropic", now=NOW + 20)
    assert pick(first, "ratelimit_reset_requests_secs", "retry_after_secs") == (23.0, 30.0)
    assert pick(later, "ratelimit_reset_requests_secs", "retry_after_secs") == (3.0, 10.0)


def test_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    memo = ratelimit._Memo(ratelimit._count)
    monkeypatch.setattr(ratelimit._Memo, "MAX_ENTRIES", 10)
    for i in range(100):
        assert memo[f" {i}"] == i
    assert len(memo) <= 10 and memo[None] is None
    long = "1" * (ratelimit._Memo.MAX_CHARS + 1)
    assert memo[long] == int(long) and long not in memo


def test_huge_remaining_over_small_limit() -> None:
    """A count of hundreds of digits: the percentage is unknown, not an error."""
    out = parse({"x-ratelimit-limit-requests": "1", "x-ratelimit-remaining-requests": "9" * 400})
    assert pick(out, *REQ, PCT[0]) == (1, None, None, None)


def test_values_at_the_bound() -> None:
    big = str(2**53)
    out = parse({"x-ratelimit-limit-tokens": big, "x-ratelimit-remaining-tokens": str(2**53 - 1)})
    assert pick(out, "ratelimit_limit_tokens", "ratelimit_remaining_tokens", PCT[1]) == (
        None,
        2**53 - 1,
        100.0,
    )
    out = parse({"x-ratelimit-reset-tokens": "99999999999999999h", "retry-after": "1e300"})
    assert pick(out, "ratelimit_reset_tokens_secs", "retry_after_secs") == (None, None)
    assert parse({}, body_retry_after_secs=float("inf"))["retry_after_secs"] is None


def regex_duration(value: str) -> float | None:
    """`_go_duration` as the regex reads it (the rule its one-part shortcut must keep)."""
    if value[-1:] not in ("s", "m", "h"):
        seconds = ratelimit._seconds(value)
        if seconds is not None:
            return seconds
    pos, total = 0, 0.0
    for match in ratelimit._DURATION_PART.finditer(value):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * ratelimit._UNIT_SECS[match.group(2)]
        pos = match.end()
    if pos == 0 or pos != len(value) or not math.isfinite(total):
        return None
    return round(total, 6)


@settings(max_examples=800)
@given(
    st.text(alphabet="0123456789.٣²e+-", max_size=8).flatmap(
        lambda n: st.sampled_from(
            ["", "s", "ms", "ns", "us", "µs", "μs", "m", "h", "xs", "hs"]
        ).map(lambda u: n + u)
    )
    | st.sampled_from(["1" * 400 + "s", "5.ms", ".5s", ".s", "s", "ms", "6m0s", "1.5.5s"])
)
def test_go_duration_shortcut_is_the_regex(value: str) -> None:
    if not value:
        return
    got, want = ratelimit._go_duration(value), regex_duration(value)
    assert got == want or (got != got and want != want)


def test_the_c_twin_is_used_unless_told_not_to() -> None:
    import os

    pure = os.environ.get("LLM_HEC_SIDECAR_PURE", "") not in ("", "0")
    if pure:
        assert ratelimit._ratelimit is None
    elif os.environ.get("CI"):  # CI installs with a compiler
        assert ratelimit._ratelimit is not None
