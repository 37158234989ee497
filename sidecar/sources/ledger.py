"""The low-watermark ledger: which offset of each tailed file is safe to commit.

A request's lines are read long before its event is safe: it may wait in the join for its other
half, then its event waits for the sink (or spool) to make it durable. The ledger keeps, per
file identity key:

- `processed` (R): the end of the last batch handed to parse + join;
- `held`: the requests still outstanding that have lines in this file, as their `Positions`
  (by identity: two requests with one id are two). `Positions.at[key]` is the START of the first
  batch of that file in which the request appeared (conservative: re-reading from there finds
  all its lines). A position is held from the moment the join takes the request until its event
  is durable (`release_all`, a spool batch at a time: set operations, no Python step per
  request), or until its failure is set aside (`release`). Their ids are saved as `replay_ids`.

The committed offset is X = the lowest offset held, or `processed` (computed when a checkpoint
is written, a few times a second, rather than kept up to date per request). After a restart the
file is read again from X: lines below the saved R belong either to a `replay_ids` request (fed
to the join again, so the request is rebuilt whole and its event is identical) or to a request
whose event was already durable (skipped). `replaying(key, start)` tells the pipeline which case
applies. The carried replay set is live: a replayed request whose event became durable leaves
it, so a second crash during the replay cannot feed half of it again.

Nothing here does I/O; the pipeline (`pipeline/handback.py`) calls it, `checkpoint.py` saves
what `commit_info` says.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import attrgetter, itemgetter

from sidecar.types import Positions

_at, _rid = attrgetter("at"), attrgetter("rid")


@dataclass(slots=True)
class _File:
    processed: int = 0
    held: set[Positions] = field(default_factory=set)  # each has its offset here in `at[key]`
    replay_until: int = 0  # R of the checkpoint this run started from
    replay_ids: set[str] = field(default_factory=set)  # still to be fed below replay_until


class Ledger:
    def __init__(self) -> None:
        self._files: dict[str, _File] = {}
        self.replay_lines_skipped = 0

    def _file(self, key: str) -> _File:
        f = self._files.get(key)
        if f is None:
            f = self._files[key] = _File()
        return f

    def restore(self, key: str, offset: int, read_offset: int, replay_ids: list[str]) -> None:
        """Start a file from its checkpoint: reading resumes at `offset` (X)."""
        f = self._file(key)
        f.processed = offset
        if read_offset > offset:
            f.replay_until = read_offset
            f.replay_ids = set(replay_ids)

    def processed(self, key: str, end: int) -> None:
        """A batch ending at `end` was handed on (call after its positions were held)."""
        f = self._file(key)
        f.processed = end
        if f.replay_until and end >= f.replay_until:
            f.replay_until = 0
            f.replay_ids = set()

    def replaying(self, key: str, start: int) -> set[str] | None:
        """For a batch starting at `start`: the ids to feed if it lies below the saved R, or
        None when the batch is new data (feed everything)."""
        f = self._files.get(key)
        if f is None or start >= f.replay_until:
            return None
        return f.replay_ids

    def hold_all(self, key: str, held: list[Positions]) -> None:
        """The requests of `held` (a batch's), fed from the batch at `at[key]` (set by the
        caller), wait: that offset holds until the request's event is durable (`release`)."""
        if held:
            self._file(key).held.update(held)

    def release(self, pos: Positions | None) -> None:
        """The request's event is durable (or set aside): its positions no longer hold."""
        if pos is not None:
            self.release_all((pos,))

    def release_all(self, positions: Sequence[Positions | None]) -> None:
        """`release` each of `positions` (a spool batch's events'; None: nothing held)."""
        for key, f in self._files.items():
            if f.held:
                f.held.difference_update(positions)
            if f.replay_ids:  # only while a restart replays: a durable request leaves the set
                f.replay_ids.difference_update(
                    [p.rid for p in positions if p is not None and key in p.at]
                )

    def commit_info(self, key: str) -> tuple[int, int, list[str]] | None:
        """(X, R, replay ids) for the checkpoint, or None for a file never read."""
        f = self._files.get(key)
        if f is None:
            return None
        held = f.held
        x = min(f.processed, min(map(itemgetter(key), map(_at, held)))) if held else f.processed
        r = max(f.processed, f.replay_until)
        if x >= r:
            return x, r, []
        ids = set(map(_rid, held))
        if f.replay_until:
            ids |= f.replay_ids
        return x, r, sorted(ids)

    def outstanding(self) -> int:
        """Positions still held (requests in the join or events not yet durable)."""
        return sum(len(f.held) for f in self._files.values())

    def forget(self, key: str) -> None:
        self._files.pop(key, None)
