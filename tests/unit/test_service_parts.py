"""The service's pure parts: own log lines, metric label caps, health reasons, the heartbeat."""

from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path

import jsonschema
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sidecar import telemetry as telemetry_mod
from sidecar.logsetup import RateLimit, StructuredFormatter
from sidecar.metrics import make_renderer
from sidecar.status import (
    HEARTBEAT_KEYS,
    Rate,
    health_reasons,
    heartbeat_event,
    sink_counters,
    source_lag,
    status_line,
)
from sidecar.telemetry import Series, Telemetry

REPO = Path(__file__).resolve().parents[2]
SECRET = "hec-token-abcdef"


def logger_with(fmt: str, *, journald: bool = False, window: float = 60.0):
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(StructuredFormatter(fmt, journald=journald, secrets=[SECRET]))
    handler.addFilter(RateLimit(window))
    log = logging.getLogger(f"test.{fmt}.{journald}.{window}")
    log.propagate = False
    log.handlers = [handler]
    log.setLevel(logging.DEBUG)
    return log, buf


def test_logfmt_is_one_line_per_message_and_never_a_secret() -> None:
    log, buf = logger_with("logfmt")
    try:
        raise ValueError(f"bad token {SECRET}")
    except ValueError:
        log.exception('HEC said "no" to %s\nsecond line', SECRET)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 1
    line = lines[0]
    assert line.startswith("time=") and " level=error " in line
    assert 'msg="HEC said \\"no\\" to [redacted]\\nsecond line"' in line
    assert "exc=" in line and "Traceback" in line
    assert SECRET not in line


def test_json_lines_and_journald_priority_prefix() -> None:
    log, buf = logger_with("json", journald=True)
    log.warning("disk %s full", "/var")
    line = buf.getvalue().strip()
    assert line.startswith("<4>")  # journald reads the priority; it adds the time itself
    rec = json.loads(line[3:])
    assert rec == {"level": "warning", "logger": log.name, "msg": "disk /var full"}


def test_repeats_are_rate_limited_and_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr("sidecar.logsetup.time.monotonic", lambda: clock[0])
    log, buf = logger_with("logfmt", window=60)
    for i in range(5):
        log.warning("retry %d failed", i)
    log.warning("another message")
    assert len(buf.getvalue().splitlines()) == 2
    clock[0] += 61
    log.warning("retry %d failed", 99)
    last = buf.getvalue().splitlines()[-1]
    assert "retry 99 failed" in last and "repeats_suppressed=4" in last


def event(provider: str, model: str, tenant: str, cost: float = 0.5) -> dict:
    return {
        "provider": provider,
        "model": model,
        "status": "ok",
        "tenant": tenant,
        "input_tokens": 10,
        "output_tokens": 2,
        "estimated_cost_usd": cost,
    }


def scrape(t: Telemetry, st: dict | None = None) -> dict:
    body, ctype = make_renderer(t, lambda: st or {}, lambda: {})()
    assert ctype.startswith("text/plain")
    out: dict = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            out.setdefault(s.name, []).append(s)
    return out


def test_metric_label_sets_are_capped_with_an_other_bucket() -> None:
    t = Telemetry()
    t.series.cap = 3
    for i in range(10):
        t.observe_event(event("openai", f"model-{i}", f"tenant-{i}"))
    m = scrape(t)
    req = m["llm_sidecar_requests_total"]
    assert len(req) == 4  # 3 real label sets + other
    other = [s for s in req if s.labels["model"] == "other"]
    assert other[0].value == 7
    assert sum(s.value for s in req) == 10
    assert sum(s.value for s in m["llm_sidecar_cost_usd_total"]) == pytest.approx(5.0)


@pytest.mark.parametrize("read_every", [0, 1, 3])
@pytest.mark.parametrize("row_cache_max", [4096, 2])
def test_observed_rows_kept_per_label_set_count_as_looked_up_each_time(
    monkeypatch: pytest.MonkeyPatch, row_cache_max: int, read_every: int
) -> None:
    """observe_event keeps each label set's rows: the sums and the capped series must be what
    looking them up for every event (Series.add) gives, also past the kept sets' bound, and a
    label set's tenant series is made only at its first cost (the cap counts it); whether the
    tables are read only at the end or every `read_every` events (the rows' counts are added
    to them when read)."""
    monkeypatch.setattr(telemetry_mod, "ROW_CACHE_MAX", row_cache_max)
    events = []
    for i in range(40):
        ev = event("openai", f"model-{i % 5}", f"tenant-{i % 4}", cost=0.25 * (i % 3))
        ev["status"] = "ok" if i % 2 else "error"
        ev["tokens_estimated"] = i % 2 == 0
        ev["cost_status"] = "unpriced_model" if i % 5 == 0 else "ok"
        events.append(ev)
    events.append({"status": None, "model": None})  # nothing but nulls
    t = Telemetry()
    t.series.cap = 6
    ref = Series(cap=6)
    by_model: dict = {}
    by_status: dict = {}
    for i, ev in enumerate(events):
        t.observe_event(ev)
        if read_every and i % read_every == 0:
            assert sum(r.requests for r in t.by_status.values()) == i + 1
        assert len(t._unfolded) <= row_cache_max + 1  # bounded when nobody reads
        cost = ev.get("estimated_cost_usd")
        nusd = round(cost * 1_000_000_000) if cost else 0
        ref.add(
            ev.get("provider") or "unknown",
            ev.get("model") or "unknown",
            ev.get("status") or "unknown",
            ev.get("tenant") or "",
            ev.get("input_tokens") or 0,
            ev.get("output_tokens") or 0,
            nusd,
        )
        for table, label in ((by_model, ev.get("model")), (by_status, ev.get("status"))):
            none = "(no status)" if table is by_status else "(no model)"
            row = table.setdefault(label or none, [0, 0, 0, 0, 0, 0])
            row[0] += 1
            row[1] += ev.get("input_tokens") or 0
            row[2] += ev.get("output_tokens") or 0
            row[3] += nusd
            row[4] += ev.get("cost_status") == "unpriced_model"
            row[5] += bool(ev.get("tokens_estimated"))
    assert t.series.by_pms == ref.by_pms
    assert t.series.by_pmt == ref.by_pmt
    assert len(t.series.by_pmt) == 6 + 1  # capped: other
    for table, want in ((t.by_model, by_model), (t.by_status, by_status)):
        got = {
            k: [r.requests, r.input_tokens, r.output_tokens, r.cost_nusd, r.unpriced, r.estimated]
            for k, r in table.items()
        }
        assert got == want
    assert len(t._rows) <= row_cache_max


