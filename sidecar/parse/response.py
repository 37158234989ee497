"""A joined request's response -> `ParsedBody` (pure).

Picks the provider and API (the source's fixed provider, else the access record's path and
upstream host, else the body itself), then hands the body to the provider parsers. A request
whose body was not in the body log may still carry its response in the access line
(`response_body`, or a bare `usage` object): that is parsed the same way.

Decode only what can matter. A long stream whose provider and API the access record names is
first parsed from its *edges* (`_parse_edges`): its last body-log parts, decoded from just after
their first event boundary, and, only for a parser that walks forward (Anthropic's
`message_start`), its first parts up to their last boundary. The parsers walk the events through
`EdgeChunks`, which notes any walk that would go past an edge into the middle that was never
decoded; without such a crossing every event a parser saw is the whole body's own, in the same
order, so the answer is the whole body's, whatever it says (usage or none, an error, a cut
stream). Streams that start and end the usual way are read straight from the edges' text,
without framing events: OpenAI chat (finish chunk, usage chunk, `[DONE]`:
`openai_chat.parse_tail`), Anthropic (`message_start` and the first `content_block_start` at the
head, `message_delta` and `message_stop` at the tail: `anthropic.parse_tail`) and Gemini (a last
chunk with usage, finish reason, model and id: `gemini.parse_tail`); each steps aside for any
other shape. Anthropic and Gemini try a shorter tail first (`_SHORT_TAILS`: their last events
are short). Before any of this, an OpenAI chat stream's usual end is read in C from the raw
records, with nothing decoded (`_raw_edges` with `tailscan.chat_tail`, which gives what the
edges' first try would read, or None, and the edges decide; `openai_chat.read_tail` fills it
in); an Anthropic stream's three payloads are read in C the same way (`tailscan.anthropic_tail`,
filled in by `anthropic.read_tail`) or, beyond that reader's JSON subset, cut in C
(`tailscan.anthropic_edges`) and read by `anthropic.read_edges`; a Gemini stream's last event
is read in C (`tailscan.gemini_tail`, filled in by `gemini.read_tail`). A crossing retries
with a longer tail, then the whole body decides; so does an answer read from the body's text
(an OpenAI-compatible usage without a reasoning count: whether the model reasoned visibly is
searched in the whole text), a body that is not SSE, and a short one.

Without the hints (the provider or API left to sniffing, which reads the body) the older
*window* applies: the first `WINDOW_HEAD_BYTES` and last `WINDOW_TAIL_BYTES` of body-log records,
decoded and joined by a blank line, taken only when complete and clean: usage found and not
partial, the terminal event seen, no malformed event, no error, no answer read from the text.
Either way the edges and the window change the speed, never the answer:
`tests/unit/test_parse_edges.py` and `tests/unit/test_body_path_properties.py` check that on
every recorded fixture and on hostile generated streams under random chunkings. (One case is
beyond them: a body with a torn line anywhere is decoded whole part by part, and a character
split across two lines then becomes replacement characters that the edges, decoding their
parts together, do not show; it changes only text the parsers do not read but for strings such
as the model name. The window had the same limit.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import orjson

from sidecar.parse.body import assemble_escaped
from sidecar.parse.detect import EMBEDDINGS, GENERATE, MESSAGES, detect, model_from_path
from sidecar.parse.providers import (
    NOT_CHAT,
    anthropic,
    gemini,
    openai_chat,
    parse_body,
    parse_stream_edges,
)
from sidecar.parse.sse import normalise_newlines
from sidecar.parse.tailscan import anthropic_edges as _anthropic_edges
from sidecar.parse.tailscan import anthropic_tail as _anthropic_tail
from sidecar.parse.tailscan import chat_tail as _chat_tail
from sidecar.parse.tailscan import gemini_tail as _gemini_tail
from sidecar.types import Completed, ParsedBody, stream_parsed

WINDOW_HEAD_BYTES = 1024  # body-log bytes decoded from the start of a long stream ...
WINDOW_TAIL_BYTES = 2048  # ... and from its end
# Body-log bytes of a stream's tail parsed first by the edges path (the last three events of an
# OpenAI chat stream of the generated mix, one part before them for the boundary), then, if a
# parser walked past them (`EdgeChunks.crossed`), this many more.
_EDGE_TAILS = (1536, 6144)
# A shorter first try where the events read straight are short (`message_delta` and
# `message_stop`; Gemini's last chunk): the generated mix's need at most 768 and 640 bytes.
_SHORT_TAILS = {MESSAGES: 896, GENERATE: 768}
_HEAD_APIS = frozenset({MESSAGES, EMBEDDINGS})  # stream parsers that walk forward too
_NOT_SSE_START = frozenset(" \t\r\n\ufeff{[\x1f")  # what makes `parse_body` no SSE parse


def parse_completed(c: Completed, *, provider: str | None, want_text: bool = False) -> ParsedBody:
    a = c.access
    api: str | None = None
    if a is not None:
        det_provider, api = detect(a.path, a.upstream_host)
        if provider is None:
            provider = det_provider
    if not want_text and provider is not None and api is not None and c.body is None:
        skip = 0  # tail sizes `_parse_edges` leaves out
        if c.assemble is assemble_escaped:
            parsed = None
            if _chat_tail is not None and api not in NOT_CHAT:
                parsed = _raw_edges(c, provider, api, _chat_tail, openai_chat.read_tail)
                if parsed is None and _cut_short(c.parts):
                    skip = 1
            elif _anthropic_tail is not None and api == MESSAGES:
                parsed = _raw_edges(c, provider, api, _anthropic_tail, anthropic.read_tail)
                if parsed is None and _anthropic_edges is not None:  # beyond its JSON subset
                    parsed = _raw_edges(c, provider, api, _anthropic_edges, anthropic.read_edges)
            elif _gemini_tail is not None and api == GENERATE:
                parsed = _raw_edges(c, provider, api, _gemini_tail, gemini.read_tail)
            if parsed is not None:
                return _finish(parsed, c, provider, api)
        parsed = _parse_edges(c, provider, api, skip)
        if parsed is not None:
            return _finish(parsed, c, provider, api)
    elif not want_text:
        window = c.window(WINDOW_HEAD_BYTES, WINDOW_TAIL_BYTES)
        if window is not None:
            parsed = parse_body(
                window,
                provider=provider,
                api=api,
                content_type=c.content_type,
                truncated=c.body_truncated,
            )
            if (
                parsed.is_stream
                and parsed.usage is not None
                and not parsed.usage_partial
                and parsed.terminal_seen
                and not parsed.malformed_events
                and not parsed.read_text
                and parsed.error_type is None
            ):
                return _finish(parsed, c, provider, api)
    body = c.text()
    if not body and a is not None:
        if a.response_body:
            body = a.response_body
        elif a.usage is not None:
            body = _usage_body(a.usage)
    if body:
        parsed = parse_body(
            body,
            provider=provider,
            api=api,
            content_type=c.content_type,
            want_text=want_text,
            truncated=c.body_truncated,
        )
    else:
        parsed = ParsedBody(provider=provider, api=api)
    if want_text and (c.prior_text or c.prior_extra_tokens):
        # the text of a long stream's middle, decoded by the join while the stream was open
        parsed.output_text[:0] = c.prior_text
        parsed.output_extra_tokens += c.prior_extra_tokens
    return _finish(parsed, c, provider, api)


def _edge_records(parts: Sequence | None, head_bytes: int, tail_bytes: int) -> Any:
    """The records `tailscan` reads, as the list it takes: `parts` itself when it is a list;
    for the join's `BodyLines` (a request's lines kept as one bytes object per read block) its
    `edges`: the head's lines and the tail's, read from both ends without cutting the rest
    (every line when the two meet). `tailscan` picks the same head and tail records from
    either list: its head is the shortest prefix of at least `head_bytes`, its tail the
    shortest suffix of at least `tail_bytes` after the head, both inside the edges taken
    here; any other sequence is taken whole, as a list. None is passed on: `tailscan`
    declines it."""
    if parts is None or type(parts) is list:
        return parts
    edges = getattr(parts, "edges", None)
    return edges(head_bytes, tail_bytes) if edges is not None else list(parts)


def _raw_edges(
    c: Completed,
    provider: str,
    api: str,
    scan: Callable[..., tuple | None],
    fill: Callable[..., bool],
) -> ParsedBody | None:
    """`_parse_edges`' first try read in C from the raw records: `scan` (`tailscan.chat_tail`,
    `anthropic_tail`, `anthropic_edges` or `gemini_tail`) takes the same head and tail records
    and cuts, `fill` (`openai_chat.read_tail`, `anthropic.read_tail`, `anthropic.read_edges`,
    `gemini.read_tail`) fills the result from what it read; None when either declines:
    `_parse_edges` decides."""
    first_tail = _tails(api)[0]
    got = scan(_edge_records(c.parts, WINDOW_HEAD_BYTES, first_tail), WINDOW_HEAD_BYTES, first_tail)
    if got is None:
        return None
    pb = stream_parsed(provider, api, c.body_truncated)
    try:
        return pb if fill(pb, *got) else None
    except Exception:  # as in `parse_stream_edges`: the edges path decides (and counts it)
        return None


# The tail sizes `_parse_edges` tries per API, in order (the C readers answer on the first only).
_TAILS = {
    api: (short, *_EDGE_TAILS) if short < _EDGE_TAILS[0] else _EDGE_TAILS
    for api, short in _SHORT_TAILS.items()
}


def _tails(api: str) -> tuple[int, ...]:
    return _TAILS.get(api, _EDGE_TAILS)


def _cut_short(parts: Sequence | None) -> bool:
    """Whether a chat stream's last record lacks `[DONE]` near its end (a stream cut short:
    cancelled, or ended by an error; or `[DONE]` before a last record of a few bytes: only
    the work changes). Its walk from the end then reads back to a finish reason or through
    four content chunks (`openai_chat._MAX_TAIL_CHUNKS`), past the first tail's three events
    or so: `_parse_edges` leaves out its first try (unless that tail already reaches the
    head). Only the work changes: the next try's tail is the one it would have read after it,
    and its events are the first tail's and more before them, so a walk the first tail held
    ends at the same event with the same answer (`test_tailscan.py` compares with the path
    that tries both: `chat_tail` off)."""
    if not parts:
        return False
    last = parts[-1]  # its end only: a non-streaming body's one record can be long
    return type(last) is bytes and last.find(_DONE, -_DONE_NEAR_END) < 0


_DONE = b"[DONE]"
_DONE_NEAR_END = 64  # bytes: `data: [DONE]\n\n"}` and some room (further: a try more, no harm)


def _parse_edges(c: Completed, provider: str, api: str, skip: int = 0) -> ParsedBody | None:
    """The stream parsed from its edges (`EdgeChunks`), or None: the whole body decides.

    The tail is the body's last parts (`_EDGE_TAILS[0]` bytes of them, then more if a parser
    walked past them; the first `skip` tries left out, their tails not reaching the head),
    decoded, from just after its first event boundary; the head (the first
    parts, at least `WINDOW_HEAD_BYTES`, cut after their last boundary) is decoded up front for
    the parsers that walk forward, else only if one asks; head and tail never share a part.
    Newlines are normalised as `Chunks.from_sse` does: the head's are a
    prefix of the whole body's, the tail's a suffix but for its first character (a `\r\n`
    cut between two parts), which the boundary search skips."""
    parts = c.parts
    assemble = c.assemble
    if not parts or assemble is None:
        return None
    n = len(parts)
    h = 1  # the head's parts
    size = len(parts[0])
    while h < n and size < WINDOW_HEAD_BYTES:
        size += len(parts[h])
        h += 1
    if h >= n:
        return None  # a short body: decoding it whole costs no more
    if api in _HEAD_APIS:  # its parser reads the head: decode it now, it shows the start too
        first, bad, _ = assemble(parts[:h])
        head_text = _cut_head(first)

        def head() -> str | None:
            return head_text

    else:  # the first part shows the start; the head is decoded if a parser asks after all
        first, bad, _ = assemble(parts[:1])

        def head() -> str | None:
            return _cut_head(assemble(parts[:h])[0])

    if bad or not first or first[0] in _NOT_SSE_START:
        return None  # a JSON, gzip or blank-led body, or a torn part: not for the edges
    t = n
    for want in _tails(api):
        if t == h:
            return None  # the tail already reaches the head: nothing more to try
        size = 0
        while t > h and size < want:  # head and tail never overlap (see `EdgeChunks`)
            t -= 1
            size += len(parts[t])
        if skip and t > h:
            skip -= 1  # left out: the next, longer tail holds its events (see `_cut_short`)
            continue
        tail = normalise_newlines(assemble(parts[t:])[0])
        cut = tail.find("\n\n", 1)
        if cut < 0:
            continue
        tail = tail[cut + 2 :].lstrip("\n")
        if not tail:
            continue
        parsed = parse_stream_edges(
            tail,
            head,
            provider=provider,
            api=api,
            truncated=c.body_truncated,
        )
        if parsed is not None:
            return parsed
    return None


def _cut_head(text: str) -> str | None:
    """The decoded head, newlines normalised, up to its last event boundary (None: none)."""
    text = normalise_newlines(text)
    end = text.rfind("\n\n")
    return text[: end + 2] if end >= 0 else None


def _finish(parsed: ParsedBody, c: Completed, provider: str | None, api: str | None) -> ParsedBody:
    a = c.access
    if parsed.provider is None:
        parsed.provider = provider
    if parsed.api is None:
        parsed.api = api
    if not parsed.is_stream:
        ct = c.content_type or ""
        if "event-stream" in ct or (a is not None and a.stream):
            parsed.is_stream = True
    if parsed.model is None and a is not None:
        parsed.model = a.model or model_from_path(a.path)
    return parsed


def _usage_body(usage: dict[str, Any]) -> str:
    """The access log's `usage` as a body to parse. A value orjson cannot write (an integer
    beyond 64 bits, a lone surrogate, nesting deeper than it allows) is written as text or
    null instead: the usage checks then reject it (flag `usage_invalid`), never a crash."""
    try:
        return orjson.dumps({"usage": usage}).decode()
    except TypeError:
        return orjson.dumps({"usage": _writable(usage, 0)}).decode()


def _writable(v: Any, depth: int) -> Any:
    if type(v) is int:
        return v if -(1 << 63) <= v < (1 << 64) else str(v)
    if type(v) is str:
        return v.encode("utf-8", "replace").decode("utf-8")
    if type(v) is dict or type(v) is list:
        if depth >= 16:
            return None
        if type(v) is dict:
            return {str(k): _writable(x, depth + 1) for k, x in v.items()}
        return [_writable(x, depth + 1) for x in v]
    return v
