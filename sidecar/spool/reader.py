"""A sink's reader of the spool: reads every record in order, releases in any order."""

from __future__ import annotations

import contextlib
import time
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO

from sidecar.spool.segment import HEADER_SIZE, Segment, decode_event, read_records
from sidecar.types import OutEvent
from sidecar.waits import within

if TYPE_CHECKING:
    from sidecar.spool.disk import Spool


@dataclass(slots=True)
class SpoolEntry:
    seq: int
    payload: bytes  # the record as written; `event` decodes it

    @property
    def size(self) -> int:
        return len(self.payload)

    @property
    def event(self) -> OutEvent:
        """The event, decoded on each access: a sink decodes the events of a batch one at a
        time, so that a thousand decoded events are never alive at once."""
        return decode_event(self.payload)


@dataclass(slots=True)
class RecentRun:
    """Records the spool wrote in one go into one segment, kept in memory (`Spool.recent`)."""

    first: int  # sequence number of payloads[0]
    payloads: list[bytes]
    seg: Segment
    start: int  # offset of payloads[0]'s record in the segment
    ends: list[int]  # payload bytes of payloads[: k + 1], for each k

    def offset_after(self, k: int) -> int:
        """The segment offset after the record of payloads[k]."""
        return self.start + (k + 1) * HEADER_SIZE + self.ends[k]

    def without_first(self, k: int) -> RecentRun:
        """The run less its first `k` records."""
        drop = self.ends[k - 1]
        ends = [e - drop for e in self.ends[k:]]
        return RecentRun(
            self.first + k, self.payloads[k:], self.seg, self.offset_after(k - 1), ends
        )


