"""The identity hasher's cache: same hashes with and without it, bounded in bytes."""

from __future__ import annotations

import hashlib
import hmac
import tracemalloc

import pytest

from sidecar.enrich import identity
from sidecar.enrich.identity import make_hasher


def expected(key: bytes, value: str, prefix: str = "") -> str:
    digest = hmac.new(key, value.encode("utf-8", "surrogateescape"), hashlib.sha256)
    return prefix + digest.hexdigest()[:24]


def test_cached_and_fresh_hashes_agree() -> None:
    h = make_hasher(b"k", prefix="u_")
    for value in ["alice", "alice", "x" * 300, "x" * 300, "\udcff", "", "bob"]:
        assert h(value) == expected(b"k", value, "u_")


def value(i: int, size: int) -> str:
    return f"{i:06d}" + "v" * size


def test_long_values_are_not_kept() -> None:
    h = make_hasher(b"k")
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    hashes = [h(value(i, 200_000)) for i in range(100)]  # 20 MB of distinct values, dropped
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
    assert grown < 1_000_000, grown  # kept, they would hold 20 MB
    assert hashes == [expected(b"k", value(i, 200_000)) for i in range(100)]


def test_entries_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(identity, "CACHE_MAX_ENTRIES", 50)
    h = make_hasher(b"k")
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for i in range(2_000):
        h(value(i, 200))
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
    assert grown < 100_000, grown  # 2,000 kept values would be about 600 kB
    # After the cache was emptied, values hash the same as before.
    again = [value(i, 200) for i in range(60)]
    assert [h(v) for v in again] == [expected(b"k", v) for v in again]
