"""`tailscan.chat_tail` (a chat stream's usual end read in C from the raw body-log records)
must give exactly what the Python edges path gives, or step aside (None).

Each case runs `parse_completed` twice on the same records: with the C reader, and with it
turned off (the pure path, as with `LLM_HEC_SIDECAR_PURE=1`); the `ParsedBody` and what the
parse left on the `Completed` (a decoded body, bad or lossy parts) must be equal. The bodies:
every recorded fixture, the edges tests' hostile chat streams (usage values of any JSON type,
NaN, 1e999, 2^70, an error event after the usage, no `[DONE]`, cut streams, blank lines,
invalid UTF-8, torn records) and hand-made variants of the usual end (escapes, key order,
duplicate keys, numbers at the subset's edges, an event cut across records at every byte).
"""

from __future__ import annotations

import copy
import os
import random
import re
import subprocess
import sys
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.parse import body as body_module
from sidecar.parse import response, tailscan
from sidecar.parse.body import assemble_escaped
from sidecar.types import AccessRecord, Completed, ParsedBody
from tests.leaks import grown_bytes
from tests.unit.test_parse_edges import (
    BODIES,
    HOSTS,
    PATHS,
    VALUES,
    anthropic_stream,
    chat_stream,
    dumps,
    gemini_stream,
    hints,
    line,
    lines_for,
)

_PURE = os.environ.get("LLM_HEC_SIDECAR_PURE", "") not in ("", "0")
# under CI the extension must be built (a silent fallback fails there); else skip without it
pytestmark = pytest.mark.skipif(
    not tailscan.NATIVE and (_PURE or not os.environ.get("CI")),
    reason="the C extension is not built or turned off",
)

RID = "e" * 32
MESSAGES = PATHS["messages"]
GENERATE = PATHS["generate_content"]


def completed(parts: list[Any], path: str = "/v1/chat/completions") -> Completed:
    host = HOSTS[{MESSAGES: "anthropic", GENERATE: "gemini"}.get(path, "openai")]
    access = AccessRecord(RID, path=path, upstream_host=host)
    return Completed(RID, "s", access, None, "complete", parts=parts, assemble=assemble_escaped)


def outcome(c: Completed) -> tuple[ParsedBody, str | None, int, bool]:
    c = copy.copy(c)
    parsed = response.parse_completed(c, provider=None)
    return parsed, c.body, c.body_bad_parts, c.body_lossy


def check(parts: list[Any], path: str = "/v1/chat/completions") -> bool:
    """Asserts the C reader's parse equals the pure one (for Anthropic, also when
    `anthropic_tail` declines: `anthropic_edges` then `read_edges`, the route after it); True if
    the C reader answered (for Anthropic: `anthropic_edges` cut the three payloads)."""
    c = completed(parts, path)
    fast = outcome(c)
    mp = pytest.MonkeyPatch()
    try:
        if path == MESSAGES:
            mp.setattr(response, "_anthropic_tail", declines)
            edges_only = outcome(c)
        mp.setattr(response, "_chat_tail", None)
        mp.setattr(response, "_anthropic_edges", None)
        mp.setattr(response, "_anthropic_tail", None)
        mp.setattr(response, "_gemini_tail", None)
        slow = outcome(c)
    finally:
        mp.undo()
    assert fast == slow
    if path == MESSAGES:
        assert edges_only == slow
        got = tailscan.anthropic_edges(parts, response.WINDOW_HEAD_BYTES, 896)
    elif path == GENERATE:
        got = tailscan.gemini_tail(parts, response.WINDOW_HEAD_BYTES, 768)
    else:
        got = tailscan.chat_tail(parts, response.WINDOW_HEAD_BYTES, response._EDGE_TAILS[0])
    if got is not None and path != MESSAGES:  # (Anthropic: read_edges may say no)
        assert fast[1] is None, "the C reader answered: nothing was decoded"
    return got is not None


def declines(parts: list[Any], head_bytes: int, tail_bytes: int) -> None:
    """A C reader that declines everything (`anthropic_tail` so: the route after it is taken)."""
    return None


def answered_by(c: Completed) -> list[str]:
    """The C readers (their names in `response`) that answered while `parse_completed` read
    `c`: the route it took."""
    seen: list[str] = []
    mp = pytest.MonkeyPatch()
    for name in ("_chat_tail", "_anthropic_tail", "_anthropic_edges", "_gemini_tail"):
        read = getattr(response, name)
        if read is None:  # turned off here: not called
            continue

        def spy(*args: Any, read: Any = read, name: str = name) -> Any:
            got = read(*args)
            if got is not None:
                seen.append(name)
            return got

        mp.setattr(response, name, spy)
    try:
        outcome(c)
    finally:
        mp.undo()
    return seen


def records(body: str, sizes: list[int], escape_slash: bool = False) -> list[bytes]:
    """`body` cut into canonical records of the given byte sizes (the rest in one record)."""
    raw = body.encode("utf-8", "surrogatepass")
    out, at = [], 0
    for n in [*sizes, len(raw)]:
        chunk, at = raw[at : at + n], at + n
        if chunk:
            esc = orjson.dumps(chunk.decode("utf-8", "replace"))
            out.append(line(RID, esc.replace(b"/", b"\\/") if escape_slash else esc))
    return out


BASE = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-4o-mini"}
USAGE_CHUNK = {
    **BASE,
    "choices": [],
    "usage": {
        "prompt_tokens": 120,
        "completion_tokens": 41,
        "total_tokens": 161,
        "prompt_tokens_details": {"cached_tokens": 64, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    },
}


def usual(
    *,
    finish: dict[str, Any] | None = None,
    usage: dict[str, Any] | None = None,
    raw_finish: str | None = None,
    raw_usage: str | None = None,
    end: str = "data: [DONE]\n\n",
    words: int = 40,
) -> str:
    """A long chat stream that ends the usual way, its last chunks changed as asked."""
    head = [{**BASE, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}]
    head += [
        {**BASE, "choices": [{"index": 0, "delta": {"content": f" w{i}"}}]} for i in range(words)
    ]
    f = {**BASE, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], **(finish or {})}
    u = {**USAGE_CHUNK, **(usage or {})}
    events = [dumps(o) for o in head]
    events.append(raw_finish if raw_finish is not None else dumps(f))
    events.append(raw_usage if raw_usage is not None else dumps(u))
    return "".join(f"data: {e}\n\n" for e in events) + end


def usual_usage_raw() -> str:
    return orjson.dumps(USAGE_CHUNK).decode()


