"""A fake OpenAI / Anthropic API for the nginx end-to-end test (stdlib only, 127.0.0.1, TLS).

Serves, over HTTP/1.1 with chunked transfer encoding where the real APIs use it:

* `POST /v1/chat/completions`
  - `"stream": true`: ~20 `chat.completion.chunk` events a few ms apart (role chunk, one chunk
    per output token, finish chunk), the `choices: []` usage chunk when
    `stream_options.include_usage` is set, then `data: [DONE]`;
  - otherwise a `chat.completion` JSON with `usage`, gzip-compressed when the request allows it
    (as the real API does: this is what the proxy must prevent by clearing Accept-Encoding);
  - model `force-429`: a 429 rate-limit error with `retry-after` / `retry-after-ms`.
  Every response carries `x-request-id` and `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`.
* `POST /v1/messages` with `"stream": true`: an Anthropic Messages stream (`message_start` with
  usage incl. `cache_read_input_tokens`, deltas, `message_delta` with cumulative usage,
  `message_stop`), with `request-id` and `anthropic-ratelimit-*` headers.

What each request was sent (the true usage) is recorded in `FakeUpstream.records`, keyed by the
response's request id (`x-request-id` / `request-id`), together with the id in the body
(`response_id`) and what the upstream saw of the request (headers, TLS SNI name).
"""

from __future__ import annotations

import gzip
import itertools
import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

