from __future__ import annotations

import orjson
import pytest

from sidecar.enrich.identity import make_hasher
from sidecar.errors import ParseError
from sidecar.parse.access import make_generic, parse_caddy, parse_nginx_json

HASH = make_hasher(b"k")


def line(**kw: object) -> bytes:
    base = {"ts": 1795472049.033, "request_id": "abc", "uri": "/v1/chat/completions", "status": 200}
    base.update(kw)
    return orjson.dumps(base)


def test_nginx_json_maps_fields_and_headers() -> None:
    rec = parse_nginx_json(
        line(
            request_time=0.655,
            request_completion="",
            upstream_host="api.openai.com",
            resp_x_ratelimit_reset_tokens="6m0s",
            resp_retry_after="",
            resp_anthropic_ratelimit_input_tokens_limit="400000",
            req_x_stainless_retry_count="2",
            user="alice",
            api_key="Bearer sk-proj-secret",
        ),
        HASH,
    )
    assert rec.request_id == "abc" and rec.status == 200 and rec.time == 1795472049.033
    assert rec.duration_ms == 655.0 and rec.request_completion == ""
    assert rec.path == "/v1/chat/completions" and rec.upstream_host == "api.openai.com"
    assert rec.response_headers == {
        "x-ratelimit-reset-tokens": "6m0s",
        "anthropic-ratelimit-input-tokens-limit": "400000",
    }
    assert rec.attempt == 2 and rec.user == "alice"
    # the raw key is hashed (without its Bearer prefix) and never kept
    assert rec.api_key_id == HASH("sk-proj-secret")
    assert "sk-proj-secret" not in repr(rec)


def test_nginx_upstream_lists_and_dash() -> None:
    rec = parse_nginx_json(line(request_time="0.1, 0.4", upstream_host="-"))
    assert rec.duration_ms == 400.0 and rec.upstream_host is None


def test_invalid_utf8_is_decoded_tolerantly() -> None:
    raw = line(user="x").replace(b'"x"', b'"\xffbad"')
    rec = parse_nginx_json(raw)
    assert rec.user is not None and rec.user.endswith("bad")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "access_invalid_json"),
        (b"[1,2]", "access_not_an_object"),
        (b'{"status":200}', "access_missing_request_id"),
    ],
)
def test_bad_lines_raise_parse_error_with_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(ParseError) as exc:
        parse_nginx_json(raw)
    assert exc.value.reason == reason


def test_caddy_preset() -> None:
    raw = orjson.dumps(
        {
            "ts": 1.5,
            "request_id": "r1",
            "duration": 0.25,
            "status": 429,
            "request": {
                "method": "POST",
                "uri": "/v1/messages",
                "host": "api.anthropic.com",
                "headers": {"X-Api-Key": ["sk-ant-1"], "X-Stainless-Retry-Count": ["1"]},
            },
            "resp_headers": {"Retry-After": ["7"], "Request-Id": ["req_1"]},
        }
    )
    rec = parse_caddy(raw, HASH)
    assert (rec.request_id, rec.status, rec.duration_ms, rec.path) == (
        "r1",
        429,
        250.0,
        "/v1/messages",
    )
    assert rec.response_headers == {"retry-after": "7", "request-id": "req_1"}
    assert rec.api_key_id == HASH("sk-ant-1") and rec.attempt == 1


def test_generic_preset_dotted_paths() -> None:
    parse = make_generic(
        {
            "request_id": "req.id",
            "status": "resp.code",
            "api_key": "auth.key",
            "model": "req.model",
        },
        "resp.headers",
    )
    raw = orjson.dumps(
        {
            "req": {"id": "g1", "model": "gpt-4o"},
            "resp": {"code": "200", "headers": {"X-Request-Id": "q"}},
            "auth": {"key": "k"},
        }
    )
    rec = parse(raw, HASH)
    assert (rec.request_id, rec.status, rec.model) == ("g1", 200, "gpt-4o")
    assert rec.response_headers == {"x-request-id": "q"} and rec.api_key_id == HASH("k")


def test_generic_preset_maps_every_canonical_field() -> None:
    parse = make_generic(
        {
            "request_id": "id",
            "attempt": "retry",
            "ttft_ms": "ttft",
            "request_completion": "done",
            "usage": "resp.usage",
        },
        None,
    )
    raw = orjson.dumps(
        {
            "id": "g2",
            "retry": "2",
            "ttft": 120.5,
            "done": "",
            "resp": {"usage": {"prompt_tokens": 3}},
        }
    )
    rec = parse(raw, None)
    assert (rec.attempt, rec.ttft_ms, rec.request_completion) == (2, 120.5, "")
    assert rec.usage == {"prompt_tokens": 3}


def test_caddy_trusts_the_proxy_id_over_the_client_header() -> None:
    def line(**top: object) -> bytes:
        return orjson.dumps(
            {
                "ts": 1.5,
                "status": 200,
                "request": {"uri": "/v1/chat/completions", "headers": {"X-Request-Id": ["mine"]}},
                **top,
            }
        )

    proxy_header = line(resp_headers={"X-Request-Id": ["proxy-uuid-1"]})
    assert parse_caddy(proxy_header).request_id == "proxy-uuid-1"
    logged = line(request_id="logged-uuid", resp_headers={"X-Request-Id": ["proxy-uuid-1"]})
    assert parse_caddy(logged).request_id == "logged-uuid"
    assert parse_caddy(line()).request_id == "mine"  # nothing else on the line: last resort
