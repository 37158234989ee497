"""The text mode's C walk (`sidecar/parse/_textscan.c`, through `Chunks.text_walk`) reads the
usual events itself and hands every other block to Python, so a stream parsed with its text
gives exactly what the pure-Python walk gives (tests/unit/test_text_fast_paths.py compares the
whole `ParsedBody` on every fixture and on hostile streams; here: the C walk's own contract).

- the usual events of each provider are read in C (no block handed back), so the comparisons
  elsewhere compare two different paths;
- hostile payloads (NaN, 1e999, 1E5, leading zeros, control characters, lone surrogate
  escapes, escaped or repeated keys, deep nesting, tool calls, trailing junk, ...) are handed
  back whole, at the offset `Chunks._blocks` gives them;
- any string is decoded as orjson decodes it (escapes, \\u escapes, surrogate pairs,
  non-ASCII, megabytes);
- a character soup framed in any way gives the same answer as the general path;
- text that is not UTF-8 (a lone surrogate) is left to Python untouched; errors propagate;
  nothing is leaked.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.parse.providers import parse_body
from sidecar.parse.providers._common import Chunks
from sidecar.parse.sse import normalise_newlines
from tests.leaks import grown_bytes

if os.environ.get("CI"):  # under CI the extension must be built: a silent fallback fails here
    from sidecar.parse import _textscan as native
else:
    native = pytest.importorskip("sidecar.parse._textscan")

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "recorded"
MODES = ("chat", "gemini", "anthropic")


def run(mode: str, text: str) -> tuple[Any, Any, list[tuple[int, str]]]:
    """(result, target, blocks handed back) of one C walk whose Python side only records."""
    target: Any = {} if mode == "anthropic" else []
    handed: list[tuple[int, str]] = []

    def slow(at: int, block: str) -> bool:
        handed.append((at, block))
        return False

    return getattr(native, mode)(text, target, slow), target, handed


def general_answer(body: str, provider: str, api: str) -> dict[str, Any]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Chunks, "text_walk", lambda self, *a: None)
        return dataclasses.asdict(parse_body(body, provider=provider, api=api, want_text=True))


def fast_answer(body: str, provider: str, api: str) -> dict[str, Any]:
    return dataclasses.asdict(parse_body(body, provider=provider, api=api, want_text=True))


@pytest.mark.parametrize(
    ("name", "mode"),
    [
        ("openai_chat_nousage_1.sse", "chat"),
        ("azure_chat_nousage_1.sse", "chat"),
        ("openai_chat_usage_2.sse", "chat"),
        ("anthropic_cache_read_1.sse", "anthropic"),
        ("anthropic_stream_1.sse", "anthropic"),
        ("gemini_stream_1.sse", "gemini"),
        ("vertex_stream_1.sse", "gemini"),
    ],
)
def test_the_usual_events_are_read_in_c(name: str, mode: str) -> None:
    text = normalise_newlines((FIXTURES / name).read_text(encoding="utf-8"))
    result, target, handed = run(mode, text)
    assert handed == []
    assert target  # text was found
    assert result is not None


def test_what_the_c_walk_reads_is_what_python_reads() -> None:
    """On a stream of usual events the pieces come out in order, the flags right."""
    chunks = [{"choices": [{"index": 0, "delta": {"content": w}}]} for w in ["a", " b", ""]]
    chunks.insert(
        0, {"choices": [{"delta": {"role": "assistant", "content": "", "refusal": None}}]}
    )
    chunks.append({"choices": [{"delta": {"reasoning_content": "r", "refusal": "no"}}]})
    chunks.append({"choices": [], "usage": {"prompt_tokens": 1}})
    text = "".join(f"data: {orjson.dumps(c).decode()}\n\n" for c in chunks) + "data: [DONE]\n\n"
    assert run("chat", text) == (True, ["a", " b", "no", "r"], [])
    text = 'data: {"choices":[{"delta":{"reasoning":"x"}}]}\n\n'
    assert run("chat", text) == (False, ["x"], [])  # reasoning only: not answer text

    text = (
        'data: {"candidates":[{"content":{"parts":[{"text":"a"},{"text":"t","thought":true}]}}]}'
        '\n\ndata: {"candidates":[{"content":{"parts":[{"text":"b","thought":false}]}}]}\n\n'
    )
    assert run("gemini", text) == (True, ["a", "b"], [])

    text = (
        'event: content_block_start\ndata: {"index":0,"content_block":{"type":"tool_use",'
        '"name":"f","input":{}}}\n\nevent: content_block_delta\ndata: {"index":0,"delta":'
        '{"type":"input_json_delta","partial_json":"{\\"a\\""}}\n\n'
        'event: content_block_delta\ndata: {"index":"x","delta":{"text":"t","thinking":"k"}}\n\n'
        'event: content_block_delta\ndata: {"index":1.0,"delta":{"text":"n"}}\n\n'
        'event: ping\ndata: {bad\n\nevent:content_block_start\ndata:{"index":2}\n\n'
    )
    result, blocks, handed = run("anthropic", text)
    assert result is True
    # the ping is skipped, neither decoded nor handed back; the last event (no spaces after
    # the colons) is left to Python
    last = 'event:content_block_start\ndata:{"index":2}'
    assert handed == [(text.index(last), last)]
    assert blocks == {
        0: ("tool_use", "f", ['{"a"']),
        "x": ("text", None, ["t", "k"]),
        None: ("text", None, ["n"]),
    }


# Payloads the C walk must not read itself: Python decides (decodes, counts, reads).
HANDED_BACK = [
    '{"choices":[{"delta":{"content":"x"}}],"n":1e5}',
    '{"choices":[{"delta":{"content":"x"}}],"n":1e999}',
    '{"choices":[{"delta":{"content":"x"}}],"n":NaN}',
    '{"choices":[{"delta":{"content":"x"}}],"n":01}',
    '{"choices":[{"delta":{"content":"x"}}],"n":1.}',
    '{"choices":[{"delta":{"content":"x"}}],"n":12345678901234567890}',
    '{"choices":[{"delta":{"content":"x\x01"}}]}',
    '{"choices":[{"delta":{"content":"x\t"}}]}',
    '{"choices":[{"delta":{"content":"\\ud800"}}]}',
    '{"choices":[{"delta":{"content":"\\udc00\\ud800"}}]}',
    '{"choices":[{"delta":{"content":"\\ud800\\u0041"}}]}',
    '{"choices":[{"delta":{"content":"\\x"}}]}',
    '{"choices":[{"delta":{"content":"\\u00"}}]}',
    '{"choices":[{"delta":{"cont\\u0065nt":"x"}}]}',
    '{"choices":[{"delta":{"content":"x","content":"y"}}]}',
    '{"choices":[],"choices":[{"delta":{"content":"x"}}]}',
    '{"choices":[{"delta":{"content":"x"},"delta":{}}]}',
    '{"choices":[{"delta":{"content":["x"]}}]}',
    '{"choices":[{"delta":{"tool_calls":[{"function":{"name":"f"}}]}}]}',
    '{"choices":[{"delta":{"function_call":{"name":"f"}}}]}',
    '{"choices":[{"message":{"content":"x"}}]}',
    '{"choices":[{"delta":{"tool_calls":[],"tool_calls":[]}}]}',  # any member it reads: once
    '{"choices":[{"message":null,"message":null}]}',
    '{"choices":[{"delta":{"content":"x"}}]} x',
    '{"choices":[{"delta":{"content":"x"}}]',
    '{"choices":[{"delta":{"content":"x"}}],}',
    '{"a":' + "[" * 70 + "]" * 70 + "}",
    '{"choices":[' + ",".join(['{"delta":{"content":"x"}}'] * 70) + "]}",
    ' {"choices":[]}',
    "7",
    "[]",
    "\x0b",
]


@pytest.mark.parametrize("payload", HANDED_BACK)
def test_hostile_payloads_are_handed_back_whole(payload: str) -> None:
    text = f'data: {{"choices":[]}}\n\ndata: {payload}\n\n\ndata: {{"choices":[]}}'
    _, out, handed = run("chat", text)
    assert out == []
    block = f"data: {payload}"
    assert handed == [(text.index(block), block)]
    body = text + "\n\n"
    assert fast_answer(body, "openai", "chat.completions") == general_answer(
        body, "openai", "chat.completions"
    )


@pytest.mark.parametrize(
    ("mode", "payload"),
    [
        (
            "gemini",
            '{"candidates":[{"content":{"parts":[{"text":"a","thought":true,"thought":0}]}}]}',
        ),
        ("gemini", '{"candidates":[{"content":{"parts":[]},"content":{}}]}'),
        ("gemini", '{"candidates":[{"content":{"parts":[{"functionCall":{},"functionCall":1}]}}]}'),
        ("anthropic", '{"index":0,"index":1,"delta":{"text":"a"}}'),
        ("anthropic", '{"index":0,"delta":{"text":"a","type":"text_delta","type":"x"}}'),
        ("anthropic", '{"index":0,"delta":{"name":null,"name":"f"}}'),
        ("anthropic", '{"index":0,"delta":{"input":{},"input":{}}}'),
    ],
)
def test_a_member_read_given_twice_is_handed_back(mode: str, payload: str) -> None:
    """orjson keeps the last of a key given twice: every member a shape reads, Python decides."""
    head = "event: content_block_delta\n" if mode == "anthropic" else ""
    block = f"{head}data: {payload}"
    assert run(mode, f"{block}\n\n") == (mode == "anthropic", {} if head else [], [(0, block)])


def test_whitespace_between_tokens_is_read_in_c() -> None:
    """Spaces, tabs and carriage returns (orjson's whitespace but newlines) around every token."""
    for ws in (" ", "\t", "\r", " \t\r "):
        payload = ws.join(["{", '"choices"', ":", "[", "{", '"delta"', ":", "{", '"content"', ":"])
        payload += ws.join(['"x"', ",", '"n"', ":", "-1.5", ",", '"r"', ":", "null", "}", "}", "]"])
        payload += ws + "}" + ws
        assert run("chat", f"data: {payload}\n\n") == (True, ["x"], [])
        body = f"data: {payload}\n\n"
        assert fast_answer(body, "openai", "chat.completions") == general_answer(
            body, "openai", "chat.completions"
        )


def test_other_shapes_are_handed_back_at_their_offsets() -> None:
    blocks = [
        ": comment",
        "data:{}",
        'data: {"choices":[]}\ndata: {}',
        "event: content_block_delta",
        'event: \ndata: {"type":"content_block_delta","index":0,"delta":{"text":"a"}}',
        'event: content_block_delta\nid: 1\ndata: {"index":0}',
        "event: content_block_delta\ndata: [DONE]",
        "event: content_block_delta\ndata: ",
    ]
    text = "\n\n\n".join(["é😀", *blocks]) + "\n"  # non-ASCII first: offsets in characters
    _, _, handed = run("anthropic", text)
    assert handed == [(at, b) for at, b in Chunks(text)._blocks()]
    for at, block in handed:
        assert text[at : at + len(block)] == block


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.text(max_size=200))
def test_any_string_decodes_as_orjson_decodes_it(s: str) -> None:
    s = s.encode("utf-8", "replace").decode("utf-8")  # a str that can be UTF-8 (no surrogates)
    for payload in (
        orjson.dumps({"choices": [{"delta": {"content": s}}]}).decode(),
        json.dumps({"choices": [{"delta": {"content": s}}]}),  # \u escapes, surrogate pairs
        json.dumps({"choices": [{"delta": {"content": s}}]}, ensure_ascii=False),
    ):
        result, out, handed = run("chat", f"data: {payload}\n\n")
        assert (result, out, handed) == (bool(s), [s] if s else [], [])


