"""Anthropic Messages bodies (`/v1/messages`, also Anthropic models on Vertex).

Streams: `message_start` (model, id, usage with input and cache counts and a placeholder
`output_tokens`), content blocks, one or more cumulative `message_delta`, `message_stop`; `ping`
and unknown event types are tolerated; `event: error` is a mid-stream error (HTTP stays 200).
Usage = `message_start.message.usage` merged field by field with the LAST `message_delta.usage`
(delta values win when present and not null). `input_tokens` excludes the cache, so
input = input_tokens + cache_creation_input_tokens + cache_read_input_tokens.
When `usage.iterations` is present each iteration is billed separately (`billing_parts`) and
`usage` is their sum. Anthropic pads JSON with spaces: everything is decoded, never string-matched.

Non-streaming: one `{"type": "message", ...}` object.
"""

from __future__ import annotations

from typing import Any

from sidecar.parse import textscan
from sidecar.parse.providers import errors
from sidecar.parse.providers._common import (
    ANTHROPIC_MESSAGE_TOKENS,
    ANTHROPIC_NEXT_TOOL_USE_TOKENS,
    ANTHROPIC_TOOL_PARAM_TOKENS,
    ANTHROPIC_TOOL_USE_TOKENS,
    Chunks,
    Counts,
    as_dict,
    as_str,
    dumps,
    loads,
    subset_clamped,
)
from sidecar.types import BillingPart, ParsedBody, Usage

_THINKING_BLOCKS = ("thinking", "redacted_thinking")


def usage_from(u: dict[str, Any]) -> Usage:
    """Normalise one Anthropic usage object (top level or one iteration)."""
    n = Counts()
    inp = n(u.get("input_tokens"))
    read = n(u.get("cache_read_input_tokens"))
    write = n(u.get("cache_creation_input_tokens"))
    split = as_dict(u.get("cache_creation"))
    write_1h = n(split.get("ephemeral_1h_input_tokens"))
    # the 5m count is read (and judged) only when the write is not given: it is used only then
    write_5m = 0 if write else n(split.get("ephemeral_5m_input_tokens"))
    details = as_dict(u.get("output_tokens_details"))
    output = n(u.get("output_tokens"))
    reasoning = n(details.get("thinking_tokens"))
    return n.usage(_plain_usage(inp, read, write, split, write_5m, write_1h, output, reasoning))


def _plain_usage(
    inp: int,
    read: int,
    write: int,
    split: Any,
    write_5m: int,
    write_1h: int,
    output: int,
    reasoning: int,
) -> Usage:
    """The usage of plain counts (`usage_from`, `read_tail`), not clamped: input with the cache
    read and written, the write counted from the split when not given (`split` true: a
    non-empty `cache_creation`); built positionally in Usage's field order (a test checks it)."""
    if not write and split:
        write = write_5m + write_1h
    return Usage(inp + read + write, read, write, min(write_1h, write), output, reasoning)


def apply_usage(pb: ParsedBody, u: dict[str, Any]) -> None:
    """Set `usage` (and `billing_parts` when the usage lists iterations)."""
    iterations = u.get("iterations")
    parts = [it for it in iterations if type(it) is dict] if type(iterations) is list else []
    if not parts:
        pb.usage = usage_from(u)
        return
    total = Usage()
    for it in parts:
        part = usage_from(it)
        pb.billing_parts.append(BillingPart(model=as_str(it.get("model")), usage=part))
        total.add(part)
    pb.usage = total


def merge_usage(start: dict[str, Any], delta: dict[str, Any] | None) -> dict[str, Any]:
    """message_start usage overlaid with the cumulative message_delta usage (non-null wins)."""
    merged = dict(start)
    for key, value in (delta or {}).items():
        if value is not None:
            merged[key] = value
    return merged


_TOOL_BLOCKS = ("tool_use", "server_tool_use")
_TEXT_EVENTS = frozenset({"content_block_delta", "content_block_start"})  # text mode decodes


