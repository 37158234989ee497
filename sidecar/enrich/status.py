"""Classify the outcome of a request (event field `status`). Pure.

In order, the first rule that matches wins:

1. HTTP 499 (nginx: the client closed before any byte) -> cancelled.
2. HTTP 429, or a rate-limit error in the body (rate_limit_exceeded, rate_limit_error,
   RESOURCE_EXHAUSTED, insufficient_quota, code 429) -> rate_limited.
3. HTTP 504 or 408, or a timeout error in the body -> timeout.
4. HTTP 5xx (Anthropic's 529 overloaded included) -> error.
5. Other HTTP 4xx -> client_error.
6. A mid-stream error event, `response.failed`, an error body -> error.
7. A stream whose terminal event arrived (`[DONE]`, the usage chunk, `message_stop`, ...) -> ok,
   whatever the end record says (SDKs close the connection right after `[DONE]`).
8. A stream without its terminal event: end record `upstream_error`/`upstream_closed` -> error
   (the upstream broke it); otherwise (`client_closed`, `complete`, no end record) -> cancelled.
9. A body cut by the client (`client_closed`) without a terminal event -> cancelled.
10. Anything else -> ok.
"""

from __future__ import annotations

from sidecar.types import (
    STATUS_CANCELLED,
    STATUS_CLIENT_ERROR,
    STATUS_ERROR,
    STATUS_OK,
    STATUS_RATE_LIMITED,
    STATUS_TIMEOUT,
    ParsedBody,
)

RATE_LIMIT_ERRORS = frozenset(
    {
        "rate_limit_exceeded",
        "rate_limit_error",
        "resource_exhausted",
        "insufficient_quota",
        "tokens",
        "requests",
        "429",
        "too_many_requests",
    }
)
TIMEOUT_ERRORS = frozenset({"timeout_error", "deadline_exceeded", "timeout", "504"})
UPSTREAM_BROKEN = frozenset({"upstream_error", "upstream_closed"})
_OK: tuple[str, None] = (STATUS_OK, None)


def _is(kind: str | None, names: frozenset[str]) -> bool:
    return kind is not None and kind.lower() in names


def classify(
    http_status: int | None,
    parsed: ParsedBody,
    *,
    end: str | None,
    request_completion: str | None,
    body_seen: bool = True,
) -> tuple[str, str | None]:
    """Return (status, error_type). `error_type` is filled for every non-ok outcome we can name.

    `body_seen` False (an access-log-only source, or a body the body log never had): how the
    response ended is unknown, so only the access record's `request_completion` can say cancelled.
    """
    if (
        http_status == 200
        and parsed.terminal_seen
        and body_seen
        and parsed.error_type is None
        and parsed.error_code is None
        and parsed.error_http_status is None
    ):
        # The common request: no rule before 7 can match it, and rule 7 says ok
        # (tests/unit/test_status.py checks this against the rules on every combination).
        return _OK
    return _by_rules(http_status, parsed, end, request_completion, body_seen)


def _by_rules(
    http_status: int | None,
    parsed: ParsedBody,
    end: str | None,
    request_completion: str | None,
    body_seen: bool,
) -> tuple[str, str | None]:
    """The rules of the module doc, in order."""
    err = parsed.error_type
    code = parsed.error_code
    if http_status == 499:
        return STATUS_CANCELLED, "client_closed"
    rate = _is(err, RATE_LIMIT_ERRORS) or _is(code, RATE_LIMIT_ERRORS)
    if http_status == 429 or rate or parsed.error_http_status == 429:
        return STATUS_RATE_LIMITED, err or "rate_limited"
    timeout = _is(err, TIMEOUT_ERRORS) or _is(code, TIMEOUT_ERRORS)
    if http_status in (504, 408) or timeout:
        return STATUS_TIMEOUT, err or ("gateway_timeout" if http_status == 504 else "timeout")
    if http_status is not None and http_status >= 500:
        return STATUS_ERROR, err or f"http_{http_status}"
    if http_status is not None and 400 <= http_status < 500:
        return STATUS_CLIENT_ERROR, err or f"http_{http_status}"
    if err is not None:
        return STATUS_ERROR, err
    if not body_seen:
        return (
            (STATUS_CANCELLED, "client_closed") if request_completion == "" else (STATUS_OK, None)
        )
    if parsed.is_stream and not parsed.terminal_seen:
        if end in UPSTREAM_BROKEN:
            return STATUS_ERROR, end
        # The stream stopped before its terminal event: the client went away (or, with end
        # `complete`, the upstream ended the body early; the client still got a cut answer).
        return STATUS_CANCELLED, "client_closed" if end != "complete" else "stream_incomplete"
    if end == "client_closed" and not parsed.terminal_seen:
        return STATUS_CANCELLED, "client_closed"
    return STATUS_OK, None
