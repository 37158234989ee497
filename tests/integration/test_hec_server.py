"""The HEC test server answers as Splunk documents (reference section 1, table 1.7)."""

from __future__ import annotations

import asyncio
import base64
import functools
import gzip
import json
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sidecar.testing import HecTestServer, TokenSettings

EVENT = "/services/collector/event"
ACK = "/services/collector/ack"
AUTH = {"Authorization": "Splunk T"}
CH = str(uuid.uuid4())


def run(fn: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))

    return wrapper


async def post(
    url: str,
    body: bytes | str = b"",
    headers: dict[str, str] | None = None,
    path: str = EVENT,
    params: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    data = body.encode() if isinstance(body, str) else body
    async with (
        aiohttp.ClientSession() as s,
        s.post(url + path, data=data, headers=headers or {}, params=params) as r,
    ):
        return r.status, json.loads(await r.read())


def tokens(**kw: TokenSettings) -> dict[str, TokenSettings]:
    return {"T": TokenSettings(), **kw}


@pytest.mark.parametrize(
    ("headers", "status", "code", "text"),
    [
        ({}, 401, 2, "Token is required"),
        ({"Authorization": "T"}, 401, 3, "Invalid authorization"),
        ({"Authorization": "Bearer T"}, 401, 3, "Invalid authorization"),
        ({"Authorization": "Splunk nope"}, 403, 4, "Invalid token"),
        ({"Authorization": "Splunk D"}, 403, 1, "Token disabled"),
    ],
)
@run
async def test_auth_errors(headers: dict[str, str], status: int, code: int, text: str) -> None:
    async with HecTestServer(tokens(D=TokenSettings(disabled=True))) as hec:
        assert await post(hec.url, '{"event":"x"}', headers) == (
            status,
            {"text": text, "code": code},
        )
        assert hec.events == []


@run
async def test_basic_auth_with_token_as_password() -> None:
    async with HecTestServer() as hec:
        basic = base64.b64encode(b"anyone:T").decode()
        status, reply = await post(hec.url, '{"event":"x"}', {"Authorization": f"Basic {basic}"})
        assert (status, reply) == (200, {"text": "Success", "code": 0})
        assert hec.events == [{"event": "x"}]
        assert len(hec.accepted_at) == 1 and abs(hec.accepted_at[0] - time.time()) < 5


@run
async def test_query_string_token_needs_allow_query_string_auth() -> None:
    toks = tokens(Q=TokenSettings(allow_query_string_auth=True))
    async with HecTestServer(toks) as hec:
        # Code 16 even with a valid header: the query-string token takes precedence.
        status, reply = await post(hec.url, '{"event":1}', AUTH, params={"token": "T"})
        assert (status, reply["code"]) == (400, 16)
        assert reply["text"] == "Query string authorization is not enabled"
        assert (await post(hec.url, '{"event":2}', params={"token": "Q"}))[0] == 200
        assert hec.events == [{"event": 2}]


@run
async def test_success_on_every_event_path_and_concatenated_bodies() -> None:
    async with HecTestServer() as hec:
        bodies = [
            '{"event":"a"}{"event":"b"}',
            '{"event":"c"}\n{"event":"d"}\n',
            ' {"event":{"k":1}}\r\n\t{"event":5, "time": 1700000000.500} ',
        ]
        paths = [EVENT, EVENT + "/1.0", "/services/collector"]
        for body, path in zip(bodies, paths, strict=True):
            assert await post(hec.url, body, AUTH, path) == (200, {"text": "Success", "code": 0})
        assert [e["event"] for e in hec.events] == ["a", "b", "c", "d", {"k": 1}, 5]
        assert hec.counters["events_accepted"] == 6


@run
async def test_gzip_body_and_unsupported_encoding() -> None:
    async with HecTestServer() as hec:
        raw = b'{"event":"zipped"}' * 3
        headers = {**AUTH, "Content-Encoding": "gzip"}
        assert (await post(hec.url, gzip.compress(raw), headers))[0] == 200
        assert len(hec.events) == 3
        assert hec.requests[-1].compressed
        assert hec.requests[-1].body_bytes == len(gzip.compress(raw))
        status, _ = await post(hec.url, raw, {**AUTH, "Content-Encoding": "br"})
        assert status == 415
        assert len(hec.events) == 3


@pytest.mark.parametrize(
    ("body", "code", "text", "invalid"),
    [
        ("", 5, "No data", None),
        ("  \n", 5, "No data", None),
        ("not json", 6, "Invalid data format", 0),
        ('{"event":"ok"} [1,2]', 6, "Invalid data format", 1),
        ('{"event":"ok"}{"event":', 6, "Invalid data format", 1),
        ('{"event":"ok","host":null}', 6, "Invalid data format", 0),
        ('{"time":1}', 12, "Event field is required", 0),
        ('{"event":"ok"}{"event":""}', 13, "Event field cannot be blank", 1),
        ('{"event":"x","fields":{"a":{"b":"c"}}}', 15, "Error in handling indexed fields", 0),
        ('{"event":"x","fields":{"a":["b",["c"]]}}', 15, "Error in handling indexed fields", 0),
        ('{"event":"x","time":1.7E9}', 15, "Error in handling indexed fields", 0),
        ('{"event":"x","time":"1.7e9"}', 15, "Error in handling indexed fields", 0),
        ('{"event":"x","time":"soon"}', 15, "Error in handling indexed fields", 0),
        ('{"event":"x","index":"secret"}', 7, "Incorrect index", 0),
    ],
)
@run
async def test_body_errors(body: str, code: int, text: str, invalid: int | None) -> None:
    async with HecTestServer({"T": TokenSettings(indexes=["main", "llm"])}) as hec:
        status, reply = await post(hec.url, body, AUTH)
        expected: dict[str, Any] = {"text": text, "code": code}
        if invalid is not None:
            expected["invalid-event-number"] = invalid
        assert (status, reply) == (400, expected)


@run
async def test_valid_time_fields_and_allowed_index() -> None:
    async with HecTestServer({"T": TokenSettings(indexes=["llm"])}) as hec:
        body = (
            '{"event":1,"time":1700000000.500,"index":"llm"}'
            '{"event":2,"time":"1700000000.500"}{"event":3,"time":1700000000}'
            '{"event":4,"fields":{"a":"b","c":["d","e"]}}'
        )
        assert (await post(hec.url, body, AUTH))[0] == 200
        assert len(hec.events) == 4


@run
async def test_partial_batch_keeps_events_before_the_bad_one() -> None:
    async with HecTestServer() as hec:
        body = '{"event":"first"}{"event":"second"}{"bad":1}{"event":"after"}'
        status, reply = await post(hec.url, body, AUTH)
        assert (status, reply["code"], reply["invalid-event-number"]) == (400, 12, 2)
        assert [e["event"] for e in hec.events] == ["first", "second"]
        assert hec.requests[-1].events_accepted == 2


@run
async def test_channel_rules_with_ack_on() -> None:
    async with HecTestServer({"T": TokenSettings(use_ack=True)}) as hec:
        assert await post(hec.url, '{"event":1}', AUTH) == (
            400,
            {"text": "Data channel is missing", "code": 10},
        )
        bad = {**AUTH, "X-Splunk-Request-Channel": "not-a-guid"}
        assert await post(hec.url, '{"event":1}', bad) == (
            400,
            {"text": "Invalid data channel", "code": 11},
        )
        assert hec.events == []


@run
async def test_ack_flow_ids_per_channel_and_read_once() -> None:
    async with HecTestServer({"T": TokenSettings(use_ack=True)}) as hec:
        h = {**AUTH, "X-Splunk-Request-Channel": CH}
        replies = [await post(hec.url, '{"event":1}', h) for _ in range(2)]
        assert replies == [
            (200, {"text": "Success", "code": 0, "ackId": 0}),
            (200, {"text": "Success", "code": 0, "ackId": 1}),
        ]
        other = str(uuid.uuid4())
        status, reply = await post(hec.url, '{"event":2}', AUTH, params={"channel": other})
        assert reply["ackId"] == 0  # ackIds count per channel
        q = {"channel": CH}
        status, reply = await post(hec.url, '{"acks":[0,1,7]}', AUTH, ACK, q)
        assert (status, reply) == (200, {"acks": {"0": True, "1": True, "7": False}})
        # Read-once: a true status is deleted once returned.
        assert (await post(hec.url, '{"acks":[0,1]}', AUTH, ACK, q))[1] == {
            "acks": {"0": False, "1": False}
        }


@run
async def test_ack_after_n_polls_and_never() -> None:
    async with HecTestServer(
        {"T": TokenSettings(use_ack=True)}, ack_mode="polls", ack_after_polls=3
    ) as hec:
        h = {**AUTH, "X-Splunk-Request-Channel": CH}
        await post(hec.url, '{"event":1}', h)
        seen = [(await post(hec.url, '{"acks":[0]}', h, ACK))[1]["acks"]["0"] for _ in range(4)]
        assert seen == [False, False, True, False]
        hec.ack_mode = "never"
        await post(hec.url, '{"event":1}', h)
        seen = [(await post(hec.url, '{"acks":[1]}', h, ACK))[1]["acks"]["1"] for _ in range(5)]
        assert seen == [False] * 5


@run
async def test_ack_query_on_token_without_ack_is_code_14() -> None:
    async with HecTestServer() as hec:
        h = {**AUTH, "X-Splunk-Request-Channel": CH}
        assert await post(hec.url, '{"acks":[0]}', h, ACK) == (
            400,
            {"text": "ACK is disabled", "code": 14},
        )


@run
async def test_health_and_busy() -> None:
    async with HecTestServer() as hec, aiohttp.ClientSession() as s:
        for path in ("/services/collector/health", "/services/collector/health/1.0"):
            async with s.get(hec.url + path) as r:
                assert (r.status, await r.json()) == (200, {"text": "HEC is healthy", "code": 17})
        hec.set_busy(18)
        async with s.get(hec.url + "/services/collector/health") as r:
            assert (r.status, (await r.json())["code"]) == (503, 18)
        hec.set_busy(20)
        async with s.get(hec.url + "/services/collector/health") as r:
            reply = await r.json()
            assert (r.status, reply["code"]) == (503, 20)
            assert reply["text"] == "HEC is unhealthy, queues are full, ack service unavailable"


@run
async def test_scripted_faults_record_nothing() -> None:
    async with HecTestServer() as hec:
        hec.fail_next(2, http=503, code=9)
        hec.fail_next(1, http=429, code=None, retry_after=7)
        hec.fail_next(1, http=404, code=None)
        for expected in (503, 503):
            assert await post(hec.url, '{"event":1}', AUTH) == (
                expected,
                {"text": "Server is busy", "code": 9},
            )
        async with (
            aiohttp.ClientSession() as s,
            s.post(hec.url + EVENT, data=b'{"event":1}', headers=AUTH) as r,
        ):
            assert (r.status, r.headers["Retry-After"]) == (429, "7")
        assert (await post(hec.url, '{"event":1}', AUTH))[0] == 404
        hec.drop_next(1)
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await post(hec.url, '{"event":1}', AUTH)
        hec.delay_next(1, secs=0.3)
        t0 = time.monotonic()
        assert (await post(hec.url, '{"event":"late"}', AUTH))[0] == 200
        assert time.monotonic() - t0 >= 0.3
        assert hec.events == [{"event": "late"}]
        assert [r.faulted for r in hec.requests] == [True] * 5 + [False]
        assert hec.requests[4].status is None  # dropped: no reply


@run
async def test_reject_event_next_keeps_the_prefix() -> None:
    async with HecTestServer() as hec:
        hec.reject_event_next(1, code=6)
        status, reply = await post(hec.url, '{"event":0}{"event":1}{"event":2}', AUTH)
        assert (status, reply) == (
            400,
            {"text": "Invalid data format", "code": 6, "invalid-event-number": 1},
        )
        assert hec.events == [{"event": 0}]


def test_run_in_thread_serves_plain_sync_clients() -> None:
    hec = HecTestServer()
    url, stop = hec.run_in_thread()
    try:
        req = urllib.request.Request(url + EVENT, data=b'{"event":"sync"}', headers=AUTH)
        with urllib.request.urlopen(req, timeout=5) as r:
            assert json.loads(r.read()) == {"text": "Success", "code": 0}
        assert hec.events == [{"event": "sync"}]
    finally:
        stop()


def test_command_line_prints_events() -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sidecar.testing", "--port", str(port), "--token", "T"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None and proc.stdout is not None
        banner = proc.stderr.readline()
        assert f"127.0.0.1:{port}" in banner
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}{EVENT}", data=b'{"event":{"n":1}}', headers=AUTH
        )
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.status == 200
        assert json.loads(proc.stdout.readline()) == {"event": {"n": 1}}
    finally:
        proc.terminate()
        proc.wait(5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_command_line_writes_events_with_accept_times(tmp_path: Path) -> None:
    out = tmp_path / "accepted.ndjson"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sidecar.testing",
            "--port=0",
            "--token=T",
            "--times",
            f"--out={out}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # as a shell starts a background job: SIGINT ignored; the server still stops on it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        assert proc.stderr is not None
        banner = proc.stderr.readline()  # "... listening on http://127.0.0.1:PORT/..."
        url = banner.split(" on ", 1)[1].split()[0].removesuffix(EVENT)
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0"), banner
        before = time.time()
        req = urllib.request.Request(
            url + EVENT, data=b'{"event":{"n":1}}{"event":{"n":2}}', headers=AUTH
        )
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.status == 200
        after = time.time()
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(5) == 0
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["event"] for x in lines] == [{"event": {"n": 1}}, {"event": {"n": 2}}]
    assert all(before <= x["accepted_at"] <= after for x in lines)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
