"""A protocol-faithful Splunk HTTP Event Collector for tests and dry runs.

Every reply is derived from the Splunk documentation as recorded in
`/work/shared/reference/hec-and-splunk-apps.md` section 1 (the status-code table 1.7, the
indexer-acknowledgement flow 1.6, authentication 1.2, the envelope 1.3, batching 1.4); each rule
below cites the entry it comes from. It is not shaped after our own client.

    async with HecTestServer(tokens={"T": TokenSettings(use_ack=True)}) as hec:
        ...  # point a client at hec.url
        hec.fail_next(2, http=503, code=9)    # scripted faults for the next event POSTs
        assert hec.events[0]["event"] == ...

`HecTestServer(...).run_in_thread()` runs it on its own loop in a background thread (for tests
that start the pipeline as a subprocess). `python -m sidecar.testing --port 8088 --token T [--ack]`
runs it in the foreground and prints each accepted event as a JSON line on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import collections
import contextlib
import gzip
import json
import re
import sys
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

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

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
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


class _Reply(Exception):
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
        raise _Reply(6, invalid=n)  # 1.4: the body is a stream of JSON objects
    for key in ("host", "source", "sourcetype", "index"):
        # [FPH] "delete nil fields otherwise will get format error from HEC"
        if key in obj and not isinstance(obj[key], str):
            raise _Reply(6, invalid=n)
    if "event" not in obj or obj["event"] is None:
        raise _Reply(12, invalid=n)  # 1.3 [OTR][OTC][SA]
    if obj["event"] == "":
        raise _Reply(13, invalid=n)  # 1.3 [OTR][OTC][SA]
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
            raise _Reply(15, invalid=n)
    if "fields" in obj:
        fields = obj["fields"]
        # 1.3 [OTC] isFlatJSONField: an object value, or an array holding an object or an array,
        # is code 15. Scalars and flat arrays pass.
        if not isinstance(fields, dict):
            raise _Reply(15, invalid=n)
        for v in fields.values():
            if isinstance(v, dict) or (
                isinstance(v, list) and any(isinstance(x, dict | list) for x in v)
            ):
                raise _Reply(15, invalid=n)
    if "index" in obj and token.indexes and obj["index"] not in token.indexes:
        raise _Reply(7, invalid=n)  # 1.3: the index must be on the token's allow-list [SA]


def parse_events(body: bytes, token: TokenSettings) -> tuple[list[dict[str, Any]], _Reply | None]:
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
            return accepted, _Reply(6, invalid=n)
        try:
            _check_event(obj, n, token)
        except _Reply as err:
            return accepted, err
        accepted.append(obj)
        n += 1
    if tail_bad:
        return accepted, _Reply(6, invalid=n)
    if not accepted:
        return accepted, _Reply(5)  # table 1.7: "No data"
    return accepted, None


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


def _reply(err: _Reply) -> web.Response:
    payload: dict[str, Any] = {"text": CODES[err.code][1], "code": err.code}
    if err.invalid is not None:
        payload["invalid-event-number"] = err.invalid
    return _json_response(err.http, payload)


class HecTestServer:
    """An aiohttp HEC server on 127.0.0.1. Use as `async with HecTestServer(...) as hec:`.

    ack_mode decides when an issued ackId becomes true: "immediate", "delay" (after
    `ack_delay_secs`), "polls" (on the `ack_after_polls`-th query for it) or "never".
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
    ) -> None:
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

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> str:
        app = web.Application(client_max_size=self.max_content_length)
        for p in EVENT_PATHS:
            app.router.add_post(p, self._handle_event)
        app.router.add_post(ACK_PATH, self._handle_ack)
        for p in HEALTH_PATHS:
            app.router.add_get(p, self._handle_health)
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
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        done: asyncio.Future[None] | None = None

        async def main() -> None:
            nonlocal done
            done = loop.create_future()
            await self.start()
            ready.set()
            try:
                await done
            finally:
                await self.stop()

        thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
        thread.start()
        if not ready.wait(10):
            raise RuntimeError("the HEC test server did not start within 10 seconds")

        def stop() -> None:
            if done is not None and not loop.is_closed():
                loop.call_soon_threadsafe(lambda: done.done() or done.set_result(None))
                thread.join(10)
                loop.close()

        return self.url, stop

    # -- handlers -------------------------------------------------------------------------
    def _authenticate(self, request: web.Request) -> TokenSettings:
        """Section 1.2. A query-string token takes precedence over the header [SPEC:inputs]."""
        if "token" in request.query:
            settings = self.tokens.get(request.query["token"])
            if settings is None:
                raise _Reply(4)
            if not settings.allow_query_string_auth:
                raise _Reply(16)  # allowQueryStringAuth is off [SPEC:inputs][SA]
        else:
            header = request.headers.get("Authorization")
            if header is None:
                raise _Reply(2)
            if header.startswith("Splunk "):
                token = header[len("Splunk ") :].strip()
            elif header.startswith("Basic "):  # the token is the password [FMT dev copy]
                try:
                    decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
                except (binascii.Error, UnicodeDecodeError):
                    raise _Reply(3) from None
                token = decoded.partition(":")[2]
            else:
                raise _Reply(3)  # "the word Splunk is missing before the token" [SA]
            settings = self.tokens.get(token)
            if settings is None:
                raise _Reply(4)
        if settings.disabled:
            raise _Reply(1)
        return settings

    @staticmethod
    def _channel(request: web.Request, required: bool) -> str | None:
        """Section 1.5: the channel comes from the header or `?channel=`; a GUID."""
        channel = request.headers.get("X-Splunk-Request-Channel") or request.query.get("channel")
        if channel is None:
            if required:
                raise _Reply(10)
            return None
        if required and not _GUID.match(channel):
            raise _Reply(11)
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
                    raise _Reply(6, invalid=0) from None
            accepted, error = parse_events(body, settings)
            if fault is not None and fault.reject_event is not None and fault.code is not None:
                n = fault.reject_event
                if error is None or (error.invalid is not None and error.invalid > n):
                    accepted, error = accepted[:n], _Reply(fault.code, invalid=n)
        except _Reply as err:
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
        for ev in accepted:
            self.events.append(ev)
            if self.on_event is not None:
                self.on_event(ev)

    def _fault_reply(self, fault: Fault, rec: RequestRecord) -> web.Response:
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
                raise _Reply(14)  # "ACK is disabled" [SA][CF]
            channel = self._channel(request, True)
            assert channel is not None
            try:
                ids = json.loads(await request.read())["acks"]
                if not isinstance(ids, list) or not all(
                    isinstance(i, int) and not isinstance(i, bool) for i in ids
                ):
                    raise ValueError("acks must be a list of integers")
            except (ValueError, KeyError, TypeError):
                raise _Reply(6) from None
        except _Reply as err:
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

    async def _handle_health(self, request: web.Request) -> web.Response:
        # Table 1.7: 17 -> 200 "HEC is healthy"; 18/19/20 -> 503.
        status, text = CODES[self.health_code]
        return _json_response(status, {"text": text, "code": self.health_code})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sidecar.testing",
        description="Run a protocol-faithful HEC test server; accepted events go to stdout.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8088)
    parser.add_argument("--token", action="append", required=True, help="an accepted token")
    parser.add_argument("--ack", action="store_true", help="indexer acknowledgement on")
    parser.add_argument("--index", action="append", help="allowed index (repeat); default: any")
    args = parser.parse_args(argv)

    def show(ev: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(ev) + "\n")
        sys.stdout.flush()

    tokens = {t: TokenSettings(use_ack=args.ack, indexes=args.index) for t in args.token}
    server = HecTestServer(tokens, host=args.host, port=args.port, on_event=show)

    async def run() -> None:
        async with server:
            acks = "on" if args.ack else "off"
            print(
                f"HEC test server listening on {server.url}/services/collector/event "
                f"(indexer acknowledgement {acks}); press Ctrl-C to stop.",
                file=sys.stderr,
                flush=True,
            )
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
