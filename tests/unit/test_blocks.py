"""The body log without an object per line: a read block is scanned in one pass and each
request's lines of it come as one bytes object (a *chunk*), kept so by the join and cut into
lines only where a consumer reads them.

Every step is checked against the per-line path it replaces, on hostile input: the C scanner
(`_bodyscan.scan_block`) against its pure twin and against `group_chunk_lines` on the split
lines; `decode_chunk_block` against `decode_chunk_lines`; the chunked join against the join fed
line lists (the same `Completed`, packing and compaction included); `BodyLines` against a list
under any order of reads; `join_escaped_lines` against `join_escaped` of the split lines."""

from __future__ import annotations

import gc
import os
import sys
import zlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.join import Joiner
from sidecar.join.bodylines import WALK, PureBodyLines
from sidecar.parse import body
from sidecar.parse.compact import compact_stream
from sidecar.sources import lines as L
from sidecar.types import AccessRecord
from tests.leaks import grown_bytes

if os.environ.get("CI"):  # under CI the extensions must be built: a silent fallback fails here
    from sidecar.join import _bodylines
    from sidecar.parse import _bodyscan as native
    from sidecar.sources import _splitlines
else:
    native = pytest.importorskip("sidecar.parse._bodyscan")
    _splitlines = pytest.importorskip("sidecar.sources._splitlines")
    _bodylines = pytest.importorskip("sidecar.join._bodylines")
KINDS = [PureBodyLines, _bodylines.BodyLines]  # the twins: every read must give the same

RID, DATA = b',"request_id":"', b'","data":"'

pieces = st.sampled_from(
    [RID, DATA, b'{"ts":1.7e9', b'"}', b"}", b'"', b"\\", b"\x00", b"\xff", b",", b"a1", b" "]
)
glued = st.lists(st.one_of(pieces, st.binary(max_size=6)), max_size=10).map(b"".join)
ids = st.one_of(
    st.sampled_from([b"a1", b"b2", b"7", b"", b'q"q', b"a\\b", b"\xc3\xa9", b"x\x00y"]),
    st.binary(max_size=5),
    # whole 8-byte words and a rest, a quote or backslash anywhere in them (C hashes the words
    # as it looks for the id's end)
    st.lists(
        st.sampled_from([b"a", b"0", b'"', b"\\", b"\xff", b"\n"]), min_size=6, max_size=40
    ).map(b"".join),
    st.sampled_from([b"c9bf34ca8c6a8fcfe4d7738ae6d20df9", b"c9bf34ca8c6a8fcfe4d7738ae6d20df8"]),
)
plain_ids = st.sampled_from([b"a1", b"b2", b"c3", b"7"])


@st.composite
def canonical(draw: st.DrawFn, rid: st.SearchStrategy[bytes] = ids) -> bytes:
    ts = draw(st.sampled_from([b"1.5", b"2", b"1e999", b"nan", b"x", b"1772442130.507"]))
    data = draw(st.binary(max_size=8).map(lambda b: b.replace(b"\n", b"")))
    return b'{"ts":' + ts + RID + draw(rid) + DATA + data + b'"}'


ends = st.sampled_from(
    [
        b'{"ts":3,"request_id":"a1","end":"complete"}',
        b'{"ts":1,"request_id":"b2","end":"cancelled"}',
        b'{"request_id":"c3","end":"complete"}',
        b'{"ts":2,"request_id":"a1","data":"late, odd shape","x":1}',
        b"not json",
        b"   ",
        b'{"ts":1,"request_id":7,"data":"int id"}',
    ]
)
line = st.one_of(canonical(), canonical(plain_ids), glued, ends).map(
    lambda b: b.replace(b"\n", b"")
)


@st.composite
def batch(draw: st.DrawFn) -> tuple[list[bytes], bytes, int, int, list[bytes]]:
    """(head, block, start, end, the lines they stand for), as `Lines.feed` cuts them."""
    lines = draw(st.lists(line, min_size=1, max_size=30))
    head = lines[:1] if draw(st.booleans()) else []
    rest = lines[len(head) :] or [b""]
    pre = draw(st.binary(max_size=4).map(lambda b: b.replace(b"\n", b"") + b"\n"))
    post = draw(st.binary(max_size=4))
    block = pre + b"\n".join(rest) + b"\n" + post
    start, end = len(pre), len(pre) + len(b"\n".join(rest))
    return head, block, start, end, head + rest


