"""Spool: a disk queue of segment files between enrichment and the sinks.

    append(events) ─► active segment (write, fsync) ─► on_durable(events)
                                     │
              reader "sinks[0]" ◄────┼────► reader "sinks[1]"      each reads every record
                  release(seqs)      │         release(seqs)
                                     ▼
          a segment is deleted once every reader has released all of its records

Durability and fsync policy: `append` writes a whole batch (everything the pipeline gathered
since the last call) and fsyncs it before it returns, at most once every `fsync_interval_ms`
(group commit: batches arriving meanwhile wait and share the next fsync). Only then are the
events handed to `on_durable` (contract 1: the tail checkpoints may move) and shown to readers.

Size cap: `bytes_used` (the segment files) stays within `max_bytes`. When a batch does not fit,
`append` waits (backpressure: the pipeline's queues fill and the tailers stop reading) and logs a
loud warning, repeated once a minute while it lasts. `give_up` (shutdown) ends the wait: the batch
is not written, and as it was never confirmed durable, its source bytes are read again later.

Restart: segments are scanned on `open()` (length, CRC-32, sequence of each record). Each reader's
low watermark (the lowest sequence it has not released) is kept in `cursors.json` (tmp + fsync +
rename, at most once a second and at close), so a restart resends only what was in flight.
A torn last record (a crash during a write: never fsync'd, never confirmed) is cut off with a
warning. Any other damage quarantines the segment: the file is copied byte for byte to
`quarantine/`, cut after its last valid record (those are still delivered), and reported in the
log, in `stats` and in `quarantined`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Callable
from itertools import accumulate
from operator import attrgetter

from sidecar.spool.reader import RecentRun, SpoolReader
from sidecar.spool.segment import (
    HEADER_SIZE,
    SUFFIX,
    Segment,
    encode_event,
    fsync_dir,
    record_headers,
    scan,
    segment_name,
)
from sidecar.spool.state import load_cursors, quarantine_copy, save_cursors
from sidecar.types import OutEvent
from sidecar.waits import wait_set

log = logging.getLogger("sidecar.spool")


FULL_WARNING_EVERY_SECS = 60.0
# Payload bytes of the latest durable records the readers take from memory (`Spool.recent`)
# rather than read back from their segment file.
RECENT_BYTES = 4 << 20
WRITE_RETRY_SECS = 5.0
_payload = attrgetter("payload")
_write_fd = os.writev  # the one write call (a test makes it fail like a full disk)


def _iov_max() -> int:
    """Buffers per write call: the kernel takes at most IOV_MAX (1024 on Linux)."""
    try:
        n = os.sysconf("SC_IOV_MAX")
    except (ValueError, OSError):
        return 16  # POSIX's minimum
    return n if n > 0 else 16


_IOV_MAX = _iov_max()


class Spool:
    """The disk queue. `open()`, then `reader(name)` per sink, `append()`, `finish_input()`,
    `close()`."""

    def __init__(
        self,
        directory: str,
        *,
        max_bytes: int,
        segment_bytes: int,
        fsync_interval_ms: int = 0,
        cursor_interval_ms: int = 200,
        on_durable: Callable[[list[OutEvent]], None] | None = None,
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        # A segment is at most a quarter of the cap, so the cap can always be freed up.
        self.segment_bytes = max(4096, min(segment_bytes, max_bytes // 4))
        self.fsync_interval_secs = fsync_interval_ms / 1000.0
        # What the sinks delivered is saved (cursors.json) at most this often: a crash re-sends
        # what was delivered since the last save (the same events: duplicates, never a loss).
        self.cursor_interval_secs = cursor_interval_ms / 1000.0
        self.on_durable = on_durable
        self.stats: dict[str, int] = {
            "spool_events_written_total": 0,
            "spool_events_released_total": 0,
            "spool_bytes_written_total": 0,
            "spool_full_waits_total": 0,
            "spool_segments_quarantined_total": 0,
            "spool_events_not_spooled_total": 0,
        }
        self.quarantined: list[str] = []  # reasons, for health
        self.write_error: str | None = None  # the spool cannot be written (health)
        self.full_since: float | None = None
        self._segments: list[Segment] = []
        self._readers: dict[str, SpoolReader] = {}
        self._saved: dict[str, int] = {}
        self._next_seq = 0
        self._durable_seq = -1
        self._wfd: int | None = None
        self._writing = False
        self._input_done = False
        self._data = asyncio.Event()
        self._space = asyncio.Event()
        self._last_fsync = 0.0
        self._last_warning = 0.0
        self._cursors_dirty = False
        self._cursors_saved_at = 0.0
        self._segdir = os.path.join(directory, "segments")
        # The latest records this process wrote and fsync'd, in runs as they were written (one
        # per batch and segment), at most RECENT_BYTES of payload. A reader that keeps up takes
        # its records from here: the bytes that were written, without reading the file back
        # (reader.py), a run at a time rather than a record at a time.
        self.recent: deque[RecentRun] = deque()
        self._recent_bytes = 0

    # -- state ------------------------------------------------------------------------------
    @property
    def bytes_used(self) -> int:
        return sum(s.size for s in self._segments)

    @property
    def pending_events(self) -> int:
        """Records some reader has not released yet."""
        return max((r.pending for r in self._readers.values()), default=0)

    def health(self) -> list[str]:
        reasons = list(self.quarantined)
        if self.write_error is not None:
            reasons.append(self.write_error)
        if self.full_since is not None:
            reasons.append(
                f"the spool is full ({self.bytes_used} of {self.max_bytes} bytes) since "
                f"{time.monotonic() - self.full_since:.0f} s: reading is paused"
            )
        return reasons

    # -- open / close -----------------------------------------------------------------------
    def open(self) -> None:
        """Create the folders (0700), load the cursors and scan every segment."""
        for d in (self.directory, self._segdir):
            os.makedirs(d, mode=0o700, exist_ok=True)
        self._saved = self._load_cursors()
        names = sorted(n for n in os.listdir(self._segdir) if n.endswith(SUFFIX))
        last_seq = -1
        for i, name in enumerate(names):
            path = os.path.join(self._segdir, name)
            res = scan(path)
            if res.damage is not None:
                if res.torn and i == len(names) - 1:
                    log.warning(
                        "The spool segment %s ends with %s (the sidecar stopped during a write); "
                        "that record was never confirmed durable and is dropped: its source "
                        "bytes are read again.",
                        path,
                        res.damage,
                    )
                else:
                    self._quarantine(path, res.damage, res.valid_end, res.size)
                with open(path, "r+b") as fh:
                    fh.truncate(res.valid_end)
                    os.fsync(fh.fileno())
            if res.count == 0:
                os.unlink(path)
                continue
            assert res.first_seq is not None and res.last_seq is not None
            self._segments.append(Segment(path, res.first_seq, res.last_seq, res.valid_end))
            last_seq = max(last_seq, res.last_seq)
        self._next_seq = max([last_seq + 1, *self._saved.values()])
        self._durable_seq = self._next_seq - 1
        if self._segments:
            log.info(
                "The spool holds %d segment(s), %d bytes, from an earlier run; they are "
                "delivered first.",
                len(self._segments),
                self.bytes_used,
            )

    def _quarantine(self, path: str, damage: str, valid_end: int, size: int) -> None:
        msg = quarantine_copy(self.directory, path, damage, size - valid_end)
        log.error(
            "The %s. The records before the damage are delivered. Check the disk; send the copy "
            "with a bug report if the disk is fine.",
            msg,
        )
        self.quarantined.append(msg)
        self.stats["spool_segments_quarantined_total"] += 1

    def reader(self, name: str) -> SpoolReader:
        """The reader for one sink; it starts at its saved watermark."""
        first = self._segments[0].first_seq if self._segments else self._next_seq
        r = SpoolReader(self, name, watermark=max(self._saved.get(name, 0), first))
        r._next_seq = r.watermark
        self._readers[name] = r
        return r

    def finish_input(self) -> None:
        """No more appends: readers return [] once they have read everything."""
        self._input_done = True
        self._data.set()

    async def close(self) -> None:
        self.recent.clear()
        self._recent_bytes = 0
        for r in self._readers.values():
            r._close_fh()
        if self._wfd is not None:
            os.close(self._wfd)
            self._wfd = None
        self._collect(include_active=True)
        self._save_cursors()

    # -- append -----------------------------------------------------------------------------
    async def append(self, events: list[OutEvent], give_up: asyncio.Event | None = None) -> bool:
        """Write `events` durably (see the module doc), as much at a time as the cap allows.
        Returns False when `give_up` was set while waiting for room (the events not written
        by then are dropped: they were never confirmed durable)."""
        # enrichment made them (what `encode_event` returns first; measured: one C-level map)
        payloads = list(map(_payload, events))
        if None in payloads:
            payloads = [encode_event(ev) for ev in events]
        total = HEADER_SIZE * len(payloads) + sum(map(len, payloads))
        i = 0
        while i < len(events):
            room = await self._wait_room(HEADER_SIZE + len(payloads[i]), give_up)
            if room is None:
                self.stats["spool_events_not_spooled_total"] += len(events) - i
                return False
            if i == 0 and total <= room:  # the usual case: everything fits
                j = len(events)
            else:
                j, size = i, 0
                while j < len(events) and (j == i or size + HEADER_SIZE + len(payloads[j]) <= room):
                    size += HEADER_SIZE + len(payloads[j])
                    j += 1
            written = await self._append_durably(events[i:j], payloads[i:j], give_up)
            i += written
            if i < j:
                self.stats["spool_events_not_spooled_total"] += len(events) - i
                return False
        return True

    async def _append_durably(
        self, events: list[OutEvent], payloads: list[bytes], give_up: asyncio.Event | None
    ) -> int:
        """Write and fsync; on a write error (disk full...) retry every WRITE_RETRY_SECS until
        it works or `give_up`. Returns how many events are now durable."""
        done = 0
        while done < len(events):
            rest = payloads[done:] if done else payloads
            headers = record_headers(self._next_seq, rest)
            wait = self._last_fsync + self.fsync_interval_secs - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._writing = True
            placed: list[tuple[Segment, int, int]] = []
            try:
                n, err = await asyncio.to_thread(self._write, headers, rest, placed)
            finally:
                self._writing = False
            self._last_fsync = time.monotonic()
            if n:
                self._remember(self._next_seq, payloads[done : done + n], placed)
                self._next_seq += n
                self._durable_seq = self._next_seq - 1
                self.stats["spool_events_written_total"] += n
                self.stats["spool_bytes_written_total"] += n * HEADER_SIZE + sum(map(len, rest[:n]))
                self._data.set()
                if self.on_durable is not None:
                    self.on_durable(events[done : done + n])
                done += n
            if err is None:
                continue
            if self.write_error is None:
                log.error(
                    "Cannot write the spool in %s (%s). Reading pauses; retrying every %g s. "
                    "Check free space and permissions there.",
                    self._segdir,
                    err,
                    WRITE_RETRY_SECS,
                )
            self.write_error = f"cannot write the spool in {self._segdir}: {err}"
            if give_up is not None and give_up.is_set():
                return done
            await wait_set(give_up, WRITE_RETRY_SECS)
        if self.write_error is not None:
            log.warning("The spool is writable again; reading resumes.")
            self.write_error = None
        return done

    def _remember(
        self, first_seq: int, payloads: list[bytes], placed: list[tuple[Segment, int, int]]
    ) -> None:
        """Keep durable records for the readers (`recent`), dropping the oldest beyond
        RECENT_BYTES. `placed`: (segment, offset, count) of each run of records written."""
        recent = self.recent
        seq = first_seq
        i = 0
        for seg, off, count in placed:
            chunk = payloads if count == len(payloads) else payloads[i : i + count]
            run = RecentRun(seq, chunk, seg, off, list(accumulate(map(len, chunk))))
            recent.append(run)
            self._recent_bytes += run.ends[-1]
            seq += count
            i += count
        excess = self._recent_bytes - RECENT_BYTES
        while excess > 0 and recent:
            run = recent[0]
            k = bisect_left(run.ends, excess) + 1  # the fewest oldest records that make it up
            if k >= len(run.ends):
                recent.popleft()
                dropped = run.ends[-1]
            else:
                recent[0] = run.without_first(k)
                dropped = run.ends[k - 1]
            excess -= dropped
            self._recent_bytes -= dropped

    def recent_run(self, seq: int) -> RecentRun | None:
        """The run of `recent` that holds `seq` (readers keeping up ask for the newest)."""
        recent = self.recent
        if not recent or seq < recent[0].first:
            return None
        run = recent[-1]
        if seq < run.first:  # runs are contiguous: the last whose first is <= seq
            run = recent[bisect_right(recent, seq, key=attrgetter("first")) - 1]
        return run if seq - run.first < len(run.payloads) else None

    @property
    def recent_seqs(self) -> range:
        """The sequence numbers `recent` holds."""
        if not self.recent:
            return range(0)
        last = self.recent[-1]
        return range(self.recent[0].first, last.first + len(last.payloads))

    def _write(
        self, headers: list[bytes], payloads: list[bytes], placed: list[tuple[Segment, int, int]]
    ) -> tuple[int, OSError | None]:
        """Runs in a worker thread: append the records (each header, then its payload) to the
        active segment (rotating it), fsync per segment. On an error the segment is cut back to
        its last durable byte. Returns the records written durably and the error, if any; adds
        (segment, offset, count) of each run written durably to `placed`."""
        ends = list(accumulate(map(HEADER_SIZE.__add__, map(len, payloads))))  # record bytes
        n = len(payloads)
        i = base = 0  # records i.. (from byte `base` of the batch) are still to write
        try:
            while i < n:
                seg = self._segments[-1] if self._segments else None
                if seg is None or self._wfd is None or seg.size >= self.segment_bytes:
                    seg = self._new_segment(self._next_seq + i)
                # all of them, unless the segment is full before the last: up to the first
                # record that reaches `segment_bytes`
                j = min(n, bisect_left(ends, base + self.segment_bytes - seg.size, i) + 1)
                bufs: list[bytes] = [b""] * (2 * (j - i))
                bufs[0::2] = headers[i:j]
                bufs[1::2] = payloads[i:j]
                assert self._wfd is not None
                try:
                    for k in range(0, len(bufs), _IOV_MAX):
                        _write_all(self._wfd, bufs[k : k + _IOV_MAX])
                    os.fsync(self._wfd)
                except OSError:
                    with contextlib.suppress(OSError):
                        os.ftruncate(self._wfd, seg.size)
                    raise
                placed.append((seg, seg.size, j - i))
                seg.last_seq += j - i
                seg.size += ends[j - 1] - base
                base = ends[j - 1]
                i = j
        except OSError as exc:
            return i, exc
        return i, None

    def _new_segment(self, first_seq: int) -> Segment:
        if self._wfd is not None:
            os.close(self._wfd)
        path = os.path.join(self._segdir, segment_name(first_seq))
        self._wfd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        fsync_dir(self._segdir)
        seg = Segment(path, first_seq, first_seq - 1, 0)
        self._segments.append(seg)
        return seg

    async def _wait_room(self, need: int, give_up: asyncio.Event | None) -> int | None:
        """Wait until `need` bytes fit under the cap (or the spool is empty: one record always
        goes in). Returns the room then, or None when `give_up` was set first."""
        while self._segments and self.bytes_used + need > self.max_bytes:
            if give_up is not None and give_up.is_set():
                return None
            now = time.monotonic()
            if self.full_since is None:
                self.full_since = now
                self.stats["spool_full_waits_total"] += 1
                self._collect()
                continue
            if now - self._last_warning >= FULL_WARNING_EVERY_SECS:
                self._last_warning = now
                log.warning(
                    "THE SPOOL IS FULL: %d of %d bytes hold events not yet delivered (%d "
                    "pending). Reading the logs is paused until the sinks catch up; nothing is "
                    "lost while the logs are kept. Check the sinks' health, or raise "
                    "spool.max_bytes.",
                    self.bytes_used,
                    self.max_bytes,
                    self.pending_events,
                )
            self._space.clear()
            waiters = [asyncio.ensure_future(self._space.wait())]
            if give_up is not None:
                waiters.append(asyncio.ensure_future(give_up.wait()))
            try:
                await asyncio.wait(waiters, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()
        if self.full_since is not None:
            log.warning(
                "The spool has room again after %.0f s; reading resumes.",
                time.monotonic() - self.full_since,
            )
            self.full_since = None
        return max(self.max_bytes - self.bytes_used, need)

    # -- readers' side ----------------------------------------------------------------------
    async def _wait_data(self) -> None:
        self._data.clear()
        await self._data.wait()

    def _segment_from(self, seq: int, after: Segment | None = None) -> Segment | None:
        """The segment holding `seq`, or the first one after it."""
        for seg in self._segments:
            if after is not None and seg.first_seq <= after.first_seq:
                continue
            if seg.last_seq >= seg.first_seq and seg.last_seq >= seq:
                return seg
        return None

    def _released_by_reader(self) -> None:
        self._cursors_dirty = True
        self._collect()
        if time.monotonic() - self._cursors_saved_at >= self.cursor_interval_secs:
            self._save_cursors()

    def _collect(self, include_active: bool = False) -> None:
        """Delete the segments every reader has released entirely. The active segment goes
        too when it is released and the spool waits for room (or at close)."""
        if not self._readers:
            return
        include_active = include_active or self.full_since is not None
        low = min(r.watermark for r in self._readers.values())
        freed = False
        while self._segments and self._segments[0].last_seq < low:
            seg = self._segments[0]
            active = seg is self._segments[-1]
            if active and (self._writing or not include_active):
                break
            if active and self._wfd is not None:
                os.close(self._wfd)
                self._wfd = None
            self._segments.pop(0)
            self.stats["spool_events_released_total"] += seg.last_seq - seg.first_seq + 1
            with contextlib.suppress(FileNotFoundError):
                os.unlink(seg.path)
            freed = True
        if freed:
            self._space.set()
            self._save_cursors()

    def _load_cursors(self) -> dict[str, int]:
        path = os.path.join(self.directory, "cursors.json")
        try:
            return load_cursors(path)
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            log.warning(
                "The spool cursor file %s cannot be read (%s); every sink starts at the oldest "
                "spooled event (duplicates possible, nothing lost).",
                path,
                exc,
            )
            return {}

    def _save_cursors(self) -> None:
        if not self._readers:
            return
        save_cursors(
            os.path.join(self.directory, "cursors.json"),
            {n: r.watermark for n, r in self._readers.items()},
        )
        self._cursors_dirty = False
        self._cursors_saved_at = time.monotonic()


def _write_all(fd: int, bufs: list[bytes]) -> None:
    """Write `bufs` (at most _IOV_MAX of them) in order, going on after a short write."""
    left = sum(map(len, bufs))
    while True:
        n = _write_fd(fd, bufs)
        left -= n
        if not left:
            return
        k = 0
        while n >= len(bufs[k]):  # the buffers written whole
            n -= len(bufs[k])
            k += 1
        bufs = [memoryview(bufs[k])[n:], *bufs[k + 1 :]]


__all__ = ["Spool"]
