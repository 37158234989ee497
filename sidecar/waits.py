"""Waiting with a time limit without losing a cancellation.

On Python 3.11 `asyncio.wait_for` loses a cancellation that arrives just as the awaited thing
finishes: it returns the result instead of raising `CancelledError` (CPython gh-86296; 3.12
rebuilt `wait_for` on `asyncio.timeout`). Every loop here is stopped by cancelling its task, so
a lost cancellation leaves a loop running and whoever awaits the task waiting for ever: an HEC
sink retrying a refused path, cancelled as a reply came in, kept retrying and its shutdown never
ended. `asyncio.timeout` (3.11) keeps the cancellation; these two wrap it, and `asyncio.wait_for`
is banned in the package (ruff TID251, pyproject.toml).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def within(secs: float, aw: Awaitable[T]) -> T:
    """`await aw`, given up after `secs` (it is cancelled, then TimeoutError is raised)."""
    async with asyncio.timeout(secs):
        return await aw


async def wait_set(event: asyncio.Event | None, secs: float) -> bool:
    """Wait up to `secs` for `event`; whether it is set (no event: sleep `secs`, False)."""
    if event is None:
        await asyncio.sleep(secs)
        return False
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(secs):
            await event.wait()
    return event.is_set()
