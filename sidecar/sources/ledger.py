"""The low-watermark ledger: which offset of each tailed file is safe to commit.

A request's lines are read long before its event is safe: it may wait in the join for its other
half, then its event waits for the sink (or spool) to make it durable. The ledger keeps, per
file identity key:

- `processed` (R): the end of the last batch handed to parse + join;
- `held`: a multiset of offsets, one per (request, file) still outstanding. The offset is the
  START of the first batch of that file in which the request appeared (conservative: re-reading
  from there finds all its lines). A position is held from the moment the join takes the request
  until its event is durable (`release`), or until its failure is set aside;
- `ids`: the request ids holding positions in this file (saved as `replay_ids`).

The committed offset is X = min of `held` and `processed`. After a restart the file is read again
from X: lines below the saved R belong either to a `replay_ids` request (fed to the join again,
so the request is rebuilt whole and its event is identical) or to a request whose event was
already durable (skipped). `replaying(key, start)` tells the pipeline which case applies. The
carried replay set is live: a replayed request whose event became durable leaves it, so a second
crash during the replay cannot feed half of it again.

Nothing here does I/O; the pipeline (`pipeline/handback.py`) calls it, `checkpoint.py` saves
what `commit_info` says.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sidecar.types import Positions


@dataclass(slots=True)
class _File:
    processed: int = 0
    held: dict[int, int] = field(default_factory=dict)  # offset -> count
    ids: dict[str, int] = field(default_factory=dict)  # request id -> count
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

    def hold(self, key: str, offset: int, rid: str) -> None:
        """Request `rid`, fed from the batch at `offset`, waits: the offset holds until the
        request's event is durable (`release`)."""
        self.hold_all(key, offset, [rid])

    def hold_all(self, key: str, offset: int, rids: list[str]) -> None:
        """`hold(key, offset, rid)` for each of `rids` (a batch's requests), in one call."""
        if not rids:
            return
        f = self._file(key)
        f.held[offset] = f.held.get(offset, 0) + len(rids)
        ids = f.ids
        for rid in rids:
            ids[rid] = ids.get(rid, 0) + 1

    def release(self, pos: Positions | None) -> None:
        """The request's event is durable (or set aside): its positions no longer hold."""
        if pos is None:
            return
        rid = pos.rid
        for key, offset in pos.at.items():
            f = self._files.get(key)
            if f is None:
                continue
            n = f.held.get(offset, 0)
            if n > 1:
                f.held[offset] = n - 1
            elif n == 1:
                del f.held[offset]
            c = f.ids.get(rid, 0)
            if c > 1:
                f.ids[rid] = c - 1
            elif c == 1:
                del f.ids[rid]
            f.replay_ids.discard(rid)

    def commit_info(self, key: str) -> tuple[int, int, list[str]] | None:
        """(X, R, replay ids) for the checkpoint, or None for a file never read."""
        f = self._files.get(key)
        if f is None:
            return None
        x = min(min(f.held), f.processed) if f.held else f.processed
        r = max(f.processed, f.replay_until)
        ids = set(f.ids)
        if f.replay_until:
            ids |= f.replay_ids
        return x, r, sorted(ids) if x < r else []

    def outstanding(self) -> int:
        """Positions still held (requests in the join or events not yet durable)."""
        return sum(sum(f.held.values()) for f in self._files.values())

    def forget(self, key: str) -> None:
        self._files.pop(key, None)
