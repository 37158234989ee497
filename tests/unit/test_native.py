"""The C extensions of the hot path give exactly what their Python twins give, on any bytes,
and hold no reference or memory after a call: the body log's scanner
(`sidecar/parse/_bodyscan.c` vs `body._group_pure` and `body._join_escaped_pure`) and the
block splitter
(`sidecar/sources/_splitlines.c` vs `bytes.split`, through `Lines.feed`).

Hostile lines on purpose: the landmarks in odd places, ids with quotes, backslashes, NUL and
non-ASCII bytes, lines that end in `"}` inside a landmark, empty and megabyte lines."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.parse import body
from sidecar.sources import lines as L
from tests.leaks import grown_bytes

if os.environ.get("CI"):  # under CI the extensions must be built: a silent fallback fails here
    from sidecar.join import _bodylines
    from sidecar.parse import _bodyscan as native
    from sidecar.sources import _splitlines
else:
    native = pytest.importorskip("sidecar.parse._bodyscan")
    _splitlines = pytest.importorskip("sidecar.sources._splitlines")
    _bodylines = pytest.importorskip("sidecar.join._bodylines")

group_c = native.group_chunk_lines
group_py = body._group_pure

RID, DATA = b',"request_id":"', b'","data":"'

# Pieces a line is glued from: the landmarks, their fragments, and bytes that break the checks.
pieces = st.sampled_from(
    [
        RID,
        DATA,
        b'{"ts":1.7e9',
        b'"}',
        b"}",
        b'"',
        b"\\",
        b"\x00",
        b"\xff",
        b"\xc3\xa9",
        b",",
        b"a1",
        b"b2",
        b'","data":',
        b',"request_id":',
        b"\n",
        b" ",
    ]
)
glued = st.lists(st.one_of(pieces, st.binary(max_size=6)), max_size=10).map(b"".join)
ids = st.one_of(
    st.sampled_from([b"a1", b"b2", b"7", b"", b'q"q', b"a\\b", b"\xc3\xa9", b"x\x00y"]),
    st.binary(max_size=5),
)


@st.composite
def canonical(draw: st.DrawFn) -> bytes:
    rid = draw(ids)
    data = draw(st.binary(max_size=8))
    return b'{"ts":1.7e9' + RID + rid + DATA + data + b'"}'


lines = st.one_of(canonical(), glued, st.binary(max_size=20))


def check_same(batch: list[bytes]) -> None:
    c, p = group_c(batch), group_py(batch)
    if p is None:
        assert c is None
        return
    assert c is not None
    assert list(c[0]) == list(p[0])  # same ids, same order
    for rid in p[0]:
        assert [id(x) for x in c[0][rid]] == [id(x) for x in p[0][rid]]  # the same objects
    assert [id(x) for x in c[1]] == [id(x) for x in p[1]]
    assert all(type(k) is str for k in c[0])
    assert c[2] == p[2] == [sum(map(len, g)) for g in p[0].values()]  # bytes per group


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.lists(lines, max_size=40))
def test_native_equals_pure_on_any_bytes(batch: list[bytes]) -> None:
    check_same(batch)


@settings(max_examples=300)
@given(batch=st.lists(canonical(), max_size=40))
def test_native_equals_pure_on_canonical_lines(batch: list[bytes]) -> None:
    check_same(batch)


def test_edge_lines() -> None:
    cases = [
        b"",
        b'"}',
        RID,
        RID + DATA,
        b"x" + RID + DATA + b'"}',  # empty id: odd
        b"x" + RID + b"r" + DATA,  # ends with `"` of DATA then nothing
        b"x" + RID + b"r" + b'","data":"}',  # `"}` overlapping the landmark
        RID + b"r" + DATA + b'x"}',  # landmark at position 0: odd (k > 15 in Python)
        b"{" + RID + b"r" + DATA + b"x" * (3 << 20) + b'"}',  # megabytes
        b"{" + RID + b"r" + b"\x00" * 1000,
        b"{" + RID + b"r\x00s" + DATA + b'"}',
    ]
    for line in cases:
        check_same([line])
    check_same(cases)
    check_same([cases[-1], cases[-3], cases[-1]])


@settings(max_examples=1000)
@given(parts=st.lists(lines, max_size=20))
def test_join_escaped_equals_pure(parts: list[bytes]) -> None:
    """A request's parts cut and joined (`assemble_escaped`): the same bytes, a list or not."""
    want = body._join_escaped_pure(parts)
    assert native.join_escaped(parts) == want
    assert native.join_escaped(tuple(parts)) == want


