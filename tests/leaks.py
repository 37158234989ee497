"""Leak checks for the C extensions: memory still held after many calls."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable


def grown_bytes(calls: Callable[[], object], *, warm: int = 300, n: int = 3000) -> int:
    """Bytes still traced after `n` calls of `calls`, counted from after `warm` calls and a
    collection (caches and free lists filled). A function that leaks even a small object per
    call grows by far more than 10 kB over 1,000 calls."""
    gc.collect()
    tracemalloc.start()
    try:
        for _ in range(warm):
            calls()
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(n):
            calls()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