def test_long_and_escaped_strings() -> None:
    for s in [
        "x" * (3 << 20),
        '"\\/\b\f\n\r\t' * 200,  # escapes past the 256-byte buffer on the stack
        "é日本語😀\u2028\x7f" * 100,
        "\x00",
        "😀" * 300,
    ]:
        for payload in (
            json.dumps({"choices": [{"delta": {"content": s}}]}),
            orjson.dumps({"choices": [{"delta": {"content": s}}]}).decode(),
        ):
            result, out, handed = run("chat", f"data: {payload}\n\n")
            assert (out, handed, result) == ([s], [], True)


SOUP = st.lists(
    st.sampled_from(
        [
            "data: ",
            "data:",
            "event: content_block_delta\n",
            "event: content_block_start\n",
            '{"choices":[{"delta":{"content":"',
            '{"candidates":[{"content":{"parts":[{"text":"',
            '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"',
            '{"index":1,"content_block":{"type":"text","text":"',
            '"}}]}',
            '"}]}}]}',
            '"}}',
            '"}',
            "\n\n",
            "\n",
            "\\",
            '"',
            "\\u00e9",
            "\\ud83d\\ude00",
            "\\ud800",
            "é",
            "日",
            "😀",
            "[DONE]",
            " ",
            ",",
            "{",
            "}",
            "1e5",
            "null",
        ]
    ),
    max_size=40,
).map("".join)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(body=SOUP)
def test_a_character_soup_gives_the_general_answer(body: str) -> None:
    for provider, api in (
        ("openai", "chat.completions"),
        ("anthropic", "messages"),
        ("gemini", "generate_content"),
    ):
        assert fast_answer(body, provider, api) == general_answer(body, provider, api)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(body=SOUP)
