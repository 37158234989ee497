"""The text mode's shortcuts (`want_text`: calibration samples and estimates) change the speed,
never the answer.

Each shortcut is swapped back for the general path it replaces, and `parse_body(...,
want_text=True)` must give the very same `ParsedBody` (text pieces, extra tokens, malformed
count, usage, flags) on every recorded fixture and on hostile generated streams: any JSON type,
NaN, 1e999, 2^70, escaped quotes, unicode escapes, lone surrogates, torn and unterminated
events, junk payloads.

- `Chunks.forward_kinds` (framed and decoded inline, only the events of the asked kinds) against
  `forward_all()` + `ev.kind()` + `ev.obj()`;
- `Chunks.forward_objects` against `forward_all()` + `ev.obj()` (chat and Gemini streams);
- `anthropic._stream_blocks` (the usual text delta read inline) against `_block_text`;
- `gemini._texts` (a text-only part read at once) against its general walk.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.parse.providers import anthropic, gemini, parse_body
from sidecar.parse.providers._common import Chunks

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def ref_forward_kinds(
    self: Chunks, kinds: frozenset[str] | None
) -> Iterator[tuple[str | None, dict[str, Any] | None]]:
    for ev in self.forward_all():
        kind = ev.kind()
        if kinds is None or kind in kinds:
            yield (None if kinds is None else kind), ev.obj()


def ref_forward_objects(self: Chunks) -> Iterator[dict[str, Any] | None]:
    for ev in self.forward_all():
        yield ev.obj()


_BLOCKS = anthropic._stream_blocks
_GEMINI_TEXTS = gemini._texts


def ref_anthropic_blocks(chunks: Chunks) -> dict[Any, tuple[str, Any, list[str]]]:
    return _BLOCKS(chunks, inline=False)


def ref_gemini_texts(obj: dict[str, Any], out: list[str], calls: list[int] | None = None) -> bool:
    return _GEMINI_TEXTS(obj, out, calls, inline=False)


def no_text_walk(self: Chunks, *args: Any) -> None:
    return None  # `Chunks.text_walk` says it cannot: the Python walks run


def pure(monkeypatch: pytest.MonkeyPatch) -> None:
    """The C walk (`textscan`, `Chunks.text_walk`) swapped for its pure-Python twin."""
    monkeypatch.setattr(Chunks, "text_walk", no_text_walk)


def general(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every text shortcut swapped back for its general path."""
    pure(monkeypatch)
    monkeypatch.setattr(Chunks, "forward_kinds", ref_forward_kinds)
    monkeypatch.setattr(Chunks, "forward_objects", ref_forward_objects)
    monkeypatch.setattr(anthropic, "_stream_blocks", ref_anthropic_blocks)
    monkeypatch.setattr(gemini, "_texts", ref_gemini_texts)


HINTS = [
    ("openai", "chat.completions"),
    ("anthropic", "messages"),
    ("gemini", "generate_content"),
    (None, None),
]


def both(body: str, provider: str | None, api: str | None) -> tuple[Any, Any]:
    """The answer with every shortcut (the C walk when built) and the general path's; the
    Python shortcuts alone (the C walk's twin) must give the same answer as well."""
    fast = parse_body(body, provider=provider, api=api, want_text=True)
    with pytest.MonkeyPatch.context() as mp:
        pure(mp)
        twin = parse_body(body, provider=provider, api=api, want_text=True)
        general(mp)
        ref = parse_body(body, provider=provider, api=api, want_text=True)
    assert dataclasses.asdict(twin) == dataclasses.asdict(ref)
    return dataclasses.asdict(fast), dataclasses.asdict(ref)


def fixture_bodies() -> list[Path]:
    return sorted(
        p
        for p in FIXTURES.rglob("*")
        if p.is_file() and p.suffix in (".sse", ".json") and "source" not in p.name
    )


def test_the_fixtures_are_found() -> None:
    assert len(fixture_bodies()) >= 15


@pytest.mark.parametrize("path", fixture_bodies(), ids=lambda p: p.name)
def test_every_fixture_gives_the_same_text(path: Path) -> None:
    body = path.read_text(encoding="utf-8", errors="surrogateescape")
    for provider, api in HINTS:
        fast, ref = both(body, provider, api)
        assert fast == ref
    fast, _ = both(body, None, None)
    if path.suffix == ".sse" and ("chat" in path.name or "anthropic" in path.name):
        assert fast["output_text"]  # the walk really read text (not an empty answer twice)


