"""`llm-hec-sidecar usage FILE...` as a real subprocess on the recorded fixtures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

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


POOL = REPO / "tests" / "fixtures" / "streams-pool" / "anthropic"


def _cut(text: str) -> str:
    """An Anthropic stream cancelled before its final message_delta."""
    blocks = text.split("\n\n")
    return "\n\n".join(b for b in blocks if "message_delta" not in b and "message_stop" not in b)


@pytest.mark.slow
def test_each_file_on_its_own_and_order_does_not_matter(tmp_path: Path) -> None:
    """A cut stream's estimate never depends on the files given before it; with
    --share-calibration every file is described against the same calibration, whatever the
    order. (Before: 471 tokens alone, 3,232 after 20 other files.)"""
    # claude-sonnet-4-5 streams with usage, and a cut one of the same model
    complete = [str(POOL / f"apool{i:03d}.sse") for i in (126, 127, 128, 129, 130, 131, 143)]
    cut = tmp_path / "cut.sse"
    cut.write_text(_cut((POOL / "apool145.sse").read_text(encoding="utf-8")), encoding="utf-8")
    alone = rows(usage(str(cut)).stdout)["cut.sse"]
    forward = usage(*complete, str(cut))
    backward = usage(str(cut), *reversed(complete))
    assert forward.returncode == backward.returncode == 0, forward.stderr
    assert rows(forward.stdout) == rows(backward.stdout)
    assert rows(forward.stdout)["cut.sse"] == alone
    assert alone["tokens_estimated"] and alone["calibration_ratio"] is None
    assert alone["estimate_lower_bound"] is False

    shared_fwd = usage("--share-calibration", *complete, str(cut))
    shared_back = usage("--share-calibration", str(cut), *reversed(complete))
    assert rows(shared_fwd.stdout) == rows(shared_back.stdout)
    calibrated = rows(shared_fwd.stdout)["cut.sse"]
    assert calibrated["token_source"] == "estimated_calibrated"
    assert calibrated["calibration_ratio"] is not None and calibrated["calibration_ratio"] > 1


def test_request_file_gives_the_input_estimate(tmp_path: Path) -> None:
    request = tmp_path / "request.json"
    request.write_text(
        '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Tell me a joke"}]}'
    )
    proc = usage("--request", str(request), str(FIXTURES / "openai_chat_nousage_1.sse"))
    assert proc.returncode == 0, proc.stderr
    row = rows(proc.stdout)["openai_chat_nousage_1.sse"]
    assert row["tokens_estimated"] and row["input_tokens"] == 3 + 1 + 4 + 3
    assert row["estimate_lower_bound"] is False and row["calibration_ratio"] is None
