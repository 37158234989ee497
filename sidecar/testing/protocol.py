"""The HEC protocol rules of the test server, with no network: codes, envelopes, reply bodies.

Owns the status-code table (Splunk docs, "Troubleshoot HTTP Event Collector", status-code table: https://docs.splunk.com/Documentation/Splunk/latest/Data/TroubleshootHTTPEventCollector),
the endpoint paths, the per-token settings, the scripted-fault and request records, and the
checks that split a request body into envelopes and find the first invalid one (sections 1.3,
1.4). Each rule cites the entry it comes from. The server in `server.py` turns the results into
HTTP replies.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

EVENT_PATHS = ("/services/collector/event", "/services/collector/event/1.0", "/services/collector")
ACK_PATH = "/services/collector/ack"
HEALTH_PATHS = ("/services/collector/health", "/services/collector/health/1.0")

# Table 1.7 (source [SA]; codes 0-14 agree with [CF], 5/6/12/13/15 with [OTR]).
CODES: dict[int, tuple[int, str]] = {
    0: (200, "Success"),
    1: (403, "Token disabled"),
    2: (401, "Token is required"),
    3: (401, "Invalid authorization"),
    4: (403, "Invalid token"),
    5: (400, "No data"),
    6: (400, "Invalid data format"),
    7: (400, "Incorrect index"),
    8: (500, "Internal server error"),
    9: (503, "Server is busy"),
    10: (400, "Data channel is missing"),
    11: (400, "Invalid data channel"),
    12: (400, "Event field is required"),
    13: (400, "Event field cannot be blank"),
    14: (400, "ACK is disabled"),
    15: (400, "Error in handling indexed fields"),
    16: (400, "Query string authorization is not enabled"),
    17: (200, "HEC is healthy"),
    18: (503, "HEC is unhealthy, queues are full"),
    19: (503, "HEC is unhealthy, ack service unavailable"),
    20: (503, "HEC is unhealthy, queues are full, ack service unavailable"),
    21: (400, "Invalid token"),
    22: (400, "Token disabled"),
}
# Plain HTTP texts for scripted replies that carry no HEC code (404 detention, 429, 504).
HTTP_TEXTS = {404: "Not Found", 408: "Request Timeout", 429: "Too Many Requests", 504: "Timeout"}

GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_PLAIN_TIME = re.compile(r"^\d+(\.\d+)?$")


@dataclass
class TokenSettings:
    """What Splunk's inputs.conf `[http://name]` stanza says about one token ([SPEC:inputs])."""

    use_ack: bool = False  # useACK
    indexes: list[str] | None = None  # allow-list; None or [] = any index
    disabled: bool = False
    allow_query_string_auth: bool = False  # allowQueryStringAuth


@dataclass
class Fault:
    """A scripted reply for one event POST. `drop` closes the connection without a reply;
    `delay_secs` alone (no `http`) delays a normal reply."""

    http: int | None = None
    code: int | None = None
    text: str | None = None
    retry_after: str | None = None
    invalid_event_number: int | None = None
    drop: bool = False
    delay_secs: float = 0.0
    reject_event: int | None = None  # handle normally, but event n is invalid (with `code`)


@dataclass
class RequestRecord:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body_bytes: int  # raw body size on the wire
    compressed: bool
    status: int | None = None  # None: the connection was dropped
    hec_code: int | None = None
    events_accepted: int = 0
    faulted: bool = False


class HecReply(Exception):
    """A documented HEC error reply: the code, its HTTP status and the invalid event's number."""

    def __init__(self, code: int, *, http: int | None = None, invalid: int | None = None) -> None:
        self.code = code
        self.http = http if http is not None else CODES[code][0]
        self.invalid = invalid
        super().__init__(CODES[code][1])


class _ExpFloat(float):
    """A JSON number written in exponent form (`1.7E9`): kept apart to check `time`."""


def _parse_float(text: str) -> float:
    return _ExpFloat(text) if "e" in text or "E" in text else float(text)


def _parse_int(text: str) -> int | float:
    return int(text)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN/Infinity are not JSON: a format error


_DECODER = json.JSONDecoder(
    parse_float=_parse_float, parse_int=_parse_int, parse_constant=_no_constants
)


