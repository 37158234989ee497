"""Stage supervision and the sink-write boundary, on the real in-process pipeline: a stage task
that dies stops `run` with StageFailed (the CLI exits 1) instead of staying up delivering
nothing; a sink that fails on one event costs that event only."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from sidecar import config as C
from sidecar.pipeline import Pipeline, StageFailed
from sidecar.spool.segment import decode_event

T0 = 1_795_472_000.0


def logs(tmp: Path, ids: list[str]) -> C.Config:
    access, body = [], []
    for i, rid in enumerate(ids):
        access.append(orjson.dumps({"ts": T0 + i, "request_id": rid, "status": 200}))
        body.append(orjson.dumps({"ts": T0 + i, "request_id": rid, "data": "{}"}))
        body.append(orjson.dumps({"ts": T0 + i, "request_id": rid, "end": "complete"}))
    (tmp / "access.log").write_bytes(b"".join(x + b"\n" for x in access))
    (tmp / "body.log").write_bytes(b"".join(x + b"\n" for x in body))
    return C.from_dict(
        {
            "sources": [
                {
                    "name": "p",
                    "access_log": {"paths": [str(tmp / "access.log")]},
                    "body_log": {"paths": [str(tmp / "body.log")]},
                    "poll_interval_secs": 0.05,
                }
            ],
            "identity": {"hash_key": "k"},
            "state_dir": str(tmp / "state"),
            "sinks": [{"type": "file", "path": str(tmp / "events.ndjson")}],
        }
    )


def written(tmp: Path) -> list[str]:
    path = tmp / "events.ndjson"
    if not path.exists():
        return []
    return [orjson.loads(x)["request_id"] for x in path.read_bytes().splitlines()]


@pytest.mark.parametrize("stage", ["enrich", "sinks"])
def test_a_dead_stage_stops_the_follow_run(tmp_path: Path, stage: str) -> None:
    pipeline = Pipeline(logs(tmp_path, ["a", "b"]), once=False)

    async def boom(*args: object) -> None:
        raise RuntimeError(f"{stage} bug")

    if stage == "enrich":
        pipeline._run_enrich = boom  # type: ignore[method-assign]
    else:
        pipeline._sink_write = boom  # type: ignore[method-assign]

    async def main() -> None:
        await asyncio.wait_for(pipeline.run(asyncio.Event()), 30)

    with pytest.raises(StageFailed) as err:
        asyncio.run(main())
    # The sinks run one task per sink, reading the spool: the first sink's task is "sink0".
    assert err.value.stage == {"enrich": "enrich", "sinks": "sink0"}[stage]
    assert "bug" in str(err.value)


def test_a_sink_failing_on_one_event_costs_that_event_only(tmp_path: Path) -> None:
    pipeline = Pipeline(logs(tmp_path, ["a", "poison", "c"]), once=True)
    sink = pipeline.sinks[0]
    real_write = sink.write_payloads

    async def write(payloads: list) -> None:
        if any(decode_event(p).body["request_id"] == "poison" for p in payloads):
            raise OSError("no space left on device")
        await real_write(payloads)

    sink.write_payloads = write
    telemetry = asyncio.run(pipeline.run())
    assert sorted(written(tmp_path)) == ["a", "c"]
    assert telemetry.malformed["sink_write_failed"] == 1
    aside = orjson.loads((tmp_path / "state" / "malformed.ndjson").read_bytes())
    assert aside["reason"] == "sink_write_failed" and aside["detail"] == "poison"


def test_run_exits_1_with_one_sentence_when_a_stage_dies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    from sidecar import cli

    logs(tmp_path, ["a"])
    (tmp_path / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "sources": [
                    {
                        "name": "p",
                        "access_log": {"paths": [str(tmp_path / "access.log")]},
                        "body_log": {"paths": [str(tmp_path / "body.log")]},
                    }
                ],
                "identity": {"hash_key": "k"},
                "state_dir": str(tmp_path / "state"),
                "sinks": [{"type": "file", "path": str(tmp_path / "events.ndjson")}],
            }
        )
    )

    async def boom(self: Pipeline) -> None:
        raise RuntimeError("enrich bug")

    monkeypatch.setattr(Pipeline, "_run_enrich", boom)
    assert cli.main(["run", "-c", str(tmp_path / "config.yaml"), "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        "llm-hec-sidecar: the enrich stage stopped: RuntimeError: enrich bug; exiting with "
        "status 1."
    )
