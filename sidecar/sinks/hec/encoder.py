"""OutEvent -> HEC JSON envelopes -> batches -> request bodies. Pure: no network, no clock.

The envelope follows the Splunk reference (section 1.3): `time` as a plain decimal epoch with
milliseconds (`1433188255.500`; exponent form is rejected with code 15), null keys dropped
("delete nil fields otherwise will get format error from HEC"), and `fields` holding only strings so
that the indexed-field rules (code 15) can never trip.

A request body is the envelopes concatenated with no separator, as in Splunk's own example (1.4).
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from sidecar.spool.segment import LABEL_KEYS, split_payload
from sidecar.spool.segment import encode_event as spool_record
from sidecar.types import OutEvent

# Body keys copied into indexed `fields` so that dashboards can use `tstats` (DESIGN.md section 4):
# the spool record carries their values beside the body, so the body is never decoded here.
INDEXED_FIELDS = LABEL_KEYS
USAGE_SOURCETYPE = "llm:usage"


def format_time(t: float) -> str:
    """Epoch seconds as `<sec>.<ms>`: fixed-point, never exponent form (1e9 -> 1000000000.000)."""
    if not math.isfinite(t):
        raise ValueError(f"event time {t!r} is not a finite number")
    return f"{t:.3f}"


def _field_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def indexed_fields(body: dict[str, Any]) -> dict[str, str]:
    """The indexed copies of the body keys, as strings; nulls are left out."""
    return {k: _field_value(body[k]) for k in INDEXED_FIELDS if body.get(k) is not None}


def encode_event(
    ev: OutEvent,
    *,
    host: str,
    index: str | None,
    source: str | None,
    sourcetype: str | None = None,
) -> bytes:
    """One HEC envelope as compact JSON bytes.

    `source` (when not None) wins over `ev.source`; `sourcetype` (when not None) wins over
    `ev.sourcetype`. Keys whose value is None are dropped.
    """
    (t, ev_source, ev_sourcetype), labels, body = split_payload(spool_record(ev))
    return Envelopes().encode(
        t,
        labels,
        body,
        host=host,
        index=index,
        source=source if source is not None else ev_source,
        sourcetype=sourcetype if sourcetype is not None else ev_sourcetype,
    )


class Envelopes:
    """HEC envelopes of spool records (`spool.segment.split_payload`): the body's JSON goes in as
    it is, never decoded. What repeats from event to event is encoded once and kept (at most
    `max_kept` of each): the envelope keys before the event (host, source, sourcetype, index)
    and the `fields` of each label set (keyed by the labels' JSON, so `true` and `1` differ).
    The bytes are those of `orjson.dumps` of the envelope object, keys in the same order."""

    def __init__(self, max_kept: int = 4096) -> None:
        self.max_kept = max_kept
        self._heads: dict[tuple[Any, ...], bytes] = {}
        self._fields: dict[bytes, bytes] = {}

    def encode(
        self,
        t: float,
        labels: bytes,
        body: bytes,
        *,
        host: str,
        index: str | None,
        source: str | None,
        sourcetype: str | None,
    ) -> bytes:
        """One envelope; keys whose value is None are dropped."""
        key = (host, source, sourcetype, index)
        head = self._heads.get(key)
        if head is None:
            named = {"host": host, "source": source, "sourcetype": sourcetype, "index": index}
            inner = orjson.dumps({k: v for k, v in named.items() if v is not None})[1:-1]
            head = self._keep(self._heads, key, b"," + inner if inner else b"")
        fields = self._fields.get(labels)
        if fields is None:
            values = orjson.loads(labels)
            found = {
                k: _field_value(v)
                for k, v in zip(INDEXED_FIELDS, values, strict=True)
                if v is not None
            }
            fields = b',"fields":' + orjson.dumps(found) if found else b""
            self._keep(self._fields, labels, fields)
        return b"".join(
            (b'{"time":', format_time(t).encode(), head, b',"event":', body, fields, b"}")
        )

    def _keep(self, kept: dict[Any, bytes], key: Any, value: bytes) -> bytes:
        if len(kept) >= self.max_kept:
            kept.clear()
        kept[key] = value
        return value


@dataclass
class EncodedBatch:
    """Encoded envelopes bound for one request; `size` is the uncompressed body size."""

    events: list[bytes] = field(default_factory=list)
    size: int = 0

    def body(self) -> bytes:
        return b"".join(self.events)

    def __len__(self) -> int:
        return len(self.events)


class Batcher:
    """Cuts encoded envelopes into batches of at most `max_events` and `max_bytes`.

    `max_bytes` counts uncompressed bytes; an envelope bigger than `max_bytes` goes alone.
    """

    def __init__(self, max_events: int, max_bytes: int) -> None:
        if max_events < 1 or max_bytes < 1:
            raise ValueError("batch limits must be at least 1")
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._current = EncodedBatch()

    def add(self, encoded: bytes) -> list[EncodedBatch]:
        """Add one envelope; returns the batches that became full (zero, one or two)."""
        full: list[EncodedBatch] = []
        cur = self._current
        if cur.events and cur.size + len(encoded) > self.max_bytes:
            full.append(cur)
            cur = self._current = EncodedBatch()
        cur.events.append(encoded)
        cur.size += len(encoded)
        if len(cur.events) >= self.max_events or cur.size >= self.max_bytes:
            full.append(cur)
            self._current = EncodedBatch()
        return full

    def take(self) -> EncodedBatch | None:
        """The partial batch, if any (the batcher starts a new one)."""
        if not self._current.events:
            return None
        cur, self._current = self._current, EncodedBatch()
        return cur

    @property
    def pending(self) -> int:
        """Envelopes in the partial batch."""
        return len(self._current.events)


def cut_batches(encoded: Iterable[bytes], max_events: int, max_bytes: int) -> list[EncodedBatch]:
    """All of `encoded` cut into batches (the last one may be partial)."""
    batcher = Batcher(max_events, max_bytes)
    out = [b for e in encoded for b in batcher.add(e)]
    last = batcher.take()
    return [*out, last] if last is not None else out


def cut_items(
    items: list[tuple[int, bytes]], max_events: int, max_bytes: int
) -> list[list[tuple[int, bytes]]]:
    """(spool sequence, envelope) pairs cut into batches of at most `max_events` and
    `max_bytes` (uncompressed; an envelope bigger than `max_bytes` goes alone)."""
    out: list[list[tuple[int, bytes]]] = []
    cur: list[tuple[int, bytes]] = []
    size = 0
    for it in items:
        if cur and size + len(it[1]) > max_bytes:
            out.append(cur)
            cur, size = [], 0
        cur.append(it)
        size += len(it[1])
        if len(cur) >= max_events:
            out.append(cur)
            cur, size = [], 0
    if cur:
        out.append(cur)
    return out


def compress(body: bytes, level: int = 3) -> bytes:
    """gzip with mtime 0, so the same body always compresses to the same bytes."""
    return gzip.compress(body, compresslevel=level, mtime=0)
