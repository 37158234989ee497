"""The spool's on-disk record format and the scan that checks a segment file.

A segment is a sequence of records, each

    u32 payload length | u32 CRC-32 of (seq + payload) | u64 seq | payload

little-endian, 16 bytes of header. The payload is one event in three lines: JSON metadata
`[time, source, sourcetype]`, the JSON array of the body's LABEL_KEYS values (which HEC indexes),
and the event body's JSON exactly as the sinks write it. The sinks write the body's bytes as they
are: an event is serialised once, never decoded on its way out (orjson escapes a newline in a
string, so the JSON itself holds none). Segments written before this format (one JSON array
`[time, source, sourcetype, body]`, no newline byte) still replay: `split_payload` reads both.
Sequence numbers grow by one per record across segments and restarts; a segment file is named
after its first sequence number.
"""

from __future__ import annotations

import operator
import os
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import orjson

from sidecar.types import OutEvent

HEADER = struct.Struct("<IIQ")
HEADER_SIZE = HEADER.size
MAX_RECORD_BYTES = 1 << 30  # a larger length can only be damage
SUFFIX = ".seg"


@dataclass
class Segment:
    path: str
    first_seq: int
    last_seq: int  # durable; first_seq - 1 when empty
    size: int  # durable bytes


def segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}{SUFFIX}"


# Body keys whose values ride in a line of their own: the HEC sink indexes them (`fields`)
# without decoding the body.
LABEL_KEYS = ("provider", "model", "status", "tenant", "user", "is_streaming")
_labels = operator.itemgetter(*LABEL_KEYS)


def label_values(body: dict[str, Any]) -> tuple[Any, ...]:
    """The values of LABEL_KEYS in the body (None for a missing key)."""
    try:
        return _labels(body)  # every key is there in a usage event
    except KeyError:
        return tuple(body.get(k) for k in LABEL_KEYS)


def encode_event(ev: OutEvent) -> bytes:
    """The record's payload: the one made by enrichment (`ev.payload`), else made here. Raises
    TypeError or ValueError (orjson) when a value cannot be written."""
    if ev.payload is not None:
        return ev.payload
    body = ev.body
    meta = orjson.dumps((ev.time, ev.source, ev.sourcetype))
    return b"\n".join((meta, orjson.dumps(label_values(body)), orjson.dumps(body)))


def split_payload(payload: bytes) -> tuple[list[Any], bytes, bytes]:
    """The metadata `[time, source, sourcetype]`, the labels' JSON array and the body's JSON of
    a record (either format)."""
    nl = payload.find(b"\n")
    if nl < 0:  # a record of the earlier format
        t, source, sourcetype, body = orjson.loads(payload)
        return [t, source, sourcetype], orjson.dumps(label_values(body)), orjson.dumps(body)
    nl2 = payload.index(b"\n", nl + 1)
    return orjson.loads(payload[:nl]), payload[nl + 1 : nl2], payload[nl2 + 1 :]


def body_json(payload: bytes) -> bytes:
    """The body's JSON bytes of a record (either format)."""
    nl = payload.find(b"\n")
    if nl < 0:
        return split_payload(payload)[2]
    return payload[payload.index(b"\n", nl + 1) + 1 :]


def decode_event(payload: bytes) -> OutEvent:
    (t, source, sourcetype), _, body = split_payload(payload)
    return OutEvent(body=orjson.loads(body), time=t, source=source, sourcetype=sourcetype)


_SEQ = struct.Struct("<Q")


def record_crc(seq: int, payload: bytes) -> int:
    """The CRC-32 a record's header carries: of its sequence number (u64) and its payload."""
    return zlib.crc32(payload, zlib.crc32(_SEQ.pack(seq)))


def record_headers(first_seq: int, payloads: list[bytes]) -> list[bytes]:
    """Each payload's record header, numbered from `first_seq` (the record is the header, then
    the payload: the spool writes the two side by side, never a copy of them joined)."""
    pack, seq_pack, crc32 = HEADER.pack, _SEQ.pack, zlib.crc32  # record_crc, inline
    return [
        pack(len(p), crc32(p, crc32(seq_pack(seq))), seq)
        for seq, p in enumerate(payloads, first_seq)
    ]


