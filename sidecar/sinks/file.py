"""File sink: one JSON event per line (NDJSON), appended; each write is handed to the OS at once
(readers see it), and `flush()` fsyncs.

Durability (issue 8): events count as durable once fsync'd. `fsync_interval_secs` batches the
fsyncs (at most one per interval; a timer syncs the last writes); after each fsync the events it
covers are passed to `on_durable`, which lets the tailers commit their offsets.

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
        self._unsynced: list[OutEvent] = []  # written, not yet fsync'd
        self._last_sync = 0.0
        self._sync_timer: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "ab")  # noqa: SIM115 - held open for the sink's life

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
        self._fh.write(data)  # type: ignore[union-attr]
        self._fh.flush()  # type: ignore[union-attr]  # visible to readers at once; fsync in flush()
        self.stats["events_written"] += len(lines)
        self.stats["bytes_written"] += len(data)
        if self.on_durable is not None:
            self._schedule_sync(events)

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