def test_handed_back_blocks_are_blocks_in_order(body: str) -> None:
    text = normalise_newlines(body)
    blocks = list(Chunks(text)._blocks())
    for mode in MODES:
        _, _, handed = run(mode, text)
        it = iter(blocks)
        assert all(any(h == b for b in it) for h in handed)  # an ordered subsequence


def test_a_lone_surrogate_is_left_to_python() -> None:
    """Text with a lone surrogate (bad bytes decoded with surrogateescape): orjson refuses any
    payload holding one, so that event is handed back; the others are read."""
    text = 'data: {"choices":[{"delta":{"content":"a"}}]}\n\ndata: {"x":"\udcff"}\n\n'
    assert run("chat", text) == (True, ["a"], [(text.index('data: {"x"'), 'data: {"x":"\udcff"}')])
    assert fast_answer(text, "openai", "chat.completions") == general_answer(
        text, "openai", "chat.completions"
    )
    assert general_answer(text, "openai", "chat.completions")["malformed_events"] == 1


def test_errors_propagate_and_bad_arguments_raise() -> None:
    def boom(at: int, block: str) -> bool:
        raise KeyError("slow")

    with pytest.raises(KeyError):
        native.chat("data: {bad\n\n", [], boom)
    with pytest.raises(KeyError):
        native.anthropic("event: content_block_delta\ndata: {bad\n\n", {}, boom)
    for args in [(b"x", [], boom), ("x", {}, boom), ("x", [], boom, 1), ("x",)]:
        with pytest.raises(TypeError):
            native.chat(*args)
    with pytest.raises(TypeError):
        native.anthropic("x", [], boom)
    bad_blocks = {0: "not a tuple"}
    with pytest.raises(TypeError):
        native.anthropic('event: content_block_delta\ndata: {"index":0}\n\n', bad_blocks, boom)


