"""The window of emitted request ids (sidecar/join/recent.py)."""

from __future__ import annotations

import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar.join.recent import RecentIds, generation_size


def test_remembers_at_least_cap_most_recent_and_bounds_its_size() -> None:
    w: RecentIds[int] = RecentIds(8)
    assert (w.step, w.limit) == (5, 13)  # generations of 5 ids: a 2^3-slot dict's fill
    for i in range(100):
        w.put(f"r{i}", i)
        assert len(w) < w.limit  # never more than cap + one generation
        for j in range(max(0, i - 7), i + 1):  # the last 8 are always there
            assert w.get(f"r{j}") == j
    assert "r0" not in w and w.get("r0") is None


def test_generations_fill_a_dict_table_exactly() -> None:
    """A generation holds as many ids as a 2^k-slot dict takes (2^(k+1) // 3): at the default
    cap, 21,845 ids in a table of 32,768 slots (the one-dict window's table had 524,288)."""
    assert generation_size(100_000) == 21_845
    assert [generation_size(c) for c in (1, 8, 47, 48, 87, 88)] == [5, 5, 5, 10, 10, 21]
    assert generation_size(10_000_000) == 1_398_101  # 2^21 slots, at least cap // 8


def test_put_again_moves_to_the_newest_end_and_replaces_the_value() -> None:
    w: RecentIds[str] = RecentIds(4)  # generations of 5
    for rid in "abcde":
        w.put(rid, "first")
    w.put("a", "again")  # a is now the newest
    for rid in "fghij":
        w.put(rid, "x")
    assert w.get("a") == "again"
    assert "b" not in w  # the oldest went first
    assert all(rid in w for rid in "aghij")


@given(st.lists(st.integers(0, 30), max_size=300), st.integers(1, 12))
def test_same_answers_as_a_one_at_a_time_window_for_the_last_cap_ids(
    ops: list[int], cap: int
) -> None:
    """Against a reference that evicts exactly one id per put: every id the reference still
    holds, the window holds with the same value (it may hold up to one generation more)."""
    w: RecentIds[int] = RecentIds(cap)
    ref: dict[str, int] = {}
    for n, i in enumerate(ops):
        rid = f"r{i}"
        ref.pop(rid, None)
        ref[rid] = n
        if len(ref) > cap:
            del ref[next(iter(ref))]
        w.put(rid, n, absent=n % 2 == 0 and rid not in w)  # the join's shortcut, half the time
        for k, v in ref.items():
            assert w.get(k) == v
        assert len(w) < w.limit


def test_cap_must_be_positive() -> None:
    with pytest.raises(ValueError):
        RecentIds(0)


class _Rid(str):
    """An id string with a chosen `hash()`: two different ids with the same digest."""

    def __hash__(self) -> int:
        return 12345


def test_ids_are_kept_as_a_60_bit_digest_of_their_hash() -> None:
    """The window holds the low 60 bits of each id's hash, not the id: ids whose hashes agree
    in those bits are one id to it (the documented consequence; 2^-60 per id held for real
    ids, whose hash is SipHash with a per-process key). Ids that differ anywhere else are
    told apart as before."""
    w: RecentIds[int] = RecentIds(4)
    w.put(_Rid("a"), 1)
    assert _Rid("b") in w and w.get(_Rid("b")) == 1  # same digest, another id
    assert w.get("a") is None  # the plain str "a" hashes differently
    big = (1 << 62) + 7  # a hash differing only above bit 60 gives the same digest

    class Hi(str):
        def __hash__(self) -> int:
            return big

    class Lo(str):
        def __hash__(self) -> int:
            return 7

    w.put(Hi("x"), 2)
    assert w.get(Lo("y")) == 2


def test_an_id_costs_about_100_bytes_while_ids_come_and_go() -> None:
    """The memory bound (docs/performance.md, "Memory"): 60,000 fresh 32-character ids with
    their access-line digests through a window of 20,000 take under 125 bytes per id held
    (two 32-byte ints and a generation's slot). Kept as strings with 16-byte values they took
    about 165 in a fresh dict, and one dict under churn grows a table for three times its
    ids (about 115 bytes an id for the table alone)."""
    from sidecar.join.table import _packed

    n = 60_000
    ids = [f"{i:032x}" for i in range(n)]
    values = [_packed((1772442000.0 + i, i * 1700)) for i in range(n)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        w: RecentIds[int] = RecentIds(20_000)
        for i in range(n):
            w.put(ids[i][:-1] + ids[i][-1], values[i] + 0)  # fresh objects, as in the join
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert 20_000 <= len(w) < w.limit
    assert grown / len(w) < 125


def test_put_told_absent_wrongly_keeps_answering_with_the_newest() -> None:
    """`absent=True` skips looking in the older generations; told wrongly, the older copy
    stays until its generation goes, and `get` still answers with the newest value."""
    w: RecentIds[int] = RecentIds(4)  # generations of 5
    for i, rid in enumerate("abcde"):
        w.put(rid, i)
    w.put("a", 10, absent=True)
    assert w.get("a") == 10 and len(w) == 6
    for i, rid in enumerate("fghijklmn"):
        w.put(rid, 20 + i)
    assert w.get("a") is None  # both copies went with their generations