def check_scan(head: list[bytes], block: bytes, start: int, end: int, lines: list[bytes]) -> None:
    c = native.scan_block(head, block, start, end)
    p = body._scan_block_pure(head, block, start, end)
    g = native.group_chunk_lines(lines)
    if p is None:
        assert c is None and g is None
        return
    assert c is not None and g is not None
    groups, odd, sizes, counts, n = c
    assert list(groups) == list(p[0]) == list(g[0])  # same ids, same (first-seen) order
    assert groups == p[0] and odd == p[1] and sizes == p[2] == g[2] and counts == p[3]
    assert n == p[4] == len(lines)
    for rid, chunk in groups.items():
        assert type(chunk) is bytes and chunk.split(b"\n") == g[0][rid]
    assert odd == g[1]
    assert counts == [len(x) for x in g[0].values()]


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
@given(b=batch())
def test_scan_block_equals_pure_and_the_line_grouping(b: tuple) -> None:
    check_scan(*b)


def _same_decoded(a: body.Decoded, b: body.Decoded) -> None:
    def groups(d: body.Decoded) -> dict:
        if d.counts is None:
            return d.groups
        return {rid: chunk.split(b"\n") for rid, chunk in d.groups.items()}

    assert groups(a) == groups(b)
    assert list(groups(a)) == list(groups(b))
    assert a.records == b.records
    assert [(i, e.reason) for i, e in a.errors] == [(i, e.reason) for i, e in b.errors]
    assert (a.lossy, a.invalid_ts) == (b.lossy, b.invalid_ts)
    if a.counts is not None:
        assert a.counts == [len(x) for x in groups(a).values()]
        assert a.sizes == [sum(map(len, x)) for x in groups(a).values()]


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(b=batch())
def test_decode_chunk_block_equals_decode_chunk_lines(b: tuple) -> None:
    head, block, start, end, lines = b
    got = body.decode_chunk_block(head, block, start, end)
    _same_decoded(got, body.decode_chunk_lines(lines))
    assert got.nlines == len(lines)
    saved = body._scan_block
    body._scan_block = body._scan_block_pure
    try:
        _same_decoded(body.decode_chunk_block(head, block, start, end), got)
    finally:
        body._scan_block = saved


def test_scan_block_edges() -> None:
    big = b'{"ts":1' + RID + b"r" + DATA + b"x" * (3 << 20) + b'"}'
    for head, block, start, end in [
        ([], b"", 0, 0),
        ([], b"\n", 0, 0),
        ([b""], b"x\n", 0, 1),
        ([], b"a\nb", 5, 2),  # start past end: one empty line
        ([], b"a\nb", 0, 99),  # end past the block: clamped
        ([big], big + b"\n" + big, 0, len(big) * 2 + 1),
        ([], b'{"ts":1' + RID + b'q"q' + DATA + b'"}', 0, 99),  # not plain: None
    ]:
        lines = head + block[start:end].split(b"\n")
        check_scan(head, block, start, end, lines)
    for args in [([], "str", 0, 1), ((), b"x", 0, 1), ([1], b"x", 0, 1), ([], b"x", 0)]:
        with pytest.raises(TypeError):
            native.scan_block(*args)
    with pytest.raises(ValueError):
        native.scan_block([], b"x", -1, 1)


def test_ids_made_to_collide_give_up_in_the_block_scan_too() -> None:
    """A probe past MAX_PROBE: None, the per-line path (shared code with group_chunk_lines,
    whose crafted-collision test is in test_native.py); here: many ids, one block."""
    rids = [b"r%d" % i for i in range(5000)] + [b"x" * n for n in range(1, 40)]
    lines = [b'{"ts":1' + RID + r + DATA + b"%d" % i + b'"}' for i, r in enumerate(rids)]
    lines += lines[::-1]
    block = b"\n".join(lines)
    check_scan([], block, 0, len(block), lines)


@settings(max_examples=500)
@given(parts=st.lists(st.lists(line, min_size=1, max_size=5), max_size=8))
def test_join_escaped_lines_equals_join_escaped_of_the_lines(parts: list) -> None:
    chunks = [b"\n".join(p) for p in parts]
    flat = [x for c in chunks for x in c.split(b"\n")]
    want = native.join_escaped(flat)
    assert native.join_escaped_lines(chunks) == want == body._join_escaped_lines_pure(chunks)
    assert body._join_escaped_pure(flat) == want