OPENAI_MODEL = "gpt-4o-mini-2024-07-18"
ANTHROPIC_MODEL = "claude-sonnet-4-5-20250929"
RATE_LIMIT_HEADERS = {
    "x-ratelimit-limit-requests": "5000",
    "x-ratelimit-remaining-requests": "4987",
    "x-ratelimit-reset-requests": "156ms",
    "x-ratelimit-limit-tokens": "4000000",
    "x-ratelimit-remaining-tokens": "3999000",
    "x-ratelimit-reset-tokens": "15ms",
}
RATE_LIMITED_HEADERS = {
    "x-ratelimit-limit-requests": "500",
    "x-ratelimit-remaining-requests": "0",
    "x-ratelimit-reset-requests": "8.679s",
    "x-ratelimit-limit-tokens": "150000",
    "x-ratelimit-remaining-tokens": "0",
    "x-ratelimit-reset-tokens": "6m0s",
    "retry-after": "9",
    "retry-after-ms": "8679",
}
ANTHROPIC_HEADERS = {
    "anthropic-ratelimit-requests-limit": "4000",
    "anthropic-ratelimit-requests-remaining": "3999",
    "anthropic-ratelimit-requests-reset": "2030-01-01T00:00:01Z",
    "anthropic-ratelimit-tokens-limit": "800000",
    "anthropic-ratelimit-tokens-remaining": "790000",
    "anthropic-ratelimit-tokens-reset": "2030-01-01T00:00:01Z",
}
STREAM_EVENTS = 20  # content chunks per stream (= output tokens)
EVENT_GAP_SECS = 0.015


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    # ---------------------------------------------------------------- helpers
    def _head(self, status: int, ctype: str, headers: dict[str, str], *, chunked: bool) -> None:
        self.send_response(status)
        self.send_header("content-type", ctype)
        for k, v in headers.items():
            self.send_header(k, v)
        if chunked:
            self.send_header("transfer-encoding", "chunked")
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _end_chunks(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _json(self, status: int, obj: Any, headers: dict[str, str]) -> None:
        body = json.dumps(obj, indent=2).encode()
        headers = dict(headers)
        if "gzip" in (self.headers.get("accept-encoding") or ""):
            body = gzip.compress(body)
            headers["content-encoding"] = "gzip"
        headers["content-length"] = str(len(body))
        self._head(status, "application/json", headers, chunked=False)
        self.wfile.write(body)
        self.wfile.flush()

    # ---------------------------------------------------------------- routes
    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        req = json.loads(self.rfile.read(length) or b"{}")
        n = next(self.server.counter)
        rec: dict[str, Any] = {
            "path": self.path,
            "request_headers": {k.lower(): v for k, v in self.headers.items()},
            "sni": getattr(self.connection, "sni_name", None),
            "completed": False,
        }
        try:
            if self.path == "/v1/chat/completions":
                rid = f"req_{n:032x}"
                rec["request_id"] = rid
                self.server.records[rid] = rec
                self._openai(req, n, rid, rec)
            elif self.path == "/v1/messages":
                rid = f"req_011CT{n:024d}"
                rec["request_id"] = rid
                self.server.records[rid] = rec
                self._anthropic(n, rid, rec)
            else:
                self._json(404, {"error": {"message": "not found"}}, {})
                return
            rec["completed"] = True
        except OSError:  # BrokenPipe, ConnectionReset, ssl.SSLError...
            self.close_connection = True  # the proxy hung up (client cancel): expected

    def _openai(self, req: dict, n: int, rid: str, rec: dict) -> None:
        headers = {"x-request-id": rid, "openai-processing-ms": "42", **RATE_LIMIT_HEADERS}
        if req.get("model") == "force-429":
            headers.update(RATE_LIMITED_HEADERS)
            rec["usage"] = None
            self._json(
                429,
                {
                    "error": {
                        "message": "Rate limit reached for requests",
                        "type": "requests",
                        "param": None,
                        "code": "rate_limit_exceeded",
                    }
                },
                headers,
            )
            return
        prompt, cached = 100 + 7 * n, 0
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": STREAM_EVENTS,
            "total_tokens": prompt + STREAM_EVENTS,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
        rec["usage"] = usage
        created = int(time.time())
        cid = f"chatcmpl-fake{n:020d}"
        rec["response_id"] = cid
        words = [f" word{i}" for i in range(STREAM_EVENTS)]
        if not req.get("stream"):
            body = {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": OPENAI_MODEL,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "".join(words)},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
                "service_tier": "default",
                "system_fingerprint": "fp_fake",
            }
            self._json(200, body, headers)
            return
        include_usage = bool((req.get("stream_options") or {}).get("include_usage"))
        rec["include_usage"] = include_usage
        self._head(200, "text/event-stream; charset=utf-8", headers, chunked=True)

        def chunk(choices: list, usage_value: Any = None) -> bytes:
            obj = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": OPENAI_MODEL,
                "service_tier": "default",
                "system_fingerprint": "fp_fake",
                "choices": choices,
            }
            if include_usage:
                obj["usage"] = usage_value
            obj["obfuscation"] = "abc"
            return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"

        def choice(delta: dict, finish: str | None = None) -> list:
            return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]

        self._chunk(chunk(choice({"role": "assistant", "content": "", "refusal": None})))
        for w in words:
            time.sleep(EVENT_GAP_SECS)
            self._chunk(chunk(choice({"content": w})))
        self._chunk(chunk(choice({}, "stop")))
        if include_usage:
            self._chunk(chunk([], usage))
        # [DONE] and the terminating 0-chunk back to back, as the real API sends them.
        self.wfile.write(b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n")
        self.wfile.flush()

    def _anthropic(self, n: int, rid: str, rec: dict) -> None:
        usage_start = {
            "input_tokens": 4 + n,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 1165 + n,
            "output_tokens": 1,
        }
        rec["usage"] = {**usage_start, "output_tokens": STREAM_EVENTS}
        rec["response_id"] = f"msg_fake{n:020d}"
        self._head(
            200,
            "text/event-stream; charset=utf-8",
            {"request-id": rid, **ANTHROPIC_HEADERS},
            chunked=True,
        )

        def ev(name: str, obj: dict) -> None:
            data = json.dumps(obj, separators=(",", ":"))
            self._chunk(f"event: {name}\ndata: {data}\n\n".encode())

        ev(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": rec["response_id"],
                    "type": "message",
                    "role": "assistant",
                    "model": ANTHROPIC_MODEL,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": usage_start,
                },
            },
        )
        ev(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        )
        ev("ping", {"type": "ping"})
        for i in range(STREAM_EVENTS):
            time.sleep(EVENT_GAP_SECS)
            ev(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": f" mot{i} é世🙂"},
                },
            )
        ev("content_block_stop", {"type": "content_block_stop", "index": 0})
        ev(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": STREAM_EVENTS},
            },
        )
        ev("message_stop", {"type": "message_stop"})
        self._end_chunks()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 overflows when the proxy opens several upstream
    # connections at once (TLS handshakes run in the accept loop): the kernel then drops the
    # SYN and the client retries after 1 s
    request_queue_size = 128
    records: dict[str, dict]
    counter: itertools.count


class FakeUpstream:
    """`with FakeUpstream(cert, key) as up:` serves on https://127.0.0.1:`up.port`."""

    def __init__(
        self, certfile: Path, keyfile: Path, *, handler: type[_Handler] = _Handler
    ) -> None:
        self._server = _Server(("127.0.0.1", 0), handler)
        self._server.records = {}
        self._server.counter = itertools.count(1)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(certfile, keyfile)

        def remember_sni(sock: ssl.SSLSocket, name: str | None, _ctx: ssl.SSLContext) -> None:
            sock.sni_name = name  # type: ignore[attr-defined]

        ctx.sni_callback = remember_sni
        self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def records(self) -> dict[str, dict]:
        return self._server.records

    def __enter__(self) -> FakeUpstream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
