"""The tailer on real files: read from the start, follow appends, partial lines, rotation."""

from __future__ import annotations

import asyncio
import os
import tracemalloc
from pathlib import Path

from sidecar.sources.tail import Tailer


async def collect(t: Tailer, *, follow: bool, stop: asyncio.Event | None = None) -> list[bytes]:
    out: list[bytes] = []
    async for b in t.batches(follow=follow, stop=stop):
        out.extend(b.lines)
    return out


def test_once_reads_whole_file_including_final_partial_line(tmp_path: Path) -> None:
    p = tmp_path / "a.log"
    p.write_bytes(b"one\ntwo\nthree")
    t = Tailer([str(p)], read_chunk_bytes=4)  # tiny reads: lines span blocks
    assert asyncio.run(collect(t, follow=False)) == [b"one", b"two", b"three"]


def test_end_offsets_point_past_each_batch(tmp_path: Path) -> None:
    p = tmp_path / "a.log"
    p.write_bytes(b"aa\nbbb\ncc")

    async def go() -> list[tuple[list[bytes], int]]:
        t = Tailer([str(p)], read_chunk_bytes=5)
        return [(b.lines, b.end_offset) async for b in t.batches(follow=False)]

    got = asyncio.run(go())
    assert got[0] == ([b"aa"], 3)
    assert [x for lines, _ in got for x in lines] == [b"aa", b"bbb", b"cc"]
    assert got[-1][1] == 9


def test_follow_appends_partial_lines_and_rename_rotation(tmp_path: Path) -> None:
    p = tmp_path / "a.log"
    p.write_bytes(b"1\n")

    async def go() -> tuple[list[bytes], int]:
        stop = asyncio.Event()
        t = Tailer([str(p)], poll_interval_secs=0.02, rescan_interval_secs=0.05)
        task = asyncio.create_task(collect(t, follow=True, stop=stop))
        await asyncio.sleep(0.1)
        with p.open("ab") as fh:
            fh.write(b"2\n3")
        await asyncio.sleep(0.1)
        with p.open("ab") as fh:
            fh.write(b"\n4\n")
        await asyncio.sleep(0.1)
        rotated = tmp_path / "a.log.1"
        os.rename(p, rotated)
        with rotated.open("ab") as fh:
            fh.write(b"5\n")
        p.write_bytes(b"6\n")
        await asyncio.sleep(0.3)
        stop.set()
        return await task, t.rotations

    lines, rotations = asyncio.run(go())
    assert lines == [b"1", b"2", b"3", b"4", b"5", b"6"]
    assert rotations == 1


def test_copytruncate_reads_again_from_start(tmp_path: Path) -> None:
    p = tmp_path / "a.log"
    p.write_bytes(b"old line\n")

    async def go() -> list[bytes]:
        stop = asyncio.Event()
        t = Tailer([str(p)], poll_interval_secs=0.02)
        task = asyncio.create_task(collect(t, follow=True, stop=stop))
        await asyncio.sleep(0.1)
        p.write_bytes(b"n\n")  # truncated in place, shorter than before
        await asyncio.sleep(0.15)
        stop.set()
        out = await task
        assert t.truncations == 1
        return out

    assert asyncio.run(go()) == [b"old line", b"n"]


def test_glob_picks_up_new_files_and_start_at_end(tmp_path: Path) -> None:
    (tmp_path / "x-1.log").write_bytes(b"skip\n")

    async def go() -> list[bytes]:
        stop = asyncio.Event()
        t = Tailer(
            [str(tmp_path / "x-*.log")],
            start_at="end",
            poll_interval_secs=0.02,
            rescan_interval_secs=0.05,
        )
        task = asyncio.create_task(collect(t, follow=True, stop=stop))
        await asyncio.sleep(0.1)
        (tmp_path / "x-2.log").write_bytes(b"new file\n")
        with (tmp_path / "x-1.log").open("ab") as fh:
            fh.write(b"appended\n")
        await asyncio.sleep(0.2)
        stop.set()
        return await task

    assert sorted(asyncio.run(go())) == [b"appended", b"new file"]


def test_no_batch_is_held_through_the_next_read_nor_a_block_once_its_lines_are_cut(
    tmp_path: Path,
) -> None:
    """The memory bound of reading (the access reader's way: each batch's lines cut, then let
    go): under 2.5 read blocks at any time. A batch drops its block once its lines are cut,
    and the tailer holds no batch while it reads the next block; before, a block, its lines
    and the next block were alive together (three blocks and more)."""
    p = tmp_path / "a.log"
    p.write_bytes((b"x" * 999 + b"\n") * 8192)  # 8 MiB: eight 1 MiB reads

    async def go() -> int:
        n = 0
        async for b in Tailer([str(p)], read_chunk_bytes=1 << 20).batches(follow=False):
            n += len(b.lines)
            assert b.block is None  # the lines hold the same bytes
            del b  # as the pipeline's readers do
        return n

    tracemalloc.start()
    try:
        n = asyncio.run(go())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert n == 8192
    assert peak < 2.5 * (1 << 20)
