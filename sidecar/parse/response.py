"""A joined request's response -> `ParsedBody` (pure).

Picks the provider and API (the source's fixed provider, else the access record's path and
upstream host, else the body itself), then hands the body to the provider parsers. A request
whose body was not in the body log may still carry its response in the access line
(`response_body`, or a bare `usage` object): that is parsed the same way.
"""

from __future__ import annotations

import orjson

from sidecar.parse.detect import detect, model_from_path
from sidecar.parse.providers import parse_body
from sidecar.types import Completed, ParsedBody


def parse_completed(c: Completed, *, provider: str | None, want_text: bool = False) -> ParsedBody:
    a = c.access
    api: str | None = None
    if a is not None:
        det_provider, api = detect(a.path, a.upstream_host)
        if provider is None:
            provider = det_provider
    body = c.body
    if not body and a is not None:
        if a.response_body:
            body = a.response_body
        elif a.usage is not None:
            body = orjson.dumps({"usage": a.usage}).decode()
    if body:
        parsed = parse_body(
            body,
            provider=provider,
            api=api,
            content_type=c.content_type,
            want_text=want_text,
            truncated=c.body_truncated,
        )
    else:
        parsed = ParsedBody(provider=provider, api=api)
    if parsed.provider is None:
        parsed.provider = provider
    if parsed.api is None:
        parsed.api = api
    if not parsed.is_stream:
        ct = c.content_type or ""
        if "event-stream" in ct or (a is not None and a.stream):
            parsed.is_stream = True
    if parsed.model is None and a is not None:
        parsed.model = a.model or model_from_path(a.path)
    return parsed
