"""Provider and API detection from the access record and from the body."""

from __future__ import annotations

import pytest

from sidecar.parse.detect import (
    deployment_from_path,
    detect,
    detect_from_body,
    model_from_path,
    provider_from_host,
)


@pytest.mark.parametrize(
    ("path", "host", "expected"),
    [
        ("/v1/chat/completions", "api.openai.com", ("openai", "chat.completions")),
        ("/v1/responses", "api.openai.com", ("openai", "responses")),
        ("/v1/embeddings", "api.openai.com:443", ("openai", "embeddings")),
        ("/v1/messages", "api.anthropic.com", ("anthropic", "messages")),
        ("/v1/messages", None, ("anthropic", "messages")),
        (
            "/openai/deployments/my-gpt/chat/completions?api-version=2024-10-21",
            "res.openai.azure.com",
            ("azure", "chat.completions"),
        ),
        (
            "/openai/deployments/my-gpt/chat/completions?api-version=2024-10-21",
            "10.0.0.7:443",
            ("azure", "chat.completions"),
        ),
        ("/openai/v1/chat/completions", None, ("azure", "chat.completions")),
        ("/openai/responses?api-version=2025-03-01-preview", None, ("azure", "responses")),
        ("/openai/deployments/emb/embeddings", "x.openai.azure.com", ("azure", "embeddings")),
        (
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
            "generativelanguage.googleapis.com",
            ("gemini", "generate_content"),
        ),
        ("/v1beta/models/gemini-2.5-flash:generateContent", None, ("gemini", "generate_content")),
        ("/v1beta/models/text-embedding-004:embedContent", None, ("gemini", "embeddings")),
        (
            "/v1/projects/p/locations/us-central1/publishers/google/models/gemini-2.5-pro"
            ":streamGenerateContent",
            "us-central1-aiplatform.googleapis.com",
            ("vertex", "generate_content"),
        ),
        (
            "/v1/projects/p/locations/global/publishers/anthropic/models/claude-x:streamRawPredict",
            None,
            ("vertex", "messages"),
        ),
        ("/api/v1/chat/completions", "openrouter.ai", ("other", "chat.completions")),
        ("/v1/chat/completions", "127.0.0.1:8000", (None, "chat.completions")),
        ("/v1/chat/completions", None, (None, "chat.completions")),
        ("https://api.openai.com/v1/responses", None, ("openai", "responses")),
        ("/healthz", "api.openai.com", ("openai", None)),
        (None, None, (None, None)),
    ],
)
def test_detect(
    path: str | None, host: str | None, expected: tuple[str | None, str | None]
) -> None:
    assert detect(path, host) == expected


@pytest.mark.parametrize(
    ("host", "provider"),
    [
        ("API.OPENAI.COM", "openai"),
        ("myres.cognitiveservices.azure.com", "azure"),
        ("aiplatform.googleapis.com", "vertex"),
        ("europe-west4-aiplatform.googleapis.com", "vertex"),
        ("[::1]:8080", None),
        ("192.168.1.2", None),
        ("localhost", None),
        ("", None),
        ("api.groq.com", "other"),
    ],
)
def test_provider_from_host(host: str, provider: str | None) -> None:
    assert provider_from_host(host) == provider


def test_model_and_deployment_from_path() -> None:
    assert model_from_path("/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse") == (
        "gemini-2.0-flash"
    )
    vertex = "/v1/projects/p/locations/l/publishers/google/models/gemini-3-pro:generateContent"
    assert model_from_path(vertex) == "gemini-3-pro"
    assert model_from_path("/v1/models/tunedModels%2Fx:generateContent") == "tunedModels/x"
    assert model_from_path("/v1/chat/completions") is None
    assert model_from_path(None) is None
    azure = "/openai/deployments/my-4o/chat/completions?api-version=1"
    assert deployment_from_path(azure) == "my-4o"
    assert deployment_from_path("/v1/chat/completions") is None


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            'data: {"object":"chat.completion.chunk","choices":[]}\n\n',
            ("openai", "chat.completions"),
        ),
        (
            'data: {"choices":[],"model":"","prompt_filter_results":[{}]}\n\n',
            ("azure", "chat.completions"),
        ),
        ('event: message_start\ndata: {"type":"message_start"}\n\n', ("anthropic", "messages")),
        ('data: {"type": "message_start", "message": {}}\n\n', ("anthropic", "messages")),
        ('event: response.created\ndata: {"type":"response.created"}\n\n', ("openai", "responses")),
        (  # a null key is no Azure evidence (a DeepSeek Responses body has it too)
            'event: response.created\ndata: {"response":{"content_filters":null}}\n\n',
            ("openai", "responses"),
        ),
        (
            'event: response.created\ndata: {"response":{"content_filters":[{"blocked":false}]}}'
            "\n\n",
            ("azure", "responses"),
        ),
        (  # Azure content chunk: per-choice filter results that hold something
            'data: {"object":"chat.completion.chunk","choices":[{"content_filter_results":'
            '{"hate":{"filtered":false}}}]}\n\n',
            ("azure", "chat.completions"),
        ),
        (  # an empty filter-result object is no evidence either
            'data: {"object":"chat.completion.chunk","choices":[{"content_filter_results":{}}]}'
            "\n\n",
            ("openai", "chat.completions"),
        ),
        ('data: {"candidates": [], "usageMetadata": {}}\r\n\r\n', ("gemini", "generate_content")),
        (
            'data: {"candidates": [], "usageMetadata": {"trafficType": "ON_DEMAND"}}\r\n\r\n',
            ("vertex", "generate_content"),
        ),
        ('[{\n  "candidates": []\n}\n]', ("gemini", "generate_content")),
        ('{\n  "object": "chat.completion",\n  "choices": []\n}', ("openai", "chat.completions")),
        ('{"object":"list","data":[{"object":"embedding"}]}', ("openai", "embeddings")),
        ('{"type":"error","error":{"type":"overloaded_error"}}', ("anthropic", None)),
        ('{"error": {"code": 429, "status": "RESOURCE_EXHAUSTED"}}', ("gemini", None)),
        ('{"error":{"message":"x","type":"invalid_request_error"}}', (None, None)),
        ("", (None, None)),
        ("<html>Bad Gateway</html>", (None, None)),
    ],
)
def test_detect_from_body(body: str, expected: tuple[str | None, str | None]) -> None:
    assert detect_from_body(body) == expected


def test_detect_from_body_looks_past_a_long_head() -> None:
    body = '{"choices":[{"message":{"content":"' + "x" * 5000 + '"}}],"object":"chat.completion"}'
    assert detect_from_body(body) == ("openai", "chat.completions")
