"""`stream_timing` reads a stream's parts only as far as it needs (the first stamp, the first part
with visible output, the last stamp): it must give the same answer as reading every part, the
way it was first written (kept here as the reference), on any mix of stamped, unstamped, torn,
visible and hidden parts."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.enrich import timing as tm
from sidecar.enrich.timing import StreamTiming, is_visible, request_start, stream_timing
from sidecar.parse.body import escape_part
from sidecar.types import AccessRecord, Completed

HIDDEN = 'data: {"choices":[{"delta":{"role":"assistant"}}]}\n\n'
VISIBLE = 'data: {"choices":[{"delta":{"content":"Hi"}}]}\n\n'


def reference(c: Completed) -> StreamTiming | None:
    """The original: every part decoded and tested, then the answers picked from the list."""
    stamps = [
        (ts, is_visible(data)) for ts, data in (tm._part_time_and_data(p) for p in (c.parts or ()))
    ]
    known = [ts for ts, _ in stamps if ts is not None]
    a = c.access
    ends = [t for t in (c.last_ts, known[-1] if known else None) if t is not None]
    if a is not None and a.time is not None:
        ends.append(float(a.time))
    firsts = [t for t in (c.first_ts, known[0] if known else None) if t is not None]
    start = request_start(c) if a is not None and a.duration_ms is not None else None
    if start is None and firsts:
        start = min(firsts)
    if start is None or not ends:
        return None
    end = max(max(ends), start)
    first_visible = None
    exact = True
    if c.prior_text:
        first_visible = min(firsts) if firsts else start
        exact = False
    elif stamps:
        for ts, visible in stamps:
            if visible:
                exact = ts is not None
                first_visible = ts if ts is not None else (min(firsts) if firsts else start)
                break
    elif c.body and is_visible(c.body):
        first_visible = end
        exact = False
    if first_visible is not None:
        first_visible = min(max(first_visible, start), end)
    return StreamTiming(start=start, first_visible=first_visible, end=end, exact=exact)


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
@given(
    parts=parts_st,
    prior=st.booleans(),
    access_time=st.one_of(st.none(), st.floats(min_value=1.7e9, max_value=1.8e9)),
    duration=st.one_of(st.none(), st.floats(min_value=0, max_value=1e6)),
    first_ts=st.one_of(st.none(), st.floats(min_value=1.7e9, max_value=1.8e9)),
    last_ts=st.one_of(st.none(), st.floats(min_value=1.7e9, max_value=1.8e9)),
)
def test_reading_only_what_is_needed_gives_the_same_timing(
    parts: list, prior: bool, access_time: Any, duration: Any, first_ts: Any, last_ts: Any
) -> None:
    access = AccessRecord(request_id="r", time=access_time, duration_ms=duration)
    c = Completed(
        request_id="r",
        source="s",
        access=access,
        body=None,
        end="complete",
        first_ts=first_ts,
        last_ts=last_ts,
        parts=[_part(*p) for p in parts],
        prior_text=["x"] if prior else [],
    )
    assert stream_timing(c) == reference(c)


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