@dataclass
class SpoolReader:
    """One sink's view of the spool: reads every record in order, releases what it is done with
    (delivered or dead-lettered), in any order."""

    spool: Spool
    name: str
    watermark: int  # lowest sequence not released
    _released: set[int] = field(default_factory=set)
    _seg: Segment | None = None
    _off: int = 0
    _fh: BinaryIO | None = None
    _next_seq: int = 0  # next sequence to read

    @property
    def unread(self) -> int:
        return max(0, self.spool._durable_seq + 1 - max(self._next_seq, self.watermark))

    @property
    def pending(self) -> int:
        """Records not yet released by this reader."""
        return max(0, self.spool._durable_seq + 1 - self.watermark) - len(self._released)

    async def read(
        self, max_events: int, max_bytes: int, linger_secs: float = 0.0
    ) -> list[SpoolEntry]:
        """The next records (at least one, at most `max_events`, about `max_bytes` of payload).
        Waits for data; when fewer than `max_events` are there, waits up to `linger_secs` for
        more. Returns [] once the spool's input is finished and everything has been read."""
        seqs, payloads = await self.read_payloads(max_events, max_bytes, linger_secs)
        return list(map(SpoolEntry, seqs, payloads))

    async def read_payloads(
        self, max_events: int, max_bytes: int, linger_secs: float = 0.0
    ) -> tuple[Sequence[int], list[bytes]]:
        """`read`, as the records' sequence numbers and their payloads, without an object per
        record (the file sink's way). The numbers are a `range` when they follow each other
        (the usual case), which `release` takes at once."""
        sp = self.spool
        while not self.unread:
            if sp._input_done:
                return [], []
            await sp._wait_data()
        if linger_secs > 0 and self.unread < max_events and not sp._input_done:
            deadline = time.monotonic() + linger_secs
            while self.unread < max_events and not sp._input_done:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    await within(left, sp._wait_data())
        seqs, payloads = self._read_now(max_events, max_bytes)
        if payloads and seqs[-1] - seqs[0] == len(seqs) - 1:  # read in order: no gap
            return range(seqs[0], seqs[-1] + 1), payloads
        return seqs, payloads

    def _read_now(self, max_events: int, max_bytes: int) -> tuple[list[int], list[bytes]]:
        """The next records' sequence numbers (ascending) and payloads."""
        seqs: list[int] = []
        out: list[bytes] = []
        size = 0
        recent_run = self.spool.recent_run
        while len(out) < max_events and size < max_bytes and self.unread:
            run = recent_run(self._next_seq)
            if run is not None:
                size = self._take_recent(run, seqs, out, size, max_events, max_bytes)
                continue
            seg = self._current_segment()
            if seg is None:
                break
            if self._off >= seg.size:
                if not self._advance(seg):
                    break
                continue
            if self._fh is None:  # after records taken from memory
                self._fh = open(seg.path, "rb")  # noqa: SIM115 - held while the reader is in it
            recs, self._off = read_records(
                self._fh, self._off, seg.size, max_events - len(out), max_bytes - size
            )
            for seq, payload in recs:
                self._next_seq = seq + 1
                if seq < self.watermark or seq in self._released:
                    continue  # released before a restart
                seqs.append(seq)
                out.append(payload)
                size += len(payload)
        return seqs, out

    def _take_recent(
        self,
        run: RecentRun,
        seqs: list[int],
        out: list[bytes],
        size: int,
        max_events: int,
        max_bytes: int,
    ) -> int:
        """Records from `spool.recent` (this process wrote them; they are durable), from
        `_next_seq` on while they are there: the same records, in the same order, as reading
        the segment file would give, without reading it back, a slice of a run at a time. The
        reader's place in the file (`_seg`, `_off`) follows them, so that it goes on from the
        file where memory ends. `run`: the one holding `_next_seq`. Adds the records' sequence
        numbers to `seqs` and their payloads to `out`; returns the payload bytes in `out`."""
        spool = self.spool
        seq = self._next_seq
        watermark, released = self.watermark, self._released
        while run is not None and len(out) < max_events and size < max_bytes:
            if run.seg is not self._seg:
                self._close_fh()  # opened again only if the file must be read
                self._seg = run.seg
            ends, payloads = run.ends, run.payloads
            i = seq - run.first
            base = ends[i - 1] if i else 0
            # at most max_events in all, through the record that reaches max_bytes
            j = min(
                len(ends),
                i + max_events - len(out),
                bisect_left(ends, base + max_bytes - size, i) + 1,
            )
            if seq >= watermark and not released:  # the usual case
                seqs.extend(range(seq, seq + j - i))
                out.extend(payloads[i:j])
                size += ends[j - 1] - base
            else:  # some were released before a restart
                for k in range(i, j):
                    s = run.first + k
                    if s >= watermark and s not in released:
                        seqs.append(s)
                        out.append(payloads[k])
                        size += len(payloads[k])
            self._off = run.offset_after(j - 1)
            seq = run.first + j
            run = spool.recent_run(seq)
        self._next_seq = seq
        return size

    def _current_segment(self) -> Segment | None:
        if self._seg is None:
            seg = self.spool._segment_from(self._next_seq)
            if seg is None:
                return None
            self._open(seg)
        return self._seg

    def _open(self, seg: Segment) -> None:
        self._close_fh()
        self._seg, self._off = seg, 0
        self._fh = open(seg.path, "rb")  # noqa: SIM115 - held while the reader is in it
        self._next_seq = max(self._next_seq, seg.first_seq)

    def _advance(self, seg: Segment) -> bool:
        nxt = self.spool._segment_from(seg.last_seq + 1, after=seg)
        if nxt is None:
            return False
        self._open(nxt)
        return True

    def _close_fh(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def release(self, seqs: Iterable[int]) -> None:
        """This reader is done with these records (delivered, acknowledged or dead-lettered)."""
        moved = False
        released = self._released
        # the next records, in order (a read's `range`), none released out of order before:
        # the usual case, at once
        if (
            type(seqs) is range
            and seqs
            and seqs.step == 1
            and seqs.start == self.watermark
            and not released
        ):
            self.watermark = seqs.stop
            self.spool._released_by_reader()
            return
        for s in seqs:
            if s == self.watermark and not released:  # in order, the usual case: no set
                self.watermark += 1
                moved = True
            elif s >= self.watermark:
                released.add(s)
        while self.watermark in self._released:
            self._released.discard(self.watermark)
            self.watermark += 1
            moved = True
        if moved:
            self.spool._released_by_reader()
