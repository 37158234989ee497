"""Log lines for tests that drive a running sidecar: one request in the shapes the shipped nginx
config writes, appended to real files."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import orjson

# the token counts of an event that the generator's truth.json gives per request
TOKEN_FIELDS = (
    "input_tokens",
    "cached_input_tokens",
    "cache_write_input_tokens",
    "output_tokens",
    "reasoning_tokens",
)


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


def file_sink_config(tmp: Path, logs: Path, **top: object) -> Path:
    """A config reading logs/access.log and logs/body.log into tmp/events.ndjson (JSON is YAML);
    `top` adds or replaces top-level keys."""
    cfg = {
        "sources": [
            {
                "name": "proxy",
                "access_log": {"paths": [str(logs / "access.log")]},
                "body_log": {"paths": [str(logs / "body.log")]},
            }
        ],
        "identity": {"hash_key": "k"},
        "state_dir": str(tmp / "state"),
        "sinks": [{"type": "file", "path": str(tmp / "events.ndjson")}],
        **top,
    }
    (tmp / "config.yaml").write_bytes(orjson.dumps(cfg))
    return tmp / "config.yaml"


def run_once(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`python -m sidecar.cli run --once ARGS` to its end (it must succeed)."""
    proc = subprocess.run(
        [sys.executable, "-m", "sidecar.cli", "run", "--once", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc
