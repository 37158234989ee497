"""Body-log lines -> per-request body parts (pure). This is the hot path: one call per line.

The `chunks` lines a proxy writes have one shape, `{"ts":T,"request_id":"ID","data":"..."}`
(the nginx + Lua module in examples/nginx writes exactly that). For such a line the work is two
`bytes.find`s, two affix checks and the request id: the line itself is kept as the request's
body part, its `data` still escaped; nothing is decoded or copied per line. JSON string escapes
never span two lines, so the escaped parts of one request concatenate into one valid JSON
string, cut out and decoded once when the request needs it (`assemble_escaped`). An end record
in the module's shape, `{"ts":T,"request_id":"ID","end":"E"}` with nothing to unescape, is read
without decoding it (`_end_record`). Any other line (other key order, odd content) takes the
careful path: `orjson.loads` and checks, with the same result.

Decoding once per request also heals a multi-byte UTF-8 character split across two lines (a
proxy without the Lua module's carry). Bytes that are still invalid are replaced and counted;
a part that is not a valid JSON string is dropped from the body and counted. Nothing is silent.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from sidecar import native
from sidecar.errors import ParseError
from sidecar.parse.fields import is_absent, parse_time, request_id
from sidecar.parse.tailscan import string_of as _string_of
from sidecar.types import BODY_DATA, BODY_END, BODY_WHOLE, BodyRecord

_loads = orjson.loads


_dumps = orjson.dumps


@dataclass(slots=True)
class Decoded:
    """A decoded batch.

    `groups` maps each request id to its data lines in this batch, in file order, in the
    canonical shape (`...,"data":"<escaped>"}`); grouping here means the join does per-request
    work per batch instead of per-line work. `records` are the other records (ends, whole
    bodies) in file order: they apply after the batch's data, which is where they stand in the
    file for their own request. `errors` are (line index, reason) of unusable lines."""

    groups: dict[str, Any]  # rid -> list of lines; with `counts`: one bytes of joined lines
    records: list[BodyRecord]
    errors: list[tuple[int, ParseError]]
    lossy: int
    invalid_ts: int = 0  # careful-path records whose `ts` was present but not a time (nulled)
    # bytes of each group's lines, in `groups` order (the C scanner counts them as it goes);
    # None: not counted (the join counts them)
    sizes: list[int] | None = None
    # lines of each group, in `groups` order, when each group is ONE bytes object holding its
    # lines joined by b"\n" (`decode_chunk_block`); None: each group is a list of lines
    counts: list[int] | None = None
    nlines: int = -1  # lines in the batch (`decode_chunk_block`; -1: not counted)

    def keep(self, ids: set[str]) -> int:
        """Keep only the requests in `ids` (a replay below the checkpoint); the number of lines
        dropped."""
        before = (
            sum(self.counts) if self.counts is not None else sum(map(len, self.groups.values()))
        )
        kept = [i for i, rid in enumerate(self.groups) if rid in ids]
        items = list(self.groups.items())
        self.groups = dict(items[i] for i in kept)
        if self.sizes is not None:
            self.sizes = [self.sizes[i] for i in kept]
        if self.counts is not None:
            self.counts = [self.counts[i] for i in kept]
        after = sum(self.counts) if self.counts is not None else sum(map(len, self.groups.values()))
        records = [r for r in self.records if r.request_id in ids]
        dropped = before - after + len(self.records) - len(records)
        self.records, self.errors = records, []
        return dropped


_RID = b',"request_id":"'
_DATA = b'","data":"'


def escape_part(data: str, ts: float | None = None) -> bytes:
    """A decoded chunk string -> a line in the fast path's form, for the careful path (with its
    time in front, as in a canonical line, so that the body's last time can be read back)."""
    head = b'{"ts":' + repr(ts).encode() + b',"request_id":"' if ts is not None else b""
    return head + _DATA + _dumps(data)[1:] + b"}"


def part_time(part: bytes) -> float | None:
    """The `ts` at the head of a canonical data line (`{"ts":T,...`), checked; else None."""
    if not part.startswith(b'{"ts":'):
        return None
    end = part.find(b",", 6)
    if end < 0 or end > 40:
        return None
    try:
        return parse_time(part[6:end].decode("ascii"))
    except UnicodeDecodeError:
        return None


