"""Token estimation: offline encodings, fixture counts, tool calls, fallback, calibration."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import orjson
import pytest

from sidecar.config import Tokens
from sidecar.enrich import calibration as cal
from sidecar.enrich import tokenizer
from sidecar.enrich import tokens as tk
from sidecar.enrich.tokens import TokenEstimator
from sidecar.types import (
    TOKENS_ESTIMATED_HEURISTIC,
    TOKENS_ESTIMATED_TIKTOKEN,
    ParsedBody,
    Usage,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "recorded"  # as conftest.py


def sse_payloads(name: str) -> list[dict]:
    out = []
    for line in (FIXTURES / name).read_text(encoding="utf-8").splitlines():
        if line.startswith("data:") and line[5:].strip() != "[DONE]":
            out.append(orjson.loads(line[5:].strip()))
    return out


def chat_pieces(name: str, *, tools: bool = False) -> list[str]:
    """choices[0].delta.content (and, with tools, tool-call names and arguments), in order."""
    pieces = []
    for d in sse_payloads(name):
        for choice in d.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("content"):
                pieces.append(delta["content"])
            if tools:
                for call in delta.get("tool_calls") or []:
                    fn = call.get("function") or {}
                    pieces += [p for p in (fn.get("name"), fn.get("arguments")) if p]
    return pieces


def chat_usage(name: str) -> dict | None:
    usage = None
    for d in sse_payloads(name):
        usage = d.get("usage") or usage
    return usage


def estimator(**kw) -> TokenEstimator:
    return TokenEstimator(Tokens(**kw))


def body(pieces: list[str], model: str | None = None, hint: bool = False) -> ParsedBody:
    return ParsedBody(model=model, output_text=list(pieces), reasoning_model_hint=hint)


def completed(pieces: list[str], output: int, reasoning: int = 0) -> ParsedBody:
    return ParsedBody(
        output_text=list(pieces), usage=Usage(output_tokens=output, reasoning_tokens=reasoning)
    )


# --- offline loading --------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import json, os, socket, sys

    def refuse(*a, **k):
        raise OSError("network used in an offline test")

    socket.socket.connect = refuse
    socket.create_connection = refuse

    from sidecar.config import Tokens
    from sidecar.enrich.tokens import TokenEstimator
    from sidecar.types import ParsedBody

    est = TokenEstimator(Tokens())
    a = est.estimate(ParsedBody(output_text=["Foo", "!"]), model="gpt-4o")
    b = est.estimate(ParsedBody(output_text=json.loads(sys.argv[1])), model="gpt-3.5-turbo")
    print(json.dumps({
        "gpt4o": [a.output_tokens, a.token_source],
        "gpt35": [b.output_tokens, b.token_source],
        "encoders": est.metrics()["encoders"],
    }))
    """
)


def test_encodings_load_offline_in_a_fresh_process(tmp_path: Path) -> None:
    env = {
        k: v for k, v in os.environ.items() if k not in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR")
    }
    env.update(
        HTTPS_PROXY="http://127.0.0.1:9",
        HTTP_PROXY="http://127.0.0.1:9",
        https_proxy="http://127.0.0.1:9",
        http_proxy="http://127.0.0.1:9",
        TMPDIR=str(tmp_path),  # tiktoken's default cache (<tmp>/data-gym-cache) is empty here
    )
    pieces = chat_pieces("openai_chat_nousage_1.sse")
    run = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(pieces)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["gpt4o"] == [2, TOKENS_ESTIMATED_TIKTOKEN]
    assert out["gpt35"] == [24, TOKENS_ESTIMATED_TIKTOKEN]  # cl100k_base
    assert out["encoders"] == {"o200k_base": "tiktoken", "cl100k_base": "tiktoken"}
    assert not (tmp_path / "data-gym-cache").exists()


def test_warm_up_loads_both_encodings(tmp_path: Path) -> None:
    folder = tmp_path / "enc"
    shutil.copytree(tk.BUNDLED_DIR, folder)
    est = estimator(encodings_dir=str(folder))
    assert set(est.metrics()["encoders"].values()) == {"not_loaded"}
    est.warm_up()
    assert set(est.metrics()["encoders"].values()) == {"tiktoken"}


