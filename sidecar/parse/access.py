"""Access-log lines -> `AccessRecord` (pure; one function per preset).

Presets map each proxy's own names onto the canonical fields of DESIGN.md section 3:
- `nginx_json`: the `log_format llm_json` shipped in examples/nginx/nginx.conf. Every
  `resp_<name>` key is the upstream response header `<name>` with `_` turned into `-`.
- `caddy`: Caddy's JSON access log (`request.*`, `resp_headers` with list values, `duration` in s).
- `generic`: a mapping in config from canonical names to dotted paths in the line.

The raw API key (`Authorization`, `api-key`, `x-api-key`, `x-goog-api-key` or a `?key=` query
parameter) is hashed here, at once, by the `hash_key` callable the pipeline passes in; it never
leaves this module. Empty strings and nginx's `-` mean "absent". Every field is checked by type
and range in `parse/fields.py`: a bad optional field is nulled and named in `invalid_fields`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from itertools import compress
from operator import itemgetter
from typing import Any

import orjson

from sidecar import native
from sidecar.errors import ParseError
from sidecar.parse.fields import Fields, is_absent, request_id
from sidecar.types import AccessRecord

Hasher = Callable[[str], str]

_RESP_NAMES: dict[str, str] = {}  # log key -> header name ("" when not a `resp_` key)
_RESP_NAMES_MAX = 4096
_RESP_NAME_MAX_CHARS = 128  # a longer key is looked at every time, never kept
# Request headers that carry an API key, in the order they are looked at.
API_KEY_HEADERS = ("authorization", "api-key", "x-api-key", "x-goog-api-key")
_QUERY_KEY = re.compile(r"[?&]key=([^&#]+)")


def _strip_bearer(key: str) -> str:
    if key[:1] not in "bB":  # neither `Bearer ` nor `Basic ` (most logs hold the bare key)
        return key.strip()
    low = key[:7].lower()
    if low.startswith("bearer "):
        return key[7:].strip()
    if low.startswith("basic "):
        return key[6:].strip()
    return key.strip()


def _loads(line: bytes) -> tuple[dict[str, Any], bool]:
    """The line as an object -> (object, lossy). Invalid UTF-8 is replaced (`lossy`); numbers
    orjson refuses (`1e999`, `NaN`, `Infinity`) are read by the standard library instead and
    then refused field by field, so one bad value costs that field, not the line."""
    lossy = False
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        # nginx escape=json passes bytes >= 0x80 through raw: decode tolerantly and retry.
        text = line.decode("utf-8", "replace")
        lossy = "\ufffd" in text and b"\xef\xbf\xbd" not in line
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            try:
                obj = _no_surrogates(json.loads(text))
            except (ValueError, RecursionError):
                raise ParseError("access_invalid_json", str(exc)) from exc
    if not isinstance(obj, dict):
        raise ParseError("access_not_an_object", type(obj).__name__)
    return obj, lossy


def _no_surrogates(v: Any) -> Any:
    """The standard library decodes a lone `\\ud800` escape that orjson refuses; such a string
    cannot be hashed or written, so its surrogates become U+FFFD (only on this rare path)."""
    if type(v) is str:
        return v.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    if type(v) is dict:
        return {_no_surrogates(k): _no_surrogates(x) for k, x in v.items()}
    if type(v) is list:
        return [_no_surrogates(x) for x in v]
    return v


def api_key_from(headers: Mapping[str, Any], path: str | None, f: Fields) -> str | None:
    """The raw API key from request headers (lower-cased names) or a `?key=` query parameter."""
    for name in API_KEY_HEADERS:
        v = f.header(name, headers.get(name))
        if v:
            return v
    return query_key(path)


def query_key(path: str | None) -> str | None:
    """The raw API key of a `?key=` query parameter in `path`, if any."""
    if path and "key=" in path:
        m = _QUERY_KEY.search(path)
        if m:
            return m.group(1)
    return None


def redact_query_key(path: str | None) -> str | None:
    """The path with a `?key=` value cut out (it is an API key)."""
    if path and "key=" in path:
        return _QUERY_KEY.sub(lambda m: m.group(0)[:5] + "REDACTED", path)
    return path


def _finish(
    rec: AccessRecord, raw_key: str | None, hasher: Hasher | None, f: Fields | None, lossy: bool
) -> AccessRecord:
    """Hash the API key (`raw_key`, else a `?key=` in the path, cut out of it); note the
    invalid fields (`f`; None: there were none) and whether the line was lossy."""
    path = rec.path
    if raw_key is None:
        raw_key = query_key(path)
    if raw_key:
        key = _strip_bearer(raw_key)
        rec.api_key_id = hasher(key) if hasher and key else None
    rec.path = redact_query_key(path)
    if f is not None:
        rec.invalid_fields = f.invalid
    rec.lossy_utf8 = lossy
    return rec


def _completion(v: Any, f: Fields) -> str | None:
    if type(v) is str:
        return v  # "" is meaningful: nginx $request_completion of an unfinished request
    if v is not None:
        f.bad("request_completion")
    return None


def _resp_headers(d: dict[str, Any], f: Fields) -> dict[str, str]:
    """The response headers of an nginx line: every `resp_<name>` key is the header `<name>`
    (`_` -> `-`); an empty value or `-` is absent, a number is written as its text, any other
    type is counted as invalid (`Fields.header`). The later of two keys of one name wins."""
    headers: dict[str, str] = {}
    names = _RESP_NAMES
    for k, v in d.items():
        name = names.get(k)
        if name is None:
            name = k[5:].replace("_", "-") if k.startswith("resp_") else ""
            # Bounded: the keys are the log_format's, a fixed set; made-up keys are not kept.
            if len(names) < _RESP_NAMES_MAX and len(k) <= _RESP_NAME_MAX_CHARS:
                names[k] = name
        if name and v:
            sv = v if type(v) is str else f.header(name, v)
            if sv is not None and sv != "-":
                headers[name] = sv
    return headers


# The fields of an nginx line `parse_nginx_json` reads, in the order it reads them (the order
# `record_args` in _accessscan.c reads them in: its enum of places follows this tuple).
_NGINX_KEYS = (
    "request_id",
    "ts",
    "uri",
    "path",
    "status",
    "request_time",
    "ttft_ms",
    "stream",
    "req_x_stainless_retry_count",
    "attempt",
    "request_completion",
    "response_headers",
    "response_body",
    "usage",
    "request_body",
    # the plain text fields (each key is also the field's name), read together
    "method",
    "upstream_host",
    "model",
    "user",
    "tenant",
    "conversation_id",
    "client_request_id",
    "api_key",
)
_NFIRST = 15  # the fields before the plain text fields
_NGINX_TEXTS = _NGINX_KEYS[_NFIRST:]
_NFIELDS = len(_NGINX_KEYS)


_PLAIN_KEY = re.compile(r"[ !#-\[\]-~]*")  # printable ASCII but `"` and `\`: as is in a line


class _Layout:
    """What one list of line keys (in line order) needs, worked out once: a getter of the
    `resp_` keys' values and their header names (the pure path), and what each key is for the
    C twin (`slots`: its header name, its place in `_NGINX_KEYS`, or None; `raw`: the keys as
    they are written in a line, or None when one needs escaping or is not ASCII)."""

    __slots__ = ("keys", "names", "raw", "resp", "slots")

    def __init__(self, keys: tuple[str, ...]) -> None:
        self.keys = keys
        plain = all(_PLAIN_KEY.fullmatch(k) for k in keys)
        self.raw = tuple(k.encode("ascii") for k in keys) if plain else None
        resp = [k for k in keys if k.startswith("resp_") and len(k) > 5]  # `resp_`: no name
        self.names = tuple(k[5:].replace("_", "-") for k in resp)
        # For the C twin: each key's header name, its place in `_NGINX_KEYS`, or None.
        place = {k: i for i, k in enumerate(_NGINX_KEYS)}
        self.slots = tuple(
            k[5:].replace("_", "-") if k.startswith("resp_") and len(k) > 5 else place.get(k)
            for k in keys
        )
        # Fewer than two: itemgetter would not return a tuple; the general loop is as quick.
        # Two keys of one name (`resp_x_a`, `resp_x-a`): the general loop (a value it counts
        # as invalid may be overwritten by a later one here).
        plain = len(resp) > 1 and len(set(self.names)) == len(self.names)
        self.resp = itemgetter(*resp) if plain else None


_accessscan = native.load("sidecar.parse._accessscan")  # the C twin of _scan's pure path
NATIVE = _accessscan is not None  # which one the hot path uses (tests, `bench/`)
_LAYOUTS: dict[tuple[str, ...], _Layout] = {}
_LAYOUTS_MAX = 64  # distinct key lists kept (a log_format has one; made-up keys are not kept)
_LAYOUT_MAX_CHARS = 8192  # the keys of a layout kept, in characters all together
_last_layout = _Layout(())
_STR_ONLY = {str}


def _layout(d: dict[str, Any]) -> _Layout:
    """The layout of `d`'s keys: the previous line's (compared key by key, cheaper than
    hashing them), else from the bounded cache, else worked out."""
    global _last_layout
    keys = tuple(d)
    if keys == _last_layout.keys:
        return _last_layout
    lay = _LAYOUTS.get(keys)
    if lay is None:
        lay = _Layout(keys)
        if sum(map(len, keys)) > _LAYOUT_MAX_CHARS:
            return lay  # made-up keys: used for this line only
        if len(_LAYOUTS) >= _LAYOUTS_MAX:
            _LAYOUTS.clear()
        _LAYOUTS[keys] = lay
    _last_layout = lay
    return lay


def _scan(d: dict[str, Any], f: Fields) -> tuple[dict[str, str], tuple[Any, ...]]:
    """(`_resp_headers(d, f)`, `tuple(map(d.get, _NGINX_KEYS))`): in C in one pass when `d`
    has the previous line's layout (`_accessscan.c`; the headers by the general loop when a
    value is a number, another type or `-`), else through the layout cache (`_resp_headers_of`)."""
    if _accessscan is not None:
        lay = _last_layout
        both = _accessscan.scan(d, lay.keys, lay.slots, _NFIELDS)
        if both is not None:
            if both[0] is None:
                return _resp_headers(d, f), both[1]
            return both
    return _resp_headers_of(d, _layout(d), f), tuple(map(d.get, _NGINX_KEYS))


def _resp_headers_of(d: dict[str, Any], lay: _Layout, f: Fields) -> dict[str, str]:
    """`_resp_headers(d, f)` without a Python step per key when every present value is a
    string other than `-` (the common case: most are empty, i.e. absent); else that loop."""
    if lay.resp is None:
        return _resp_headers(d, f)
    values = lay.resp(d)
    headers = dict(compress(zip(lay.names, values, strict=True), values))
    kept = headers.values()
    if "-" in kept or not set(map(type, kept)) <= _STR_ONLY:
        return _resp_headers(d, f)  # a number, another type or a `-` (which keeps an earlier)
    return headers


def parse_nginx_json(line: bytes, hasher: Hasher | None = None) -> AccessRecord:
    both = None
    lossy = False
    if _accessscan is not None:
        # `_scan` of the line's object in C from the raw bytes when the line is the usual shape
        # (`scan_line`: the previous line's keys, flat, plain values; the same result as
        # orjson's), else None: `_loads` and `_scan` below.
        lay = _last_layout
        both = _accessscan.scan_line(line, lay.raw, lay.slots, _NFIELDS, orjson.loads)
    if both is not None:
        # Every field in its usual form: the record's arguments checked in C in one step, as
        # the steps below give them (`_accessscan.record_args`; no field invalid); else those
        # steps decide.
        checked = _accessscan.record_args(both[1], both[0])
        if checked is not None:
            args, key = checked
            return _finish(AccessRecord(*args), key, hasher, None, False)
    f = Fields()
    if both is None:
        d, lossy = _loads(line)
        both = _scan(d, f)
    headers, fields = both
    (
        rid,
        ts,
        uri,
        path,
        status,
        request_time,
        ttft_ms,
        stream,
        retry,
        attempt,
        completion,
        extra,
        response_body,
        usage,
        request_body,
    ) = fields[:_NFIRST]
    rid = request_id(rid, "access")
    extra = f.mapping("response_headers", extra)
    if extra:
        for k, v in extra.items():
            sv = f.header(k, v)
            if sv is not None:
                headers[str(k).lower()] = sv
    path = f.text("path", uri) or f.text("path", path)
    method, upstream_host, model, user, tenant, conversation, client_rid, key = f.text_values(
        fields[_NFIRST:], _NGINX_TEXTS
    )
    # Positional (in the order of AccessRecord's fields; a unit test checks it): matching 21
    # keywords costs more than the rest of this call.
    rec = AccessRecord(
        rid,
        f.time("ts", ts, "access"),
        method,
        path,
        f.status(status),
        f.duration_ms("duration_ms", request_time, 1000.0),
        f.duration_ms("ttft_ms", ttft_ms),
        upstream_host,
        f.flag("stream", stream),
        model,
        user,
        tenant,
        None,  # api_key_id: set by _finish
        conversation,
        client_rid,
        f.count("attempt", retry if not is_absent(retry) else attempt),
        _completion(completion, f),
        headers,
        f.text("response_body", response_body),
        f.mapping("usage", usage),
        f.text("request_body", request_body),
    )
    return _finish(rec, key, hasher, f, lossy)


def parse_caddy(line: bytes, hasher: Hasher | None = None) -> AccessRecord:
    d, lossy = _loads(line)
    f = Fields()
    req = f.mapping("request", d.get("request")) or {}
    req_headers_raw = f.mapping("request.headers", req.get("headers")) or {}
    req_headers = {str(k).lower(): v for k, v in req_headers_raw.items()}
    resp_headers_raw = f.mapping("resp_headers", d.get("resp_headers")) or {}
    headers = {
        str(k).lower(): s for k, v in resp_headers_raw.items() if (s := f.header(k, v)) is not None
    }
    rid_raw = d.get("request_id")
    if is_absent(rid_raw):
        rid_raw = d.get("uuid")
    # The proxy's own id first (a logged `{http.request.uuid}`, or the response header the proxy
    # set); the client's X-Request-ID only when the line has nothing else: a client must not be
    # able to choose the id its requests are accounted under (docs/architecture.md, "Join").
    if is_absent(rid_raw):
        rid_raw = headers.get("x-proxy-request-id")
    if is_absent(rid_raw):
        rid_raw = headers.get("x-request-id")
    if is_absent(rid_raw):
        rid_raw = f.header("x-request-id", req_headers.get("x-request-id"))
    rid = request_id(rid_raw, "access")
    path = f.text("path", req.get("uri"))
    rec = AccessRecord(
        request_id=rid,
        time=f.time("ts", d.get("ts"), "access"),
        method=f.text("method", req.get("method")),
        path=path,
        status=f.status(d.get("status")),
        duration_ms=f.duration_ms("duration_ms", d.get("duration"), 1000.0),
        upstream_host=f.text("upstream_host", d.get("upstream_host"))
        or f.text("upstream_host", req.get("host")),
        user=f.text("user", d.get("user")) or f.header("user", req_headers.get("x-llm-user")),
        tenant=f.text("tenant", d.get("tenant"))
        or f.header("tenant", req_headers.get("x-llm-tenant")),
        conversation_id=f.text("conversation_id", d.get("conversation_id"))
        or f.header("conversation_id", req_headers.get("x-llm-conversation-id")),
        client_request_id=f.text("client_request_id", d.get("client_request_id"))
        or f.header("client_request_id", req_headers.get("x-client-request-id")),
        attempt=f.count("attempt", f.header("attempt", req_headers.get("x-stainless-retry-count"))),
        response_headers=headers,
    )
    return _finish(rec, api_key_from(req_headers, path, f), hasher, f, lossy)


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
        d, lossy = _loads(line)
        get = {name: _dig(d, path) for name, path in fields.items()}
        rid = request_id(get.get("request_id"), "access")
        f = Fields()
        hdrs_raw = f.mapping("response_headers", _dig(d, headers_path)) if headers_path else None
        headers = {}
        if hdrs_raw:
            headers = {
                str(k).lower(): s for k, v in hdrs_raw.items() if (s := f.header(k, v)) is not None
            }
        if "duration_secs" in get:
            dur = f.duration_ms("duration_ms", get.get("duration_secs"), 1000.0)
        else:
            dur = f.duration_ms("duration_ms", get.get("duration_ms"))
        path = f.text("path", get.get("path"))
        rec = AccessRecord(
            request_id=rid,
            time=f.time("time", get.get("time"), "access"),
            method=f.text("method", get.get("method")),
            path=path,
            status=f.status(get.get("status")),
            duration_ms=dur,
            upstream_host=f.text("upstream_host", get.get("upstream_host")),
            stream=f.flag("stream", get.get("stream")),
            model=f.text("model", get.get("model")),
            user=f.text("user", get.get("user")),
            tenant=f.text("tenant", get.get("tenant")),
            conversation_id=f.text("conversation_id", get.get("conversation_id")),
            client_request_id=f.text("client_request_id", get.get("client_request_id")),
            attempt=f.count("attempt", get.get("attempt")),
            ttft_ms=f.duration_ms("ttft_ms", get.get("ttft_ms")),
            request_completion=_completion(get.get("request_completion"), f),
            response_headers=headers,
            response_body=f.text("response_body", get.get("response_body")),
            usage=f.mapping("usage", get.get("usage")),
            request_body=f.text("request_body", get.get("request_body")),
        )
        key = f.text("api_key", get.get("api_key"))
        if key is None and "request_headers" in get:
            req_h = f.mapping("request_headers", get.get("request_headers")) or {}
            key = api_key_from({str(k).lower(): v for k, v in req_h.items()}, path, f)
        return _finish(rec, key, hasher, f, lossy)

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