def cut_each(body: str, seed: int = 0) -> list[list[bytes]]:
    """The body cut into records of about 300 bytes, at random."""
    rng = random.Random(seed)
    sizes = [rng.randrange(1, 600) for _ in range(len(body) // 150 + 2)]
    return [records(body, sizes), records(body, sizes, escape_slash=True)]


def test_the_usual_end_is_read_in_c() -> None:
    for parts in cut_each(usual()):
        assert check(parts)
    got = tailscan.chat_tail(
        records(usual(), [300] * 20), response.WINDOW_HEAD_BYTES, response._EDGE_TAILS[0]
    )
    assert got == ("gpt-4o-mini", "chatcmpl-1", None, "stop", 120, 64, None, 41, 0)


@pytest.mark.parametrize(
    ("body", "answered"),
    [
        (usual(usage={"service_tier": "flex"}, finish={"model": ""}), True),
        (usual(usage={"model": None}), True),  # the finish chunk's model
        (usual(usage={"model": None, "id": 7}, finish={"model": None}), False),
        (usual(usage={"id": None}, finish={"id": ""}), False),
        (usual(usage={"usage": None}), False),
        (usual(usage={"usage": [1]}), False),
        (usual(usage={"choices": None}), False),
        (usual(usage={"choices": [{}]}), False),
        (usual(finish={"choices": []}), False),
        (usual(finish={"choices": {}}), False),
        (usual(finish={"choices": [{"index": 0, "finish_reason": None}]}), False),
        (usual(finish={"choices": [{"finish_reason": "stop"}, 5, {"finish_reason": ""}]}), True),
        (usual(finish={"choices": [{"finish_reason": "a"}, {"finish_reason": "b"}]}), True),
        (usual(finish={"choices": [{"finish_reason": 3}, {"finish_reason": "b"}]}), True),
        (usual(end=""), False),  # no [DONE]
        (usual(end="data: [DONE]\n\ndata: {}\n\n"), False),
        (usual(end='data: [DONE]\n\nevent: error\ndata: {"error": {"message": "x"}}\n\n'), False),
        (usual(end="data: [DONE]\n\n\n"), False),
        (usual(end="data: [DONE]"), False),
        (usual(end="data: [DONE] \n\n"), False),
        (usual(end="\ndata: [DONE]\n\n"), False),
        (usual(usage={"error": {"message": "late"}}), False),
        (usual(usage={"x": "error"}), False),
        (usual(finish={"x": ["error"]}), False),
        (usual(usage={"x": "errors"}), True),
        (usual(usage={"x": {"y": [1, True, False, None, "s", {}, []]}}), True),
        (usual(usage={"usage": {"prompt_tokens": 2**70, "completion_tokens": 1}}), False),
        (usual(usage={"usage": {"prompt_tokens": 5, "completion_tokens": 2}}), False),
        (
            usual(
                usage={
                    "usage": {
                        "prompt_tokens": 10**15 - 1,
                        "completion_tokens": 0,
                        "completion_tokens_details": {"reasoning_tokens": 0},
                    }
                }
            ),
            True,
        ),
        (
            usual(
                usage={
                    "usage": {
                        "prompt_tokens": 10**15,
                        "completion_tokens": 0,
                        "completion_tokens_details": {"reasoning_tokens": 0},
                    }
                }
            ),
            False,
        ),
        (
            usual(
                usage={
                    "usage": {
                        "prompt_tokens": 5,
                        "completion_tokens": 9,
                        "prompt_tokens_details": {"cached_tokens": 50, "cache_write_tokens": 3},
                        "completion_tokens_details": {"reasoning_tokens": 99},
                    }
                }
            ),
            True,  # subsets clamped
        ),
        (
            usual(
                usage={
                    "usage": {
                        "prompt_tokens": 5,
                        "completion_tokens": 9,
                        "prompt_tokens_details": None,
                        "completion_tokens_details": {"reasoning_tokens": 1},
                    }
                }
            ),
            True,
        ),
        (
            usual(
                usage={
                    "usage": {
                        "prompt_tokens": 5,
                        "completion_tokens": 9,
                        "prompt_tokens_details": {"cached_tokens": None},
                        "completion_tokens_details": {"reasoning_tokens": None},
                    }
                }
            ),
            False,  # no reasoning count: _finalise may read the whole text
        ),
        (
            usual(
                usage={
                    "model": "o3-mini",
                    "usage": {"prompt_tokens": 5, "completion_tokens": 9},
                }
            ),
            False,
        ),
        (usual(usage={"model": "o3-mini"}), True),  # a reasoning model: the hint
        (usual(usage={"model": "caf\u00e9"}), False),  # not ASCII: Python reads it
        (
            usual(
                finish={"choices": [{"delta": {"content": "\U0001f642"}, "finish_reason": "stop"}]}
            ),
            False,
        ),
        (
            usual(
                finish={"choices": [{"delta": {"content": 'say "hi"'}, "finish_reason": "stop"}]}
            ),
            False,
        ),
        (
            usual(finish={"choices": [{"delta": {"content": "a\nb"}, "finish_reason": "stop"}]}),
            False,
        ),
        (usual(raw_usage=usual_usage_raw().replace(":", " : ").replace(",", " , ")), True),
        (usual(raw_usage=usual_usage_raw() + "   "), True),
        (usual(raw_usage=usual_usage_raw() + "\t"), False),
        (usual(raw_usage=usual_usage_raw() + " x"), False),
        (usual(raw_usage=usual_usage_raw()[:-1]), False),
        (usual(raw_usage=usual_usage_raw()[:-1] + ',"model":"m2"}'), False),  # a key twice
        (usual(raw_usage=usual_usage_raw()[:-1] + ',"a":{"b":1,"b":2}}'), False),
        (usual(raw_usage=usual_usage_raw()[:-1] + ',"a":{"b":1,"c":2},}'), False),
        (usual(raw_usage=usual_usage_raw()[:-1] + ',"a":[1,]}'), False),
        (usual(raw_usage=usual_usage_raw()[:-1] + ',"a":' + "[" * 15 + "]" * 15 + "}"), True),
        (usual(raw_usage=usual_usage_raw()[:-1] + ',"a":' + "[" * 16 + "]" * 16 + "}"), False),
        (usual(raw_usage=usual_usage_raw()[:-1] + ',"u":"\\u0041"}'), False),
        (usual(raw_usage="[1]"), False),
        (usual(raw_usage='"x"'), False),
        (usual(raw_finish="{}"), False),
        (usual(raw_finish="not json"), False),
        (usual(raw_finish=":comment"), False),
        (
            usual(
                raw_finish=orjson.dumps({**BASE, "choices": [{"finish_reason": "stop"}]}).decode()
            ).replace("data: {", "event: x\ndata: {", 1),
            True,  # an `event:` block far from the end changes nothing
        ),
    ],
)
def test_variants_of_the_usual_end(body: str, answered: bool) -> None:
    for parts in cut_each(body):
        assert check(parts) is answered


RAW_USAGE_CHANGES = [  # (what, becomes what, read in C)
    ('"total_tokens":161', '"total_tokens":1.5', False),
    ('"total_tokens":161', '"total_tokens":1e2', False),
    ('"total_tokens":161', '"total_tokens":-1', False),
    ('"total_tokens":161', '"total_tokens":016', False),
    ('"total_tokens":161', '"total_tokens":NaN', False),
    ('"total_tokens":161', '"total_tokens":1e999', False),
    ('"total_tokens":161', '"total_tokens":0', True),
    ('"prompt_tokens":120', '"prompt_tokens":120.0', False),
    ('"prompt_tokens":120', '"prompt_tokens":true', False),
    ('"prompt_tokens":120', '"prompt_tokens":"120"', False),
    ('"prompt_tokens":120', '"prompt_tokens":-0', False),
]


@pytest.mark.parametrize(("old", "new", "answered"), RAW_USAGE_CHANGES)
def test_numbers_and_types_in_the_usage_chunk(old: str, new: str, answered: bool) -> None:
    body = usual(raw_usage=usual_usage_raw().replace(old, new))
    for parts in cut_each(body):
        assert check(parts) is answered


def test_events_cut_across_records_at_every_byte() -> None:
    """The last three events cut into two records at every byte, and the boundary before the
    finish chunk at every place relative to the tail's first record."""
    body = usual(words=30)
    raw_len = len(body.encode())
    answered = 0
    for at in range(raw_len - 1400, raw_len):
        # the whole stream in ~200-byte records, one cut moved to `at`
        sizes = [200] * ((at - 1) // 200)
        sizes.append(at - sum(sizes))
        answered += check(records(body, sizes))
    assert answered > 1000


def test_records_with_other_escapes_or_shapes_step_aside() -> None:
    body = usual()
    parts = records(body, [300] * 30)
    assert check(parts)
    # an escape the C reader leaves to Python, in a tail record (`\u`, `\r`) or the first
    for old, new in ((b"w9", b"\\u0077 9"), (b"w9", b"\\r9"), (b"w9", b"\\t9")):
        changed = [p.replace(old, new) for p in parts]
        check(changed)
    # a torn record (an unescaped quote), invalid UTF-8, a lone backslash at a record's end
    for i in (0, 1, len(parts) - 2, len(parts) - 1):
        for bad in (b'"', b"\xff", b"\\"):
            changed = list(parts)
            changed[i] = changed[i][:-2] + bad + b'"}'
            check(changed)
    # the first record's first character: not an SSE event's start
    for first in (b" ", b"{", b"[", b"\\n", b"\\ufeff", b"\x1f", b""):
        changed = list(parts)
        changed[0] = line(RID, b'"' + first + parts[0].split(b'"data":"', 1)[1][:-2] + b'"')
        check(changed)
    # records in other shapes: not bytes, no data key, a careful-path record
    for other in ([bytearray(p) for p in parts], [*parts[:-1], memoryview(parts[-1])]):
        assert tailscan.chat_tail(other, 1024, 1536) is None  # type: ignore[arg-type]
    assert tailscan.chat_tail(tuple(parts), 1024, 1536) is None  # type: ignore[arg-type]
    check([*parts[:-1], b'{"ts":1,"request_id":"x","end":"complete"}'])
    check([*parts[:-1], b'","data":' + orjson.dumps(body[-300:]) + b"}"])
    assert tailscan.chat_tail((), 1024, 1536) is None  # type: ignore[arg-type]
    assert tailscan.chat_tail([], 1024, 1536) is None
    with pytest.raises(TypeError):
        tailscan.chat_tail(parts, 1024)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        tailscan.chat_tail(parts, "1024", 1536)  # type: ignore[arg-type]


def test_a_tail_larger_than_the_stack_buffer() -> None:
    for finish, usage in (({"pad": "y" * 30000}, None), (None, {"pad": "z" * 70000})):
        body = usual(finish=finish, usage=usage, words=20)
        at = body.encode().index(b'"finish_reason":"stop"') - 60  # the finish chunk's start
        assert check(records(body, [300] * (at // 300)))  # the rest in one record
        check(records(body, [300] * (at // 300) + [200, 30000]))  # the finish chunk cut


def test_other_apis_are_not_read_in_c() -> None:
    parts = records(usual(), [300] * 30)
    assert check(parts, "/v1/chat/completions")
    c = completed(parts, "/v1/responses")
    fast = outcome(c)
    assert fast[0].api == "responses"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(BODIES)),
    seed=st.integers(min_value=0, max_value=2**32),
    pieces=st.integers(min_value=0, max_value=120),
)
def test_every_recorded_stream(name: str, seed: int, pieces: int) -> None:
    body = BODIES[name]
    provider, api = hints(body)
    if provider in ("openai", "azure", "anthropic", "gemini", "vertex"):  # any host will do
        check(lines_for(body, random.Random(seed), pieces, False), PATHS.get(api, "/v1/x"))


def test_recorded_chat_and_anthropic_streams_are_read_in_c() -> None:
    """Not vacuous: the recorded streams that end the usual way are answered in C, by the
    reader `parse_completed` calls first (`chat_tail`, `anthropic_tail`: nothing else
    answered), and `anthropic_edges` (the route after `anthropic_tail`) cuts the Anthropic ones
    too. The recorded Gemini streams are shorter than the edges: see
    `test_recorded_gemini_streams_are_read_in_c_with_small_edges`."""
    first = {"chat.completions": "_chat_tail", "messages": "_anthropic_tail"}
    answered = dict.fromkeys(first, 0)
    cut = 0
    for i, body in enumerate(BODIES.values()):
        api = hints(body)[1]
        if api in first:
            parts = lines_for(body, random.Random(i), 6, False)
            cut += check(parts, PATHS[api]) and api == "messages"
            answered[api] += answered_by(completed(parts, PATHS[api])) == [first[api]]
    assert answered["chat.completions"] >= 2 and answered["messages"] >= 2 and cut >= 2


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(["chat", "anthropic", "gemini"]),
    values=st.lists(VALUES, min_size=5, max_size=5),
    words=st.lists(st.sampled_from(["hi", "usage", "\n", ": x", "caf\u00e9", '"q"']), max_size=60),
    seed=st.integers(min_value=0, max_value=2**32),
    pieces=st.integers(min_value=0, max_value=150),
    damage=st.booleans(),
    cut=st.integers(min_value=0, max_value=40),
    blank=st.sampled_from(["", "\n", ": keep-alive\n\n", "\r\n"]),
    usual_counts=st.booleans(),
    model=st.booleans(),
)
def test_hostile_streams(
    kind: str,
    values: list[Any],
    words: list[str],
    seed: int,
    pieces: int,
    damage: bool,
    cut: int,
    blank: str,
    usual_counts: bool,
    model: bool,
) -> None:
    """The edges tests' hostile chat, Anthropic and Gemini streams (see test_parse_edges.py);
    a Gemini one with a model on its last chunk or not (without, Python reads it)."""
    rng = random.Random(seed)
    if usual_counts:  # so that many reach the C reader's answer, not only its refusals
        stop = "STOP" if kind == "gemini" else "stop"
        values = [stop, rng.randrange(10**6), rng.randrange(10**4), rng.randrange(50), values[4]]
    make, path = {
        "chat": (chat_stream, "/v1/chat/completions"),
        "anthropic": (anthropic_stream, MESSAGES),
        "gemini": (gemini_stream, GENERATE),
    }[kind]
    body = make(rng, values, words)
    if model and kind == "gemini":
        body = body.replace('"responseId":"r"', '"responseId":"r","modelVersion":"g"')
    if blank:
        end = "\r\n\r\n" if kind == "gemini" else "\n\n"
        body = body.replace(end, end + blank, rng.randrange(1, 4))
    if cut:
        body = body[:-cut]
    if damage:
        body = body.encode("ascii", "replace").decode()
    if body:
        check(lines_for(body, rng, pieces, damage), path)


def test_pure_mode_turns_it_off() -> None:
    env = {**os.environ, "LLM_HEC_SIDECAR_PURE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", "from sidecar.parse import tailscan; print(tailscan.chat_tail)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "None"


def test_no_reference_or_memory_kept() -> None:
    parts = records(usual(), [300] * 30)
    padded = usual(finish={"pad": "y" * 30000})
    at = padded.encode().index(b'"finish_reason":"stop"') - 60  # the finish chunk's start
    big = records(padded, [300] * (at // 300))  # its last record beyond the stack buffer
    refused = [*parts[:-1], parts[-1].replace(b"[DONE]", b"[DONE!")]
    claude_parts = records(claude(), [300] * 30)
    not_utf8 = [claude_parts[0].replace(b"claude", b"\xffclaude"), *claude_parts[1:]]
    no_reference_or_memory_kept(tailscan.chat_tail, 1536, [parts, big], [refused])
    no_reference_or_memory_kept(tailscan.anthropic_edges, 896, [claude_parts], [not_utf8])
    with pytest.raises(TypeError):
        tailscan.chat_tail(parts, None, 1536)  # type: ignore[arg-type,misc]


def test_built_and_used_under_ci() -> None:
    """CI installs with a compiler: the chat tail must be read in C there."""
    if not os.environ.get("CI") or _PURE:
        pytest.skip("only under CI (CI=1), C path")
    assert tailscan.NATIVE and response._chat_tail is tailscan.chat_tail
    assert body_module._string_of is tailscan.string_of is not None
    assert response._anthropic_tail is tailscan.anthropic_tail is not None
    assert response._gemini_tail is tailscan.gemini_tail is not None


# -- Anthropic ---------------------------------------------------------------------------------


def claude(
    *,
    start: str | None = None,
    block: str | None = None,
    delta: str | None = None,
    stop: str = 'event: message_stop\ndata: {"type":"message_stop"}\n\n',
    words: int = 40,
) -> str:
    """A long Anthropic stream that starts and ends the usual way, its edges changed as asked."""
    start = start or dumps(
        {
            "type": "message_start",
            "message": {
                "id": "msg_1",
                "model": "claude-haiku-4-5",
                "stop_reason": None,
                "usage": {
                    "input_tokens": 2203,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 12,
                    "cache_creation": {"ephemeral_5m_input_tokens": 0},
                    "output_tokens": 2,
                    "service_tier": "standard",
                },
            },
        }
    )
    block = block or '{"type":"content_block_start","index":0,"content_block":{"type":"text"}}'
    delta = delta or dumps(
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": 271},
        }
    )
    out = f"event: message_start\ndata: {start}\n\n"
    out += f"event: content_block_start\ndata: {block}\n\n"
    for i in range(words):
        d = {"type": "content_block_delta", "index": 0, "delta": {"text": f" w{i}"}}
        out += f"event: content_block_delta\ndata: {dumps(d)}\n\n"
    out += 'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
    return out + f"event: message_delta\ndata: {delta}\n\n" + stop


def test_the_usual_anthropic_edges_are_cut_in_c() -> None:
    """`anthropic_edges` cuts the usual edges, and where `anthropic_tail` declines (the route
    after it; `check` compares it with the pure one too) `parse_completed` takes its answer."""
    mp = pytest.MonkeyPatch()
    mp.setattr(response, "_anthropic_tail", declines)
    try:
        for parts in cut_each(claude()):
            assert check(parts, MESSAGES)
            assert answered_by(completed(parts, MESSAGES)) == ["_anthropic_edges"]
    finally:
        mp.undo()
    parts = records(claude(), [300] * 30)
    start, block, delta = tailscan.anthropic_edges(parts, 1024, 896)  # type: ignore[misc]
    assert start.startswith('{"type":"message_start"') and block.endswith('"text"}}')
    assert delta.startswith('{"type":"message_delta"')


@pytest.mark.parametrize(
    ("body", "answered"),
    [
        (
            claude(start='{"type":"message_start","message":{"model":"caf\u00e9 \ud83d\ude42"}}'),
            True,
        ),
        (claude(start='{"type":"message_start","message":{"model":"caf\u00e9'), True),  # bad JSON
        (claude(block='{"type":"content_block_start","content_block":{"type":"thinking"}}'), True),
        (claude(block="[1]"), True),  # not an object: read_edges says no
        (claude(delta='{"delta":{"stop_reason":"x"},"usage":{"output_tokens":1e999}}'), True),
        (claude(delta='{"usage":{"output_tokens":18446744073709551616,"iterations":[{}]}}'), True),
        (claude(delta='{"usage":{"output_tokens":NaN}}'), True),
        (claude(stop='event: message_stop\ndata:{"type":"message_stop"}\n\n'), True),
        (claude(stop='event: message_stop\ndata: {"type":"message_stop"}'), False),
        (claude(stop='event: message_stop\ndata: {"type":"message_stop"}\n\n\n'), False),
        (claude(stop='event: message_stop\nid: 1\ndata: {"type":"message_stop"}\n\n'), False),
        (
            claude(
                stop='event: error\ndata: {"type":"error"}\n\nevent: message_stop\ndata: {}\n\n'
            ),
            False,
        ),
        (claude().replace("event: message_start\n", ": hi\nevent: message_start\n"), False),
        (
            claude().replace("event: content_block_start", "event: ping\ndata: {}\n\nevent: x"),
            False,
        ),
        (claude().replace('"text"}}\n\n', '"text"}}\n\n\n', 1), True),
        (claude().replace("event: message_delta", "event: message_delta\r"), False),
        (claude(block='{"type":"content_block_start","content_block":{"text":"a\\nb"}}'), True),
    ],
)
def test_variants_of_the_anthropic_edges(body: str, answered: bool) -> None:
    for parts in cut_each(body):
        assert check(parts, MESSAGES) is answered


def test_anthropic_payloads_not_utf8_or_with_other_escapes_step_aside() -> None:
    parts = records(claude(), [300] * 30)
    assert check(parts, MESSAGES)
    for i, old, new in (
        (0, b"claude-haiku", b"claude-\xff-haiku"),  # invalid UTF-8 in a payload
        (0, b"claude-haiku", b"claude-\\u00e9-haiku"),  # a \u escape
        (-2, b"end_turn", b"end_\xc3turn"),
        (1, b"w3", b"w\xff3"),  # invalid UTF-8 elsewhere in the head: cut in C all the same
    ):
        changed = list(parts)
        changed[i] = changed[i].replace(old, new)
        check(changed, MESSAGES)
    big = claude(start=dumps({"type": "message_start", "message": {"pad": "p" * 20000}}))
    head = big.index("event: content_block_delta")  # one head record beyond the stack buffer
    assert check(records(big, [head, *[300] * 20]), MESSAGES)


def _as_body_lines(kind: Any, lines: list[bytes], rnd: random.Random) -> Any:
    """`lines` kept as the join keeps them: runs of lines joined into one bytes object each."""
    chunks, at = [], 0
    while at < len(lines):
        k = rnd.randint(1, 40)
        run = lines[at : at + k]
        chunks.append(b"\n".join(run) if len(run) > 1 else run[0])
        at += k
    return kind(chunks, len(lines))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(BODIES)),
    seed=st.integers(min_value=0, max_value=2**32),
    pieces=st.integers(min_value=0, max_value=150),
)
def test_the_join_s_body_lines_are_read_as_their_list(name: str, seed: int, pieces: int) -> None:
    """`Completed.parts` may be the join's `BodyLines` (a request's lines kept per read block):
    the C readers get the head and tail lines (`_edge_records`) and answer exactly as they do
    for the whole list, and the parse is the same."""
    from sidecar.join.bodylines import BodyLines, PureBodyLines

    body = BODIES[name]
    provider, api = hints(body)
    if provider not in ("openai", "azure", "anthropic"):
        return
    path = PATHS.get(api, "/v1/x")
    rnd = random.Random(seed)
    lines = lines_for(body, rnd, pieces, False)
    head, tail = response.WINDOW_HEAD_BYTES, (896 if path == MESSAGES else response._EDGE_TAILS[0])
    read = tailscan.anthropic_edges if path == MESSAGES else tailscan.chat_tail
    want = read(lines, head, tail)
    base = outcome(completed(lines, path))
    for kind in {BodyLines, PureBodyLines}:
        parts = _as_body_lines(kind, lines, rnd)
        edges = response._edge_records(parts, head, tail)
        assert type(edges) is list and read(edges, head, tail) == want
        assert outcome(completed(parts, path)) == base
    assert response._edge_records(tuple(lines), head, tail) == lines  # any other sequence: whole
    assert response._edge_records(lines, head, tail) is lines
    assert response._edge_records(None, head, tail) is None


def test_body_lines_of_a_long_stream_are_read_in_c_from_their_edges() -> None:
    """Not vacuous: a long stream kept as `BodyLines` is answered in C from a few lines at each
    end, exactly as from its whole list (the C twin and the pure one)."""
    from sidecar.join.bodylines import BodyLines, PureBodyLines

    head, tail = response.WINDOW_HEAD_BYTES, response._EDGE_TAILS[0]
    for seed in range(20):
        for lines in cut_each(usual(words=400), seed):
            want = tailscan.chat_tail(lines, head, tail)
            assert want is not None
            for kind in {BodyLines, PureBodyLines}:
                edges = response._edge_records(
                    _as_body_lines(kind, lines, random.Random(seed)), head, tail
                )
                assert len(edges) < len(lines) // 2
                assert tailscan.chat_tail(edges, head, tail) == want


# -- Gemini ------------------------------------------------------------------------------------

GEMINI_META = {
    "promptTokenCount": 1147,
    "candidatesTokenCount": 203,
    "totalTokenCount": 2649,
    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 1147}],
    "thoughtsTokenCount": 1299,
}


def gem(
    *,
    last: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
    raw_last: str | None = None,
    end: str = "\r\n\r\n",
    words: int = 40,
) -> str:
    """A long Gemini SSE stream (CRLF framed) whose last chunk says it all, changed as asked."""
    base = {"modelVersion": "gemini-2.5-flash", "responseId": "xaIDClYoy4S3C3T"}

    def chunk(text: str, **more: Any) -> dict[str, Any]:
        cand = {"content": {"parts": [{"text": text}], "role": "model"}, **more, "index": 0}
        return {"candidates": [cand], "usageMetadata": GEMINI_META, **base}

    events = [dumps(chunk(f' "w{i}" d\u00e9j\u00e0 \\n')) for i in range(words)]
    final = chunk(" \u00abok\u00bb \U0001f680 \\ \t\n", finishReason="STOP")
    final["usageMetadata"] = {**GEMINI_META, **(meta or {})}
    final.update(last or {})
    events.append(raw_last if raw_last is not None else dumps(final))
    return "\r\n\r\n".join(f"data: {e}" for e in events) + end


def test_the_usual_gemini_end_is_read_in_c() -> None:
    for parts in cut_each(gem()):
        assert check(parts, GENERATE)
    got = tailscan.gemini_tail(records(gem(), [300] * 40), response.WINDOW_HEAD_BYTES, 768)
    assert got == (
        "gemini-2.5-flash",
        "xaIDClYoy4S3C3T",
        "STOP",
        None,
        None,
        1147,
        0,
        0,
        203,
        1299,
    )


def _cands(*cands: Any) -> dict[str, Any]:
    return {"candidates": list(cands)}


@pytest.mark.parametrize(
    ("body", "answered"),
    [
        (gem(meta={"serviceTier": "PRIORITY"}), True),
        (gem(meta={"trafficType": "ON_DEMAND_FLEX"}), True),
        (gem(meta={"trafficType": "SOMETHING_NEW", "serviceTier": ""}), True),
        (gem(meta={"serviceTier": 3, "trafficType": None}), True),
        (gem(meta={"serviceTier": "caf\u00e9"}), False),  # not ASCII: Python reads it
        (gem(meta={"toolUsePromptTokenCount": 7, "cachedContentTokenCount": 2000}), True),
        (gem(meta={"promptTokenCount": None, "thoughtsTokenCount": None}), True),
        (gem(meta={"candidatesTokenCount": 10**15 - 1}), True),
        (gem(meta={"candidatesTokenCount": 10**15}), False),
        (gem(meta={"candidatesTokenCount": -1}), False),
        (gem(meta={"candidatesTokenCount": 1.5}), False),
        (gem(meta={"candidatesTokenCount": 2.0}), False),
        (gem(meta={"candidatesTokenCount": "12"}), False),
        (gem(meta={"candidatesTokenCount": True}), False),
        (gem(meta={"totalTokenCount": "n/a"}), True),  # not read, but present
        (gem(meta={"promptTokensDetails": "caf\u00e9"}), True),  # read past
        (gem(last={"usageMetadata": {"totalTokenCount": 3}}), True),  # has_counts
        (gem(last={"usageMetadata": {"x": 3}}), False),  # no counts
        (gem(last={"usageMetadata": [1]}), False),
        (gem(last={"usageMetadata": None}), False),
        (gem(last={"modelVersion": None}), False),
        (gem(last={"modelVersion": ""}), False),
        (gem(last={"responseId": 7}), False),
        (gem(last={"modelVersion": "gemini-\u00e9"}), False),
        (gem(last=_cands({"finishReason": "STOP"}, 5, {"finishReason": ""})), True),
        (gem(last=_cands({"finishReason": "A"}, {"finishReason": "B"})), True),
        (gem(last=_cands({"finishReason": 3}, {"finishReason": "MAX_TOKENS"})), True),
        (gem(last=_cands({"finishReason": None})), False),
        (gem(last=_cands()), False),
        (gem(last={"candidates": {"finishReason": "STOP"}}), False),
        (gem(last=_cands({"content": {"parts": [{"text": "x", "thought": True}]}})), False),
        (
            gem(last=_cands({"finishReason": "STOP", "content": {"parts": [{"text": "thought"}]}})),
            False,
        ),
        (
            gem(last=_cands({"finishReason": "STOP", "content": {"parts": [{"text": "error"}]}})),
            False,
        ),
        (gem(last={"error": {"code": 500}}), False),
        (gem(last={"x": "\x7f \u2028 \ufeff"}), True),
        (gem(last={"x": "\x1f"}), False),  # written \u001f: Python reads it
        (gem(end=""), False),
        (gem(end="\r\n"), False),
        (gem(end="\r\n\r\n\r\n"), False),
        (gem(end="\n\n"), True),
        (gem(end="\r\r"), True),  # lone CRs are newlines too
        (gem(end="\r\n\r\ndata: [DONE]\r\n\r\n"), False),
        (gem(end="\r\n\r\n: keep-alive\r\n\r\n"), False),
        (gem(raw_last='{"a":1}'), False),
        (gem(raw_last="[1]"), False),
        (gem(raw_last="not json"), False),
        (gem(raw_last=dumps(_cands({"finishReason": "STOP"})) + " x"), False),
    ],
)
def test_variants_of_the_gemini_end(body: str, answered: bool) -> None:
    for parts in cut_each(body):
        assert check(parts, GENERATE) is answered


def _last_raw(**change: str) -> str:
    raw = orjson.dumps(
        {
            "candidates": [{"content": {"parts": [{"text": "z"}]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 2},
            "modelVersion": "g",
            "responseId": "r",
        }
    ).decode()
    for old, new in change.items():
        raw = raw.replace(old, new)
    return raw


@pytest.mark.parametrize(
    ("raw", "answered"),
    [
        (_last_raw(), True),
        (_last_raw(z='\\\\\\"\\/\\b\\f\\n\\r\\t'), True),  # the escapes orjson reads
        (_last_raw(z="\\u00e9"), False),  # a \\u escape: Python's to read
        (_last_raw(z="\\x"), False),  # not JSON
        (_last_raw(z="\\"), False),
        (_last_raw(z="a\tb"), False),  # a raw control character: not JSON
        (_last_raw(z="\u00e9\U0001f642"), True),
        (_last_raw(**{'"g"': '"g","modelVersion":"h"'}), False),  # a key twice
        (_last_raw(**{'"g"': '"g","a":{"b":1,"b":2}'}), False),
        (_last_raw(**{'"g"': '"g","a":[1,]'}), False),
        (_last_raw(**{'"g"': '"g","a":-1'}), False),  # not in the subset: Python's
        (_last_raw(**{'"g"': '"g","caf\u00e9":1'}), False),  # a key not ASCII
        (_last_raw(**{":": " : ", ",": " , "}), True),
        (_last_raw()[:-1], False),
        (_last_raw() + "   ", True),
        (_last_raw() + "\t", False),
    ],
)
def test_strings_and_shapes_in_the_last_gemini_chunk(raw: str, answered: bool) -> None:
    for parts in cut_each(gem(raw_last=raw)):
        assert check(parts, GENERATE) is answered


def test_recorded_gemini_streams_are_read_in_c_with_small_edges() -> None:
    """The recorded Gemini stream is shorter than the edges: with a 100-byte head and a 700-byte
    first tail it reaches the C reader, which answers as the pure path does (the Vertex one, its
    last chunk a 1 kB signature, is read in Python: the same answer)."""
    mp = pytest.MonkeyPatch()
    mp.setattr(response, "WINDOW_HEAD_BYTES", 100)
    mp.setattr(response, "_TAILS", {**response._TAILS, "generate_content": (700, 1536)})
    answered = 0
    try:
        for name in ("gemini_stream_1.sse", "vertex_stream_1.sse"):
            for seed in range(10):
                parts = lines_for(BODIES[name], random.Random(seed), 12, False)
                c = completed(parts, GENERATE)
                fast = outcome(c)
                answered += answered_by(c) == ["_gemini_tail"]
                mp.setattr(response, "_gemini_tail", None)
                assert outcome(c) == fast
                mp.setattr(response, "_gemini_tail", tailscan.gemini_tail)
    finally:
        mp.undo()
    assert answered >= 3


def test_gemini_records_with_other_escapes_or_bytes() -> None:
    parts = records(gem(), [300] * 40)
    assert check(parts, GENERATE)
    for i in (0, 1, len(parts) - 2, len(parts) - 1):
        for bad in (b'"', b"\xff", b"\\", b"\\u00e9", b"\\r", b"\\r\\n", b"\xc3"):
            changed = list(parts)
            changed[i] = changed[i][:-2] + bad + b'"}'
            check(changed, GENERATE)
    # invalid UTF-8 in a string of the last chunk read past: Python replaces it, same answer
    changed = [*parts[:-1], parts[-1].replace("\u00bb".encode(), b"\xff\xfe")]
    assert b"\xff" in changed[-1] and check(changed, GENERATE)
    for first in (b" ", b"{", b"[", b"\\r\\n", b"\\ufeff", b""):
        changed = list(parts)
        changed[0] = line(RID, b'"' + first + parts[0].split(b'"data":"', 1)[1][:-2] + b'"')
        check(changed, GENERATE)
    assert tailscan.gemini_tail([], 1024, 768) is None
    assert tailscan.gemini_tail(tuple(parts), 1024, 768) is None  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        tailscan.gemini_tail(parts, 1024)  # type: ignore[call-arg]


def test_gemini_crlf_cut_across_records_at_every_byte() -> None:
    """The last chunk and the boundary before it cut into records at every byte (a CRLF split
    between two records, the tail's first record starting inside a blank line)."""
    body = gem(words=20)
    raw_len = len(body.encode())
    answered = 0
    for at in range(raw_len - 1100, raw_len):
        sizes = [150] * ((at - 1) // 150)
        sizes.append(at - sum(sizes))
        answered += check(records(body, sizes), GENERATE)
    assert answered > 700


def test_a_gemini_tail_larger_than_the_stack_buffer() -> None:
    body = gem(last={"pad": "p" * 20000})
    assert check(records(body, [300] * 40), GENERATE)


def no_reference_or_memory_kept(
    read: Any, tail: int, answered: list[list[bytes]], refused: list[list[bytes]]
) -> None:
    """`read` keeps no reference to the records and leaks nothing, answering or not."""
    assert read is not None
    every = [x for parts in [*answered, *refused] for x in parts]
    counts = [sys.getrefcount(x) for x in every]
    for _ in range(200):
        assert all(read(parts, 1024, tail) is not None for parts in answered)
        assert all(read(parts, 1024, tail) is None for parts in refused)
    assert [sys.getrefcount(x) for x in every] == counts

    def calls() -> None:
        for parts in [*answered, *refused]:
            read(parts, 1024, tail)

    assert grown_bytes(calls) < 10_000  # 3,000 calls: a leaked str or buffer per call is > 100 kB


def test_no_reference_or_memory_kept_by_the_gemini_reader() -> None:
    parts = records(gem(), [300] * 40)
    big = records(gem(last={"pad": "p" * 20000}), [300] * 40)
    refused = [*parts[:-1], parts[-1].replace(b"STOP", b"\\u0053TOP")]
    # beyond the stack buffer, declined after it is decoded: the heap buffer freed all the same
    big_refused = records(gem(last={"pad": "p" * 20000, "modelVersion": None}), [300] * 40)
    no_reference_or_memory_kept(tailscan.gemini_tail, 768, [parts, big], [refused, big_refused])


# -- Anthropic, read in C ----------------------------------------------------------------------


def _start(usage: Any = None, **message: Any) -> str:
    """A message_start payload: the `claude()` one, its message and usage changed as asked."""
    msg: dict[str, Any] = {"id": "msg_1", "model": "claude-haiku-4-5", "stop_reason": None}
    msg["usage"] = {
        "input_tokens": 2203,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 12,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": 2,
        "service_tier": "standard",
    }
    if usage is not None:
        msg["usage"] = {**msg["usage"], **usage} if type(usage) is dict else usage
    msg.update(message)
    return dumps({"type": "message_start", "message": msg})


def _delta(usage: Any = None, stop: Any = "end_turn", **more: Any) -> str:
    d: dict[str, Any] = {"type": "message_delta", "delta": {"stop_reason": stop}}
    d["usage"] = {"output_tokens": 271, **usage} if type(usage) is dict else usage
    if usage is None:
        d["usage"] = {"output_tokens": 271}
    d.update(more)
    return dumps(d)


def read_in_c(body: str) -> bool:
    """Asserts the C path equals the pure one (`check`); whether `anthropic_tail` answered."""
    parts = records(body, [300] * 30)
    check(parts, MESSAGES)
    return tailscan.anthropic_tail(parts, response.WINDOW_HEAD_BYTES, 896) is not None


@pytest.mark.parametrize(
    ("body", "answered"),
    [
        (claude(), True),
        (claude(start=_start({"cache_creation_input_tokens": 500})), True),
        (claude(start=_start({"cache_creation": {"ephemeral_1h_input_tokens": 300}})), True),
        (
            claude(
                start=_start(
                    {
                        "cache_creation_input_tokens": 0,
                        "cache_creation": {
                            "ephemeral_5m_input_tokens": 40,
                            "ephemeral_1h_input_tokens": 300,
                        },
                    }
                )
            ),
            True,  # the write counted from the split
        ),
        (claude(start=_start({"cache_creation": {}})), True),
        (claude(start=_start({"cache_creation": None})), True),
        (claude(start=_start({"cache_creation": [1]})), True),
        (claude(start=_start({"cache_creation": {"ephemeral_1h_input_tokens": 1.5}})), False),
        (claude(delta=_delta({"cache_creation": {"ephemeral_1h_input_tokens": 9}})), True),
        (claude(delta=_delta({"cache_creation": None, "input_tokens": None})), True),
        (claude(delta=_delta({"input_tokens": 5, "cache_read_input_tokens": 900})), True),
        (claude(delta=_delta({"output_tokens": None})), True),  # the message's placeholder
        (claude(delta=_delta({"service_tier": "priority"})), True),
        (claude(delta=_delta({"service_tier": None})), True),
        (claude(delta=_delta({"service_tier": 3})), True),
        (claude(delta=_delta({"service_tier": ""})), True),
        (claude(delta=_delta({"service_tier": "caf\u00e9"})), False),
        (claude(delta=_delta({"output_tokens_details": {"thinking_tokens": 90}})), True),
        (claude(delta=_delta({"output_tokens_details": {"thinking_tokens": None}})), True),
        (claude(start=_start({"output_tokens_details": {"thinking_tokens": 7}})), True),
        (
            claude(
                start=_start({"output_tokens_details": {"thinking_tokens": 7}}),
                delta=_delta({"output_tokens_details": "x"}),
            ),
            True,  # replaced whole
        ),
        (claude(delta=_delta({"output_tokens": -1})), False),
        (claude(delta=_delta({"output_tokens": 2.0})), False),
        (claude(delta=_delta({"output_tokens": 10**15})), False),
        (claude(delta=_delta({"output_tokens": 10**15 - 1})), True),
        (claude(delta=_delta({"iterations": [{"input_tokens": 1}]})), False),
        (claude(start=_start({"iterations": None})), False),
        (claude(delta=_delta(stop=None)), True),  # the message's stop reason
        (claude(delta=_delta(stop="")), True),
        (claude(delta=_delta(stop=7)), True),
        (claude(delta=_delta(delta=[1])), True),
        (claude(delta=_delta(usage="x")), True),
        (claude(delta=_delta(usage=None, extra={"usage": None})), True),
        (claude(start=_start(stop_reason="max_tokens"), delta=_delta(stop=None)), True),
        (claude(start=_start(model=None, id=5)), True),
        (claude(start=_start(model="caf\u00e9")), False),
        (claude(start=_start(usage=[])), True),
        (claude(start=_start(usage=[]), delta=_delta(usage=[])), False),  # no usage: Python
        (claude(start=dumps({"type": "message_start", "message": [1]})), False),
        (claude(start=dumps({"type": "message_start"})), False),
        (claude(start=_start(content=[{"type": "text", "text": "d\u00e9j\u00e0 \\ \n"}])), True),
        (claude(start=_start(content=[{"text": "\x01"}])), False),  # \u0001: Python's
        (claude(start=_start(x=1.5)), False),
        (claude(start=_start().replace('"model"', '"id":"x","model"')), False),  # key twice
        (
            claude(block='{"type":"content_block_start","content_block":{"type":"thinking"}}'),
            True,
        ),
        (
            claude(
                block='{"type":"content_block_start","content_block":{"type":"redacted_thinking"}}'
            ),
            True,
        ),
        (claude(block='{"content_block":{"type":"thinkin"}}'), True),
        (claude(block='{"content_block":[]}'), True),
        (claude(block="[1]"), False),
        (claude(block='{"a":1} '), True),
        (claude(block='{"a":1}\t'), False),
        (claude(delta='{"delta":{"stop_reason":"x"},"usage":{"output_tokens":1e999}}'), False),
    ],
)
def test_anthropic_payloads_read_in_c(body: str, answered: bool) -> None:
    assert read_in_c(body) is answered


def test_anthropic_tail_answer() -> None:
    parts = records(claude(), [300] * 30)
    got = tailscan.anthropic_tail(parts, 1024, 896)
    assert got == (
        "claude-haiku-4-5",
        "msg_1",
        "end_turn",
        False,
        "standard",
        2203,
        12,
        0,
        True,
        0,
        0,
        271,
        0,
    )


def test_no_reference_or_memory_kept_by_the_anthropic_reader() -> None:
    parts = records(claude(), [300] * 30)
    big = claude(start=_start(content=[{"type": "text", "text": "p" * 20000}]))
    head = big.index("event: content_block_delta")  # one head record beyond the stack buffer
    big_parts = records(big, [head, *[300] * 20])
    refused = records(claude(start=_start(x=1.5)), [300] * 30)
    # beyond the stack buffer, declined after it is decoded: the heap buffer freed all the same
    big = claude(start=_start(x=1.5, content=[{"type": "text", "text": "p" * 20000}]))
    big_refused = records(big, [big.index("event: content_block_delta"), *[300] * 20])
    no_reference_or_memory_kept(
        tailscan.anthropic_tail, 896, [parts, big_parts], [refused, big_refused]
    )


# ------------------------------------------------------------------ a whole body's decode

_PIECES = [
    "plain ascii",
    '\\"',
    "\\\\",
    "\\/",
    "\\n",
    "\\r",
    "\\t",
    "\\b",
    "\\f",
    "\\u00e9",
    "\\u20AC",
    "\\u0000",
    "\\u007f",
    "\\ud83d\\ude80",  # a surrogate pair: left to orjson
    "\\ud800",  # a lone surrogate: left to orjson
    "\\udc00x",
    "\\u12",  # short
    "\\uzzzz",
    "\\x",  # not an escape
    "\\",
    '"',  # a bare quote: not one JSON string
    "\n",  # a control character
    "\x7f",
    "Größe déjà 日本語 🚀",
]
_BYTES = [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf", b"\x00", b"\x1f"]


def _read_in_c(piece: str) -> bool:
    """Whether string_of reads a string holding `piece` (else orjson's to judge)."""
    return piece not in ('"', "\\", "\n", "\\u12", "\\uzzzz", "\\x") and "\\ud" not in piece


def _orjson_or_error(b: bytes) -> Any:
    try:
        return orjson.loads(b)
    except orjson.JSONDecodeError:
        return "<error>"


def _decode_matches_orjson(b: bytes) -> bool:
    """string_of(b) reads b as orjson does, or says None; True when it answered."""
    got = tailscan.string_of(b)
    if got is None:
        return False
    assert type(got) is str and got == orjson.loads(b)
    return True


def test_string_of_reads_a_json_string_as_orjson() -> None:
    assert tailscan.string_of(b'""') == ""
    usual = "".join(p for p in _PIECES if _read_in_c(p))
    for text in (usual, usual * 400):  # the second beyond the stack buffer
        assert _decode_matches_orjson(f'"{text}"'.encode())
    for piece in _PIECES:
        for b in ((f'"{piece}"').encode(), f'"{f"a{piece}z" * 3}"'.encode()):
            answered = _decode_matches_orjson(b)
            assert answered == _read_in_c(piece), b
    for raw in _BYTES:
        b = b'"ab' + raw + b'cd"'
        assert not _decode_matches_orjson(b), b  # each of these is declined
    for b in (b"", b'"', b"'x'", b'"x', b'x"', b' "x"', b'"x" ', b"[1]", '"x"'.encode("utf-16")):
        assert tailscan.string_of(b) is None
    assert tailscan.string_of("not bytes") is None  # type: ignore[arg-type]
    assert tailscan.string_of(bytearray(b'"x"')) is None  # type: ignore[arg-type]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(
            st.sampled_from(_PIECES),
            st.sampled_from(_BYTES),
            st.binary(max_size=24),
            st.text(max_size=24),
        ),
        max_size=40,
    )
)
def test_string_of_hostile_strings(pieces: list[Any]) -> None:
    raw = [p if type(p) is bytes else p.encode("utf-8", "surrogatepass") for p in pieces]
    b = b'"' + b"".join(raw) + b'"'
    if tailscan.string_of(b) is not None:
        assert _decode_matches_orjson(b)
    else:
        # declined: orjson refuses it, or it holds a `\u` escape of a surrogate (orjson's)
        assert _orjson_or_error(b) == "<error>" or re.search(rb"\\u[dD][89a-fA-F]", b)


def test_the_whole_body_decode_is_orjson_s_on_every_recorded_stream() -> None:
    """assemble_escaped with string_of gives what it gives with orjson alone (its pure twin),
    on every recorded fixture body cut into records, torn and not UTF-8 ones too."""
    rng = random.Random(11)
    mp = pytest.MonkeyPatch()
    seen = 0
    for body in BODIES.values():
        for damage in (False, True):
            parts = lines_for(body, rng, 7, damage)
            fast = assemble_escaped(parts)
            mp.setattr(body_module, "_string_of", None)
            try:
                pure = assemble_escaped(parts)
            finally:
                mp.undo()
            assert fast == pure
            seen += 1
    assert seen > 20


def test_no_memory_kept_by_string_of() -> None:
    small = b'"' + "Größe \\n \\u00e9 🚀 x".encode() * 10 + b'"'
    big = small * 500  # not one string: declined after the buffer is taken
    whole = b'"' + small[1:-1] * 500 + b'"'
    for b in (small, big, whole, b'"\\ud800"', b'"\xff"'):
        assert grown_bytes(lambda b=b: tailscan.string_of(b), n=2000) < 10_000


def test_a_chat_stream_cut_short_leaves_out_the_first_tail() -> None:
    """A chat stream without its `[DONE]` (cancelled), its chunks the generated mix's size:
    `chat_tail` declines; the walk back through four content chunks would cross the first
    tail, so `_parse_edges` leaves that try out and reads the next tail, with the answer of the
    path that tries both (`chat_tail` off): no usage, not terminal, the last chunk's model."""
    pad = {"obfuscation": "x" * 350}
    delta = [{"index": 0, "delta": {"content": " w"}}]
    chunks = [{**BASE, "choices": delta, **pad}] * 60
    body = "".join(f"data: {dumps(o)}\n\n" for o in chunks)
    parts = records(body, [400] * 80)
    assert b"[DONE]" not in parts[-1]
    tries: list[int] = []
    read = response.parse_stream_edges

    def counted(tail: str, head: Any, **kw: Any) -> Any:
        tries.append(len(tail))
        return read(tail, head, **kw)

    mp = pytest.MonkeyPatch()
    mp.setattr(response, "parse_stream_edges", counted)
    try:
        assert not check(parts)  # the C reader declined; equal to the pure path (asserted)
        tries.clear()
        fast = outcome(completed(parts))
        assert len(tries) == 1 and tries[0] > 1536
        mp.setattr(response, "_chat_tail", None)
        tries.clear()
        assert outcome(completed(parts)) == fast
        assert len(tries) == 2 and tries[0] < 1536 < tries[1]
    finally:
        mp.undo()
    parsed, body_text, _, _ = fast
    assert body_text is None  # read from the edges, not decoded whole
    assert parsed.usage is None and not parsed.terminal_seen and parsed.model == "gpt-4o-mini"