def test_the_general_path_is_really_swapped_in() -> None:
    """The shortcut and its reference differ where it matters (so the comparisons above
    compare two paths): the reference decodes every event, the shortcut only those asked."""
    text = 'event: ping\ndata: {bad\n\nevent: content_block_delta\ndata: {"index":0}\n\n'
    fast = Chunks(text)
    assert [k for k, _ in fast.forward_kinds(frozenset({"content_block_delta"}))] == [
        "content_block_delta"
    ]
    assert fast.malformed == 0  # the ping was neither decoded nor counted
    ref = Chunks(text)
    assert [ev.obj() for ev in ref.forward_all()] == [None, {"index": 0}]
    assert ref.malformed == 1


# Hostile values: any JSON type, NaN / 1e999 / 2^70 (as raw text), escapes, lone surrogates.
RAW_VALUES = [
    '"plain"',
    '"a \\"quoted\\" word"',
    '"\\u00e9t\\u00e9 \\ud83d\\ude00"',
    '"\\ud800 lone"',
    '""',
    "null",
    "true",
    "7",
    "-1",
    "1e999",
    "NaN",
    "1180591620717411303424",
    "[1, 2]",
    '{"text": "x"}',
    '"é日本語"',
    '"\\n\\t"',
]
raw = st.sampled_from(RAW_VALUES)


CHAT_EVENTS = [
    'data: {"id":"c","choices":[{"index":0,"delta":{"content":$V}}]}',
    'data: {"choices":[{"index":0,"delta":{"content":$V,"role":$E}}]}',
    'data: {"choices":[{"delta":{"content":$V},"message":$E}]}',
    'data: {"choices":[{"delta":{"content":$V}},{"delta":{"content":$E}}]}',
    'data: {"choices":$V}',
    'data: {"choices":[{"index":0,"delta":$V}]}',
    'data: {"choices":[$V]}',
    "data: [DONE]",
    'data: {"choices":[{"delta":{"content":$V}}]',  # torn
    'data: {"choices":[{"index":1,"delta":{"tool_calls":'
    '[{"index":0,"function":{"name":$V,"arguments":$E}}]}}]}',
    'data: {"choices":[{"delta":{"content":$V}},1e999,NaN]}',
]


def fill(template: str, value: str, extra: str) -> str:
    return template.replace("$V", value).replace("$E", extra)


DELTA = "event: content_block_delta\ndata: "
ANTHROPIC_EVENTS = [
    DELTA + '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":$V}}',
    DELTA + '{"type":"content_block_delta","index":0,"delta":{"thinking":$E,"text":$V}}',
    DELTA + '{"index":$V,"delta":{"type":"input_json_delta","partial_json":$V}}',
    "event: content_block_start\ndata: "
    '{"type":"content_block_start","index":1,'
    '"content_block":{"type":"tool_use","name":$V,"input":$E}}',
    'data: {"type":"content_block_delta","delta":{"type":"t","text":$V}}',
    DELTA + "{bad $V",  # junk, counted
    "event: ping\ndata: {bad $V",  # junk in an event the text walk skips
    "event: message_start\ndata: "
    '{"type":"message_start","message":{"model":$V,"usage":{"input_tokens":$E}}}',
    "event: message_delta\ndata: "
    '{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":$V}}',
    "event: message_stop\ndata: {}",
    DELTA + '{"index":0,"delta":{"type":"text_delta","text":$V}',  # torn
]
GEMINI_EVENTS = [
    'data: {"candidates":[{"content":{"parts":[{"text":$V}]}}]}',
    'data: {"candidates":[{"content":{"parts":[{"text":$V,"thought":$E}]}}]}',
    'data: {"candidates":[{"content":{"parts":[{"functionCall":{"name":$V,"args":$E}}]}}]}',
    'data: {"candidates":[$V,{"content":{"parts":$E}}]}',
    'data: {"candidates":$V}',
    'data: {"candidates":[{"content":$V}]}',
    'data: {"candidates":[{"content":{"parts":[$V,{"text":$E}]}}]}',
    'data: {"candidates":[{"finishReason":"STOP","content":{"parts":[]}}],'
    '"usageMetadata":{"promptTokenCount":$V,"candidatesTokenCount":3}}',
    'data: {"candidates":[{"content":{"parts":[{"text":$V}]}}]',  # torn
]


TEMPLATES = {
    "chat.completions": CHAT_EVENTS,
    "messages": ANTHROPIC_EVENTS,
    "generate_content": GEMINI_EVENTS,
}
PROVIDERS = {"chat.completions": "openai", "messages": "anthropic", "generate_content": "gemini"}


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    api=st.sampled_from(sorted(TEMPLATES)),
    events=st.lists(st.tuples(raw, raw, st.integers(0, 10)), min_size=1, max_size=10),
    seps=st.lists(st.sampled_from(["\n\n", "\r\n\r\n", "\n\n\n", "\n", "\r\r"]), max_size=10),
    tail=st.sampled_from(["", "\n", "\n\n", "\n\ndata: {", "\n\n: comment\n\n"]),
    hinted=st.booleans(),
)
def test_hostile_streams_give_the_same_answer(
    api: str, events: list[tuple[str, str, int]], seps: list[str], tail: str, hinted: bool
) -> None:
    templates = TEMPLATES[api]
    blocks = [
        fill(templates[shape % len(templates)], value, extra) for value, extra, shape in events
    ]
    body = ""
    for i, block in enumerate(blocks):
        body += block + (seps[i] if i < len(seps) else "\n\n")
    body = body.rstrip("\n") + tail
    provider = PROVIDERS[api] if hinted else None
    fast, ref = both(body, provider, api if hinted else None)
    assert fast == ref


