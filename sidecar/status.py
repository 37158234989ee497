"""What the sidecar says about itself: the status dict, health reasons, the STATUS= line and the
heartbeat event. Pure functions over plain figures; `Pipeline.status()` gathers the figures.

The status dict (contract shared with the spool and the HEC sink branches):

    {"time", "uptime_secs", "health": "ok"|"degraded", "health_reasons": [...],
     "lag_secs" (max over sources), "sources": {name: {"lag_secs", "pending_bytes",
     "lines_read": {"access", "body"}}}, "spool_bytes", "spool_max_bytes",
     "events_sent_total", "events_failed_total", "events_dead_lettered_total",
     "events_retried_total", "sinks": {key: {counter: n}}, "records_set_aside_total",
     "requests_total", "tokens_estimated_total", "unpriced_requests_total", "events_per_sec"}

Missing parts (no spool, a sink without `health()`) read as 0 / healthy.
"""

from __future__ import annotations

import glob
import os
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

from sidecar.types import OutEvent

SIDECAR_SOURCETYPE = "llm:sidecar"
HEARTBEAT_SCHEMA = "llm_sidecar/1"
RATE_WINDOW_SECS = 60.0

# Sink counters under the contract's names, and the older names the current sinks use.
_SINK_COUNTERS = {
    "events_sent_total": ("events_sent_total", "events_sent", "events_written"),
    "events_failed_total": ("events_failed_total", "events_failed"),
    "events_dead_lettered_total": ("events_dead_lettered_total", "events_dead_lettered"),
    "events_retried_total": ("events_retried_total", "retries"),
}


def sink_counters(stats: dict[str, int]) -> dict[str, int]:
    """A sink's `stats` under the contract's counter names (0 when the sink lacks one)."""
    out: dict[str, int] = {}
    for name, keys in _SINK_COUNTERS.items():
        out[name] = next((int(stats[k]) for k in keys if k in stats), 0)
    return out


def unreadable_paths(patterns: list[str]) -> list[str]:
    """Reasons a source's configured paths cannot be read (missing, or no read permission)."""
    reasons: list[str] = []
    for pat in patterns:
        matches = sorted(glob.glob(pat)) if glob.has_magic(pat) else [pat]
        found = [m for m in matches if os.path.isfile(m)]
        if not found:
            reasons.append(f"no log file matches {pat}")
        for path in found:
            if not os.access(path, os.R_OK):
                reasons.append(f"{path} is not readable by this user (add it to the log's group)")
    return reasons


def source_lag(pending_bytes: int, last_record_time: float | None, started: float, now: float):
    """Seconds behind: 0 when every byte is read; else the age of the newest record read."""
    if pending_bytes <= 0:
        return 0.0
    newest = last_record_time if last_record_time else started
    return max(now - newest, 0.0)


