"""The only HTTP code of the HEC sink (aiohttp client): send, ack query, health, and the reply rule.

Every reply is mapped to exactly one of

    Delivered(ack_id)                  2xx: HEC took the batch (ack_id when indexer ack is on)
    Retryable(reason, retry_after)     it may succeed later: send it again (after a backoff)
    Rejected(reason)                   it can never succeed: dead-letter it

by `classify`, one documented expression (reference section 1.7 and 1.8, the Fluent Bit rule
extended with the HEC codes Splunk marks as "resend"). No exception from aiohttp leaves this module:
network errors and timeouts are `Retryable`. The token is sent in a header and never logged.
"""

from __future__ import annotations

import email.utils
import ssl
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from sidecar.config import Tls

ACK_PATH = "/services/collector/ack"
HEALTH_PATH = "/services/collector/health"

# HEC codes that a later attempt can fix (table 1.7): 8 internal error ("Client should
# automatically try to resend"), 9 server busy, 18/19/20 unhealthy (queues full, ack service down).
RETRYABLE_HEC_CODES = frozenset({8, 9, 18, 19, 20})
# HTTP statuses that a later attempt can fix besides 5xx: 408 and 429 (Fluent Bit, Vector, OTel),
# and 404, which Splunk answers during rolling restarts and cloudfwd calls "indexer in detention".
RETRYABLE_HTTP = frozenset({404, 408, 429})
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


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: str
    http_status: int
    hec_code: int | None = None
    invalid_event_number: int | None = None


Outcome = Delivered | Retryable | Rejected


def is_retryable(http_status: int, hec_code: int | None) -> bool:
    """THE retry rule: 5xx, 404, 408, 429, or HEC code 8/9/18/19/20. Everything else that is not
    2xx (3xx, the other 4xx: HEC codes 1-7, 10-16, 21, 22) is permanent."""
    return http_status >= 500 or http_status in RETRYABLE_HTTP or hec_code in RETRYABLE_HEC_CODES


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


def parse_reply(body: bytes) -> dict[str, Any]:
    """The HEC reply object, or {} when the body is not a JSON object (a proxy's HTML page)."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    return obj if isinstance(obj, dict) else {}


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def classify(http_status: int, body: bytes, retry_after: str | None = None) -> Outcome:
    """Map one HTTP reply of an event POST to Delivered / Retryable / Rejected."""
    reply = parse_reply(body)
    code = _int_or_none(reply.get("code"))
    text = reply.get("text") if isinstance(reply.get("text"), str) else None
    if 200 <= http_status < 300:
        return Delivered(_int_or_none(reply.get("ackId")), http_status)
    what = f"HTTP {http_status}" + (f", code {code}" if code is not None else "")
    reason = f"{what}, {text}" if text else what
    if is_retryable(http_status, code):
        return Retryable(reason, parse_retry_after(retry_after), http_status, code)
    invalid = _int_or_none(reply.get("invalid-event-number"))
    return Rejected(reason, http_status, code, invalid)


def _ssl_setting(tls: Tls) -> ssl.SSLContext | bool:
    if not tls.verify:
        return False
    if tls.ca_file:
        return ssl.create_default_context(cafile=tls.ca_file)
    return True


@dataclass(frozen=True, slots=True)
class AckReply:
    """An ack query's answer: `statuses` on 200; otherwise the classified failure."""

    statuses: dict[int, bool] | None = None
    failure: Retryable | Rejected | None = None


class HecService:
    """One HTTP session to the HEC endpoints, for one sink (one channel)."""

    def __init__(self, *, token: str, channel: str, timeout_secs: float, tls: Tls) -> None:
        self._headers = {
            "Authorization": f"Splunk {token}",
            # Sent on every request, as Vector does: Splunk requires a channel with indexer ack
            # and accepts one without it (reference 1.5).
            "X-Splunk-Request-Channel": channel,
        }
        self.channel = channel
        self._timeout = aiohttp.ClientTimeout(total=timeout_secs)
        self._ssl = _ssl_setting(tls)
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _request(
        self, method: str, url: str, body: bytes | None, extra: dict[str, str]
    ) -> tuple[int, bytes, str | None] | Retryable:
        try:
            async with self._get_session().request(
                method,
                url,
                data=body,
                headers={**self._headers, **extra},
                ssl=self._ssl,
                allow_redirects=False,
            ) as resp:
                return resp.status, await resp.read(), resp.headers.get("Retry-After")
        except TimeoutError:
            return Retryable(f"no reply within {self._timeout.total:g} s (timeout)")
        except aiohttp.ClientError as exc:
            # The message names host and port only; the token is in a header, never in the URL.
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return Retryable(f"network error ({detail})")
        except OSError as exc:
            return Retryable(f"network error: {exc}")

    async def send(self, url: str, body: bytes, *, compressed: bool) -> Outcome:
        """POST one batch body to `url` (endpoint + path) and classify the reply."""
        extra = {"Content-Type": "application/json"}
        if compressed:
            extra["Content-Encoding"] = "gzip"
        got = await self._request("POST", url, body, extra)
        if isinstance(got, Retryable):
            return got
        status, reply, retry_after = got
        return classify(status, reply, retry_after)

    async def query_acks(self, endpoint: str, ack_ids: list[int]) -> AckReply:
        """POST /services/collector/ack?channel=<GUID> with {"acks": [...]} (reference 1.6)."""
        url = f"{endpoint.rstrip('/')}{ACK_PATH}?channel={self.channel}"
        body = orjson.dumps({"acks": ack_ids})
        got = await self._request("POST", url, body, {"Content-Type": "application/json"})
        if isinstance(got, Retryable):
            return AckReply(failure=got)
        status, reply, retry_after = got
        outcome = classify(status, reply, retry_after)
        if not isinstance(outcome, Delivered):
            return AckReply(failure=outcome)
        acks = parse_reply(reply).get("acks")
        if not isinstance(acks, dict):
            return AckReply(failure=Rejected("the ack reply has no `acks` object", status))
        try:
            return AckReply(statuses={int(k): v is True for k, v in acks.items()})
        except ValueError:
            return AckReply(failure=Rejected("the ack reply has a non-numeric ackId", status))

    async def health(self, endpoint: str) -> tuple[int | None, int | None, str]:
        """GET /services/collector/health -> (HTTP status or None, HEC code, text or error)."""
        got = await self._request("GET", f"{endpoint.rstrip('/')}{HEALTH_PATH}", None, {})
        if isinstance(got, Retryable):
            return None, None, got.reason
        status, reply, _ = got
        obj = parse_reply(reply)
        return status, _int_or_none(obj.get("code")), str(obj.get("text", ""))

    async def probe_token(self, url: str) -> tuple[int | None, int | None, str]:
        """POST an empty body: HEC checks the token first, so a good token gets code 5
        "No data" and nothing is indexed; a bad one gets code 1-4 (table 1.7)."""
        got = await self._request("POST", url, b"", {"Content-Type": "application/json"})
        if isinstance(got, Retryable):
            return None, None, got.reason
        status, reply, _ = got
        obj = parse_reply(reply)
        return status, _int_or_none(obj.get("code")), str(obj.get("text", ""))
