"""The HEC sink against the HEC test server on 127.0.0.1: delivery, retries, rejects, acks."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from sidecar import config
from sidecar.sinks.hec import HecSink
from sidecar.testing import HecTestServer, TokenSettings
from sidecar.types import OutEvent

TOKEN = "3f2c9a1e-5b7d-4e2a-9c61-0d8e7f6a5b4c"  # must never appear in a log line
KEY = "sinks[0]"


def run(fn: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))

    return wrapper


def make_cfg(*urls: str, token: str = TOKEN, **kw: Any) -> config.HecSink:
    kw.setdefault("batch", config.Batch(max_events=10, max_bytes=1_000_000, timeout_secs=0.05))
    kw.setdefault("retry", config.Retry(initial_backoff_secs=0.01, max_backoff_secs=0.05))
    return config.HecSink(endpoints=list(urls), token=token, **kw)


def acks_on(retry_limit: int = 30, interval: float = 0.05) -> config.Acknowledgements:
    return config.Acknowledgements(
        enabled=True, query_interval_secs=interval, retry_limit=retry_limit
    )


def make_events(n: int, start: int = 0) -> list[OutEvent]:
    return [
        OutEvent(
            body={
                "schema": "llm_usage/1",
                "event_id": f"e{i}",
                "provider": "openai",
                "model": "gpt-4o",
                "status": "ok",
                "user": None,
                "is_streaming": i % 2 == 0,
                "input_tokens": 100 + i,
            },
            time=1700000000.5 + i,
            source=None,
        )
        for i in range(start, start + n)
    ]


def make_sink(cfg: config.HecSink, tmp_path: Path) -> HecSink:
    return HecSink(
        cfg,
        host="test-host",
        default_source="/logs/access.log",
        dead_letter_path=str(tmp_path / "state" / "dead-letter.ndjson"),
        config_key=KEY,
    )


async def deliver(cfg: config.HecSink, evs: list[OutEvent], tmp_path: Path) -> HecSink:
    sink = make_sink(cfg, tmp_path)
    await sink.start()
    await sink.write(evs)
    await sink.close()
    return sink


def ids(hec: HecTestServer) -> list[str]:
    return [e["event"]["event_id"] for e in hec.events]


def dead_letters(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "state" / "dead-letter.ndjson"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def data_requests(hec: HecTestServer) -> list[Any]:
    """Event POSTs that carried data (the start-up token probe has an empty body)."""
    return [r for r in hec.requests if r.body_bytes > 0]


async def wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@run
async def test_events_arrive_once_gzipped_with_the_envelope(tmp_path: Path) -> None:
    async with HecTestServer({TOKEN: TokenSettings(indexes=["llm"])}) as hec:
        sink = await deliver(make_cfg(hec.url, index="llm"), make_events(25), tmp_path)
        assert ids(hec) == [f"e{i}" for i in range(25)]
        reqs = data_requests(hec)
        assert len(reqs) == 3
        for r in reqs:
            assert r.compressed and r.headers["Content-Encoding"] == "gzip"
            assert r.headers["Authorization"] == f"Splunk {TOKEN}"
            assert r.headers["Content-Type"] == "application/json"
            uuid.UUID(r.headers["X-Splunk-Request-Channel"])
        assert len({r.headers["X-Splunk-Request-Channel"] for r in reqs}) == 1
        first = hec.events[0]
        assert first["time"] == 1700000000.5
        assert first["host"] == "test-host"
        assert first["source"] == "/logs/access.log"
        assert first["sourcetype"] == "llm:usage"
        assert first["index"] == "llm"
        assert first["fields"] == {
            "provider": "openai",
            "model": "gpt-4o",
            "status": "ok",
            "is_streaming": "true",
        }
        assert sink.stats == {
            "events_sent": 25,
            "batches_sent": 3,
            "retries": 0,
            "events_dead_lettered": 0,
            "bytes_sent": sum(r.body_bytes for r in reqs),
        }
        assert dead_letters(tmp_path) == []


@run
async def test_uncompressed_when_configured(tmp_path: Path) -> None:
    async with HecTestServer({TOKEN: TokenSettings()}) as hec:
        await deliver(make_cfg(hec.url, compression="none"), make_events(3), tmp_path)
        assert ids(hec) == ["e0", "e1", "e2"]
        assert not any(r.compressed for r in data_requests(hec))


@run
async def test_retryable_faults_are_retried_and_nothing_is_lost(tmp_path: Path) -> None:
    async with HecTestServer({TOKEN: TokenSettings()}) as hec:
        sink = make_sink(make_cfg(hec.url), tmp_path)
        await sink.start()
        hec.fail_next(2, http=503, code=9)
        hec.fail_next(1, http=500, code=8)
        hec.fail_next(1, http=429, code=None, retry_after=1)
        hec.drop_next(1)
        hec.fail_next(1, http=404, code=None)  # indexer in detention / rolling restart
        hec.fail_next(1, http=503, code=18)
        t0 = time.monotonic()
        await sink.write(make_events(30))
        await sink.close()
        assert time.monotonic() - t0 >= 1.0  # Retry-After: 1 was honoured
        assert sorted(ids(hec), key=lambda s: int(s[1:])) == [f"e{i}" for i in range(30)]
        assert len(hec.events) == 30  # a faulted request records nothing: no duplicates
        assert sink.stats["retries"] == 7
        assert sink.stats["events_sent"] == 30
        assert dead_letters(tmp_path) == []


@run
async def test_partial_batch_is_sent_after_timeout(tmp_path: Path) -> None:
    async with HecTestServer({TOKEN: TokenSettings()}) as hec:
        sink = make_sink(make_cfg(hec.url), tmp_path)
        await sink.start()
        await sink.write(make_events(3))
        assert hec.events == []
        await wait_for(lambda: len(hec.events) == 3, timeout=2)
        await sink.close()
        assert ids(hec) == ["e0", "e1", "e2"]


@run
async def test_rejected_token_goes_to_dead_letter_and_is_not_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sidecar.sinks.hec")
    async with HecTestServer({TOKEN: TokenSettings()}) as hec:
        bad = "bad-token-0000"
        sink = await deliver(make_cfg(hec.url, token=bad), make_events(15), tmp_path)
        assert hec.events == []
        assert len(data_requests(hec)) == 2  # two batches, each sent once
        assert "rejected the token (code 4, Invalid token): check sinks[0].token" in caplog.text
        dl = dead_letters(tmp_path)
        assert [d["envelope"]["event"]["event_id"] for d in dl] == [f"e{i}" for i in range(15)]
        assert {(d["hec_code"], d["http_status"]) for d in dl} == {(4, 403)}
        assert all("Invalid token" in d["reason"] for d in dl)
        assert sink.stats["events_dead_lettered"] == 15 and sink.stats["events_sent"] == 0
        assert bad not in caplog.text


@run
async def test_retries_end_at_max_attempts_in_the_dead_letter_file(tmp_path: Path) -> None:
    async with HecTestServer({TOKEN: TokenSettings()}) as hec:
        retry = config.Retry(initial_backoff_secs=0.01, max_backoff_secs=0.02, max_attempts=3)
        sink = make_sink(make_cfg(hec.url, retry=retry), tmp_path)
        await sink.start()
        hec.fail_next(50, http=503, code=9)
        await sink.write(make_events(5))
        await sink.close()
        assert len(data_requests(hec)) == 3
        dl = dead_letters(tmp_path)
        assert len(dl) == 5 and {(d["hec_code"], d["http_status"]) for d in dl} == {(9, 503)}
        assert sink.stats["events_dead_lettered"] == 5


@run
async def test_partial_rejection_keeps_earlier_events_without_duplicates(tmp_path: Path) -> None:
    async with HecTestServer({TOKEN: TokenSettings()}) as hec:
        sink = make_sink(make_cfg(hec.url), tmp_path)
        await sink.start()
        hec.reject_event_next(4, code=6)  # Splunk keeps e0-e3, refuses e4, drops e5-e9
        hec.reject_event_next(0, code=13)  # then the resent rest is refused at its first event
        await sink.write(make_events(10))
        await sink.close()
        assert ids(hec) == ["e0", "e1", "e2", "e3", "e6", "e7", "e8", "e9"]
        dl = dead_letters(tmp_path)
        assert [d["envelope"]["event"]["event_id"] for d in dl] == ["e4", "e5"]
        assert [(d["hec_code"], d["http_status"]) for d in dl] == [(6, 400), (13, 400)]
        assert "Invalid data format" in dl[0]["reason"]
        assert len(data_requests(hec)) == 3
        assert sink.stats["events_sent"] == 8 and sink.stats["events_dead_lettered"] == 2


@run
async def test_with_acks_events_count_only_after_the_ack(tmp_path: Path) -> None:
    async with HecTestServer(
        {TOKEN: TokenSettings(use_ack=True)}, ack_mode="delay", ack_delay_secs=0.4
    ) as hec:
        sink = make_sink(make_cfg(hec.url, acknowledgements=acks_on()), tmp_path)
        await sink.start()
        await sink.write(make_events(5))
        flushing = asyncio.create_task(sink.flush())
        await wait_for(lambda: len(hec.events) == 5)
        await asyncio.sleep(0.1)
        assert not flushing.done() and sink.stats["events_sent"] == 0
        await flushing
        assert sink.stats["events_sent"] == 5
        assert hec.counters["acks_true"] == 1
        await sink.close()
        assert len(hec.events) == 5


@run
async def test_ack_never_true_resends_after_retry_limit(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sidecar.sinks.hec")
    async with HecTestServer({TOKEN: TokenSettings(use_ack=True)}, ack_mode="never") as hec:
        sink = make_sink(make_cfg(hec.url, acknowledgements=acks_on(retry_limit=3)), tmp_path)
        await sink.start()
        await sink.write(make_events(5))
        flushing = asyncio.create_task(sink.flush())
        await wait_for(lambda: len(hec.events) >= 10)  # sent, never acked, sent again
        assert hec.counters["ack_requests"] >= 3
        hec.ack_mode = "immediate"
        await flushing
        await sink.close()
        counts = Counter(ids(hec))
        assert set(counts) == {f"e{i}" for i in range(5)} and min(counts.values()) >= 2
        assert sink.stats["retries"] >= 1 and sink.stats["events_sent"] == 5
        assert "did not confirm indexing" in caplog.text


@run
async def test_ack_requested_but_token_has_ack_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sidecar.sinks.hec")
    async with HecTestServer({TOKEN: TokenSettings(use_ack=False)}) as hec:
        sink = await deliver(
            make_cfg(hec.url, acknowledgements=acks_on()), make_events(5), tmp_path
        )
        assert sink.stats["events_sent"] == 5 and hec.counters["ack_requests"] == 0
        assert "returned no ackId" in caplog.text


@run
async def test_ack_endpoint_code_14_falls_back_to_delivered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sidecar.sinks.hec")
    async with HecTestServer({TOKEN: TokenSettings(use_ack=True)}, ack_mode="never") as hec:
        sink = make_sink(make_cfg(hec.url, acknowledgements=acks_on(interval=0.1)), tmp_path)
        await sink.start()
        await sink.write(make_events(5))
        flushing = asyncio.create_task(sink.flush())
        await wait_for(lambda: len(hec.events) == 5)
        hec.tokens[TOKEN].use_ack = False  # the ack endpoint now answers 400 code 14
        await flushing
        await sink.close()
        assert sink.stats["events_sent"] == 5 and len(hec.events) == 5
        assert "refused the ack query (HTTP 400, code 14, ACK is disabled)" in caplog.text


@run
async def test_round_robin_and_failover_between_endpoints(tmp_path: Path) -> None:
    toks = {TOKEN: TokenSettings()}
    async with HecTestServer(toks) as a, HecTestServer(toks) as b:
        await deliver(make_cfg(a.url, b.url), make_events(40), tmp_path / "rr")
        assert len(a.events) == 20 and len(b.events) == 20
    async with HecTestServer(toks) as a, HecTestServer(toks) as b:
        sink = make_sink(make_cfg(a.url, b.url), tmp_path / "fo")
        await sink.start()
        a.fail_next(100, http=503, code=9)
        await sink.write(make_events(30))
        await sink.close()
        assert a.events == [] and len(b.events) == 30
        assert sink.stats["retries"] == 3


@run
async def test_start_warns_when_unhealthy_or_unreachable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sidecar.sinks.hec")
    async with HecTestServer({TOKEN: TokenSettings()}) as hec:
        hec.set_busy(18)
        dead = HecTestServer()
        await dead.start()
        dead_url = dead.url
        await dead.stop()  # nothing listens there now
        sink = make_sink(make_cfg(hec.url, dead_url), tmp_path)
        await sink.start()
        await sink.close()
        assert "reports it is unhealthy (HTTP 503, code 18" in caplog.text
        assert f"Cannot reach HEC at {dead_url}" in caplog.text


@run
async def test_unencodable_event_is_dead_lettered(tmp_path: Path) -> None:
    async with HecTestServer({TOKEN: TokenSettings()}) as hec:
        evs = make_events(3)
        evs[1].body["bad"] = {1, 2}  # a set is not JSON
        sink = await deliver(make_cfg(hec.url), evs, tmp_path)
        assert ids(hec) == ["e0", "e2"]
        dl = dead_letters(tmp_path)
        assert len(dl) == 1 and dl[0]["envelope"] is None
        assert dl[0]["reason"].startswith("cannot encode")
        assert sink.stats["events_dead_lettered"] == 1


@run
async def test_the_token_never_appears_in_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with HecTestServer({TOKEN: TokenSettings(use_ack=True)}, ack_mode="polls") as hec:
        sink = make_sink(make_cfg(hec.url, acknowledgements=acks_on()), tmp_path)
        await sink.start()
        hec.fail_next(1, http=503, code=9)
        hec.drop_next(1)
        hec.fail_next(1, http=400, code=7)
        await sink.write(make_events(25))
        await sink.close()
        dead = HecTestServer()
        await dead.start()
        url = dead.url
        await dead.stop()
        retry = config.Retry(initial_backoff_secs=0.01, max_backoff_secs=0.01, max_attempts=2)
        await deliver(make_cfg(url, retry=retry), make_events(2), tmp_path)
    assert caplog.records  # the faults above were logged
    assert TOKEN not in caplog.text
    assert TOKEN not in (tmp_path / "state" / "dead-letter.ndjson").read_text()
