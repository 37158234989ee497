"""The naive baseline of bench/bench_e2e.py: usage shipping written the way the systems this
sidecar replaces do it (a log shipper's JSON parser plus a script filter, or a small Python
script), with the standard library only.

    python bench/naive_shipper.py ACCESS_LOG BODY_LOG HEC_URL TOKEN

- every line of both logs goes through `json.loads`;
- body records are reassembled per request (the `data` strings concatenated until the `end`
  record), then the usage is read from the whole body: for an event stream, the events that
  mention usage are decoded (walking from the end, OpenAI / Anthropic / Gemini shapes), for a
  JSON body the body itself;
- each access line is joined with its request's usage, and the event is sent to HEC in a
  request of its own (one keep-alive connection, no gzip: one event per request).

It is a fair baseline, not a straw man: it skips SSE events without usage instead of decoding
them all, and prices nothing. It prints `events sent N` on stdout.
"""

from __future__ import annotations

import http.client
import json
import sys
from urllib.parse import urlsplit

TOKEN_FIELDS = (
    "input_tokens",
    "cached_input_tokens",
    "cache_write_input_tokens",
    "output_tokens",
    "reasoning_tokens",
)


def sse_payloads(body: str) -> list[str]:
    """The `data:` payloads of an event stream, in order."""
    out = []
    for event in body.replace("\r\n", "\n").split("\n\n"):
        for line in event.split("\n"):
            if line.startswith("data:"):
                out.append(line[5:].strip())
    return out


def usage_of(body: str) -> tuple[str | None, dict | None]:
    """(served model, normalised usage) of one reassembled body, None when there is none."""
    if body.startswith(("data:", "event:")):
        model = None
        anthropic: dict = {}
        for payload in reversed(sse_payloads(body)):
            if "usage" not in payload or not payload.startswith("{"):
                continue
            try:
                obj = json.loads(payload)
            except ValueError:  # a stream cut inside an event (the client went away)
                continue
            model = model or obj.get("model")
            if obj.get("usage") and "choices" in obj:  # OpenAI chat: the usage chunk
                return obj.get("model"), openai_usage(obj["usage"])
            if "usageMetadata" in obj:  # Gemini: the last snapshot is authoritative
                return obj.get("modelVersion"), gemini_usage(obj["usageMetadata"])
            if obj.get("type") == "message_delta":
                anthropic = {**anthropic, **obj["usage"]}
            elif obj.get("type") == "message_start":
                model = obj["message"]["model"]
                anthropic = {**obj["message"]["usage"], **anthropic}
                return model, anthropic_usage(anthropic)
        return model, None
    try:
        obj = json.loads(body)
    except ValueError:
        return None, None
    if isinstance(obj, dict) and isinstance(obj.get("usage"), dict):
        return obj.get("model"), openai_usage(obj["usage"])
    return None, None


def openai_usage(u: dict) -> dict:
    return dict(
        zip(
            TOKEN_FIELDS,
            (
                u["prompt_tokens"],
                (u.get("prompt_tokens_details") or {}).get("cached_tokens", 0),
                0,
                u["completion_tokens"],
                (u.get("completion_tokens_details") or {}).get("reasoning_tokens", 0),
            ),
            strict=True,
        )
    )


def anthropic_usage(u: dict) -> dict:
    read = u.get("cache_read_input_tokens", 0)
    write = u.get("cache_creation_input_tokens", 0)
    return dict(
        zip(
            TOKEN_FIELDS,
            (u["input_tokens"] + read + write, read, write, u["output_tokens"], 0),
            strict=True,
        )
    )


def gemini_usage(u: dict) -> dict:
    thoughts = u.get("thoughtsTokenCount", 0)
    out = u.get("candidatesTokenCount", 0) + thoughts
    return dict(zip(TOKEN_FIELDS, (u["promptTokenCount"], 0, 0, out, thoughts), strict=True))


def status_of(access: dict) -> str:
    code = access["status"]
    if code == 429:
        return "rate_limited"
    if code == 499 or (code == 200 and access.get("request_completion") != "OK"):
        return "cancelled"
    return "ok" if code < 400 else "error"


def main(argv: list[str]) -> int:
    access_log, body_log, url, token = argv
    parts: dict[str, list[str]] = {}
    bodies: dict[str, tuple[str | None, dict | None]] = {}
    with open(body_log, "rb") as fh:
        for line in fh:
            rec = json.loads(line)
            rid = rec["request_id"]
            if "data" in rec:
                parts.setdefault(rid, []).append(rec["data"])
            elif "end" in rec:
                bodies[rid] = usage_of("".join(parts.pop(rid, ())))
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    headers = {"Authorization": f"Splunk {token}", "Content-Type": "application/json"}
    sent = 0
    with open(access_log, "rb") as fh:
        for line in fh:
            a = json.loads(line)
            model, usage = bodies.pop(a["request_id"], (None, None))
            status = status_of(a)
            if usage is not None and status == "cancelled":
                status = "ok"  # the stream ended with its usage: the client left after it
            event = {
                "request_id": a["request_id"],
                "provider": a["upstream_host"],
                "model": model,
                "http_status": a["status"],
                "status": status,
                "user": a["user"],
                "tenant": a["tenant"],
                **(usage or dict.fromkeys(TOKEN_FIELDS)),
            }
            payload = json.dumps({"time": a["ts"], "sourcetype": "llm:usage", "event": event})
            conn.request("POST", "/services/collector/event", payload, headers)
            reply = conn.getresponse()
            reply.read()
            if reply.status != 200:
                raise SystemExit(f"HEC answered {reply.status}")
            sent += 1
    conn.close()
    print(f"events sent {sent}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
