"""OpenAI Responses API bodies (OpenAI and Azure OpenAI `/responses`).

Streams: `event: <type>` + `data: {"type": ...}` events with no `[DONE]`. Usage, the served
model, the applied `service_tier` and the status live only on the terminal event's `response`
object (`response.completed`, `response.incomplete`, `response.failed`); `response.created`
carries the *requested* tier and is used only when no terminal event arrived. A top-level
`{"type": "error", ...}` event is a mid-stream error; `response.failed` carries `response.error`.

Non-streaming: one `response` object.
"""

from __future__ import annotations

from typing import Any

from sidecar.parse.providers import errors
from sidecar.parse.providers._common import (
    END_OF_MESSAGE_TOKENS,
    Chunks,
    Counts,
    as_dict,
    as_str,
    is_reasoning_model,
    tool_call_overhead,
)
from sidecar.types import ParsedBody, Usage

TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
_LIFECYCLE = frozenset({"response.created", "response.in_progress", "response.queued"})
# Deltas of billed output the client sees (one token each). Reasoning summaries are not
# counted: they are written by a summariser, the reasoning they stand for is hidden and is
# estimated from the stream's timing instead.
_TEXT_DELTAS = frozenset({"response.output_text.delta", "response.refusal.delta"})
# Tool-call argument deltas are cut anywhere: joined per output item before counting.
_CALL_DELTAS = frozenset(
    {"response.function_call_arguments.delta", "response.custom_tool_call_input.delta"}
)
_CALL_ITEMS = ("function_call", "custom_tool_call")


def usage_from(u: dict[str, Any]) -> Usage:
    """Normalise a Responses `usage` object."""
    n = Counts()
    inp = as_dict(u.get("input_tokens_details"))
    out = as_dict(u.get("output_tokens_details"))
    return n.usage(
        Usage(
            input_tokens=n(u.get("input_tokens")),
            cached_input_tokens=n(inp.get("cached_tokens")),
            cache_write_input_tokens=n(inp.get("cache_write_tokens")),
            output_tokens=n(u.get("output_tokens")),
            reasoning_tokens=n(out.get("reasoning_tokens")),
        )
    )


def _item_text(item: dict[str, Any], out: list[str]) -> int:
    """Generated text of one output item of a response object; 1 when it is a tool call."""
    kind = item.get("type")
    if kind == "message":
        content = item.get("content")
        for part in content if type(content) is list else ():
            part = as_dict(part)
            for key in ("text", "refusal"):
                value = part.get(key)
                if type(value) is str and value:
                    out.append(value)
    elif kind in _CALL_ITEMS:
        for key in ("name", "arguments", "input"):
            value = item.get(key)
            if type(value) is str and value:
                out.append(value)
        return 1
    return 0


def _extra_tokens(pb: ParsedBody, calls: int, text: bool) -> None:
    extra = tool_call_overhead(calls)
    if text and not calls and pb.finish_reason == "completed":
        extra += END_OF_MESSAGE_TOKENS
    pb.output_extra_tokens += extra


def apply_response(pb: ParsedBody, resp: dict[str, Any], *, final: bool) -> None:
    """Fill `pb` from a `response` object (a terminal event's, or a whole non-streaming body)."""
    pb.model = as_str(resp.get("model")) or pb.model
    pb.provider_request_id = as_str(resp.get("id")) or pb.provider_request_id
    tier = as_str(resp.get("service_tier"))
    if final or pb.service_tier is None:
        pb.service_tier = tier or pb.service_tier
    if not final:
        return
    status = as_str(resp.get("status"))
    reason = as_str(as_dict(resp.get("incomplete_details")).get("reason"))
    pb.finish_reason = reason or status
    u = resp.get("usage")
    if type(u) is dict:
        pb.usage = usage_from(u)
        details = as_dict(u.get("output_tokens_details"))
        if type(details.get("reasoning_tokens")) is not int and (
            is_reasoning_model(pb.model) or _has_reasoning_item(resp)
        ):
            pb.usage.reasoning_unknown = True
    err = resp.get("error")
    if type(err) is dict and err:
        errors.apply_error(pb, {"error": err})
    elif status == "failed" and pb.error_type is None:
        pb.error_type = "response_failed"
    output = resp.get("output")
    for item in output if type(output) is list else ():
        if as_dict(item).get("type") == "reasoning":
            pb.reasoning_model_hint = True


def _has_reasoning_item(resp: dict[str, Any]) -> bool:
    output = resp.get("output")
    items = output if type(output) is list else ()
    return any(as_dict(i).get("type") == "reasoning" for i in items)


def _finalise(pb: ParsedBody) -> None:
    if (pb.usage and pb.usage.reasoning_tokens > 0) or is_reasoning_model(pb.model):
        pb.reasoning_model_hint = True


def parse_stream(pb: ParsedBody, chunks: Chunks, want_text: bool) -> None:
    """Fill `pb` from a Responses SSE stream, walking it from its end."""
    calls: dict[Any, list[str]] = {}
    text = False
    if want_text:
        for ev in chunks.forward_all():
            kind = ev.kind()
            if kind in _TEXT_DELTAS:
                delta = (ev.obj() or {}).get("delta")
                if type(delta) is str and delta:
                    pb.output_text.append(delta)
                    text = True
            elif kind in _CALL_DELTAS:
                obj = ev.obj() or {}
                delta = obj.get("delta")
                if type(delta) is str and delta:
                    calls.setdefault(obj.get("output_index"), []).append(delta)
            elif kind == "response.output_item.added":
                obj = ev.obj() or {}
                item = as_dict(obj.get("item"))
                if item.get("type") == "reasoning":
                    pb.reasoning_model_hint = True
                if item.get("type") in _CALL_ITEMS:
                    pieces = calls.setdefault(obj.get("output_index"), [])
                    name = as_str(item.get("name"))
                    if name:
                        pieces.insert(0, name)
        for pieces in calls.values():
            if pieces:
                pb.output_text.append("".join(pieces))

    terminal: dict[str, Any] | None = None
    lifecycle: dict[str, Any] | None = None
    for ev in chunks.backward():
        kind = ev.kind()
        if kind == "error":
            obj = ev.obj()
            if obj is not None and errors.apply_error(pb, obj):
                pb.terminal_seen = True  # the server ended the stream with an error
        elif kind in TERMINAL:
            terminal = as_dict((ev.obj() or {}).get("response")) or None
            if terminal is not None:
                break
        elif kind in _LIFECYCLE:
            lifecycle = as_dict((ev.obj() or {}).get("response")) or None
            if lifecycle is not None:
                break

    if terminal is not None:
        pb.terminal_seen = True
        apply_response(pb, terminal, final=True)
    elif lifecycle is not None:
        apply_response(pb, lifecycle, final=False)
    if want_text:
        _extra_tokens(pb, len(calls), text)
    _finalise(pb)


def parse_json(pb: ParsedBody, obj: dict[str, Any], want_text: bool) -> None:
    """Fill `pb` from a non-streaming `response` object."""
    pb.terminal_seen = True
    apply_response(pb, obj, final=True)
    if want_text:
        output = obj.get("output")
        calls = 0
        for item in output if type(output) is list else ():
            calls += _item_text(as_dict(item), pb.output_text)
        _extra_tokens(pb, calls, bool(pb.output_text) and not calls)
    _finalise(pb)
