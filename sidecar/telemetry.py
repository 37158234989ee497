"""The sidecar's own counters, and the run summary built from the events it emitted.

Counters follow Vector's grammar (`<noun>_<verb>_total`). Money in the summary is summed in
integer nano-USD, never as floats.
"""

from __future__ import annotations

import bisect
import operator
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import orjson

from sidecar.types import NANO


@dataclass(slots=True)
class _Row:
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_nusd: int = 0
    unpriced: int = 0
    estimated: int = 0


# The event fields observe_event reads, in the order it unpacks them.
OBSERVED_KEYS = (
    "input_tokens",
    "output_tokens",
    "estimated_cost_usd",
    "model",
    "status",
    "provider",
    "tenant",
    "cost_status",
    "tokens_estimated",
)
_observed = operator.itemgetter(*OBSERVED_KEYS)
ROW_CACHE_MAX = 4096  # label sets whose rows observe_event keeps (bounded memory)
OTHER = "other"  # the label value of series beyond the cardinality cap
# HEC request latency buckets (seconds), Prometheus' defaults stretched to the request timeout.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(slots=True)
class _Series:
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_nusd: int = 0


class Histogram:
    """Fixed-bucket counts of observed values (seconds): O(log buckets) per observation."""

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value


@dataclass
class Series:
    """Per-label-set sums for /metrics, capped: past `cap` keys, new ones count as `other`."""

    cap: int = 200
    by_pms: dict[tuple[str, str, str], _Series] = field(default_factory=dict)  # provider, model,
    by_pmt: dict[tuple[str, str, str], _Series] = field(default_factory=dict)  # status / tenant

    def _row(
        self, table: dict[tuple[str, str, str], _Series], key: tuple[str, str, str]
    ) -> _Series:
        row = table.get(key)
        if row is None:
            if len(table) >= self.cap:
                key = (OTHER, OTHER, OTHER)
                row = table.get(key)
            if row is None:
                row = table[key] = _Series()
        return row

    def add(
        self,
        provider: str,
        model: str,
        status: str,
        tenant: str,
        input_tokens: int,
        output_tokens: int,
        nusd: int,
    ) -> None:
        r = self.pms_row(provider, model, status)
        r.requests += 1
        r.input_tokens += input_tokens
        r.output_tokens += output_tokens
        if nusd:
            self.pmt_row(provider, model, tenant).cost_nusd += nusd

    def pms_row(self, provider: str, model: str, status: str) -> _Series:
        return self._row(self.by_pms, (provider, model, status))

    def pmt_row(self, provider: str, model: str, tenant: str) -> _Series:
        return self._row(self.by_pmt, (provider, model, tenant))


@dataclass(slots=True)
class _LabelSet(_Row):
    """The counts of one label set (model, status, provider, tenant) not yet added to the
    tables (`Telemetry._fold`), and its (provider, model, tenant) cost series, made at its
    first cost."""

    key: tuple[Any, Any, Any, Any] = (None, None, None, None)
    cost_row: _Series | None = None


