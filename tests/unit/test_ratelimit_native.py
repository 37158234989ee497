"""The C twin of `parse_ratelimits` (`sidecar.enrich._ratelimit`) gives the pure path's dict.

It reads the usual forms only (counts of plain digits, one-part Go durations, `...Z` times, no
retry header) and declines anything else; whatever it returns must be the pure path's result,
value for value and type for type. Checked over hostile header values and times of `now`."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.enrich import ratelimit as R
from tests.leaks import grown_bytes

pytestmark = pytest.mark.skipif(R._ratelimit is None, reason="C extension not built here")

OPENAI = {
    "x-ratelimit-limit-requests": "5000",
    "x-ratelimit-remaining-requests": "4964",
    "x-ratelimit-reset-requests": "432ms",
    "x-ratelimit-limit-tokens": "4000000",
    "x-ratelimit-remaining-tokens": "3954047",
    "x-ratelimit-reset-tokens": "1.5s",
}
ANTHROPIC = {
    "anthropic-ratelimit-requests-limit": "4000",
    "anthropic-ratelimit-requests-remaining": "3974",
    "anthropic-ratelimit-requests-reset": "2026-03-02T09:00:00Z",
    "anthropic-ratelimit-tokens-limit": "480000",
    "anthropic-ratelimit-tokens-remaining": "478000",
    "anthropic-ratelimit-tokens-reset": "2026-03-02T09:00:01Z",
}
NOW = 1772442000.4567


def both(headers: Any, provider: str | None, now: Any, body: Any = None) -> tuple[Any, Any]:
    native = R._ratelimit
    try:
        c = read(headers, provider, now, body)
        R._ratelimit = None
        pure = read(headers, provider, now, body)
    finally:
        R._ratelimit = native
    return c, pure


def read(headers: Any, provider: str | None, now: Any, body: Any) -> dict[str, Any]:
    """`parse_ratelimits`' dict; set in an event (`into`), the same values in their places and
    nothing else changed."""
    out = R.parse_ratelimits(headers, provider=provider, now=now, body_retry_after_secs=body)
    event = {"before": 1, **dict.fromkeys(R.KEYS, "unset"), "after": 2}
    got = R.parse_ratelimits(
        headers, provider=provider, now=now, body_retry_after_secs=body, into=event
    )
    assert got is event
    assert list(event) == ["before", *R.KEYS, "after"]
    assert (event["before"], event["after"]) == (1, 2)
    assert_same({k: event[k] for k in R.KEYS}, out)
    return out


def assert_same(c: dict[str, Any], pure: dict[str, Any]) -> None:
    assert list(c) == list(pure) == list(R.KEYS)
    for k in R.KEYS:
        a, b = c[k], pure[k]
        assert type(a) is type(b) and (a == b or (a != a and b != b)), (k, a, b)


def test_the_usual_forms_are_read_in_c() -> None:
    for headers, provider, kinds, names in (
        (OPENAI, "openai", R._GENERIC_KINDS, R._GENERIC_NAMES),
        (ANTHROPIC, "anthropic", R._ANTHROPIC_KINDS, R._ANTHROPIC_NAMES[R._ANTHROPIC_TOKENS]),
    ):
        got = R._ratelimit.limits(headers, names, kinds, R.KEYS, NOW)
        assert got is not None
        assert_same(got, both(headers, provider, NOW)[1])
    got = R._ratelimit.limits(OPENAI, R._GENERIC_NAMES, R._GENERIC_KINDS, R.KEYS, NOW)
    assert got["ratelimit_reset_requests_secs"] == 0.432
    assert got["ratelimit_remaining_requests_pct"] == round(4964 * 100 / 5000, 2)
    got = R._ratelimit.limits(
        ANTHROPIC, R._ANTHROPIC_NAMES[R._ANTHROPIC_TOKENS], R._ANTHROPIC_KINDS, R.KEYS, NOW
    )
    assert got["ratelimit_reset_requests_secs"] == 0.0  # in the past: 0
    assert got["ratelimit_reset_tokens_secs"] == round(1772442001 - NOW, 3)


@pytest.mark.parametrize(
    "value",
    [
        "", "-", " 5", "5 ", "-1", "+5", "1_000", "٣", "12, 40", "9" * 13, "9" * 14, "0", "007",
        "1.5", "1e3", "NaN", "inf", "432ms", "6m0s", "1.5s", "5m", "2h", ".5s", "5.s", "1us",
        "1µs", "12", "99999999999999999h", "0ms", "0.0000001s", "0.0078125s",
        "2026-03-02T09:00:00Z", "2026-02-29T09:00:00Z", "2024-02-29T00:00:00Z",
        "2026-13-01T00:00:00Z", "2026-04-31T00:00:00Z", "2026-03-02T24:00:00Z",
        "2026-03-02T09:60:00Z", "2026-03-02T09:00:60Z", "0000-01-01T00:00:00Z",
        "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2026-03-02T09:00:00+00:00",
        "2026-03-02 09:00:00Z", "2026-03-02T09:00:00.5Z", "Wed, 21 Oct 2015 07:28:00 GMT",
    ],
)  # fmt: skip
@pytest.mark.parametrize("headers,provider", [(OPENAI, "openai"), (ANTHROPIC, "anthropic")])
def test_each_value_in_each_place_is_the_pure_paths(
    value: str, headers: dict[str, str], provider: str
) -> None:
    for name in headers:
        h = dict(headers, **{name: value})
        assert_same(*both(h, provider, NOW))
        h.pop(name)  # absent
        assert_same(*both(h, provider, NOW))


@pytest.mark.parametrize(
    "now", [0.0, -0.0, 1e300, -1e300, math.inf, -math.inf, math.nan, NOW, 1772442001.0, 5]
)
def test_any_now(now: Any) -> None:
    for headers, provider in ((OPENAI, "openai"), (ANTHROPIC, "anthropic"), ({}, None)):
        assert_same(*both(headers, provider, now))


def test_retry_headers_and_body_retry_take_the_pure_path() -> None:
    for extra in ({"retry-after-ms": "250"}, {"retry-after": "3"}, {"retry-after": ""}):
        h = dict(OPENAI, **extra)
        names, kinds = R._GENERIC_NAMES, R._GENERIC_KINDS
        assert R._ratelimit.limits(h, names, kinds, R.KEYS, NOW) is None
        assert_same(*both(h, "openai", NOW))
    c, pure = both(OPENAI, "openai", NOW, body=2.5)
    assert_same(c, pure)
    assert c["retry_after_secs"] == 2.5


def test_families_anthropic_input_tokens_and_detection() -> None:
    input_only = {
        k.replace("-tokens-", "-input-tokens-"): v for k, v in ANTHROPIC.items() if "tokens" in k
    }
    h = {**{k: v for k, v in ANTHROPIC.items() if "requests" in k}, **input_only}
    for provider in ("anthropic", None, "gemini", "openai"):
        assert_same(*both(h, provider, NOW))
        assert_same(*both({**h, **OPENAI}, provider, NOW))
        assert_same(*both({}, provider, NOW))


def test_headers_that_are_not_a_plain_dict_of_str() -> None:
    class Headers(dict):
        pass

    assert_same(*both(Headers(OPENAI), "openai", NOW))
    h = dict(OPENAI, **{"x-ratelimit-limit-requests": 5})  # values are str: only declined here
    assert R._ratelimit.limits(h, R._GENERIC_NAMES, R._GENERIC_KINDS, R.KEYS, NOW) is None


def test_limits_refuses_bad_arguments() -> None:
    names, kinds = R._GENERIC_NAMES, R._GENERIC_KINDS
    with pytest.raises(TypeError):
        R._ratelimit.limits(list(OPENAI), names, kinds, R.KEYS, NOW)
    with pytest.raises(TypeError):
        R._ratelimit.limits(OPENAI, names[:7], kinds, R.KEYS, NOW)
    with pytest.raises(TypeError):
        R._ratelimit.limits(OPENAI, names, kinds, R.KEYS, 5)
    with pytest.raises(ValueError):
        R._ratelimit.limits(OPENAI, names, b"ccxccd", R.KEYS, NOW)
    with pytest.raises(TypeError):  # `into` must be a plain dict
        R._ratelimit.limits(OPENAI, names, kinds, R.KEYS, NOW, [])
    with pytest.raises(TypeError):
        R._ratelimit.limits(OPENAI, names, kinds, R.KEYS, NOW, {}, None)


def test_limits_into_an_event_sets_its_fields_or_leaves_it_as_it_was() -> None:
    names, kinds = R._GENERIC_NAMES, R._GENERIC_KINDS
    event = {"schema": "x"}
    assert R._ratelimit.limits(OPENAI, names, kinds, R.KEYS, NOW, event) is event
    assert event == {"schema": "x", **R._ratelimit.limits(OPENAI, names, kinds, R.KEYS, NOW)}
    event = {"schema": "x"}
    declined = dict(OPENAI, **{"retry-after": "3"})
    assert R._ratelimit.limits(declined, names, kinds, R.KEYS, NOW, event) is None
    assert event == {"schema": "x"}


VALUE = st.one_of(
    st.integers(min_value=-5, max_value=10**16).map(str),
    st.floats(allow_nan=False, min_value=0, max_value=1e6).map(lambda f: f"{f}"),
    st.tuples(
        st.from_regex(r"[0-9]{1,6}(\.[0-9]{1,6})?", fullmatch=True),
        st.sampled_from(["ms", "s", "m", "h", "us", ""]),
    ).map("".join),
    st.datetimes().map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")),
    st.text(max_size=6),
)


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(st.sampled_from([*OPENAI, *ANTHROPIC]), VALUE, max_size=8),
    st.sampled_from(["openai", "anthropic", None]),
    st.floats(allow_nan=True, allow_infinity=True) | st.just(NOW),
)
def test_any_headers_the_pure_paths(h: dict[str, str], provider: str | None, now: float) -> None:
    assert_same(*both(h, provider, now))


def test_limits_does_not_leak() -> None:

    cases = [
        (OPENAI, R._GENERIC_NAMES, R._GENERIC_KINDS),
        (ANTHROPIC, R._ANTHROPIC_NAMES[R._ANTHROPIC_TOKENS], R._ANTHROPIC_KINDS),
        (dict(OPENAI, **{"retry-after": "1"}), R._GENERIC_NAMES, R._GENERIC_KINDS),
        (dict(OPENAI, **{"x-ratelimit-limit-tokens": "x"}), R._GENERIC_NAMES, R._GENERIC_KINDS),
    ]

    def calls() -> None:
        for h, names, kinds in cases:
            R._ratelimit.limits(h, names, kinds, R.KEYS, NOW)
            R._ratelimit.limits(h, names, kinds, R.KEYS, NOW, dict.fromkeys(R.KEYS))

    assert grown_bytes(calls, warm=100) < 10_000
