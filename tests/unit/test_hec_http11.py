"""The HEC sink's HTTP/1.1 client against real sockets on 127.0.0.1: framing (Content-Length,
chunked, end by close), keep-alive reuse, a connection the server closed, bad replies, TLS."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from sidecar.config import Tls
from sidecar.sinks.hec.http11 import HttpClient, HttpError
from sidecar.sinks.hec.service import HecService, _ssl_setting

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    first, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in lines if h)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return first.encode(), headers, body


async def serve(
    handler: Handler, tls: ssl.SSLContext | None = None
) -> tuple[asyncio.Server, str, list[int]]:
    """A server on a free port; returns it, its base URL and the number of connections made."""
    conns = [0]

    async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conns[0] += 1
        try:
            await handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_conn, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    return server, f"{'https' if tls else 'http'}://127.0.0.1:{port}", conns


def test_content_length_replies_keep_the_connection_alive_and_headers_are_sent() -> None:
    seen: list[tuple[bytes, dict[str, str], bytes]] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            seen.append(await read_request(reader))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 27\r\nRetry-After: 3\r\n\r\n")
            writer.write(b'{"text":"Success","code":0}')
            await writer.drain()

    async def main() -> None:
        server, url, conns = await serve(handler)
        client = HttpClient()
        for i in range(3):
            reply = await client.request(
                "POST", f"{url}/services/collector/event?x=1", b"abc%d" % i, {"Authorization": "S"}
            )
            assert reply.status == 200 and reply.body == b'{"text":"Success","code":0}'
            assert reply.headers["retry-after"] == "3"
        assert conns[0] == 1  # one connection, kept alive
        await client.close()
        server.close()

    asyncio.run(main())
    assert [s[0] for s in seen] == [b"POST /services/collector/event?x=1 HTTP/1.1"] * 3
    assert seen[0][1]["authorization"] == "S" and seen[0][1]["host"].startswith("127.0.0.1:")
    assert [s[2] for s in seen] == [b"abc0", b"abc1", b"abc2"]


def test_the_service_sends_the_token_channel_and_encoding_headers() -> None:
    seen: list[tuple[bytes, dict[str, str], bytes]] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_request(reader))
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 27\r\n\r\n{"text":"Success","code":0}')
        await writer.drain()

    async def main() -> None:
        server, url, _ = await serve(handler)
        service = HecService(token="tok", timeout_secs=5, tls=Tls(), https=False)
        outcome = await service.send(url + "/e", b"gz", compressed=True, channel="chan")
        assert type(outcome).__name__ == "Delivered"
        await service.close()
        server.close()

    asyncio.run(main())
    first, headers, body = seen[0]
    assert first == b"POST /e HTTP/1.1" and body == b"gz"
    assert headers["authorization"] == "Splunk tok"
    assert headers["x-splunk-request-channel"] == "chan"
    assert headers["content-encoding"] == "gzip"
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"].startswith("llm-hec-sidecar/")


def test_chunked_and_close_delimited_bodies_and_a_closed_idle_connection() -> None:
    replies = [
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'4\r\n{"co\r\n5;x=y\r\nde":9\r\n1\r\n}\r\n0\r\nX-Trailer: 1\r\n\r\n',
        b"HTTP/1.0 200 OK\r\n\r\nuntil the end",
        b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",
    ]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(replies.pop(0))
        await writer.drain()
        if len(replies) == 2:  # the first reply keeps the connection alive...
            await read_request(reader)  # ...but the next request on it finds it closed
            writer.write(replies.pop(0))

    async def main() -> None:
        server, url, conns = await serve(handler)
        client = HttpClient()
        reply = await client.request("POST", url + "/a", b"x", {})
        assert (reply.status, reply.body) == (503, b'{"code":9}')
        reply = await client.request("GET", url + "/b", None, {})
        assert (reply.status, reply.body) == (200, b"until the end")
        await asyncio.sleep(0.05)
        reply = await client.request("GET", url + "/c", None, {})
        assert (reply.status, reply.body) == (204, b"")
        assert conns[0] == 2
        await client.close()
        server.close()

    asyncio.run(main())


@pytest.mark.parametrize(
    "reply",
    [
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXX\r\n0\r\n\r\n",
        b"",
    ],
)
def test_a_bad_or_missing_reply_is_a_retryable_network_error(reply: bytes) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(reply)
        await writer.drain()

    async def main() -> None:
        server, url, _ = await serve(handler)
        service = HecService(token="secret-token", timeout_secs=5, tls=Tls(), https=False)
        outcome = await service.send(url + "/e", b"{}", compressed=False, channel="c")
        assert type(outcome).__name__ == "Retryable" and "network error" in outcome.reason
        assert "secret-token" not in outcome.reason
        await service.close()
        server.close()

    asyncio.run(main())


def test_no_reply_within_the_timeout_is_retryable_and_the_connection_is_dropped() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        if conns[0] == 1:
            await reader.read()  # silent until the client hangs up
            return
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    async def main() -> None:
        nonlocal conns
        server, url, conns = await serve(handler)
        service = HecService(token="t", timeout_secs=0.2, tls=Tls(), https=False)
        outcome = await service.send(url + "/e", b"{}", compressed=False, channel="c")
        assert type(outcome).__name__ == "Retryable" and "timeout" in outcome.reason
        assert not any(service._client._idle.values())  # never reused
        got = await service._request("GET", url + "/h", None, {})
        assert got == (200, b"ok", None, None) and conns[0] == 2
        await service.close()
        server.close()

    conns = [0]
    asyncio.run(main())


def test_a_header_with_a_line_break_is_never_sent() -> None:
    async def main() -> None:
        with pytest.raises(HttpError):
            await HttpClient().request("GET", "http://127.0.0.1:9/", None, {"X": "a\r\nB: c"})

    asyncio.run(main())


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_https_is_verified_against_the_ca_file_and_refused_without_it(tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(str(cert), str(key))

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    async def main() -> None:
        server, url, _ = await serve(handler, server_tls)
        trusted = HecService(token="t", timeout_secs=5, tls=Tls(ca_file=str(cert)))
        assert (await trusted.health(url)).detail.startswith("HTTP 200")
        default = HecService(token="t", timeout_secs=5, tls=Tls())  # the system CAs only
        health = await default.health(url)
        assert not health.reachable and "certificate verify failed" in health.detail
        unverified = HecService(token="t", timeout_secs=5, tls=Tls(verify=False))
        assert _ssl_setting(Tls(verify=False)) is False
        assert (await unverified.health(url)).detail.startswith("HTTP 200")
        for s in (trusted, default, unverified):
            await s.close()
        server.close()

    asyncio.run(main())