# --- counts on the recorded streams -----------------------------------------------------------


def test_o200k_matches_reported_completion_tokens_gpt4o() -> None:
    pieces = chat_pieces("openai_chat_usage_2.sse")  # gpt-4o-2024-08-06, "Foo!"
    reported = chat_usage("openai_chat_usage_2.sse")["completion_tokens"]
    enc = tk.get_encoder("o200k_base")
    assert len(enc.encode_ordinary("".join(pieces))) == reported == 2
    est = estimator().estimate(body(pieces), model="gpt-4o-2024-08-06")
    assert (est.output_tokens, est.token_source) == (2, TOKENS_ESTIMATED_TIKTOKEN)
    assert not est.lower_bound and est.input_tokens is None


def test_counts_of_the_streams_without_usage() -> None:
    # gpt-4o-mini on Azure (o200k_base) and gpt-3.5-turbo (cl100k_base): no usage in the body.
    est = estimator()
    azure = est.estimate(body(chat_pieces("azure_chat_nousage_1.sse")), model="gpt-4o-mini")
    assert azure.output_tokens == 10
    old = est.estimate(body(chat_pieces("openai_chat_nousage_1.sse")), model="gpt-3.5-turbo-0125")
    assert old.output_tokens == 24


def test_responses_deltas_within_one_token_of_reported() -> None:
    pieces, usage = [], None
    for d in sse_payloads("openai_responses_usage_1.sse"):
        if d["type"] == "response.output_text.delta":
            pieces.append(d["delta"])
        if d["type"] == "response.completed":
            usage = d["response"]["usage"]
    est = estimator().estimate(body(pieces), model="gpt-4o-2024-08-06")
    assert (est.output_tokens, usage["output_tokens"]) == (10, 11)


def test_tool_calls_are_counted() -> None:
    name = "openai_chat_usage_1.sse"  # gpt-4o-mini, a tool call only, 15 completion tokens
    reported = chat_usage(name)["completion_tokens"]
    est = estimator()
    content_only = est.estimate(body(chat_pieces(name)), model="gpt-4o-mini")
    with_tools = est.estimate(body(chat_pieces(name, tools=True)), model="gpt-4o-mini")
    assert content_only.output_tokens == 0
    assert with_tools.output_tokens == 8  # "get_capital" + '{"country":"France"}'-like args
    assert 0 < with_tools.output_tokens <= reported == 15


# --- model -> encoding ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "encoding", "exact"),
    [
        ("gpt-4o", "o200k_base", True),
        ("gpt-4o-mini-2024-07-18", "o200k_base", True),
        ("openai/gpt-4.1-nano", "o200k_base", True),
        ("azure/gpt-4.5-preview", "o200k_base", True),
        ("gpt-5-mini", "o200k_base", True),
        ("o1", "o200k_base", True),
        ("o3-mini", "o200k_base", True),
        ("o4-mini-2025-04-16", "o200k_base", True),
        ("chatgpt-4o-latest", "o200k_base", True),
        ("gpt-oss-120b", "o200k_base", True),
        ("ft:gpt-4o-mini:org::abc", "o200k_base", True),
        ("gpt-4", "cl100k_base", True),
        ("gpt-4-turbo-2024-04-09", "cl100k_base", True),
        ("gpt-3.5-turbo-0125", "cl100k_base", True),
        ("gpt-35-turbo", "cl100k_base", True),
        ("text-embedding-3-small", "cl100k_base", True),
        ("claude-sonnet-4-5", "o200k_base", False),
        ("gemini-2.5-flash", "o200k_base", False),
        ("meta-llama/llama-3.1-70b", "o200k_base", False),
        ("omni-moderation-latest", "o200k_base", False),
        (None, "o200k_base", False),
    ],
)
def test_encoding_per_model(model: str | None, encoding: str, exact: bool) -> None:
    assert tk.encoding_for(model) == (encoding, exact)


def test_cl100k_and_o200k_differ_where_they_should() -> None:
    text = "नमस्ते दुनिया, यह एक परीक्षण है।"  # o200k_base is much denser on Devanagari
    est = estimator()
    new = est.estimate(body([text]), model="gpt-4o").output_tokens
    old = est.estimate(body([text]), model="gpt-4").output_tokens
    assert new < old


