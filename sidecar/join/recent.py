"""The window of recently emitted request ids (the join's memory of what it already sent).

A mapping from request id to a small value that remembers at least the last `cap` ids put into
it, and at most `limit` (`cap` plus one generation, below). Putting an id again moves it to the
newest end.

It is kept in generations: plain dicts of `step` ids each, newest first, each filled once and
never changed after (but for an id put again, deleted from its old generation). Eviction is in
bulk and costs nothing: the oldest generation is dropped whole once the others hold the last
`cap` ids. Two costs of one dict under churn are avoided that way. Evicting one id per put
with `del d[next(iter(d))]` looks O(1) but is not: a dict keeps the slots of deleted entries
until it is resized, and `iter()` walks over them from the start every time, so with 100,000
ids each put cost about 70 us (measured: 69 us per put against 0.5 us in bulk) - more than the
rest of a request's join work, on every request of a long-running process. And a dict that
keeps about 100,000 ids while ids come and go is resized with room for three times its ids
(CPython grows a dict to `3 * used`): a 10 MiB table (2^19 slots), and 15 MiB for a moment
while it is rebuilt, where a generation fills its table exactly (`step` is the most ids a
2^k-slot table takes: 27 bytes an id). At 100,000 ids: 15.2 MiB of RSS with one dict, 20.1 at
its peak, against 7.9 in generations. A lookup that misses (every new request) asks each
generation, at most 7 dicts at the default `cap` (about 0.3 us more than one dict).

Ids are kept as a 60-bit digest, not as strings: the low 60 bits of the id's own `hash()`
(SipHash with this process's random key, computed once per string and cached in it, so taking
it costs nothing), an int of 32 bytes where the id string took 80 to 120. The window lives in
memory only, so the digest never needs to be stable across processes. The consequence of two
ids with the same digest: a new request is taken for one already emitted. If that one was
emitted incomplete (expired or evicted), the new request's records are taken for its late
records: the request is not emitted, only counted in `late_records_total`; if it was emitted
complete, the new request is emitted flagged as a duplicate id (`duplicate_request_id`), with
an `event_id` a replay after a restart would not give it. With 120,000 ids held, a new id meets
a digest already there with probability about 1e-13 (2^-60 per id held): at 1,000 requests a
second, once in some 300 years. The key is random per process unless PYTHONHASHSEED fixes it;
even then, making two ids collide costs some 2^30 hashes, and a client that controls ids can
already send one id twice. A 64-bit build is required (a 32-bit `hash()` would make the odds
3e-5 per request): the import refuses another.
"""

from __future__ import annotations

import sys
from typing import Generic, TypeVar

if sys.hash_info.width < 64:
    raise ImportError(
        "llm-hec-sidecar needs a 64-bit Python (sys.hash_info.width is "
        f"{sys.hash_info.width}): the join's window of emitted ids keys by 60 bits of hash()"
    )

V = TypeVar("V")

DIGEST_MASK = (1 << 60) - 1  # ints below 2^60 take 32 bytes (two 30-bit digits)


def generation_size(cap: int) -> int:
    """Ids per generation: the most a dict of 2^k slots holds (2^(k+1) // 3, CPython's
    usable fraction), for the smallest k that holds `cap // 8` (at least 8 slots)."""
    want, slots = max(1, cap // 8), 8
    while (slots << 1) // 3 < want:
        slots <<= 1
    return (slots << 1) // 3


class RecentIds(Generic[V]):
    __slots__ = ("_gens", "_held", "_turn_at", "cap", "limit", "step")

    def __init__(self, cap: int) -> None:
        if cap < 1:
            raise ValueError("cap must be at least 1")
        self.cap = cap
        self.step = generation_size(cap)
        self.limit = cap + self.step  # never this many ids held
        self._gens: list[dict[int, V]] = [{}]  # digest of the id (see above) -> value; newest first
        self._held = 0  # ids in the older generations (all but _gens[0])
        self._turn_at = self.step  # the newest generation's size at which `_turn` has work

    def __len__(self) -> int:
        return self._held + len(self._gens[0])

    def __contains__(self, rid: str) -> bool:
        key = hash(rid) & DIGEST_MASK
        return any(key in d for d in self._gens)

    def get(self, rid: str) -> V | None:
        key = hash(rid) & DIGEST_MASK
        for d in self._gens:
            v = d.get(key)
            if v is not None:
                return v
        return None

    def put(self, rid: str, value: V, *, absent: bool = False) -> None:
        """Remember `rid` with `value` as the newest id. `absent`: the caller knows `rid` is
        not in the window (the join: a request whose id was not there when it began), which
        saves asking every generation; were it there, an older copy would stay until its
        generation goes (`get` answers with the newest; `len` counts it twice)."""
        key = hash(rid) & DIGEST_MASK
        gens = self._gens
        new = gens[0]
        if not absent and key not in new and len(gens) > 1:
            for d in gens:
                if key in d:  # put again: to the newest end
                    del d[key]
                    self._held -= 1
                    self._turn(new)
                    break
        new[key] = value
        if len(new) >= self._turn_at:
            self._turn(new)

    def _turn(self, new: dict[int, V]) -> None:
        """Start a generation when the newest is full; drop the oldest once the others hold
        the last `cap` ids; note when to look again."""
        gens = self._gens
        if len(new) >= self.step:
            self._held += len(new)
            gens.insert(0, {})
            new = gens[0]
        while len(gens) > 1 and self._held - len(gens[-1]) + len(new) >= self.cap:
            self._held -= len(gens.pop())
        turn_at = self.step
        if len(gens) > 1:
            turn_at = min(turn_at, self.cap - self._held + len(gens[-1]))
        self._turn_at = turn_at