def _block_text(block: dict[str, Any], out: list[str]) -> None:
    """Generated text of one content block (whole, or a content_block_start / delta); a tool
    call's input as its JSON (rendered by `_tool_call` once the block is complete)."""
    for key in ("text", "thinking", "partial_json"):
        value = block.get(key)
        if type(value) is str and value:
            out.append(value)
    value = block.get("input")
    if type(value) is dict and value:
        out.append(dumps(value))


def _top_level_keys(raw: str) -> int:
    """Keys of the outer object of a JSON text that may be cut anywhere."""
    if not raw.lstrip().startswith("{"):
        return 0
    depth = keys = 0
    in_string = escaped = expect_key = False
    for ch in raw:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
            if depth == 1 and expect_key:
                keys += 1
                expect_key = False
        elif ch in "{[":
            depth += 1
            expect_key = depth == 1
        elif ch in "}]":
            depth -= 1
        elif ch == "," and depth == 1:
            expect_key = True
    return keys


def _tool_call(name: Any, raw: str, out: list[str]) -> int:
    """A tool call as Claude writes it (see `_common`): its name, then each top-level
    parameter's name and value (strings raw, other values as JSON). Returns the number of
    parameters. Input cut before its end is counted as its JSON text."""
    if type(name) is str and name:
        out.append(name)
    args = loads(raw) if raw else {}
    if type(args) is not dict:
        if raw:
            out.append(raw)
        return _top_level_keys(raw)
    for key, value in args.items():
        out.append(key)
        text = value if type(value) is str else dumps(value)
        if text:
            out.append(text)
    return len(args)


def _message_text(blocks: list[tuple[str, Any, list[str]]], out: list[str]) -> int:
    """Texts of one message's content blocks (type, tool name, pieces) into `out`; returns the
    overhead tokens the message bills beyond them (see `_common`)."""
    if not blocks:
        return 0
    extra = ANTHROPIC_MESSAGE_TOKENS
    calls = 0
    for kind, name, pieces in blocks:
        if kind in _TOOL_BLOCKS:
            params = _tool_call(name, "".join(pieces), out)
            extra += ANTHROPIC_NEXT_TOOL_USE_TOKENS if calls else ANTHROPIC_TOOL_USE_TOKENS
            extra += ANTHROPIC_TOOL_PARAM_TOKENS * params
            calls += 1
        elif pieces:
            out.append("".join(pieces))
    return extra


def _service_tier(u: dict[str, Any]) -> str | None:
    return as_str(u.get("service_tier"))


def _finalise(pb: ParsedBody) -> None:
    if pb.usage and pb.usage.reasoning_tokens > 0:
        pb.reasoning_model_hint = True
    elif pb.usage is not None and pb.reasoning_model_hint:
        pb.usage.reasoning_unknown = True  # it thought, but Anthropic reports no count


def _stream_blocks(chunks: Chunks, inline: bool = True) -> dict[Any, tuple[str, Any, list[str]]]:
    """Every content block of a stream (its type, name, text pieces), by index. Only the
    content_block_start / delta events are decoded: by the C walk (`textscan.anthropic`) when
    it is there, which hands back to `_block_event` the events it does not read itself; else
    here. The usual text delta is read inline (`inline=False`: neither the C walk nor the
    inline read, only `_block_text`, the general path the tests compare them with)."""
    # Deltas cut words anywhere: join them per block, count each block once.
    blocks: dict[Any, tuple[str, Any, list[str]]] = {}

    def on_event(kind: str | None, obj: dict[str, Any] | None) -> None:
        _block_event(blocks, kind, obj, inline)

    if not inline or chunks.text_walk(textscan.anthropic, blocks, on_event, _TEXT_EVENTS) is None:
        for kind, obj in chunks.forward_kinds(_TEXT_EVENTS):  # the others are not decoded
            _block_event(blocks, kind, obj, inline)
    return blocks


