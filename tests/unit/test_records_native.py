"""The spool's record headers in C (`sidecar/spool/_records.c`: CRC-32 with carry-less
multiplication) against their pure-Python twin (`segment._record_headers_pure`, zlib's CRC-32),
on any bytes, any length (around the 16- and 64-byte steps of the folding), any sequence."""

from __future__ import annotations

import os
import random
import struct
import sys
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar import native
from sidecar.spool import segment
from sidecar.spool.segment import HEADER, _record_headers_pure, record_crc, record_headers
from tests.leaks import grown_bytes

if os.environ.get("CI"):  # under CI the extensions must be built: a silent fallback fails here
    from sidecar.spool import _records
else:
    _records = pytest.importorskip("sidecar.spool._records")

headers_c = _records.record_headers
LAST_SEQ = (1 << 64) - 1


def check(first_seq: int, payloads: list[bytes]) -> None:
    got = headers_c(first_seq, payloads)
    assert got == _record_headers_pure(first_seq, payloads)
    for seq, (h, p) in enumerate(zip(got, payloads, strict=True), first_seq):
        assert HEADER.unpack(h) == (len(p), record_crc(seq, p), seq)


def test_every_length_around_the_folding_steps() -> None:
    rnd = random.Random(14)
    sizes = [*range(0, 300), 1023, 1024, 1700, 4095, 4096, 65536 + 7]
    payloads = [rnd.randbytes(n) for n in sizes]
    check(0, payloads)
    check(2**32 - 1, payloads)  # the sequence's high half in the CRC
    check(LAST_SEQ - len(payloads) + 1, payloads)  # up to the last sequence there is
    check(7, [bytes(range(256)) * 7, b"\xff" * 200, b"\x00" * 200])  # all ones, all zeros


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=0, max_value=LAST_SEQ - 64),
    st.lists(st.binary(max_size=600), max_size=60),
)
def test_equals_pure_on_any_bytes(first_seq: int, payloads: list[bytes]) -> None:
    check(first_seq, payloads)


def test_buffers_other_than_bytes_give_the_same_headers() -> None:
    p = os.urandom(333)
    assert headers_c(5, [bytearray(p), memoryview(p)]) == _record_headers_pure(5, [p, p])


def test_bad_arguments_raise_and_a_sequence_past_u64_overflows_on_both_paths() -> None:
    with pytest.raises(TypeError):
        headers_c(0, (b"a",))  # a list only
    with pytest.raises(TypeError):
        headers_c(0, [b"a", "text"])
    with pytest.raises(TypeError):
        headers_c(0)  # type: ignore[call-arg]
    with pytest.raises(OverflowError):
        headers_c(-1, [b"a"])
    with pytest.raises(OverflowError):
        headers_c(LAST_SEQ, [b"a", b"b"])
    assert headers_c(LAST_SEQ, [b"a"]) == _record_headers_pure(LAST_SEQ, [b"a"])
    with pytest.raises(struct.error):
        _record_headers_pure(LAST_SEQ, [b"a", b"b"])
    for first in (-1, LAST_SEQ):  # the one entry point checks first, whichever path it takes
        with pytest.raises(OverflowError):
            record_headers(first, [b"a", b"b"])
    assert record_headers(LAST_SEQ, []) == []


def test_no_reference_or_memory_kept() -> None:
    payloads = [os.urandom(n) for n in (0, 15, 64, 1700)]
    counts = [sys.getrefcount(p) for p in payloads]
    for _ in range(200):
        headers_c(3, payloads)
        with pytest.raises(TypeError):
            headers_c(3, [*payloads, 1])
    assert [sys.getrefcount(p) for p in payloads] == counts
    assert grown_bytes(lambda: headers_c(3, payloads)) < 10_000


def test_the_spool_uses_the_c_headers_where_the_cpu_folds() -> None:
    """Where the CPU has carry-less multiplication the spool writes with the C headers (under
    CI: built and used); elsewhere with zlib's, which is faster than a table a byte at a time."""
    used = headers_c if _records.CLMUL and not native.PURE else _record_headers_pure
    assert segment._headers is used
    if os.environ.get("CI") and _records.CLMUL:
        assert os.environ.get("LLM_HEC_SIDECAR_PURE", "") in ("", "0"), "CI runs the C path"
        assert segment._headers is headers_c
    assert zlib.crc32(b"123456789") == 0xCBF43926  # the check value of the CRC both compute
    assert headers_c(0, [b"123456789"]) == _record_headers_pure(0, [b"123456789"])
