"""OpenAI Chat Completions bodies (OpenAI, Azure OpenAI and OpenAI-compatible servers).

Streams: `data: {chat.completion.chunk}` events ending with `data: [DONE]`. Usage is the LAST chunk
whose `usage` is not null (Azure's first prompt-filter chunk also has `choices: []`, so an empty
`choices` alone proves nothing). Without `want_text` the stream is walked from its end and only the
chunks that can matter are decoded: the usage chunk, the finish chunk, one chunk with a non-empty
`model`, and chunks whose raw text holds an `"error"` key. Mid-stream errors: an `event: error`
event (Groq) or an `error` key inside a normal chunk (OpenRouter, which still sends usage).

Non-streaming: one `chat.completion` object.
"""

from __future__ import annotations

import re
from typing import Any

from sidecar.parse import textscan
from sidecar.parse.providers import errors
from sidecar.parse.providers._common import (
    COUNT_MAX,
    END_OF_MESSAGE_TOKENS,
    Chunks,
    Counts,
    as_dict,
    as_str,
    is_reasoning_model,
    loads,
    subset_clamped,
    tool_call_overhead,
)
from sidecar.types import ParsedBody, Usage

# Chunks with choices walked past, from the end, when no finish_reason shows up (a cut stream, or
# Azure's asynchronous-filter annotation chunks after the finish chunk).
_MAX_TAIL_CHUNKS = 4


def usage_from(u: dict[str, Any]) -> Usage:
    """Normalise a chat `usage` object (all detail fields optional and null-tolerant)."""
    prompt_tokens = u.get("prompt_tokens")
    completion_tokens = u.get("completion_tokens")
    prompt = u.get("prompt_tokens_details")
    completion = u.get("completion_tokens_details")
    cached = prompt.get("cached_tokens") if type(prompt) is dict else None
    write = prompt.get("cache_write_tokens") if type(prompt) is dict else None
    reasoning = completion.get("reasoning_tokens") if type(completion) is dict else None
    if (
        type(prompt_tokens) is int
        and type(completion_tokens) is int
        and 0 <= prompt_tokens <= COUNT_MAX
        and 0 <= completion_tokens <= COUNT_MAX
        and (cached is None or (type(cached) is int and 0 <= cached <= COUNT_MAX))
        and (write is None or (type(write) is int and 0 <= write <= COUNT_MAX))
        and (reasoning is None or (type(reasoning) is int and 0 <= reasoning <= COUNT_MAX))
    ):
        # The usual usage: plain counts, read as `_usage_from` reads them, without its checks.
        return _plain_usage(prompt_tokens, cached, write, completion_tokens, reasoning)
    return _usage_from(u)


def _plain_usage(
    prompt: int, cached: int | None, write: int | None, completion: int, reasoning: int | None
) -> Usage:
    """The usage of plain, checked counts (`usage_from`'s fast path, `read_tail`): each one
    0..COUNT_MAX or None; built positionally in Usage's field order (a test checks it)."""
    return subset_clamped(Usage(prompt, cached or 0, write or 0, 0, completion, reasoning or 0))


def read_tail(
    pb: ParsedBody,
    model: str,
    rid: str,
    tier: str | None,
    finish: str,
    prompt: int,
    cached: int | None,
    write: int | None,
    completion: int,
    reasoning: int,
) -> bool:
    """Fill `pb` as `parse_tail` does from what `tailscan.chat_tail` read in C (the usual end:
    plain counts, a reasoning count given, so `_finalise` only sets the reasoning hint);
    always True (filled), as `anthropic.read_edges` answers."""
    pb.model = model
    pb.provider_request_id = rid
    pb.service_tier = tier
    pb.finish_reason = finish
    pb.usage = _plain_usage(prompt, cached, write, completion, reasoning)
    pb.terminal_seen = True
    _finalise(pb, None, "")
    return True


def _usage_from(u: dict[str, Any]) -> Usage:
    """`usage_from` for any values (checked: a bad one marks the usage invalid)."""
    n = Counts()
    prompt = as_dict(u.get("prompt_tokens_details"))
    completion = as_dict(u.get("completion_tokens_details"))
    return n.usage(
        Usage(
            input_tokens=n(u.get("prompt_tokens")),
            cached_input_tokens=n(prompt.get("cached_tokens")),
            cache_write_input_tokens=n(prompt.get("cache_write_tokens")),
            output_tokens=n(u.get("completion_tokens")),
            reasoning_tokens=n(completion.get("reasoning_tokens")),
        )
    )


