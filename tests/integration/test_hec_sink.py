"""The HEC sink, reading a real spool, against the HEC test server on 127.0.0.1: delivery,
reply classes (retries, configuration faults, 413 splits, partial batches), acks, endpoints."""

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
from sidecar.sinks.hec import HecSink, endpoints
from sidecar.spool import Spool
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
    kw.setdefault("allow_insecure_http", True)
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


class Harness:
    """A sink reading a real spool in tmp_path/spool."""

    def __init__(self, cfg: config.HecSink, tmp_path: Path) -> None:
        self.sink = make_sink(cfg, tmp_path)
        self.spool = Spool(str(tmp_path / "spool"), max_bytes=1 << 26, segment_bytes=1 << 20)
        self.spool.open()
        self.reader = self.spool.reader(KEY)
        self.task: asyncio.Task[None] | None = None

    async def start(self, evs: list[OutEvent] | None = None) -> Harness:
        await self.sink.start()
        if evs:
            await self.spool.append(evs)
        self.task = asyncio.create_task(self.sink.run(self.reader))
        return self

    async def finish(self, timeout: float = 20.0) -> HecSink:
        """No more input: wait until everything is released, then close."""
        self.spool.finish_input()
        assert self.task is not None
        await asyncio.wait_for(self.task, timeout)
        await self.stop()
        return self.sink

    async def stop(self) -> None:
        """Stop at once (as at a shutdown deadline): unreleased events stay in the spool."""
        if self.task is not None and not self.task.done():
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.sink.close()
        await self.spool.close()


async def deliver(cfg: config.HecSink, evs: list[OutEvent], tmp_path: Path) -> HecSink:
    h = Harness(cfg, tmp_path)
    await h.start(evs)
    sink = await h.finish()
    assert h.spool.pending_events == 0
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
        assert sink.stats["events_sent_total"] == 25
        assert sink.stats["batches_sent_total"] == 3
        assert sink.stats["events_retried_total"] == 0
        assert sink.stats["events_dead_lettered_total"] == 0
        assert sink.stats["bytes_sent_total"] == sum(r.body_bytes for r in reqs)
        assert dead_letters(tmp_path) == [] and sink.health() == []


@run
async def test_uncompressed_when_configured(tmp_path: Path) -> None:
    async with HecTestServer({TOKEN: TokenSettings()}) as hec:
        await deliver(make_cfg(hec.url, compression="none"), make_events(3), tmp_path)
        assert ids(hec) == ["e0", "e1", "e2"]
        assert not any(r.compressed for r in data_requests(hec))


@run
async def test_retryable_faults_are_retried_and_nothing_is_lost(tmp_path: Path) -> None:
    async with HecTestServer({TOKEN: TokenSettings()}) as hec:
        hec.fail_next(2, http=503, code=9)
        hec.fail_next(1, http=500, code=8)
        hec.fail_next(1, http=429, code=None, retry_after=0.2)
        hec.drop_next(1)
        hec.fail_next(1, http=408, code=None)
        hec.fail_next(1, http=503, code=18)
        t0 = time.monotonic()
        sink = await deliver(make_cfg(hec.url), make_events(30), tmp_path)
        assert time.monotonic() - t0 >= 0.2  # Retry-After was honoured
        assert ids(hec) == [f"e{i}" for i in range(30)]  # in order, once each
        assert sink.stats["events_retried_total"] == 70  # 7 failed sends of 10 events
        assert sink.stats["events_sent_total"] == 30
        assert dead_letters(tmp_path) == []


@run
async def test_partial_batch_is_sent_after_timeout(tmp_path: Path) -> None:
    async with HecTestServer({TOKEN: TokenSettings()}) as hec:
        cfg = make_cfg(hec.url, batch=config.Batch(max_events=10, timeout_secs=0.3))
        h = await Harness(cfg, tmp_path).start(make_events(3))
        await asyncio.sleep(0.1)
        assert hec.events == []
        await wait_for(lambda: len(hec.events) == 3, timeout=3)
        await h.finish()
        assert ids(hec) == ["e0", "e1", "e2"]