def _check_event(obj: Any, n: int, token: TokenSettings) -> None:
    """Raise the documented reply for an invalid envelope (n = its position in the request)."""
    if not isinstance(obj, dict):
        raise HecReply(6, invalid=n)  # 1.4: the body is a stream of JSON objects
    for key in ("host", "source", "sourcetype", "index"):
        # [FPH] "delete nil fields otherwise will get format error from HEC"
        if key in obj and not isinstance(obj[key], str):
            raise HecReply(6, invalid=n)
    if "event" not in obj or obj["event"] is None:
        raise HecReply(12, invalid=n)  # 1.3 [OTR][OTC][SA]
    if obj["event"] == "":
        raise HecReply(13, invalid=n)  # 1.3 [OTR][OTC][SA]
    if "time" in obj:
        t = obj["time"]
        # A third-party observation (reference 1.3, not a Splunk doc): a time in exponent form
        # (`1.791048401679E9`) and a non-numeric time are rejected with code 15, not code 6.
        ok = (isinstance(t, int) and not isinstance(t, bool) and t >= 0) or (
            isinstance(t, float) and not isinstance(t, _ExpFloat) and t >= 0
        )
        if isinstance(t, str):
            ok = bool(_PLAIN_TIME.match(t))
        if not ok:
            raise HecReply(15, invalid=n)
    if "fields" in obj:
        fields = obj["fields"]
        # 1.3 [OTC] isFlatJSONField: an object value, or an array holding an object or an array,
        # is code 15. Scalars and flat arrays pass.
        if not isinstance(fields, dict):
            raise HecReply(15, invalid=n)
        for v in fields.values():
            if isinstance(v, dict) or (
                isinstance(v, list) and any(isinstance(x, dict | list) for x in v)
            ):
                raise HecReply(15, invalid=n)
    if "index" in obj and token.indexes and obj["index"] not in token.indexes:
        raise HecReply(7, invalid=n)  # 1.3: the index must be on the token's allow-list [SA]


def parse_events(body: bytes, token: TokenSettings) -> tuple[list[dict[str, Any]], HecReply | None]:
    """Split a request body into envelopes. Returns the accepted ones and the error, if any.

    Events before a bad one are kept and the rest are not (moby/moby#35862, reference 1.7).
    """
    try:
        text, tail_bad = body.decode("utf-8"), False
    except UnicodeDecodeError as exc:
        text, tail_bad = body[: exc.start].decode("utf-8"), True
    accepted: list[dict[str, Any]] = []
    pos, n = 0, 0
    while True:
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        if pos >= len(text):
            break
        try:
            obj, pos = _DECODER.raw_decode(text, pos)
        except ValueError:
            return accepted, HecReply(6, invalid=n)
        try:
            _check_event(obj, n, token)
        except HecReply as err:
            return accepted, err
        accepted.append(obj)
        n += 1
    if tail_bad:
        return accepted, HecReply(6, invalid=n)
    if not accepted:
        return accepted, HecReply(5)  # table 1.7: "No data"
    return accepted, None


def reply_payload(err: HecReply) -> dict[str, Any]:
    """The JSON body Splunk sends with an error reply."""
    payload: dict[str, Any] = {"text": CODES[err.code][1], "code": err.code}
    if err.invalid is not None:
        payload["invalid-event-number"] = err.invalid
    return payload


def fault_payload(fault: Fault) -> tuple[dict[str, Any], dict[str, str] | None]:
    """The JSON body and headers of a scripted reply (a fault with `http` set)."""
    assert fault.http is not None
    if fault.text is not None:
        text = fault.text
    elif fault.code is not None:
        text = CODES[fault.code][1]
    else:
        text = HTTP_TEXTS.get(fault.http, "Error")
    payload: dict[str, Any] = {"text": text}
    if fault.code is not None:
        payload["code"] = fault.code
    if fault.invalid_event_number is not None:
        payload["invalid-event-number"] = fault.invalid_event_number
    headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else None
    return payload, headers


def header_token(header: str) -> str:
    """The token in an Authorization header (section 1.2); code 3 when it has none."""
    if header.startswith("Splunk "):
        return header[len("Splunk ") :].strip()
    if header.startswith("Basic "):  # the token is the password [FMT dev copy]
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise HecReply(3) from None
        return decoded.partition(":")[2]
    raise HecReply(3)  # "the word Splunk is missing before the token" [SA]


def parse_ack_ids(body: bytes) -> list[int]:
    """The ackIds of an ack query `{"acks": [0, 1]}` (section 1.6); code 6 when malformed."""
    try:
        ids = json.loads(body)["acks"]
        if not isinstance(ids, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in ids
        ):
            raise ValueError("acks must be a list of integers")
    except (ValueError, KeyError, TypeError):
        raise HecReply(6) from None
    return ids