def _block_event(
    blocks: dict[Any, tuple[str, Any, list[str]]],
    kind: str | None,
    obj: dict[str, Any] | None,
    inline: bool,
) -> None:
    """One content_block_start / delta event (`obj` None: it did not decode) into `blocks`."""
    if obj is None:
        obj = {}
    index = obj.get("index")
    index = index if type(index) in (int, str) else None
    if kind == "content_block_start":
        block = as_dict(obj.get("content_block"))
        entry = (str(block.get("type")), block.get("name"), [])
        blocks[index] = entry
    else:
        block = as_dict(obj.get("delta"))
        entry = blocks.setdefault(index, ("text", None, []))
        if inline and len(block) == 2 and "type" in block and type(block.get("text")) is str:
            text = block["text"]  # the usual text delta ({"type", "text"}): its text
            if text:
                entry[2].append(text)
            return
    _block_text(block, entry[2])


def parse_stream(pb: ParsedBody, chunks: Chunks, want_text: bool) -> None:
    """Fill `pb` from a Messages SSE stream: message_start from the front, the rest from the end."""
    if want_text:
        blocks = _stream_blocks(chunks)
        pb.output_extra_tokens += _message_text(list(blocks.values()), pb.output_text)

    start: dict[str, Any] | None = None
    for seen, ev in enumerate(chunks.forward()):
        kind = ev.kind()
        if kind == "message_start" and start is None:
            start = as_dict((ev.obj() or {}).get("message"))
        elif kind == "content_block_start":
            # Thinking comes first: the first block tells whether the model reasoned.
            block = as_dict((ev.obj() or {}).get("content_block"))
            if block.get("type") in _THINKING_BLOCKS:
                pb.reasoning_model_hint = True
            break
        if seen >= 8 or kind in ("content_block_delta", "message_delta", "message_stop"):
            break

    delta: dict[str, Any] | None = None
    stop = False
    for ev in chunks.backward():
        kind = ev.kind()
        if kind == "message_stop":
            stop = True
        elif kind == "error":
            obj = ev.obj()
            if obj is not None and errors.apply_error(pb, obj):
                pb.terminal_seen = True  # the server ended the stream with an error
        elif kind == "message_delta":
            delta = ev.obj()
            if delta is not None:
                break
        elif kind == "message_start":
            break

    _fill(pb, start, delta, stop)


def _fill(
    pb: ParsedBody, start: dict[str, Any] | None, delta: dict[str, Any] | None, stop: bool
) -> None:
    """`pb` from what the walks found: message_start's `message`, the last message_delta,
    whether message_stop was seen (`parse_stream` and `parse_tail` share it)."""
    if start is not None:
        pb.model = as_str(start.get("model"))
        pb.provider_request_id = as_str(start.get("id"))
        pb.finish_reason = as_str(start.get("stop_reason"))
    start_usage = as_dict(start.get("usage")) if start else {}
    delta_usage = as_dict(delta.get("usage")) if delta else None
    if delta is not None:
        reason = as_str(as_dict(delta.get("delta")).get("stop_reason"))
        pb.finish_reason = reason or pb.finish_reason
    if start_usage or delta_usage:
        merged = merge_usage(start_usage, delta_usage)
        apply_usage(pb, merged)
        pb.service_tier = _service_tier(merged)
        if delta is None:
            pb.usage_partial = True  # output_tokens is message_start's placeholder
    if stop:
        pb.terminal_seen = True
    _finalise(pb)


# The four events `parse_tail` reads, each an `event:` line then one `data:` line.
_START = "event: message_start\ndata: "
_BLOCK_START = "event: content_block_start\ndata: "
_DELTA = "event: message_delta\ndata: "
_STOP = "event: message_stop\ndata:"


def _data(block: str, prefix: str) -> str | None:
    """What follows `prefix` (an `event:` line and the start of a `data:` line) in a block
    that is those two lines only, else None."""
    if block.startswith(prefix) and block.find("\n", len(prefix)) < 0:
        return block[len(prefix) :]
    return None


