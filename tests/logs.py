"""Log lines for tests that drive a running sidecar: one request in the shapes the shipped nginx
config writes, appended to real files."""

from __future__ import annotations

import time
from pathlib import Path

import orjson


def custom_request(rid: str, prompt_tokens: int) -> tuple[bytes, list[bytes]]:
    body = orjson.dumps(
        {
            "id": "chatcmpl-x",
            "object": "chat.completion",
            "model": "my-llama-70b",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "hi"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": 0,
                "total_tokens": prompt_tokens,
            },
        }
    ).decode()
    access = orjson.dumps(
        {
            "ts": time.time(),
            "request_id": rid,
            "uri": "/v1/chat/completions",
            "status": 200,
            "upstream_host": "llm.internal",
            "request_completion": "OK",
            "resp_content_type": "application/json",
        }
    )
    lines = [
        orjson.dumps({"ts": time.time(), "request_id": rid, "data": body}),
        orjson.dumps({"ts": time.time(), "request_id": rid, "end": "complete"}),
    ]
    return access, lines


def append(path: Path, lines: list[bytes]) -> None:
    with path.open("ab") as fh:
        fh.write(b"".join(x + b"\n" for x in lines))
