"""Gemini API and Vertex AI `generateContent` / `streamGenerateContent` bodies.

Three forms: SSE (`?alt=sse`, CRLF framed `data:` chunks, no `[DONE]`), a JSON array of chunks
(`streamGenerateContent` without `alt=sse`, `[{...}\\n,\\r\\n{...}]`) and one JSON object
(`generateContent`). Every chunk repeats `usageMetadata` as a running snapshot: take the LAST
snapshot that has counts, never sum. Vertex's intermediate chunks carry only `trafficType`.
output = candidatesTokenCount + thoughtsTokenCount (thoughts are outside candidates);
input = promptTokenCount (cache included) + toolUsePromptTokenCount.
"""

from __future__ import annotations

from typing import Any

from sidecar.parse import textscan
from sidecar.parse.providers import errors
from sidecar.parse.providers._common import (
    GEMINI_FUNCTION_CALL_TOKENS,
    Chunks,
    Counts,
    as_dict,
    as_str,
    dumps,
    loads,
    subset_clamped,
)
from sidecar.types import ParsedBody, Usage

_COUNT_KEYS = (
    "promptTokenCount",
    "candidatesTokenCount",
    "totalTokenCount",
    "thoughtsTokenCount",
    "toolUsePromptTokenCount",
    "cachedContentTokenCount",
)
_TRAFFIC_TIERS = {
    "ON_DEMAND": "standard",
    "ON_DEMAND_FLEX": "flex",
    "ON_DEMAND_PRIORITY": "priority",
    "PROVISIONED_THROUGHPUT": "provisioned_throughput",
}


def usage_from(m: dict[str, Any]) -> Usage:
    """Normalise one `usageMetadata` snapshot."""
    n = Counts()
    return n.usage(
        _plain_usage(
            n(m.get("promptTokenCount")),
            n(m.get("toolUsePromptTokenCount")),
            n(m.get("cachedContentTokenCount")),
            n(m.get("candidatesTokenCount")),
            n(m.get("thoughtsTokenCount")),
        )
    )


def _plain_usage(
    prompt: int, tool_prompt: int, cached: int, candidates: int, thoughts: int
) -> Usage:
    """The usage of plain counts (`usage_from`, `read_tail`), not clamped: input with the tool
    prompt, output with the thoughts; built positionally in Usage's field order (a test
    checks it)."""
    return Usage(prompt + tool_prompt, cached, 0, 0, candidates + thoughts, thoughts)


def has_counts(m: dict[str, Any]) -> bool:
    return any(k in m for k in _COUNT_KEYS)


def service_tier_from(m: dict[str, Any]) -> str | None:
    """`serviceTier` (Gemini API) or `trafficType` (Vertex), as a lower-case tier name."""
    return _tier(as_str(m.get("serviceTier")), as_str(m.get("trafficType")))


def _tier(tier: str | None, traffic: str | None) -> str | None:
    if tier:
        return tier.lower()
    if traffic:
        return _TRAFFIC_TIERS.get(traffic, traffic.lower())
    return None


def _candidates(obj: dict[str, Any]) -> list[dict[str, Any]]:
    cands = obj.get("candidates")
    return [c for c in cands if type(c) is dict] if type(cands) is list else []


def _finish_reason(obj: dict[str, Any]) -> str | None:
    for cand in reversed(_candidates(obj)):
        reason = as_str(cand.get("finishReason"))
        if reason:
            return reason
    return None


def _texts(
    obj: dict[str, Any], out: list[str], calls: list[int] | None = None, inline: bool = True
) -> bool:
    """Append the text of every answer part; return whether a part was a thought. Thought
    summaries are not counted: the thinking they summarise is hidden and billed whole
    (`thoughtsTokenCount`), so it is estimated from time. Function calls are counted in
    `calls[0]`. A part with nothing but its text is read at once (`inline=False`: by the
    general walk, which the tests compare it with)."""
    thought = False
    cands = obj.get("candidates")
    if type(cands) is not list:
        return False
    for cand in cands:  # `_candidates` inlined: no list per chunk
        if type(cand) is not dict:
            continue
        content = cand.get("content")
        parts = content.get("parts") if type(content) is dict else None
        if type(parts) is not list:
            continue
        for part in parts:
            if type(part) is not dict:
                continue  # as_dict(part) is empty: no text, no call, no thought
            if inline and len(part) == 1:
                text = part.get("text")
                if type(text) is str:  # the usual part: its text only
                    if text:
                        out.append(text)
                    continue
            if part.get("thought") is True:
                thought = True
                continue
            text = part.get("text")
            if type(text) is str and text:
                out.append(text)
            call = as_dict(part.get("functionCall"))
            if call and calls is not None:
                calls[0] += 1
            if call:
                name = as_str(call.get("name"))
                if name:
                    out.append(name)
                if call.get("args") is not None:
                    out.append(dumps(call.get("args")))
    return thought


def split_json_array(body: str) -> list[Any] | None:
    """Recover the complete elements of a cut JSON-array stream (`[{..}\\n,\\r\\n{..`).

    Gemini pretty-prints each element and puts the separating comma at the start of a line,
    so a line starting with `,` only ever separates top-level elements.
    """
    text = body.replace("\r\n", "\n").strip()
    if not text.startswith("["):
        return None
    text = text[1:]
    out: list[Any] = []
    for piece in text.split("\n,"):
        piece = piece.strip()
        if piece.endswith("]"):
            piece = piece[:-1]
        value = loads(piece)
        if type(value) is dict:
            out.append(value)
    return out