@given(
    events=st.lists(
        st.tuples(
            st.sampled_from([None, "a", "content_block_delta", "ping", ""]),
            st.one_of(
                st.sampled_from(
                    [
                        '{"type":"a"}',
                        '{"type":"content_block_delta","x":1}',
                        '{"type": "ping"}',
                        "[DONE]",
                        "",
                        " ",
                        "{bad",
                        "7",
                        '{"type":"a"',
                    ]
                ),
                st.text(alphabet='{}":ab1', max_size=6),
            ),
        ),
        max_size=8,
    ),
    kinds=st.one_of(
        st.none(), st.sampled_from([frozenset({"a"}), frozenset({"content_block_delta", "ping"})])
    ),
    walk_forward=st.integers(0, 9),
    walk_back=st.integers(0, 9),
    first_back=st.integers(0, 4),
    tail=st.sampled_from(["", "\n", "\n\n", "\n\n\n"]),
)
def test_forward_kinds_equals_forward_all_then_kind_and_obj(
    events: list[tuple[str | None, str]],
    kinds: frozenset[str] | None,
    walk_forward: int,
    walk_back: int,
    first_back: int,
    tail: str,
) -> None:
    """The same pairs, and, after the parsers' later walks (forward from the head, backward from
    the end, each payload decoded), the same count of payloads that did not decode; also when
    a walk from the end came first (events already cached: each still counted once)."""
    text = "\n\n".join(
        (f"event:{name}\n" if name is not None else "") + f"data: {data}" for name, data in events
    )
    text = text + tail

    def walks(chunks: Chunks) -> list[object]:
        ahead = [ev.obj() for _, ev in zip(range(walk_forward), chunks.forward(), strict=False)]
        back = [ev.obj() for _, ev in zip(range(walk_back), chunks.backward(), strict=False)]
        return [ahead, back, chunks.malformed]

    ref = Chunks(text)
    fast = Chunks(text)
    for chunks in (ref, fast):
        for _, ev in zip(range(first_back), chunks.backward(), strict=False):
            ev.obj()
    want = list(ref_forward_kinds(ref, kinds))
    assert list(fast.forward_kinds(kinds)) == want
    assert walks(fast) == walks(ref)


def test_forward_kinds_reads_objects_and_edges_cross() -> None:
    objs = Chunks.from_objects([{"type": "a"}, 7, {"b": 1}])
    assert list(objs.forward_kinds(None)) == [(None, {"type": "a"}), (None, None), (None, {"b": 1})]
    assert list(objs.forward_kinds(frozenset({"a"}))) == []  # no raw text: no kind
    from sidecar.parse.providers import EdgeChunks

    edge = EdgeChunks('data: {"a":1}\n\n', lambda: None)
    assert list(edge.forward_kinds(None)) == []
    assert edge.crossed


def test_text_survives_escapes_and_bad_utf8() -> None:
    """Escaped quotes, unicode escapes, a surrogate pair, and a lone surrogate (the body's
    invalid UTF-8 decoded with surrogateescape): the pieces are exactly the decoded strings."""
    pieces = ['a "q"', "\u00e9t\u00e9", "\U0001f600", "x\udcff"]
    body = ""
    for p in pieces[:3]:
        body += "data: " + orjson.dumps({"choices": [{"delta": {"content": p}}]}).decode() + "\n\n"
    body += 'data: {"choices":[{"delta":{"content":"x\udcff"}}]}\n\n'  # orjson refuses: junk
    pb = parse_body(body, provider="openai", api="chat.completions", want_text=True)
    assert pb.output_text == pieces[:3]
    assert pb.malformed_events == 1


@pytest.mark.parametrize("api", sorted(TEMPLATES))
def test_every_template_with_every_value_gives_the_same_answer(api: str) -> None:
    """Every shape with every hostile value, each event twice and once more cut (the generated
    test above samples the combinations; this one walks them all, deterministically)."""
    for template in TEMPLATES[api]:
        for value in RAW_VALUES:
            for extra in RAW_VALUES[:8]:
                event = fill(template, value, extra)
                body = f"{event}\n\n{event}\n\n{event}"
                fast, ref = both(body, PROVIDERS[api], api)
                assert fast == ref, body
