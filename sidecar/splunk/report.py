"""Cost reports and the verify check: their SPL, their periods and their formatting. Pure.

Every report search reads raw llm:usage events and removes redelivered duplicates first
(`dedup event_id`); null group keys are shown as "(none)" so no spend drops out of a table.
Money is formatted from Splunk's decimal strings with Decimal (no float rounding on the way).
"""

from __future__ import annotations

import csv
import io
from calendar import monthrange
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

NONE = "(none)"
TOKENS = "sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens"
MONEY = "sum(estimated_cost_usd) AS cost_usd"


@dataclass(frozen=True)
class Period:
    kind: str  # daily | monthly
    start: datetime
    end: datetime  # exclusive

    @property
    def earliest(self) -> str:
        return str(int(self.start.timestamp()))

    @property
    def latest(self) -> str:
        return str(int(self.end.timestamp()))

    @property
    def label(self) -> str:
        if self.kind == "daily":
            return self.start.strftime("%Y-%m-%d")
        return self.start.strftime("%Y-%m")


def period(kind: str, when: str | None, today: date) -> Period:
    """The UTC day (`YYYY-MM-DD`, default yesterday) or month (`YYYY-MM`, default last month)."""
    if kind == "daily":
        day = date.fromisoformat(when) if when else today - timedelta(days=1)
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return Period(kind, start, start + timedelta(days=1))
    if kind == "monthly":
        if when:
            year, month = (int(x) for x in when.split("-"))
        else:
            year, month = (today.year, today.month - 1) if today.month > 1 else (today.year - 1, 12)
        start = datetime(year, month, 1, tzinfo=UTC)
        return Period(kind, start, start + timedelta(days=monthrange(year, month)[1]))
    raise ValueError(f"report kind {kind!r}: daily or monthly")


def base(index: str) -> str:
    return (
        f'search index={index} sourcetype="llm:usage" | dedup event_id'
        f' | fillnull value="{NONE}" provider model api tenant'
    )


def searches(index: str) -> dict[str, str]:
    """Section name -> SPL, in report order."""
    b = base(index)
    return {
        "totals": (
            f"{b} | stats count AS requests, {TOKENS}, sum(cached_input_tokens) AS "
            "cached_input_tokens, sum(cache_write_input_tokens) AS cache_write_input_tokens, "
            f"sum(reasoning_tokens) AS reasoning_tokens, {MONEY}, "
            'sum(eval(if(cost_status="unpriced_model", 1, 0))) AS unpriced_requests, '
            'sum(eval(if(tokens_estimated="true", 1, 0))) AS estimated_requests'
        ),
        "by_model": f"{b} | stats count AS requests, {TOKENS}, {MONEY} BY provider model"
        " | sort 0 - cost_usd",
        "by_api": f"{b} | stats count AS requests, {TOKENS}, {MONEY} BY api | sort 0 - cost_usd",
        "by_tenant": f"{b} | stats count AS requests, {TOKENS}, {MONEY} BY tenant"
        " | sort 0 - cost_usd",
        "cache_savings": (
            f"{b} | eval uncached_tokens=input_tokens - coalesce(cached_input_tokens, 0)"
            " - coalesce(cache_write_input_tokens, 0)"
            " | eventstats sum(cost_input_usd) AS model_input_usd, sum(uncached_tokens) AS"
            " model_uncached_tokens BY model"
            " | eval saved_usd=if(model_uncached_tokens > 0, cached_input_tokens * model_input_usd"
            " / model_uncached_tokens - coalesce(cost_cached_input_usd, 0), 0)"
            " | stats sum(cached_input_tokens) AS cached_input_tokens, sum(cost_cached_input_usd)"
            " AS cache_read_usd, sum(cost_cache_write_usd) AS cache_write_usd, sum(saved_usd)"
            " AS saved_usd BY model | sort 0 - saved_usd"
        ),
        "top_conversations": (
            f"{b} | search conversation_id=* | stats {MONEY}, count AS requests, latest(tenant)"
            " AS tenant BY conversation_id | sort 10 - cost_usd"
        ),
    }


def chargeback_search(index: str) -> str:
    return (
        f"{base(index)} | stats count AS requests, sum(input_tokens) AS input_tokens,"
        " sum(cached_input_tokens) AS cached_input_tokens, sum(cache_write_input_tokens) AS"
        " cache_write_input_tokens, sum(output_tokens) AS output_tokens, sum(reasoning_tokens)"
        f" AS reasoning_tokens, {MONEY} BY tenant provider model api"
    )


CHARGEBACK_COLUMNS = [
    "period_start", "period_end", "tenant", "provider", "model", "api", "requests",
    "input_tokens", "cached_input_tokens", "cache_write_input_tokens", "output_tokens",
    "reasoning_tokens", "cost_usd",
]  # fmt: skip


def usd(value: Any, places: int = 6) -> str:
    """A Splunk number string as USD with `places` decimals (empty when not a number)."""
    try:
        return str(Decimal(str(value)).quantize(Decimal(1).scaleb(-places)))
    except (InvalidOperation, ValueError):
        return ""