def test_no_reference_or_memory_kept() -> None:
    chat = (
        "".join(
            "data: "
            + orjson.dumps({"choices": [{"delta": {"content": f"w{i} é\\n"}}]}).decode()
            + "\n\n"
            for i in range(50)
        )
        + "data: {bad\n\n"
    )
    anth = (
        'event: content_block_start\ndata: {"index":0,"content_block":{"type":"text","text":""}}'
        "\n\n" + 'event: content_block_delta\ndata: {"index":0,"delta":{"text":"a\\"b"}}\n\n' * 50
    )
    slow = lambda at, block: False  # noqa: E731
    counts = [sys.getrefcount(x) for x in (chat, anth, slow)]

    def calls() -> None:
        native.chat(chat, [], slow)
        native.gemini(chat, [], slow)
        native.anthropic(anth, {}, slow)

    for _ in range(200):
        calls()
    assert [sys.getrefcount(x) for x in (chat, anth, slow)] == counts
    assert (
        grown_bytes(calls, warm=100, n=1000) < 10_000
    )  # 1,000 calls: a leaked piece per call is > 50 kB


def test_the_text_walk_uses_the_extension_unless_told_not_to() -> None:
    from sidecar.parse import textscan

    if os.environ.get("LLM_HEC_SIDECAR_PURE", "") not in ("", "0"):
        assert textscan.chat is textscan.gemini is textscan.anthropic is None
    else:
        assert textscan.NATIVE
        assert (textscan.chat, textscan.gemini, textscan.anthropic) == (
            native.chat,
            native.gemini,
            native.anthropic,
        )
