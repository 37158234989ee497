"""The spool on real files: durability hand-back, restart, size cap, damage."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from pathlib import Path
from typing import Any

import orjson
import pytest

from sidecar.spool import Spool
from sidecar.spool.segment import LABEL_KEYS, encode_records, segment_name
from sidecar.types import OutEvent


def ev(i: int, pad: int = 0) -> OutEvent:
    return OutEvent(body={"event_id": f"e{i}", "pad": "x" * pad}, time=1.7e9 + i, source="/a.log")


def make(tmp: Path, durable: list[OutEvent] | None = None, **kw: int) -> Spool:
    kw.setdefault("max_bytes", 1 << 20)
    kw.setdefault("segment_bytes", 4096)
    sp = Spool(
        str(tmp / "spool"),
        on_durable=(durable.extend if durable is not None else None),
        **kw,  # type: ignore[arg-type]
    )
    sp.open()
    return sp


async def drain(reader, n: int | None = None) -> list[str]:  # type: ignore[no-untyped-def]
    got: list[str] = []
    while n is None or len(got) < n:
        entries = await reader.read(7, 1 << 20)
        if not entries:
            break
        got += [e.event.body["event_id"] for e in entries]
        reader.release(e.seq for e in entries)
    return got


def test_append_is_durable_then_read_by_every_reader_and_released(tmp_path: Path) -> None:
    async def main() -> None:
        durable: list[OutEvent] = []
        sp = make(tmp_path, durable)
        a, b = sp.reader("a"), sp.reader("b")
        batch = [ev(i, 300) for i in range(40)]
        assert await sp.append(batch)
        assert durable == batch  # handed back after the fsync, the same objects
        assert sp.bytes_used > 0 and len(os.listdir(tmp_path / "spool" / "segments")) > 1
        sp.finish_input()
        assert await drain(a) == [f"e{i}" for i in range(40)]
        assert sp.pending_events == 40  # b has released nothing: nothing can go
        assert await drain(b) == [f"e{i}" for i in range(40)]
        assert sp.pending_events == 0
        await sp.close()
        assert sp.bytes_used == 0 and os.listdir(tmp_path / "spool" / "segments") == []
        mode = stat.S_IMODE(os.stat(tmp_path / "spool" / "cursors.json").st_mode)
        assert mode == 0o600

    asyncio.run(main())


def test_restart_resends_only_what_was_not_released(tmp_path: Path) -> None:
    async def main() -> None:
        sp = make(tmp_path)
        r = sp.reader("hec")
        await sp.append([ev(i, 200) for i in range(50)])
        entries = await r.read(30, 1 << 20)
        r.release(e.seq for e in entries[:10])  # 10 delivered, 20 in flight
        r.release(e.seq for e in entries[15:20])  # out of order: the watermark stays at 10
        await sp.close()

        sp2 = make(tmp_path)
        r2 = sp2.reader("hec")
        await sp2.append([ev(50)])
        sp2.finish_input()
        got = await drain(r2)
        assert got[0] == "e10" and got[-1] == "e50"
        assert set(got) == {f"e{i}" for i in range(10, 51)}
        await sp2.close()

    asyncio.run(main())


def test_full_spool_applies_backpressure_with_a_loud_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        sp = make(tmp_path, max_bytes=64 * 1024, segment_bytes=16 * 1024)
        r = sp.reader("hec")
        n = 0
        while sp.bytes_used < 60 * 1024:
            await sp.append([ev(n, 900)])
            n += 1
        blocked = asyncio.create_task(sp.append([ev(n, 9000)]))
        await asyncio.sleep(0.2)
        assert not blocked.done() and sp.health()  # waits: backpressure, health says why
        assert sp.bytes_used <= sp.max_bytes
        got = await drain(r, n)  # the sink catches up
        await asyncio.wait_for(blocked, 5)
        assert blocked.result() is True and sp.health() == []
        sp.finish_input()
        got += await drain(r)
        assert got == [f"e{i}" for i in range(n + 1)]  # nothing lost, nothing out of order
        give_up = asyncio.Event()
        give_up.set()
        await sp.close()

    caplog.set_level(logging.WARNING, logger="sidecar.spool")
    asyncio.run(main())
    assert "THE SPOOL IS FULL" in caplog.text and "spool.max_bytes" in caplog.text


def test_give_up_ends_the_wait_without_writing(tmp_path: Path) -> None:
    async def main() -> None:
        sp = make(tmp_path, max_bytes=16 * 1024, segment_bytes=4096)
        sp.reader("hec")
        while sp.bytes_used < 15 * 1024:
            await sp.append([ev(0, 900)])
        give_up = asyncio.Event()
        task = asyncio.create_task(sp.append([ev(1, 5000)], give_up))
        await asyncio.sleep(0.1)
        give_up.set()
        assert await asyncio.wait_for(task, 3) is False
        assert sp.stats["spool_events_not_spooled_total"] == 1
        await sp.close()

    asyncio.run(main())


def test_corrupt_segment_is_quarantined_and_the_rest_delivered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        sp = make(tmp_path, segment_bytes=4096)
        sp.reader("hec")
        for i in range(60):
            await sp.append([ev(i, 300)])
        await sp.close()
        segs = sorted((tmp_path / "spool" / "segments").iterdir())
        assert len(segs) >= 3
        victim = segs[1]
        data = bytearray(victim.read_bytes())
        data[len(data) // 2] ^= 0xFF  # one flipped byte in a middle segment
        victim.write_bytes(bytes(data))
        # and a torn write at the very end of the last segment
        with segs[-1].open("ab") as fh:
            fh.write(b"\x10\x00\x00\x00abc")

        sp2 = make(tmp_path)
        r = sp2.reader("hec")
        sp2.finish_input()
        got = await drain(r)
        await sp2.close()
        lost = {f"e{i}" for i in range(60)} - set(got)
        assert lost and len(lost) < 15  # only the records after the damage in that segment
        assert got == sorted(got, key=lambda s: int(s[1:]))
        assert "e0" in got and "e59" in got  # the segments before and after are delivered
        assert sp2.stats["spool_segments_quarantined_total"] == 1 and sp2.quarantined
        qdir = tmp_path / "spool" / "quarantine"
        (copy,) = list(qdir.iterdir())
        assert copy.read_bytes() == bytes(data)  # kept byte for byte for inspection

    caplog.set_level(logging.WARNING, logger="sidecar.spool")
    asyncio.run(main())
    assert "is damaged (a checksum mismatch" in caplog.text
    assert "stopped during a write" in caplog.text


def test_a_failing_disk_pauses_the_spool_and_nothing_is_lost_or_damaged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from sidecar.spool import disk

    real = disk._write_fd
    failures = {"left": 2}

    def full_disk(fd: int, bufs: list[bytes]) -> int:
        if failures["left"]:
            failures["left"] -= 1
            data = b"".join(bufs)
            real(fd, [data[: len(data) // 2]])  # half a batch reaches the file, then ENOSPC
            raise OSError(28, "No space left on device")
        return real(fd, bufs)

    async def main() -> None:
        durable: list[OutEvent] = []
        sp = make(tmp_path, durable)
        r = sp.reader("hec")
        await sp.append([ev(i, 100) for i in range(5)])
        monkeypatch.setattr(disk, "_write_fd", full_disk)
        monkeypatch.setattr(disk, "WRITE_RETRY_SECS", 0.05)
        task = asyncio.create_task(sp.append([ev(i, 100) for i in range(5, 10)]))
        await asyncio.sleep(0.02)
        assert not task.done() and "No space left" in sp.health()[0]
        assert await asyncio.wait_for(task, 5) is True
        assert sp.health() == [] and [e.body["event_id"] for e in durable] == [
            f"e{i}" for i in range(10)
        ]
        await sp.close()
        sp2 = make(tmp_path)  # the half-written batches were cut off: no damage on restart
        r = sp2.reader("hec")
        sp2.finish_input()
        assert await drain(r) == [f"e{i}" for i in range(10)]
        assert sp2.stats["spool_segments_quarantined_total"] == 0
        await sp2.close()

    caplog.set_level(logging.WARNING, logger="sidecar.spool")
    asyncio.run(main())
    assert "Cannot write the spool" in caplog.text and "writable again" in caplog.text


def test_short_writes_and_many_records_per_segment_keep_every_record_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The spool writes each record's header and payload as separate buffers, at most
    _IOV_MAX at a time: a kernel that takes only part of them (a short write, here at most 333
    bytes, so cut inside headers and payloads) and batches of more records than one call
    takes must still give every record whole, in order, in segments that scan clean."""
    from sidecar.spool import disk
    from sidecar.spool.segment import scan

    real = disk._write_fd
    calls: list[int] = []

    def short(fd: int, bufs: list[bytes]) -> int:
        calls.append(len(bufs))
        return real(fd, [b"".join(bytes(b) for b in bufs)[:333]])

    async def main() -> None:
        monkeypatch.setattr(disk, "_write_fd", short)
        durable: list[OutEvent] = []
        sp = make(tmp_path, durable, segment_bytes=200_000)
        batch = [ev(i, i % 97) for i in range(1500)]  # > _IOV_MAX / 2 records per segment
        assert await sp.append(batch)
        assert durable == batch and max(calls) == disk._IOV_MAX
        segs = sorted((tmp_path / "spool" / "segments").iterdir())
        assert len(segs) > 1
        results = [scan(str(p)) for p in segs]
        assert all(r.damage is None for r in results)
        assert sum(r.count for r in results) == 1500
        assert sp.stats["spool_bytes_written_total"] == sum(r.size for r in results)
        await sp.close()
        sp2 = make(tmp_path, segment_bytes=200_000)  # read back from the files, not memory
        r = sp2.reader("file")
        sp2.finish_input()
        assert await drain(r) == [f"e{i}" for i in range(1500)]
        await sp2.close()

    asyncio.run(main())