def parse_chunks(
    pb: ParsedBody, chunks: Chunks, want_text: bool, *, complete_array: bool = False
) -> None:
    """Fill `pb` from GenerateContentResponse chunks (SSE or JSON array), walked from the end."""
    thought = False
    if want_text:
        calls = [0]
        out = pb.output_text  # the usual events read in C when it is there (textscan)
        thought = chunks.read_objects(textscan.gemini, out, lambda obj: _texts(obj, out, calls))
        pb.output_extra_tokens += GEMINI_FUNCTION_CALL_TOKENS * calls[0]
    usage_meta: dict[str, Any] | None = None
    finish: str | None = None
    tier: str | None = None
    visited = 0
    for ev in chunks.backward():
        obj = ev.obj()
        if obj is None:
            continue
        visited += 1
        if ev.has('"error"') and errors.apply_error(pb, obj):
            pb.terminal_seen = True
        meta = as_dict(obj.get("usageMetadata"))
        if usage_meta is None and has_counts(meta):
            usage_meta = meta
        if tier is None:
            tier = service_tier_from(meta)
        if finish is None:
            finish = _finish_reason(obj)
        if not thought and ev.has('"thought"'):
            thought = _texts(obj, [])
        if pb.model is None:
            pb.model = as_str(obj.get("modelVersion"))
        if pb.provider_request_id is None:
            pb.provider_request_id = as_str(obj.get("responseId"))
        if (
            usage_meta is not None
            and pb.model is not None
            and pb.provider_request_id is not None
            and (finish is not None or visited >= 3)
        ):
            break

    usage = usage_from(usage_meta) if usage_meta is not None else None
    counted = usage_meta is not None and "thoughtsTokenCount" in usage_meta
    _fill(pb, usage, finish, tier, thought, complete_array, counted)


def _fill(
    pb: ParsedBody,
    usage: Usage | None,
    finish: str | None,
    tier: str | None,
    thought: bool,
    complete_array: bool,
    counted: bool,
) -> None:
    """`pb` from what the walk found (`parse_chunks`, `parse_tail` and `read_tail` share it):
    the usage read from the last snapshot with counts, if any (`counted`: that snapshot has a
    `thoughtsTokenCount`)."""
    pb.finish_reason = finish
    pb.service_tier = tier
    if finish is not None or complete_array:
        pb.terminal_seen = True
    if usage is not None:
        pb.usage = usage
        if not pb.terminal_seen:
            pb.usage_partial = True  # a running snapshot: candidates may still have grown
        if thought and not counted:
            usage.reasoning_unknown = True  # it thought, but the snapshot has no count
    pb.reasoning_model_hint = thought or bool(pb.usage and pb.usage.reasoning_tokens > 0)


def parse_tail(pb: ParsedBody, tail: str) -> bool:
    """`parse_chunks` (SSE, without `want_text`) of a stream whose last event says it all,
    read straight from the end of its text: one `data:` line, then exactly one blank line and
    nothing after, a JSON object without `"error"` in its text that has usage counts, a
    finish reason, `modelVersion` and `responseId`. Then `parse_chunks` decodes this event
    alone and stops: this gives its answer without framing events. False, `pb` untouched, for
    any other shape: `parse_chunks` decides. `tail` is whole events, newlines normalised."""
    blocks = tail.rsplit("\n\n", 2)
    if len(blocks) < 2 or blocks[-1]:
        return False
    block = blocks[-2]
    if not block.startswith("data: ") or "\n" in block or '"error"' in block:
        return False
    obj = loads(block[6:])
    if type(obj) is not dict:
        return False
    meta = as_dict(obj.get("usageMetadata"))
    finish = _finish_reason(obj)
    model = as_str(obj.get("modelVersion"))
    rid = as_str(obj.get("responseId"))
    if not has_counts(meta) or finish is None or model is None or rid is None:
        return False
    thought = '"thought"' in block and _texts(obj, [])
    pb.model = model
    pb.provider_request_id = rid
    counted = "thoughtsTokenCount" in meta
    _fill(pb, usage_from(meta), finish, service_tier_from(meta), thought, False, counted)
    return True


def read_tail(
    pb: ParsedBody,
    model: str,
    rid: str,
    finish: str,
    tier: str | None,
    traffic: str | None,
    prompt: int,
    tool_prompt: int,
    cached: int,
    candidates: int,
    thoughts: int,
) -> bool:
    """Fill `pb` as `parse_tail` does from what `tailscan.gemini_tail` read in C (a last event
    without `"thought"`; plain counts, 0 for null or absent: `usage_from` reads them so, and
    they are valid); always True (filled), as `openai_chat.read_tail` answers."""
    pb.model = model
    pb.provider_request_id = rid
    usage = subset_clamped(_plain_usage(prompt, tool_prompt, cached, candidates, thoughts))
    _fill(pb, usage, finish, _tier(tier, traffic), False, False, True)  # no thought: C declines one
    return True


def parse_json(pb: ParsedBody, obj: dict[str, Any], want_text: bool) -> None:
    """Fill `pb` from a non-streaming GenerateContentResponse."""
    parse_chunks(pb, Chunks.from_objects([obj]), want_text, complete_array=True)
