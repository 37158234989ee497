"""Serve an asyncio server from a daemon thread, for synchronous callers (subprocess-driven tests,
splunk-sdk): the test HEC server and the fake splunkd both use it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable


def run_in_thread(
    start: Callable[[], Awaitable[str]], stop: Callable[[], Awaitable[None]], what: str
) -> tuple[str, Callable[[], None]]:
    """Run `start()` on a private event loop in a daemon thread and keep it serving until the
    returned `stop` is called (which runs `stop()` there). Returns (the url `start` gave, stop)."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    done: asyncio.Future[None] | None = None
    url = ""

    async def main() -> None:
        nonlocal done, url
        done = loop.create_future()
        url = await start()
        ready.set()
        try:
            await done
        finally:
            await stop()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError(f"the {what} did not start within 10 seconds")

    def stop_serving() -> None:
        if done is not None and not loop.is_closed():
            loop.call_soon_threadsafe(lambda: done.done() or done.set_result(None))
            thread.join(10)
            loop.close()

    return url, stop_serving
