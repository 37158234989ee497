"""Stage supervision: a stage task that dies stops the process loudly (exit 1, systemd restarts
it) after keeping what can be kept; the signal handlers; the last check before an event is
written."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
from typing import Any

from sidecar.spool.segment import encode_event
from sidecar.types import OutEvent
from sidecar.waits import within

log = logging.getLogger("sidecar.pipeline")


class SupervisionMixin:
    """Watching the stage tasks of a Pipeline."""

    def _stage_failed_once(self, stage: str, exc: BaseException) -> None:
        """Log the first unexpected failure of a stage boundary with its traceback (a bug)."""
        key = f"{stage}_failures_total"
        if not self.telemetry.counters[key]:
            log.error(
                "A record failed in the %s stage (%s: %s): this is a bug, please report it. The "
                "record is set aside with its position; the pipeline goes on.",
                stage,
                type(exc).__name__,
                exc,
                exc_info=exc,
            )
        self.telemetry.counters[key] += 1

    async def _supervise(self, readers: list[asyncio.Task], *stages: asyncio.Task) -> Any:
        """Wait for the readers; a stage that ends before them has died. Returns None, or
        (task name, exception) of the first stage that died."""
        gathered = asyncio.ensure_future(asyncio.gather(*readers))
        watch = {gathered, *stages}
        while True:
            done, _ = await asyncio.wait(watch, return_when=asyncio.FIRST_COMPLETED)
            if gathered in done:
                exc = gathered.exception()
                return None if exc is None else ("reader", exc)
            # The readers are cancelled next: retrieve their outcome so that it is not
            # reported as "never retrieved".
            gathered.add_done_callback(lambda f: f.cancelled() or f.exception())
            task = done.pop()
            exc = None if task.cancelled() else task.exception()
            return (task.get_name(), exc or RuntimeError("the stage ended early"))

    async def _salvage(self, failed: Any, readers: list[asyncio.Task], *stages: Any) -> None:
        """A stage died: stop reading, put what was already enriched into the spool (durable:
        it is delivered at the next start), close what can be closed, then raise StageFailed
        (the normal drain would wait on the dead stage forever)."""
        name, exc = failed
        log.error(
            "The %s stage stopped (%s: %s): keeping what can be kept and exiting so that the "
            "service manager restarts the sidecar.",
            name,
            type(exc).__name__,
            exc,
            exc_info=exc,
        )
        spool_task = next((t for t in stages if t is not None and t.get_name() == "spool"), None)
        for task in [*readers, *stages, getattr(self, "_watchdog", None)]:
            if task is not None and not task.done() and task is not spool_task:
                task.cancel()
        if spool_task is not None and not spool_task.done():
            with contextlib.suppress(Exception):
                self._events_q.put_nowait(None)
                await within(10, spool_task)
        self._give_up.set()

        for sink in self.sinks:
            with contextlib.suppress(Exception):
                await within(10, sink.close())
        with contextlib.suppress(Exception):
            await within(10, self.spool.close())
        for src in self.sources:
            src.access_tail.close()
            if src.body_tail is not None:
                src.body_tail.close()
        self.telemetry.close()
        raise StageFailed(name, exc)


class StageFailed(Exception):
    """A stage task died: the process must exit non-zero (systemd restarts it)."""

    def __init__(self, stage: str, exc: BaseException) -> None:
        self.stage = stage
        self.exc = exc
        super().__init__(f"the {stage} stage stopped: {type(exc).__name__}: {exc}")


def encodable(ev: OutEvent) -> bool:
    """Whether the event can be written by every sink (orjson, a plain-decimal time); a value
    that slipped past validation costs this event, never the sink task. Makes the spool record
    on the way (`ev.payload`): the event is serialised once."""
    if not (math.isfinite(ev.time) and 0 <= ev.time < 1e11):
        return False
    try:
        ev.payload = encode_event(ev)
    except (TypeError, ValueError):
        return False
    return True


def install_signal_handlers(
    stop: asyncio.Event, hurry: asyncio.Event | None = None, backstop_secs: float | None = None
) -> None:
    """SIGTERM/SIGINT stop reading and deliver for up to `shutdown_timeout_secs`; a second one
    sets `hurry`: delivery stops at once, what is undelivered stays in the spool. With
    `backstop_secs`, a shutdown that hangs longer than that (a bug) ends the process, exit 1."""
    loop = asyncio.get_running_loop()

    def give_up() -> None:
        log.error(
            "Shutdown did not finish within %g s although delivery stops after "
            "shutdown_timeout_secs: a stage is stuck (a bug, please report it). Exiting now with "
            "status 1; what is in the spool is delivered at the next start.",
            backstop_secs,
        )
        logging.shutdown()
        os._exit(1)

    def handler(signame: str) -> None:
        if stop.is_set():
            log.warning(
                "Second %s: stopping delivery now; undelivered events stay in the spool.", signame
            )
            if hurry is not None:
                hurry.set()
            return
        log.info("%s received: stopping reading, delivering what is spooled.", signame)
        stop.set()
        if backstop_secs:
            loop.call_later(backstop_secs, give_up)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, handler, sig.name)
