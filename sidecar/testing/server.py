"""The HEC test server: an aiohttp app on 127.0.0.1 that answers as Splunk documents.

Owns the HTTP side of the test double: routing, authentication and channel checks, gzip,
scripted faults (`fail_next`, `drop_next`, `reject_event_next`, `delay_next`, `set_busy`,
`busy_for`, `revoke_token`/`restore_token`, `redirect_to`, `max_request_bytes`,
`unknown_path_status`, `health_reply`),
ackId issue and the ack modes, the record of accepted events (with the time each was accepted,
`accepted_at`) and requests, and
`run_in_thread()`. The protocol rules it applies (codes, envelope checks, reply bodies) are in
`protocol.py`; the command line is in `__main__.py`.

    async with HecTestServer(tokens={"T": TokenSettings(use_ack=True)}) as hec:
        ...  # point a client at hec.url
        hec.fail_next(2, http=503, code=9)    # scripted faults for the next event POSTs
        assert hec.events[0]["event"] == ...

`HecTestServer(...).run_in_thread()` runs it on its own loop in a background thread (for tests
that start the pipeline as a subprocess).
"""

from __future__ import annotations

import asyncio
import collections
import gzip
import json
import time
import zlib
from collections.abc import Callable
from typing import Any, Literal

from aiohttp import web

from sidecar.testing.protocol import (
    ACK_PATH,
    CODES,
    EVENT_PATHS,
    GUID,
    HEALTH_PATHS,
    Fault,
    HecReply,
    RequestRecord,
    TokenSettings,
    fault_payload,
    header_token,
    parse_ack_ids,
    parse_events,
    reply_payload,
)
from sidecar.testing.threaded import run_in_thread


def _json_response(
    status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
) -> web.Response:
    # Compact like Splunk: {"text":"Success","code":0}
    return web.Response(
        status=status,
        text=json.dumps(payload, separators=(",", ":")),
        content_type="application/json",
        headers=headers,
    )


def _reply(err: HecReply) -> web.Response:
    return _json_response(err.http, reply_payload(err))