@settings(max_examples=500)
@given(block=st.binary(max_size=40), a=st.integers(0, 45), b=st.integers(0, 45))
def test_count_lines(block: bytes, a: int, b: int) -> None:
    want = len(block[a:b].split(b"\n"))
    assert _splitlines.count_lines(block, a, b) == want == L._count_pure(block, a, b)


def test_no_reference_or_memory_kept() -> None:
    lines = [b'{"ts":1' + RID + b"r%d" % (i % 5) + DATA + b'x"}' for i in range(50)]
    lines += [b" " * 3, b'{"end":' + b'"complete"}']
    head = [b'{"ts":1' + RID + b"h" + DATA + b'x"}']
    block = b"pre\n" + b"\n".join(lines) + b"\npost"
    bad = block + b"\n" + b"{" + RID + b'q"q' + DATA + b'"}'
    chunks = [b"\n".join(lines[:10]), lines[11]]
    objs = [*head, block, bad, *chunks]
    counts = [sys.getrefcount(x) for x in objs]

    def once() -> None:
        native.scan_block(head, block, 4, len(block) - 5)
        native.scan_block(head, bad, 4, len(bad))
        native.join_escaped_lines(chunks)
        _splitlines.count_lines(block, 0, len(block))

    for _ in range(200):
        once()
        with pytest.raises(TypeError):
            native.join_escaped_lines([*chunks, 1])
        with pytest.raises(TypeError):
            native.scan_block([*head, 1], block, 0, 9)
    assert [sys.getrefcount(x) for x in objs] == counts
    assert grown_bytes(once) < 10_000


# ---------------------------------------------------------------------------- BodyLines
@st.composite
def chunked(draw: st.DrawFn) -> tuple[list[bytes], list]:
    lines = draw(st.lists(st.binary(max_size=6).map(lambda b: b.replace(b"\n", b"")), max_size=90))
    chunks: list = []
    i = 0
    while i < len(lines):
        k = draw(st.integers(1, 40))
        group = lines[i : i + k]
        chunks.append(b"\n".join(group) if len(group) > 1 or draw(st.booleans()) else group[0])
        i += k
    return lines, chunks


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=500)
@given(c=chunked(), reads=st.lists(st.integers(-100, 100), max_size=30))
def test_body_lines_read_like_a_list_in_any_order(kind: type, c: tuple, reads: list[int]) -> None:
    lines, chunks = c
    n = len(lines)
    # a chunk of one empty line is b"", which `split` reads as one line too
    seq = kind(chunks, n)
    assert len(seq) == n and bool(seq) == bool(lines)
    for i in reads:
        if -n <= i < n:
            assert seq[i] == lines[i]
        else:
            with pytest.raises(IndexError):
                seq[i]
    for a, b in [(None, 3), (-3, None), (2, 5), (None, None), (-5, -1), (4, 2)]:
        assert seq[a:b] == lines[a:b]
    assert seq[::2] == lines[::2] and seq[::-1] == lines[::-1]
    assert list(reversed(seq)) == lines[::-1] and list(seq) == lines
    assert seq == lines and seq.lines() == lines


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=200)
@given(c=chunked())
def test_body_lines_walks_from_both_ends(kind: type, c: tuple) -> None:
    """The edges parse's reads: from the front and the back, one step at a time, then slices
    of what was walked (no cut of every line when the walks stay short)."""
    lines, chunks = c
    n = len(lines)
    seq = kind(chunks, n)
    h = min(n, 3)
    assert [seq[i] for i in range(h)] == lines[:h]
    t = n
    while t > h and n - t < 5:
        t -= 1
        assert seq[t] == lines[t]
    assert seq[:h] == lines[:h] and seq[t:] == lines[t:]
    if n < WALK and kind is PureBodyLines:
        assert seq._all is None  # nothing cut whole
    assert body.assemble_escaped(seq)[0] == body.assemble_escaped(lines)[0]
    assert list(seq.chunks) == chunks


