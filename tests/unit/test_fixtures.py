"""Every recorded fixture in tests/fixtures/recorded parsed against the usage in its `.source.txt`.

The expected numbers below were copied by hand from each fixture's `.source.txt` (usage summary
and notes) and normalised per DESIGN.md section 4: input includes cache reads and writes, output
includes reasoning.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from sidecar.parse.detect import detect, model_from_path
from sidecar.parse.providers import parse_body

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "recorded"


@dataclass(frozen=True)
class Expect:
    provider: str
    api: str | None
    model: str | None
    usage: tuple[int, int, int, int, int] | None  # input, cached, cache_write, output, reasoning
    finish_reason: str | None
    terminal: bool = True
    request_id: str | None = None
    service_tier: str | None = None
    error_type: str | None = None
    error_code: str | None = None
    error_http_status: int | None = None
    reasoning_hint: bool = False
    url: str | None = None  # request URL from the source.txt (for detect())


CASES: dict[str, Expect] = {
    # message_start {input 4, cache_creation 0, cache_read 1165}, message_delta {output 221}
    "anthropic_cache_read_1.sse": Expect(
        "anthropic",
        "messages",
        "claude-3-5-sonnet-20240620",
        (4 + 1165, 1165, 0, 221, 0),
        "end_turn",
        request_id="msg_01XQRA3bs4SB4yTBMwD3dbUi",
        url="https://api.anthropic.com/v1/messages",
    ),
    # message_start {input 4, cache_creation 1165, cache_read 0}, message_delta {output 201}
    "anthropic_cache_write_1.sse": Expect(
        "anthropic",
        "messages",
        "claude-3-5-sonnet-20240620",
        (4 + 1165, 0, 1165, 201, 0),
        "end_turn",
        request_id="msg_017FfRkh9PCC8YbjnhDMrPuK",
        url="https://api.anthropic.com/v1/messages",
    ),
    # final message_delta {input 10, cache 0/0, output 4}; service_tier standard
    "anthropic_stream_1.sse": Expect(
        "anthropic",
        "messages",
        "claude-haiku-4-5-20251001",
        (10, 0, 0, 4, 0),
        "end_turn",
        request_id="msg_01T8kTq7cYyYJeQ5DxcVUc6D",
        service_tier="standard",
        url="https://api.anthropic.com/v1/messages",
    ),
    # no include_usage: no usage anywhere; finish stop, then [DONE]
    "azure_chat_nousage_1.sse": Expect(
        "azure",
        "chat.completions",
        "gpt-4o-mini-2024-07-18",
        None,
        "stop",
        request_id="chatcmpl-CYljbWrmFtdLB60LvT3bgBwXiIdDo",
        url="https://dummy.openai.azure.com/openai/deployments/gpt-4o-mini/chat/completions"
        "?api-version=2024-10-21",
    ),
    # {"completion_tokens": 12, "prompt_tokens": 15, cached 0, reasoning 0}; first chunk model ""
    "azure_chat_usage_1.sse": Expect(
        "azure",
        "chat.completions",
        "gpt-5-mini-2025-08-07",
        (15, 0, 0, 12, 0),
        "stop",
        request_id="chatcmpl-D2TazvwcOFuGdLjrtBVM6DpKm1VA8",
        reasoning_hint=True,  # gpt-5 family
        url="https://dummy.openai.azure.com/openai/v1/chat/completions",
    ),
    # response.completed usage {input 16, cached 0, output 11, reasoning 0}
    "azure_responses_usage_1.sse": Expect(
        "azure",
        "responses",
        "gpt-4o-mini",
        (16, 0, 0, 11, 0),
        "completed",
        request_id="resp_0ef4c09315bcd6d800690c2178339c819086d42064c371fd62",
        service_tier="default",
        url="https://dummy.openai.azure.com/openai/responses?api-version=2025-03-01-preview",
    ),
    # HTTP 400 google.rpc envelope, no SSE framing
    "gemini_error_400_1.sse": Expect(
        "gemini",
        None,
        None,
        None,
        None,
        error_type="INVALID_ARGUMENT",
        error_code="400",
        error_http_status=400,
        url="https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash"
        ":streamGenerateContent?alt=sse",
    ),
    # last usageMetadata {prompt 13, candidates 8} (earlier snapshots said prompt 15)
    "gemini_stream_1.sse": Expect(
        "gemini",
        "generate_content",
        "gemini-2.0-flash-exp",
        (13, 0, 0, 8, 0),
        "STOP",
        request_id="w1peaMz6INOvnvgPgYfPiQY",
        url="https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash-exp"
        ":streamGenerateContent?alt=sse",
    ),
    # element[2] {prompt 11, candidates 2, thoughts 291, serviceTier standard}
    "gemini_stream_jsonarray_1.json": Expect(
        "gemini",
        "generate_content",
        "gemini-3.6-flash",
        (11, 0, 0, 2 + 291, 291),
        "STOP",
        request_id="IopyaseNCL-s-8YP7urOoAY",
        service_tier="standard",
        reasoning_hint=True,
        url="https://generativelanguage.googleapis.com/v1beta/models/gemini-flash-latest"
        ":streamGenerateContent",
    ),
    "openai_chat_nousage_1.sse": Expect(
        "openai",
        "chat.completions",
        "gpt-3.5-turbo-0125",
        None,
        "stop",
        request_id="chatcmpl-9AGW3t9akkLW9f5f93B7mOhiqhNMC",
        url="https://api.openai.com/v1/chat/completions",
    ),
    # {"prompt_tokens": 53, "completion_tokens": 15, cached 0, reasoning 0}
    "openai_chat_usage_1.sse": Expect(
        "openai",
        "chat.completions",
        "gpt-4o-mini-2024-07-18",
        (53, 0, 0, 15, 0),
        "tool_calls",
        request_id="chatcmpl-Dx0XpqH8w09uBXwq1zFGYdETjtnEl",
        service_tier="default",
        url="https://api.openai.com/v1/chat/completions",
    ),
    # {"prompt_tokens": 9, "completion_tokens": 2, reasoning 0}, no usage key on content chunks
    "openai_chat_usage_2.sse": Expect(
        "openai",
        "chat.completions",
        "gpt-4o-2024-08-06",
        (9, 0, 0, 2, 0),
        "stop",
        request_id="chatcmpl-ABfw5EzoqmfXjnnsXY7Yd8OC6tb3c",
        url="https://api.openai.com/v1/chat/completions",
    ),
    # {input 53, cached 0, output 469, reasoning 448}, service_tier flex on response.completed
    "openai_responses_reasoning_1.sse": Expect(
        "openai",
        "responses",
        "gpt-5-2025-08-07",
        (53, 0, 0, 469, 448),
        "completed",
        request_id="resp_0050471a34b36ae60068c97b94a480819587a9d70cf2979b33",
        service_tier="flex",
        reasoning_hint=True,
        url="https://api.openai.com/v1/responses",
    ),
    # {input 16, cached 0, output 11, reasoning 0}; created says "auto", completed "default"
    "openai_responses_usage_1.sse": Expect(
        "openai",
        "responses",
        "gpt-4o-2024-08-06",
        (16, 0, 0, 11, 0),
        "completed",
        request_id="resp_0360bd45725b0a010068f966a4c4a881959717ba17b93477ef",
        service_tier="default",
        url="https://api.openai.com/v1/responses",
    ),
    # error chunk {"code":400} carrying usage {prompt 43, completion 10, reasoning 11}, then
    # [DONE]. reasoning 11 > completion 10 is clamped to 10 (reasoning is a subset of output).
    "openrouter_chat_error_midstream_1.sse": Expect(
        "other",
        "chat.completions",
        "minimax/minimax-m2:free",
        (43, 0, 0, 10, 10),
        "length",
        request_id="gen-1762179802-UN8pkJI4AGZvryk0kFnb",
        error_type="error",
        error_code="400",
        error_http_status=400,
        reasoning_hint=True,
        url="https://openrouter.ai/api/v1/chat/completions",
    ),
    # {prompt 5, candidates 1, thoughts 100, trafficType ON_DEMAND_FLEX}
    "vertex_stream_1.sse": Expect(
        "vertex",
        "generate_content",
        "gemini-3-flash-preview",
        (5, 0, 0, 1 + 100, 100),
        "STOP",
        request_id="a9--aa6MOKL4vdIPz7X2iQ4",
        service_tier="flex",
        reasoning_hint=True,
        url="https://aiplatform.googleapis.com/v1beta1/projects/pydantic-ai/locations/global"
        "/publishers/google/models/gemini-3-flash-preview:streamGenerateContent?alt=sse",
    ),
}


def load(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def usage_tuple(pb) -> tuple[int, int, int, int, int] | None:  # type: ignore[no-untyped-def]
    u = pb.usage
    if u is None:
        return None
    return (
        u.input_tokens,
        u.cached_input_tokens,
        u.cache_write_input_tokens,
        u.output_tokens,
        u.reasoning_tokens,
    )


def hints(expect: Expect) -> tuple[str | None, str | None]:
    assert expect.url is not None
    host = expect.url.split("://", 1)[1].split("/", 1)[0]
    path = "/" + expect.url.split("://", 1)[1].split("/", 1)[1]
    return detect(path, host)


def test_every_fixture_has_a_case() -> None:
    bodies = {p.name for p in FIXTURES.iterdir() if p.suffix in (".sse", ".json")}
    assert bodies == set(CASES)
    for name in bodies:
        assert (FIXTURES / (name.rsplit(".", 1)[0] + ".source.txt")).is_file()


def check(pb, expect: Expect, *, from_body: bool) -> None:  # type: ignore[no-untyped-def]
    assert usage_tuple(pb) == expect.usage
    assert pb.model == expect.model
    assert pb.finish_reason == expect.finish_reason
    assert pb.terminal_seen is expect.terminal
    assert pb.provider_request_id == expect.request_id
    assert pb.service_tier == expect.service_tier
    assert pb.error_type == expect.error_type
    assert pb.error_code == expect.error_code
    assert pb.error_http_status == expect.error_http_status
    assert pb.reasoning_model_hint is expect.reasoning_hint
    assert pb.malformed_events == 0
    assert pb.compressed is False
    assert pb.usage_partial is False
    assert pb.billing_parts == []
    if expect.api is not None:
        assert pb.api == expect.api
    if not from_body:
        assert pb.provider == expect.provider


@pytest.mark.parametrize("name", sorted(CASES))
def test_fixture_with_access_hints(name: str) -> None:
    expect = CASES[name]
    provider, api = hints(expect)
    assert provider == expect.provider
    pb = parse_body(load(name), provider=provider, api=api)
    check(pb, expect, from_body=False)


@pytest.mark.parametrize("name", sorted(CASES))
def test_fixture_detected_from_body(name: str) -> None:
    expect = CASES[name]
    pb = parse_body(load(name))
    check(pb, expect, from_body=True)
    # OpenRouter is OpenAI-shaped: without the host, the body can only say "openai". Azure's
    # Responses body carries only `"content_filters": null`, which is no Azure evidence (a
    # DeepSeek body has it too): only the host tells.
    body_only = "openai" if expect.provider == "other" else expect.provider
    if name == "azure_responses_usage_1.sse":
        body_only = "openai"
    assert pb.provider == body_only


@pytest.mark.parametrize("name", sorted(CASES))
def test_fixture_with_text_gives_same_numbers(name: str) -> None:
    expect = CASES[name]
    pb = parse_body(load(name), want_text=True)
    check(pb, expect, from_body=True)
    if expect.usage is not None and expect.usage[3] > 0:
        assert "".join(pb.output_text)


def test_fixture_texts() -> None:
    def text(name: str) -> str:
        return "".join(parse_body(load(name), want_text=True).output_text)

    assert text("openai_chat_nousage_1.sse").startswith("Why did the developer break up")
    assert text("openai_chat_usage_1.sse") == 'get_capital{"country":"UK"}'
    assert text("azure_chat_usage_1.sse") == "4242"
    assert text("openai_responses_usage_1.sse") == "4200 + 42 equals 4242."
    assert text("openai_responses_reasoning_1.sse") == 'final_result{"result":6666}'
    assert text("anthropic_stream_1.sse") == "Hello"
    assert text("gemini_stream_1.sse") == "The capital of France is Paris.\n"
    assert text("gemini_stream_jsonarray_1.json").endswith("Scoop")
    assert text("vertex_stream_1.sse") == "OK"
    assert text("gemini_error_400_1.sse") == ""


def test_model_from_gemini_and_vertex_paths() -> None:
    for name in ("gemini_stream_1.sse", "vertex_stream_1.sse"):
        url = CASES[name].url
        assert url is not None
        assert model_from_path(url.split("://", 1)[1].split("/", 1)[1]) == CASES[name].model


def test_streams_are_streams() -> None:
    for name in CASES:
        pb = parse_body(load(name))
        assert pb.is_stream is (name != "gemini_error_400_1.sse"), name
    err = parse_body(load("gemini_error_400_1.sse"), content_type="text/event-stream")
    assert err.is_stream is True
