"""A small HTTP/1.1 client on asyncio streams (standard library only): what the HEC sink needs and
no more. One request at a time per connection, keep-alive, TLS through an `ssl.SSLContext`,
bodies framed by Content-Length or chunked (or ended by the server closing), redirects never
followed (the caller sees the 3xx).

Why not aiohttp: importing it costs about 11 MiB of RSS and 0.2 CPU s, as much as the whole
gap between a file-sink run and a HEC run (docs/performance.md); the sink sends a few POSTs a
second and needs none of its features.

Errors: OSError (connect, reset, TLS: `ssl.SSLError` is one), `HttpError` (a reply that is not
HTTP/1.x, cut short or too large). A kept-alive connection the server has closed meanwhile
is not reused (as aiohttp does); a request that fails anyway is the caller's to retry (the sink
counts and backs off). Timeouts are the caller's (`sidecar.waits.within`); a cancelled request's
connection is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_REPLY_BYTES = 16 << 20  # a HEC reply is a few bytes of JSON; anything larger is not HEC
MAX_IDLE_PER_HOST = 4  # kept-alive connections kept per (scheme, host, port)
_LINE_LIMIT = 1 << 16  # longest status or header line read


class HttpError(Exception):
    """The reply is not one this client can read (not HTTP/1.x, cut short, too large)."""


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: dict[str, str]  # names in lower case; a repeated header keeps its last value
    body: bytes


_Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]
_Key = tuple[str, str, int]


class HttpClient:
    """Connections to any number of hosts, kept alive between requests."""

    def __init__(self, *, tls: ssl.SSLContext | bool = True) -> None:
        """`tls`: the context for https URLs; True: the system's default (verified); False:
        no verification. Built only when an https URL is first used when not given."""
        self._tls = tls
        self._idle: dict[_Key, list[_Conn]] = {}

    def _context(self) -> ssl.SSLContext:
        if isinstance(self._tls, ssl.SSLContext):
            return self._tls
        if self._tls:
            self._tls = ssl.create_default_context()
        else:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            self._tls = ctx
        return self._tls

    async def request(
        self, method: str, url: str, body: bytes | None, headers: dict[str, str]
    ) -> Reply:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise HttpError(f"not an http(s) URL: {scheme}://{parts.hostname or ''}")
        host = parts.hostname
        port = parts.port or (443 if scheme == "https" else 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        head = _request_head(method, target, parts.netloc.rpartition("@")[2], body, headers)
        key = (scheme, host, port)
        idle = self._idle.get(key)
        conn = None
        while idle and conn is None:
            conn = idle.pop()
            if conn[0].at_eof() or conn[1].is_closing():  # the server closed it meanwhile
                _close(conn[1])
                conn = None
        if conn is None:
            conn = await self._open(key)
        return await self._exchange(key, conn, head, body, method)

    async def _open(self, key: _Key) -> _Conn:
        scheme, host, port = key
        if scheme == "https":
            return await asyncio.open_connection(
                host, port, ssl=self._context(), server_hostname=host, limit=_LINE_LIMIT
            )
        return await asyncio.open_connection(host, port, limit=_LINE_LIMIT)

    async def _exchange(
        self, key: _Key, conn: _Conn, head: bytes, body: bytes | None, method: str
    ) -> Reply:
        reader, writer = conn
        keep = False
        try:
            writer.write(head)
            if body:
                writer.write(body)
            await writer.drain()
            status, headers, version = await _read_head(reader)
            data, ended_by_close = await _read_body(reader, method, status, headers)
            keep = not ended_by_close and _keep_alive(version, headers)
            return Reply(status, headers, data)
        finally:
            if keep:
                idle = self._idle.setdefault(key, [])
                idle.append(conn)
                if len(idle) > MAX_IDLE_PER_HOST:
                    _close(idle.pop(0)[1])
            else:  # a failed or cancelled (timed out) exchange leaves the connection unusable
                _close(writer)

    async def close(self) -> None:
        for conns in self._idle.values():
            for _, writer in conns:
                _close(writer)
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
        self._idle.clear()


def _close(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.close()


def _request_head(
    method: str, target: str, authority: str, body: bytes | None, headers: dict[str, str]
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {authority}"]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    for name, value in headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise HttpError(f"the {name} header holds a line break")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _read_line(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.readuntil(b"\r\n")
    except asyncio.LimitOverrunError as exc:
        raise HttpError("a reply line is too long") from exc


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], str]:
    """Status, headers and version of the reply (interim 1xx replies skipped)."""
    while True:
        line = (await _read_line(reader)).decode("latin-1").rstrip("\r\n")
        version, _, rest = line.partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise HttpError(f"not an HTTP/1.x reply: {line[:40]!r}")
        headers: dict[str, str] = {}
        while (h := (await _read_line(reader)).decode("latin-1").rstrip("\r\n")) != "":
            name, sep, value = h.partition(":")
            if not sep:
                raise HttpError(f"a malformed reply header: {h[:40]!r}")
            headers[name.strip().lower()] = value.strip()
        if not 100 <= int(code) < 200 or code == "101":
            return int(code), headers, version


async def _read_body(
    reader: asyncio.StreamReader, method: str, status: int, headers: dict[str, str]
) -> tuple[bytes, bool]:
    """The reply's body, and whether it was ended by the server closing the connection."""
    if method == "HEAD" or status in (204, 304):
        return b"", False
    if "chunked" in headers.get("transfer-encoding", "").lower():
        chunks: list[bytes] = []
        size = 0
        while True:
            line = (await _read_line(reader)).split(b";", 1)[0].strip()
            try:
                n = int(line, 16)
            except ValueError as exc:
                raise HttpError("a malformed chunk size") from exc
            if n == 0:
                while (await _read_line(reader)) != b"\r\n":  # trailers
                    pass
                return b"".join(chunks), False
            size += n
            if size > MAX_REPLY_BYTES:
                raise HttpError("the reply is too large")
            chunks.append(await reader.readexactly(n))
            if await reader.readexactly(2) != b"\r\n":  # a chunk longer than its size said
                raise HttpError("a malformed chunk")
    length = headers.get("content-length")
    if length is not None:
        if not length.isdigit() or int(length) > MAX_REPLY_BYTES:
            raise HttpError(f"a bad reply Content-Length: {length[:20]!r}")
        return await reader.readexactly(int(length)), False
    data = bytearray()  # no framing: the body ends with the connection
    while chunk := await reader.read(1 << 16):
        data += chunk
        if len(data) > MAX_REPLY_BYTES:
            raise HttpError("the reply is too large")
    return bytes(data), True


def _keep_alive(version: str, headers: dict[str, str]) -> bool:
    tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    if version == "HTTP/1.0":
        return "keep-alive" in tokens
    return "close" not in tokens
