"""Access-log lines -> `AccessRecord` (pure; one function per preset).

Presets map each proxy's own names onto the canonical fields of DESIGN.md section 3:
- `nginx_json`: the `log_format llm_json` shipped in examples/nginx/nginx.conf. Every
  `resp_<name>` key is the upstream response header `<name>` with `_` turned into `-`.
- `caddy`: Caddy's JSON access log (`request.*`, `resp_headers` with list values, `duration` in s).
- `generic`: a mapping in config from canonical names to dotted paths in the line.

The raw API key is hashed here, at once, by the `hash_key` callable the pipeline passes in; it
never leaves this module. Empty strings and nginx's `-` mean "absent".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from sidecar.errors import ParseError
from sidecar.types import AccessRecord

Hasher = Callable[[str], str]

_ABSENT = ("", "-")
_RESP_NAMES: dict[str, str] = {}  # log key -> header name ("" when not a `resp_` key)


def _s(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, str):
        return None if v in _ABSENT else v
    if isinstance(v, list):  # caddy header values
        return _s(v[-1]) if v else None
    return str(v)


def _num(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        v = v.strip()
        if "," in v:  # nginx lists one value per upstream attempt: "0.120, 0.340"
            v = v.rsplit(",", 1)[1].strip()
        try:
            return float(v)
        except ValueError:
            return None
    return None


def _int(v: Any) -> int | None:
    n = _num(v)
    return None if n is None else int(n)


def _bool(v: Any) -> bool | None:
    if isinstance(v, bool):
        return v
    if isinstance(v, str):
        low = v.strip().lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
    if isinstance(v, int):
        return bool(v)
    return None


def _strip_bearer(key: str) -> str:
    low = key[:7].lower()
    if low.startswith("bearer "):
        return key[7:].strip()
    if low.startswith("basic "):
        return key[6:].strip()
    return key.strip()


def _loads(line: bytes) -> dict[str, Any]:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        # nginx escape=json passes bytes >= 0x80 through raw: decode tolerantly and retry.
        try:
            obj = orjson.loads(line.decode("utf-8", "replace"))
        except orjson.JSONDecodeError as exc:
            raise ParseError("access_invalid_json", str(exc)) from exc
    if not isinstance(obj, dict):
        raise ParseError("access_not_an_object", type(obj).__name__)
    return obj


def _finish(rec: AccessRecord, raw_key: str | None, hasher: Hasher | None) -> AccessRecord:
    if raw_key:
        rec.api_key_id = hasher(_strip_bearer(raw_key)) if hasher else None
    return rec


def parse_nginx_json(line: bytes, hasher: Hasher | None = None) -> AccessRecord:
    d = _loads(line)
    rid = _s(d.get("request_id"))
    if not rid:
        raise ParseError("access_missing_request_id")
    headers: dict[str, str] = {}
    names = _RESP_NAMES
    for k, v in d.items():
        name = names.get(k)
        if name is None:
            name = k[5:].replace("_", "-") if k.startswith("resp_") else ""
            if len(names) < 4096:  # bounded: keys are the log_format's, a fixed set
                names[k] = name
        if name and v:
            sv = v if type(v) is str else _s(v)
            if sv is not None and sv != "-":
                headers[name] = sv
    extra = d.get("response_headers")
    if isinstance(extra, dict):
        for k, v in extra.items():
            sv = _s(v)
            if sv is not None:
                headers[str(k).lower()] = sv
    req_time = _num(d.get("request_time"))
    ts = _num(d.get("ts"))
    rec = AccessRecord(
        request_id=rid,
        time=ts,
        method=_s(d.get("method")),
        path=_s(d.get("uri")) or _s(d.get("path")),
        status=_int(d.get("status")),
        duration_ms=round(req_time * 1000.0, 3) if req_time is not None else None,
        ttft_ms=_num(d.get("ttft_ms")),
        upstream_host=_s(d.get("upstream_host")),
        stream=_bool(d.get("stream")),
        model=_s(d.get("model")),
        user=_s(d.get("user")),
        tenant=_s(d.get("tenant")),
        conversation_id=_s(d.get("conversation_id")),
        client_request_id=_s(d.get("client_request_id")),
        attempt=_int(d.get("req_x_stainless_retry_count") or d.get("attempt")),
        request_completion=d.get("request_completion")
        if isinstance(d.get("request_completion"), str)
        else None,
        response_headers=headers,
        response_body=_s(d.get("response_body")),
        usage=d.get("usage") if isinstance(d.get("usage"), dict) else None,
        request_body=_s(d.get("request_body")),
    )
    return _finish(rec, _s(d.get("api_key")), hasher)


def parse_caddy(line: bytes, hasher: Hasher | None = None) -> AccessRecord:
    d = _loads(line)
    req = d.get("request") if isinstance(d.get("request"), dict) else {}
    req_headers = {str(k).lower(): v for k, v in (req.get("headers") or {}).items()}
    resp_headers_raw = d.get("resp_headers") or {}
    headers = {str(k).lower(): s for k, v in resp_headers_raw.items() if (s := _s(v)) is not None}
    # The proxy's own id first (a logged `{http.request.uuid}`, or the response header the proxy
    # set); the client's X-Request-ID only when the line has nothing else: a client must not be
    # able to choose the id its requests are accounted under (docs/architecture.md, "Join").
    rid = (
        _s(d.get("request_id"))
        or _s(d.get("uuid"))
        or headers.get("x-proxy-request-id")
        or headers.get("x-request-id")
        or _s(req_headers.get("x-request-id"))
    )
    if not rid:
        raise ParseError("access_missing_request_id")
    dur = _num(d.get("duration"))
    auth = _s(req_headers.get("authorization")) or _s(req_headers.get("x-api-key"))
    rec = AccessRecord(
        request_id=rid,
        time=_num(d.get("ts")),
        method=_s(req.get("method")),
        path=_s(req.get("uri")),
        status=_int(d.get("status")),
        duration_ms=round(dur * 1000.0, 3) if dur is not None else None,
        upstream_host=_s(d.get("upstream_host")) or _s(req.get("host")),
        user=_s(d.get("user")) or _s(req_headers.get("x-llm-user")),
        tenant=_s(d.get("tenant")) or _s(req_headers.get("x-llm-tenant")),
        attempt=_int(_s(req_headers.get("x-stainless-retry-count"))),
        response_headers=headers,
    )
    return _finish(rec, auth, hasher)


def _dig(d: Mapping[str, Any], dotted: str) -> Any:
    cur: Any = d
    for part in dotted.split("."):
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(part)
    return cur


def make_generic(
    fields: Mapping[str, str], headers_path: str | None
) -> Callable[[bytes, Hasher | None], AccessRecord]:
    """A parser for the `generic` preset: `fields` maps canonical names to dotted paths."""

    def parse(line: bytes, hasher: Hasher | None = None) -> AccessRecord:
        d = _loads(line)
        get = {name: _dig(d, path) for name, path in fields.items()}
        rid = _s(get.get("request_id"))
        if not rid:
            raise ParseError("access_missing_request_id")
        hdrs_raw = _dig(d, headers_path) if headers_path else None
        headers = {}
        if isinstance(hdrs_raw, Mapping):
            headers = {str(k).lower(): s for k, v in hdrs_raw.items() if (s := _s(v)) is not None}
        dur = _num(get.get("duration_ms"))
        rec = AccessRecord(
            request_id=rid,
            time=_num(get.get("time")),
            method=_s(get.get("method")),
            path=_s(get.get("path")),
            status=_int(get.get("status")),
            duration_ms=dur,
            upstream_host=_s(get.get("upstream_host")),
            stream=_bool(get.get("stream")),
            model=_s(get.get("model")),
            user=_s(get.get("user")),
            tenant=_s(get.get("tenant")),
            conversation_id=_s(get.get("conversation_id")),
            client_request_id=_s(get.get("client_request_id")),
            attempt=_int(get.get("attempt")),
            ttft_ms=_num(get.get("ttft_ms")),
            request_completion=rc if isinstance(rc := get.get("request_completion"), str) else None,
            response_headers=headers,
            response_body=_s(get.get("response_body")),
            usage=u if isinstance(u := get.get("usage"), dict) else None,
            request_body=_s(get.get("request_body")),
        )
        return _finish(rec, _s(get.get("api_key")), hasher)

    return parse


def parser_for(
    fmt_type: str, fields: Mapping[str, str] | None = None, headers_path: str | None = None
):
    """The parse function for a preset name."""
    if fmt_type == "nginx_json":
        return parse_nginx_json
    if fmt_type == "caddy":
        return parse_caddy
    if fmt_type == "generic":
        return make_generic(fields or {}, headers_path)
    raise ValueError(f"unknown access log format {fmt_type!r}")
