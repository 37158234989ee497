"""sd_notify without a C dependency: one datagram per message to `$NOTIFY_SOCKET`.

The protocol (https://www.freedesktop.org/software/systemd/man/latest/sd_notify.html) is a
newline-separated list of `KEY=VALUE` assignments sent as one datagram to the AF_UNIX socket named
in `NOTIFY_SOCKET`; a name starting with `@` is an abstract socket (its first byte is a NUL).
`WATCHDOG_USEC` asks for `WATCHDOG=1` at least that often; systemd's documentation advises
pinging at half the interval. `WATCHDOG_PID`, when set, names the process it is meant for.

The watchdog ping is sent by a task of the event loop itself (`watchdog_loop`), so a loop that
is stuck (a blocking call, a busy loop) stops pinging and systemd restarts the service.
Outside systemd (no `NOTIFY_SOCKET`) every call is a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping

from sidecar.waits import wait_set

log = logging.getLogger("sidecar.notify")


def socket_address(value: str) -> str | None:
    """The address to send to: a path, or an abstract name with a leading NUL; None if unusable."""
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None  # vsock (vsock:CID:PORT) and relative paths are not supported


class Notifier:
    """Sends sd_notify messages. `enabled` is False outside systemd, and then sending is free."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        environ = os.environ if env is None else env
        self.address = socket_address(environ.get("NOTIFY_SOCKET", ""))
        self.watchdog_secs = _watchdog_secs(environ)
        self._sock: socket.socket | None = None
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, **fields: str | int) -> bool:
        """Send `KEY=VALUE` lines (e.g. `send(READY=1, STATUS="...")`); True if it went out."""
        if self.address is None:
            return False
        msg = "\n".join(f"{k}={_one_line(str(v))}" for k, v in fields.items())
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(msg.encode(), self.address)
        except OSError as exc:
            if not self._warned:  # systemd may be restarting; never let this stop the pipeline
                self._warned = True
                log.warning("Cannot notify systemd at NOTIFY_SOCKET (%s); going on.", exc)
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send(READY=1, STATUS=status, MAINPID=os.getpid())

    def status(self, status: str) -> bool:
        return self.send(STATUS=status)

    def stopping(self, status: str = "draining and stopping") -> bool:
        return self.send(STOPPING=1, STATUS=status)

    def reloading(self) -> bool:
        return self.send(RELOADING=1, STATUS="reloading")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def watchdog_loop(
        self, stop: asyncio.Event, tick: Callable[[], None] | None = None
    ) -> None:
        """Ping `WATCHDOG=1` at half `WATCHDOG_USEC` from the event loop until `stop` is set.

        `tick`, when given, runs at each ping (the status line is refreshed there)."""
        interval = self.watchdog_secs / 2 if self.watchdog_secs else None
        while not stop.is_set():
            if interval is not None:
                self.send(WATCHDOG=1)
            if tick is not None:
                tick()
            await wait_set(stop, min(interval or 5.0, 5.0))


def _watchdog_secs(environ: Mapping[str, str]) -> float | None:
    usec = environ.get("WATCHDOG_USEC", "")
    pid = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None  # meant for another process (e.g. the shell that started us)
    return int(usec) / 1_000_000


def _one_line(value: str) -> str:
    return value.replace("\n", " ")


@contextlib.contextmanager
def reloading() -> Iterator[None]:
    """systemd's reload protocol around a reload (SIGHUP): RELOADING=1 ... READY=1."""
    notifier = Notifier()
    notifier.send(RELOADING=1, MONOTONIC_USEC=time.monotonic_ns() // 1000)
    try:
        yield
    finally:
        notifier.send(READY=1)
        notifier.close()
