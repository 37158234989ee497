"""Body-log lines -> `BodyRecord` (pure). This is the hot path: one call per body line.

Per line the work is one `orjson.loads` and a few dict lookups; the SSE payload inside `data`
is not looked at here (it is decoded once per request, by the provider parsers, and only
where it can matter).

Lines may carry invalid UTF-8 (a proxy that does not carry split characters over): orjson
rejects them, so such a line is decoded again with `errors="replace"` and returned with
`lossy=True`, which the caller counts. Nothing is dropped for it.
"""

from __future__ import annotations

import orjson

from sidecar.errors import ParseError
from sidecar.types import BODY_DATA, BODY_END, BODY_WHOLE, BodyRecord

_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError


def _load(line: bytes) -> tuple[dict, bool]:
    try:
        return _loads(line), False
    except _JSONDecodeError:
        try:
            return _loads(line.decode("utf-8", "replace")), True
        except _JSONDecodeError as exc:
            raise ParseError("body_invalid_json", str(exc)) from exc


def parse_chunks_line(line: bytes) -> tuple[BodyRecord, bool]:
    """One `chunks`-style line -> (record, lossy). `lossy`: invalid UTF-8 was replaced."""
    d, lossy = _load(line)
    if type(d) is not dict:
        raise ParseError("body_not_an_object")
    rid = d.get("request_id")
    if not rid or type(rid) is not str:
        raise ParseError("body_missing_request_id")
    data = d.get("data")
    if data is not None:
        if type(data) is not str:
            raise ParseError("body_data_not_a_string")
        return BodyRecord(rid, BODY_DATA, d.get("ts"), data), lossy
    end = d.get("end")
    if end is not None:
        return BodyRecord(rid, BODY_END, d.get("ts"), "", str(end)), lossy
    if "body" in d:  # a `bodies` record in a `chunks` log: accept it
        return parse_bodies_obj(d, rid), lossy
    raise ParseError("body_record_without_data_or_end")


def parse_bodies_obj(d: dict, rid: str) -> BodyRecord:
    body = d.get("body")
    if body is None:
        body = ""
    if type(body) is not str:
        raise ParseError("body_not_a_string")
    ct = d.get("content_type")
    return BodyRecord(
        rid,
        BODY_WHOLE,
        d.get("ts"),
        body,
        "complete",
        ct if isinstance(ct, str) else None,
        bool(d.get("truncated", False)),
    )


def parse_bodies_line(line: bytes) -> tuple[BodyRecord, bool]:
    """One `bodies`-style line (the whole body at once) -> (record, lossy)."""
    d, lossy = _load(line)
    if type(d) is not dict:
        raise ParseError("body_not_an_object")
    rid = d.get("request_id")
    if not rid or type(rid) is not str:
        raise ParseError("body_missing_request_id")
    if "body" not in d and "data" in d:  # tolerate a chunks line
        return parse_chunks_line(line)
    return parse_bodies_obj(d, rid), lossy
