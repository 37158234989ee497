"""A proxy stand-in for the chaos test: replays generated access + body logs into DST at a
steady rate, in time order (streams interleave), rotating both logs by rename every few seconds
and sometimes writing a line in two pieces.

    python chaos_writer.py SRC DST SECS ROTATE_SECS SEED

The rotated files are DST/access.log.<n> and DST/body.log.<n>. When done it creates DST/done.
"""

from __future__ import annotations

import heapq
import os
import random
import sys
import time
from pathlib import Path


def ts(line: bytes) -> float:
    return float(line[6 : line.index(b",")])  # every line starts with {"ts":<number>,


class Log:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.n = 0
        self.fd = self._open()

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, data: bytes, rng: random.Random) -> None:
        if len(data) > 2 and rng.random() < 0.3:  # a line cut in two writes
            cut = rng.randrange(1, len(data) - 1)
            os.write(self.fd, data[:cut])
            time.sleep(0.002)
            data = data[cut:]
        os.write(self.fd, data)

    def rotate(self) -> None:
        os.close(self.fd)
        self.n += 1
        os.rename(self.path, f"{self.path}.{self.n}")
        self.fd = self._open()


def main() -> None:
    src, dst = Path(sys.argv[1]), Path(sys.argv[2])
    secs, rotate_secs, seed = float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
    rng = random.Random(seed)
    acc = [(ts(x), 0, x) for x in (src / "access.log").read_bytes().splitlines(keepends=True)]
    bod = [(ts(x), 1, x) for x in (src / "body.log").read_bytes().splitlines(keepends=True)]
    merged = list(heapq.merge(bod, acc))
    logs = [Log(dst / "access.log"), Log(dst / "body.log")]
    tick = 0.02
    per_tick = max(1, int(len(merged) / (secs / tick)))
    t0 = time.monotonic()
    next_rotate = [t0 + rotate_secs, t0 + rotate_secs * 1.5]  # the two logs rotate apart
    for i in range(0, len(merged), per_tick):
        pieces: list[list[bytes]] = [[], []]
        for _, which, line in merged[i : i + per_tick]:
            pieces[which].append(line)
        for which in (0, 1):
            if pieces[which]:
                logs[which].write(b"".join(pieces[which]), rng)
        now = time.monotonic()
        for which in (0, 1):
            if now >= next_rotate[which]:
                logs[which].rotate()
                next_rotate[which] = now + rotate_secs
        target = t0 + (i // per_tick + 1) * tick
        if target > now:
            time.sleep(target - now)
    for log in logs:
        os.close(log.fd)
    (dst / "done").touch()


if __name__ == "__main__":
    main()
