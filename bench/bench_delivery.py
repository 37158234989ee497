"""The spool -> sink path alone: what delivery costs per event, without tailing or enrichment.

    .venv/bin/python bench/bench_delivery.py EVENTS.ndjson [--sinks null,file,hec] [--repeat 3]
                                             [--batch 200] [--period-ms 50] [--events 20000]

EVENTS.ndjson: events as the file sink writes them (e.g. the output of a `run --once` of
bench_e2e's 20k set); each becomes a spool record as enrichment would make it.

Each case runs in a child process (rounds interleave the cases; the machine is noisy): a real
`Spool` in a temporary folder, the pipeline's own `_run_spool` and `_run_sink`, and one sink:

- null: a file sink that writes nothing (the spool's part: append, fsync, memory, release);
- file: the file sink (NDJSON, fsync'd before the spool releases);
- hec:  the HEC sink (gzip, default batching) to the HEC test server in its own process.

The producer stands in for enrichment: `--batch` events every `--period-ms` milliseconds of busy
CPU in the main thread (it holds the GIL, as enrichment does, so the worker threads' fsyncs and
gzip hand back as they do in a real run). Printed per case, medians: the child's CPU (user +
system, `getrusage`, every thread) less the producer's busy loop (its thread time), per event.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
SINKS = ("null", "file", "hec")


async def _deliver(
    kind: str, events: list, tmp: Path, batch: int, period: float
) -> tuple[float, int]:
    """Run the producer, the spool and one sink to the end; returns the producer's CPU and
    the events the sink counted as written."""
    from sidecar import config
    from sidecar.pipeline.delivery import DeliveryMixin
    from sidecar.sinks.file import FileSink
    from sidecar.spool import Spool

    class NullSink(FileSink):
        async def write_payloads(self, payloads) -> None:  # type: ignore[no-untyped-def]
            self.stats["events_written"] += len(payloads)

        async def flush(self) -> None:
            pass

    server = None
    if kind == "hec":
        from sidecar.sinks.hec import HecSink

        server = subprocess.Popen(
            [PY, "-m", "sidecar.testing", "--port=0", "--token=t", f"--out={tmp / 'hec.ndjson'}"],
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        assert server.stderr is not None
        url = server.stderr.readline().split(" on ", 1)[1].split()[0].split("/services")[0]
        cfg = config.HecSink(endpoints=[url], token="t", allow_insecure_http=True)
        sink = HecSink(cfg, host="h", default_source=None, dead_letter_path=str(tmp / "dead"))
    elif kind == "file":
        sink = FileSink(str(tmp / "events.ndjson"))
    else:
        sink = NullSink(str(tmp / "events.ndjson"))

    class Delivery(DeliveryMixin):
        pass

    p = Delivery()
    p._give_up = asyncio.Event()  # type: ignore[attr-defined]
    p._events_q = asyncio.Queue()  # type: ignore[attr-defined]
    sp = config.Spool()  # the defaults: group commit every 50 ms, cursors every 200 ms
    p.spool = Spool(  # type: ignore[attr-defined]
        str(tmp / "spool"),
        max_bytes=sp.max_bytes,
        segment_bytes=sp.segment_bytes,
        fsync_interval_ms=sp.fsync_interval_ms,
        cursor_interval_ms=sp.cursor_interval_ms,
    )
    p.spool.open()  # type: ignore[attr-defined]
    reader = p.spool.reader("sinks[0]")  # type: ignore[attr-defined]
    await sink.start()
    spool_task = asyncio.create_task(p._run_spool())
    sink_task = asyncio.create_task(p._run_sink(sink, reader))
    busy = 0.0
    for i in range(0, len(events), batch):
        t0, end = time.thread_time(), time.monotonic() + period
        while time.monotonic() < end:
            pass
        busy += time.thread_time() - t0
        p._events_q.put_nowait(events[i : i + batch])  # type: ignore[attr-defined]
        await asyncio.sleep(0)
    p._events_q.put_nowait(None)  # type: ignore[attr-defined]
    await spool_task
    await sink_task
    await sink.close()
    await p.spool.close()  # type: ignore[attr-defined]
    if server is not None:
        server.send_signal(signal.SIGTERM)
        server.wait()
    return busy, sink.stats.get("events_written", 0)


def child(kind: str, path: str, n: int, batch: int, period_ms: int) -> None:
    import orjson

    import sidecar.pipeline.delivery
    import sidecar.sinks.hec  # noqa: F401 - imported before the measured part
    from sidecar.spool.segment import encode_event
    from sidecar.types import OutEvent

    events = []
    with open(path, "rb") as fh:
        for i, line in enumerate(fh):
            if i == n:
                break
            ev = OutEvent(body=orjson.loads(line), time=1.7e9 + i / 1000, source="/a/access.log")
            ev.payload = encode_event(ev)
            ev.body = {}
            events.append(ev)
    with tempfile.TemporaryDirectory(prefix="bench-delivery-") as td:
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        busy, written = asyncio.run(_deliver(kind, events, Path(td), batch, period_ms / 1000))
        ru = resource.getrusage(resource.RUSAGE_SELF)
        out = Path(td) / ("hec.ndjson" if kind == "hec" else "events.ndjson")
        delivered = written if kind == "null" else sum(1 for _ in out.open("rb"))
    if delivered != len(events):
        raise SystemExit(f"{kind}: {delivered} events delivered of {len(events)}")
    user, system = ru.ru_utime - ru0.ru_utime, ru.ru_stime - ru0.ru_stime
    print(orjson.dumps({"cpu": user + system - busy, "sys": system, "events": delivered}).decode())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("events_file")
    ap.add_argument("--sinks", default=",".join(SINKS))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=200, help="events per append (200)")
    ap.add_argument("--period-ms", type=int, default=50, help="busy CPU between appends (50)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child, a.events_file, a.events, a.batch, a.period_ms)
        return 0
    kinds = [k.strip() for k in a.sinks.split(",") if k.strip()]
    if unknown := set(kinds) - set(SINKS):
        ap.error(f"unknown sinks {sorted(unknown)}; known: {', '.join(SINKS)}")
    import orjson

    results: dict[str, list[dict]] = {k: [] for k in kinds}
    for r in range(a.repeat):
        for kind in kinds:
            argv = [PY, __file__, a.events_file, f"--child={kind}", f"--events={a.events}"]
            argv += [f"--batch={a.batch}", f"--period-ms={a.period_ms}"]
            res = orjson.loads(subprocess.run(argv, check=True, capture_output=True).stdout)
            results[kind].append(res)
            print(
                f"round {r + 1}/{a.repeat} {kind:5s} {res['events']:,} events, delivery CPU "
                f"{res['cpu']:.3f} s (sys {res['sys']:.3f})",
                flush=True,
            )
    print(f"medians of {a.repeat} rounds (CPU less the producer's busy loop):")
    for kind, rs in results.items():
        cpu = statistics.median(x["cpu"] for x in rs)
        n = rs[0]["events"]
        system = statistics.median(x["sys"] for x in rs)
        print(f"{kind:5s} {cpu:.3f} s = {cpu / n * 1e6:.1f} us per event, sys {system:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
