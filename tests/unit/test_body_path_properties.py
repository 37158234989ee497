"""The whole body path, property-tested on every recorded fixture.

Each fixture is cut at random places into body-log lines written as the nginx module writes them
(or, at random, with another key order, which takes the careful path), several fixtures are
interleaved, the log is cut into random batches, and the lines go through the real hot path:
`decode_chunk_lines` -> `Joiner.add_chunks` -> `parse_completed` (window first, whole body on
fallback). The result must equal what `parse_body` says of the original body.
"""

from __future__ import annotations

import random
from pathlib import Path

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.join import Joiner
from sidecar.parse.body import assemble_escaped, decode_chunk_lines
from sidecar.parse.providers import parse_body
from sidecar.parse.response import parse_completed
from sidecar.types import AccessRecord, Completed

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "recorded"
BODIES = {
    p.name: p.read_text(encoding="utf-8")
    for p in sorted(FIXTURES.iterdir())
    if p.suffix in (".sse", ".json")
}
NAMES = sorted(BODIES)


def summary(p: object) -> tuple[object, ...]:
    return (
        p.usage,  # type: ignore[attr-defined]
        p.model,  # type: ignore[attr-defined]
        p.finish_reason,  # type: ignore[attr-defined]
        p.terminal_seen,  # type: ignore[attr-defined]
        p.error_type,  # type: ignore[attr-defined]
        p.provider,  # type: ignore[attr-defined]
        p.is_stream,  # type: ignore[attr-defined]
    )


EXPECTED = {name: summary(parse_body(body)) for name, body in BODIES.items()}


def lines_for(rid: str, body: str, rng: random.Random, pieces: int) -> list[bytes]:
    cuts = sorted(rng.randrange(len(body) + 1) for _ in range(pieces))
    out, last = [], 0
    for c in [*cuts, len(body)]:
        chunk = body[last:c]
        last = c
        if not chunk:
            continue
        if rng.random() < 0.1:  # another key order: the careful path
            out.append(orjson.dumps({"data": chunk, "request_id": rid, "ts": 1700000000.123}))
        else:  # exactly the Lua module's shape (cjson writes "/" as "\/")
            esc = orjson.dumps(chunk).replace(b"/", b"\\/")
            out.append(
                b'{"ts":1700000000.123,"request_id":"' + rid.encode() + b'","data":' + esc + b"}"
            )
    # The end record comes last in time too (the join orders a batch's records of one id by
    # their times: data after an end is a second request with the same id).
    out.append(orjson.dumps({"ts": 1700000001.0, "request_id": rid, "end": "complete"}))
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    names=st.lists(st.sampled_from(NAMES), min_size=1, max_size=6),
    seed=st.integers(min_value=0, max_value=2**32),
    pieces=st.integers(min_value=0, max_value=60),
    batch=st.integers(min_value=1, max_value=50),
)
def test_body_path_gives_the_same_usage_as_the_whole_body(
    names: list[str], seed: int, pieces: int, batch: int
) -> None:
    rng = random.Random(seed)
    streams = {
        f"{i:032x}": lines_for(f"{i:032x}", BODIES[n], rng, pieces) for i, n in enumerate(names)
    }
    # Interleave: keep each stream's order, pick the next stream at random.
    cursors = {rid: 0 for rid in streams}
    log: list[bytes] = []
    while cursors:
        rid = rng.choice(sorted(cursors))
        log.append(streams[rid][cursors[rid]])
        cursors[rid] += 1
        if cursors[rid] == len(streams[rid]):
            del cursors[rid]
    j = Joiner(assemble=assemble_escaped)
    done: list[Completed] = []
    for rid in streams:
        j.add_access(AccessRecord(rid, status=200), "s", None, done)
    for k in range(0, len(log), batch):
        dec = decode_chunk_lines(log[k : k + batch])
        assert not dec.errors
        j.add_chunks(dec.groups, dec.records, "s", done)
    assert sorted(c.request_id for c in done) == sorted(streams)
    for c in done:
        name = names[int(c.request_id, 16)]
        got = parse_completed(c, provider=None)
        assert summary(got) == EXPECTED[name], name
        assert c.text() == BODIES[name]