def assemble_escaped(parts: list[bytes]) -> tuple[str, int, int]:
    """Cut the escaped `data` out of a request's lines, join, decode once.

    Returns (body, bad parts, lossy). The `data` of a canonical line starts after its first
    `","data":"` (neither the number `ts` nor the request id can hold a quote) and ends 2 bytes
    before the end (`"}`).

    1. The common case: one `orjson.loads` of the whole body (a UTF-8 character split across
       two parts is whole again here), or the same read in C by `tailscan.string_of` (about 60 %
       of the instructions) when it can tell it is the same.
    2. Invalid UTF-8 left: decode with replacement characters, `lossy` = 1.
    3. A part that is not a valid JSON string (a torn or hand-edited line): decode part by part,
       drop the bad ones and count them in `bad`.
    """
    if type(parts) is list:
        joined = _join_escaped(parts)
    else:  # a sequence over the join's chunks (join/bodylines.py): cut in one pass, in C
        chunks = getattr(parts, "chunks", None)
        joined = _join_escaped(parts) if chunks is None else _join_escaped_lines(chunks)
    if _string_of is not None:
        body = _string_of(joined)
        if body is not None:
            return body, 0, 0
    try:
        return _loads(joined), 0, 0
    except _JSONDecodeError:
        pass
    try:
        return _loads(joined.decode("utf-8", "replace")), 0, 1
    except _JSONDecodeError:
        pass
    out: list[str] = []
    bad = 0
    for part in _cut_data(list(parts)):
        try:
            out.append(_loads(b'"' + part.decode("utf-8", "replace").encode() + b'"'))
        except _JSONDecodeError:
            bad += 1
    return "".join(out), bad, 1


def _cut_data(parts: list[bytes]) -> list[bytes]:
    """Each part's escaped `data` (see `assemble_escaped`)."""
    find = bytes.find
    return [p[find(p, _DATA) + 10 : -2] for p in parts]


def _join_escaped_pure(parts: list[bytes]) -> bytes:
    """The parts' `data` as one JSON string (quotes around). `_bodyscan.c` is this in C."""
    return b'"' + b"".join(_cut_data(parts)) + b'"'


def _join_escaped_lines_pure(parts: list[bytes]) -> bytes:
    """`_join_escaped_pure` of every part's lines (`p.split(b"\\n")`: the join's chunks)."""
    return _join_escaped_pure([line for p in parts for line in p.split(b"\n")])


_JSONDecodeError = orjson.JSONDecodeError


def _load(line: bytes) -> tuple[dict, bool]:
    try:
        return _loads(line), False
    except _JSONDecodeError:
        try:
            return _loads(line.decode("utf-8", "replace")), True
        except _JSONDecodeError as exc:
            raise ParseError("body_invalid_json", str(exc)) from exc


def _load_record(line: bytes) -> tuple[dict, str, bool]:
    """Decode one line and check it is an object with a request id -> (obj, id, lossy).

    The id is checked as on the access log (`parse/fields.py`): an integer id is taken as its
    decimal string, so both logs agree."""
    d, lossy = _load(line)
    if type(d) is not dict:
        raise ParseError("body_not_an_object")
    return d, request_id(d.get("request_id"), "body"), lossy


def _ts(d: dict) -> tuple[float | None, bool]:
    """The record's time, checked -> (time, invalid). Optional on the body log: a bad one is
    nulled and counted (the fast path does not read it at all)."""
    v = d.get("ts")
    if is_absent(v):
        return None, False
    t = parse_time(v)
    return t, t is None


def parse_chunks_line(line: bytes) -> tuple[BodyRecord, bool]:
    """One `chunks`-style line -> (record, lossy). `lossy`: invalid UTF-8 was replaced.
    A `ts` that is present but not a time is nulled (see `parse_chunks_checked`)."""
    return parse_chunks_checked(line)[:2]  # type: ignore[return-value]