class HecTestServer:
    """An aiohttp HEC server on 127.0.0.1. Use as `async with HecTestServer(...) as hec:`.

    ack_mode decides when an issued ackId becomes true: "immediate", "delay" (after
    `ack_delay_secs`), "polls" (on the `ack_after_polls`-th query for it) or "never".

    Other HEC receivers in the path are imitated too: `max_request_bytes` answers a larger
    request body (as sent, compressed or not) with a plain 413, like a load balancer or Fluent
    Bit's in_splunk; `unknown_path_status=400` answers an unknown path with a 400 without a HEC
    code (Fluent Bit's "invalid HTTP endpoint"; Splunk answers 404); `health_reply` replaces the
    health endpoint's answer (Fluent Bit: `(200, {"code": 200})`).
    """

    def __init__(
        self,
        tokens: dict[str, TokenSettings] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ack_mode: Literal["immediate", "delay", "polls", "never"] = "immediate",
        ack_delay_secs: float = 0.0,
        ack_after_polls: int = 1,
        max_content_length: int = 838_860_800,  # limits.conf [http_input] default [SPEC:limits]
        on_event: Callable[[dict[str, Any]], None] | None = None,
        max_request_bytes: int | None = None,
        unknown_path_status: int = 404,
        health_reply: tuple[int, dict[str, Any]] | None = None,
    ) -> None:
        self.max_request_bytes = max_request_bytes
        self.unknown_path_status = unknown_path_status
        self.health_reply = health_reply
        self._busy_until = 0.0
        self._revoked: dict[str, TokenSettings] = {}
        self._redirect: tuple[int, str] | None = None
        self.tokens = tokens if tokens is not None else {"T": TokenSettings()}
        self.host, self.port = host, port
        self.ack_mode, self.ack_delay_secs, self.ack_after_polls = (
            ack_mode,
            ack_delay_secs,
            ack_after_polls,
        )
        self.max_content_length = max_content_length
        self.on_event = on_event
        self.events: list[dict[str, Any]] = []
        self.accepted_at: list[float] = []  # epoch seconds each event was accepted (as events)
        self.requests: list[RequestRecord] = []
        self.counters: collections.Counter[str] = collections.Counter()
        self.health_code: int = 17  # set 18, 19 or 20 to make the health endpoint answer 503
        self._faults: collections.deque[Fault] = collections.deque()
        self._next_ack: dict[str, int] = {}
        self._acks: dict[tuple[str, int], list[float]] = {}  # (channel, id) -> [issued, polls]
        self._runner: web.AppRunner | None = None
        self.url = ""

    # -- fault injection ------------------------------------------------------------------
    def fail_next(
        self,
        n: int = 1,
        *,
        http: int = 503,
        code: int | None = 9,
        text: str | None = None,
        retry_after: str | float | None = None,
        invalid_event_number: int | None = None,
    ) -> None:
        """Answer the next n event POSTs with this reply (nothing is recorded as accepted)."""
        ra = None if retry_after is None else str(retry_after)
        for _ in range(n):
            self._faults.append(Fault(http, code, text, ra, invalid_event_number))

    def drop_next(self, n: int = 1) -> None:
        """Close the connection of the next n event POSTs without replying."""
        self._faults.extend(Fault(drop=True) for _ in range(n))

    def reject_event_next(self, event_number: int, *, code: int = 6) -> None:
        """Treat event `event_number` of the next event POST as invalid, as Splunk does with a
        bad event: the events before it are kept, it and the rest are not (moby/moby#35862)."""
        self._faults.append(Fault(code=code, reject_event=event_number))

    def delay_next(self, n: int = 1, secs: float = 1.0) -> None:
        """Delay the reply to the next n event POSTs (they are then handled normally)."""
        self._faults.extend(Fault(delay_secs=secs) for _ in range(n))

    def set_busy(self, code: int | None = 18) -> None:
        """Make the health endpoint answer 503 with code 18, 19 or 20; None = healthy again."""
        self.health_code = 17 if code is None else code

    def busy_for(self, secs: float) -> None:
        """Answer every event POST with 503 code 9 "Server is busy" for `secs` seconds."""
        self._busy_until = time.monotonic() + secs

    def revoke_token(self, token: str) -> None:
        """Remove a token (its requests get 403 code 4 "Invalid token") until restored."""
        if token in self.tokens:
            self._revoked[token] = self.tokens.pop(token)

    def restore_token(self, token: str) -> None:
        if token in self._revoked:
            self.tokens[token] = self._revoked.pop(token)

    def redirect_to(self, location: str | None, status: int = 301) -> None:
        """Answer event POSTs with a redirect to `location` (None: stop redirecting)."""
        self._redirect = None if location is None else (status, location)

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> str:
        app = web.Application(client_max_size=self.max_content_length)
        for p in EVENT_PATHS:
            app.router.add_post(p, self._handle_event)
        app.router.add_post(ACK_PATH, self._handle_ack)
        for p in HEALTH_PATHS:
            app.router.add_get(p, self._handle_health)
        app.router.add_route("*", "/{tail:.*}", self._handle_unknown)
        # auto_decompress off: the raw size is recorded, and gzip is decoded (and checked) here.
        self._runner = web.AppRunner(app, access_log=None, auto_decompress=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])  # the real port when port=0
        self.url = f"http://{self.host}:{self.port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> HecTestServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def run_in_thread(self) -> tuple[str, Callable[[], None]]:
        """Run on a private event loop in a daemon thread. Returns (url, stop)."""
        return run_in_thread(self.start, self.stop, "HEC test server")

    # -- handlers -------------------------------------------------------------------------
    def _authenticate(self, request: web.Request) -> TokenSettings:
        """Section 1.2. A query-string token takes precedence over the header [SPEC:inputs]."""
        if "token" in request.query:
            settings = self.tokens.get(request.query["token"])
            if settings is None:
                raise HecReply(4)
            if not settings.allow_query_string_auth:
                raise HecReply(16)  # allowQueryStringAuth is off [SPEC:inputs][SA]
        else:
            header = request.headers.get("Authorization")
            if header is None:
                raise HecReply(2)
            settings = self.tokens.get(header_token(header))
            if settings is None:
                raise HecReply(4)
        if settings.disabled:
            raise HecReply(1)
        return settings

    @staticmethod
    def _channel(request: web.Request, required: bool) -> str | None:
        """Section 1.5: the channel comes from the header or `?channel=`; a GUID."""
        channel = request.headers.get("X-Splunk-Request-Channel") or request.query.get("channel")
        if channel is None:
            if required:
                raise HecReply(10)
            return None
        if required and not GUID.match(channel):
            raise HecReply(11)
        return channel

    async def _handle_event(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        encoding = request.headers.get("Content-Encoding", "").strip().lower()
        rec = RequestRecord(
            request.method,
            request.path,
            dict(request.query),
            dict(request.headers),
            len(raw),
            encoding == "gzip",
        )
        self.requests.append(rec)
        self.counters["event_requests"] += 1
        if self._redirect is not None:
            rec.status = self._redirect[0]
            return web.Response(status=rec.status, headers={"Location": self._redirect[1]})
        if self.max_request_bytes is not None and len(raw) > self.max_request_bytes:
            rec.status = 413
            return web.Response(status=413, text="413 Request Entity Too Large")
        if time.monotonic() < self._busy_until:
            rec.status, rec.hec_code = 503, 9
            return _reply(HecReply(9))
        fault = self._faults.popleft() if self._faults else None
        if fault is not None and fault.delay_secs:
            await asyncio.sleep(fault.delay_secs)
        if fault is not None and (fault.drop or fault.http is not None):
            rec.faulted = True
            self.counters["faults"] += 1
            if fault.drop:
                assert request.transport is not None
                request.transport.abort()  # no reply at all: the client sees a disconnect
                raise asyncio.CancelledError
            return self._fault_reply(fault, rec)
        try:
            settings = self._authenticate(request)
            channel = self._channel(request, settings.use_ack)
            if encoding not in ("", "identity", "gzip"):
                # No HEC code is documented for this; plain HTTP 415 without a code.
                rec.status = 415
                return _json_response(415, {"text": f"Unsupported Content-Encoding {encoding}"})
            body = raw
            if encoding == "gzip":
                try:
                    body = gzip.decompress(raw)
                except (OSError, EOFError, zlib.error):
                    raise HecReply(6, invalid=0) from None
            accepted, error = parse_events(body, settings)
            if fault is not None and fault.reject_event is not None and fault.code is not None:
                n = fault.reject_event
                if error is None or (error.invalid is not None and error.invalid > n):
                    accepted, error = accepted[:n], HecReply(fault.code, invalid=n)
        except HecReply as err:
            rec.status, rec.hec_code = err.http, err.code
            return _reply(err)
        self._accept(accepted, rec)
        if error is not None:
            rec.status, rec.hec_code = error.http, error.code
            return _reply(error)
        payload: dict[str, Any] = {"text": "Success", "code": 0}
        if settings.use_ack and channel is not None:
            ack_id = self._next_ack.get(channel, 0)  # ackIds start at 0 per channel (1.6)
            self._next_ack[channel] = ack_id + 1
            self._acks[(channel, ack_id)] = [time.monotonic(), 0]
            payload["ackId"] = ack_id
            self.counters["acks_issued"] += 1
        rec.status, rec.hec_code = 200, 0
        return _json_response(200, payload)

    def _accept(self, accepted: list[dict[str, Any]], rec: RequestRecord) -> None:
        rec.events_accepted = len(accepted)
        self.counters["events_accepted"] += len(accepted)
        now = time.time()
        for ev in accepted:
            self.events.append(ev)
            self.accepted_at.append(now)
            if self.on_event is not None:
                self.on_event(ev)

    def _fault_reply(self, fault: Fault, rec: RequestRecord) -> web.Response:
        assert fault.http is not None
        payload, headers = fault_payload(fault)
        rec.status, rec.hec_code = fault.http, fault.code
        return _json_response(fault.http, payload, headers)

    def _is_indexed(self, entry: list[float]) -> bool:
        entry[1] += 1
        if self.ack_mode == "immediate":
            return True
        if self.ack_mode == "delay":
            return time.monotonic() - entry[0] >= self.ack_delay_secs
        if self.ack_mode == "polls":
            return entry[1] >= self.ack_after_polls
        return False

    async def _handle_ack(self, request: web.Request) -> web.Response:
        self.counters["ack_requests"] += 1
        try:
            settings = self._authenticate(request)
            if not settings.use_ack:
                raise HecReply(14)  # "ACK is disabled" [SA][CF]
            channel = self._channel(request, True)
            assert channel is not None
            ids = parse_ack_ids(await request.read())
        except HecReply as err:
            return _reply(err)
        statuses: dict[str, bool] = {}
        for ack_id in ids:
            entry = self._acks.get((channel, ack_id))
            indexed = entry is not None and self._is_indexed(entry)
            if indexed:
                # Read-once: "Once a client retrieves a true status for an ackID, HEC deletes that
                # ackID status information" (1.6).
                del self._acks[(channel, ack_id)]
                self.counters["acks_true"] += 1
            statuses[str(ack_id)] = indexed
        return _json_response(200, {"acks": statuses})

    async def _handle_unknown(self, request: web.Request) -> web.Response:
        self.counters["unknown_path_requests"] += 1
        if self.unknown_path_status == 404:
            return web.Response(status=404, text="Not Found")
        return web.Response(status=self.unknown_path_status, text="invalid HTTP endpoint")

    async def _handle_health(self, request: web.Request) -> web.Response:
        if self.health_reply is not None:
            return _json_response(*self.health_reply)
        # Table 1.7: 17 -> 200 "HEC is healthy"; 18/19/20 -> 503.
        status, text = CODES[self.health_code]
        return _json_response(status, {"text": text, "code": self.health_code})
