"""The direct tail reads (`anthropic.parse_tail`, `gemini.parse_tail`, `openai_chat.parse_tail`)
must give exactly what their general parser gives on the same edges, or step aside (False,
`pb` untouched).

A stream is cut at two event boundaries into a head and a tail, as `parse/response.py` hands
them on; the general answer is the stream parser walking `EdgeChunks(tail, head)`. When the
direct read answers, the general walk must not have crossed an edge and both answers must
equal the whole body's. Streams: every recorded fixture, and hostile generated ones (usage
values of any JSON type, NaN, 1e999, 2^70, duplicated events and keys, an error event after
the usage, a missing `message_stop`, a cut last event, lone surrogates, `\\r\\n` endings).
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sidecar.parse.detect import detect_from_body
from sidecar.parse.providers import EdgeChunks, _parse_sse_chunks, anthropic, gemini, parse_body
from sidecar.parse.sse import normalise_newlines
from sidecar.types import ParsedBody
from tests.unit.test_parse_edges import VALUES, anthropic_stream, dumps, gemini_stream

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "recorded"
BODIES = {p.name: p.read_text(encoding="utf-8") for p in sorted(FIXTURES.glob("*.sse"))}


def _fresh(provider: str, api: str) -> ParsedBody:
    return ParsedBody(provider=provider, api=api, is_stream=True)


def _direct(pb: ParsedBody, tail: str, head: str) -> bool:
    if pb.api == "messages":
        return anthropic.parse_tail(pb, tail, head)
    return gemini.parse_tail(pb, tail)


def compare(body: str, provider: str, api: str, head_end: int, tail_start: int) -> bool:
    """Edges cut at the `head_end`-th and `tail_start`-th boundaries of the normalised body;
    asserts the direct read equals the general walk; True if the direct read answered."""
    text = normalise_newlines(body)
    cuts = [i for i in range(len(text) - 1) if text.startswith("\n\n", i)]
    if not cuts:
        return False
    head_end = min(head_end, len(cuts) - 1)
    tail_start = min(max(tail_start, head_end), len(cuts) - 1)
    head = text[: cuts[head_end] + 2]
    tail = text[cuts[tail_start] + 2 :].lstrip("\n")
    if not tail:
        return False
    fast = _fresh(provider, api)
    answered = _direct(fast, tail, head)
    slow = _fresh(provider, api)
    chunks = EdgeChunks(tail, lambda: head)
    _parse_sse_chunks(slow, chunks, False)
    if not answered:
        assert fast == _fresh(provider, api), "a read that steps aside leaves `pb` untouched"
        return False
    assert not chunks.crossed, "the general walk stays within the edges the read used"
    assert fast == slow
    assert fast == parse_body(body, provider=provider, api=api)
    return True


EDGE_FIXTURES = sorted(  # (gemini_error_400_1 is a JSON body: no edges)
    n for n in BODIES if n.startswith(("anthropic", "gemini", "vertex")) and "error" not in n
)


@pytest.mark.parametrize("name", EDGE_FIXTURES)
def test_direct_reads_equal_the_general_walk_on_recorded_streams(name: str) -> None:
    body = BODIES[name]
    provider, api = detect_from_body(body)
    assert api in ("messages", "generate_content")
    answered = 0
    count = normalise_newlines(body).count("\n\n")
    for head_end in range(min(count, 5)):
        for tail_start in range(head_end, count):
            answered += compare(body, provider or "gemini", api, head_end, tail_start)
    if count > 1:  # (a one-event stream has no tail after a boundary)
        assert answered, "not vacuous: the usual recorded stream is read straight"


def _mutate(body: str, rng: random.Random, how: str) -> str:
    blocks = normalise_newlines(body).split("\n\n")
    events = [b for b in blocks if b]
    if how == "duplicate" and events:
        i = rng.randrange(len(events))
        events.insert(i, events[i])
    elif how == "drop" and events:
        del events[rng.randrange(len(events))]
    elif how == "dupkey" and events:
        i = rng.randrange(len(events))
        if events[i].endswith("}"):
            extra = rng.choice(['"usage": {"output_tokens": 7}', '"modelVersion": 5', '"a": 1'])
            events[i] = events[i][:-1] + ", " + extra + "}"
    elif how == "surrogate" and events:
        i = rng.randrange(len(events))
        events[i] = events[i].replace('"', '"\udcff', 1)
    elif how == "comment" and events:
        events.insert(rng.randrange(len(events) + 1), ": keep-alive")
    elif how == "rawline" and events:
        i = rng.randrange(len(events))
        events[i] = events[i].replace("data:", "data:" if rng.random() < 0.5 else "id: 1\ndata:")
    out = "\n\n".join(events) + "\n\n"
    if how == "cut":
        out = out[: -rng.randrange(1, 30)]
    elif how == "crlf":
        out = out.replace("\n", "\r\n")
    elif how == "nostop":
        out = out.replace("event: message_stop", "event: message_stopped")
    return out


MUTATIONS = ["", "", "", "duplicate", "drop", "dupkey", "surrogate", "comment", "rawline", "cut"]
MUTATIONS += ["crlf", "nostop", "thinking", "meta"]


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(["anthropic", "gemini"]),
    values=st.lists(VALUES, min_size=5, max_size=5),
    words=st.lists(st.sampled_from(["hi", '"error"', "\u00e9\U0001f642", ""]), max_size=12),
    seed=st.integers(min_value=0, max_value=2**32),
    how=st.sampled_from(MUTATIONS),
    head_end=st.sampled_from([0, 1, 1, 1, 2, 3, 4]),
    back=st.sampled_from([1, 2, 2, 3, 3, 4, 6]),
)
def test_direct_reads_equal_the_general_walk_on_hostile_streams(
    kind: str,
    values: list[Any],
    words: list[str],
    seed: int,
    how: str,
    head_end: int,
    back: int,
) -> None:
    rng = random.Random(seed)
    if rng.random() < 0.6:  # a usual finish reason, more often than the strategy draws one
        values = [rng.choice(["STOP", "end_turn"]), *values[1:]]
    if kind == "anthropic":
        body = anthropic_stream(rng, values, words)
        if how == "thinking":
            body = body.replace('"content_block": {}', '"content_block": {"type": "thinking"}')
        provider, api = "anthropic", "messages"
    else:
        body = gemini_stream(rng, values, words)
        if rng.random() < 0.7:  # the last chunk names the model too (then it says it all)
            model = dumps(rng.choice(["g", values[4]]))
            body = body.replace('"responseId":"r"', '"responseId":"r","modelVersion":' + model)
        if how == "thinking":
            body = body.replace('{"text": "hi"}', '{"text": "hi", "thought": true}', 1)
        elif how == "meta":  # a tier, a partial snapshot, fields of other types
            body = body.replace(
                '"usageMetadata": {', '"usageMetadata": {"trafficType": ' + dumps(values[4]) + ", "
            )
        provider, api = "gemini", "generate_content"
    body = _mutate(body, rng, how)
    if kind == "gemini" and rng.random() < 0.5:
        body = body.replace("\n", "\r\n")  # as Gemini frames its events
    count = normalise_newlines(body).count("\n\n")
    answered = compare(body, provider, api, head_end, max(head_end, count - back))
    event(f"{kind} read straight: {answered}")


def test_direct_reads_answer_the_usual_streams() -> None:
    """Not vacuous: the usual generated shapes are read straight."""
    rng = random.Random(3)
    for make, provider, api in (
        (anthropic_stream, "anthropic", "messages"),
        (gemini_stream, "gemini", "generate_content"),
    ):
        values = ["end_turn" if api == "messages" else "STOP", 10, 20, 3, 1]
        body = make(rng, values, ["hi", "there", "caf\u00e9"] * 5)
        if api == "messages":  # the hostile generator's error event, 30 % of the time: none
            body = re.sub(r"event: error\n[^\n]*\n\n", "", body)
        else:
            body = body.replace('"responseId":"r"', '"responseId":"r","modelVersion":"g"')
        count = body.replace("\r\n", "\n").count("\n\n")
        assert compare(body, provider, api, 2, count - 3)


@pytest.mark.parametrize(
    ("tail", "head", "direct"),
    [
        (
            'event: message_delta\ndata: {"usage": {"output_tokens": 5}}\n\n'
            "event: message_stop\ndata: {}\n\n",
            'event: message_start\ndata: {"message": {}}\n\n'
            "event: content_block_start\ndata: {}\n\n",
            True,
        ),
        # an error event after the usage: the general walk applies it
        (
            'event: message_delta\ndata: {"usage": {"output_tokens": 5}}\n\n'
            'event: error\ndata: {"error": {"type": "x"}}\n\nevent: message_stop\ndata: {}\n\n',
            "event: message_start\ndata: {}\n\nevent: content_block_start\ndata: {}\n\n",
            False,
        ),
        # a delta that is not an object: the general walk goes on past it
        (
            "event: message_delta\ndata: [1]\n\nevent: message_stop\ndata: {}\n\n",
            "event: message_start\ndata: {}\n\nevent: content_block_start\ndata: {}\n\n",
            False,
        ),
        # a ping between the start and the first block
        (
            "event: message_delta\ndata: {}\n\nevent: message_stop\ndata: {}\n\n",
            "event: message_start\ndata: {}\n\nevent: ping\ndata: {}\n\n"
            "event: content_block_start\ndata: {}\n\n",
            False,
        ),
        # two newlines too many before the end
        (
            "event: message_delta\ndata: {}\n\nevent: message_stop\ndata: {}\n\n\n",
            "event: message_start\ndata: {}\n\nevent: content_block_start\ndata: {}\n\n",
            False,
        ),
    ],
)
def test_anthropic_tail_cases(tail: str, head: str, direct: bool) -> None:
    fast = _fresh("anthropic", "messages")
    assert anthropic.parse_tail(fast, tail, head) is direct
    slow = _fresh("anthropic", "messages")
    _parse_sse_chunks(slow, EdgeChunks(tail, lambda: head), False)
    if direct:
        assert fast == slow
    else:
        assert fast == _fresh("anthropic", "messages")
