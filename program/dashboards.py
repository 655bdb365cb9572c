"""What Grafana is given: its datasources' fixed uids, and the dashboards, built with
grafana-foundation-sdk and rendered to JSON at deploy time.

Metric names are derived from the app's OpenTelemetry names with the collector's own naming rule
(program/metric_names.py), so a change of the app's units is one line in APP_METRICS.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from typing import Iterator, Mapping

from grafana_foundation_sdk.builders.dashboard import Dashboard, Row
from grafana_foundation_sdk.builders.logs import Panel as Logs
from grafana_foundation_sdk.builders.loki import Dataquery as LokiQuery
from grafana_foundation_sdk.builders.prometheus import Dataquery as PromQuery
from grafana_foundation_sdk.builders.stat import Panel as Stat
from grafana_foundation_sdk.builders.timeseries import Panel as TimeSeries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef

from .log_labels import logs_selector
from .metric_names import collector_loss_selector, prometheus_metric_name
from .services import DATASOURCE_UIDS



@dataclass(frozen=True)
class AppMetric:
    otel_name: str
    unit: str  # as the app declares it; assumed: durations in ms, as OpenTelemetry JS writes them
    monotonic_sum: bool = False

    @property
    def series(self) -> str:
        return prometheus_metric_name(self.otel_name, self.unit, self.monotonic_sum)


# The seed's metrics (shared/seed/trace-stack-readme.txt, "Available metrics").
APP_METRICS = {
    "llm_calls": AppMetric("llm.invocation.count", "", monotonic_sum=True),
    "llm_duration": AppMetric("llm.invocation.duration", "ms"),
    "llm_tokens": AppMetric("llm.token.count", "{token}", monotonic_sum=True),
    "tool_calls": AppMetric("tool.invocation.count", "", monotonic_sum=True),
    "tool_duration": AppMetric("tool.execution.duration", "ms"),
    "db_duration": AppMetric("db.query.duration", "ms"),
    "db_slow": AppMetric("db.slow_query.count", "", monotonic_sum=True),
    "db_queries": AppMetric("db.query.count", "", monotonic_sum=True),
    "http_duration": AppMetric("http.server.duration", "ms"),
}
# Process metrics arrive under their Prometheus names already (the seed lists them so), and the
# event-loop lag as prom-client's default Node.js metric.
PROCESS_CPU = "process_cpu_seconds_total"
PROCESS_MEMORY = "process_resident_memory_bytes"
EVENT_LOOP_LAG = "nodejs_eventloop_lag_seconds"

PROMETHEUS = DataSourceRef(type_val="prometheus", uid=DATASOURCE_UIDS["prometheus"])
LOKI = DataSourceRef(type_val="loki", uid=DATASOURCE_UIDS["loki"])
RATE = "$__rate_interval"
QUANTILES = (0.5, 0.95, 0.99)


def _rate(series: str, by: str = "", selector: str = "") -> str:
    """Per-second rate of a counter over Grafana's rate interval, summed (by labels, if given)."""
    rate = f"rate({series}{selector}[{RATE}])"
    return f"sum by ({by}) ({rate})" if by else f"sum({rate})"


def _errors(title: str, calls: str, by: str, ids: Iterator[int]) -> TimeSeries:
    return _series(title, "reqps", ids, (_rate(calls, by, '{status!="success"}'), f"{{{{{by}}}}}"))


def _series(title: str, unit: str, ids: Iterator[int], *targets: tuple[str, str], exemplars: bool = False,
            description: str = "") -> TimeSeries:
    panel = (TimeSeries().id(next(ids)).title(title).description(description).unit(unit)
             .datasource(PROMETHEUS).height(8).span(12))
    for ref, (expr, legend) in zip("ABCDEFGH", targets):
        panel = panel.with_target(PromQuery().ref_id(ref).expr(expr).legend_format(legend).exemplar(exemplars))
    return panel


def _quantiles(title: str, buckets: str, by: str, ids: Iterator[int]) -> TimeSeries:
    """p50/p95/p99 from a histogram, with exemplars that link to the trace."""
    group = f"le, {by}" if by else "le"
    targets = [(f"histogram_quantile({q}, {_rate(buckets, group)})",
                f"p{round(q * 100)}" + (f" {{{{{by}}}}}" if by else "")) for q in QUANTILES]
    return _series(title, "ms", ids, *targets, exemplars=True,
                   description="Dots are exemplars: click one to open its trace in Tempo.")