def test_the_pipeline_serialises_an_event_once_and_the_spool_keeps_that_record(
    tmp_path: Path,
) -> None:
    from sidecar.pipeline import encodable

    good = ev(1)
    assert encodable(good) and good.payload is not None
    meta, labels, body = good.payload.split(b"\n")
    assert orjson.loads(meta) == [good.time, "/a.log", "llm:usage"]
    assert orjson.loads(labels) == [None] * len(LABEL_KEYS)
    assert body == orjson.dumps(good.body)  # the bytes every sink writes as they are
    good.body["event_id"] = "changed after the check"  # the record written is the one checked
    bad = OutEvent(body={"event_id": "e2", "n": 2**70}, time=1.7e9, source="/a.log")
    assert not encodable(bad) and bad.payload is None  # set aside, never reaches the spool
    assert not encodable(OutEvent(body={}, time=float("nan"), source=None))

    async def go() -> list[str]:
        sp = make(tmp_path)
        await sp.append([good, ev(3)])  # the second has no payload: the spool makes it
        sp.finish_input()
        out = await drain(sp.reader("r"))
        await sp.close()
        return out

    assert asyncio.run(go()) == ["e1", "e3"]


def test_a_segment_of_the_earlier_format_still_replays_byte_for_byte(tmp_path: Path) -> None:
    """Records written before the metadata line (one JSON array `[time, source, sourcetype,
    body]`) are read after an upgrade: the file sink writes the same line, HEC the same
    envelope, as for a record of the current format."""
    from sidecar.sinks.file import FileSink
    from sidecar.sinks.hec.encoder import encode_event as hec_envelope

    body = {"event_id": "old", "model": "gpt-4o", "status": "ok", "text": "a\nb", "n": 1.5}
    old = orjson.dumps([1.7e9, "/a.log", "llm:usage", body])
    assert b"\n" not in old
    segments = tmp_path / "spool" / "segments"
    segments.mkdir(parents=True)
    (segments / segment_name(0)).write_bytes(encode_records(0, [old])[0])

    async def main() -> list[bytes]:
        sp = make(tmp_path)
        r = sp.reader("file")
        await sp.append([OutEvent(body=body, time=1.7e9, source="/a.log")])  # the new format
        sp.finish_input()
        entries = await r.read(10, 1 << 20)
        await sp.close()
        return [e.payload for e in entries]

    old_payload, new_payload = asyncio.run(main())
    assert old_payload == old and new_payload != old
    for envelope in (False, True):
        sink = FileSink(str(tmp_path / f"out{envelope}.ndjson"), envelope=envelope, host="h")
        asyncio.run(sink.write_payloads([old_payload, new_payload]))
        asyncio.run(sink.close())
        first, second = (tmp_path / f"out{envelope}.ndjson").read_bytes().splitlines()
        assert first == second
        assert (orjson.loads(first)["event"] if envelope else orjson.loads(first)) == body
    from sidecar.spool.segment import decode_event

    envs = [
        hec_envelope(decode_event(p), host="h", index=None, source=None)
        for p in (old_payload, new_payload)
    ]
    assert envs[0] == envs[1]
    assert orjson.loads(envs[0])["fields"] == {"model": "gpt-4o", "status": "ok"}


