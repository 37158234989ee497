"""The checkpoint keeper: loads the checkpoint, restores the ledger, makes the tailers, and saves
what the ledger says is committed (at most every `interval_secs`, soon after each hand-back, and
at shutdown). The pipeline only feeds the ledger and calls `soon()` / `save()`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from sidecar.sources import checkpoint
from sidecar.sources.ledger import Ledger
from sidecar.sources.tail import Tailer
from sidecar.waits import wait_set

log = logging.getLogger("sidecar.sources.keeper")


class CheckpointKeeper:
    def __init__(self, path: str, *, interval_secs: float, expire_after_secs: float) -> None:
        self.path = path
        self.interval_secs = interval_secs
        self.expire_after_secs = expire_after_secs
        self.ledger = Ledger()
        self._saved = checkpoint.load(path)
        for name, files in self._saved.items():
            for key, e in files.items():
                self.ledger.restore(f"{name}|{key}", e.offset, e.read_offset, e.replay_ids)
        self.tailers: list[Tailer] = []
        self._last = 0.0  # monotonic time of the last write
        self._timer: asyncio.TimerHandle | None = None

    def tailer(self, name: str, paths: list[str], **kw: Any) -> Tailer:
        """A tailer that resumes from this checkpoint (`name` must be stable: it keys it)."""
        t = Tailer(paths, name=name, checkpoint=self._saved.get(name), **kw)
        self.tailers.append(t)
        return t

    def soon(self) -> None:
        """Commit soon after a hand-back (what is durable but not committed is what a crash
        would send twice), at most once per `interval_secs`."""
        if self._timer is not None:
            return
        wait = self._last + self.interval_secs - time.monotonic()
        if wait <= 0:
            self.save()
        else:
            self._timer = asyncio.get_running_loop().call_later(wait, self.save)

    def save(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._last = time.monotonic()
        now = time.time()
        data: checkpoint.Checkpoints = {}
        for t in self.tailers:
            files = t.entries(now, self.expire_after_secs)
            for key, e in files.items():
                info = self.ledger.commit_info(f"{t.name}|{key}")
                if info is not None:
                    e.offset, e.read_offset, e.replay_ids = info
            data[t.name] = files
        try:
            checkpoint.save(self.path, data)
        except OSError as exc:
            log.error(
                "Cannot write the checkpoint file %s (%s); a restart would read again from the "
                "last checkpoint written. Check state_dir and free space.",
                self.path,
                exc,
            )

    async def run(self, stop: asyncio.Event) -> None:
        """Also save when nothing is handed back (new files, seen times): every second."""
        every = max(self.interval_secs, 1.0)
        while not stop.is_set():
            await wait_set(stop, every)
            if time.monotonic() - self._last >= every:
                self.save()

    def counters(self) -> dict[str, int]:
        out = {"replay_lines_skipped_total": self.ledger.replay_lines_skipped}
        for t in self.tailers:
            for k, v in (
                ("tail_rotations_total", t.rotations),
                ("tail_truncations_total", t.truncations),
                ("tail_lines_too_long_total", t.lines_too_long),
            ):
                out[k] = out.get(k, 0) + v
        return out
