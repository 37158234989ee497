"""File sink: one JSON event per line (NDJSON), appended; each write is handed to the OS at once
(readers see it), and `flush()` fsyncs.

Durability (issue 8): with `on_durable` (the pipeline's hand-back), events are written in
groups, at most once per `fsync_interval_secs` (a timer writes the last ones), each group
written + fsync'd and then passed to `on_durable`, which lets the tailers commit their offsets.
Writing only at fsync time keeps the window in which a crash leaves an event in the file whose
offsets were not yet committed (a duplicate after the restart) down to one fsync.

`envelope: true` writes what the HEC sink would send (time, host, source, sourcetype, event),
which is handy to replay into Splunk with curl; by default the bare event is written.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import orjson

from sidecar.types import OutEvent


class FileSink:
    def __init__(
        self,
        path: str,
        *,
        envelope: bool = False,
        host: str = "",
        fsync_interval_secs: float = 0.2,
        on_durable: Callable[[list[OutEvent]], None] | None = None,
    ) -> None:
        self.path = path
        self.envelope = envelope
        self.host = host
        self._fh = None
        self.stats = {"events_written": 0, "bytes_written": 0}
        self.fsync_interval_secs = fsync_interval_secs
        self.on_durable = on_durable
        self._unsynced: list[OutEvent] = []  # not yet written + fsync'd
        self._unwritten: list[bytes] = []
        self._last_sync = 0.0
        self._sync_timer: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "ab")  # noqa: SIM115 - held open for the sink's life
        if self._fh.tell() > 0:  # a write cut by a crash: start on a line of our own
            with open(self.path, "rb") as fh:
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    self._fh.write(b"\n")

    async def write(self, events: Sequence[OutEvent]) -> None:
        if self._fh is None:
            await self.start()
        dumps = orjson.dumps
        if self.envelope:
            lines = [
                dumps(
                    {
                        "time": round(ev.time, 3),
                        "host": self.host,
                        "source": ev.source,
                        "sourcetype": ev.sourcetype,
                        "event": ev.body,
                    }
                )
                for ev in events
            ]
        else:
            lines = [dumps(ev.body) for ev in events]
        data = b"\n".join(lines) + b"\n" if lines else b""
        self.stats["events_written"] += len(lines)
        self.stats["bytes_written"] += len(data)
        if self.on_durable is not None:
            self._unwritten.append(data)
            self._schedule_sync(events)
            return
        self._fh.write(data)  # type: ignore[union-attr]
        self._fh.flush()  # type: ignore[union-attr]  # visible to readers at once; fsync in flush()

    def _schedule_sync(self, events: Sequence[OutEvent]) -> None:
        self._unsynced.extend(events)
        due = self._last_sync + self.fsync_interval_secs
        if time.monotonic() >= due:
            self._sync()
        elif self._sync_timer is None:
            loop = asyncio.get_running_loop()
            self._sync_timer = loop.call_at(loop.time() + due - time.monotonic(), self._sync)

    def _sync(self) -> None:
        """fsync, then hand the events it made durable to `on_durable`."""
        if self._sync_timer is not None:
            self._sync_timer.cancel()
            self._sync_timer = None
        if self._fh is None:
            return
        if self._unwritten:
            self._fh.write(b"".join(self._unwritten))
            self._unwritten = []
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._last_sync = time.monotonic()
        events, self._unsynced = self._unsynced, []
        if events and self.on_durable is not None:
            self.on_durable(events)

    async def flush(self) -> None:
        if self._fh is not None:
            self._sync()

    async def close(self) -> None:
        if self._fh is not None:
            await self.flush()
            self._fh.close()
            self._fh = None