def test_join_escaped_edges() -> None:
    big = b"{" + RID + b"r" + DATA + b"x" * (3 << 20) + b'"}'
    for parts in [
        [],
        [b""],
        [b"x"],
        [DATA],
        [DATA + b"}"],
        [DATA + b'"}'],
        [big, big[:-1], b"\x00"],
    ]:
        assert native.join_escaped(parts) == body._join_escaped_pure(parts)
    for bad in [[b"x", "s"], [None], 7]:
        with pytest.raises(TypeError):
            native.join_escaped(bad)


def test_many_ids_and_long_runs() -> None:
    """Thousands of ids in one batch (the C table grows many times while lines keep pointing
    into it), interleaved, with runs of one id, ids that share long prefixes and differ only in
    the last byte, and lengths around the 8-byte steps of its hash."""
    rids = [b"r%d" % i for i in range(5000)]
    rids += [b"x" * n for n in range(1, 40)]  # 1..39 bytes: every tail length
    rids += [b"p" * 31 + bytes([c]) for c in range(48, 58)]  # differ in the last byte only
    batch = [b'{"ts":1' + RID + rid + DATA + b"%d" % i + b'"}' for i, rid in enumerate(rids)]
    batch += batch[::-1] + batch[:100] * 3
    batch += [batch[7]] * 50  # a run: the previous group without the table
    check_same(batch)
    groups, _, sizes = group_c(batch)
    assert len(groups) == len(rids) and sum(sizes) == sum(map(len, batch))


_COLLIDING = """
import sys
from sidecar.parse import _bodyscan, body

M, MASK = 0x9E3779B97F4A7C15, (1 << 64) - 1


def h(s):  # _bodyscan.c's rid_hash with the hash secret of PYTHONHASHSEED=0 (all zero)
    x, i, n = (len(s) * M) & MASK, 0, len(s)
    while i + 8 <= n:
        x = ((x ^ int.from_bytes(s[i : i + 8], "little")) * M) & MASK
        x ^= x >> 29
        i += 8
    x = ((x ^ int.from_bytes(s[i:], "little")) * M) & MASK
    x ^= x >> 32
    x = (x * 0xD6E8FEB86659FD93) & MASK
    return x ^ (x >> 32)


ids = [b"c%d" % i for i in range(60000) if h(b"c%d" % i) & 0xFF == 0][:80]
assert len(ids) == 80
lines = [b'{"ts":1,"request_id":"' + r + b'","data":"x"}' for r in ids]
assert _bodyscan.group_chunk_lines(lines[:40]) is not None  # a cluster of 40: still found
assert _bodyscan.group_chunk_lines(lines) is None  # 80 in one cluster: gives up
got = body.decode_chunk_lines(lines)  # the per-line path: the same groups
assert list(got.groups) == [r.decode() for r in ids] and got.sizes is None
assert body._group_pure(lines)[0] == got.groups
print("ok")
"""


