"""/metrics in the Prometheus text format, through prometheus-client (the only importer of it).

A custom collector reads the pipeline's figures at scrape time, so the data path does no metric
work of its own beyond the O(1) dict increments `Telemetry` already does per event. Label sets
are capped by `Telemetry.series` (past `server.max_label_values`, new ones count as `other`).

    llm_sidecar_requests_total{provider,model,status}
    llm_sidecar_tokens_total{provider,model,status,direction}       direction: input | output
    llm_sidecar_cost_usd_total{provider,model,tenant}
    llm_sidecar_lines_read_total{source,log}                        log: access | body
    llm_sidecar_records_set_aside_total{reason}
    llm_sidecar_events_sent_total{sink} (and _failed_, _dead_lettered_, _retried_)
    llm_sidecar_spool_bytes  llm_sidecar_spool_max_bytes  llm_sidecar_lag_seconds{source}
    llm_sidecar_hec_request_duration_seconds (histogram)
    llm_sidecar_token_estimation_error_pct{model}          mean abs. error on complete streams
    llm_sidecar_unpriced_requests_total  llm_sidecar_tokens_estimated_total  llm_sidecar_healthy
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from sidecar.telemetry import Telemetry
from sidecar.types import NANO

P = "llm_sidecar_"


class _Collector:
    def __init__(
        self,
        telemetry: Telemetry,
        status: Callable[[], dict[str, Any]],
        estimation: Callable[[], dict[str, Any]],
    ) -> None:
        self._t = telemetry
        self._status = status
        self._estimation = estimation

    def collect(self) -> Iterator[Metric]:
        t, st = self._t, self._status()
        yield from self._usage(t)
        lines = CounterMetricFamily(P + "lines_read", "Log lines read", labels=["source", "log"])
        lag = GaugeMetricFamily(P + "lag_seconds", "Seconds behind the log", labels=["source"])
        for name, s in st.get("sources", {}).items():
            for log_name, n in s["lines_read"].items():
                lines.add_metric([name, log_name], n)
            lag.add_metric([name], s["lag_secs"])
        yield lines
        yield lag
        aside = CounterMetricFamily(
            P + "records_set_aside", "Malformed records set aside", labels=["reason"]
        )
        for reason, n in sorted(t.malformed.items()):
            aside.add_metric([reason], n)
        yield aside
        for key, help_text in (
            ("events_sent_total", "Events delivered by a sink"),
            ("events_failed_total", "Event deliveries that failed"),
            ("events_dead_lettered_total", "Events written to the dead-letter file"),
            ("events_retried_total", "Batch sends retried"),
        ):
            fam = CounterMetricFamily(P + key.removesuffix("_total"), help_text, labels=["sink"])
            for sink, counts in st.get("sinks", {}).items():
                fam.add_metric([sink], counts.get(key, 0))
            yield fam
        yield GaugeMetricFamily(P + "spool_bytes", "Bytes in the spool", st.get("spool_bytes", 0))
        yield GaugeMetricFamily(
            P + "spool_max_bytes", "Spool size cap", st.get("spool_max_bytes", 0)
        )
        yield GaugeMetricFamily(
            P + "healthy", "1 when /health answers 200", 0 if st.get("health_reasons") else 1
        )
        yield CounterMetricFamily(
            P + "unpriced_requests",
            "Requests of unpriced models",
            st.get("unpriced_requests_total", 0),
        )
        yield CounterMetricFamily(
            P + "tokens_estimated",
            "Requests whose tokens were estimated",
            st.get("tokens_estimated_total", 0),
        )
        h = t.hec_latency
        buckets, running = [], 0
        for bound, n in zip([*map(str, h.buckets), "+Inf"], h.counts, strict=True):
            running += n
            buckets.append((bound, running))
        yield HistogramMetricFamily(
            P + "hec_request_duration_seconds",
            "HEC event POST duration",
            buckets=buckets,
            sum_value=h.sum,
        )
        err = GaugeMetricFamily(
            P + "token_estimation_error_pct",
            "Mean absolute error of output-token estimates, checked on complete streams",
            labels=["model"],
        )
        for model, m in sorted((self._estimation().get("models") or {}).items()):
            value = m.get("mape_calibrated_pct") if m.get("calibrated") else None
            value = value if value is not None else m.get("mape_uncalibrated_pct")
            if value is not None:
                err.add_metric([model], value)
        yield err

    @staticmethod
    def _usage(t: Telemetry) -> Iterator[Metric]:
        req = CounterMetricFamily(
            P + "requests", "LLM requests seen", labels=["provider", "model", "status"]
        )
        tok = CounterMetricFamily(
            P + "tokens", "LLM tokens", labels=["provider", "model", "status", "direction"]
        )
        for (provider, model, status), r in sorted(t.series.by_pms.items()):
            req.add_metric([provider, model, status], r.requests)
            tok.add_metric([provider, model, status, "input"], r.input_tokens)
            tok.add_metric([provider, model, status, "output"], r.output_tokens)
        cost = CounterMetricFamily(
            P + "cost_usd", "Estimated cost in USD", labels=["provider", "model", "tenant"]
        )
        for (provider, model, tenant), r in sorted(t.series.by_pmt.items()):
            cost.add_metric([provider, model, tenant], r.cost_nusd / NANO)
        yield req
        yield tok
        yield cost


def make_renderer(
    telemetry: Telemetry,
    status: Callable[[], dict[str, Any]],
    estimation: Callable[[], dict[str, Any]],
) -> Callable[[], tuple[bytes, str]]:
    """A function returning (exposition bytes, content type) for the figures as they are now."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(telemetry, status, estimation))

    def render() -> tuple[bytes, str]:
        return generate_latest(registry), CONTENT_TYPE_LATEST

    return render