def test_records_are_read_a_block_at_a_time_whatever_their_sizes(tmp_path: Path) -> None:
    """`read_records` reads blocks (READ_AHEAD), not records: records smaller and larger than a
    block, and limits by count and bytes, give exactly the records written, in order."""
    from sidecar.spool.segment import READ_AHEAD, encode_records, read_records

    sizes = [10, 3, READ_AHEAD * 2 + 5, 1, READ_AHEAD - 16, 7, READ_AHEAD, 0, 900]
    payloads = [bytes([65 + i]) * n for i, n in enumerate(sizes)]
    path = tmp_path / "seg"
    path.write_bytes(b"".join(encode_records(40, payloads)))
    end = path.stat().st_size
    with open(path, "rb") as fh:
        got, off = read_records(fh, 0, end, 100, 1 << 30)
        assert got == list(enumerate(payloads, 40)) and off == end
        got, off = read_records(fh, 0, end, 2, 1 << 30)
        assert got == [(40, payloads[0]), (41, payloads[1])]
        rest, off2 = read_records(fh, off, end, 100, 1)  # at least one, then the byte bound
        assert rest == [(42, payloads[2])]
        more, off3 = read_records(fh, off2, end, 100, READ_AHEAD + 10)
        assert [s for s, _ in more] == [43, 44, 45, 46] and off3 < end  # the last one crosses