@run
async def test_revoked_token_keeps_events_spooled_and_resumes_when_restored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sidecar.sinks.hec")
    async with HecTestServer({TOKEN: TokenSettings()}) as hec:
        hec.revoke_token(TOKEN)
        revoked_at = time.monotonic()
        h = await Harness(make_cfg(hec.url), tmp_path).start(make_events(30))
        await wait_for(lambda: len(data_requests(hec)) >= 5)
        await asyncio.sleep(5 - (time.monotonic() - revoked_at))  # revoked for 5 s
        (reason,) = h.sink.health()
        assert "code 4" in reason and "check sinks[0].token" in reason
        assert h.spool.pending_events == 30 and dead_letters(tmp_path) == []
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1  # one clear error a minute, not one per attempt
        hec.restore_token(TOKEN)
        sink = await h.finish()
        assert sorted(ids(hec)) == sorted(f"e{i}" for i in range(30))
        assert len(hec.events) == 30 and dead_letters(tmp_path) == []
        assert sink.health() == [] and "accepts events again" in caplog.text
        assert TOKEN not in caplog.text


@run
async def test_redirect_is_a_configuration_fault_not_followed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="sidecar.sinks.hec")
    async with HecTestServer({TOKEN: TokenSettings()}) as hec:
        hec.redirect_to("https://splunk.example.com:8088/services/collector/event")
        h = await Harness(make_cfg(hec.url), tmp_path).start(make_events(25))
        await wait_for(lambda: len(data_requests(hec)) >= 3)
        (reason,) = h.sink.health()
        assert "HTTP 301" in reason and "https://splunk.example.com:8088" in reason
        assert "sinks[0].endpoints" in reason
        hec.redirect_to(None)
        await h.finish()
        assert len(hec.events) == 25 and dead_letters(tmp_path) == []


@pytest.mark.parametrize("status", [404, 400])
@run
async def test_wrong_path_keeps_everything_for_the_fixed_config(
    tmp_path: Path, status: int
) -> None:
    # 404: Splunk's answer; 400 without a HEC code: Fluent Bit's "invalid HTTP endpoint".
    async with HecTestServer({TOKEN: TokenSettings()}, unknown_path_status=status) as hec:
        h = await Harness(make_cfg(hec.url, path="/services/colector/event"), tmp_path).start(
            make_events(12)
        )
        await wait_for(lambda: hec.counters["unknown_path_requests"] >= 3)
        assert "check sinks[0].endpoints and sinks[0].path" in h.sink.health()[0]
        await h.stop()  # the operator stops the sidecar and fixes `path`
        assert dead_letters(tmp_path) == [] and hec.events == []
        await deliver(make_cfg(hec.url), [], tmp_path)  # the restart finds them in the spool
        assert sorted(ids(hec)) == sorted(f"e{i}" for i in range(12))


@run
async def test_413_splits_batches_and_dead_letters_only_a_lone_oversized_event(
    tmp_path: Path,
) -> None:
    async with HecTestServer({TOKEN: TokenSettings()}, max_request_bytes=8_000) as hec:
        evs = make_events(40)
        for e in evs:
            e.body["pad"] = "x" * 500
        evs[17].body["pad"] = "y" * 9_000  # alone it is still above the limit
        cfg = make_cfg(
            hec.url, compression="none", batch=config.Batch(max_events=40, max_bytes=1_000_000)
        )
        sink = await deliver(cfg, evs, tmp_path)
        assert sorted(ids(hec)) == sorted(f"e{i}" for i in range(40) if i != 17)
        assert len(hec.events) == 39  # no duplicates
        (dl,) = dead_letters(tmp_path)
        assert dl["http_status"] == 413 and dl["envelope"]["event"]["event_id"] == "e17"
        assert sink.stats["events_dead_lettered_total"] == 1
        assert all(r.body_bytes <= 8_000 for r in data_requests(hec) if r.status == 200)


