"""Contract 1: the sinks hand events back (`on_durable`) only once they are durable: the file
sink after its fsync, the HEC sink once HEC accepted the batch (or the indexer ack is true)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson

from sidecar import config
from sidecar.sinks.file import FileSink
from sidecar.sinks.hec import HecSink
from sidecar.testing import HecTestServer, TokenSettings
from sidecar.types import OutEvent

TOKEN = "6a1f0c2e-8d4b-4b9e-a7c3-2e5f9d1b0a64"


def make_events(n: int) -> list[OutEvent]:
    return [
        OutEvent(body={"schema": "llm_usage/1", "event_id": f"e{i}"}, time=1.0e9 + i, source=None)
        for i in range(n)
    ]


def hec_sink(url: str, tmp: Path, got: list[OutEvent], ack: bool) -> HecSink:
    cfg = config.HecSink(
        endpoints=[url],
        token=TOKEN,
        batch=config.Batch(max_events=4, max_bytes=1_000_000, timeout_secs=0.05),
        acknowledgements=config.Acknowledgements(enabled=ack, query_interval_secs=0.05),
    )
    return HecSink(
        cfg,
        host="h",
        default_source=None,
        dead_letter_path=str(tmp / "dead-letter.ndjson"),
        on_durable=got.extend,
    )


def test_hec_hands_back_accepted_events(tmp_path: Path) -> None:
    async def go() -> None:
        async with HecTestServer({TOKEN: TokenSettings()}) as hec:
            got: list[OutEvent] = []
            sink = hec_sink(hec.url, tmp_path, got, ack=False)
            await sink.start()
            evs = make_events(10)
            await sink.write(evs)
            assert len(got) == 8  # two full batches of 4 accepted; 2 wait for the timer
            await sink.flush()
            assert [id(e) for e in got] == [id(e) for e in evs]  # the same objects, once
            await sink.close()

    asyncio.run(go())


def test_hec_with_indexer_ack_hands_back_only_when_indexed(tmp_path: Path) -> None:
    async def go() -> None:
        async with HecTestServer(
            {TOKEN: TokenSettings(use_ack=True)}, ack_mode="delay", ack_delay_secs=0.4
        ) as hec:
            got: list[OutEvent] = []
            sink = hec_sink(hec.url, tmp_path, got, ack=True)
            await sink.start()
            await sink.write(make_events(4))
            await asyncio.sleep(0.2)
            assert len(hec.events) == 4 and got == []  # received, not yet indexed
            await sink.flush()
            assert len(got) == 4
            await sink.close()

    asyncio.run(go())


def test_file_sink_hands_back_after_fsync_in_groups(tmp_path: Path) -> None:
    path = tmp_path / "events.ndjson"
    calls: list[tuple[int, int]] = []  # (events handed back, lines in the file at that time)

    def durable(events: list[OutEvent]) -> None:
        calls.append((len(events), len(path.read_bytes().splitlines())))

    async def go() -> None:
        sink = FileSink(str(path), fsync_interval_secs=0.2, on_durable=durable)
        await sink.start()
        await sink.write(make_events(3))  # the first write syncs at once
        t0 = time.monotonic()
        await sink.write(make_events(2))
        await sink.write(make_events(2))
        assert calls == [(3, 3)]  # the next group waits for the interval
        while len(calls) < 2:
            await asyncio.sleep(0.01)
        assert time.monotonic() - t0 > 0.1
        await sink.close()

    asyncio.run(go())
    assert calls == [(3, 3), (4, 7)]  # handed back only once written and fsync'd
    assert [orjson.loads(x)["event_id"] for x in path.read_bytes().splitlines()][:3] == [
        "e0",
        "e1",
        "e2",
    ]


def test_with_two_sinks_positions_are_released_when_both_confirmed(tmp_path: Path) -> None:
    from sidecar.config import from_dict
    from sidecar.pipeline import Pipeline
    from sidecar.types import Positions

    cfg = from_dict(
        {
            "sources": [{"name": "p", "access_log": {"paths": [str(tmp_path / "a.log")]}}],
            "identity": {"hash_key": "k"},
            "state_dir": str(tmp_path / "state"),
            "sinks": [
                {"type": "file", "path": str(tmp_path / "one.ndjson")},
                {"type": "file", "path": str(tmp_path / "two.ndjson")},
            ],
        }
    )

    async def go() -> None:
        p = Pipeline(cfg)
        key = "p/access|1:2:ab:10"
        p.ledger.hold(key, 100, "r")
        p.ledger.processed(key, 500)
        ev = make_events(1)[0]
        ev.positions = Positions("r", {key: 100})
        p._events_durable([ev])
        assert p.ledger.commit_info(key) == (100, 500, ["r"])  # one sink is not enough
        p._events_durable([ev])
        assert p.ledger.commit_info(key) == (500, 500, [])

    asyncio.run(go())
