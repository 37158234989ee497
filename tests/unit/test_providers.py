"""Hand-written bodies for the shapes no recorded fixture covers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.parse.providers import is_rate_limit_error, parse_body
from sidecar.parse.providers._common import (
    ANTHROPIC_MESSAGE_TOKENS,
    ANTHROPIC_TOOL_PARAM_TOKENS,
    ANTHROPIC_TOOL_USE_TOKENS,
    subset_clamped,
)
from sidecar.types import Usage


def sse(*events: Any, crlf: bool = False) -> str:
    """An SSE body: each item is a payload (dict -> JSON) or an (event, payload) pair."""
    out = []
    for ev in events:
        name, payload = ev if isinstance(ev, tuple) else (None, ev)
        data = payload if isinstance(payload, str) else json.dumps(payload)
        out.append((f"event: {name}\n" if name else "") + f"data: {data}\n\n")
    body = "".join(out)
    return body.replace("\n", "\r\n") if crlf else body


def chunk(content: str | None = None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    delta = {} if content is None else {"content": content}
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        "usage": None,
        **extra,
    }


def usage_chunk(usage: dict[str, Any]) -> dict[str, Any]:
    return dict(chunk(), choices=[], usage=usage)


# --- OpenAI chat ------------------------------------------------------------------------------


def test_chat_usage_details_cached_cache_write_and_reasoning() -> None:
    usage = {
        "prompt_tokens": 1000,
        "completion_tokens": 300,
        "prompt_tokens_details": {"cached_tokens": 600, "cache_write_tokens": 100},
        "completion_tokens_details": {"reasoning_tokens": 250},
    }
    body = sse(chunk("hi"), chunk(finish="stop"), usage_chunk(usage), "[DONE]")
    pb = parse_body(body, provider="openai", api="chat.completions")
    assert pb.usage == Usage(1000, 600, 100, 0, 300, 250)
    assert pb.terminal_seen and pb.finish_reason == "stop"
    assert pb.reasoning_model_hint is True


def test_chat_null_details_are_tolerated() -> None:
    usage = {
        "prompt_tokens": 5,
        "completion_tokens": None,
        "prompt_tokens_details": None,
        "completion_tokens_details": {"reasoning_tokens": None},
    }
    pb = parse_body(sse(chunk("a"), chunk(finish="stop"), usage_chunk(usage), "[DONE]"))
    assert pb.usage == Usage(input_tokens=5)


def test_chat_azure_prompt_filter_chunk_is_neither_usage_nor_model() -> None:
    first = {
        "choices": [],
        "created": 0,
        "id": "",
        "model": "",
        "object": "",
        "prompt_filter_results": [{"prompt_index": 0}],
    }
    body = sse(first, chunk("x"), chunk(finish="stop"), "[DONE]")
    pb = parse_body(body)
    assert pb.provider == "azure"
    assert pb.usage is None
    assert pb.model == "gpt-4o-2024-08-06"
    assert pb.terminal_seen is True


def test_chat_stream_cut_before_finish_is_not_terminal() -> None:
    body = sse(chunk("a"), chunk("b")) + 'data: {"id":"chatcmpl-1","choi'
    pb = parse_body(body, truncated=True)
    assert pb.terminal_seen is False
    assert pb.truncated is True
    assert pb.usage is None
    assert pb.finish_reason is None
    assert pb.malformed_events == 0  # the cut last event is not garbage
    assert pb.model == "gpt-4o-2024-08-06"


def test_chat_want_text_collects_content_tool_calls_and_refusals() -> None:
    tool = chunk()
    tool["choices"][0]["delta"] = {
        "tool_calls": [{"index": 0, "function": {"name": "lookup", "arguments": '{"q":'}}]
    }
    refusal = chunk()
    refusal["choices"][0]["delta"] = {"refusal": "I can't"}
    body = sse(chunk("Hello"), tool, refusal, chunk(finish="stop"), "[DONE]")
    pb = parse_body(body, want_text=True)
    # content deltas one by one; a tool call's name and arguments joined, after the text
    assert pb.output_text == ["Hello", "I can't", 'lookup{"q":']
    assert parse_body(body).output_text == []


def test_chat_groq_error_event_without_usage_or_done() -> None:
    err = {
        "error": {
            "message": "bad tool",
            "type": "invalid_request_error",
            "code": "tool_use_failed",
            "status_code": 400,
        }
    }
    body = sse(chunk("a"), ("error", err))
    pb = parse_body(body, provider="other", api="chat.completions")
    assert pb.error_type == "invalid_request_error"
    assert pb.error_code == "tool_use_failed"
    assert pb.error_http_status == 400
    assert pb.usage is None


def test_chat_continuous_usage_on_a_cut_stream_is_partial() -> None:
    u1 = {"prompt_tokens": 10, "completion_tokens": 1}
    u2 = {"prompt_tokens": 10, "completion_tokens": 2}
    body = sse(dict(chunk("a"), usage=u1), dict(chunk("b"), usage=u2))
    pb = parse_body(body)
    assert pb.usage == Usage(input_tokens=10, output_tokens=2)
    assert pb.terminal_seen is False
    assert pb.usage_partial is True


def test_chat_groq_x_groq_usage() -> None:
    last = chunk(finish="stop", x_groq={"usage": {"prompt_tokens": 7, "completion_tokens": 3}})
    pb = parse_body(sse(chunk("a"), last, "[DONE]"))
    assert pb.usage == Usage(input_tokens=7, output_tokens=3)


def test_chat_non_streaming_body() -> None:
    body = json.dumps(
        {
            "id": "chatcmpl-9",
            "object": "chat.completion",
            "model": "o3-2025-04-16",
            "service_tier": "default",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hi"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": 20,
                "completion_tokens": 40,
                "completion_tokens_details": {"reasoning_tokens": 32},
            },
        }
    )
    pb = parse_body(body, want_text=True)
    assert (pb.api, pb.provider, pb.is_stream, pb.terminal_seen) == (
        "chat.completions",
        "openai",
        False,
        True,
    )
    assert pb.usage == Usage(input_tokens=20, output_tokens=40, reasoning_tokens=32)
    assert pb.model == "o3-2025-04-16" and pb.provider_request_id == "chatcmpl-9"
    assert pb.output_text == ["Hi"]
    assert pb.reasoning_model_hint is True


def test_crlf_comments_and_no_space_after_colon() -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 4}
    body = ": hello\r\n\r\n" + sse(
        chunk("a"), chunk(finish="stop"), usage_chunk(usage), "[DONE]", crlf=True
    ).replace("data: ", "data:")
    pb = parse_body(body)
    assert pb.usage == Usage(input_tokens=3, output_tokens=4)
    assert pb.terminal_seen is True


def test_malformed_payload_is_counted_and_skipped() -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 4}
    body = sse(chunk("a"), chunk(finish="stop"), "{not json", usage_chunk(usage), "[DONE]")
    pb = parse_body(body, want_text=True)
    assert pb.usage == Usage(input_tokens=3, output_tokens=4)
    assert pb.malformed_events == 1


@pytest.mark.parametrize("magic", ["\x1f\x8b\x08\x00", "\x1f\udc8b\x08", "\x1f\ufffd\x08"])
def test_gzip_body_is_flagged_not_parsed(magic: str) -> None:
    pb = parse_body(magic + "garbage", provider="openai", api="chat.completions")
    assert pb.compressed is True
    assert pb.usage is None
    assert pb.malformed_events == 0


def test_empty_and_non_sse_text() -> None:
    assert parse_body("").usage is None
    pb = parse_body("<html><body>502 Bad Gateway</body></html>")
    assert pb.usage is None and pb.malformed_events == 1 and pb.is_stream is False


# --- OpenAI Responses -------------------------------------------------------------------------


def resp(status: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": "resp_1",
        "object": "response",
        "status": status,
        "model": "gpt-5-2025-08-07",
        "service_tier": "auto",
        "usage": None,
        "error": None,
        "incomplete_details": None,
        "output": [],
        **extra,
    }


def r_usage(inp: int, cached: int, out: int, reasoning: int) -> dict[str, Any]:
    return {
        "input_tokens": inp,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens": out,
        "output_tokens_details": {"reasoning_tokens": reasoning},
    }


def test_responses_incomplete() -> None:
    final = resp(
        "incomplete",
        service_tier="default",
        usage=r_usage(9463, 8320, 582, 512),
        incomplete_details={"reason": "max_output_tokens"},
    )
    body = sse(
        ("response.created", {"type": "response.created", "response": resp("in_progress")}),
        ("response.output_text.delta", {"type": "response.output_text.delta", "delta": "Hi"}),
        ("response.incomplete", {"type": "response.incomplete", "response": final}),
    )
    pb = parse_body(body, want_text=True)
    assert pb.api == "responses"
    assert pb.usage == Usage(9463, 8320, 0, 0, 582, 512)
    assert pb.finish_reason == "max_output_tokens"
    assert pb.service_tier == "default"
    assert pb.terminal_seen is True
    assert pb.output_text == ["Hi"]


def test_responses_failed_carries_the_error() -> None:
    final = resp(
        "failed",
        error={"code": "rate_limit_exceeded", "message": "slow down"},
        usage=r_usage(10, 0, 0, 0),
    )
    body = sse(("response.failed", {"type": "response.failed", "response": final}))
    pb = parse_body(body, provider="openai", api="responses")
    assert pb.error_type == "rate_limit_exceeded"
    assert pb.finish_reason == "failed"
    assert pb.usage == Usage(input_tokens=10)
    assert is_rate_limit_error(pb.error_type, pb.error_code, pb.error_http_status)


def test_responses_top_level_error_event() -> None:
    body = sse(
        ("response.created", {"type": "response.created", "response": resp("in_progress")}),
        ("error", {"type": "error", "code": "server_error", "message": "boom", "param": None}),
    )
    pb = parse_body(body)
    assert pb.error_type == "server_error" and pb.error_code == "server_error"
    assert pb.usage is None
    assert pb.model == "gpt-5-2025-08-07"
    assert pb.service_tier == "auto"  # only the requested tier is known


def test_responses_cut_stream_has_model_but_no_terminal() -> None:
    body = sse(
        ("response.created", {"type": "response.created", "response": resp("in_progress")}),
        ("response.output_text.delta", {"type": "response.output_text.delta"}),
    )
    pb = parse_body(body)
    assert pb.terminal_seen is False and pb.usage is None
    assert pb.provider_request_id == "resp_1"


def test_responses_non_streaming_with_reasoning_item() -> None:
    body = json.dumps(
        resp(
            "completed",
            model="gpt-4.1",
            usage=r_usage(5, 0, 7, 3),
            output=[
                {"type": "reasoning", "summary": []},
                {"type": "message", "content": [{"type": "output_text", "text": "Yes"}]},
                {"type": "function_call", "name": "f", "arguments": "{}"},
            ],
        )
    )
    pb = parse_body(body, want_text=True)
    assert pb.is_stream is False and pb.terminal_seen is True
    assert pb.usage == Usage(input_tokens=5, output_tokens=7, reasoning_tokens=3)
    assert pb.output_text == ["Yes", "f", "{}"]
    assert pb.reasoning_model_hint is True


# --- Anthropic --------------------------------------------------------------------------------


def msg_start(usage: dict[str, Any], model: str = "claude-sonnet-4-5") -> tuple[str, Any]:
    return (
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_1",
                "type": "message",
                "model": model,
                "content": [],
                "stop_reason": None,
                "usage": usage,
            },
        },
    )


def msg_delta(usage: dict[str, Any], stop: str = "end_turn") -> tuple[str, Any]:
    return (
        "message_delta",
        {"type": "message_delta", "delta": {"stop_reason": stop}, "usage": usage},
    )


STOP = ("message_stop", '{"type":"message_stop"   }')


def test_anthropic_iterations_are_billed_per_iteration() -> None:
    iterations = [
        {
            "type": "compaction",
            "input_tokens": 100,
            "output_tokens": 50,
            "cache_read_input_tokens": 55096,
            "cache_creation_input_tokens": 0,
        },
        {
            "type": "advisor_message",
            "model": "claude-opus-4-8",
            "input_tokens": 20,
            "output_tokens": 30,
            "cache_read_input_tokens": 0,
            "cache_creation_input_tokens": 400,
            "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 300},
        },
        {
            "type": "message",
            "input_tokens": 181,
            "output_tokens": 9,
            "cache_read_input_tokens": 0,
            "cache_creation_input_tokens": 0,
        },
    ]
    body = sse(
        msg_start({"input_tokens": 181, "cache_read_input_tokens": 55096, "output_tokens": 1}),
        msg_delta(
            {
                "input_tokens": 181,
                "cache_read_input_tokens": 0,
                "output_tokens": 89,
                "iterations": iterations,
            }
        ),
        STOP,
    )
    pb = parse_body(body)
    assert [p.model for p in pb.billing_parts] == [None, "claude-opus-4-8", None]
    assert pb.billing_parts[0].usage == Usage(55196, 55096, 0, 0, 50, 0)
    assert pb.billing_parts[1].usage == Usage(420, 0, 400, 300, 30, 0)
    assert pb.billing_parts[2].usage == Usage(input_tokens=181, output_tokens=9)
    assert pb.usage == Usage(55196 + 420 + 181, 55096, 400, 300, 89, 0)
    assert pb.terminal_seen is True


def test_anthropic_delta_fields_win_and_start_fills_the_rest() -> None:
    start = {
        "input_tokens": 2060,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": 1,
        "service_tier": "priority",
    }
    delta = {
        "input_tokens": 2081,
        "cache_creation_input_tokens": 7621,
        "cache_read_input_tokens": 28247,
        "output_tokens": 574,
        "server_tool_use": {"web_search_requests": 3},
    }
    pb = parse_body(sse(msg_start(start), ("ping", {"type": "ping"}), msg_delta(delta), STOP))
    assert pb.usage == Usage(2081 + 7621 + 28247, 28247, 7621, 0, 574, 0)
    assert pb.service_tier == "priority"


def test_anthropic_1h_cache_write_split() -> None:
    start = {
        "input_tokens": 3,
        "cache_creation_input_tokens": 1500,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 500, "ephemeral_1h_input_tokens": 1000},
        "output_tokens": 1,
    }
    pb = parse_body(sse(msg_start(start), msg_delta({"output_tokens": 12}), STOP))
    assert pb.usage == Usage(1503, 0, 1500, 1000, 12, 0)


def test_anthropic_mid_stream_overloaded_error() -> None:
    body = sse(
        msg_start({"input_tokens": 10, "output_tokens": 1}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        (
            "error",
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
        ),
    )
    pb = parse_body(body)
    assert pb.error_type == "overloaded_error"
    assert pb.usage == Usage(input_tokens=10, output_tokens=1)
    assert pb.usage_partial is True  # output is message_start's placeholder


def test_anthropic_cut_stream_keeps_input_counts_as_partial_usage() -> None:
    body = sse(msg_start({"input_tokens": 10, "cache_read_input_tokens": 5, "output_tokens": 1}))
    body += 'event: content_block_delta\ndata: {"type":"content_block_delta","ind'
    pb = parse_body(body, truncated=True)
    assert pb.terminal_seen is False and pb.usage_partial is True and pb.truncated is True
    assert pb.usage == Usage(input_tokens=15, cached_input_tokens=5, output_tokens=1)


def test_anthropic_thinking_and_text_collection() -> None:
    body = sse(
        msg_start({"input_tokens": 10, "output_tokens": 1}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "thinking", "thinking": ""},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "thinking_delta", "thinking": "Hmm"},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "signature_delta", "signature": "abc"},
            },
        ),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {"type": "tool_use", "name": "get", "input": {}},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": '{"a"'},
            },
        ),
        msg_delta({"output_tokens": 40}, stop="tool_use"),
        ("future_event", {"type": "future_event"}),
        STOP,
    )
    pb = parse_body(body, want_text=True)
    # one string per block; a tool call cut inside its input: its name, the JSON so far, and
    # the markup of one call with the one parameter begun
    assert pb.output_text == ["Hmm", "get", '{"a"']
    assert pb.output_extra_tokens == (
        ANTHROPIC_MESSAGE_TOKENS + ANTHROPIC_TOOL_USE_TOKENS + ANTHROPIC_TOOL_PARAM_TOKENS
    )
    assert pb.reasoning_model_hint is True
    assert pb.usage is not None and pb.usage.reasoning_unknown  # thought, no count reported
    assert pb.finish_reason == "tool_use"
    assert parse_body(body).reasoning_model_hint is True


def test_anthropic_non_streaming_message() -> None:
    body = json.dumps(
        {
            "id": "msg_2",
            "type": "message",
            "role": "assistant",
            "model": "claude-haiku-4-5",
            "content": [
                {"type": "text", "text": "Hi"},
                {"type": "tool_use", "name": "f", "input": {"x": 1}},
            ],
            "stop_reason": "tool_use",
            "usage": {
                "input_tokens": 4,
                "cache_read_input_tokens": 1165,
                "output_tokens": 20,
                "service_tier": "standard",
            },
        }
    )
    pb = parse_body(body, want_text=True)
    assert (pb.provider, pb.api, pb.terminal_seen) == ("anthropic", "messages", True)
    assert pb.usage == Usage(1169, 1165, 0, 0, 20, 0)
    # the call as Claude writes it: name, then each parameter's name and value
    assert pb.output_text == ["Hi", "f", "x", "1"]
    assert pb.output_extra_tokens == (
        ANTHROPIC_MESSAGE_TOKENS + ANTHROPIC_TOOL_USE_TOKENS + ANTHROPIC_TOOL_PARAM_TOKENS
    )
    assert pb.usage.reasoning_unknown is False  # no thinking: 0 is the truth


# --- Gemini / Vertex --------------------------------------------------------------------------


def g_chunk(
    meta: dict[str, Any],
    text: str = "x",
    finish: str | None = None,
    thought: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    cand: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": text}]}}
    if thought:
        cand["content"]["parts"][0]["thought"] = True
    if finish:
        cand["finishReason"] = finish
    return {
        "candidates": [cand],
        "usageMetadata": meta,
        "modelVersion": "gemini-2.5-pro",
        "responseId": "r1",
        **extra,
    }


def test_gemini_thoughts_tool_use_and_cache() -> None:
    final = {
        "promptTokenCount": 3520,
        "cachedContentTokenCount": 3512,
        "toolUsePromptTokenCount": 4610,
        "candidatesTokenCount": 25,
        "thoughtsTokenCount": 37,
        "totalTokenCount": 8192,
    }
    body = sse(
        g_chunk({"promptTokenCount": 3520}, text="plan", thought=True),
        g_chunk(final, text="done", finish="STOP"),
        crlf=True,
    )
    pb = parse_body(body, provider="gemini", api="generate_content", want_text=True)
    assert pb.usage == Usage(3520 + 4610, 3512, 0, 0, 25 + 37, 37)
    assert pb.reasoning_model_hint is True
    assert pb.output_text == ["done"]  # the thought summary is not counted (hidden, timed)
    assert pb.finish_reason == "STOP" and pb.terminal_seen is True


def test_gemini_thought_without_a_count_is_reasoning_unknown() -> None:
    """A stream that thought (a thought part) but whose snapshot has no `thoughtsTokenCount`:
    its reasoning is unknown (estimated later), not 0; with the count, or without a thought, it
    is known. Read by the walk (`parse_chunks`; the thought in an earlier chunk: text mode)
    and from the last event alone (`parse_tail`)."""
    from sidecar.parse.providers import gemini
    from sidecar.types import ParsedBody

    counts = {"promptTokenCount": 5, "candidatesTokenCount": 9}
    for meta, unknown in ((counts, True), ({**counts, "thoughtsTokenCount": 4}, False)):
        last = g_chunk(meta, finish="STOP", thought=True)
        for body, want_text in (
            (sse(last), False),
            (sse(g_chunk({}, thought=True), g_chunk(meta, finish="STOP")), True),
        ):
            pb = parse_body(body, provider="gemini", api="generate_content", want_text=want_text)
            assert pb.usage is not None and pb.usage.reasoning_unknown is unknown
            assert pb.reasoning_model_hint is True
        pb = ParsedBody()
        assert gemini.parse_tail(pb, sse(last)) and pb.usage is not None
        assert pb.usage.reasoning_unknown is unknown and pb.reasoning_model_hint is True
    pb = parse_body(sse(g_chunk(counts, finish="STOP")), provider="gemini", api="generate_content")
    assert pb.usage is not None and pb.usage.reasoning_unknown is False  # no thought: 0


def test_vertex_traffic_type_only_intermediate_chunks() -> None:
    body = sse(
        g_chunk({"trafficType": "ON_DEMAND"}, createTime="2026-01-01T00:00:00Z"),
        g_chunk({"trafficType": "ON_DEMAND"}, createTime="2026-01-01T00:00:00Z"),
        g_chunk(
            {"promptTokenCount": 5, "candidatesTokenCount": 9, "trafficType": "ON_DEMAND"},
            finish="MAX_TOKENS",
            createTime="2026-01-01T00:00:00Z",
        ),
        crlf=True,
    )
    pb = parse_body(body)
    assert pb.provider == "vertex"
    assert pb.usage == Usage(input_tokens=5, output_tokens=9)
    assert pb.service_tier == "standard" and pb.finish_reason == "MAX_TOKENS"


def test_gemini_cut_stream_keeps_the_last_snapshot_as_partial() -> None:
    body = sse(
        g_chunk({"promptTokenCount": 15, "candidatesTokenCount": 3}),
        g_chunk({"promptTokenCount": 15, "candidatesTokenCount": 6}),
    )
    pb = parse_body(body)
    assert pb.usage == Usage(input_tokens=15, output_tokens=6)
    assert pb.terminal_seen is False and pb.usage_partial is True


def test_gemini_function_call_text() -> None:
    c = g_chunk({"promptTokenCount": 1, "candidatesTokenCount": 2}, finish="STOP")
    c["candidates"][0]["content"]["parts"] = [{"functionCall": {"name": "f", "args": {"a": 1}}}]
    assert parse_body(sse(c), want_text=True).output_text == ["f", '{"a":1}']


def test_gemini_cut_json_array_keeps_complete_elements() -> None:
    a = json.dumps(g_chunk({"promptTokenCount": 11, "candidatesTokenCount": 2}), indent=2)
    b = json.dumps(g_chunk({"promptTokenCount": 11, "candidatesTokenCount": 5}), indent=2)
    body = "[" + a + "\n,\r\n" + b + "\n,\r\n" + b[:40]
    pb = parse_body(body, truncated=True)
    assert pb.usage == Usage(input_tokens=11, output_tokens=5)
    assert pb.terminal_seen is False and pb.is_stream is True


def test_gemini_429_in_an_array_with_retry_delay() -> None:
    body = json.dumps(
        [
            {
                "error": {
                    "code": 429,
                    "message": "Please retry in 38.6s.",
                    "status": "RESOURCE_EXHAUSTED",
                    "details": [
                        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
                        {
                            "@type": "type.googleapis.com/google.rpc.RetryInfo",
                            "retryDelay": "38.601s",
                        },
                    ],
                }
            }
        ]
    )
    pb = parse_body(body)
    assert pb.error_type == "RESOURCE_EXHAUSTED" and pb.error_code == "429"
    assert pb.error_http_status == 429
    assert pb.retry_after_secs == pytest.approx(38.601)
    assert is_rate_limit_error(pb.error_type, pb.error_code, pb.error_http_status)


def test_gemini_non_streaming_body() -> None:
    body = json.dumps(
        g_chunk(
            {"promptTokenCount": 8, "candidatesTokenCount": 2, "serviceTier": "STANDARD"},
            finish="STOP",
        )
    )
    pb = parse_body(body)
    assert (pb.provider, pb.api, pb.is_stream, pb.terminal_seen) == (
        "gemini",
        "generate_content",
        False,
        True,
    )
    assert pb.usage == Usage(input_tokens=8, output_tokens=2)
    assert pb.service_tier == "standard"


# --- Embeddings and error envelopes -----------------------------------------------------------


def test_embeddings() -> None:
    body = json.dumps(
        {
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.1]}],
            "model": "text-embedding-3-small",
            "usage": {"prompt_tokens": 8, "total_tokens": 8},
        }
    )
    pb = parse_body(body, provider="openai", api="embeddings")
    assert pb.api == "embeddings" and pb.usage == Usage(input_tokens=8)
    assert pb.model == "text-embedding-3-small" and pb.terminal_seen is True
    assert parse_body(body).api == "embeddings"


@pytest.mark.parametrize(
    ("body", "etype", "code", "http", "rate"),
    [
        (
            {
                "error": {
                    "message": "Rate limit reached",
                    "type": "tokens",
                    "param": None,
                    "code": "rate_limit_exceeded",
                }
            },
            "rate_limit_exceeded",
            "rate_limit_exceeded",
            None,
            True,
        ),
        (
            {
                "error": {
                    "message": "quota",
                    "type": "insufficient_quota",
                    "param": None,
                    "code": "insufficient_quota",
                }
            },
            "insufficient_quota",
            "insufficient_quota",
            None,
            True,
        ),
        (
            {"error": {"code": "429", "message": "Rate limit is exceeded."}},
            "rate_limit_exceeded",
            "429",
            429,
            True,
        ),
        (
            {
                "error": {
                    "message": "bad key",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "invalid_api_key",
                }
            },
            "invalid_request_error",
            "invalid_api_key",
            None,
            False,
        ),
        (
            {
                "type": "error",
                "error": {"type": "rate_limit_error", "message": "slow"},
                "request_id": "req_011",
            },
            "rate_limit_error",
            None,
            None,
            True,
        ),
        (
            {"error": {"code": 404, "message": "no", "status": "NOT_FOUND"}},
            "NOT_FOUND",
            "404",
            404,
            False,
        ),
    ],
)
def test_error_envelopes(
    body: dict[str, Any], etype: str, code: str | None, http: int | None, rate: bool
) -> None:
    pb = parse_body(json.dumps(body))
    assert (pb.error_type, pb.error_code, pb.error_http_status) == (etype, code, http)
    assert pb.usage is None and pb.terminal_seen is True
    assert is_rate_limit_error(pb.error_type, pb.error_code, pb.error_http_status) is rate


def test_anthropic_envelope_request_id() -> None:
    body = (
        '{"type":"error","error":{"type":"authentication_error","message":"x"},'
        '"request_id":"req_9"}'
    )
    pb = parse_body(body, provider="anthropic", api="messages")
    assert pb.provider_request_id == "req_9" and pb.error_type == "authentication_error"


def test_retry_delay_forms() -> None:
    from sidecar.parse.providers.errors import parse_duration_secs

    assert parse_duration_secs("47s") == 47.0
    assert parse_duration_secs("38.601s") == pytest.approx(38.601)
    assert parse_duration_secs({"seconds": 2, "nanos": 500_000_000}) == 2.5
    assert parse_duration_secs("soon") is None
    assert parse_duration_secs(None) is None


_PLAIN_COUNT = st.integers(min_value=0, max_value=1 << 53)


@settings(max_examples=300, deadline=None)
@given(
    prompt=_PLAIN_COUNT,
    cached=st.none() | _PLAIN_COUNT | st.sampled_from([0, 1, 5]),
    write=st.none() | _PLAIN_COUNT | st.sampled_from([0, 1, 5]),
    completion=_PLAIN_COUNT | st.sampled_from([0, 3]),
    reasoning=st.none() | _PLAIN_COUNT | st.sampled_from([0, 2, 4]),
)
def test_plain_usage_is_the_general_usage_clamped(
    prompt: int, cached: int | None, write: int | None, completion: int, reasoning: int | None
) -> None:
    """`openai_chat._plain_usage` (the chat fast paths' usage, built positionally and clamped
    inline) is the `Usage` of its counts by keyword, clamped by `subset_clamped`."""
    from sidecar.parse.providers import openai_chat

    want = subset_clamped(
        Usage(
            input_tokens=prompt,
            cached_input_tokens=cached or 0,
            cache_write_input_tokens=write or 0,
            output_tokens=completion,
            reasoning_tokens=reasoning or 0,
        )
    )
    assert openai_chat._plain_usage(prompt, cached, write, completion, reasoning) == want


def test_usage_and_parsed_body_field_order_the_positional_calls_rely_on() -> None:
    """The hot paths build `Usage` positionally (openai_chat, anthropic, gemini) and a
    stream's `ParsedBody` from (provider, api): their fields must stay in this order."""
    import dataclasses

    from sidecar.types import ParsedBody, stream_parsed

    assert [f.name for f in dataclasses.fields(Usage)][:6] == [
        "input_tokens",
        "cached_input_tokens",
        "cache_write_input_tokens",
        "cache_write_1h_input_tokens",
        "output_tokens",
        "reasoning_tokens",
    ]
    for truncated in (False, True):
        want = ParsedBody(provider="openai", api="responses", truncated=truncated, is_stream=True)
        assert stream_parsed("openai", "responses", truncated) == want
    a, b = stream_parsed("x", "y", False), stream_parsed("x", "y", False)
    assert a.output_text is not b.output_text and a.billing_parts is not b.billing_parts


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=-5, max_value=1 << 70), min_size=6, max_size=6))
def test_subset_clamped_is_min_of_each_subset(counts: list[int]) -> None:
    """`subset_clamped` writes `min` out: the same fields as the builtin gives them."""
    u = Usage(*counts)
    want_cached = min(u.cached_input_tokens, u.input_tokens)
    want_write = min(u.cache_write_input_tokens, u.input_tokens - want_cached)
    want_1h = min(u.cache_write_1h_input_tokens, want_write)
    want_reasoning = min(u.reasoning_tokens, u.output_tokens)
    got = subset_clamped(u)
    assert got is u
    assert (
        got.input_tokens,
        got.cached_input_tokens,
        got.cache_write_input_tokens,
        got.cache_write_1h_input_tokens,
        got.output_tokens,
        got.reasoning_tokens,
    ) == (counts[0], want_cached, want_write, want_1h, counts[4], want_reasoning)