@run
async def test_partial_rejection_keeps_earlier_events_without_duplicates(tmp_path: Path) -> None:
    async with HecTestServer({TOKEN: TokenSettings()}) as hec:
        hec.reject_event_next(4, code=6)  # Splunk keeps e0-e3, refuses e4, drops e5-e9
        hec.reject_event_next(0, code=13)  # then the resent rest is refused at its first event
        sink = await deliver(make_cfg(hec.url), make_events(10), tmp_path)
        assert ids(hec) == ["e0", "e1", "e2", "e3", "e6", "e7", "e8", "e9"]
        dl = dead_letters(tmp_path)
        assert [(d["hec_code"], d["http_status"]) for d in dl] == [(6, 400), (13, 400)]
        assert [d["envelope"]["event"]["event_id"] for d in dl] == ["e4", "e5"]
        assert sink.stats["events_sent_total"] == 8
        assert sink.stats["events_dead_lettered_total"] == 2
        assert len(data_requests(hec)) == 3


@run
async def test_rejection_without_event_number_bisects_to_the_bad_event(tmp_path: Path) -> None:
    async with HecTestServer({TOKEN: TokenSettings()}) as hec:
        hec.fail_next(1, http=400, code=6)  # the batch is refused, no event named
        await deliver(make_cfg(hec.url), make_events(8), tmp_path)
        assert sorted(ids(hec)) == sorted(f"e{i}" for i in range(8))  # the halves went through
        assert dead_letters(tmp_path) == []


@run
async def test_http_200_without_code_0_is_delivered(tmp_path: Path) -> None:
    async with HecTestServer({TOKEN: TokenSettings()}) as hec:
        hec.fail_next(1, http=200, code=None, text="ok")  # another receiver's 200
        sink = await deliver(make_cfg(hec.url), make_events(4), tmp_path)
        assert len(data_requests(hec)) == 1 and sink.stats["events_sent_total"] == 4


