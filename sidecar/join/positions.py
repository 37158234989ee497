"""Where each pending request's lines are (issue 8's hand-back): which source files, from which
batch offset. The join only records them; the ledger in `sidecar/sources/ledger.py` holds them
until the request's event is durable, and the tail checkpoints never move past them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sidecar.types import Positions

if TYPE_CHECKING:
    from sidecar.join.pending import Pending


class PositionNotes:
    _pending: dict[str, Pending]

    def note_positions(self, rids: list[str], key: str, offset: int) -> list[Positions]:
        """Record that requests `rids` (pending after a batch of file `key` starting at `offset`)
        have lines there; return the positions newly recorded for this file (the caller holds
        them in the ledger). Requests completed by the batch are not pending: the caller
        records those on `Completed.positions` itself."""
        new: list[Positions] = []
        pending = self._pending
        for rid in rids:
            p = pending.get(rid)
            if p is None:
                continue
            pos = p.positions
            if pos is None:
                pos = p.positions = Positions(rid, {key: offset})
            elif key not in pos.at:
                pos.at[key] = offset
            else:
                continue
            new.append(pos)
        return new
