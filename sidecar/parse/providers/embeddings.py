"""Embeddings responses (OpenAI / Azure `/embeddings`; Gemini `embedContent` has no usage).

`{"object": "list", "data": [...], "model": ..., "usage": {"prompt_tokens": N, "total_tokens": N}}`:
input tokens only. Some OpenAI-compatible servers name the count `input_tokens`.
"""

from __future__ import annotations

from typing import Any

from sidecar.parse.providers._common import Counts, as_dict, as_str
from sidecar.types import ParsedBody, Usage


def is_embeddings(obj: dict[str, Any]) -> bool:
    """Whether a decoded body has the embeddings-list shape."""
    data = obj.get("data")
    if obj.get("object") == "list" and type(data) is list:
        return (
            not data
            or as_dict(data[0]).get("object") == "embedding"
            or "embedding" in as_dict(data[0])
        )
    return "embedding" in obj or "embeddings" in obj


def parse_json(pb: ParsedBody, obj: dict[str, Any]) -> None:
    """Fill `pb` from an embeddings response."""
    pb.terminal_seen = True
    pb.model = as_str(obj.get("model"))
    u = obj.get("usage")
    if type(u) is dict:
        n = Counts()
        tokens = n(u.get("prompt_tokens")) or n(u.get("input_tokens"))
        pb.usage = Usage(input_tokens=tokens, invalid=n.invalid)
