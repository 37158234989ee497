"""SSE framing: split a response body into server-sent events.

This module owns the `text/event-stream` wire format and nothing else: it knows nothing about
providers or JSON. A body is split into *blocks* (the text between blank lines) with one C-level
`str.split`, and a block is turned into `(event_name | None, data)` only when a caller asks for it,
so that the hot path can walk a stream from its end and look at the few events that matter.

Handled: `\\n`, `\\r\\n`, lone `\\r` and mixed line endings; several events in one chunk;
comment lines (`:` ...); `event:` lines; multi-line `data:` (joined with `\\n`); an optional single
space after the colon; `id:`/`retry:`/unknown fields (ignored); a last event without its blank
line (a truncated stream).
"""

from __future__ import annotations

from collections.abc import Iterator

Event = tuple[str | None, str]


def normalise_newlines(body: str) -> str:
    """`body` with every `\\r\\n` and lone `\\r` turned into `\\n` (no copy when there is none)."""
    if "\r" not in body:
        return body
    return body.replace("\r\n", "\n").replace("\r", "\n")


def split_blocks(body: str) -> tuple[list[str], bool]:
    """Split a body into raw event blocks.

    Returns the non-empty blocks and whether the last block was terminated by a blank line
    (False: the stream stopped in the middle of its last event, or right after it).
    """
    text = normalise_newlines(body)
    blocks = text.split("\n\n")
    complete = not blocks or blocks[-1].strip("\n") == ""
    return [b for b in blocks if b and b != "\n"], complete


def parse_block(block: str) -> Event | None:
    """Turn one raw block into `(event_name, data)`; None when it carries no `data:` line."""
    if block.startswith("data:") and "\n" not in block:
        # Fast path: one `data:` line (OpenAI chat, Gemini).
        return None, block[6:] if block.startswith("data: ") else block[5:]
    if block.startswith("event:"):
        # Fast path: `event:` then one `data:` line (Anthropic, Responses).
        nl = block.find("\n")
        if nl > 0 and block.startswith("data:", nl + 1) and block.find("\n", nl + 1) < 0:
            name = block[6:nl]
            data = block[nl + 7 :] if block.startswith("data: ", nl + 1) else block[nl + 6 :]
            return (name[1:] if name[:1] == " " else name) or None, data
    return parse_block_lines(block)


def parse_block_lines(block: str) -> Event | None:
    """`parse_block` field by field: any block (comments, `id:`, multi-line data...)."""
    event: str | None = None
    data: list[str] = []
    for line in block.split("\n"):
        if not line or line[0] == ":":
            continue
        name, _, value = line.partition(":")
        if value[:1] == " ":
            value = value[1:]
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value or None
    if not data:
        return None
    return event, data[0] if len(data) == 1 else "\n".join(data)


def block_event_name(block: str) -> str | None:
    """The `event:` name of a raw block without parsing its data (None when it has none)."""
    if block.startswith("event:"):
        end = block.find("\n")
        name = block[6:end] if end >= 0 else block[6:]
        return name.strip() or None
    if block.startswith("data:"):
        return None
    event = parse_block(block)
    return event[0] if event else None


def iter_events(body: str) -> Iterator[Event]:
    """Yield every event of a body, in order, as `(event_name | None, data)`."""
    blocks, _ = split_blocks(body)
    for block in blocks:
        event = parse_block(block)
        if event is not None:
            yield event


def peek_type(data: str) -> str | None:
    """The value of the first `"type"` key in a JSON payload, read without decoding it.

    Used only to skip payloads cheaply; a match is always confirmed by decoding.
    """
    at = data.find('"type"')
    if at < 0:
        return None
    colon = data.find(":", at + 6)
    if colon < 0 or data[at + 6 : colon].strip():
        return None
    at = colon + 1
    while data[at : at + 1] == " ":
        at += 1
    if data[at : at + 1] != '"':
        return None
    end = data.find('"', at + 1)
    return data[at + 1 : end] if end > at else None
