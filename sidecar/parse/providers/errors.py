"""Error envelopes and in-stream error events of every provider.

Shapes understood (each found as a whole body, as an SSE payload, or wrapped in a JSON array):
- OpenAI / Azure / OpenAI-compatible: `{"error": {"type", "code", "message", "param"}}`; `code` may
  be a string ("rate_limit_exceeded", Azure "429") or a number (OpenRouter 400); Groq adds
  `status_code`.
- OpenAI Responses error event: `{"type": "error", "code", "message", "param"}`.
- Anthropic: `{"type": "error", "error": {"type": "rate_limit_error", ...}, "request_id": ...}`.
- google.rpc (Gemini, Vertex): `{"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
  "details": [{"@type": ".../google.rpc.RetryInfo", "retryDelay": "47s"}, ...]}}`.

`error_type` gets the type or gRPC status; when a body has neither, a non-numeric code, else
"rate_limit_exceeded" for code 429, else "error" (so an error is never left unnamed).
OpenAI's rate-limit dimension types ("tokens", "requests") give way to the code
("rate_limit_exceeded"), which is what the type means.
"""

from __future__ import annotations

from typing import Any

from sidecar.parse.providers._common import as_dict, as_str
from sidecar.types import ParsedBody

# error_type / error_code values that mean "throttled" (HTTP 429 class), across providers.
RATE_LIMIT_ERRORS = frozenset(
    {
        "rate_limit_exceeded",
        "rate_limit_error",
        "resource_exhausted",
        "insufficient_quota",
        "429",
        "too_many_requests",
        "tokens",
        "requests",
    }
)

_DIMENSION_TYPES = frozenset({"tokens", "requests", "tokens_usage_based", "requests_usage_based"})


def is_rate_limit_error(
    error_type: str | None, error_code: str | None = None, http_status: int | None = None
) -> bool:
    """Whether an error (as `parse_body` reports it) is a rate-limit or quota error."""
    if http_status == 429:
        return True
    return any(v is not None and v.lower() in RATE_LIMIT_ERRORS for v in (error_type, error_code))


def parse_duration_secs(value: Any) -> float | None:
    """A protobuf duration ("47s", "38.601s", {"seconds": 47, "nanos": 0}) in seconds."""
    if type(value) is str:
        text = value.strip()
        if text.endswith("s"):
            text = text[:-1]
        try:
            secs = float(text)
        except ValueError:
            return None
        return secs if secs >= 0 and secs == secs and secs != float("inf") else None
    if type(value) is dict:
        seconds = value.get("seconds", 0)
        nanos = value.get("nanos", 0)
        try:
            return float(seconds) + float(nanos) / 1e9
        except (TypeError, ValueError):
            return None
    return None


def _http_status(code: Any) -> int | None:
    if type(code) is int and 100 <= code <= 599:
        return code
    if type(code) is str and len(code) == 3 and code.isdigit() and 100 <= int(code) <= 599:
        return int(code)
    return None


def _code_str(code: Any) -> str | None:
    if type(code) is str:
        return code or None
    if type(code) is int:
        return str(code)
    return None


def _retry_after(details: Any) -> float | None:
    if type(details) is not list:
        return None
    for detail in details:
        if type(detail) is dict and str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            return parse_duration_secs(detail.get("retryDelay"))
    return None


def error_object(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The error inside a decoded payload, or None when the payload is not an error.

    Returns the dict holding `type`/`code`/`status`: the nested `error` object when present,
    else the payload itself when it is a top-level `{"type": "error", ...}` event.
    """
    err = obj.get("error")
    if type(err) is dict:
        return err
    if type(err) is str and err:
        return {"message": err}
    if obj.get("type") == "error":
        return obj
    return None


def apply_error(pb: ParsedBody, obj: dict[str, Any]) -> bool:
    """Fill the error fields of `pb` from a decoded payload; False when it holds no error.

    The first error found wins: a later, vaguer error never overwrites it.
    """
    err = error_object(obj)
    if err is None:
        return False
    if pb.error_type is not None:
        return True
    code = err.get("code")
    code_s = _code_str(code)
    etype = as_str(err.get("type")) if err is not obj else None
    status = as_str(err.get("status"))
    if etype in _DIMENSION_TYPES and code_s and not code_s.isdigit():
        etype = code_s
    if etype is None or etype == "error":
        etype = status
    http = _http_status(err.get("status_code")) or _http_status(code)
    if etype is None:
        if code_s and not code_s.isdigit():
            etype = code_s
        elif http == 429:
            etype = "rate_limit_exceeded"
        else:
            etype = "error"
    pb.error_type = etype
    pb.error_code = code_s
    if http is not None:
        pb.error_http_status = http
    retry = _retry_after(err.get("details"))
    if retry is not None:
        pb.retry_after_secs = retry
    request_id = as_str(obj.get("request_id"))
    if request_id and pb.provider_request_id is None:
        pb.provider_request_id = request_id
    return True


def is_error_envelope(obj: Any) -> bool:
    """Whether a decoded whole body is an error envelope (and nothing else)."""
    if type(obj) is list:
        return bool(obj) and all(type(o) is dict and is_error_envelope(o) for o in obj)
    if type(obj) is not dict:
        return False
    if obj.get("type") == "error":
        return True
    err = obj.get("error")
    if type(err) is not dict:
        return False
    # An error key beside real content (OpenRouter chunks) is not an envelope.
    return not any(k in obj for k in ("choices", "candidates", "usage", "output"))


def envelope_provider(obj: Any) -> str | None:
    """Which provider's envelope this is, when the shape says so."""
    if type(obj) is list:
        return envelope_provider(obj[0]) if obj else None
    if type(obj) is not dict:
        return None
    if obj.get("type") == "error":
        return "anthropic"
    err = as_dict(obj.get("error"))
    if "status" in err and type(err.get("code")) is int:
        return "gemini"
    return None