def parse_chunks_checked(line: bytes) -> tuple[BodyRecord, bool, bool]:
    """One `chunks`-style line -> (record, lossy, ts invalid)."""
    d, rid, lossy = _load_record(line)
    ts, bad_ts = _ts(d)
    data = d.get("data")
    if data is not None:
        if type(data) is not str:
            raise ParseError("body_data_not_a_string")
        return BodyRecord(rid, BODY_DATA, ts, data), lossy, bad_ts
    end = d.get("end")
    if end is not None:
        if type(end) is not str:
            raise ParseError("body_end_not_a_string")
        return BodyRecord(rid, BODY_END, ts, "", end), lossy, bad_ts
    if "body" in d:  # a `bodies` record in a `chunks` log: accept it
        return parse_bodies_obj(d, rid, ts), lossy, bad_ts
    raise ParseError("body_record_without_data_or_end")


def _group_pure(
    lines: list[bytes],
) -> tuple[dict[str, list[bytes]], list[bytes], list[int]] | None:
    """The per-line pass of `decode_chunk_lines` -> (groups, odd lines, each group's bytes in
    `groups` order), or None when an id fails its check (the caller then takes the per-line
    path). `_bodyscan.c` is this in C."""
    groups: defaultdict[bytes, list[bytes]] = defaultdict(list)
    odd: list[bytes] = []
    rid_key, data_key = _RID, _DATA
    for line in lines:
        k = line.find(rid_key) + 15
        e = line.find(data_key, k)
        if k > 15 and e > k and line[-1] == 125 and line[-2] == 34:  # ends with '"}'
            groups[line[k:e]].append(line)
        else:
            odd.append(line)
    out: dict[str, list[bytes]] = {}
    for rid, parts in groups.items():
        if not rid.isascii() or b'"' in rid or b"\\" in rid:
            return None
        out[rid.decode("ascii")] = parts
    return out, odd, [sum(map(len, parts)) for parts in out.values()]


def _scan_block_pure(
    head: list[bytes], block: bytes, start: int, end: int
) -> tuple[dict[str, bytes], list[bytes], list[int], list[int], int] | None:
    """`_group_pure` of the lines `head + block[start:end].split(b"\\n")`, each group's lines
    joined by b"\\n" into one bytes object -> (groups, odd lines, each group's bytes without the
    newlines, each group's line count, the number of lines), or None. `_bodyscan.c`'s
    `scan_block` is this in C, without an object per line."""
    lines = head + block[start:end].split(b"\n")
    grouped = _group_pure(lines)
    if grouped is None:
        return None
    groups, odd, sizes = grouped
    counts = [len(parts) for parts in groups.values()]
    joined = {rid: b"\n".join(parts) for rid, parts in groups.items()}
    return joined, odd, sizes, counts, len(lines)


_END = b'","end":"'
_TEXT = bytes(range(0x20, 0x7F)).replace(b'"', b"").replace(b"\\", b"")  # nothing to decode


def _end_record_pure(line: bytes) -> tuple[str, float | None, str] | None:
    """An end record in the shape the proxy writes, `{"ts":T,"request_id":"ID","end":"E"}`
    exactly, read without a JSON decode -> (ID, time, E), as `parse_chunks_checked` reads it
    (a test compares them); None for anything else (the careful path). T: plain digits, at
    most 15 (an int below 2**53: orjson's int and float give the same double) and at most 17
    after a point; ID and E: printable ASCII without a quote or a backslash (no escape), ID
    neither empty nor "-" (the careful path refuses those). `_bodyscan.c` is this in C."""
    if type(line) is not bytes or not (line.startswith(b'{"ts":') and line.endswith(b'"}')):
        return None
    c = line.find(_RID, 6)
    whole, dot, frac = line[6:c].partition(b".")
    if (
        c < 0
        or not (whole.isdigit() and len(whole) <= 15 and (len(whole) == 1 or whole[0] != 48))
        or (dot and not (frac.isdigit() and len(frac) <= 17))
    ):
        return None
    e = line.find(_END, c + 15)
    if e < 0 or e + 9 > len(line) - 2:
        return None
    rid, end = line[c + 15 : e], line[e + 9 : -2]
    if rid in (b"", b"-") or rid.translate(None, _TEXT) or end.translate(None, _TEXT):
        return None
    return rid.decode("ascii"), parse_time(float(line[6:c])), end.decode("ascii")