def integer(value: Any) -> str:
    try:
        return str(int(Decimal(str(value))))
    except (InvalidOperation, ValueError):
        return "0"


def chargeback_csv(rows: list[dict[str, Any]], p: Period) -> str:
    """One row per tenant, provider, model and API: what a chargeback system imports."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CHARGEBACK_COLUMNS)
    keyed = sorted(rows, key=lambda r: tuple(str(r.get(k, NONE)) for k in CHARGEBACK_COLUMNS[2:6]))
    for r in keyed:
        w.writerow(
            [p.start.isoformat(), p.end.isoformat()]
            + [r.get(k, NONE) for k in ("tenant", "provider", "model", "api")]
            + [integer(r.get(k)) for k in CHARGEBACK_COLUMNS[6:12]]
            + [usd(r.get("cost_usd"))]
        )
    return out.getvalue()


_MONEY_COLS = {"cost_usd", "saved_usd", "cache_read_usd", "cache_write_usd"}


def _table(rows: list[dict[str, Any]], columns: list[str]) -> list[str]:
    if not rows:
        return ["(no data)"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        cells = [usd(r.get(c), 4) if c in _MONEY_COLS else str(r.get(c, "")) for c in columns]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return lines


SECTION_COLUMNS = {
    "by_model": ["provider", "model", "requests", "input_tokens", "output_tokens", "cost_usd"],
    "by_api": ["api", "requests", "input_tokens", "output_tokens", "cost_usd"],
    "by_tenant": ["tenant", "requests", "input_tokens", "output_tokens", "cost_usd"],
    "cache_savings": ["model", "cached_input_tokens", "cache_read_usd", "cache_write_usd",
                      "saved_usd"],
    "top_conversations": ["conversation_id", "tenant", "requests", "cost_usd"],
}  # fmt: skip
TITLES = {
    "by_model": "By model",
    "by_api": "By API",
    "by_tenant": "By tenant",
    "cache_savings": "Cache savings",
    "top_conversations": "Top conversations",
}


def markdown(sections: dict[str, list[dict[str, Any]]], p: Period, index: str) -> str:
    t = (sections.get("totals") or [{}])[0]
    lines = [
        f"# LLM cost report, {p.kind} {p.label}",
        "",
        f"Period {p.start.isoformat()} to {p.end.isoformat()} (UTC), index {index}, "
        "duplicates removed by event_id.",
        "",
        "## Totals",
        "",
        f"- Spend: **${usd(t.get('cost_usd'), 4) or '0.0000'}**",
        f"- Requests: {integer(t.get('requests'))} ({integer(t.get('estimated_requests'))} with "
        f"estimated tokens, {integer(t.get('unpriced_requests'))} unpriced)",
        f"- Tokens: {integer(t.get('input_tokens'))} input"
        f" ({integer(t.get('cached_input_tokens'))} cached,"
        f" {integer(t.get('cache_write_input_tokens'))} cache-write),"
        f" {integer(t.get('output_tokens'))} output"
        f" ({integer(t.get('reasoning_tokens'))} reasoning)",
    ]
    for name, columns in SECTION_COLUMNS.items():
        lines += ["", f"## {TITLES[name]}", "", *_table(sections.get(name, []), columns)]
    return "\n".join(lines) + "\n"


def verify_search(index: str) -> str:
    """One row: recent llm:usage events and how many values each indexed field has, plus the
    heartbeats (tstats only: it proves the HEC `fields` were indexed)."""
    return (
        "| tstats count AS events, max(_time) AS last_event, dc(provider) AS provider,"
        " dc(model) AS model, dc(status) AS status, dc(is_streaming) AS is_streaming,"
        f' dc(tenant) AS tenant, dc(user) AS user WHERE index={index} sourcetype="llm:usage"'
        " | appendcols [| tstats count AS heartbeats, max(_time) AS last_heartbeat"
        f' WHERE index={index} sourcetype="llm:sidecar"]'
    )


REQUIRED_INDEXED = ("provider", "model", "status", "is_streaming")
OPTIONAL_INDEXED = ("tenant", "user")


def verify_verdict(row: dict[str, Any], since: str) -> tuple[bool, list[str]]:
    """(ok, lines to print) for the verify search's row."""
    events = int(integer(row.get("events")))
    lines = []
    if events == 0:
        return False, [
            f"FAIL no llm:usage events since {since}: is the sidecar sending to this index?"
        ]
    lines.append(f"ok   {events} llm:usage events since {since}, last at {row.get('last_event')}")
    ok = True
    for f in REQUIRED_INDEXED:
        if int(integer(row.get(f))) > 0:
            lines.append(f"ok   indexed field {f}: {integer(row.get(f))} value(s)")
        else:
            ok = False
            lines.append(f"FAIL indexed field {f} missing: send to /services/collector/event")
    for f in OPTIONAL_INDEXED:
        n = int(integer(row.get(f)))
        lines.append(f"{'ok  ' if n else 'note'} indexed field {f}: {n} value(s)")
    beats = int(integer(row.get("heartbeats")))
    lines.append(f"{'ok  ' if beats else 'note'} {beats} llm:sidecar heartbeats since {since}")
    return ok, lines