class Rate:
    """Events per second over the last minute, from samples of a growing counter."""

    def __init__(self) -> None:
        self._samples: deque[tuple[float, int]] = deque()

    def sample(self, count: int, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        self._samples.append((now, count))
        while len(self._samples) > 2 and now - self._samples[1][0] >= RATE_WINDOW_SECS:
            self._samples.popleft()
        t0, c0 = self._samples[0]
        return round((count - c0) / (now - t0), 3) if now > t0 else 0.0


def health_reasons(
    st: dict[str, Any],
    *,
    sink_reasons: list[str],
    lag_threshold_secs: float,
    spool_threshold_pct: int,
    source_reasons: list[str],
) -> list[str]:
    reasons = list(sink_reasons)
    cap = st.get("spool_max_bytes") or 0
    if cap and st.get("spool_bytes", 0) * 100 > cap * spool_threshold_pct:
        pct = st["spool_bytes"] * 100 // cap
        reasons.append(f"spool {pct}% full (over {spool_threshold_pct}%): HEC is not keeping up")
    for name, s in st.get("sources", {}).items():
        if s["lag_secs"] > lag_threshold_secs:
            reasons.append(
                f"source {name} is {s['lag_secs']:.0f} s behind (over {lag_threshold_secs:g} s)"
            )
    reasons.extend(source_reasons)
    return reasons


@dataclass
class SourceView:
    """What the status needs of one source: its tailers (`pending_bytes()`, `lines_read`; the
    access tailer first), the log time of its newest access record, its resolved path patterns."""

    name: str
    tails: list[Any]
    last_time: float | None
    patterns: list[str]


def gather_status(
    *,
    sources: list[SourceView],
    sinks: list[Any],
    spool: Any,
    telemetry: Any,
    started: float,
    rate: Rate,
    server: Any,
) -> dict[str, Any]:
    """The status dict (see the module docstring) from the pipeline's parts, read duck-typed."""
    now = time.time()
    per_source: dict[str, Any] = {}
    source_reasons: list[str] = []
    for src in sources:
        pending = sum(t.pending_bytes() for t in src.tails)
        per_source[src.name] = {
            "lag_secs": round(source_lag(pending, src.last_time, started, now), 3),
            "pending_bytes": pending,
            "lines_read": {
                "access": src.tails[0].lines_read,
                "body": sum(t.lines_read for t in src.tails[1:]),
            },
        }
        for reason in unreadable_paths(src.patterns):
            source_reasons.append(f"source {src.name}: {reason}")
    by_sink: dict[str, dict[str, int]] = {}
    totals: Counter[str] = Counter()
    sink_reasons: list[str] = []
    for i, sink in enumerate(sinks):
        by_sink[f"sinks[{i}]"] = counts = sink_counters(getattr(sink, "stats", {}))
        totals.update(counts)
        health = getattr(sink, "health", None)
        sink_reasons.extend(health() if callable(health) else [])
    counters = telemetry.counters
    rows = list(telemetry.by_model.values())
    st: dict[str, Any] = {
        "time": now,
        "uptime_secs": round(now - started, 3),
        "lag_secs": max((s["lag_secs"] for s in per_source.values()), default=0.0),
        "sources": per_source,
        "spool_bytes": int(getattr(spool, "bytes_used", 0) or 0),
        "spool_max_bytes": int(getattr(spool, "max_bytes", 0) or 0),
        **{k: totals[k] for k in _SINK_COUNTERS},
        "sinks": by_sink,
        "records_set_aside_total": counters["records_malformed_total"],
        "requests_total": counters["events_emitted_total"],
        "tokens_estimated_total": sum(r.estimated for r in rows),
        "unpriced_requests_total": sum(r.unpriced for r in rows),
        "events_per_sec": rate.sample(counters["events_emitted_total"]),
    }
    reasons = health_reasons(
        st,
        sink_reasons=sink_reasons,
        lag_threshold_secs=server.lag_threshold_secs,
        spool_threshold_pct=server.spool_threshold_pct,
        source_reasons=source_reasons,
    )
    st["health"] = "degraded" if reasons else "ok"
    st["health_reasons"] = reasons
    return st


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"  # pragma: no cover


def status_line(st: dict[str, Any]) -> str:
    """The STATUS= text systemctl shows: lag, spool, rate, health."""
    spool = _bytes(st.get("spool_bytes", 0))
    text = (
        f"lag {st.get('lag_secs', 0):.0f} s, spool {spool}, {st.get('events_per_sec', 0):g} "
        f"events/s, {st.get('events_sent_total', 0)} sent"
    )
    reasons = st.get("health_reasons") or []
    return text + (f"; degraded: {reasons[0]}" if reasons else "; ok")


HEARTBEAT_KEYS = (
    "uptime_secs",
    "health",
    "health_reasons",
    "lag_secs",
    "spool_bytes",
    "spool_max_bytes",
    "events_sent_total",
    "events_failed_total",
    "events_dead_lettered_total",
    "records_set_aside_total",
    "requests_total",
    "tokens_estimated_total",
    "unpriced_requests_total",
    "events_per_sec",
)


def heartbeat_event(st: dict[str, Any], *, host: str, version: str) -> OutEvent:
    """The `llm:sidecar` heartbeat (schema llm_sidecar/1), built from a status dict."""
    now = st.get("time") or time.time()
    body: dict[str, Any] = {
        "schema": HEARTBEAT_SCHEMA,
        "kind": "heartbeat",
        "time": round(now, 3),
        "host": host,
        "version": version,
    }
    for key in HEARTBEAT_KEYS:
        body[key] = st.get(key, [] if key == "health_reasons" else 0)
    body["health"] = st.get("health", "ok")
    return OutEvent(body=body, time=now, source="llm-hec-sidecar", sourcetype=SIDECAR_SOURCETYPE)