def _choice_text(
    out: list[str], part: dict[str, Any], calls: dict[Any, list[str]], choice: Any
) -> bool:
    """Append the generated text of one `delta` or `message` object, one string per delta
    (a content delta is one token). Tool-call names and arguments go to `calls`, per call:
    argument deltas are cut anywhere, so a call's arguments are counted joined. True when the
    part held answer text."""
    text = False
    for key in ("content", "refusal", "reasoning_content", "reasoning"):
        value = part.get(key)
        if type(value) is str and value:
            out.append(value)
            text = text or key in ("content", "refusal")
        elif type(value) is list:  # content as a list of parts
            for item in value:
                value = as_dict(item).get("text")
                if type(value) is str and value:
                    out.append(value)
                    text = True
    tool_calls = part.get("tool_calls")
    for i, call in enumerate(tool_calls if type(tool_calls) is list else ()):
        call = as_dict(call)
        index = call.get("index")
        key = (choice, index if type(index) is int else f"m{i}")
        _call_pieces(calls, key, as_dict(call.get("function")))
    legacy = as_dict(part.get("function_call"))
    if legacy:
        _call_pieces(calls, (choice, "legacy"), legacy)
    return text


def _call_pieces(calls: dict[Any, list[str]], key: Any, fn: dict[str, Any]) -> None:
    """A call's pieces: its name first (element 0, possibly empty), then argument deltas."""
    pieces = calls.setdefault(key, [""])
    name = fn.get("name")
    if type(name) is str and name:
        pieces[0] += name
    args = fn.get("arguments")
    if type(args) is str and args:
        pieces.append(args)


def _texts(obj: dict[str, Any], out: list[str], calls: dict[Any, list[str]]) -> bool:
    choices = obj.get("choices")
    if type(choices) is not list:
        return False
    text = False
    for choice in choices:
        if type(choice) is not dict:
            continue  # holds no text
        delta = choice.get("delta")
        if type(delta) is dict and len(delta) == 1 and "message" not in choice:
            # the usual chunk: a delta with nothing but its content (one token)
            content = delta.get("content")
            if type(content) is str:
                if content:
                    out.append(content)
                    text = True
                continue
        index = choice.get("index")
        text = _choice_text(out, as_dict(delta), calls, index) or text
        text = _choice_text(out, as_dict(choice.get("message")), calls, index) or text
    return text


def _extra_tokens(pb: ParsedBody, calls: dict[Any, list[str]], text: bool) -> None:
    """Each call's name and joined arguments as text, and the billed overheads beyond the
    counted text (see `_common.tool_call_overhead`). A call that ends with `stop` rather than
    `tool_calls` was forced by `tool_choice`: only its arguments are billed (pool: gpt-4o)."""
    forced = bool(calls) and not text and pb.finish_reason == "stop"
    for pieces in calls.values():
        joined = "".join(pieces[1:] if forced else pieces)
        if joined:
            pb.output_text.append(joined)
    if forced:
        return
    per_choice: dict[Any, int] = {}
    for choice, _ in calls:
        per_choice[choice] = per_choice.get(choice, 0) + 1
    extra = sum(tool_call_overhead(n) for n in per_choice.values())
    if text and not calls and pb.finish_reason == "stop":
        extra += END_OF_MESSAGE_TOKENS
    pb.output_extra_tokens += extra


def _finish_reason(obj: dict[str, Any]) -> str | None:
    choices = obj.get("choices")
    if type(choices) is not list:
        return None
    for choice in reversed(choices):
        reason = as_str(as_dict(choice).get("finish_reason"))
        if reason:
            return reason
    return None


_VISIBLE_REASONING = re.compile(r'"reasoning(?:_content)?"\s*:\s*"[^"]')


def _finalise(pb: ParsedBody, usage_obj: dict[str, Any] | None, body: str) -> None:
    if not pb.reasoning_model_hint:
        pb.reasoning_model_hint = bool(
            (pb.usage and pb.usage.reasoning_tokens > 0) or is_reasoning_model(pb.model)
        )
    if pb.usage is not None and usage_obj is not None:
        # null, not 0, when the model reasoned (visibly, or is a reasoning model) but the
        # provider gave no count (Mistral, DeepSeek-style `reasoning_content`).
        details = as_dict(usage_obj.get("completion_tokens_details"))
        if type(details.get("reasoning_tokens")) is not int:
            if is_reasoning_model(pb.model):
                pb.usage.reasoning_unknown = True
            else:
                pb.read_text = True  # the answer is in the text, wherever it is
                if _VISIBLE_REASONING.search(body):
                    pb.usage.reasoning_unknown = True


