"""The HEC sink's dead-letter file: one NDJSON record per event HEC will never take.

Each line is `{"time", "reason", "hec_code", "http_status", "envelope"}`, where `envelope` is the
HEC envelope exactly as it would have been sent (null when the event could not be encoded).
The file is created with mode 0600 and fsync'd after each append: it is the last copy of a
rejected event.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Sequence
from typing import Any

import orjson


class DeadLetterFile:
    """Appends dead-letter records to `path` (off the event loop, in a worker thread)."""

    def __init__(self, path: str) -> None:
        self.path = path

    @staticmethod
    def record(
        envelope: bytes | None, reason: str, hec_code: int | None, http_status: int | None
    ) -> bytes:
        """One NDJSON line for an envelope (None: an event that could not be encoded)."""
        record: dict[str, Any] = {
            "time": round(time.time(), 3),
            "reason": reason,
            "hec_code": hec_code,
            "http_status": http_status,
            "envelope": orjson.Fragment(envelope) if envelope is not None else None,
        }
        return orjson.dumps(record) + b"\n"

    async def write(
        self,
        envelopes: Sequence[bytes | None],
        reason: str,
        hec_code: int | None,
        http_status: int | None,
    ) -> None:
        """Append one record per envelope, then fsync. Raises OSError when the write fails."""
        lines = [self.record(e, reason, hec_code, http_status) for e in envelopes]
        await asyncio.to_thread(append_fsync, self.path, b"".join(lines))


def append_fsync(path: str, data: bytes) -> None:
    """Append and fsync (the dead-letter file is the last copy of a rejected event)."""
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
