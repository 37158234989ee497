"""The hand-over from the join to enrichment (pipeline/readers.py `_put_completed`): lists of
at most 64 completed requests, the queue holding at most QUEUE_MAX_BYTES of their body bytes
(one list always fits an empty queue), nothing lost, reordered or duplicated."""

from __future__ import annotations

import asyncio

from sidecar.pipeline.readers import QUEUE_LISTS, QUEUE_MAX_BYTES, ReadersMixin, completed_bytes
from sidecar.types import Completed


class _Stage(ReadersMixin):
    def __init__(self, max_bytes: int) -> None:
        self._completed_q: asyncio.Queue[list[Completed] | None] = asyncio.Queue(QUEUE_LISTS)
        self._q_bytes = 0
        self._q_max_bytes = max_bytes
        self._q_room = asyncio.Event()


def _completed(n: int, size: int) -> list[Completed]:
    return [Completed(f"r{i}", "proxy", None, None, None, raw_bytes=size) for i in range(n)]


def test_the_queue_holds_at_most_its_bound_in_body_bytes() -> None:
    """2 MiB at most wait (a 4 MiB read block completes about 4 MiB of requests at once: with
    a 4 MiB bound they and the queue held twice that). 640 requests of 8 KiB (5 MiB) handed
    over while enrichment takes one list at a time: the queue never holds more than the bound,
    and every request arrives once, in order."""
    assert QUEUE_MAX_BYTES == 2 << 20

    async def go() -> tuple[list[str], int]:
        stage = _Stage(QUEUE_MAX_BYTES)
        got: list[str] = []
        most = 0

        async def enrich() -> None:  # as Pipeline._run_enrich takes them
            nonlocal most
            while (batch := await stage._completed_q.get()) is not None:
                most = max(most, stage._q_bytes)
                stage._q_bytes -= completed_bytes(batch)
                stage._q_room.set()
                got.extend(c.request_id for c in batch)
                await asyncio.sleep(0)

        task = asyncio.create_task(enrich())
        await stage._put_completed(_completed(640, 8 << 10))
        await stage._completed_q.put(None)
        await task
        return got, most

    got, most = asyncio.run(go())
    assert got == [f"r{i}" for i in range(640)]
    assert 0 < most <= QUEUE_MAX_BYTES


def test_one_list_larger_than_the_bound_still_goes_into_an_empty_queue() -> None:
    async def go() -> int:
        stage = _Stage(1 << 20)
        await stage._put_completed(_completed(64, 64 << 10))  # 4 MiB in one list
        return stage._completed_q.qsize()

    assert asyncio.run(go()) == 1
