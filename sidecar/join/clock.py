"""Event time for the join: how far each of a source's two logs has been read, in log time.

Each reader (access log, body log) has a `Frontier`: the largest record time it has handled, or
is about to handle (a reader waiting with a record of time t in hand has handled everything
before t, since a log is written in time order, give or take a little skew). A reader is
*active* while it has data in hand; *idle* once it is caught up with the end of its files (follow
mode), since a wall-clock moment; *done* at the end of `run --once`.

The pipeline uses the frontiers to let the two readers advance together (`may_read`): a reader
whose next record is more than `lead` seconds of log time ahead of the other, active, reader
waits. Two readers can never both wait: each would need its next record to be ahead of the
other's. The join uses them to decide, in log time, when a request without a body is complete
and when a pending request has expired (`Joiner`); wall time is used only for a reader that is
idle (caught up).
"""

from __future__ import annotations

import math

INF = math.inf


class Frontier:
    """One reader's progress in log time (see the module docstring)."""

    __slots__ = ("done", "front", "idle_since")

    def __init__(self) -> None:
        self.front = -INF  # log time: everything before it has been handed to the join
        self.idle_since: float | None = None  # wall (monotonic) time it became idle
        self.done = False  # `run --once`: the files are read to their end

    def advance(self, t: float | None) -> None:
        if t is not None and t > self.front:
            self.front = t

    def busy(self) -> None:
        self.idle_since = None

    def idle(self, now: float) -> None:
        if self.idle_since is None:
            self.idle_since = now

    def finish(self) -> None:
        self.done = True

    @property
    def active(self) -> bool:
        """Reading, with data in hand: its frontier says where it is."""
        return not self.done and self.idle_since is None

    def passed(self, t: float, now: float, settle: float, since: float) -> bool:
        """Has this reader gone past log time `t`? Either its frontier has, or it is done, or it
        has been idle (caught up) for `settle` wall seconds counted from `since` at the
        earliest (the moment the question first arose)."""
        if self.done or self.front > t:
            return True
        idle = self.idle_since
        return idle is not None and now - max(idle, since) >= settle


def may_read(mine: Frontier, other: Frontier, t_next: float | None, lead: float) -> bool:
    """May a reader whose next record has log time `t_next` go on? Not while it is more than
    `lead` seconds ahead of the other reader, unless the other is idle or done (then waiting
    would gain nothing). Publishes `t_next` as this reader's frontier first."""
    if t_next is None:
        return True
    mine.advance(t_next)
    return not other.active or t_next <= other.front + lead
