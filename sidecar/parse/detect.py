"""Which provider and API a request went to: from its access record, else from its body.

`detect(path, upstream_host)` reads the URL path and the upstream host of the access record;
`detect_from_body(body)` sniffs a response body when the record does not say;
`model_from_path` / `deployment_from_path` read the model (Gemini, Vertex) or the Azure deployment
named in the URL. Providers: openai, azure, anthropic, gemini, vertex, other. APIs:
chat.completions, responses, messages, generate_content, embeddings.
"""

from __future__ import annotations

import functools
from urllib.parse import unquote

from sidecar.parse.sse import iter_events, peek_type

CHAT = "chat.completions"
RESPONSES = "responses"
MESSAGES = "messages"
GENERATE = "generate_content"
EMBEDDINGS = "embeddings"

_HOSTS = {
    "api.openai.com": "openai",
    "api.anthropic.com": "anthropic",
    "generativelanguage.googleapis.com": "gemini",
}
_HOST_SUFFIXES = (
    (".openai.azure.com", "azure"),
    (".cognitiveservices.azure.com", "azure"),
    (".services.ai.azure.com", "azure"),
    ("aiplatform.googleapis.com", "vertex"),
)


def _split_url(path: str) -> tuple[str | None, str]:
    """(host from an absolute URL or None, path without query)."""
    host = None
    if "://" in path[:12]:
        rest = path.split("://", 1)[1]
        host, _, path = rest.partition("/")
        path = "/" + path
    path = path.split("?", 1)[0].split("#", 1)[0]
    return host, path


def provider_from_host(host: str | None) -> str | None:
    """The provider of an upstream host name; "other" for an unknown name, None for an IP."""
    if not host:
        return None
    name = host.strip().lower()
    if name.startswith("["):  # [v6]:port
        return None
    name = name.rsplit(":", 1)[0] if name.count(":") == 1 else name
    name = name.rstrip(".")
    if not name:
        return None
    if name in _HOSTS:
        return _HOSTS[name]
    for suffix, provider in _HOST_SUFFIXES:
        if name.endswith(suffix):
            return provider
    if name.replace(".", "").isdigit() or ":" in name or name in ("localhost", "unix"):
        return None  # an address says nothing about the provider
    return "other"


def _api_from_path(path: str) -> str | None:
    p = path.rstrip("/")
    if p.endswith("/chat/completions"):
        return CHAT
    if (
        p.endswith("/embeddings")
        or p.endswith(":embedContent")
        or p.endswith(":batchEmbedContents")
    ):
        return EMBEDDINGS
    if p.endswith(":streamGenerateContent") or p.endswith(":generateContent"):
        return GENERATE
    if p.endswith(":rawPredict") or p.endswith(":streamRawPredict"):
        return MESSAGES if "/publishers/anthropic/" in p else None
    if p.endswith("/messages"):
        return MESSAGES
    if p.endswith("/responses"):
        return RESPONSES
    return None


def _provider_from_path(path: str) -> str | None:
    if path.startswith("/openai/") or "/openai/deployments/" in path:
        return "azure"
    if "/projects/" in path and "/locations/" in path and "/publishers/" in path:
        return "vertex"
    if "/models/" in path and ":" in path.rsplit("/", 1)[-1]:
        return "gemini"  # /v1beta/models/<model>:<method>
    if path.endswith("/messages") and path.startswith("/v1/"):
        return "anthropic"
    return None


@functools.lru_cache(maxsize=1024)  # pure; a proxy has few distinct (path, upstream) pairs
def detect(path: str | None, upstream_host: str | None) -> tuple[str | None, str | None]:
    """(provider, api) of a request from its access record; None where it cannot tell.

    The host decides the provider when it is a known one; the path decides the API and, for a
    proxy whose upstream is an address, the provider where the path is unambiguous (Azure's
    `/openai/...`, Vertex's `/projects/.../publishers/...`, Gemini's `:generateContent`,
    `/v1/messages`). A generic `/v1/chat/completions` behind an address gives provider None,
    so that the body decides.
    """
    url_host, clean = _split_url(path or "")
    provider = provider_from_host(upstream_host)
    if provider in (None, "other") and url_host:
        provider = provider_from_host(url_host) or provider
    api = _api_from_path(clean) if clean else None
    if provider in (None, "other"):
        provider = _provider_from_path(clean) or provider
    return provider, api


