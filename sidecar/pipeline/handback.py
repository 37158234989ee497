"""The hand-back between the sources and the spool (DESIGN.md section 2): positions held in the
ledger from the batch where the join takes a request until the spool has its event on disk;
the checkpoints never move past a held position."""

from __future__ import annotations

import logging
import os
from operator import attrgetter
from typing import Any

from sidecar.join import Joiner
from sidecar.sources.keeper import CheckpointKeeper
from sidecar.sources.tail import LineBatch, Tailer
from sidecar.types import Completed, OutEvent, Positions

log = logging.getLogger("sidecar.pipeline")
_positions = attrgetter("positions")


class HandbackMixin:
    """Pipeline's side of the tail checkpoints."""

    def _init_checkpoints(self) -> None:
        cfg = self.cfg
        self.keeper = CheckpointKeeper(
            os.path.join(cfg.resolve(cfg.state_dir), "checkpoints.json"),
            interval_secs=cfg.checkpoint.interval_secs,
            expire_after_secs=cfg.checkpoint.expire_after_secs,
        )
        self.ledger = self.keeper.ledger

    def _tailer(self, name: str, paths: list[str], kw: dict[str, Any]) -> Tailer:
        return self.keeper.tailer(name, [self.cfg.resolve(p) for p in paths], **kw)

    def _replaying(self, batch: LineBatch) -> set[str] | None:
        """The ids to feed from a batch below the checkpoint's read offset (None: feed all).
        Over-long lines of new batches are set aside here (replayed ones already were)."""
        replay = self.ledger.replaying(batch.key, batch.start_offset)
        if batch.skipped and replay is None:
            for offset, length in batch.skipped:
                self.telemetry.set_aside("line_too_long", batch.path, offset, length)
        return replay

    def _replay_filter(self, dec: Any, replay: set[str]) -> None:
        """Below the checkpoint's read offset: keep only requests still to be rebuilt."""
        self.ledger.replay_lines_skipped += dec.keep(replay)

    def _hold(
        self, joiner: Joiner, batch: LineBatch, rids: list[str], out: list[Completed]
    ) -> None:
        """Hold the batch's position for every request it fed (pending, or completed in `out`),
        before any of `out` is handed on: a position is always held before it can be released.
        The caller then marks the batch processed (`ledger.processed`) once all of it is in the
        join."""
        key, start = batch.key, batch.start_offset
        held = joiner.note_positions(rids, key, start)  # a new list; the completed are added
        if out:
            fed = set(rids)
            for c in out:
                rid = c.request_id
                if rid not in fed:
                    continue
                pos = c.positions
                if pos is None:
                    pos = c.positions = Positions(rid, {key: start})
                elif key in pos.at:
                    continue
                else:
                    pos.at[key] = start
                held.append(pos)
        self.ledger.hold_all(key, held)

    def _events_durable(self, events: list[OutEvent]) -> None:
        """Contract 1: the spool calls this once `events` are fsync'd. Releases their positions
        so that the tail checkpoints can move on."""
        self.ledger.release_all(list(map(_positions, events)))
        self.keeper.soon()