def test_metrics_from_status_and_histogram() -> None:
    t = Telemetry()
    t.hec_latency.observe(0.003)
    t.hec_latency.observe(0.2)
    t.hec_latency.observe(100.0)
    t.malformed["access_not_json"] = 2
    st = {
        "sources": {"proxy": {"lag_secs": 1.5, "lines_read": {"access": 3, "body": 9}}},
        "sinks": {"sinks[0]": sink_counters({"events_sent": 7, "events_dead_lettered": 1})},
        "spool_bytes": 10,
        "spool_max_bytes": 100,
        "health_reasons": ["x"],
    }
    m = scrape(t, st)
    assert m["llm_sidecar_events_sent_total"][0].value == 7
    assert m["llm_sidecar_events_dead_lettered_total"][0].value == 1
    assert m["llm_sidecar_lag_seconds"][0].value == 1.5
    assert m["llm_sidecar_healthy"][0].value == 0
    assert m["llm_sidecar_records_set_aside_total"][0].labels == {"reason": "access_not_json"}
    buckets = {
        s.labels["le"]: s.value for s in m["llm_sidecar_hec_request_duration_seconds_bucket"]
    }
    assert buckets["0.005"] == 1 and buckets["0.25"] == 2 and buckets["+Inf"] == 3


def test_health_reasons_and_lag() -> None:
    assert source_lag(0, 100.0, 0.0, 1000.0) == 0.0  # caught up: no lag however old the data
    assert source_lag(5, 900.0, 0.0, 1000.0) == 100.0
    st = {
        "spool_bytes": 90,
        "spool_max_bytes": 100,
        "sources": {"proxy": {"lag_secs": 400.0}},
    }
    reasons = health_reasons(
        st,
        sink_reasons=["HEC token rejected (code 4) at https://x:8088"],
        lag_threshold_secs=300,
        spool_threshold_pct=80,
        source_reasons=["source proxy: no log file matches /x"],
    )
    assert reasons[0].startswith("HEC token rejected")
    assert any("spool 90% full" in r for r in reasons)
    assert any("proxy is 400 s behind" in r for r in reasons)
    assert reasons[-1] == "source proxy: no log file matches /x"
    assert (
        health_reasons(
            {"spool_max_bytes": 0, "sources": {}},
            sink_reasons=[],
            lag_threshold_secs=1,
            spool_threshold_pct=80,
            source_reasons=[],
        )
        == []
    )


def test_rate_status_line_and_heartbeat() -> None:
    r = Rate()
    assert r.sample(0, now=0.0) == 0.0
    assert r.sample(50, now=10.0) == 5.0
    st = {"time": 1.0, "lag_secs": 2.0, "spool_bytes": 2048, "events_per_sec": 5.0}
    st["health_reasons"] = []
    assert status_line(st) == "lag 2 s, spool 2.0 KiB, 5 events/s, 0 sent; ok"
    ev = heartbeat_event(st, host="h", version="9")
    assert ev.sourcetype == "llm:sidecar"
    assert ev.body["schema"] == "llm_sidecar/1" and ev.body["kind"] == "heartbeat"
    assert set(HEARTBEAT_KEYS) <= ev.body.keys()
    assert ev.body["health"] == "ok" and ev.body["events_sent_total"] == 0
    schema = json.loads((REPO / "sidecar" / "schema" / "llm_sidecar_1.json").read_text())
    jsonschema.validate(ev.body, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**ev.body, "prompt": "x"}, schema)  # nothing else goes in it


def test_journald_is_detected_from_the_stream_itself(tmp_path, monkeypatch) -> None:
    from sidecar.logsetup import stderr_is_journal

    with open(tmp_path / "stream", "w") as fh, open(tmp_path / "other", "w") as other:
        st = os.fstat(fh.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        monkeypatch.setattr("sys.stderr", fh)
        assert stderr_is_journal()
        monkeypatch.setattr("sys.stderr", other)  # inherited variable, redirected stderr
        assert not stderr_is_journal()
        monkeypatch.delenv("JOURNAL_STREAM")
        monkeypatch.setattr("sys.stderr", fh)
        assert not stderr_is_journal()