# --- heuristic fallback -----------------------------------------------------------------------


def test_bad_encodings_dir_falls_back_with_one_warning(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="sidecar.tokens")
    est = estimator(encodings_dir=str(tmp_path / "missing"))
    text = "Why did the developer go broke?"
    for model in ("gpt-4o", "gpt-3.5-turbo", "claude-3-5-haiku", "gpt-4o"):
        e = est.estimate(body([text]), model=model, request_body='{"input": "abcdefgh"}')
        assert e.token_source == TOKENS_ESTIMATED_HEURISTIC
        assert e.output_tokens == math.ceil(len(text) / 4)
        # "user" + 8 chars = 12 chars / 4, one message, reply priming
        assert e.input_tokens == 3 + 3 + 3
    warnings = [r for r in caplog.records if r.name == "sidecar.tokens"]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert "heuristic" in warnings[0].getMessage()
    m = est.metrics()
    assert m["encoders"] == {"o200k_base": "heuristic", "cl100k_base": "heuristic"}
    assert m["heuristic_fallbacks"] == 8
    assert m["estimates"] == {TOKENS_ESTIMATED_HEURISTIC: 4}


def test_corrupt_encoding_file_is_not_handed_to_tiktoken(tmp_path: Path, caplog) -> None:
    folder = tmp_path / "enc"
    shutil.copytree(tk.BUNDLED_DIR, folder)
    filename = tokenizer._ENCODING_FILES["o200k_base"][0]
    (folder / filename).write_bytes(b"garbage\n")
    est = estimator(encodings_dir=str(folder))
    assert est.estimate(body(["Foo!"]), model="gpt-4o").token_source == TOKENS_ESTIMATED_HEURISTIC
    # tiktoken deletes a cache file with a bad hash and downloads it again: it never saw this one
    assert (folder / filename).read_bytes() == b"garbage\n"
    # the other encoding in the same folder is fine
    assert est.estimate(body(["Foo!"]), model="gpt-4").token_source == TOKENS_ESTIMATED_TIKTOKEN
    assert len([r for r in caplog.records if r.name == "sidecar.tokens"]) == 1


# --- calibration switches -------------------------------------------------------------------


def test_calibration_off() -> None:
    est = estimator(calibrate=False)
    assert not est.wants_sample("claude-sonnet-4-5")
    for _ in range(cal.MIN_CALIBRATION_SAMPLES):
        est.observe(completed(["hello world " * 10], output=40), model="claude-sonnet-4-5")
    e = est.estimate(body(["hello world"]), model="claude-sonnet-4-5")
    assert (e.token_source, e.output_tokens) == (TOKENS_ESTIMATED_TIKTOKEN, 2)


def test_openai_models_are_never_scaled() -> None:
    """tiktoken is OpenAI's own tokenizer: no ratio is learned or applied."""
    est = estimator()
    for _ in range(3 * cal.MIN_CALIBRATION_SAMPLES):
        est.observe(completed(["hello world " * 10], output=40), model="gpt-4o")
    e = est.estimate(body(["hello world"]), model="gpt-4o")
    assert (e.token_source, e.output_tokens, e.calibration_ratio) == (
        TOKENS_ESTIMATED_TIKTOKEN,
        2,
        None,
    )
    m = est.metrics()["models"]["gpt-4o"]
    assert m["ratio"] is None and m["mape_uncalibrated_pct"] > 40  # measured, not corrected


def test_observe_ignores_streams_without_usage_or_model() -> None:
    est = estimator()
    est.observe(ParsedBody(output_text=["x"]), model="gpt-4o")  # no usage
    est.observe(completed(["x"], output=0), model="gpt-4o")  # nothing generated
    est.observe(completed(["x"], output=3), model=None)  # no model
    assert est.metrics()["models"] == {}


def test_wants_sample_warm_up_then_one_in_n() -> None:
    est = estimator(calibration_sample_every=10)
    answers = [est.wants_sample("gpt-4o") for _ in range(60)]
    assert all(answers[: tk.WARMUP_SAMPLES])
    after = [i + 1 for i, a in enumerate(answers) if a and i >= tk.WARMUP_SAMPLES]
    assert after == [30, 40, 50, 60]
    assert est.wants_sample("gpt-4o-mini")  # per model
    assert not est.wants_sample(None)


