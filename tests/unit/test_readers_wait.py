"""The readers' wait (pipeline/readers.py `_wait`): a reader ahead in log time waits until the
other one moves (its event), becomes idle (seen by the 0.05 s poll), or stop; a cancelled wait
stays cancelled (it is not taken for the poll's timeout)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from sidecar.join import Joiner
from sidecar.pipeline.readers import ReadersMixin


def _src() -> SimpleNamespace:
    return SimpleNamespace(
        joiner=Joiner(),
        access_tail=SimpleNamespace(idle_since=None),
        body_tail=SimpleNamespace(idle_since=None),
        moved={"access": asyncio.Event(), "body": asyncio.Event()},
    )


def test_wait_returns_when_the_other_reader_moves() -> None:
    async def go() -> list[str]:  # the checks made
        src, stop, seen = _src(), asyncio.Event(), []
        state = {"ready": False}

        def ready() -> bool:
            seen.append("checked")
            return state["ready"]

        async def other() -> None:
            await asyncio.sleep(0)
            state["ready"] = True
            src.moved["body"].set()

        mover = asyncio.create_task(other())
        await ReadersMixin()._wait(src, "access", stop, ready)
        await mover
        assert src.moved["access"].is_set()  # its own frontier moved: the other may go on
        return seen

    seen = asyncio.run(go())
    assert len(seen) >= 2  # not ready at first; ready once the other one moved


def test_wait_polls_for_idle_state_and_stops() -> None:
    """Idle state changes without an event: the poll sees it; stop ends the wait too."""

    async def go() -> int:
        src, stop = _src(), asyncio.Event()
        checks = 0

        def ready() -> bool:
            nonlocal checks
            checks += 1
            return src.joiner.body_front.idle_since is not None

        loop = asyncio.get_running_loop()
        loop.call_later(0.12, lambda: setattr(src.body_tail, "idle_since", 1.0))
        await asyncio.wait_for(ReadersMixin()._wait(src, "access", stop, ready), 10)
        assert src.joiner.body_front.idle_since == 1.0  # copied from the tailer by the poll
        n = checks
        loop.call_later(0.08, stop.set)
        await asyncio.wait_for(ReadersMixin()._wait(src, "access", stop, lambda: False), 10)
        return n

    assert asyncio.run(go()) >= 3  # at least two polls of 0.05 s before the idle state


def test_a_cancelled_wait_stays_cancelled() -> None:
    async def go() -> None:
        src, stop = _src(), asyncio.Event()
        task = asyncio.create_task(ReadersMixin()._wait(src, "body", stop, lambda: False))
        await asyncio.sleep(0.07)  # inside a later poll
        task.cancel()
        await asyncio.wait({task}, timeout=5)
        stop.set()  # were the cancellation swallowed, this ends the task (no hang)
        await asyncio.wait({task}, timeout=1)
        assert task.cancelled()  # not taken for the poll's timeout

    asyncio.run(go())