_bodyscan = native.load("sidecar.parse._bodyscan")  # C twins of the _pure ones, if built
NATIVE = _bodyscan is not None  # which ones the hot path uses (tests, `bench/`)
_group: Callable[[list[bytes]], tuple[dict, list[bytes], list[int]] | None] = (
    _bodyscan.group_chunk_lines if _bodyscan else _group_pure
)
_scan_block: Callable[[list[bytes], bytes, int, int], tuple | None] = (
    _bodyscan.scan_block if _bodyscan else _scan_block_pure
)
_join_escaped: Callable[[list[bytes]], bytes] = (
    _bodyscan.join_escaped if _bodyscan else _join_escaped_pure
)
_join_escaped_lines: Callable[[list[bytes]], bytes] = (
    _bodyscan.join_escaped_lines if _bodyscan else _join_escaped_lines_pure
)
_end_record: Callable[[bytes], tuple[str, float | None, str] | None] = (
    _bodyscan.end_record if _bodyscan else _end_record_pure
)


def decode_chunk_lines(lines: list[bytes]) -> Decoded:
    """The hot path: a batch of `chunks` lines -> `Decoded` (see the module docstring).

    One pass (`_group`: in C when built, else `_group_pure`) finds each line's request id with
    two finds and groups the line under it as it is (no copy, no decode); the line must end
    with `"}`. Per request id of the batch the id is checked: plain ASCII, no quote (it then
    ends right at `","data":"`), no backslash (a JSON escape). The other lines are read one by
    one (end records, mostly). Whatever is unusual, an id that fails its check, a data line in
    another shape, a line that does not decode, sends the whole batch through `_decode_each`,
    the per-line path with the same result and the lines' indexes for the errors."""
    grouped = _group(lines)
    if grouped is None:
        return _decode_each(lines)
    out, odd, sizes = grouped
    return _with_odd(Decoded(out, [], [], 0, 0, sizes), odd, lambda: lines)


def decode_chunk_block(head: list[bytes], block: bytes, start: int, end: int) -> Decoded:
    """`decode_chunk_lines` of the lines `head + block[start:end].split(b"\\n")` (a read block's
    batch, sources/lines.py), without an object per line: each request's lines of the block
    come as ONE bytes object, joined by b"\\n" (`Decoded.counts` says how many). Whatever sends
    `decode_chunk_lines` to its per-line path cuts the lines and takes it here too.
    `Decoded.nlines` is the number of lines."""
    scanned = _scan_block(head, block, start, end)

    def lines() -> list[bytes]:
        return head + block[start:end].split(b"\n")

    if scanned is None:
        dec = _decode_each(lines())
    else:
        out, odd, sizes, counts, n = scanned
        dec = _with_odd(Decoded(out, [], [], 0, 0, sizes, counts, n), odd, lines)
    if dec.nlines < 0:
        dec.nlines = len(head) + block.count(b"\n", start, end) + 1  # the per-line path's
    return dec


def decode_chunk_batch(batch: Any) -> Decoded:
    """A tailer's batch (`LineBatch`, sources/lines.py) -> `Decoded`: its read block scanned
    as it is when it kept one (then `batch.count` is set from the scan), else its lines."""
    if batch.block is None:
        return decode_chunk_lines(batch.lines)
    dec = decode_chunk_block(batch.head, batch.block, batch.block_from, batch.block_to)
    batch.count = dec.nlines
    return dec


def _with_odd(dec: Decoded, odd: list[bytes], lines: Callable[[], list[bytes]]) -> Decoded:
    """The grouped batch `dec` with its other lines read one by one (end records, mostly: in
    the proxy's shape without a JSON decode, `_end_record`); any that fails or is data takes
    the whole batch (`lines()`) to `_decode_each`."""
    records = dec.records
    for line in odd:
        end = _end_record(line)
        if end is not None:
            records.append(BodyRecord(end[0], BODY_END, end[1], "", end[2]))
            if end[1] is None:  # present but not a time: nulled and counted, as `_ts` does
                dec.invalid_ts += 1
            continue
        if not line.strip():
            continue
        try:
            rec, was_lossy, bad_ts = parse_chunks_checked(line)
        except Exception:  # the error needs its line index: the per-line path has it
            return _decode_each(lines())
        if rec.kind == BODY_DATA:  # its place among the request's parts: per line too
            return _decode_each(lines())
        dec.records.append(rec)
        dec.lossy += was_lossy
        dec.invalid_ts += bad_ts
    return dec