def _edges_of(lines: list, head_bytes: int, tail_bytes: int) -> list:
    """What `edges` must give, taken from the plain list: the shortest prefix of at least
    `head_bytes` and the shortest suffix of at least `tail_bytes` after it; all when they meet."""
    h = 0
    while h < len(lines) and sum(map(len, lines[:h])) < head_bytes:
        h += 1
    t = len(lines)
    while t > h and sum(map(len, lines[t:])) < tail_bytes:
        t -= 1
    return list(lines) if t <= h else lines[:h] + lines[t:]


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=500)
@given(
    c=chunked(),
    head=st.one_of(st.integers(-3, 40), st.sampled_from([2**70, -(2**70), True])),
    tail=st.one_of(st.integers(-3, 40), st.sampled_from([2**70, -(2**70), False])),
    reads=st.lists(st.integers(-100, 100), max_size=5),
)
def test_body_lines_edges_are_the_lists_edges(
    kind: type, c: tuple, head: int, tail: int, reads: list[int]
) -> None:
    """`edges` (the C readers' head and tail lines, parse/response.py) gives exactly what the
    walk over the plain list gives, after any earlier reads, and leaves every read right."""
    lines, chunks = c
    n = len(lines)
    seq = kind(chunks, n)
    for i in reads:
        if -n <= i < n:
            assert seq[i] == lines[i]
    got = seq.edges(head, tail)
    assert type(got) is list and got == _edges_of(lines, head, tail)
    assert seq.edges(head, tail) == got  # again, from what was walked
    if n < WALK and kind is PureBodyLines and len(got) < n and not reads:
        assert seq._all is None  # read from both ends, nothing cut whole
    assert seq == lines and seq[::-1] == lines[::-1]


@pytest.mark.parametrize("kind", KINDS)
def test_body_lines_edges_refuse_what_is_not_an_integer(kind: type) -> None:
    seq = kind([b"a\nb", b"c"], 3)
    for bad in [(1.5, 2), (1, "2"), (None, 1)]:
        with pytest.raises(TypeError):
            seq.edges(*bad)
    with pytest.raises(TypeError):
        seq.edges(1)
    for args in [(1, 1), (0, 10), (10, 0), (10, 10)]:
        # a length the chunks do not have: never a crash, and the same answer as the twin's
        assert _outcome(kind([b"a"], 3), args) == _outcome(PureBodyLines([b"a"], 3), args)


def _outcome(seq: Any, args: tuple[int, int]) -> Any:
    try:
        return seq.edges(*args)
    except Exception as exc:
        return type(exc)


def test_body_lines_c_type_edges_and_references() -> None:
    C = _bodylines.BodyLines
    chunks = [b"a\nb", "s", b"", b"c\n", b"d"]
    lines = [b"a", b"b", "s", b"", b"c", b"", b"d"]
    for kind in KINDS:
        seq = kind(chunks, len(lines))
        assert seq == lines and seq == tuple(lines)
        assert (seq != lines) is False
        assert seq[True] == lines[1] and repr(seq).startswith("BodyLines(")
        with pytest.raises(TypeError):
            seq["x"]
        with pytest.raises(TypeError):
            hash(seq)
    with pytest.raises(ValueError):
        C([], -1)
    with pytest.raises(TypeError):
        C(7, 1)
    short = C([b"a"], 3)  # a length the chunks do not have: an error, never a crash
    with pytest.raises(IndexError):
        short[1]
    with pytest.raises(IndexError):
        short[-1] and short[-2] and short[-3]
    del seq, short
    gc.collect()
    objs = [*chunks]
    counts = [sys.getrefcount(x) for x in objs]
    for _ in range(200):
        seq = C(chunks, len(lines))
        seq[0], seq[-1], seq[3], seq[1:3], seq[-2:], list(seq), list(reversed(seq))
        seq.edges(1, 2), seq.edges(100, 100)
        del seq
    assert [sys.getrefcount(x) for x in objs] == counts

    def calls() -> None:
        seq = C(chunks, 7)
        seq[0], seq[-1], seq[2:5], seq.lines()

    assert grown_bytes(calls) < 10_000


# ---------------------------------------------------------------------------- the join
def _line(rid: str, i: int, ts: float) -> bytes:
    return b'{"ts":%r,"request_id":"%s","data":"data: {\\"i\\":%d}\\n\\n"}' % (
        ts,
        rid.encode(),
        i,
    )


def _access(rid: str, t: float) -> AccessRecord:
    return AccessRecord(request_id=rid, time=t, status=200)