def test_a_record_that_changed_on_disk_is_an_error_not_data(tmp_path: Path) -> None:
    """Each record is checked as it is read: a length past the durable end, a sequence out of
    order, a changed byte (the CRC), a file cut shorter than written raise OSError."""
    import struct

    from sidecar.spool.segment import encode_records, read_records

    recs = encode_records(0, [b"a" * 100, b"b" * 100, b"c" * 100])
    path = tmp_path / "seg"
    cases = {
        "length past the end": recs[0] + struct.pack("<I", 10**6) + recs[1][4:] + recs[2],
        "sequence out of order": recs[0] + encode_records(5, [b"b" * 100])[0] + recs[2],
        # what is read goes to Splunk: a changed payload byte is caught by the CRC
        "payload byte changed": recs[0] + recs[1][:-1] + bytes([recs[1][-1] ^ 1]) + recs[2],
    }
    end = sum(map(len, recs))
    for data in cases.values():  # the keys name the cases
        path.write_bytes(data)
        with open(path, "rb") as fh, pytest.raises(OSError, match="changed on disk"):
            read_records(fh, 0, end, 100, 1 << 30)
    path.write_bytes(b"".join(recs)[:-50])  # shorter than the durable size said
    with open(path, "rb") as fh, pytest.raises(OSError, match="changed on disk"):
        read_records(fh, 0, end, 100, 1 << 30)
    with open(path, "rb") as fh:  # what is whole before it is still read
        assert read_records(fh, 0, end, 2, 1 << 30)[0] == [(0, b"a" * 100), (1, b"b" * 100)]


