"""A minimal aiohttp LLM gateway that writes the two logs llm-hec-sidecar reads.

    python gateway.py --listen 127.0.0.1:8080 --logs /var/log/llm-gateway

Clients call it like the nginx proxy of examples/nginx: http://HOST:8080/v1/... (OpenAI),
/v1/messages (Anthropic), /v1beta/... (Gemini), with their API key headers and optionally
X-LLM-User, X-LLM-Tenant, X-LLM-Conversation-Id (logged, not forwarded) and X-Client-Request-Id
(forwarded). It writes, in `--logs`:

* `access.log`: one JSON line per request at its end, the `nginx_json` preset's keys
  (sidecar: `access_log.format.type: nginx_json`);
* `body.log`: the response bytes as relayed, one JSON line per chunk, then one end record
  (sidecar: `body_log.format.type: chunks`).

Each line is one write(2) on a file opened O_APPEND by path (mode 0640), so lines never interleave
and a renamed log is followed at once: rotate with rename + nothing else (no reopen signal).
The file I/O is synchronous (a few microseconds a line); a busy gateway would hand it to a thread.
See docs/proxies.md. Needs aiohttp only.
"""

from __future__ import annotations

import argparse
import codecs
import json
import os
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

import aiohttp
from aiohttp import web

ROUTES = (  # the first matching path prefix wins (as nginx's longest-prefix locations)
    ("/v1/messages", "https://api.anthropic.com"),
    ("/v1beta/", "https://generativelanguage.googleapis.com"),
    ("/v1/", "https://api.openai.com"),
)
WHO = {"x-llm-user": "user", "x-llm-tenant": "tenant", "x-llm-conversation-id": "conversation_id"}
NOT_FORWARDED = {"host", "connection", "keep-alive", "transfer-encoding", "te", "upgrade"}
NOT_FORWARDED |= {"content-length", "accept-encoding", "proxy-authorization", *WHO}
LOGGED_RESPONSE_HEADERS = ("content-type", "content-encoding", "x-request-id", "request-id")
LOGGED_RESPONSE_PREFIXES = ("x-ratelimit-", "anthropic-ratelimit-", "retry-after")
SESSION = web.AppKey("session", aiohttp.ClientSession)


# ---- the logging part: both logs in the sidecar's contract (docs/proxies.md) -------------------
def append_line(path: Path, record: dict) -> None:
    """One JSON line, one write(2), O_APPEND, opened by path (follows a rename at once)."""
    line = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


class BodyLog:
    """The body log of one response: `{"ts","request_id","data"}` per chunk, then `{"end"}`."""

    def __init__(self, path: Path, request_id: str) -> None:
        self.path, self.request_id = path, request_id
        # a UTF-8 character cut between two chunks is held back until its last byte arrives
        self._utf8 = codecs.getincrementaldecoder("utf-8")("replace")

    def data(self, chunk: bytes) -> None:
        text = self._utf8.decode(chunk)
        if text:
            append_line(self.path, {"ts": now(), "request_id": self.request_id, "data": text})

    def end(self, reason: str) -> None:  # complete | client_closed | upstream_error
        rest = self._utf8.decode(b"", final=True)
        if rest:
            append_line(self.path, {"ts": now(), "request_id": self.request_id, "data": rest})
        append_line(self.path, {"ts": now(), "request_id": self.request_id, "end": reason})


def access_record(
    request: web.Request,
    request_id: str,
    started: float,
    status: int,
    completed: bool,
    upstream: str,
    upstream_status: int | None,
    upstream_headers: dict[str, str],
) -> dict:
    """The access line (preset nginx_json): who, what, how it ended, the rate-limit headers."""
    h = request.headers
    rec = {
        "ts": now(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
        "request_id": request_id,
        "remote_addr": request.remote or "",
        "method": request.method,
        "uri": request.path_qs,
        "status": status,
        "request_time": round(time.monotonic() - started, 3),
        "request_completion": "OK" if completed else "",  # "" = the client went away
        "upstream_host": upstream.split("://", 1)[-1],
        "upstream_status": str(upstream_status) if upstream_status else "-",
        "req_user_agent": h.get("user-agent", ""),
        "req_x_stainless_retry_count": h.get("x-stainless-retry-count", ""),
        "api_key": api_key(h),  # the sidecar hashes it; keep this log 0640
        "client_request_id": h.get("x-client-request-id", ""),
        **{key: h.get(name, "") for name, key in WHO.items()},
    }
    for name, value in upstream_headers.items():  # resp_<name with - as _>
        name = name.lower()
        if name in LOGGED_RESPONSE_HEADERS or name.startswith(LOGGED_RESPONSE_PREFIXES):
            rec["resp_" + name.replace("-", "_")] = value
    return rec


def api_key(h: Mapping[str, str]) -> str:
    """The raw key, whichever header carried it (OpenAI, Anthropic, Azure, Gemini)."""
    auth = h.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return next((h[n] for n in ("x-api-key", "api-key", "x-goog-api-key") if h.get(n)), "")


def now() -> float:
    return round(time.time(), 3)


# ---- the gateway ------------------------------------------------------------------------------
def make_app(logs: Path, session: aiohttp.ClientSession | None = None) -> web.Application:
    """The app; `session` (tests) replaces the default client session (TLS, resolver)."""
    app = web.Application(client_max_size=32 << 20)
    access_path, body_path = logs / "access.log", logs / "body.log"

    async def start(app: web.Application) -> None:
        app[SESSION] = session or aiohttp.ClientSession(auto_decompress=False)

    async def stop(app: web.Application) -> None:
        if session is None:
            await app[SESSION].close()

    async def proxy(request: web.Request) -> web.StreamResponse:
        started, rid = time.monotonic(), uuid.uuid4().hex
        upstream = next((u for p, u in ROUTES if request.path.startswith(p)), None)
        if upstream is None:
            raise web.HTTPNotFound()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in NOT_FORWARDED}
        body = BodyLog(body_path, rid)
        status, up_status, up_headers, completed, end = 502, None, {}, True, "upstream_error"
        resp: web.StreamResponse | None = None
        try:
            url, data = upstream + request.path_qs, await request.read()
            async with request.app[SESSION].request(
                request.method,
                url,
                headers=headers,
                data=data,
                skip_auto_headers=("Accept-Encoding",),  # no gzip: keep the body log text
            ) as up:
                up_status, up_headers = up.status, dict(up.headers)
                resp = web.StreamResponse(status=up.status)
                for k, v in up.headers.items():
                    if k.lower() not in NOT_FORWARDED | {"date", "server"}:
                        resp.headers.add(k, v)
                resp.headers["X-Proxy-Request-Id"] = rid
                await resp.prepare(request)
                status = up.status
                async for chunk in up.content.iter_any():
                    body.data(chunk)
                    await resp.write(chunk)
                await resp.write_eof()
                end = "complete"
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            completed, end = False, "client_closed"  # the client hung up
            status = status if resp is not None and resp.prepared else 499
        except aiohttp.ClientError:
            end = "upstream_error"
        finally:
            body.end(end)
            rec = access_record(
                request, rid, started, status, completed, upstream, up_status, up_headers
            )
            append_line(access_path, rec)
        return resp if resp is not None else web.Response(status=502)

    app.router.add_route("*", "/{tail:.*}", proxy)
    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    return app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", default="127.0.0.1:8080")
    ap.add_argument("--logs", type=Path, default=Path("logs"))
    args = ap.parse_args()
    host, port = args.listen.rsplit(":", 1)
    args.logs.mkdir(parents=True, exist_ok=True)
    web.run_app(make_app(args.logs), host=host, port=int(port))


if __name__ == "__main__":
    main()
