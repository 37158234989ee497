"""Every access- and body-log field checked by type and range, in one place (pure).

A log line carries whatever an API client chose to send, so nothing is taken on trust:
- numbers must be finite and within sane bounds (`COUNT_MAX` for tokens and counts, 100..599 for
  an HTTP status, `TIME_MIN`..`TIME_MAX` for times, `DURATION_MAX_MS` for durations);
- a bad *optional* field becomes None and its name is noted in `Fields.invalid` (the pipeline
  counts it as `fields_invalid_total` by field name);
- a bad *required* field (the request id, a time that is present but unreadable) raises
  `ParseError`, which sets the line aside with its reason.

A request id is a non-empty string, or an integer taken as its decimal string (on both logs, so
`12345` and `"12345"` join); anything else is refused. Times are read as epoch seconds or
milliseconds (a number or a numeric string), ISO 8601, or nginx `$time_local`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from sidecar import native
from sidecar.errors import ParseError

COUNT_MAX = 1 << 53  # tokens and counts: the largest integer a double holds exactly
# The next four are mirrored for the C extensions in sidecar/_limits.h (a test compares them).
TIME_MIN = 0.0  # the epoch (test logs use small times; negative ones are refused)
TIME_MAX = 4_102_444_800.0  # 2100-01-01T00:00:00Z
_MS_FROM = 1e11  # an epoch above this is in milliseconds (1e11 s is the year 5138)
DURATION_MAX_MS = 30 * 86_400_000.0  # a request that lasted more than 30 days is not one
_ABSENT = ("", "-")  # nginx writes an unset variable as "" (escape=json) or "-"
_NULL_ABSENT = dict.fromkeys(_ABSENT)  # .get(v, v): None for an absent value, else v
_STR_OR_NONE = {str, type(None)}
_accessscan = native.load("sidecar.parse._accessscan")
# round(x, n) of a float: the C twin gives the same float without float.__round__'s decimal
# strings (sidecar/_round.h)
_round = round if _accessscan is None else _accessscan.round_to


def is_absent(v: Any) -> bool:
    return v is None or (type(v) is str and v in _ABSENT)


def finite(v: Any) -> float | None:
    """A finite number from a JSON number or a numeric string (nginx lists one value per
    upstream attempt, "0.120, 0.340": the last one counts); None when it is not one."""
    if type(v) is int:
        return float(v) if -COUNT_MAX <= v <= COUNT_MAX else None
    if type(v) is float:
        return v if math.isfinite(v) else None
    if type(v) is str:
        s = v.strip()
        if "," in s:
            s = s.rsplit(",", 1)[1].strip()
        if not s or len(s) > 40:
            return None
        try:
            f = float(s)
        except ValueError:
            return None
        return f if math.isfinite(f) else None
    return None


def _from_epoch(f: float) -> float | None:
    if f > _MS_FROM:
        f /= 1000.0
    return f if TIME_MIN <= f <= TIME_MAX else None


_LOCAL_FMT = "%d/%b/%Y:%H:%M:%S %z"  # nginx $time_local: 10/Oct/2000:13:55:36 -0700


def parse_time(v: Any) -> float | None:
    """Epoch seconds from epoch s/ms, ISO 8601 or nginx $time_local; None when unreadable or
    outside `TIME_MIN`..`TIME_MAX`. A time without a zone is taken as UTC."""
    f = finite(v)
    if f is not None:
        return _from_epoch(f)
    if type(v) is not str or not (8 <= len(v) <= 64):
        return None
    s = v.strip()
    try:
        dt = datetime.strptime(s, _LOCAL_FMT) if "/" in s else datetime.fromisoformat(s)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    t = dt.timestamp()
    return t if TIME_MIN <= t <= TIME_MAX else None


def request_id(v: Any, reason_prefix: str) -> str:
    """The request id: a non-empty string, or an integer as its decimal string."""
    if type(v) is str:
        if v and v not in _ABSENT:
            return v
        raise ParseError(f"{reason_prefix}_missing_request_id")
    if type(v) is int:
        return str(v)
    if v is None:
        raise ParseError(f"{reason_prefix}_missing_request_id")
    raise ParseError(f"{reason_prefix}_invalid_request_id", f"a {type(v).__name__}")


class Fields:
    """Reads one line's optional fields, noting the names of those that were present but bad
    (`invalid`: one name per bad value; their order is not meaningful).

    Each reader starts with the common case (a string, a float or an int in range) and falls back
    to the general rules; both give the same value."""

    __slots__ = ("invalid",)

    def __init__(self) -> None:
        self.invalid: list[str] = []

    def bad(self, name: str) -> None:
        self.invalid.append(name)

    def text(self, name: str, v: Any) -> str | None:
        """A string (identity fields, names, paths); anything else is null and counted."""
        if type(v) is str:
            return None if v in _ABSENT else v
        if v is not None:
            self.invalid.append(name)
        return None

    def text_values(self, values: Sequence[Any], names: tuple[str, ...]) -> Iterator[str | None]:
        """`text(name, value)` for each pair, in order; when every value is a string or None
        (the common case), without a Python call per field."""
        if _STR_OR_NONE.issuperset(map(type, values)):
            return map(_NULL_ABSENT.get, values, values)
        return map(self.text, names, values)

    def number(self, name: str, v: Any, lo: float, hi: float) -> float | None:
        if is_absent(v):
            return None
        f = finite(v)
        if f is None or not lo <= f <= hi:
            self.invalid.append(name)
            return None
        return f

    def count(self, name: str, v: Any) -> int | None:
        """A non-negative integer count (0..2^53); an integral float or string is accepted."""
        if type(v) is str and len(v) < 16 and v.isascii() and v.isdigit():
            return int(v)  # plain digits: below 10^15, the same int as through float
        f = self.number(name, v, 0, COUNT_MAX)
        if f is None:
            return None
        if not f.is_integer():
            self.invalid.append(name)
            return None
        return int(f)

    def status(self, v: Any) -> int | None:
        if type(v) is int and 100 <= v <= 599:
            return v
        f = self.number("status", v, 100, 599)
        if f is None:
            return None
        if not f.is_integer():
            self.invalid.append("status")
            return None
        return int(f)

    def duration_ms(self, name: str, v: Any, unit_ms: float = 1.0) -> float | None:
        if v is None:
            return None
        hi = DURATION_MAX_MS / unit_ms
        if type(v) is float and 0 <= v <= hi:
            return _round(v * unit_ms, 3)
        f = self.number(name, v, 0, hi)
        return None if f is None else _round(f * unit_ms, 3)

    def flag(self, name: str, v: Any) -> bool | None:
        if v is None or type(v) is bool:
            return v
        if is_absent(v):
            return None
        if type(v) is str:
            low = v.strip().lower()
            if low in ("true", "1", "yes"):
                return True
            if low in ("false", "0", "no"):
                return False
        if type(v) is int and v in (0, 1):
            return bool(v)
        self.invalid.append(name)
        return None

    def time(self, name: str, v: Any, reason_prefix: str) -> float | None:
        """A required-when-present time: absent -> None; present but unreadable -> ParseError."""
        if type(v) is float and TIME_MIN <= v <= TIME_MAX:
            return v  # epoch seconds (below _MS_FROM: not milliseconds)
        if is_absent(v):
            return None
        t = parse_time(v)
        if t is None:
            raise ParseError(f"{reason_prefix}_invalid_time", f"{name} is not a plausible time")
        return t

    def mapping(self, name: str, v: Any) -> dict[str, Any] | None:
        if type(v) is dict:
            return v
        if not is_absent(v):
            self.invalid.append(name)
        return None

    def header(self, name: str, v: Any) -> str | None:
        """A header value: a string, or a finite number written as its text; else counted."""
        if type(v) is str:
            return None if v in _ABSENT else v
        if type(v) is list:  # caddy: one value per occurrence, the last one counts
            return self.header(name, v[-1]) if v else None
        if v is None:
            return None
        if type(v) in (int, float) and finite(v) is not None:
            return str(v)
        self.invalid.append("response_headers")
        return None