def _run(chunked_join: bool, n_req: int, per_req: int, **kw: object) -> list:
    j = Joiner(assemble=body.assemble_escaped, compact=compact_stream, **kw)  # type: ignore[arg-type]
    out: list = []
    rids = [f"r{i}" for i in range(n_req)]
    ts = 1000.0
    for step in range(per_req):
        lines = []
        for rid in rids:
            ts += 0.001
            lines.append(_line(rid, step, ts))
        block = b"\n".join(lines)
        if chunked_join:
            dec = body.decode_chunk_block([], block, 0, len(block))
            assert dec.counts is not None
        else:
            dec = body.decode_chunk_lines(lines)
        j.add_chunks(dec.groups, dec.records, "s", out, dec.sizes, dec.counts)
    for rid in rids:
        ts += 0.001
        j.add_body(
            body.parse_chunks_line(
                b'{"ts":%r,"request_id":"%s","end":"complete"}' % (ts, rid.encode())
            )[0],
            "s",
            out,
        )
        j.add_access(_access(rid, ts), "s", None, out)
    return out


def _shape(out: list) -> list:
    return [
        (
            c.request_id,
            None if c.parts is None else list(c.parts),
            c.first_ts,
            c.last_ts,
            c.raw_bytes,
            c.text(),
            c.prior_text,
            c.body_truncated,
            c.expired,
        )
        for c in out
    ]


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"max_pending_bytes": 40_000},  # packing under pressure
        {"compact_bytes": 3_000},  # compaction of long streams
        {"max_body_bytes": 5_000},  # capped bodies
    ],
)
def test_chunked_join_gives_the_same_requests(kw: dict) -> None:
    a = _run(True, 12, 60, **kw)
    b = _run(False, 12, 60, **kw)
    assert len(a) == 12 and _shape(a) == _shape(b)


def test_packed_chunks_come_back_as_lines() -> None:
    j = Joiner(assemble=body.assemble_escaped)
    lines = [_line("r", i, 1000.0 + i) for i in range(40)]
    block = b"\n".join(lines)
    dec = body.decode_chunk_block([], block, 0, len(block))
    out: list = []
    j.add_chunks(dec.groups, [], "s", out, dec.sizes, dec.counts)
    p = j._pending["r"]
    assert p.lines == 40 and len(p.parts) == 1
    j._pack(p)
    assert p.packed is not None and p.packed_lines == 40 and p.lines == 0
    assert zlib.decompress(p.packed[0]) == block
    j.add_access(_access("r", 2000.0), "s", None, out)
    j.add_body(
        body.parse_chunks_line(b'{"ts":2000,"request_id":"r","end":"complete"}')[0], "s", out
    )
    assert len(out) == 1 and list(out[0].parts) == lines and len(out[0].parts) == 40


def test_line_batch_keeps_its_block() -> None:
    data = b"ab\ncd\nef\ngh"
    cut = L.Lines(100)
    (b1,) = cut.feed(data[:4], 0, "p", "k")  # "ab\nc"
    (b2,) = cut.feed(data[4:], 4, "p", "k")  # "d\nef\ngh": completes "cd"
    assert b1.block is not None and b1.count == 1 and b1.lines == [b"ab"]
    assert b2.head == [b"cd"] and b2.edge_lines() == (b"cd", b"ef") and b2.count == 2
    assert b2.lines == [b"cd", b"ef"] and (b2.start_offset, b2.end_offset) == (3, 9)
    b2.count = 7  # a reader that scanned the block sets it
    assert b2.count == 7


@settings(max_examples=500)
@given(
    data=st.lists(st.sampled_from([b"\n", b"ab", b"c", b"", b"\n\n", b"xyz"]), max_size=30).map(
        b"".join
    ),
    cuts=st.lists(st.integers(0, 60), max_size=6),
    max_line=st.integers(1, 40),
)
def test_line_batch_edges_and_count_without_cutting(data: bytes, cuts: list, max_line: int) -> None:
    """A batch's first and last line and its count, read from its block, are those of its
    lines (asked before the lines are cut, as the body reader does)."""
    cut, pos = L.Lines(max_line), 0
    for end in [*sorted(c for c in cuts if c <= len(data)), len(data)]:
        for b in cut.feed(data[pos:end], pos, "p", "k"):
            edges, count = b.edge_lines(), b.count
            lines = b.lines
            assert count == len(lines)
            assert edges == ((lines[0], lines[-1]) if lines else (None, None))
        pos = max(pos, end)
