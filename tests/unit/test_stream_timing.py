"""`stream_timing` reads a stream's parts only as far as it needs (`scan_parts`: the first stamp,
the first part with visible output, the last stamp): it must give the same answers as reading
every part, the way it was first written (kept here as the reference), on any mix of stamped,
unstamped, torn, visible and hidden parts."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.enrich import timing as tm
from sidecar.enrich.timing import is_visible, scan_parts, stream_timing
from sidecar.parse.body import escape_part
from sidecar.types import Completed

HIDDEN = 'data: {"choices":[{"delta":{"role":"assistant"}}]}\n\n'
VISIBLE = 'data: {"choices":[{"delta":{"content":"Hi"}}]}\n\n'


def reference(parts: list[Any], look: bool) -> tuple[Any, Any, bool, Any]:
    """The original: every part decoded and tested, then the answers picked from the list."""
    stamps = [(ts, is_visible(data)) for ts, data in map(tm._part_time_and_data, parts)]
    known = [ts for ts, _ in stamps if ts is not None]
    first_visible = next(((True, ts) for ts, seen in stamps if seen), (False, None))
    if not look:
        first_visible = (False, None)
    return (known[0] if known else None, known[-1] if known else None, *first_visible)


def _part(kind: str, visible: bool, ts: float) -> Any:
    data = VISIBLE if visible else HIDDEN
    if kind == "stamped":
        return escape_part(data, ts)
    if kind == "unstamped":
        return escape_part(data)
    if kind == "torn":  # a stamp that is not a number, then a line that is not JSON
        return b'{"ts":1.2.3,"request_id":"r","data":"' + data.encode()[:20]
    return data  # a plain string part (the `bodies` style join)


parts_st = st.lists(
    st.tuples(
        st.sampled_from(["stamped", "unstamped", "torn", "str"]),
        st.booleans(),
        st.floats(min_value=1.7e9, max_value=1.8e9),
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(parts=parts_st, look=st.booleans())
def test_reading_only_what_is_needed_gives_the_same_answers(parts: list, look: bool) -> None:
    raw = [_part(*p) for p in parts]
    assert scan_parts(raw, look) == reference(raw, look)


def test_a_torn_stamp_is_no_time_rather_than_an_error() -> None:
    c = Completed(
        request_id="r",
        source="s",
        access=None,
        body=None,
        end=None,
        parts=[_part("torn", True, 0.0), escape_part(VISIBLE, 1.75e9)],
    )
    timing = stream_timing(c)
    assert timing is not None and timing.start == 1.75e9 and timing.first_visible == 1.75e9