@run
async def test_health_endpoint_200_is_healthy_whatever_its_body(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sidecar.sinks.hec")
    toks = {TOKEN: TokenSettings()}
    async with HecTestServer(toks, health_reply=(200, {"code": 200})) as fluent:
        await deliver(make_cfg(fluent.url), make_events(2), tmp_path / "a")
        assert caplog.text == "" and len(fluent.events) == 2
    async with HecTestServer(toks) as busy, HecTestServer(toks) as ok:
        busy.set_busy(18)
        await deliver(make_cfg(busy.url, ok.url), make_events(20), tmp_path / "b")
        assert "is not healthy (HTTP 503, code 18" in caplog.text
        assert busy.events == [] and len(ok.events) == 20  # failover before use


@run
async def test_retries_end_at_max_attempts_in_the_dead_letter_file(tmp_path: Path) -> None:
    async with HecTestServer({TOKEN: TokenSettings()}) as hec:
        retry = config.Retry(initial_backoff_secs=0.01, max_backoff_secs=0.01, max_attempts=3)
        hec.fail_next(50, http=503, code=9)
        sink = await deliver(make_cfg(hec.url, retry=retry), make_events(5), tmp_path)
        assert hec.events == [] and len(data_requests(hec)) == 3
        dl = dead_letters(tmp_path)
        assert len(dl) == 5 and {(d["hec_code"], d["http_status"]) for d in dl} == {(9, 503)}
        assert sink.stats["events_dead_lettered_total"] == 5


@run
async def test_with_acks_events_are_released_only_after_the_ack(tmp_path: Path) -> None:
    async with HecTestServer(
        {TOKEN: TokenSettings(use_ack=True)}, ack_mode="delay", ack_delay_secs=0.4
    ) as hec:
        h = await Harness(make_cfg(hec.url, acknowledgements=acks_on()), tmp_path).start(
            make_events(5)
        )
        await wait_for(lambda: len(hec.events) == 5)
        await asyncio.sleep(0.1)
        assert h.sink.stats["events_sent_total"] == 0 and h.spool.pending_events == 5
        sink = await h.finish()
        assert sink.stats["events_sent_total"] == 5 and hec.counters["acks_true"] == 1
        assert len(hec.events) == 5


@run
async def test_acks_that_never_confirm_give_at_most_1_plus_max_resends_copies(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sidecar.sinks.hec")
    async with HecTestServer({TOKEN: TokenSettings(use_ack=True)}, ack_mode="never") as hec:
        ack = config.Acknowledgements(
            enabled=True, query_interval_secs=0.02, retry_limit=3, max_resends=2
        )
        sink = await deliver(make_cfg(hec.url, acknowledgements=ack), make_events(20), tmp_path)
        counts = Counter(ids(hec))
        assert set(counts) == {f"e{i}" for i in range(20)}
        assert set(counts.values()) == {3}  # 1 + max_resends, never more
        assert sink.stats["events_resent_unacked_total"] == 40
        dl = dead_letters(tmp_path)
        assert len(dl) == 20 and "never confirmed" in dl[0]["reason"]
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
        assert sink.stats["events_sent_total"] == 5 and hec.counters["ack_requests"] == 0
        assert "returned no ackId" in caplog.text


@run
async def test_ack_endpoint_code_14_falls_back_to_delivered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sidecar.sinks.hec")
    async with HecTestServer({TOKEN: TokenSettings(use_ack=True)}, ack_mode="never") as hec:
        h = await Harness(
            make_cfg(hec.url, acknowledgements=acks_on(interval=0.1)), tmp_path
        ).start(make_events(5))
        await wait_for(lambda: len(hec.events) == 5)
        hec.tokens[TOKEN].use_ack = False  # the ack endpoint now answers 400 code 14
        sink = await h.finish()
        assert sink.stats["events_sent_total"] == 5 and len(hec.events) == 5
        assert "refused the ack query (HTTP 400, code 14, ACK is disabled)" in caplog.text


@run
async def test_round_robin_failover_recovery_and_sticky_ack_channels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(endpoints, "RECHECK_SECS", 0.05)  # an unhealthy endpoint is asked again
    toks = {TOKEN: TokenSettings(use_ack=True)}
    async with HecTestServer(toks) as a, HecTestServer(toks) as b:
        await deliver(
            make_cfg(a.url, b.url, acknowledgements=acks_on()), make_events(40), tmp_path / "rr"
        )
        assert len(a.events) == 20 and len(b.events) == 20
        chan_a = {r.headers["X-Splunk-Request-Channel"] for r in a.requests}
        chan_b = {r.headers["X-Splunk-Request-Channel"] for r in b.requests}
        assert len(chan_a) == 1 and len(chan_b) == 1 and chan_a != chan_b  # one per endpoint
        assert a.counters["acks_true"] == 2 and b.counters["acks_true"] == 2
    async with (
        HecTestServer({TOKEN: TokenSettings()}) as a,
        HecTestServer({TOKEN: TokenSettings()}) as b,
    ):
        h = await Harness(make_cfg(a.url, b.url), tmp_path / "fo").start(make_events(30))
        a.fail_next(1, http=503, code=9)
        a.set_busy(18)  # its health check now says unhealthy: b takes everything
        await wait_for(lambda: len(b.events) == 30)
        a.set_busy(None)  # recovered: used again after its next health check
        await asyncio.sleep(0.1)
        await h.spool.append(make_events(60, start=30))
        await h.finish()
        assert len(a.events) + len(b.events) == 90 and len(a.events) >= 10


@run
async def test_oversized_and_unencodable_events_are_dead_lettered(tmp_path: Path) -> None:
    async with HecTestServer({TOKEN: TokenSettings()}) as hec:
        evs = make_events(4)
        evs[1].body["bad"] = float("nan")  # orjson writes null: fine
        evs[2].body["pad"] = "z" * 3000
        sink = await deliver(make_cfg(hec.url, max_event_bytes=2048), evs, tmp_path)
        assert ids(hec) == ["e0", "e1", "e3"]
        (dl,) = dead_letters(tmp_path)
        assert dl["reason"] == "event too large" and dl["envelope"]["event"]["event_id"] == "e2"
        assert sink.stats["events_dead_lettered_total"] == 1


@run
async def test_plain_http_is_refused_unless_allowed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Loopback http:// is allowed (the token never leaves the host): every other test here.
    # Any other http:// endpoint is refused before a connection is made; `.invalid` (RFC 2606)
    # never resolves, so nothing could leave the machine even if the refusal broke.
    remote = "http://hec.example.invalid:8088"
    h = await Harness(make_cfg(remote, allow_insecure_http=False), tmp_path).start(make_events(3))
    await asyncio.sleep(0.3)
    assert "allow_insecure_http" in h.sink.health()[0]
    assert h.sink.stats["events_sent_total"] == 0
    await h.stop()
    assert "Refusing to send the HEC token in clear text" in caplog.text


@run
async def test_the_token_never_appears_in_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with HecTestServer({TOKEN: TokenSettings(use_ack=True)}, ack_mode="polls") as hec:
        hec.fail_next(1, http=503, code=9)
        hec.drop_next(1)
        hec.fail_next(1, http=400, code=7, invalid_event_number=0)
        hec.fail_next(1, http=403, code=4)
        await deliver(make_cfg(hec.url, acknowledgements=acks_on()), make_events(25), tmp_path)
    assert caplog.records  # the faults above were logged
    assert TOKEN not in caplog.text
    assert TOKEN not in (tmp_path / "state" / "dead-letter.ndjson").read_text()


@run
async def test_receiver_capping_requests_at_1mb_gets_everything_and_dead_letters_nothing(
    tmp_path: Path,
) -> None:
    # Like Fluent Bit's in_splunk or a load balancer: 413 above 1 MB per request, while the
    # batch (4 MB, uncompressed) would exceed it.
    async with HecTestServer({TOKEN: TokenSettings()}, max_request_bytes=1_000_000) as hec:
        evs = make_events(6000)
        for e in evs:
            e.body["pad"] = "p" * 700
        cfg = make_cfg(
            hec.url,
            compression="none",
            batch=config.Batch(max_events=6000, max_bytes=4_000_000, timeout_secs=0.05),
        )
        sink = await deliver(cfg, evs, tmp_path)
        assert len(hec.events) == 6000 and len(set(ids(hec))) == 6000
        assert dead_letters(tmp_path) == [] and sink.stats["events_dead_lettered_total"] == 0
        assert any(r.status == 413 for r in hec.requests)


@run
async def test_a_misconfigured_endpoint_fails_over_at_once_and_stays_reported(
    tmp_path: Path,
) -> None:
    async with (
        HecTestServer({TOKEN: TokenSettings()}) as a,
        HecTestServer({TOKEN: TokenSettings()}) as b,
    ):
        a.revoke_token(TOKEN)  # only endpoint a refuses the token
        slow = config.Retry(initial_backoff_secs=30, max_backoff_secs=30)
        t0 = time.monotonic()
        h = await Harness(make_cfg(a.url, b.url, retry=slow), tmp_path).start(make_events(50))
        await wait_for(lambda: len(b.events) == 50, timeout=10)
        assert time.monotonic() - t0 < 10  # no 30 s backoff while b works
        assert a.events == [] and dead_letters(tmp_path) == []
        (reason,) = h.sink.health()
        assert a.url in reason and "code 4" in reason
        await h.finish()


def test_tls_settings_are_read_only_when_an_endpoint_uses_https(tmp_path: Path) -> None:
    """No SSL context (the system CA store loaded) for plain-HTTP endpoints; with an https
    endpoint a bad TLS setting stops the start, not the first send."""
    missing = str(tmp_path / "no-such-ca.pem")
    plain = make_cfg("http://127.0.0.1:8088", tls=config.Tls(ca_file=missing))
    make_sink(plain, tmp_path)  # the CA file is never read
    tls = make_cfg("https://127.0.0.1:8088", tls=config.Tls(ca_file=missing))
    with pytest.raises(OSError):
        make_sink(tls, tmp_path)
