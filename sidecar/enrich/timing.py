"""When a stream started, first showed visible output, and ended, from the body log's stamps.

The body log stamps every chunk (`{"ts":T,"request_id":"ID","data":"..."}`); a joined request
carries those raw lines as its `parts` plus `first_ts` / `last_ts`. `stream_timing` reads them
only when an estimate or a calibration sample needs it (never on the hot path): one small JSON
decode per part, up to the first part that carries visible output (answer text, a tool call,
a refusal), and the last part's stamp. A reasoning model spends the time before that part
thinking in hidden tokens.

A stream the join compacted (a long one, contract 4) has lost its early parts: then only
`first_ts`, `last_ts` and the prefix's `prior_text` are known. If the prefix already showed
output, its first visible moment is somewhere before the kept parts: `first_visible` is then
taken as `first_ts` and `exact` is False (the hidden time is a lower bound).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from sidecar.types import Completed

# Output in one decoded chunk that the estimate counts as text (of any supported API): answer
# text, tool calls, refusals, and visible reasoning text (`reasoning_content`, which is counted
# too). Hidden reasoning, reasoning summaries and Gemini thought summaries are not: the time
# before the first such chunk is the model thinking in hidden tokens.
_VISIBLE = re.compile(
    r'"content":\s*"[^"]|"tool_calls":\s*\[\s*\{|"refusal":\s*"[^"]|"function_call":\s*\{'
    r'|"reasoning_content":\s*"[^"]|"reasoning":\s*"[^"]'
    r"|response\.output_text\.delta|response\.function_call_arguments\.delta"
    r"|response\.refusal\.delta|response\.custom_tool_call_input\.delta"
    r'|"text_delta"|"input_json_delta"|"functionCall"'
)
_GEMINI_TEXT = re.compile(r'"text":\s*"[^"]')
_GEMINI_THOUGHT = re.compile(r'"thought":\s*true')
_TS = re.compile(rb'^\s*\{\s*"ts"\s*:\s*(-?[0-9.eE+-]+)')


@dataclass(slots=True)
class StreamTiming:
    start: float  # the request's start (access time - duration), else the first chunk
    first_visible: float | None  # the first chunk with visible output; None: none seen
    end: float  # the last chunk (or the access record's time)
    exact: bool = True  # False when the first visible moment is only bounded (compacted)

    @property
    def hidden_secs(self) -> float:
        """Seconds the model ran without visible output (before it, or until the end)."""
        until = self.first_visible if self.first_visible is not None else self.end
        return max(0.0, until - self.start)

    @property
    def visible_secs(self) -> float:
        if self.first_visible is None:
            return 0.0
        return max(0.0, self.end - self.first_visible)


def is_visible(data: str) -> bool:
    """Whether one decoded chunk carries visible output."""
    if _VISIBLE.search(data):
        return True
    return bool(_GEMINI_TEXT.search(data)) and not _GEMINI_THOUGHT.search(data)


def _part_time_and_data(part: Any) -> tuple[float | None, str]:
    """(ts, decoded data) of one raw body-log line; (None, text) for a plain string part."""
    if isinstance(part, str):
        return None, part
    if not isinstance(part, (bytes, bytearray)):
        return None, ""
    ts = _stamp(part)
    try:
        obj = orjson.loads(part)
    except orjson.JSONDecodeError:
        return ts, part.decode("utf-8", "replace")
    data = obj.get("data") if isinstance(obj, dict) else None
    if ts is None and isinstance(obj, dict) and isinstance(obj.get("ts"), (int, float)):
        ts = float(obj["ts"])
    return ts, data if isinstance(data, str) else ""


def _stamp(part: bytes | bytearray) -> float | None:
    """The `ts` a raw line starts with, read without decoding the line (None: not there, or not
    a number, such as `1.2.3` in a torn line)."""
    m = _TS.match(part)
    if m is None:
        return None
    try:
        return float(m.group(1))
    except ValueError:
        return None


def _part_time(part: Any) -> float | None:
    """The time of one raw body-log line, as `_part_time_and_data` reads it."""
    if isinstance(part, (bytes, bytearray)):
        ts = _stamp(part)
        if ts is not None:
            return ts
    return _part_time_and_data(part)[0]


def scan_parts(
    parts: Sequence[Any], look: bool
) -> tuple[float | None, float | None, bool, float | None]:
    """(first stamp, last stamp, whether a part carries visible output, that part's stamp), the
    visible part looked for only with `look`. Reads from the front only as far as needed (a
    calibration sample of a long stream must not decode all of it) and the last stamp from the
    back: the same answers as reading every part (tests/unit/test_stream_timing.py)."""
    first_stamp: float | None = None
    visible = False
    visible_stamp: float | None = None
    for part in parts:
        ts, data = _part_time_and_data(part)
        if first_stamp is None:
            first_stamp = ts
        if look and is_visible(data):
            visible, visible_stamp, look = True, ts, False
        if first_stamp is not None and not look:
            break
    last_stamp: float | None = None
    for part in reversed(parts):
        last_stamp = _part_time(part)
        if last_stamp is not None:
            break
    return first_stamp, last_stamp, visible, visible_stamp


def request_start(c: Completed) -> float | None:
    """When the request started: the access record's time minus its duration."""
    a = c.access
    if a is not None and a.time is not None and a.duration_ms is not None:
        return float(a.time) - float(a.duration_ms) / 1000.0
    return None


def stream_timing(c: Completed) -> StreamTiming | None:
    """The stream's timing, or None when neither the body log nor the access log gave times.

    Start: the access record's time minus its duration, else the earliest body stamp. End: the
    latest of the last chunk's stamp, the last body record (the end record of a cancelled
    stream) and the access record's time.
    """
    parts = c.parts or ()
    first_stamp, last_stamp, visible, visible_stamp = scan_parts(parts, not c.prior_text)
    a = c.access
    ends = [t for t in (c.last_ts, last_stamp) if t is not None]
    if a is not None and a.time is not None:
        ends.append(float(a.time))
    firsts = [t for t in (c.first_ts, first_stamp) if t is not None]
    start = request_start(c) if a is not None and a.duration_ms is not None else None
    if start is None and firsts:
        start = min(firsts)
    if start is None or not ends:
        return None
    end = max(max(ends), start)
    first_visible: float | None = None
    exact = True
    if c.prior_text:  # compacted: the prefix had output before the kept parts
        first_visible = min(firsts) if firsts else start
        exact = False
    elif parts:
        if visible:
            exact = visible_stamp is not None  # unstamped: only bounded by the first stamp
            first_visible = (
                visible_stamp if visible_stamp is not None else (min(firsts) if firsts else start)
            )
    elif c.body and is_visible(c.body):  # a whole body (the `bodies` style): one time only
        first_visible = end
        exact = False
    if first_visible is not None:
        first_visible = min(max(first_visible, start), end)
    return StreamTiming(start=start, first_visible=first_visible, end=end, exact=exact)
