"""sd_notify over a real AF_UNIX datagram socket: path and abstract addresses, the watchdog."""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar.notify import Notifier, socket_address


@pytest.fixture
def notify_socket() -> Iterator[tuple[str, socket.socket]]:
    # AF_UNIX paths are limited to 108 bytes: a short folder, not pytest's tmp_path.
    folder = tempfile.mkdtemp(prefix="ntf")
    path = os.path.join(folder, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    try:
        yield path, sock
    finally:
        sock.close()
        os.unlink(path)
        os.rmdir(folder)


def recv_fields(sock: socket.socket) -> dict[str, str]:
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.split("\n"))


def test_ready_status_stopping_reach_a_path_socket(notify_socket) -> None:
    path, sock = notify_socket
    n = Notifier({"NOTIFY_SOCKET": path})
    assert n.enabled
    assert n.ready("lag 0 s,\nok")
    got = recv_fields(sock)
    assert got["READY"] == "1"
    assert got["STATUS"] == "lag 0 s, ok"  # one line: a newline would start a new assignment
    assert got["MAINPID"] == str(os.getpid())
    n.stopping()
    assert recv_fields(sock)["STOPPING"] == "1"
    n.close()


def test_abstract_socket() -> None:
    name = f"llm-hec-sidecar-test-{os.getpid()}-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    try:
        n = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert n.address == "\0" + name
        assert n.send(STATUS="hello")
        assert recv_fields(sock) == {"STATUS": "hello"}
        n.close()
    finally:
        sock.close()


def test_outside_systemd_nothing_is_sent_and_nothing_fails(tmp_path: Path) -> None:
    assert not Notifier({}).enabled
    assert Notifier({}).ready("x") is False
    assert socket_address("vsock:2:1234") is None
    # A socket that went away (systemd restarting) is warned about once, never raised.
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert n.send(WATCHDOG=1) is False
    assert n.send(WATCHDOG=1) is False
    n.close()


def test_watchdog_settings() -> None:
    pid = str(os.getpid())
    assert Notifier({"WATCHDOG_USEC": "3000000"}).watchdog_secs == 3.0
    assert Notifier({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": pid}).watchdog_secs == 3.0
    assert Notifier({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"}).watchdog_secs is None
    assert Notifier({"WATCHDOG_USEC": "0"}).watchdog_secs is None


def test_watchdog_pings_from_the_loop_at_half_the_interval(notify_socket) -> None:
    path, sock = notify_socket
    n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})  # 0.2 s: ping every 0.1 s
    ticks: list[float] = []

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(n.watchdog_loop(stop, lambda: ticks.append(time.monotonic())))
        await asyncio.sleep(0.55)
        # A stuck loop sends nothing: block it and count what arrives meanwhile.
        sock.setblocking(False)
        while True:
            try:
                sock.recv(4096)
            except BlockingIOError:
                break
        time.sleep(0.35)  # the loop is blocked: no task runs
        stuck = 0
        while True:
            try:
                sock.recv(4096)
                stuck += 1
            except BlockingIOError:
                break
        assert stuck == 0
        stop.set()
        await task

    asyncio.run(main())
    n.close()
    # About 0.55 s / 0.1 s pings before the block (fewer on a loaded machine, never more), and
    # never closer together than the half interval: half WATCHDOG_USEC, not a busy loop.
    assert 3 <= len(ticks) <= 9
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert min(gaps) >= 0.09, gaps
