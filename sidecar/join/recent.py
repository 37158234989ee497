"""The window of recently emitted request ids (the join's memory of what it already sent).

A mapping from request id to a small value, in emission order, that remembers at least the last
`cap` ids put into it. Putting an id again moves it to the newest end.

Eviction is in bulk: once the window holds `cap + cap // 8` ids, the oldest eighth goes in one
pass. Evicting one id per put with `del d[next(iter(d))]` looks O(1) but is not: a dict keeps
the slots of deleted entries until it is resized, and `iter()` walks over them from the start
every time, so with 100,000 ids each put cost about 70 us (measured: 69 us per put against
0.5 us this way) - more than the rest of a request's join work, on every request of a
long-running process. A plain dict is also the smallest ordered mapping (an OrderedDict adds
a linked-list node per id).

Ids are kept as a 60-bit digest, not as strings: the low 60 bits of the id's own `hash()`
(SipHash with this process's random key, computed once per string and cached in it, so taking
it costs nothing), an int of 32 bytes where the id string took 80 to 120 (at 100,000 ids about
5 MiB less). The window lives in memory only, so the digest never needs to be stable across
processes. The consequence of two ids with the same digest: a new request is taken for one
already emitted (a duplicate id, or its records for late records, both counted). With 112,500
ids held, a new id meets a digest already there with probability about 1e-13 (2^-60 per id
held); the key being secret and per process, no log line can be made to collide on purpose.
"""

from __future__ import annotations

from itertools import islice
from typing import Generic, TypeVar

V = TypeVar("V")

DIGEST_MASK = (1 << 60) - 1  # ints below 2^60 take 32 bytes (two 30-bit digits)


class RecentIds(Generic[V]):
    __slots__ = ("_d", "cap", "limit")

    def __init__(self, cap: int) -> None:
        if cap < 1:
            raise ValueError("cap must be at least 1")
        self.cap = cap
        self.limit = cap + max(1, cap // 8)
        self._d: dict[int, V] = {}  # digest of the id (see above) -> value

    def __len__(self) -> int:
        return len(self._d)

    def __contains__(self, rid: str) -> bool:
        return hash(rid) & DIGEST_MASK in self._d

    def get(self, rid: str) -> V | None:
        return self._d.get(hash(rid) & DIGEST_MASK)

    def put(self, rid: str, value: V) -> None:
        d = self._d
        key = hash(rid) & DIGEST_MASK
        if key in d:
            del d[key]  # to the newest end
        d[key] = value
        if len(d) >= self.limit:
            for old in list(islice(d, len(d) - self.cap)):  # one walk from the oldest
                del d[old]
