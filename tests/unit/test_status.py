from __future__ import annotations

import pytest

from sidecar.enrich.status import classify
from sidecar.types import ParsedBody


def pb(**kw: object) -> ParsedBody:
    return ParsedBody(**kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("http", "parsed", "end", "completion", "expected"),
    [
        (200, pb(is_stream=True, terminal_seen=True), "complete", "OK", ("ok", None)),
        # SDKs close right after [DONE]: nginx says client_closed, the stream is still complete
        (200, pb(is_stream=True, terminal_seen=True), "client_closed", "", ("ok", None)),
        (499, pb(), "client_closed", "", ("cancelled", "client_closed")),
        (200, pb(is_stream=True), "client_closed", "", ("cancelled", "client_closed")),
        (200, pb(is_stream=True), None, "OK", ("cancelled", "client_closed")),
        (200, pb(is_stream=True), "upstream_error", "OK", ("error", "upstream_error")),
        (
            429,
            pb(error_type="tokens", error_code="rate_limit_exceeded"),
            "complete",
            "OK",
            ("rate_limited", "tokens"),
        ),
        (
            200,
            pb(is_stream=True, error_type="rate_limit_error"),
            "complete",
            "OK",
            ("rate_limited", "rate_limit_error"),
        ),
        (
            400,
            pb(error_type="RESOURCE_EXHAUSTED", error_http_status=429),
            "complete",
            "OK",
            ("rate_limited", "RESOURCE_EXHAUSTED"),
        ),
        (504, pb(), "complete", "OK", ("timeout", "gateway_timeout")),
        (500, pb(error_type="server_error"), "complete", "OK", ("error", "server_error")),
        (502, pb(), "complete", "OK", ("error", "http_502")),
        (529, pb(error_type="overloaded_error"), "complete", "OK", ("error", "overloaded_error")),
        (
            401,
            pb(error_type="invalid_request_error"),
            "complete",
            "OK",
            ("client_error", "invalid_request_error"),
        ),
        (
            200,
            pb(is_stream=True, terminal_seen=True, error_type="overloaded_error"),
            "complete",
            "OK",
            ("error", "overloaded_error"),
        ),
        (200, pb(is_stream=False, terminal_seen=True), "complete", "OK", ("ok", None)),
        (None, pb(is_stream=True, terminal_seen=True), "complete", None, ("ok", None)),
    ],
)
def test_classify(http, parsed, end, completion, expected) -> None:
    assert classify(http, parsed, end=end, request_completion=completion) == expected


@pytest.mark.parametrize(
    ("http", "completion", "expected"),
    [
        (200, "OK", ("ok", None)),  # an access-log-only stream is not "cut": it was never seen
        (200, None, ("ok", None)),  # Caddy: no request_completion
        (200, "", ("cancelled", "client_closed")),
        (429, None, ("rate_limited", "rate_limited")),
        (500, None, ("error", "http_500")),
    ],
)
def test_classify_without_body(http, completion, expected) -> None:
    got = classify(
        http, pb(is_stream=True), end=None, request_completion=completion, body_seen=False
    )
    assert got == expected


def test_the_common_request_shortcut_agrees_with_the_rules_everywhere() -> None:
    """`classify` answers a 200 whose stream ended (terminal seen, no error) without walking
    the rules: on every combination of the inputs the rules read, it gives what they give."""
    import itertools

    from sidecar.enrich.status import _by_rules

    kinds = [None, "rate_limit_error", "tokens", "timeout", "server_error", "Deadline_Exceeded"]
    n = 0
    for http, err, code, ehs, terminal, stream, end, completion, seen in itertools.product(
        [None, 200, 201, 408, 429, 499, 500, 504, 529, 400],
        kinds,
        kinds,
        [None, 429, 500],
        [False, True],
        [False, True],
        [None, "complete", "client_closed", "upstream_error", "upstream_closed"],
        [None, "", "OK"],
        [False, True],
    ):
        parsed = pb(
            error_type=err,
            error_code=code,
            error_http_status=ehs,
            terminal_seen=terminal,
            is_stream=stream,
        )
        got = classify(http, parsed, end=end, request_completion=completion, body_seen=seen)
        assert got == _by_rules(http, parsed, end, completion, seen)
        n += http == 200 and terminal and seen and err is code is ehs is None
    assert n == 30  # the shortcut's cases are among them
