"""A cancellation that arrives just as the awaited thing finishes is kept (`sidecar.waits`);
Python 3.11's `asyncio.wait_for` loses it (gh-86296), which once left an HEC sink retrying for
ever after its shutdown."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from sidecar.config import Tls
from sidecar.sinks.hec.service import HecService
from sidecar.waits import wait_set, within


async def cancelled_as_it_finishes(wait: Callable[[Awaitable[Any]], Awaitable[Any]]) -> str:
    """Start `wait(inner)`, then in one step: the inner wait's result arrives and the waiting
    task is cancelled. 'cancelled' if the cancellation reached the task, else what it returned."""
    done: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def inner() -> str:
        return await done

    task = asyncio.create_task(wait(inner()))
    await asyncio.sleep(0)  # the task now waits
    done.set_result("the reply")
    task.cancel()
    try:
        return await task
    except asyncio.CancelledError:
        return "cancelled"


def test_asyncio_wait_for_loses_the_cancellation_on_this_python() -> None:
    # The race the others guard against, shown on asyncio's own wait_for (fixed in 3.12).
    got = asyncio.run(cancelled_as_it_finishes(lambda aw: asyncio.wait_for(aw, 5)))
    assert got == ("the reply" if sys.version_info < (3, 12) else "cancelled")


def test_within_keeps_the_cancellation() -> None:
    assert asyncio.run(cancelled_as_it_finishes(lambda aw: within(5, aw))) == "cancelled"


def test_within_gives_up_after_its_time_and_cancels_what_it_awaited() -> None:
    async def main() -> None:
        ended: list[str] = []

        async def slow() -> None:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                ended.append("cancelled")
                raise

        with pytest.raises(TimeoutError):
            await within(0.01, slow())
        assert ended == ["cancelled"]
        assert await within(5, asyncio.sleep(0, "value")) == "value"

    asyncio.run(main())


def test_wait_set_answers_whether_the_event_is_set_and_keeps_the_cancellation() -> None:
    async def main() -> None:
        ev = asyncio.Event()
        assert await wait_set(ev, 0.01) is False
        asyncio.get_running_loop().call_later(0.01, ev.set)
        assert await wait_set(ev, 5) is True

        stop = asyncio.Event()

        async def loop_until_stopped() -> str:
            while True:  # a loop that only a cancellation ends
                await wait_set(stop, 5)
                stop.clear()

        task = asyncio.create_task(loop_until_stopped())
        await asyncio.sleep(0)
        stop.set()  # set as the task is cancelled: the cancellation must still end it
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)

    asyncio.run(main())


def test_an_hec_send_cancelled_as_its_reply_arrives_is_cancelled() -> None:
    # The shutdown that never ended: the sink's send was cancelled just as the receiver's
    # answer came in; under wait_for the send returned the answer and the sink went on.
    async def main() -> str:
        service = HecService(token="tok", timeout_secs=5, tls=Tls(), https=False)
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        async def request(*_: Any) -> Any:
            return await reply

        service._client.request = request  # type: ignore[method-assign]  # the socket's part
        task = asyncio.create_task(service.send("http://h/e", b"{}", compressed=False, channel="c"))
        await asyncio.sleep(0)
        reply.set_result(type("Reply", (), {"status": 400, "body": b"{}", "headers": {}})())
        task.cancel()
        try:
            await task
            return "sent on"
        except asyncio.CancelledError:
            return "cancelled"
        finally:
            await service.close()

    assert asyncio.run(main()) == "cancelled"
