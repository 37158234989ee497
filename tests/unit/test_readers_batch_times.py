"""The body reader's event times of a batch (`_batch_times`): set-aside lines do not count,
and the data lines around them still do (they are decoded into groups, not records)."""

from __future__ import annotations

from sidecar.parse.body import decode_chunk_batch
from sidecar.pipeline.readers import _batch_times
from sidecar.sources.lines import LineBatch


def data(ts: str, rid: str = "r1") -> bytes:
    return b'{"ts":' + ts.encode() + b',"request_id":"' + rid.encode() + b'","data":"data: {}"}'


def times(lines: list[bytes]) -> tuple[float | None, float | None]:
    batch = LineBatch("body.log", "body|k", lines, 0, sum(len(x) + 1 for x in lines))
    dec = decode_chunk_batch(batch)
    return _batch_times(batch, dec.records, dec.errors)


def test_data_lines_beside_a_set_aside_line_keep_their_times() -> None:
    bad = b'{"ts":1e999,"request_id":"r2","data":'  # cut: set aside, its ts worthless
    assert times([data("1772442000.5"), data("1772442001.5")]) == (1772442000.5, 1772442001.5)
    assert times([bad, data("1772442000.5"), data("1772442001.5"), bad]) == (
        1772442000.5,
        1772442001.5,
    )
    assert times([bad, bad]) == (None, None)