@dataclass
class Telemetry:
    """Counters and the per-label-set sums. `observe_event` adds an event to its label set's row
    only; the tables (`by_model`, `by_status` and the (provider, model, status) `series`) get
    the rows' counts when read, in the order the label sets were met (the series' cap counts
    them in that order, as if added one by one)."""

    counters: Counter[str] = field(default_factory=Counter)
    malformed: Counter[str] = field(default_factory=Counter)  # reason -> count
    fields_invalid: Counter[str] = field(default_factory=Counter)  # field -> count (nulled)
    _by_model: dict[str, _Row] = field(default_factory=lambda: defaultdict(_Row))
    _by_status: dict[str, _Row] = field(default_factory=lambda: defaultdict(_Row))
    estimation: dict[str, Any] = field(default_factory=dict)  # TokenEstimator.metrics()
    set_aside_path: str | None = None
    set_aside_cap: int = 100_000
    _series: Series = field(default_factory=Series)  # /metrics label sets (capped)
    hec_latency: Histogram = field(default_factory=Histogram)  # HEC request durations
    _set_aside_fh: Any = None
    _rows: dict[tuple[Any, Any, Any, Any], _LabelSet] = field(default_factory=dict)
    _unfolded: list[_LabelSet] = field(default_factory=list)  # rows with counts, met order

    @property
    def by_model(self) -> dict[str, _Row]:
        self._fold()
        return self._by_model

    @property
    def by_status(self) -> dict[str, _Row]:
        self._fold()
        return self._by_status

    @property
    def series(self) -> Series:
        self._fold()
        return self._series

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] += n

    def field_invalid(self, name: str, n: int = 1) -> None:
        """A field present but bad (wrong type, out of range) was nulled: `fields_invalid_total`
        by field name."""
        self.fields_invalid[name] += n
        self.counters["fields_invalid_total"] += n

    def set_aside(
        self, reason: str, path: str, offset: int | None, length: int, detail: str = ""
    ) -> None:
        """Count a malformed record and record where it is (never its bytes: it may hold a key)."""
        self.malformed[reason] += 1
        self.counters["records_malformed_total"] += 1
        if (
            self.set_aside_path is None
            or self.counters["records_set_aside_total"] >= self.set_aside_cap
        ):
            return
        if self._set_aside_fh is None:
            os.makedirs(os.path.dirname(self.set_aside_path) or ".", exist_ok=True)
            fd = os.open(self.set_aside_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._set_aside_fh = open(fd, "ab", buffering=0)  # noqa: SIM115 - kill -9 safe
        rec = {
            "reason": reason,
            "path": path,
            "offset": offset,
            "length": length,
            "detail": detail[:200],
        }
        self._set_aside_fh.write(orjson.dumps(rec) + b"\n")
        self.counters["records_set_aside_total"] += 1

    def observe_event(self, body: dict[str, Any]) -> None:
        try:  # every key is there in a usage event: one call reads them all
            values = _observed(body)
        except KeyError:
            values = tuple(map(body.get, OBSERVED_KEYS))
        input_tokens, output_tokens, cost, model, status, provider, tenant, cost_status, est = (
            values
        )
        nusd = round(cost * NANO) if cost else 0  # exact: the float is nusd / 1e9
        key = (model, status, provider, tenant)
        row = self._rows.get(key)
        if row is None:
            row = self._row_for(key)
        if not row.requests:
            self._unfolded.append(row)
        row.requests += 1
        if input_tokens:
            row.input_tokens += input_tokens
        if output_tokens:
            row.output_tokens += output_tokens
        if nusd:
            row.cost_nusd += nusd
            cost_row = row.cost_row
            if cost_row is None:  # made at the first cost (the cap counts it then)
                cost_row = row.cost_row = self._series.pmt_row(
                    provider or "unknown", model or "unknown", tenant or ""
                )
            cost_row.cost_nusd += nusd
        if cost_status == "unpriced_model":
            row.unpriced += 1
        if est:
            row.estimated += 1
        self.counters["events_emitted_total"] += 1

    def _row_for(self, key: tuple[Any, Any, Any, Any]) -> _LabelSet:
        """A new label set's row, kept for the next events with these labels up to
        ROW_CACHE_MAX label sets (tenants can be many). Past it, a row for this event alone,
        and the rows waiting to be added (`_unfolded`) are added to the tables now: without
        that, a run nobody reads (`run --once`, no /metrics) would keep one row per such event."""
        row = _LabelSet(key=key)
        if len(self._rows) < ROW_CACHE_MAX:
            self._rows[key] = row
        else:
            self._fold()
        return row

    def _fold(self) -> None:
        """Add the rows' counts to the summary tables and the series, in the order met."""
        if not self._unfolded:
            return
        by_model, by_status, series = self._by_model, self._by_status, self._series
        for row in self._unfolded:
            model, status, provider, _ = row.key
            requests, inp, out = row.requests, row.input_tokens, row.output_tokens
            for r in (by_model[model or "(no model)"], by_status[status or "(no status)"]):
                r.requests += requests
                r.input_tokens += inp
                r.output_tokens += out
                r.cost_nusd += row.cost_nusd
                r.unpriced += row.unpriced
                r.estimated += row.estimated
            s = series.pms_row(provider or "unknown", model or "unknown", status or "unknown")
            s.requests += requests
            s.input_tokens += inp
            s.output_tokens += out
            row.requests = row.input_tokens = row.output_tokens = row.cost_nusd = 0
            row.unpriced = row.estimated = 0
        self._unfolded.clear()

    def close(self) -> None:
        if self._set_aside_fh is not None:
            self._set_aside_fh.close()
            self._set_aside_fh = None


def _usd(nusd: int) -> str:
    whole, frac = divmod(nusd, NANO)
    return f"${whole}.{frac:09d}"[: len(str(whole)) + 8]  # 6 decimals, truncated for display


def format_summary(t: Telemetry) -> str:
    lines: list[str] = []

    def table(title: str, rows: dict[str, _Row]) -> None:
        head = f"{title:<34} {'requests':>9} {'input tok':>11} {'output tok':>11} {'cost USD':>14}"
        lines.append(head)
        lines.append("-" * len(head))
        total = _Row()
        for key in sorted(rows, key=lambda k: (-rows[k].cost_nusd, k)):
            r = rows[key]
            note = []
            if r.unpriced:
                note.append(f"{r.unpriced} unpriced")
            if r.estimated:
                note.append(f"{r.estimated} estimated")
            suffix = f"  ({', '.join(note)})" if note else ""
            lines.append(
                f"{key[:34]:<34} {r.requests:>9} {r.input_tokens:>11} {r.output_tokens:>11} "
                f"{_usd(r.cost_nusd):>14}{suffix}"
            )
            total.requests += r.requests
            total.input_tokens += r.input_tokens
            total.output_tokens += r.output_tokens
            total.cost_nusd += r.cost_nusd
        lines.append(
            f"{'total':<34} {total.requests:>9} {total.input_tokens:>11} "
            f"{total.output_tokens:>11} {_usd(total.cost_nusd):>14}"
        )
        lines.append("")

    table("model", t.by_model)
    table("status", t.by_status)
    c = t.counters
    lines.append(
        f"lines read: access {c['access_lines_total']}, body {c['body_lines_total']}; "
        f"events emitted: {c['events_emitted_total']}"
    )
    if t.malformed:
        parts = ", ".join(f"{k} {v}" for k, v in sorted(t.malformed.items()))
        where = f" (positions in {t.set_aside_path})" if t.set_aside_path else ""
        lines.append(f"malformed records set aside: {sum(t.malformed.values())}: {parts}{where}")
    else:
        lines.append("malformed records set aside: 0")
    if t.fields_invalid:
        parts = ", ".join(f"{k} {v}" for k, v in sorted(t.fields_invalid.items()))
        lines.append(f"fields nulled as invalid: {sum(t.fields_invalid.values())}: {parts}")
    extra = [
        ("access_lines_lossy_utf8_total", "access lines with invalid UTF-8 (replaced)"),
        ("body_records_without_access_total", "body records for requests with no access line"),
        ("access_without_body_total", "access lines whose body never ended"),
        ("body_lines_lossy_utf8_total", "body lines with invalid UTF-8 (replaced)"),
        ("bodies_lossy_utf8_total", "bodies with invalid UTF-8 (replaced)"),
        ("body_parts_invalid_total", "body data records that were not valid JSON (dropped)"),
        ("late_records_total", "records after their request was emitted"),
        ("join_expired_total", "requests expired (a side missing when both logs moved on)"),
        ("join_evicted_total", "open requests emitted early (join.max_pending_bytes reached)"),
        ("join_duplicate_request_id_total", "second requests with an id already seen"),
        ("join_text_truncated_total", "streams whose estimation text was capped"),
        ("sse_events_malformed_total", "SSE payloads that were not JSON"),
        ("bodies_compressed_total", "gzip bodies (clear Accept-Encoding in the proxy)"),
        ("bodies_truncated_total", "bodies cut at max_body_bytes"),
        ("events_dead_lettered_total", "events dead-lettered by a sink"),
        ("requests_failed_total", "requests whose event could not be built (a bug: see the log)"),
    ]
    for key, label in extra:
        if c[key]:
            lines.append(f"{label}: {c[key]}")
    lines.extend(_estimation_lines(t.estimation))
    return "\n".join(lines)


def _pct(v: Any) -> str:
    return "-" if v is None else f"{v:.1f}%"


def _estimation_lines(m: dict[str, Any]) -> list[str]:
    """How good the token estimates are: measured on complete streams that carried usage."""
    models = m.get("models") or {}
    if not models:
        return []
    out = [
        "",
        "token estimates, checked on complete streams (mean abs. error vs reported output):",
        f"{'model':<34} {'samples':>8} {'ratio':>7} {'raw error':>10} {'calibrated':>11}",
    ]
    for name in sorted(models):
        r = models[name]
        ratio = "-" if r.get("ratio") is None else f"{r['ratio']:.3f}"
        cal = r.get("mape_calibrated_pct")
        note = (
            "  (not applied: worse than raw)" if cal is not None and not r.get("calibrated") else ""
        )
        out.append(
            f"{name[:34]:<34} {r.get('samples_total', 0):>8} {ratio:>7} "
            f"{_pct(r.get('mape_uncalibrated_pct')):>10} {_pct(cal):>11}{note}"
        )
    if m.get("heuristic_fallbacks"):
        out.append(f"character-heuristic estimates (no tiktoken): {m['heuristic_fallbacks']}")
    return out
