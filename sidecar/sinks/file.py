"""File sink: one JSON event per line (NDJSON), appended; each write is handed to the OS at once
(readers see it), and `flush()` fsyncs.

`envelope: true` writes what the HEC sink would send (time, host, source, sourcetype, event),
which is handy to replay into Splunk with curl; by default the bare event is written.

The sink writes spool records (`write_payloads`): the body's JSON bytes as enrichment made them,
never decoded and encoded again.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path

import orjson

from sidecar.spool.segment import body_json, split_payload


class FileSink:
    def __init__(self, path: str, *, envelope: bool = False, host: str = "") -> None:
        self.path = path
        self.envelope = envelope
        self.host = host
        self._fh = None
        self.stats = {
            "events_written": 0,
            "bytes_written": 0,
            "events_sent_total": 0,  # contract 2 names
            "events_failed_total": 0,
            "events_dead_lettered_total": 0,
            "events_retried_total": 0,
        }

    async def start(self) -> None:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # 0600: events name users, tenants and models; nobody else on the host reads them.
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._fh = open(fd, "ab")  # noqa: SIM115 - held open for the sink's life
        if self._fh.tell() > 0:  # a write cut by a crash: start on a line of our own
            with open(self.path, "rb") as fh:
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    self._fh.write(b"\n")

    async def write_payloads(self, payloads: Sequence[bytes]) -> None:
        """Write spool records (spool/segment.py): one line per event."""
        if self._fh is None:
            await self.start()
        if self.envelope:
            lines = [self._envelope(p) for p in payloads]
        else:
            try:  # body_json of each record, inline: the body follows the second newline
                # (a view of it: the join below is its only copy)
                lines = [memoryview(p)[p.index(b"\n", p.index(b"\n") + 1) + 1 :] for p in payloads]
            except ValueError:  # a record of the earlier format (no newline) among them
                lines = [body_json(p) for p in payloads]
        n = len(lines)
        if n:
            lines.append(b"")  # the last line's newline, without copying the batch again
        data = b"\n".join(lines)
        self._fh.write(data)  # type: ignore[union-attr]
        self._fh.flush()  # type: ignore[union-attr]  # visible to readers at once; fsync in flush()
        self.stats["events_written"] += n
        self.stats["events_sent_total"] += n
        self.stats["bytes_written"] += len(data)

    def _envelope(self, payload: bytes) -> bytes:
        (t, source, sourcetype), _, body = split_payload(payload)
        envelope = {
            "time": round(t, 3),
            "host": self.host,
            "source": source,
            "sourcetype": sourcetype,
            "event": orjson.Fragment(body),
        }
        return orjson.dumps(envelope)

    def health(self) -> list[str]:
        """Reasons this sink is unhealthy (contract 2): none; a write error stops the sink and
        leaves its events in the spool."""
        return []

    async def flush(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            # in a thread: the readers and enrichment go on while the disk syncs (the caller
            # awaits it before releasing the events, and writes nothing meanwhile)
            await asyncio.to_thread(os.fsync, self._fh.fileno())

    async def close(self) -> None:
        if self._fh is not None:
            await self.flush()
            self._fh.close()
            self._fh = None