def parse_tail(pb: ParsedBody, tail: str, head: str | None) -> bool:
    """`parse_stream` (without `want_text`) of a stream that starts and ends the usual way,
    read straight from its edges' text: `head` begins with `message_start` then
    `content_block_start`, `tail` ends with `message_delta` then `message_stop`, each event an
    `event:` line and one `data:` line, separated by exactly one blank line, the three decoded
    payloads JSON objects. Then `parse_stream` walks exactly these events (forward: the start,
    the first block, where it stops; backward: the stop, the delta, where it stops) and reads
    nothing else: this gives its answer without framing events. False, `pb` untouched, for any
    other shape: `parse_stream` decides. `head` and `tail` are whole events, newlines
    normalised, head before tail (`EdgeChunks`)."""
    if head is None:
        return False
    blocks = tail.rsplit("\n\n", 3)
    if len(blocks) < 3 or blocks[-1] or _data(blocks[-2], _STOP) is None:
        return False
    first = head.split("\n\n", 2)
    if len(first) < 3:
        return False
    start_data = _data(first[0], _START)
    block_data = _data(first[1], _BLOCK_START)
    delta_data = _data(blocks[-3], _DELTA)
    if start_data is None or block_data is None or delta_data is None:
        return False
    return read_edges(pb, start_data, block_data, delta_data)


def read_edges(pb: ParsedBody, start_data: str, block_data: str, delta_data: str) -> bool:
    """The rest of `parse_tail`: the payloads of `message_start`, the first
    `content_block_start` and `message_delta` (as `_data` cuts them) decoded and read; False,
    `pb` untouched, unless all three are JSON objects. parse/response.py also calls it with the
    payloads `tailscan.anthropic_edges` cut in C from the raw records."""
    start_obj = loads(start_data)
    block_obj = loads(block_data)
    delta = loads(delta_data)
    if type(start_obj) is not dict or type(block_obj) is not dict or type(delta) is not dict:
        return False
    if as_dict(block_obj.get("content_block")).get("type") in _THINKING_BLOCKS:
        pb.reasoning_model_hint = True
    _fill(pb, as_dict(start_obj.get("message")), delta, True)
    return True


def read_tail(
    pb: ParsedBody,
    model: str | None,
    rid: str | None,
    finish: str | None,
    thinking: bool,
    tier: str | None,
    inp: int,
    read: int,
    write: int,
    split: bool,
    write_5m: int,
    write_1h: int,
    output: int,
    reasoning: int,
) -> bool:
    """Fill `pb` as `read_edges` does from what `tailscan.anthropic_tail` read in C: the
    message's model and id, the finish reason, whether the first block is a thinking block,
    and the merged usage's (`merge_usage`) service tier and plain counts (0: null or absent;
    `split`: `cache_creation` a non-empty object, no `iterations`), read as `usage_from` reads
    them; always True (filled), as `openai_chat.read_tail` answers."""
    if thinking:
        pb.reasoning_model_hint = True
    pb.model = model
    pb.provider_request_id = rid
    pb.finish_reason = finish
    usage = _plain_usage(inp, read, write, split, write_5m, write_1h, output, reasoning)
    pb.usage = subset_clamped(usage)
    pb.service_tier = tier
    pb.terminal_seen = True
    _finalise(pb)
    return True


def parse_json(pb: ParsedBody, obj: dict[str, Any], want_text: bool) -> None:
    """Fill `pb` from a non-streaming Message object."""
    pb.terminal_seen = True
    pb.model = as_str(obj.get("model"))
    pb.provider_request_id = as_str(obj.get("id"))
    pb.finish_reason = as_str(obj.get("stop_reason"))
    u = obj.get("usage")
    if type(u) is dict:
        apply_usage(pb, u)
        pb.service_tier = _service_tier(u)
    content = obj.get("content")
    blocks = [b for b in content if type(b) is dict] if type(content) is list else []
    if any(b.get("type") in _THINKING_BLOCKS for b in blocks):
        pb.reasoning_model_hint = True
    if want_text:
        message = []
        for block in blocks:
            kind = str(block.get("type"))
            texts: list[str] = []
            if kind in _TOOL_BLOCKS:
                texts.append(dumps(block.get("input") or {}))
            else:
                _block_text(block, texts)
            message.append((kind, block.get("name"), texts))
        pb.output_extra_tokens += _message_text(message, pb.output_text)
    _finalise(pb)