def test_assemble_heals_a_utf8_character_split_across_lines() -> None:
    raw = "caf\u00e9 \U0001f642".encode()
    a, b = raw[:4], raw[4:]  # splits the two bytes of "é"
    parts = [b'","data":"' + a + b'"}', b'","data":"' + b + b'"}']
    assert assemble_escaped(parts) == ("caf\u00e9 \U0001f642", 0, 0)


def test_assemble_counts_invalid_bytes_and_bad_parts() -> None:
    body, bad, lossy = assemble_escaped([b'","data":"ok \xff"}'])
    assert body == "ok \ufffd" and bad == 0 and lossy == 1
    body, bad, lossy = assemble_escaped([b'","data":"a"}', b'","data":"b"c"}', b'","data":"d"}'])
    assert body == "ad" and bad == 1


def test_window_is_not_used_for_short_bodies_and_matches_for_long_ones() -> None:
    j = Joiner(assemble=assemble_escaped)
    done: list[Completed] = []
    rng = random.Random(1)
    body = BODIES["anthropic_cache_read_1.sse"]
    for line in lines_for("f" * 32, body, rng, 40):
        dec = decode_chunk_lines([line])
        j.add_chunks(dec.groups, dec.records, "s", done)
    j.add_access(AccessRecord("f" * 32, status=200), "s", None, done)
    (c,) = done
    assert c.window(2048, 4096) is not None and c.body is None
    parsed = parse_completed(c, provider=None)
    assert c.body is None, "the window was enough: the whole body was never decoded"
    assert parsed.usage == parse_body(body).usage


def test_window_tail_never_starts_inside_an_event() -> None:
    """Found by the property test above: with this chunking the window's tail began inside the
    chunk carrying finish_reason, whose remainder the SSE framing skipped as a non-field line."""
    rng = random.Random(56)
    rid = f"{0:032x}"
    body = BODIES["openai_chat_usage_2.sse"]
    j = Joiner(assemble=assemble_escaped)
    done: list[Completed] = []
    j.add_access(AccessRecord(rid, status=200), "s", None, done)
    for line in lines_for(rid, body, rng, 52):
        dec = decode_chunk_lines([line])
        j.add_chunks(dec.groups, dec.records, "s", done)
    (c,) = done
    assert summary(parse_completed(c, provider=None)) == EXPECTED["openai_chat_usage_2.sse"]


def test_window_sees_visible_reasoning_in_the_middle_of_a_stream() -> None:
    """A DeepSeek-style stream: `reasoning_content` deltas only in the middle, a usage without
    `completion_tokens_details`. Whether the model reasoned is read from the body's text, so the
    head + tail window cannot answer it: the whole body decides (reasoning tokens unknown, not
    0)."""
    rid = "d" * 32

    def chunk(delta: dict, **extra: object) -> str:
        obj = {"id": "x", "object": "chat.completion.chunk", "model": "magistral-like-x"}
        obj["choices"] = [{"index": 0, "delta": delta, "finish_reason": extra.pop("fr", None)}]
        obj.update(extra)
        return "data: " + orjson.dumps(obj).decode() + "\n\n"

    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": f"a{i} "}) for i in range(100)]
    events += [chunk({"content": "", "reasoning_content": f"step {i} "}) for i in range(100)]
    events += [chunk({"content": f"b{i} "}) for i in range(100)]
    events.append(chunk({}, fr="stop"))
    usage = {"prompt_tokens": 11, "completion_tokens": 900, "total_tokens": 911}
    events.append(
        "data: "
        + orjson.dumps(
            {
                "id": "x",
                "object": "chat.completion.chunk",
                "model": "magistral-like-x",
                "choices": [],
                "usage": usage,
            }
        ).decode()
        + "\n\n"
    )
    events.append("data: [DONE]\n\n")
    body = "".join(events)
    whole = parse_body(body)
    assert whole.usage is not None and whole.usage.reasoning_unknown
    j = Joiner(assemble=assemble_escaped)
    done: list[Completed] = []
    j.add_access(AccessRecord(rid, status=200), "s", None, done)
    for line in lines_for(rid, body, random.Random(3), len(events)):
        dec = decode_chunk_lines([line])
        j.add_chunks(dec.groups, dec.records, "s", done)
    (c,) = done
    assert c.window(2048, 4096) is not None  # long enough for the window
    got = parse_completed(c, provider=None)
    assert got.usage == whole.usage
