"""Property tests: chunk boundaries, interleaving, framing variants and arbitrary input."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.parse.providers import parse_body_strict
from sidecar.parse.sse import iter_events

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "recorded"
BODIES = {
    p.name: p.read_text(encoding="utf-8")
    for p in sorted(FIXTURES.iterdir())
    if p.suffix in (".sse", ".json")
}
NAMES = sorted(BODIES)
SSE_NAMES = [n for n in NAMES if n.endswith(".sse") and n != "gemini_error_400_1.sse"]

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def summary(body: str) -> tuple[object, ...]:
    pb = parse_body_strict(body)
    return (pb.usage, pb.model, pb.finish_reason, pb.terminal_seen, pb.error_type, pb.provider)


EXPECTED = {name: summary(body) for name, body in BODIES.items()}


def split_at(body: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(body) + 1) for c in cuts})
    pieces, last = [], 0
    for p in points:
        pieces.append(body[last:p])
        last = p
    pieces.append(body[last:])
    return pieces


@SETTINGS
@given(name=st.sampled_from(NAMES), cuts=st.lists(st.integers(min_value=0), max_size=30))
def test_chunk_boundaries_do_not_change_usage(name: str, cuts: list[int]) -> None:
    pieces = split_at(BODIES[name], cuts)
    assert "".join(pieces) == BODIES[name]
    assert summary("".join(pieces)) == EXPECTED[name]


@SETTINGS
@given(
    names=st.lists(st.sampled_from(NAMES), min_size=2, max_size=5),
    cuts=st.lists(st.integers(min_value=0), max_size=20),
    order=st.randoms(use_true_random=False),
)
def test_interleaved_streams_regrouped_by_request_keep_their_usage(
    names: list[str], cuts: list[int], order: object
) -> None:
    # Chunk every stream, interleave all records (each stream's own order kept), regroup by id.
    queues = {i: split_at(BODIES[n], cuts) for i, n in enumerate(names)}
    records: list[tuple[int, str]] = []
    while any(queues.values()):
        live = [i for i, q in queues.items() if q]
        i = order.choice(live)  # type: ignore[attr-defined]
        records.append((i, queues[i].pop(0)))
    regrouped: dict[int, list[str]] = {}
    for i, data in records:
        regrouped.setdefault(i, []).append(data)
    for i, name in enumerate(names):
        assert summary("".join(regrouped[i])) == EXPECTED[name]


@SETTINGS
@given(
    name=st.sampled_from(SSE_NAMES),
    crlf=st.booleans(),
    nospace=st.booleans(),
    comments=st.lists(st.integers(min_value=0), max_size=5),
)
def test_framing_variants_do_not_change_usage(
    name: str, crlf: bool, nospace: bool, comments: list[int]
) -> None:
    body = BODIES[name].replace("\r\n", "\n")
    blocks = body.split("\n\n")
    for c in comments:  # comment blocks between events (keep-alives)
        blocks.insert(c % (len(blocks) + 1), ": keep-alive")
    body = "\n\n".join(blocks)
    if nospace:
        body = body.replace("\ndata: ", "\ndata:")
        body = "data:" + body[6:] if body.startswith("data: ") else body
    if crlf:
        body = body.replace("\n", "\r\n")
    assert summary(body) == EXPECTED[name]


@SETTINGS
@given(name=st.sampled_from(SSE_NAMES), cut=st.integers(min_value=0))
def test_a_cut_stream_never_raises_and_never_invents_usage(name: str, cut: int) -> None:
    body = BODIES[name]
    prefix = body[: cut % (len(body) + 1)]
    pb = parse_body_strict(prefix, truncated=True)
    assert pb.truncated is True
    full = EXPECTED[name][0]
    if pb.usage is not None and full is not None and not pb.usage_partial:
        assert pb.usage == full


@SETTINGS
@given(text=st.text())
def test_parse_body_never_raises_on_arbitrary_text(text: str) -> None:
    for want_text in (False, True):
        parse_body_strict(text, want_text=want_text)
        parse_body_strict(text, provider="anthropic", api="messages", want_text=want_text)
        parse_body_strict(text, provider="gemini", api="generate_content")
        parse_body_strict(text, provider="openai", api="responses", want_text=want_text)


SSEISH = st.lists(
    st.sampled_from(
        [
            "data: ",
            "data:",
            "event: ",
            "event: error",
            ": c",
            "\n",
            "\r\n",
            "{",
            "}",
            "[",
            "]",
            '"usage":',
            '"error":',
            "null",
            "1",
            '"x"',
            ",",
            "[DONE]",
            '{"type":"message_delta","usage":{"output_tokens":',
            '"choices":[]',
            '"usageMetadata":{"promptTokenCount":',
            "message_start",
            "response.completed",
            '{"response":',
            '"candidates":[{"finishReason":"STOP"}]',
            "\x1f\x8b",
        ]
    ),
    max_size=40,
).map("".join)


@SETTINGS
@given(
    text=SSEISH,
    api=st.sampled_from(
        [None, "chat.completions", "responses", "messages", "generate_content", "embeddings"]
    ),
)
def test_parse_body_never_raises_on_sse_like_junk(text: str, api: str | None) -> None:
    pb = parse_body_strict(text, api=api, want_text=True)
    if pb.usage is not None:
        u = pb.usage
        assert u.cached_input_tokens + u.cache_write_input_tokens <= u.input_tokens
        assert u.reasoning_tokens <= u.output_tokens
    parse_body_strict(text, api=api)


@SETTINGS
@given(text=st.text(alphabet=st.sampled_from("data:event \r\n:x{}")))
def test_iter_events_accepts_any_framing(text: str) -> None:
    for name, data in iter_events(text):
        assert name is None or "\n" not in name
        assert "\r" not in data
