"""`llm-hec-sidecar usage FILE...` as a real subprocess on the recorded fixtures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "recorded"
KEYS = [
    "file",
    "provider",
    "api",
    "model",
    "status",
    "finish_reason",
    "input_tokens",
    "cached_input_tokens",
    "cache_write_input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "total_tokens",
    "tokens_estimated",
    "token_source",
    "estimated_cost_usd",
    "cost_known",
    "cost_status",
    "estimate_lower_bound",
    "calibration_ratio",
]


def usage(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIKTOKEN")}
    return subprocess.run(
        [sys.executable, "-m", "sidecar.cli", "usage", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def rows(out: str) -> dict[str, dict]:
    return {Path(r["file"]).name: r for r in map(orjson.loads, out.splitlines())}


def test_every_fixture_prints_one_row_with_the_schema_keys() -> None:
    files = sorted(str(p) for p in FIXTURES.iterdir() if p.suffix in (".sse", ".json"))
    proc = usage(*files)
    assert proc.returncode == 0, proc.stderr
    got = rows(proc.stdout)
    assert len(got) == len(files)
    for row in got.values():
        assert list(row) == KEYS


def test_values_match_the_recorded_usage() -> None:
    proc = usage(
        str(FIXTURES / "anthropic_cache_write_1.sse"),
        str(FIXTURES / "openai_responses_reasoning_1.sse"),
        str(FIXTURES / "vertex_stream_1.sse"),
        str(FIXTURES / "openai_chat_nousage_1.sse"),
        str(FIXTURES / "openrouter_chat_error_midstream_1.sse"),
    )
    assert proc.returncode == 0, proc.stderr
    r = rows(proc.stdout)
    a = r["anthropic_cache_write_1.sse"]
    assert (a["provider"], a["api"], a["status"]) == ("anthropic", "messages", "ok")
    # input_tokens 4 + cache write 1165; output from the message_delta
    assert (a["input_tokens"], a["cache_write_input_tokens"], a["output_tokens"]) == (
        1169,
        1165,
        201,
    )
    assert a["cost_status"] == "priced" and a["cost_known"] and a["estimated_cost_usd"] > 0
    o = r["openai_responses_reasoning_1.sse"]
    assert (o["api"], o["input_tokens"], o["output_tokens"], o["reasoning_tokens"]) == (
        "responses",
        53,
        469,
        448,
    )
    v = r["vertex_stream_1.sse"]
    # thoughtsTokenCount is outside candidatesTokenCount: output = 1 + 100
    assert (v["provider"], v["output_tokens"], v["reasoning_tokens"]) == ("vertex", 101, 100)
    n = r["openai_chat_nousage_1.sse"]
    assert n["tokens_estimated"] and n["token_source"] == "estimated_tiktoken"
    assert n["output_tokens"] > 0 and n["input_tokens"] is None and n["cost_status"] == "estimated"
    e = r["openrouter_chat_error_midstream_1.sse"]
    assert e["status"] == "error" and e["input_tokens"] == 43


def test_unreadable_and_unparseable_files_fail_after_the_others(tmp_path: Path) -> None:
    junk = tmp_path / "junk.txt"
    junk.write_text("hello, this is not a response body\n")
    good = FIXTURES / "openai_chat_usage_2.sse"
    proc = usage(str(tmp_path / "missing.sse"), str(junk), str(good))
    assert proc.returncode == 1
    assert "missing.sse: cannot read" in proc.stderr
    assert "junk.txt: no provider response found" in proc.stderr
    assert list(rows(proc.stdout)) == ["openai_chat_usage_2.sse"]


def test_provider_override() -> None:
    proc = usage("--provider", "azure", str(FIXTURES / "openai_chat_usage_2.sse"))
    assert proc.returncode == 0, proc.stderr
    assert rows(proc.stdout)["openai_chat_usage_2.sse"]["provider"] == "azure"
