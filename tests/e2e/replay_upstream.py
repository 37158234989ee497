"""A provider API that replays the repository's recorded streams (TLS on 127.0.0.1, stdlib only).

Used by the SDK end-to-end test. Each request names, in the test-only header `x-replay`, the
recorded fixture to answer with (a file stem of `tests/fixtures/recorded/`, e.g.
`openai_chat_usage_1`), optionally followed by `;fail=<status>x<n>` (the first n attempts of that
logical call, counted per `X-Client-Request-Id`, get an error reply instead) and `;gap=<ms>`
(another pace between events).

* A stream (`"stream": true`, or a Gemini `:streamGenerateContent` URL) is sent exactly as
  recorded, one SSE event per HTTP chunk, `EVENT_GAP_SECS` apart, with the recorded response
  headers of the fixture's `.source.txt` (`Date` left to the server).
* A non-streaming chat request gets the `chat.completion` JSON built from the recorded stream: the
  same id, model, message (text or tool calls), finish reason and the recorded usage.
* `fail=429xN`: a 429 rate-limit error with `RATE_LIMITED_HEADERS` (limits, reset, `retry-after`
  and `retry-after-ms`); `fail=500xN`: a 500 server error. Both are JSON, as the APIs send them.

Every attempt is recorded in `ReplayUpstream.attempts` (fixture, status served, the
`x-stainless-retry-count` and `X-Client-Request-Id` it carried, whether the reply was sent to the
end, and the request path), so the test can tell what reached the provider.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fake_upstream import FakeUpstream, _Handler

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "recorded"
EVENT_GAP_SECS = 0.02  # between two SSE events of a stream: "tens of ms", like the real APIs
RATE_LIMITED_HEADERS = {
    "x-request-id": "req_ratelimited",
    "x-ratelimit-limit-requests": "500",
    "x-ratelimit-remaining-requests": "0",
    "x-ratelimit-reset-requests": "120ms",
    "x-ratelimit-limit-tokens": "30000",
    "x-ratelimit-remaining-tokens": "0",
    "x-ratelimit-reset-tokens": "1m30s",
    "retry-after": "1",
    "retry-after-ms": "150",  # the SDKs prefer it over retry-after: keeps the test quick
}
_EVENT = re.compile(rb".*?(?:\r\n\r\n|\n\n)|.+$", re.S)


@dataclass(frozen=True)
class Fixture:
    name: str
    request_path: str  # the path the recording was made for (without the query)
    headers: dict[str, str]  # recorded response headers, Date excepted
    events: list[bytes]  # the body cut after each blank line (one SSE event each)

    @property
    def body(self) -> bytes:
        return b"".join(self.events)


def load_fixture(name: str) -> Fixture:
    src = (FIXTURES / f"{name}.source.txt").read_text()
    body = next(FIXTURES.glob(f"{name}.sse")).read_bytes()
    path = re.search(r"^request: POST https://[^/]+(/[^?\s]*)", src, re.M)
    assert path is not None, name
    headers: dict[str, str] = {}
    block = src.split("recorded response headers", 1)[1].split("\n---", 1)[0]
    for line in block.splitlines()[1:]:
        k, _, v = line.strip().partition(": ")
        if k and k.lower() != "date":
            headers[k.lower()] = v
    events = _EVENT.findall(body)
    assert b"".join(events) == body, name
    return Fixture(name, path.group(1), headers, events)


def chat_json(fx: Fixture) -> dict[str, Any]:
    """The non-streaming `chat.completion` of a recorded chat stream (same id, usage, output)."""
    chunks = [
        json.loads(e.strip()[len(b"data: ") :])
        for e in fx.events
        if e.startswith(b"data: {") and b'"chat.completion.chunk"' in e
    ]
    text, calls, finish, usage = "", {}, None, None
    for c in chunks:
        usage = c.get("usage") or usage
        for ch in c["choices"]:
            d = ch.get("delta") or {}
            text += d.get("content") or ""
            for tc in d.get("tool_calls") or []:
                cur = calls.setdefault(tc["index"], {"id": tc.get("id"), "type": "function"})
                fn = cur.setdefault("function", {"name": "", "arguments": ""})
                fn["name"] += (tc.get("function") or {}).get("name") or ""
                fn["arguments"] += (tc.get("function") or {}).get("arguments") or ""
            finish = ch.get("finish_reason") or finish
    first = chunks[0]
    message: dict[str, Any] = {"role": "assistant", "content": text or None, "refusal": None}
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    return {
        "id": first["id"],
        "object": "chat.completion",
        "created": first["created"],
        "model": first["model"],
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": usage,
        "service_tier": first.get("service_tier"),
        "system_fingerprint": first.get("system_fingerprint"),
    }


@dataclass
class Attempt:
    fixture: str
    path: str
    client_request_id: str | None
    retry_count: str | None
    status: int = 0
    completed: bool = False
    request_headers: dict[str, str] = field(default_factory=dict)


class _ReplayHandler(_Handler):
    server: Any

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        req = json.loads(self.rfile.read(length) or b"{}")
        spec = self.headers.get("x-replay") or ""
        name, *parts = spec.split(";")
        opts = dict(p.partition("=")[::2] for p in parts)
        crid = self.headers.get("x-client-request-id")
        att = Attempt(
            fixture=name,
            path=self.path,
            client_request_id=crid,
            retry_count=self.headers.get("x-stainless-retry-count"),
            request_headers={k.lower(): v for k, v in self.headers.items()},
        )
        srv = self.server
        with srv.lock:
            srv.attempts.append(att)
            n = srv.calls[crid]
            srv.calls[crid] += 1
        fx = srv.fixtures.get(name)
        # the API part of the path must be the recording's (Azure recordings, made under
        # /openai/..., are replayed on the OpenAI route: the shipped config has no Azure route)
        api = self.path.split("?")[0].removeprefix("/v1")
        if fx is None or not fx.request_path.endswith(api):
            att.status = 404
            self._json(404, {"error": {"message": f"no recording {spec!r} for {self.path}"}}, {})
            return
        try:
            fail = re.fullmatch(r"(\d{3})x(\d+)", opts.get("fail", ""))
            gap = int(opts["gap"]) / 1000 if "gap" in opts else EVENT_GAP_SECS
            if fail and n < int(fail.group(2)):
                att.status = int(fail.group(1))
                self._error(att.status)
            elif req.get("stream") or ":streamGenerateContent" in self.path:
                att.status = 200
                self._head(200, fx.headers["content-type"], fx.headers, chunked=True)
                for i, ev in enumerate(fx.events):
                    if i:
                        time.sleep(gap)
                    self._chunk(ev)
                self._end_chunks()
            else:
                att.status = 200
                headers = {k: v for k, v in fx.headers.items() if k != "content-type"}
                self._json(200, chat_json(fx), headers)
            att.completed = True
        except OSError:  # the proxy hung up: a client cancelled mid-stream
            self.close_connection = True

    def _error(self, status: int) -> None:
        if status == 429:
            err = {
                "message": "Rate limit reached for requests per min (RPM): Limit 500, Used 500.",
                "type": "requests",
                "param": None,
                "code": "rate_limit_exceeded",
            }
            self._json(429, {"error": err}, RATE_LIMITED_HEADERS)
        else:
            err = {
                "message": "The server had an error while processing your request. Sorry!",
                "type": "server_error",
                "param": None,
                "code": None,
            }
            self._json(status, {"error": err}, {"x-request-id": "req_servererror"})


class ReplayUpstream(FakeUpstream):
    """`with ReplayUpstream(cert, key, names) as up:` serves on https://127.0.0.1:`up.port`."""

    def __init__(self, certfile: Path, keyfile: Path, fixtures: list[str]) -> None:
        super().__init__(certfile, keyfile, handler=_ReplayHandler)
        self._server.fixtures = {n: load_fixture(n) for n in fixtures}
        self._server.attempts = []
        self._server.calls = Counter()
        self._server.lock = threading.Lock()

    @property
    def attempts(self) -> list[Attempt]:
        return self._server.attempts

    def fixture(self, name: str) -> Fixture:
        return self._server.fixtures[name]