def test_readers_take_the_latest_records_from_memory_and_the_rest_from_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The latest durable records (`Spool.recent`, at most RECENT_BYTES of payload) reach the
    readers from memory; older ones are read back from their segments. Either way a reader gets
    every record once, in order, with the bytes written: across segment boundaries, through the
    switch from memory to the file (a reader that fell behind the memory) and back, with
    releases before a restart skipped; and a record taken from memory is never read back."""
    from sidecar.spool import disk, reader, segment

    monkeypatch.setattr(disk, "RECENT_BYTES", 5_000)  # about 15 records of ~330 bytes
    file_reads: list[int] = []

    def counting_read(fh, offset, end, max_records, max_bytes):  # type: ignore[no-untyped-def]
        recs, off = segment.read_records(fh, offset, end, max_records, max_bytes)
        file_reads.extend(seq for seq, _ in recs)
        return recs, off

    monkeypatch.setattr(reader, "read_records", counting_read)

    async def main() -> None:
        sp = make(tmp_path)  # segments of 4 KiB: a dozen records each
        fast, slow, mid = sp.reader("fast"), sp.reader("slow"), sp.reader("mid")
        written: list[bytes] = []
        for start in range(0, 100, 10):
            batch = [ev(i, 300) for i in range(start, start + 10)]
            assert await sp.append(batch)
            written += [segment.encode_event(e) for e in batch]
            if start == 0:  # mid takes 5 from memory, then falls behind it
                first = await mid.read(5, 1 << 20)
                assert [(e.seq, e.payload) for e in first] == list(enumerate(written[:5]))
            entries = await fast.read(100, 1 << 20)  # keeps up: all from memory
            assert [e.seq for e in entries] == list(range(start, start + 10))
            assert [e.payload for e in entries] == written[start:]
            fast.release(e.seq for e in entries)
        assert not file_reads
        assert len(sp.recent_seqs) < 20 and sp.recent_seqs[-1] == 99
        # mid goes on from the file where memory left it (in the middle of a segment)
        rest = await mid.read(200, 1 << 20)
        assert [(e.seq, e.payload) for e in rest] == list(enumerate(written))[5:]
        assert file_reads[0] == 5 and 5 < len(file_reads) < 95
        file_reads.clear()
        # the slow reader starts from the file, then goes on from memory where it begins
        got = []
        while entries := await slow.read(7, 1 << 20):
            got += entries
            slow.release(e.seq for e in entries)
            if len(got) == 98:  # more records come meanwhile
                assert await sp.append([ev(100, 300)])
                written.append(segment.encode_event(ev(100, 300)))
                sp.finish_input()
        assert [e.seq for e in got] == list(range(101))
        assert [e.payload for e in got] == written
        assert file_reads and file_reads == list(range(len(file_reads)))  # each read once
        assert sp.recent_seqs[0] <= len(file_reads)  # the rest came from memory
        assert [e.seq for e in await fast.read(10, 1 << 20)] == [100]
        await sp.close()
        assert not sp.recent

        # after a restart what is left comes from the file
        sp2 = make(tmp_path)
        r2 = sp2.reader("fast")
        sp2.finish_input()
        again = await r2.read(10, 1 << 20)  # fast had not released e100
        assert [(e.seq, e.payload) for e in again] == [(100, written[100])]
        assert file_reads[-1] == 100 and not sp2.recent
        await sp2.close()

    asyncio.run(main())


@pytest.mark.parametrize("seed", range(8))
def test_memory_and_file_paths_give_the_same_records_under_random_limits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    """Random batches, payload sizes, read limits and releases, with `Spool.recent` small
    enough that readers go from memory to the file and back, and a restart: each reader gets
    every record it has not released exactly once, in order, with the bytes written, never more
    than `max_events` nor (past the first record) `max_bytes`; the memory holds the newest
    records, at most RECENT_BYTES of payload."""
    import random

    from sidecar.spool import disk, segment

    rng = random.Random(seed)
    monkeypatch.setattr(disk, "RECENT_BYTES", rng.choice([600, 2_000, 9_000]))
    written: list[bytes] = []

    last_seqs: dict[str, Any] = {}  # what each reader's last read returned

    async def read(r, max_events: int, max_bytes: int) -> list[tuple[int, bytes]]:  # type: ignore[no-untyped-def]
        """Reader "c" reads as the file sink does (`read_payloads`), the others as HEC does."""
        if r.name != "c":
            entries = await r.read(max_events, max_bytes)
            last_seqs[r.name] = [e.seq for e in entries]
            return [(e.seq, e.payload) for e in entries]
        seqs, payloads = await r.read_payloads(max_events, max_bytes)
        if seqs and list(seqs) == list(range(seqs[0], seqs[0] + len(seqs))):
            assert type(seqs) is range  # no gap: `release` takes it at once
        last_seqs[r.name] = seqs
        return list(zip(seqs, payloads, strict=True))

    async def run() -> None:
        sp = make(tmp_path)
        readers = [sp.reader(n) for n in ("a", "b", "c")]
        expect: dict[str, list[int]] = {}
        for r in readers:  # some released before (out of order): skipped, memory or file
            left = range(r.watermark, len(written))
            before = {s for s in left if rng.random() < 0.3}
            r.release(before)
            expect[r.name] = [s for s in left if s not in before]
        seen: dict[str, list[int]] = {r.name: [] for r in readers}
        for _ in range(rng.randint(5, 25)):
            pads = [rng.choice([0, 10, 200, 900]) for _ in range(rng.randint(1, 12))]
            batch = [ev(len(written) + i, pad) for i, pad in enumerate(pads)]
            assert await sp.append(batch)
            for r in readers:
                expect[r.name] += range(len(written), len(written) + len(batch))
            written.extend(segment.encode_event(e) for e in batch)
            held = sp.recent_seqs
            assert sum(len(written[s]) for s in held) <= disk.RECENT_BYTES
            assert not held or held[-1] == len(written) - 1
            for r in readers:
                if rng.random() < 0.5:
                    continue  # falls behind
                max_events, max_bytes = rng.randint(1, 15), rng.choice([1, 300, 2_000, 1 << 20])
                got = await read(r, max_events, max_bytes)
                assert 0 < len(got) <= max_events
                assert sum(len(p) for _, p in got[:-1]) < max_bytes
                assert [p for _, p in got] == [written[s] for s, _ in got]
                seen[r.name] += [s for s, _ in got]
                if rng.random() < 0.5:  # all of them, as the file sink does
                    r.release(last_seqs[r.name])
                else:  # some stay in flight
                    r.release([s for s, _ in got if rng.random() < 0.9])
        sp.finish_input()
        for r in readers:
            while got := await read(r, rng.randint(1, 15), 1 << 20):
                assert [p for _, p in got] == [written[s] for s, _ in got]
                seen[r.name] += [s for s, _ in got]
            assert seen[r.name] == expect[r.name]
        await sp.close()

    asyncio.run(run())
    asyncio.run(run())  # after a restart: what was not released comes again


def test_releasing_a_range_moves_the_watermark_as_releasing_each_record_does(
    tmp_path: Path,
) -> None:
    """`release(range)` (the file sink's whole read at once) ends where releasing the same
    records one by one ends: from the watermark, past records released out of order before,
    and not at all from a range that starts beyond the watermark."""

    async def main() -> None:
        sp = make(tmp_path)
        a, b = sp.reader("a"), sp.reader("b")
        await sp.append([ev(i) for i in range(30)])
        for r, how in ((a, lambda x: x), (b, list)):  # a range, or each number
            r.release(how(range(0, 10)))
            assert r.watermark == 10
            r.release(how(range(15, 20)))  # a gap: held until 10..14 come
            assert r.watermark == 10
            r.release(how(range(10, 15)))
            assert r.watermark == 20
            r.release(how(range(20, 20)))  # nothing
            r.release(how(range(25, 30)))
            assert r.watermark == 20 and r.pending == 5
        sp.finish_input()
        seqs, payloads = await a.read_payloads(100, 1 << 20)
        assert seqs == range(20, 25)
        assert [orjson.loads(p.rsplit(b"\n", 1)[1])["event_id"] for p in payloads] == [
            f"e{i}" for i in range(20, 25)
        ]
        a.release(seqs)
        assert a.watermark == 30 and a.pending == 0
        await sp.close()

        # The range releases were saved: after a restart `a` has nothing left; `b` reads from
        # its watermark (what it released past a gap comes again: at least once).
        sp2 = make(tmp_path)
        a2, b2 = sp2.reader("a"), sp2.reader("b")
        sp2.finish_input()
        assert a2.watermark == 30 and await a2.read_payloads(100, 1 << 20) == ([], [])
        got = await b2.read_payloads(100, 1 << 20)
        assert list(got[0]) == list(range(20, 30))
        await sp2.close()

    asyncio.run(main())