def test_ids_made_to_collide_give_up_to_the_per_line_path() -> None:
    """Ids crafted against a known hash seed (PYTHONHASHSEED=0 zeroes the secret the C table
    is seeded with): past MAX_PROBE the scanner returns None and the batch takes the per-line
    path, with the same groups, instead of slowing down quadratically."""
    env = {**os.environ, "PYTHONHASHSEED": "0", "LLM_HEC_SIDECAR_PURE": "0"}
    r = subprocess.run(
        [sys.executable, "-c", _COLLIDING], env=env, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_bad_arguments_raise() -> None:
    with pytest.raises(TypeError):
        group_c((b"x",))
    with pytest.raises(TypeError):
        group_c([b"x", "str"])
    with pytest.raises(TypeError):
        group_c([b"x", None])


def test_no_reference_or_memory_kept() -> None:
    batch = [b'{"ts":1' + RID + b"r%d" % (i % 5) + DATA + b'x"}' for i in range(50)]
    batch += [b" " * 3, b'{"end":' + b'"complete"}']  # made here: b"" is a shared singleton
    bad = [*batch, b"{" + RID + b'q"q' + DATA + b'"}']  # a None result after groups were made
    block = b"\n".join(bad)
    counts = [sys.getrefcount(x) for x in [*batch, block]]
    split = _splitlines.split_newlines
    join = native.join_escaped
    for _ in range(200):
        group_c(batch)
        group_c(bad)
        split(block)
        join(batch)
        with pytest.raises(TypeError):
            join([*batch, 1])
        with pytest.raises(TypeError):
            group_c([*batch, 1])
    assert [sys.getrefcount(x) for x in [*batch, block]] == counts
    assert (
        grown_bytes(lambda: (group_c(batch), group_c(bad), split(block), join(batch))) < 10_000
    )  # 3,000 calls: a leaked list or key per call is > 100 kB


def test_built_and_used_under_ci() -> None:
    """CI installs with a compiler (`.ci/run`): the hot path must be the C one there."""
    if not os.environ.get("CI"):
        pytest.skip("only under CI (CI=1)")
    assert os.environ.get("LLM_HEC_SIDECAR_PURE", "") in ("", "0"), "CI runs the C path"
    assert body.NATIVE
    assert L._split is _splitlines.split_newlines
    from sidecar.join import bodylines, pending

    assert pending.line_ts is not pending._line_ts_pure
    assert pending.line_ts is _bodylines.line_ts and pending.last_ts is _bodylines.last_ts
    assert bodylines.BodyLines is _bodylines.BodyLines is not bodylines.PureBodyLines


def test_c_limits_are_those_of_fields_py() -> None:
    """sidecar/_limits.h, the ranges the C extensions check (`_accessscan`, `_bodyscan`,
    `_bodylines`), holds the values of parse/fields.py that it mirrors."""
    from sidecar.parse import fields

    header = Path(body.__file__).parents[1] / "_limits.h"
    defines = re.findall(r"^#define (\w+) (\S+)", header.read_text(), re.MULTILINE)
    assert {name: float(value) for name, value in defines} == {
        "TIME_MIN": fields.TIME_MIN,
        "TIME_MAX": fields.TIME_MAX,
        "MS_FROM": fields._MS_FROM,
        "DURATION_MAX_MS": fields.DURATION_MAX_MS,
    }


def test_the_hot_path_uses_the_extension_unless_told_not_to() -> None:
    from sidecar.join import pending

    if os.environ.get("LLM_HEC_SIDECAR_PURE", "") not in ("", "0"):
        assert not body.NATIVE and body._group is group_py
        assert L._split is L._split_pure
        assert pending.line_ts is pending._line_ts_pure
        assert pending.last_ts is pending._last_ts_pure
    else:
        assert body.NATIVE and body._group is group_c
        assert L._split is _splitlines.split_newlines
        assert pending.line_ts is _bodylines.line_ts and pending.last_ts is _bodylines.last_ts


split_c = _splitlines.split_newlines if _splitlines else None
blocks = st.lists(st.one_of(st.just(b"\n"), pieces, st.binary(max_size=30)), max_size=30).map(
    b"".join
)


@settings(max_examples=1000)
@given(block=blocks)
def test_split_equals_bytes_split(block: bytes) -> None:
    assert split_c(block) == block.split(b"\n")


@settings(max_examples=1000)
@given(block=blocks, start=st.integers(0, 1000), end=st.integers(0, 1000))
def test_split_of_a_range_equals_the_slice_split(block: bytes, start: int, end: int) -> None:
    want = block[start:end].split(b"\n")
    assert split_c(block, start, end) == want == L._split_pure(block, start, end)
    with pytest.raises(ValueError):
        split_c(block, -1, end)
    with pytest.raises(TypeError):
        split_c(block, start)


def test_split_edges() -> None:
    for block in [
        b"",
        b"\n",
        b"\n\n",
        b"a",
        b"a\n",
        b"\na",
        b"\x00\n\x00",
        b"x" * (3 << 20) + b"\n",
    ]:
        assert split_c(block) == block.split(b"\n")
    with pytest.raises(TypeError):
        split_c("a\nb")
    with pytest.raises(TypeError):
        split_c(bytearray(b"a\nb"))


def feed_all(data: bytes, cuts: list[int], max_line: int, split: object) -> list:
    """`Lines.feed` over `data` cut at `cuts`, then `flush`: every batch, as the tailer sees it."""
    saved = L._split
    L._split = split  # type: ignore[assignment]
    try:
        cut, out, pos = L.Lines(max_line), [], 0
        for end in [*sorted(cuts), len(data)]:
            out += cut.feed(data[pos:end], pos, "p", "k")
            pos = max(pos, end)
        out.append(cut.flush(len(data), "p", "k"))
        return out
    finally:
        L._split = saved


@settings(max_examples=500)
@given(data=blocks, cuts=st.lists(st.integers(0, 400), max_size=6), max_line=st.integers(1, 40))
def test_lines_feed_same_with_either_split(data: bytes, cuts: list[int], max_line: int) -> None:
    """Offsets, partial lines, over-long lines skipped: `Lines.feed` gives the same batches."""
    cuts = [c for c in cuts if c <= len(data)]
    assert feed_all(data, cuts, max_line, split_c) == feed_all(data, cuts, max_line, L._split_pure)
