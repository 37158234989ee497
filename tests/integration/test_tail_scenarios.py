"""Fluent Bit's in_tail scenarios on real files, with the tailer following in a thread while the
test rotates, truncates, relinks, deletes and creates files the way logrotate and proxies do."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sidecar.sources.checkpoint import FileEntry
from sidecar.sources.fingerprint import identify
from sidecar.sources.tail import LineBatch, Tailer


class Following:
    """A Tailer following in its own thread and event loop; `lines` grows as it reads."""

    def __init__(self, tailer: Tailer) -> None:
        self.tailer = tailer
        self.batches: list[LineBatch] = []
        self.lines: list[bytes] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(5)

    def _run(self) -> None:
        async def main() -> None:
            self._stop = asyncio.Event()
            self._ready.set()
            async for b in self.tailer.batches(follow=True, stop=self._stop):
                self.batches.append(b)
                self.lines.extend(b.lines)

        try:
            self._loop.run_until_complete(main())
        finally:
            self._loop.close()

    def wait(self, pred: Callable[[], bool], timeout: float = 10.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred():
                return
            time.sleep(0.01)
        raise AssertionError(f"timed out; lines so far: {self.lines[-5:]}")

    def wait_lines(self, n: int, timeout: float = 10.0) -> None:
        self.wait(lambda: len(self.lines) >= n, timeout)

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        assert not self._thread.is_alive()


def read_once(t: Tailer) -> list[bytes]:
    """Every line the tailer reads without following (`run --once`)."""

    async def go() -> list[bytes]:
        return [x async for b in t.batches(follow=False) for x in b.lines]

    return asyncio.run(go())


def numbered(prefix: str, a: int, b: int) -> bytes:
    return b"".join(f"{prefix}-{i:05d} some log text\n".encode() for i in range(a, b))


def names(prefix: str, a: int, b: int) -> list[bytes]:
    return numbered(prefix, a, b).splitlines()


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as fh:
        fh.write(data)


def tailer(patterns: list[Path | str], **kw: object) -> Tailer:
    kw.setdefault("poll_interval_secs", 0.02)
    kw.setdefault("rescan_interval_secs", 0.05)
    kw.setdefault("rotate_wait_secs", 0.3)
    return Tailer([str(p) for p in patterns], **kw)  # type: ignore[arg-type]


def held_back(t: Tailer, first: int, act: Callable[[], None], total: int) -> list[bytes]:
    """Follow with `t`; once `first` lines are read, stop iterating it (a reader held back by the
    join or a busy machine: the tailer neither reads nor scans), `act`, then go on until `total`
    lines and a few scans more. The lines read, in order."""
    got: list[bytes] = []

    async def main() -> None:
        stop, resume = asyncio.Event(), asyncio.Event()

        async def consume() -> None:
            async for b in t.batches(follow=True, stop=stop):
                got.extend(b.lines)
                if len(got) >= first:
                    await resume.wait()

        task = asyncio.create_task(consume())
        while len(got) < first and not task.done():
            await asyncio.sleep(0.01)
        act()
        resume.set()
        end = time.monotonic() + 10
        while len(got) < total and time.monotonic() < end:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # several scans more: nothing else is read
        stop.set()
        await asyncio.wait_for(task, 10)

    asyncio.run(main())
    return got


def test_rename_rotation_reads_the_old_file_to_its_end_first(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(numbered("a", 0, 100))
    f = Following(tailer([log]))
    try:
        f.wait_lines(100)
        with log.open("ab") as old:  # the proxy keeps writing to the old file for a moment
            os.rename(log, tmp_path / "access.log.1")
            log.write_bytes(numbered("b", 0, 50))
            old.write(numbered("a", 100, 120))
        f.wait_lines(170)
        time.sleep(0.5)  # past rotate_wait_secs: the old file is let go
        append(log, numbered("b", 50, 60))
        f.wait_lines(180)
    finally:
        f.close()
    assert sorted(f.lines) == sorted(names("a", 0, 120) + names("b", 0, 60))
    assert len(f.lines) == len(set(f.lines)) == 180
    assert f.tailer.rotations == 1
    # The old file's tail was read before the new file: a stream straddling it stays in order.
    assert f.lines.index(b"a-00119 some log text") < f.lines.index(b"b-00000 some log text")


def test_copytruncate_below_the_offset(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(numbered("a", 0, 100))
    f = Following(tailer([log]))
    try:
        f.wait_lines(100)
        with log.open("r+b") as fh:
            fh.truncate(0)
        append(log, numbered("b", 0, 10))
        f.wait_lines(110)
    finally:
        f.close()
    assert f.lines == names("a", 0, 100) + names("b", 0, 10)
    assert f.tailer.truncations == 1


def test_copytruncate_regrown_past_the_old_size_before_the_next_poll(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(numbered("a", 0, 50))
    f = Following(tailer([log], poll_interval_secs=0.5, rescan_interval_secs=5))
    try:
        f.wait_lines(50)
        with log.open("r+b") as fh:  # truncated and regrown to twice the size between polls
            fh.truncate(0)
            fh.write(numbered("b", 0, 100))
        f.wait_lines(150)
    finally:
        f.close()
    assert f.lines == names("a", 0, 50) + names("b", 0, 100)  # none of the 100 is lost
    assert f.tailer.truncations == 1


def test_copytruncate_copy_matched_by_the_glob_is_not_read_twice(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(numbered("a", 0, 100))
    f = Following(tailer([f"{tmp_path}/access.log*"]))
    try:
        f.wait_lines(100)
        append(log, numbered("a", 100, 110))  # written just before logrotate copies
        data = log.read_bytes()
        (tmp_path / "access.log.1").write_bytes(data)
        with log.open("r+b") as fh:
            fh.truncate(0)
        append(log, numbered("b", 0, 5))
        f.wait_lines(115)
        time.sleep(0.3)
    finally:
        f.close()
    assert sorted(f.lines) == sorted(names("a", 0, 110) + names("b", 0, 5))


def test_symlink_rotation_follows_the_target(tmp_path: Path) -> None:
    a, b, link = tmp_path / "a.log", tmp_path / "b.log", tmp_path / "current.log"
    a.write_bytes(numbered("a", 0, 20))
    link.symlink_to(a)
    f = Following(tailer([link]))
    try:
        f.wait_lines(20)
        b.write_bytes(numbered("b", 0, 10))
        tmp_link = tmp_path / "current.tmp"
        tmp_link.symlink_to(b)
        os.replace(tmp_link, link)  # atomic switch, as deploy tools do
        append(a, numbered("a", 20, 25))  # late lines of the old target
        f.wait_lines(35)
        append(b, numbered("b", 10, 15))
        f.wait_lines(40)
    finally:
        f.close()
    assert sorted(f.lines) == sorted(names("a", 0, 25) + names("b", 0, 15))
    assert len(f.lines) == 40


def test_delete_and_recreate(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(numbered("a", 0, 30))
    f = Following(tailer([log]))
    try:
        f.wait_lines(30)
        log.unlink()
        log.write_bytes(numbered("b", 0, 30))
        f.wait_lines(60)
    finally:
        f.close()
    assert f.lines == names("a", 0, 30) + names("b", 0, 30)


def test_file_appearing_after_start_is_read_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "late.log"
    f = Following(tailer([log], start_at="end"))  # start_at applies to files present at start
    try:
        time.sleep(0.1)
        log.write_bytes(numbered("a", 0, 10))
        f.wait_lines(10)
    finally:
        f.close()
    assert f.lines == names("a", 0, 10)


def test_glob_matching_rotated_names_reads_each_file_once(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(numbered("a", 0, 1000))
    (tmp_path / "access.log.2.gz").write_bytes(b"\x1f\x8b compressed, never read\n")
    f = Following(tailer([f"{tmp_path}/access.log*"]))
    try:
        f.wait_lines(1000)
        for n in range(3):  # three rename rotations; every rotated name matches the glob
            os.rename(log, tmp_path / f"access.log-{n}")
            log.write_bytes(numbered(f"r{n}", 0, 10))
            f.wait_lines(1000 + 10 * (n + 1))
        time.sleep(0.4)
    finally:
        f.close()
    expected = names("a", 0, 1000) + [x for n in range(3) for x in names(f"r{n}", 0, 10)]
    assert sorted(f.lines) == sorted(expected)
    assert all(b"compressed" not in x for x in f.lines)


def test_over_long_line_is_skipped_and_reported_by_position(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    long = b"x" * 50_000
    log.write_bytes(b"first\n" + long + b"\nafter\n" + b"y" * 3000 + b"\nlast\n")
    t = tailer([log], max_line_bytes=2048, read_chunk_bytes=4096)

    async def go() -> list[LineBatch]:
        return [b async for b in t.batches(follow=False)]

    batches = asyncio.run(go())
    lines = [x for b in batches for x in b.lines]
    skipped = [s for b in batches for s in b.skipped]
    assert lines == [b"first", b"after", b"last"]
    assert skipped == [(6, 50_000), (6 + 50_001 + 6, 3000)]
    assert t.lines_too_long == 2
    for b in batches:  # every batch's lines are contiguous from its start offset
        data = log.read_bytes()[b.start_offset : b.end_offset]
        if b.lines:
            assert data == b"".join(x + b"\n" for x in b.lines)


@pytest.mark.parametrize("chunk", [3, 7, 64, 1 << 20])
def test_block_boundaries_never_change_the_lines(tmp_path: Path, chunk: int) -> None:
    log = tmp_path / "a.log"
    data = numbered("a", 0, 50) + b"\n\nno newline at the end"
    log.write_bytes(data)
    t = tailer([log], read_chunk_bytes=chunk)

    async def go() -> list[LineBatch]:
        return [b async for b in t.batches(follow=False)]

    batches = asyncio.run(go())
    assert [x for b in batches for x in b.lines] == data.split(b"\n")
    assert batches[-1].end_offset == len(data)
    for b in batches:
        seg = data[b.start_offset : b.end_offset]
        assert seg in (b"".join(x + b"\n" for x in b.lines), b"\n".join(b.lines))


def test_partial_last_line_of_a_rotated_file_is_flushed_when_let_go(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(numbered("a", 0, 5) + b"cut short")  # the proxy died mid-line
    f = Following(tailer([log], rotate_wait_secs=0.2))
    try:
        f.wait_lines(5)
        time.sleep(0.2)
        assert len(f.lines) == 5  # a partial line waits for its newline ...
        os.rename(log, tmp_path / "access.log.1")
        log.write_bytes(numbered("b", 0, 2))
        f.wait_lines(8)  # ... until its rotated file is let go
    finally:
        f.close()
    assert f.lines[5:] in ([b"cut short", *names("b", 0, 2)], [*names("b", 0, 2), b"cut short"])
    last = next(b for b in f.batches if b.lines == [b"cut short"])
    assert (last.start_offset, last.end_offset) == (
        len(numbered("a", 0, 5)),
        len(numbered("a", 0, 5)) + 9,
    )


@pytest.mark.parametrize("pattern", ["access.log", "*.log"])
def test_a_file_rotated_away_between_two_scans_is_read_before_the_new_one(
    tmp_path: Path, pattern: str
) -> None:
    """The reader is held back (the join waits for the other log, the machine is busy) while the
    proxy rotates twice: the file in between was never at the path when a scan looked."""
    log = tmp_path / "access.log"
    before = tmp_path / "access.log.0"  # rotated before the sidecar started: not ours to read
    before.write_bytes(numbered("z", 0, 5))
    os.utime(before, (1_000_000, 1_000_000))
    log.write_bytes(numbered("a", 0, 20))
    t = tailer([tmp_path / pattern])

    def rotate_twice() -> None:
        os.rename(log, tmp_path / "access.log.1")
        log.write_bytes(numbered("b", 0, 30))
        os.rename(log, tmp_path / "access.log.2")
        log.write_bytes(numbered("c", 0, 10))

    got = held_back(t, 20, rotate_twice, 60)
    assert got == names("a", 0, 20) + names("b", 0, 30) + names("c", 0, 10)
    assert t.rotations == 2
    assert {e.path for e in t.known.values()} == {str(log), str(tmp_path / "access.log.2")}


@pytest.mark.parametrize("pattern", ["access.log", "*.log"])
def test_after_a_restart_a_file_missed_between_two_known_ones_is_read(
    tmp_path: Path, pattern: str
) -> None:
    """State left by a run that missed a rotated file (it knew the files before and after it):
    the restart reads the missed one, not the files older than all it knew."""
    log = tmp_path / "access.log"
    files = {
        "access.log.0": (numbered("z", 0, 5), 500_000_000),  # older than anything known
        "access.log.1": (numbered("a", 0, 20), 1_000_000_000),  # known, read to its end
        "access.log.2": (numbered("b", 0, 30), 1_100_000_000),  # missed
        "access.log": (numbered("c", 0, 10), 1_200_000_000),  # known, read up to line 4
    }
    for name, (data, mtime) in files.items():
        (tmp_path / name).write_bytes(data)
        os.utime(tmp_path / name, (mtime, mtime))
    known = {}
    for name, offset in (("access.log.1", len(numbered("a", 0, 20))), ("access.log", 0)):
        fd = os.open(tmp_path / name, os.O_RDONLY)
        ident = identify(fd)
        os.close(fd)
        assert ident is not None
        if name == "access.log":
            offset = len(numbered("c", 0, 4))
        known[ident.key] = FileEntry(
            str(log), ident.dev, ident.ino, ident.fp, ident.fp_len, offset, offset, [], 1.0
        )
    t = tailer([tmp_path / pattern], checkpoint=known)

    assert read_once(t) == names("b", 0, 30) + names("c", 4, 10)


def test_an_inode_reused_by_a_missed_file_is_not_taken_for_the_remembered_one(
    tmp_path: Path,
) -> None:
    """logrotate deletes the oldest rotated file and the next file created often gets its inode:
    a remembered entry with that inode but another first line is not the file on disk."""
    log = tmp_path / "access.log"
    for name, data, mtime in (
        ("access.log.1", numbered("a", 0, 20), 1_000_000_000),  # known, read to its end
        ("access.log.2", numbered("b", 0, 30), 1_100_000_000),  # missed; its inode was F0's
        ("access.log", numbered("c", 0, 10), 1_200_000_000),  # known, read to its end
    ):
        (tmp_path / name).write_bytes(data)
        os.utime(tmp_path / name, (mtime, mtime))
    known = {}
    for name in ("access.log.1", "access.log.2", "access.log"):
        fd = os.open(tmp_path / name, os.O_RDONLY)
        ident = identify(fd)
        os.close(fd)
        assert ident is not None
        size = (tmp_path / name).stat().st_size
        fp, fp_len = ident.fp, ident.fp_len
        if name == "access.log.2":  # F0, deleted since, was read past this file's size
            fp, fp_len, size = "0123456789abcdef", 24, 1 << 20
        e = FileEntry(str(log), ident.dev, ident.ino, fp, fp_len, size, size, [], 1.0)
        known[e.key] = e
    t = tailer([log], checkpoint=known)

    assert read_once(t) == names("b", 0, 30)


@pytest.mark.parametrize("older_copy", [False, True])
def test_copytruncate_while_held_back_reads_the_rest_from_the_copy(
    tmp_path: Path, older_copy: bool
) -> None:
    """Lines written after our last read and before logrotate's cut are only in the copy. A
    `cp` made earlier starts with the same line: it holds only lines read already."""
    log = tmp_path / "access.log"
    log.write_bytes(numbered("a", 0, 20))
    if older_copy:
        older = tmp_path / "access.log-1"
        older.write_bytes(numbered("a", 0, 10))
        os.utime(older, (1_000_000_000, 1_000_000_000))
    t = tailer([log])

    def copytruncate() -> None:
        append(log, numbered("a", 20, 35))
        (tmp_path / "access.log.1").write_bytes(log.read_bytes())
        with log.open("r+b") as fh:
            fh.truncate(0)
        append(log, numbered("b", 0, 5))

    got = held_back(t, 20, copytruncate, 40)
    assert got == names("a", 0, 35) + names("b", 0, 5)
    assert t.truncations == 1


def test_a_copy_of_a_file_read_is_not_taken_for_a_missed_one(tmp_path: Path) -> None:
    """`cp access.log access.log.20261127` is newer than the files remembered, named like a
    rotated file, and unknown: its first line says it is a copy of what was read."""
    log = tmp_path / "access.log"
    log.write_bytes(numbered("a", 0, 20))
    t = tailer([log])

    def copy_then_rotate() -> None:
        (tmp_path / "access.log.20261127").write_bytes(log.read_bytes())
        os.rename(log, tmp_path / "access.log.1")
        log.write_bytes(numbered("b", 0, 10))

    got = held_back(t, 20, copy_then_rotate, 30)
    assert got == names("a", 0, 20) + names("b", 0, 10)


@pytest.mark.parametrize("regrown", [True, False])
def test_after_a_restart_the_copy_of_a_file_truncated_meanwhile_is_read_from_our_offset(
    tmp_path: Path, regrown: bool
) -> None:
    """Restarted in logrotate's window: the truncated file may hold a new line, or nothing."""
    log = tmp_path / "access.log"
    log.write_bytes(numbered("a", 0, 35))
    fd = os.open(log, os.O_RDONLY)
    ident = identify(fd)
    os.close(fd)
    assert ident is not None
    offset = len(numbered("a", 0, 20))  # where the last run's checkpoint stood
    e = FileEntry(str(log), ident.dev, ident.ino, ident.fp, ident.fp_len, offset, offset, [], 1.0)
    (tmp_path / "access.log.1").write_bytes(log.read_bytes())  # copytruncate while down
    with log.open("r+b") as fh:
        fh.truncate(0)
    if regrown:
        append(log, numbered("b", 0, 5))
    t = tailer([log], checkpoint={e.key: e})

    assert read_once(t) == names("a", 20, 35) + (names("b", 0, 5) if regrown else [])


