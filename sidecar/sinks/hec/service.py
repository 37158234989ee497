"""The HEC requests of the sink: send, ack query, health (HTTP through `http11`, a small
standard-library client).

Each reply of an event POST is classified by `replies.classify` (the reply-class table). No
exception from the HTTP client leaves this module: network errors and timeouts are `Retryable`.
Redirects are never followed (the token would follow them). The token is sent in a header and
never logged. Each endpoint has its own channel (the caller passes it): indexer-ack channels are
sticky to their endpoint (reference 1.5, 1.6).
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

import orjson

from sidecar import __version__
from sidecar.config import Tls
from sidecar.sinks.hec.http11 import HttpClient, HttpError
from sidecar.sinks.hec.replies import (
    ConfigFault,
    Delivered,
    Outcome,
    Rejected,
    Retryable,
    TooLarge,
    classify,
    int_or_none,
    parse_reply,
)
from sidecar.waits import within

ACK_PATH = "/services/collector/ack"
HEALTH_PATH = "/services/collector/health"


def _ssl_setting(tls: Tls) -> ssl.SSLContext | bool:
    """Verification on by default; `ca_file` adds a CA; `cert_file`/`key_file` a client
    certificate (mutual TLS)."""
    if not tls.verify and not tls.cert_file:
        return False
    ctx = ssl.create_default_context(cafile=tls.ca_file or None)
    if not tls.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if tls.cert_file:
        ctx.load_cert_chain(tls.cert_file, tls.key_file or None)
    return ctx


@dataclass(frozen=True, slots=True)
class AckReply:
    """An ack query's answer: `statuses` on 200; otherwise the classified failure."""

    statuses: dict[int, bool] | None = None
    failure: Outcome | None = None


@dataclass(frozen=True, slots=True)
class Health:
    """A health check: `healthy` False only for no reply or a 503 (codes 18-20 or none).
    HTTP 200 is healthy whatever its body (other HEC receivers answer their own code); any
    other answer (no health path on this receiver) does not keep the endpoint from use."""

    healthy: bool
    detail: str
    reachable: bool = True  # False: no HTTP reply at all (network, TLS, timeout)


class HecService:
    """One HTTP session to the HEC endpoints, for one sink."""

    def __init__(self, *, token: str, timeout_secs: float, tls: Tls, https: bool = True) -> None:
        """`https`: some endpoint uses TLS. Without one no SSL context is built (about 0.1 s
        and a few MiB: the system's CA store is loaded); with one it is built here, so that a
        bad `tls` setting stops the start, not the first send."""
        self._headers = {
            "Authorization": f"Splunk {token}",
            "User-Agent": f"llm-hec-sidecar/{__version__}",
        }
        self._timeout_secs = timeout_secs
        # True: the system's verified default, built at the first https request (unused)
        self._client = HttpClient(tls=_ssl_setting(tls) if https else True)

    async def close(self) -> None:
        await self._client.close()

    async def _request(
        self, method: str, url: str, body: bytes | None, extra: dict[str, str]
    ) -> tuple[int, bytes, str | None, str | None] | Retryable:
        try:
            reply = await within(
                self._timeout_secs,
                self._client.request(method, url, body, {**self._headers, **extra}),
            )
        except TimeoutError:
            return Retryable(f"no reply within {self._timeout_secs:g} s (timeout)")
        except (OSError, HttpError, asyncio.IncompleteReadError) as exc:
            # The message names host and port only; the token is in a header, never in the URL.
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return Retryable(f"network error ({detail})")
        return (
            reply.status,
            reply.body,
            reply.headers.get("retry-after"),
            reply.headers.get("location"),
        )

    async def send(self, url: str, body: bytes, *, compressed: bool, channel: str) -> Outcome:
        """POST one batch body to `url` (endpoint + path) and classify the reply. The channel is
        sent on every request, as Vector does: Splunk requires one with indexer ack and accepts
        one without it (reference 1.5)."""
        extra = {"Content-Type": "application/json", "X-Splunk-Request-Channel": channel}
        if compressed:
            extra["Content-Encoding"] = "gzip"
        got = await self._request("POST", url, body, extra)
        if isinstance(got, Retryable):
            return got
        status, reply, retry_after, location = got
        return classify(status, reply, retry_after, location)

    async def query_acks(self, endpoint: str, channel: str, ack_ids: list[int]) -> AckReply:
        """POST /services/collector/ack?channel=<GUID> with {"acks": [...]} (reference 1.6)."""
        url = f"{endpoint.rstrip('/')}{ACK_PATH}?channel={channel}"
        body = orjson.dumps({"acks": ack_ids})
        extra = {"Content-Type": "application/json", "X-Splunk-Request-Channel": channel}
        got = await self._request("POST", url, body, extra)
        if isinstance(got, Retryable):
            return AckReply(failure=got)
        status, reply, retry_after, location = got
        outcome = classify(status, reply, retry_after, location)
        if not isinstance(outcome, Delivered):
            return AckReply(failure=outcome)
        acks = parse_reply(reply).get("acks")
        if not isinstance(acks, dict):
            return AckReply(failure=Rejected("the ack reply has no `acks` object", status))
        try:
            return AckReply(statuses={int(k): v is True for k, v in acks.items()})
        except ValueError:
            return AckReply(failure=Rejected("the ack reply has a non-numeric ackId", status))

    async def health(self, endpoint: str) -> Health:
        """GET /services/collector/health (see `Health`)."""
        got = await self._request("GET", f"{endpoint.rstrip('/')}{HEALTH_PATH}", None, {})
        if isinstance(got, Retryable):
            return Health(False, got.reason, reachable=False)
        status, reply, _, _ = got
        obj = parse_reply(reply)
        code = int_or_none(obj.get("code"))
        detail = f"HTTP {status}" + (f", code {code}" if code is not None else "")
        if obj.get("text"):
            detail += f", {obj.get('text')}"
        return Health(status != 503, detail)


__all__ = [
    "ConfigFault",
    "Delivered",
    "Health",
    "HecService",
    "Outcome",
    "Rejected",
    "Retryable",
    "TooLarge",
]