def model_from_path(path: str | None) -> str | None:
    """The model named in a Gemini / Vertex path (`.../models/<model>:generateContent`)."""
    if not path:
        return None
    _, clean = _split_url(path)
    at = clean.rfind("/models/")
    if at < 0:
        return None
    model = clean[at + 8 :].split(":", 1)[0].split("/", 1)[0]
    return unquote(model) or None


def deployment_from_path(path: str | None) -> str | None:
    """The Azure deployment named in `/openai/deployments/<name>/...` (never the served model)."""
    if not path:
        return None
    _, clean = _split_url(path)
    at = clean.find("/deployments/")
    if at < 0:
        return None
    return unquote(clean[at + 13 :].split("/", 1)[0]) or None


def _compact(text: str) -> str:
    return text.replace(" ", "").replace("\n", "").replace("\r", "").replace("\t", "")


# Azure-specific evidence, in whitespace-free text: filter results that hold something. A key
# that is present but null or empty (`"content_filters": null` in a DeepSeek Responses body,
# `"content_filter_results":{}`) proves nothing.
_AZURE_MARKS = (
    '"prompt_filter_results":[{',
    '"content_filter_results":{"',
    '"content_filters":[{',
)


def azure_evidence(compact_text: str) -> bool:
    """Whether whitespace-free body text carries Azure's content-filter results."""
    return any(mark in compact_text for mark in _AZURE_MARKS)


def _sniff(text: str) -> tuple[str | None, str | None]:
    azure = azure_evidence(text)
    if '"type":"message_start"' in text or ('"type":"message"' in text and '"stop_reason"' in text):
        return "anthropic", MESSAGES
    if '"type":"response.' in text or '"object":"response"' in text:
        return ("azure" if azure else "openai"), RESPONSES
    if '"chat.completion' in text:
        return ("azure" if azure else "openai"), CHAT
    if '"usageMetadata"' in text or '"candidates"' in text or '"modelVersion"' in text:
        vertex = '"createTime"' in text or '"trafficType"' in text
        return ("vertex" if vertex else "gemini"), GENERATE
    if '"object":"list"' in text and '"embedding"' in text:
        return ("azure" if azure else "openai"), EMBEDDINGS
    if azure:
        return "azure", CHAT
    if '"type":"error"' in text and '"error":{' in text:
        return "anthropic", None
    if '"error":{' in text and '"status":"' in text and '"code":' in text:
        return "gemini", None
    return None, None


_ANTHROPIC_EVENTS = frozenset(
    {"message_start", "ping", "content_block_start", "content_block_delta", "message_delta"}
)


def _sniff_events(head: str) -> tuple[str | None, str | None]:
    """Decide from the first few SSE events of a stream (names and raw payloads only)."""
    for seen, (name, data) in enumerate(iter_events(head)):
        kind = name or peek_type(data)
        if kind in _ANTHROPIC_EVENTS:
            return "anthropic", MESSAGES
        azure = azure_evidence(_compact(data))
        if kind and kind.startswith("response."):
            return ("azure" if azure else "openai"), RESPONSES
        if "chat.completion" in data or azure:
            return ("azure" if azure else "openai"), CHAT
        if '"usageMetadata"' in data or '"candidates"' in data:
            vertex = '"createTime"' in data or '"trafficType"' in data
            return ("vertex" if vertex else "gemini"), GENERATE
        if seen >= 5:
            break
    return None, None


def detect_from_body(body: str) -> tuple[str | None, str | None]:
    """(provider, api) sniffed from a response body; (None, None) when it does not say.

    An SSE body is judged by its first events; otherwise (or when they say nothing) by marker
    keys in the first 4 KiB with whitespace removed (so padded and pretty-printed JSON match),
    then in the whole body.
    """
    if not body:
        return None, None
    head = body[:4096]
    if head.lstrip()[:1] not in ("{", "["):
        found = _sniff_events(head)
        if found != (None, None):
            return found
    found = _sniff(_compact(head))
    if found == (None, None) and len(body) > 4096:
        found = _sniff(_compact(body))
    return found
