"""The access reader waits for the body reader in log time, sometimes in the middle of a batch.
The lines it fed before waiting can complete requests whose events become durable while it
waits; a checkpoint written then must replay those lines by id (never read them again as new
data: that fed a durable request's access line without its body, so a restart emitted a
second, body-less event for it, seen in the chaos test)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson

from sidecar import config as C
from sidecar.pipeline import Pipeline

T0 = 1_795_472_000.0


def access_line(rid: str, ts: float) -> bytes:
    return orjson.dumps({"ts": ts, "request_id": rid, "status": 200}) + b"\n"


def saved_access_entry(tmp: Path) -> dict:
    data = orjson.loads((tmp / "state" / "checkpoints.json").read_bytes())
    (entry,) = data["tailers"]["p/access"].values()
    return entry


def test_a_checkpoint_written_while_the_access_reader_waits_replays_what_it_fed(
    tmp_path: Path,
) -> None:
    first = access_line("a", T0)
    (tmp_path / "access.log").write_bytes(first + access_line("b", T0 + 10))
    (tmp_path / "body.log").write_bytes(b"")
    cfg = C.from_dict(
        {
            "sources": [
                {
                    "name": "p",
                    "access_log": {"paths": [str(tmp_path / "access.log")]},
                    "body_log": {"paths": [str(tmp_path / "body.log")]},
                    "poll_interval_secs": 0.05,
                }
            ],
            "identity": {"hash_key": "k"},
            "state_dir": str(tmp_path / "state"),
            "sinks": [{"type": "file", "path": str(tmp_path / "events.ndjson")}],
        }
    )
    pipeline = Pipeline(cfg, once=False)
    src = pipeline.sources[0]
    joiner = src.joiner
    # The body reader is busy at T0: "b" (T0 + 10) is more than skew + 1 s ahead, so the access
    # reader feeds "a" and waits in the middle of its batch.
    joiner.body_front.front = T0

    async def scenario() -> tuple[dict, dict]:
        stop = asyncio.Event()
        reader = asyncio.create_task(pipeline._run_access(src, stop))
        for _ in range(200):
            if "a" in joiner._pending:
                break
            await asyncio.sleep(0.025)
        await asyncio.sleep(0.2)  # it now waits with "b" in hand
        assert "b" not in joiner._pending and not reader.done()
        pipeline.keeper.save()
        waiting = saved_access_entry(tmp_path)
        # "a" becomes durable while the reader still waits: its position is released.
        pipeline.ledger.release(joiner._pending["a"].positions)
        pipeline.keeper.save()
        released = saved_access_entry(tmp_path)
        stop.set()
        await asyncio.wait_for(reader, 10)
        return waiting, released

    waiting, released = asyncio.run(scenario())
    # While "a" is pending: resume at the batch, replay "a" by id, read "b" as new data.
    assert (waiting["offset"], waiting["read_offset"], waiting["replay_ids"]) == (
        0,
        len(first),
        ["a"],
    )
    # Once "a" is durable: its line is never read again; "b" is.
    assert (released["offset"], released["read_offset"], released["replay_ids"]) == (
        len(first),
        len(first),
        [],
    )