# --- input tokens: basics (the rules against recorded requests: test_estimation.py) -----------


def n(text: str) -> int:
    return len(tk.get_encoder("o200k_base").encode_ordinary(text))


def test_input_known_value_chat() -> None:
    req = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Say hello"}]}
    # cookbook: 3 per message + role + content + 3 for the reply
    assert estimator().count_input(json.dumps(req), "gpt-4o") == 3 + 1 + 2 + 3


def test_input_embeddings() -> None:
    est = estimator()
    req = {"model": "text-embedding-3-small", "input": ["hello world", "foo"]}
    assert est.count_input(json.dumps(req), None) == 2 + 1  # no chat framing; cl100k_base
    assert est.count_input(json.dumps({"input": [[1, 2, 3], [4, 5]], "dimensions": 8}), None) == 5


@pytest.mark.parametrize("raw", [None, "", "not json", "[1, 2]", '{"model": "gpt-4o"}', "{"])
def test_input_unknown_is_none(raw: str | None) -> None:
    assert estimator().count_input(raw, "gpt-4o") is None


def test_count_all_is_the_sum_of_the_counts_whatever_the_memo_holds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`count_all` reads the memo of short counts itself: on an empty memo, a warm one, one
    that fills up and starts afresh meanwhile, it gives what counting each text gives, for
    short, long, empty, repeated, non-ASCII and special-token texts."""
    enc = tokenizer.get_encoder(tokenizer.O200K)
    assert enc is not None
    texts = ["", " the", " the", "Hello", "\n\n", "<|endoftext|>", "é漢字🙂", " x" * 40]
    texts += [f" w{i}" for i in range(60)] + ["a" * 24, "a" * 25, " the"]
    monkeypatch.setattr(tokenizer, "_COUNTS", {})
    monkeypatch.setattr(tokenizer, "_MEMO_SIZE", 16)  # fills and starts afresh on the way
    expected = [len(enc.encode_ordinary(t)) for t in texts]
    assert tokenizer.count_all(enc, texts) == sum(expected)  # no memo yet
    assert tokenizer.count_all(enc, texts) == sum(expected)  # a memo, cleared on the way
    assert tokenizer.count_all(enc, iter(texts[:5])) == sum(expected[:5])
    assert tokenizer.count_all(enc, []) == 0
    assert sum(tokenizer.count(enc, t) for t in texts) == sum(expected)


def test_is_degenerate_counts_the_pieces_as_one_text() -> None:
    """`is_degenerate` counts the blanks of the joined text: the same as summing each piece's
    (one-character patterns cannot straddle two pieces), on texts around the threshold."""
    import random

    def per_piece(texts: list[str]) -> bool:
        size = sum(map(len, texts))
        if not size:
            return True
        blank = sum(t.count(" ") + t.count("\n") + t.count("\r") + t.count("\t") for t in texts)
        return size - blank < cal.MIN_NON_SPACE * size

    rng = random.Random(7)
    alphabet = [" ", "\n", "\r", "\t", "a", "é", "漢", "\r\n", "  "]
    seen = set()
    for _ in range(3000):
        texts = [
            "".join(rng.choices(alphabet, k=rng.randint(0, 6))) for _ in range(rng.randint(0, 8))
        ]
        got = cal.is_degenerate(texts)
        assert got == per_piece(texts), texts
        seen.add(got)
    assert seen == {True, False} and cal.is_degenerate([]) and cal.is_degenerate(["", ""])


def test_stats_by_served_name_are_the_normalised_models() -> None:
    """Every spelling of a model finds the one entry of its normalised name."""
    est = TokenEstimator(Tokens())
    assert est._stats("openai/GPT-4o", False) is None  # create=False makes none
    stats = est._stats("gpt-4o", True)
    assert stats is not None
    for name in ("openai/GPT-4o", "GPT-4o", "gpt-4o", "azure/gpt-4o"):
        assert est._stats(name, False) is stats
    other = est._stats("claude-sonnet-4", True)
    assert other is not None and other is not stats
    assert est._stats("", True) is None and est._stats(None, True) is None
    assert list(est._models) == ["gpt-4o", "claude-sonnet-4"]