def app_overview(labels: Mapping[str, str]) -> Dashboard:
    """The app's own dashboard, named after it (labels: its logs' job and env)."""
    app = labels["job"]
    selector = logs_selector(labels)
    m = {key: metric.series for key, metric in APP_METRICS.items()}
    ids = itertools.count(1)  # the SDK places panels; Grafana wants an id on each
    http_count = m["http_duration"] + "_count"
    server_errors = _rate(http_count, selector='{http_status_code=~"5.."}')
    return (
        Dashboard(f"{app}: overview").uid(f"trace-stack-{app}").tags(["trace-stack", app])
        .refresh("30s").time("now-1h", "now")
        .with_row(Row("LLM").id(next(ids)))
        .with_panel(_series("LLM invocations", "reqps", ids,
                            (_rate(m["llm_calls"], "model_name, status"), "{{model_name}} {{status}}")))
        .with_panel(_series("Tokens", "short", ids,
                            (_rate(m["llm_tokens"], "token_type, model_name"), "{{token_type}} {{model_name}}")))
        .with_panel(_quantiles("LLM latency", m["llm_duration"] + "_bucket", "", ids))
        .with_panel(_errors("LLM errors", m["llm_calls"], "model_name", ids))
        .with_row(Row("Tools").id(next(ids)))
        .with_panel(_series("Tool calls", "reqps", ids,
                            (_rate(m["tool_calls"], "tool_name, status"), "{{tool_name}} {{status}}")))
        .with_panel(_quantiles("Tool duration", m["tool_duration"] + "_bucket", "tool_name", ids))
        .with_panel(_errors("Tool errors", m["tool_calls"], "tool_name", ids))
        .with_row(Row("Database").id(next(ids)))
        .with_panel(_quantiles("Query duration", m["db_duration"] + "_bucket", "", ids))
        .with_panel(_series("Queries", "reqps", ids,
                            (_rate(m["db_queries"], "operation, model"), "{{operation}} {{model}}"),
                            (_rate(m["db_slow"]), "slow (>100ms)")))
        .with_row(Row("HTTP").id(next(ids)))
        .with_panel(_series("Request rate", "reqps", ids,
                            (_rate(http_count, "http_route"), "{{http_route}}")))
        .with_panel(_series("Error rate (5xx)", "percentunit", ids,
                            (f"{server_errors} / {_rate(http_count)}",
                             "5xx share")))
        .with_panel(_quantiles("Request latency", m["http_duration"] + "_bucket", "", ids))
        .with_row(Row("Process").id(next(ids)))
        .with_panel(_series("Memory (resident)", "bytes", ids, (PROCESS_MEMORY, "{{job}}")))
        .with_panel(_series("CPU", "percentunit", ids, (f"rate({PROCESS_CPU}[{RATE}])", "{{job}}")))
        .with_panel(_series("Event loop lag", "s", ids, (EVENT_LOOP_LAG, "{{job}}")))
        # Pino lines (through Alloy) and OpenTelemetry log records (through the collector) carry
        # the same labels, so these show both.
        .with_row(Row("Logs").id(next(ids)))
        .with_panel(TimeSeries().id(next(ids)).title("Log lines by level").unit("short").datasource(LOKI)
                    .height(8).span(24).with_target(
                        LokiQuery().ref_id("A").datasource(LOKI).legend_format("{{level}}")
                        .expr(f"sum by (level) (count_over_time({selector} [$__auto]))")))
        .with_panel(Logs().id(next(ids)).title("Logs").datasource(LOKI).height(12).span(24)
                    .show_time(True).enable_log_details(True).wrap_log_message(True)
                    .with_target(LokiQuery().ref_id("A").datasource(LOKI).expr(selector)))
    )


def stack_health() -> Dashboard:
    """Is the stack itself the problem? Each service up, and what each takes in or drops."""
    ids = itertools.count(1)  # the SDK places panels; Grafana wants an id on each
    return (
        Dashboard("trace-stack: the stack itself").uid("trace-stack-health").tags(["trace-stack"])
        .refresh("30s").time("now-1h", "now")
        .with_row(Row("Services").id(next(ids)))
        .with_panel(Stat().id(next(ids)).title("Up").datasource(PROMETHEUS).height(4).span(24)
                    .with_target(PromQuery().ref_id("A").expr("min by (job) (up)").legend_format("{{job}}").instant()))
        .with_row(Row("Ingestion").id(next(ids)))
        .with_panel(_series("Prometheus samples appended", "short", ids,
                            (f"rate(prometheus_tsdb_head_samples_appended_total[{RATE}])", "samples/s")))
        .with_panel(_series("Prometheus TSDB size", "bytes", ids,
                            ("prometheus_tsdb_storage_blocks_bytes", "blocks"),
                            ("prometheus_tsdb_wal_storage_size_bytes", "WAL")))
        .with_panel(_series("Tempo spans received", "short", ids,
                            (_rate("tempo_distributor_spans_received_total"), "spans/s")))
        .with_panel(_series("Loki lines received", "short", ids,
                            (_rate("loki_distributor_lines_received_total"), "lines/s"),
                            (_rate("loki_distributor_bytes_received_total"), "bytes/s")))
        .with_row(Row("Collector").id(next(ids)))
        .with_panel(_series("Accepted", "short", ids,
                            (_rate("otelcol_receiver_accepted_spans"), "spans/s"),
                            (_rate("otelcol_receiver_accepted_metric_points"), "metric points/s"),
                            (_rate("otelcol_receiver_accepted_log_records"), "log records/s")))
        .with_panel(_series("Lost since the collector started", "short", ids,
                            (f"{collector_loss_selector()} > 0", "{{__name__}} {{receiver}}{{processor}}{{exporter}}"),
                            description="Spans, metric points and log records the collector refused or dropped; "
                                        "`python -m stack check` names the same counters. Empty: nothing lost."))
        .with_panel(_series("Alloy log entries sent", "short", ids,
                            (_rate("loki_write_sent_entries_total"), "entries/s"),
                            (_rate("loki_write_dropped_entries_total"), "dropped/s")))
    )


def rendered_dashboards(labels: Mapping[str, str]) -> dict[str, str]:
    """File name -> dashboard JSON, for the provider's folder (labels: the app's logs' job and env)."""
    files = {}
    for builder in (app_overview(labels), stack_health()):
        dashboard = builder.build()
        files[f"{dashboard.uid}.json"] = json.dumps(dashboard, cls=JSONEncoder, indent=2, sort_keys=True) + "\n"
    return files
