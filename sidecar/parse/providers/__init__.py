"""Response-body parsing: `parse_body` turns a whole relayed body into a `ParsedBody`.

The one entry point for the other stages. It recognises the body's form (gzip, SSE, a JSON array
stream, a JSON object), works out the provider and API (the hints from the access record win;
the body decides what they leave open) and hands the body to the API's parser:
`openai_chat`, `openai_responses`, `anthropic`, `gemini`, `embeddings`, with `errors` for error
envelopes and in-stream error events. Pure functions; never raises.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sidecar.parse import detect as _detect
from sidecar.parse.providers import (
    anthropic,
    embeddings,
    errors,
    gemini,
    openai_chat,
    openai_responses,
)
from sidecar.parse.providers._common import Chunks, EdgeChunks, as_dict, is_unset, loads
from sidecar.types import ParsedBody, stream_parsed

__all__ = ["NOT_CHAT", "EdgeChunks", "is_rate_limit_error", "parse_body", "parse_stream_edges"]

is_rate_limit_error = errors.is_rate_limit_error

_GZIP_SECOND = ("\x8b", "\udc8b", "\ufffd")
_OPENAI_LIKE = (None, "openai")


def parse_body(
    body: str,
    *,
    provider: str | None = None,
    api: str | None = None,
    content_type: str | None = None,
    want_text: bool = False,
    truncated: bool = False,
) -> ParsedBody:
    """What a response body says: usage, model, finish reason, errors (see ParsedBody).

    `provider` / `api` are hints from the access record (None: detect from the body);
    `truncated` says the proxy cut the body; `want_text` also collects the generated text into
    `output_text` (for token estimation). Never raises: an internal failure returns what the
    hints say plus one `malformed_events`.
    """
    try:
        return parse_body_strict(
            body,
            provider=provider,
            api=api,
            content_type=content_type,
            want_text=want_text,
            truncated=truncated,
        )
    except Exception:  # the last line of defence: one bad body must not stop the pipeline
        return ParsedBody(provider=provider, api=api, truncated=truncated, malformed_events=1)


def parse_body_strict(
    body: str,
    *,
    provider: str | None = None,
    api: str | None = None,
    content_type: str | None = None,
    want_text: bool = False,
    truncated: bool = False,
) -> ParsedBody:
    """`parse_body` without its safety net (the fuzz tests call this to find real bugs)."""
    pb = ParsedBody(provider=provider, api=api, truncated=truncated)
    if type(body) is not str or not body:
        return pb
    if body[0] == "\x1f" and body[1:2] in _GZIP_SECOND:
        pb.compressed = True
        return pb
    start = body[0]
    if start in " \t\r\n\ufeff":
        stripped = body.lstrip(" \t\r\n\ufeff")
        start = stripped[:1]
    if start in ("{", "["):
        _parse_json_body(pb, body, content_type, want_text)
    else:
        _parse_sse_body(pb, body, want_text)
    return pb


def _fill_hints(pb: ParsedBody, provider: str | None, api: str | None) -> None:
    """Complete the provider / api hints with what the body shows."""
    if pb.api is None:
        pb.api = api
    upgrade = (pb.provider, provider) in (("openai", "azure"), ("gemini", "vertex"))
    if pb.provider is None or upgrade:
        pb.provider = provider


def parse_stream_edges(
    tail: str,
    head: Callable[[], str | None],
    *,
    provider: str,
    api: str,
    truncated: bool = False,
) -> ParsedBody | None:
    """What a long SSE stream says, read from its edges only: `tail` (whole events from its
    end, newlines normalised) and `head` (called only if a parser walks forward; see
    `EdgeChunks`). The answer `parse_body` gives for the whole body, or None when the edges
    cannot tell it (a parser walked past an edge, or read the body's text). `provider` and
    `api` must be known: sniffing them reads the whole body. Never raises (None)."""
    pb = stream_parsed(provider, api, truncated)
    _, read_tail, with_head = _STREAMS.get(api, _CHAT_STREAM)
    try:
        # A stream that starts and ends the usual way is read straight from its text (each
        # `parse_tail` gives its parser's answer, or False and leaves `pb` untouched).
        if read_tail is not None and (
            read_tail(pb, tail, head()) if with_head else read_tail(pb, tail)
        ):
            return None if pb.read_text else pb
        chunks = EdgeChunks(tail, head)
        try:
            _parse_sse_chunks(pb, chunks, False)
            if not pb.terminal_seen and pb.usage is None:
                next(chunks.backward(), None)  # `_parse_sse_body`'s "is it a stream" test
        finally:
            chunks.close()  # no cycle left holding the body's parts until the next collection
    except Exception:  # the whole body decides (and counts it)
        return None
    if chunks.crossed or pb.read_text:
        return None
    return pb


def _embeddings_stream(pb: ParsedBody, chunks: Chunks, want_text: bool) -> None:
    obj = next((o for o in (ev.obj() for ev in chunks.forward()) if o is not None), None)
    if obj is not None:
        embeddings.parse_json(pb, obj)


StreamParser = Callable[[ParsedBody, Chunks, bool], None]

# The one dispatch from an API to its stream parser (it walks `Chunks`), its reader of a
# stream's usual edges straight from their text (`parse_tail(pb, tail[, head])`, None: the
# parser alone) and whether that reader takes the head too. Every API not listed is the
# chat's: chat.completions and unknown OpenAI-compatible streams.
_STREAMS: dict[str | None, tuple[StreamParser, Callable[..., bool] | None, bool]] = {
    _detect.RESPONSES: (openai_responses.parse_stream, None, False),
    _detect.MESSAGES: (anthropic.parse_stream, anthropic.parse_tail, True),
    _detect.GENERATE: (gemini.parse_chunks, gemini.parse_tail, False),
    _detect.EMBEDDINGS: (_embeddings_stream, None, False),
}
_CHAT_STREAM = (openai_chat.parse_stream, openai_chat.parse_tail, False)
NOT_CHAT = frozenset(_STREAMS)  # the APIs whose streams are not parsed as chat streams


def _parse_sse_body(pb: ParsedBody, body: str, want_text: bool) -> None:
    if pb.api is None or pb.provider is None:
        _fill_hints(pb, *_detect.detect_from_body(body))
    chunks = Chunks.from_sse(body)
    try:
        _parse_sse_chunks(pb, chunks, want_text)
        if not pb.terminal_seen and pb.usage is None and next(chunks.backward(), None) is None:
            pb.is_stream = False
            if body.strip():
                pb.malformed_events += 1  # neither SSE nor JSON (an HTML error page)
    finally:
        chunks.close()  # no cycle left holding the body until the next collection


def _parse_sse_chunks(pb: ParsedBody, chunks: Chunks, want_text: bool) -> None:
    pb.is_stream = True
    _STREAMS.get(pb.api, _CHAT_STREAM)[0](pb, chunks, want_text)
    pb.malformed_events += chunks.malformed


def _shape_api(obj: dict[str, Any]) -> tuple[str | None, str | None]:
    """(provider, api) from the shape of a decoded non-streaming body."""
    kind = obj.get("object")
    if kind == "chat.completion" or kind == "chat.completion.chunk":
        azure = bool(obj.get("prompt_filter_results"))  # real results, never a null key
        return ("azure" if azure else "openai"), _detect.CHAT
    if kind == "response":
        azure = bool(obj.get("content_filters"))
        return ("azure" if azure else "openai"), _detect.RESPONSES
    if obj.get("type") == "message":
        return "anthropic", _detect.MESSAGES
    if "candidates" in obj or "usageMetadata" in obj:
        vertex = "createTime" in obj or "trafficType" in as_dict(obj.get("usageMetadata"))
        return ("vertex" if vertex else "gemini"), _detect.GENERATE
    if embeddings.is_embeddings(obj):
        return None, _detect.EMBEDDINGS
    if "choices" in obj:
        return None, _detect.CHAT
    return None, None


def _parse_json_body(pb: ParsedBody, body: str, content_type: str | None, want_text: bool) -> None:
    value = loads(body)
    if is_unset(value):
        _parse_broken_json(pb, body, want_text)
        return
    if type(value) is list:
        _parse_json_array(pb, body, value, want_text, complete=True)
        return
    if type(value) is not dict:
        pb.malformed_events += 1
        return
    if content_type and "event-stream" in content_type:
        pb.is_stream = True
    if errors.is_error_envelope(value):
        _fill_hints(pb, errors.envelope_provider(value), None)
        pb.terminal_seen = True
        errors.apply_error(pb, value)
        return
    provider, shape_api = _shape_api(value)
    _fill_hints(pb, provider, shape_api)
    if shape_api is not None:
        pb.api = shape_api  # the body's shape beats a path-based guess
    api = pb.api
    if api == _detect.CHAT:
        openai_chat.parse_json(pb, value, want_text)
    elif api == _detect.RESPONSES:
        openai_responses.parse_json(pb, value, want_text)
    elif api == _detect.MESSAGES:
        anthropic.parse_json(pb, value, want_text)
    elif api == _detect.GENERATE:
        gemini.parse_json(pb, value, want_text)
    elif api == _detect.EMBEDDINGS:
        embeddings.parse_json(pb, value)
    else:
        pb.terminal_seen = True
        errors.apply_error(pb, value)


def _parse_json_array(
    pb: ParsedBody, body: str, items: list[Any], want_text: bool, *, complete: bool
) -> None:
    """A Gemini / Vertex JSON-array stream (or an error envelope wrapped in an array)."""
    pb.is_stream = True
    if items and all(type(o) is dict and errors.is_error_envelope(o) for o in items):
        _fill_hints(pb, errors.envelope_provider(items), None)
        pb.terminal_seen = True
        errors.apply_error(pb, items[0])
        return
    first = next((o for o in items if type(o) is dict), {})
    provider, api = _shape_api(first)
    _fill_hints(pb, provider or "gemini", api or _detect.GENERATE)
    gemini.parse_chunks(pb, Chunks.from_objects(items), want_text, complete_array=complete)


def _parse_broken_json(pb: ParsedBody, body: str, want_text: bool) -> None:
    """A JSON body that does not decode: a cut array stream keeps its complete elements."""
    items = gemini.split_json_array(body) if body.lstrip()[:1] == "[" else None
    if items:
        _parse_json_array(pb, body, items, want_text, complete=False)
        return
    pb.malformed_events += 1
