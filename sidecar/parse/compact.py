"""Compaction of a long open stream (the callable the pipeline hands to the join).

The join keeps an open stream's body-log parts raw (escaped, undecoded) until they pass a
threshold; then `compact_stream(parts, head)` decodes them once and cuts the stream at SSE event
boundaries into three pieces:

- a *head*, kept raw, once per stream: its first events (up to `HEAD_BYTES`, and at least the
  first event up to `HEAD_FIRST_MAX`): `message_start` (model, input usage), the role chunk,
  `response.created`;
- a *tail*, kept raw: the last `TAIL_EVENTS` events, complete or not. Every provider's final usage
  is in its last two events (OpenAI chat's usage chunk then `[DONE]`, Anthropic's
  `message_delta` then `message_stop`, Gemini's last chunk, Responses' `response.completed`), and
  a compaction can happen between any two events, so two are kept. An event still being written
  (no blank line yet) is always in the tail, however long: `response.completed` repeats the whole
  output and can be megabytes, and is never cut here;
- the *middle*, decoded and dropped: only its visible text and per-item token overheads are kept
  (`ParsedBody.output_text` / `output_extra_tokens` of the provider parser with `want_text`).

The head and the tail are re-encoded as single parts in the body log's own form, so the request
completes exactly as an uncompacted one would: head + tail parse to the same usage, model and
terminal state; the estimate counts the middle's text plus the text of head and tail.
"""

from __future__ import annotations

from sidecar.parse.body import assemble_escaped, escape_part
from sidecar.parse.detect import detect_from_body
from sidecar.parse.providers import parse_body
from sidecar.parse.sse import normalise_newlines
from sidecar.types import NOT_A_STREAM, Compacted

HEAD_BYTES = 512  # head: first events up to this many characters ...
HEAD_FIRST_MAX = 16384  # ... and always the first event when it is at most this long
TAIL_EVENTS = 2  # events kept raw at the end


def compact_stream(parts: list[bytes], head: bytes | None) -> Compacted | None:
    """Compact an open stream's parts (see the module docstring). Returns NOT_A_STREAM for a
    body that is not SSE, None when there is no event boundary to cut at yet."""
    body, bad, lossy = assemble_escaped(parts)
    if head is None:
        start = body.lstrip(" \t\r\n\ufeff")[:1]
        if start in ("{", "[", "\x1f"):
            return NOT_A_STREAM
    text = normalise_newlines(body)
    # the last event may still be being written (no blank line yet): it is in the tail anyway
    events = [e for e in text.split("\n\n") if e.strip("\n")]
    if len(events) <= TAIL_EVENTS:
        return None
    keep_from = len(events) - TAIL_EVENTS
    new_head: bytes | None = None
    first = 0
    if head is None:
        size = 0
        while first < keep_from:
            n = len(events[first]) + 2
            if size + n > HEAD_BYTES and not (first == 0 and n <= HEAD_FIRST_MAX):
                break
            size += n
            first += 1
        new_head = escape_part("".join(e + "\n\n" for e in events[:first]))
    tail_text = "\n\n".join(events[keep_from:])
    if text.endswith("\n\n"):
        tail_text += "\n\n"
    middle = "".join(e + "\n\n" for e in events[first:keep_from])
    out_text: list[str] = []
    extra = 0
    if middle:
        # the provider and API, sniffed from the stream's first events (the head)
        head_text = assemble_escaped([head])[0] if head is not None else ""
        hint = (head_text or "".join(e + "\n\n" for e in events[:first])) + middle[:4096]
        provider, api = detect_from_body(hint)
        pb = parse_body(middle, provider=provider, api=api, want_text=True)
        out_text = pb.output_text
        extra = pb.output_extra_tokens
    return Compacted(
        head=new_head,
        tail=[escape_part(tail_text)],
        text=out_text,
        extra_tokens=extra,
        bad_parts=bad,
        lossy=lossy,
    )