def _decode_each(lines: list[bytes]) -> Decoded:
    """`decode_chunk_lines` line by line: the general case (see there)."""
    groups: dict[str, list[bytes]] = {}
    records: list[BodyRecord] = []
    errors: list[tuple[int, ParseError]] = []
    lossy = invalid_ts = 0
    get = groups.get
    rid_key, data_key = _RID, _DATA
    for i, line in enumerate(lines):
        # The canonical shape, checked by its landmarks; the `ts` before the id is not used.
        j = line.find(rid_key)
        if j > 0 and line.endswith(b'"}'):
            k = j + 15
            e = line.find(b'"', k)
            if e > k and line.startswith(data_key, e):
                try:
                    rid = line[k:e].decode("ascii")
                except UnicodeDecodeError:
                    pass
                else:
                    g = get(rid)
                    if g is None:
                        groups[rid] = [line]
                    else:
                        g.append(line)
                    continue
        if not line.strip():
            continue
        try:
            rec, was_lossy, bad_ts = parse_chunks_checked(line)
        except ParseError as exc:
            errors.append((i, exc))
            continue
        except Exception as exc:  # a bug must cost one line, never the pipeline
            errors.append((i, ParseError("body_decode_failed", type(exc).__name__)))
            continue
        lossy += was_lossy
        invalid_ts += bad_ts
        if rec.kind == BODY_DATA:
            groups.setdefault(rec.request_id, []).append(escape_part(rec.data, rec.ts))
        else:
            records.append(rec)
    if any("\\" in rid for rid in groups):  # per batch, not per line
        groups = _unescape_ids(groups)
    return Decoded(groups, records, errors, lossy, invalid_ts)


def _unescape_ids(groups: dict[str, list[bytes]]) -> dict[str, list[bytes]]:
    """The fast path keeps an id as written; one with a JSON escape (`a\\\\b`, `\\u00e9`) is
    decoded here, so it is the same id the access log and the careful path read."""
    out: dict[str, list[bytes]] = {}
    for rid, parts in groups.items():
        key = rid
        if "\\" in rid:
            with contextlib.suppress(_JSONDecodeError):  # an invalid escape: kept as written
                key = _loads(b'"' + rid.encode() + b'"')
        out.setdefault(key, []).extend(parts)
    return out


def parse_bodies_obj(d: dict, rid: str, ts: float | None = None) -> BodyRecord:
    body = d.get("body")
    if body is None:
        body = ""
    if type(body) is not str:
        raise ParseError("body_not_a_string")
    ct = d.get("content_type")
    return BodyRecord(
        rid,
        BODY_WHOLE,
        ts,
        body,
        "complete",
        ct if isinstance(ct, str) else None,
        d.get("truncated") is True,
    )


def parse_bodies_line(line: bytes) -> tuple[BodyRecord, bool]:
    """One `bodies`-style line (the whole body at once) -> (record, lossy)."""
    return parse_bodies_checked(line)[:2]  # type: ignore[return-value]


def parse_bodies_checked(line: bytes) -> tuple[BodyRecord, bool, bool]:
    """One `bodies`-style line -> (record, lossy, ts invalid)."""
    d, rid, lossy = _load_record(line)
    if "body" not in d and "data" in d:  # tolerate a chunks line
        return parse_chunks_checked(line)
    ts, bad_ts = _ts(d)
    return parse_bodies_obj(d, rid, ts), lossy, bad_ts


def decode_bodies_lines(lines: list[bytes]) -> Decoded:
    """Decode a batch of `bodies` lines: same contract as `decode_chunk_lines`."""
    out = Decoded({}, [], [], 0)
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec, was_lossy, bad_ts = parse_bodies_checked(line)
        except ParseError as exc:
            out.errors.append((i, exc))
            continue
        except Exception as exc:  # a bug must cost one line, never the pipeline
            out.errors.append((i, ParseError("body_decode_failed", type(exc).__name__)))
            continue
        out.lossy += was_lossy
        out.invalid_ts += bad_ts
        if rec.kind == BODY_DATA:
            out.groups.setdefault(rec.request_id, []).append(escape_part(rec.data, rec.ts))
        else:
            out.records.append(rec)
    return out