def encode_records(first_seq: int, payloads: list[bytes]) -> list[bytes]:
    """Each payload as a record (header + payload), numbered from `first_seq` (for tests and
    tools: the spool writes headers beside payloads, `record_headers`)."""
    return list(map(bytes.__add__, record_headers(first_seq, payloads), payloads))


@dataclass
class ScanResult:
    """What a segment holds: `count` valid records from `first_seq` to `last_seq`, ending at
    `valid_end`; `damage` says what is wrong after it (None: the file is whole), `torn` is true
    when the damage is only an incomplete last record (a crash during a write)."""

    count: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    valid_end: int = 0
    size: int = 0
    damage: str | None = None
    torn: bool = False


def scan(path: str) -> ScanResult:
    """Read a whole segment and check each record's length, CRC and sequence number."""
    res = ScanResult()
    with open(path, "rb") as fh:
        data = fh.read()
    res.size = len(data)
    off = 0
    n = len(data)
    while off < n:
        if n - off < HEADER_SIZE:
            res.damage, res.torn = f"an incomplete record header at byte {off}", True
            break
        length, crc, seq = HEADER.unpack_from(data, off)
        if length > MAX_RECORD_BYTES:
            res.damage = f"an impossible record length {length} at byte {off}"
            break
        end = off + HEADER_SIZE + length
        if end > n:
            res.damage, res.torn = f"an incomplete record at byte {off}", True
            break
        payload = data[off + HEADER_SIZE : end]
        if record_crc(seq, payload) != crc:
            res.damage = f"a checksum mismatch in the record at byte {off}"
            break
        if res.last_seq is not None and seq != res.last_seq + 1:
            res.damage = f"sequence {seq} after {res.last_seq} at byte {off}"
            break
        if res.first_seq is None:
            res.first_seq = seq
        res.last_seq = seq
        res.count += 1
        off = end
        res.valid_end = off
    return res


READ_AHEAD = 1 << 16  # bytes read at a time beyond what the next record needs


def read_records(
    fh: Any, offset: int, end: int, max_records: int, max_bytes: int
) -> tuple[list[tuple[int, bytes]], int]:
    """Records from `offset` up to `end` (at most `max_records`, and `max_bytes` of payload but
    at least one). Returns them and the offset after the last one.

    The file is read a block at a time, not a record at a time. Every record is checked again
    (its framing, its sequence and its CRC) although the segment was scanned at open() or
    written by this process: what is read is what goes to Splunk, and bytes changed on disk
    since must cost a quarantine, not a wrong event. A failed check raises OSError."""
    out: list[tuple[int, bytes]] = []
    size = 0
    fh.seek(offset)
    buf = b""
    pos = 0
    unpack = HEADER.unpack_from
    while offset < end and len(out) < max_records and (not out or size < max_bytes):
        if len(buf) - pos < HEADER_SIZE:
            buf, pos = _read_more(fh, buf, pos, HEADER_SIZE, end - offset, offset)
        length, crc, seq = unpack(buf, pos)
        total = HEADER_SIZE + length
        if total > end - offset or (out and seq != out[-1][0] + 1):
            raise OSError(f"spool record at byte {offset} changed on disk since it was written")
        if len(buf) - pos < total:
            buf, pos = _read_more(fh, buf, pos, total, end - offset, offset)
        payload = buf[pos + HEADER_SIZE : pos + total]
        if record_crc(seq, payload) != crc:
            raise OSError(f"spool record at byte {offset} changed on disk since it was written")
        out.append((seq, payload))
        pos += total
        size += length
        offset += total
    return out, offset


def _read_more(
    fh: Any, buf: bytes, pos: int, need: int, left: int, offset: int
) -> tuple[bytes, int]:
    """`need` bytes from file offset `offset` (`left` bytes before the end), the unread rest of
    `buf` (from `pos`) first. A record cut by the end of a block gets only its missing bytes
    (a small copy); a fresh block is READ_AHEAD bytes, or the whole next record."""
    rest = buf[pos:]
    want = need - len(rest) if rest else min(max(need, READ_AHEAD), left)
    buf = rest + fh.read(want) if rest else fh.read(want)
    if len(buf) < need:
        raise OSError(f"spool record at byte {offset} changed on disk since it was written")
    return buf, 0


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