def parse_stream(pb: ParsedBody, chunks: Chunks, want_text: bool) -> None:
    """Fill `pb` from a chat completions SSE stream, walking it from its end."""
    calls: dict[Any, list[str]] = {}
    text = False
    if want_text:
        out = pb.output_text  # the usual events read in C when it is there (textscan)
        text = chunks.read_objects(textscan.chat, out, lambda obj: _texts(obj, out, calls))

    usage_obj: dict[str, Any] | None = None
    usage_choices_empty = False
    finish: str | None = None
    done = False
    content_chunks = 0  # chunks with choices seen so far (from the end)
    for ev in chunks.backward():
        if ev.is_done():
            done = True
            continue
        obj = ev.obj()
        if obj is None:
            continue
        if (ev.name == "error" or ev.has('"error"')) and errors.apply_error(pb, obj):
            pb.terminal_seen = True  # the server ended the stream with an error
        choices = obj.get("choices")
        if usage_obj is None and content_chunks == 0:
            # Usage rides on the chunks after the last content chunk (or on it: continuous
            # usage stats); Groq's older streams put it in `x_groq.usage`.
            u = obj.get("usage")
            if type(u) is not dict:
                u = as_dict(obj.get("x_groq")).get("usage")
            if type(u) is dict:
                usage_obj = u
                usage_choices_empty = choices == []
        if finish is None:
            finish = _finish_reason(obj)
        if pb.model is None:
            pb.model = as_str(obj.get("model"))  # never Azure's empty first-chunk model
        if pb.provider_request_id is None:
            pb.provider_request_id = as_str(obj.get("id"))
        if pb.service_tier is None:
            pb.service_tier = as_str(obj.get("service_tier"))
        if type(choices) is list and choices:
            content_chunks += 1
        if (
            content_chunks
            and pb.model is not None
            and pb.provider_request_id is not None
            and (finish is not None or content_chunks >= _MAX_TAIL_CHUNKS)
        ):
            break

    pb.finish_reason = finish
    if usage_obj is not None:
        pb.usage = usage_from(usage_obj)
    if done or (usage_obj is not None and (usage_choices_empty or finish is not None)):
        pb.terminal_seen = True
    if pb.usage is not None and not pb.terminal_seen:
        pb.usage_partial = True  # continuous usage stats on a cut stream
    if want_text:
        _extra_tokens(pb, calls, text)
    _finalise(pb, usage_obj, chunks.text)


def parse_tail(pb: ParsedBody, text: str) -> bool:
    """`parse_stream` of a stream that ends the usual way, read straight from the end of its
    text: a finish chunk, a usage chunk with `choices: []`, `[DONE]`, each a single `data:`
    line, no `"error"` anywhere in them, a model and an id in one of the two chunks. Then
    `parse_stream` would walk exactly these three events and stop: this gives its answer
    without framing events (it is most of a long stream's parse). False, `pb` untouched, for
    any other shape: `parse_stream` decides."""
    blocks = text.rsplit("\n\n", 4)
    if len(blocks) < 4 or blocks[-1] or blocks[-2] != "data: [DONE]":
        return False
    finish_block = blocks[-4]
    usage_block = blocks[-3]
    if (
        not finish_block.startswith("data: {")
        or not usage_block.startswith("data: {")
        or "\n" in finish_block
        or "\n" in usage_block
        or '"error"' in finish_block
        or '"error"' in usage_block
    ):
        return False
    u_obj = loads(usage_block[6:])
    if type(u_obj) is not dict or u_obj.get("choices") != []:
        return False
    usage_obj = u_obj.get("usage")
    if type(usage_obj) is not dict:
        return False
    f_obj = loads(finish_block[6:])
    if type(f_obj) is not dict:
        return False
    choices = f_obj.get("choices")
    finish = _finish_reason(f_obj)
    if type(choices) is not list or not choices or finish is None:
        return False
    model = as_str(u_obj.get("model")) or as_str(f_obj.get("model"))
    rid = as_str(u_obj.get("id")) or as_str(f_obj.get("id"))
    if model is None or rid is None:
        return False  # parse_stream walks on, past the finish chunk
    pb.model = model
    pb.provider_request_id = rid
    pb.service_tier = as_str(u_obj.get("service_tier")) or as_str(f_obj.get("service_tier"))
    pb.finish_reason = finish
    pb.usage = usage_from(usage_obj)
    pb.terminal_seen = True
    _finalise(pb, usage_obj, text)
    return True


def parse_json(pb: ParsedBody, obj: dict[str, Any], want_text: bool) -> None:
    """Fill `pb` from a non-streaming `chat.completion` object."""
    pb.terminal_seen = True
    pb.model = as_str(obj.get("model"))
    pb.provider_request_id = as_str(obj.get("id"))
    pb.service_tier = as_str(obj.get("service_tier"))
    pb.finish_reason = _finish_reason(obj)
    u = obj.get("usage")
    if type(u) is dict:
        pb.usage = usage_from(u)
    errors.apply_error(pb, obj)
    if want_text:
        calls: dict[Any, list[str]] = {}
        text = _texts(obj, pb.output_text, calls)
        _extra_tokens(pb, calls, text)
    _finalise(pb, u if type(u) is dict else None, "")
