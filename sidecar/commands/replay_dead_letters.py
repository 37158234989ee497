"""`llm-hec-sidecar replay-dead-letters`: send the dead-lettered events to HEC again, after a fix.

The dead-letter file (`state_dir/dead-letter.ndjson` by default) is first renamed aside
(`<file>.replaying`), so the sidecar, if it runs meanwhile, starts a fresh one. Each record's
envelope is sent exactly as it was, through the HEC sink's delivery (same reply classes,
retries, acks): what HEC takes is done, what it refuses again goes back to the dead-letter file
with the new reason. When delivery makes no progress for `--timeout-secs`, the records not yet
sent are put back into the dead-letter file unchanged. Records without an envelope (events that
could not be encoded) cannot be replayed and are put back too.

Exit status: 0 when every record was delivered, 3 when some are in the dead-letter file again,
2 on a usage or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
from typing import Any

import orjson

from sidecar import config as C
from sidecar.sinks.hec.deadletter import append_fsync


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--file", default=None, help="dead-letter file (default: in state_dir)")
    p.add_argument("--sink", type=int, default=None, help="index of the HEC sink in `sinks`")
    p.add_argument(
        "--timeout-secs", type=float, default=60.0, help="give up after this long without progress"
    )


def _hec_sink(cfg: C.Config, index: int | None) -> tuple[int, C.HecSink]:
    hecs = [(i, s) for i, s in enumerate(cfg.sinks) if isinstance(s, C.HecSink)]
    if index is not None:
        hecs = [(i, s) for i, s in hecs if i == index]
    if not hecs:
        raise SystemExit("replay-dead-letters: no HEC sink in the config (see --sink)")
    return hecs[0]


def run(args: argparse.Namespace, cfg: C.Config) -> int:
    index, sink_cfg = _hec_sink(cfg, args.sink)
    state = cfg.resolve(cfg.state_dir)
    dead_path = os.path.join(state, "dead-letter.ndjson")
    path = args.file or dead_path
    if not os.path.exists(path):
        print(f"{path}: no dead letters to replay.")
        return 0
    aside = path + ".replaying"
    if os.path.exists(aside):
        print(
            f"{aside} exists: an earlier replay was interrupted. Move its lines back into {path} "
            "(or replay it with --file) first.",
            file=sys.stderr,
        )
        return 2
    os.replace(path, aside)
    with open(aside, "rb") as fh:
        lines = [ln for ln in fh.read().splitlines() if ln.strip()]
    result = asyncio.run(_replay(lines, sink_cfg, index, dead_path, args.timeout_secs))
    os.unlink(aside)
    sent, again, back = result
    print(
        f"Replayed {len(lines)} dead letter(s) from {path}: {sent} delivered, {again} refused "
        f"again and {back} not sent; both are in {dead_path}."
    )
    return 0 if sent == len(lines) else 3


async def _replay(
    lines: list[bytes], sink_cfg: C.HecSink, index: int, dead_path: str, timeout: float
) -> tuple[int, int, int]:
    from sidecar.sinks.hec.sink import HecSink

    sink = HecSink(
        sink_cfg,
        host=socket.gethostname(),
        default_source=None,
        dead_letter_path=dead_path,
        config_key=f"sinks[{index}]",
    )
    items: list[tuple[int, bytes]] = []
    unsendable: list[bytes] = []
    for i, line in enumerate(lines):
        try:
            env: Any = orjson.loads(line).get("envelope")
        except (orjson.JSONDecodeError, AttributeError):
            env = None
        if isinstance(env, dict):
            items.append((i, orjson.dumps(env)))
        else:
            unsendable.append(line)
    done: set[int] = set()
    await sink.start()
    task = asyncio.create_task(_deliver_all(sink, items, done.update))
    last = -1
    while not task.done():
        await asyncio.wait([task], timeout=timeout)
        if len(done) == last:
            break
        last = len(done)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await sink.close()
    left = [lines[i] for i, _ in items if i not in done] + unsendable
    if left:
        append_fsync(dead_path, b"".join(ln + b"\n" for ln in left))
    again = sink.stats["events_dead_lettered_total"]
    return len(done) - again, again, len(left)


async def _deliver_all(sink: Any, items: list[tuple[int, bytes]], release: Any) -> None:
    for batch in sink.cut(items):
        await sink.deliver(batch, release)
    await sink.drain_acks()
