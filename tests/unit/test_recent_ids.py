"""The window of emitted request ids (sidecar/join/recent.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar.join.recent import RecentIds


def test_remembers_at_least_cap_most_recent_and_bounds_its_size() -> None:
    w: RecentIds[int] = RecentIds(8)
    for i in range(100):
        w.put(f"r{i}", i)
        assert len(w) < w.limit  # never more than cap + cap // 8 (here 9)
        for j in range(max(0, i - 7), i + 1):  # the last 8 are always there
            assert w.get(f"r{j}") == j
    assert "r0" not in w and w.get("r0") is None


def test_put_again_moves_to_the_newest_end_and_replaces_the_value() -> None:
    w: RecentIds[str] = RecentIds(4)
    for rid in "abcd":
        w.put(rid, "first")
    w.put("a", "again")  # a is now the newest
    for rid in "efg":
        w.put(rid, "x")
    assert w.get("a") == "again"
    assert "b" not in w  # the oldest went first


@given(st.lists(st.integers(0, 30), max_size=300), st.integers(1, 12))
def test_same_answers_as_a_one_at_a_time_window_for_the_last_cap_ids(
    ops: list[int], cap: int
) -> None:
    """Against a reference that evicts exactly one id per put: every id the reference still
    holds, the window holds with the same value (it may hold up to cap // 8 older ones more)."""
    w: RecentIds[int] = RecentIds(cap)
    ref: dict[str, int] = {}
    for n, i in enumerate(ops):
        rid = f"r{i}"
        ref.pop(rid, None)
        ref[rid] = n
        if len(ref) > cap:
            del ref[next(iter(ref))]
        w.put(rid, n)
        for k, v in ref.items():
            assert w.get(k) == v
        assert len(w) <= cap + max(1, cap // 8)


def test_cap_must_be_positive() -> None:
    with pytest.raises(ValueError):
        RecentIds(0)