def test_a_file_rotated_between_start_up_and_the_first_read_is_read(tmp_path: Path) -> None:
    """The sidecar's start-up (spool replay, sinks) comes between making the tailer and its
    first read: the file at the path when it was made is the first one read."""
    log = tmp_path / "access.log"
    log.write_bytes(numbered("a", 0, 20))
    t = tailer([log])
    os.rename(log, tmp_path / "access.log.1")
    log.write_bytes(numbered("b", 0, 10))

    assert read_once(t) == names("a", 0, 20) + names("b", 0, 10)


def test_empty_rotated_files_and_other_logs_beside_are_not_taken_for_missed_ones(
    tmp_path: Path,
) -> None:
    """logrotate rotates empty logs too (`ifempty`); `access.log-json` is another live log."""
    log = tmp_path / "access.log"
    log.write_bytes(numbered("a", 0, 20))
    (tmp_path / "access.log-json").write_bytes(numbered("j", 0, 5))
    t = tailer([log])

    def rotate() -> None:
        (tmp_path / "access.log.2").write_bytes(b"")  # an empty log rotated earlier
        os.rename(log, tmp_path / "access.log.1")
        log.write_bytes(numbered("b", 0, 10))

    got = held_back(t, 20, rotate, 30)
    assert got == names("a", 0, 20) + names("b", 0, 10)
    assert t.rotations == 1
