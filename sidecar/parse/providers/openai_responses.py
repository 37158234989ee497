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
    Chunks,
    Counts,
    as_dict,
    as_str,
    is_reasoning_model,
)
from sidecar.types import ParsedBody, Usage

TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
_LIFECYCLE = frozenset({"response.created", "response.in_progress", "response.queued"})
_TEXT_DELTAS = frozenset(
    {
        "response.output_text.delta",
        "response.refusal.delta",
        "response.function_call_arguments.delta",
        "response.reasoning_summary_text.delta",
        "response.custom_tool_call_input.delta",
    }
)


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


def _item_text(item: dict[str, Any], out: list[str]) -> None:
    """Generated text of one output item of a response object."""
    kind = item.get("type")
    if kind == "message":
        content = item.get("content")
        for part in content if type(content) is list else ():
            part = as_dict(part)
            for key in ("text", "refusal"):
                value = part.get(key)
                if type(value) is str and value:
                    out.append(value)
    elif kind in ("function_call", "custom_tool_call"):
        for key in ("name", "arguments", "input"):
            value = item.get(key)
            if type(value) is str and value:
                out.append(value)
    elif kind == "reasoning":
        summary = item.get("summary")
        for part in summary if type(summary) is list else ():
            text = as_dict(part).get("text")
            if type(text) is str and text:
                out.append(text)


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
    err = resp.get("error")
    if type(err) is dict and err:
        errors.apply_error(pb, {"error": err})
    elif status == "failed" and pb.error_type is None:
        pb.error_type = "response_failed"
    output = resp.get("output")
    for item in output if type(output) is list else ():
        if as_dict(item).get("type") == "reasoning":
            pb.reasoning_model_hint = True


def _finalise(pb: ParsedBody) -> None:
    if (pb.usage and pb.usage.reasoning_tokens > 0) or is_reasoning_model(pb.model):
        pb.reasoning_model_hint = True


def parse_stream(pb: ParsedBody, chunks: Chunks, want_text: bool) -> None:
    """Fill `pb` from a Responses SSE stream, walking it from its end."""
    if want_text:
        for ev in chunks.forward():
            kind = ev.kind()
            if kind in _TEXT_DELTAS:
                delta = (ev.obj() or {}).get("delta")
                if type(delta) is str and delta:
                    pb.output_text.append(delta)
            elif kind == "response.output_item.added":
                item = as_dict((ev.obj() or {}).get("item"))
                if item.get("type") == "reasoning":
                    pb.reasoning_model_hint = True
                name = as_str(item.get("name"))
                if name and item.get("type") in ("function_call", "custom_tool_call"):
                    pb.output_text.append(name)

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
    _finalise(pb)


def parse_json(pb: ParsedBody, obj: dict[str, Any], want_text: bool) -> None:
    """Fill `pb` from a non-streaming `response` object."""
    pb.terminal_seen = True
    apply_response(pb, obj, final=True)
    if want_text:
        output = obj.get("output")
        for item in output if type(output) is list else ():
            _item_text(as_dict(item), pb.output_text)
    _finalise(pb)
