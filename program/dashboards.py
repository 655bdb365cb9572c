"""What Grafana is given: its datasources' fixed uids, and the dashboards, built with
grafana-foundation-sdk and rendered to JSON at deploy time.

Metric names are derived from the app's OpenTelemetry names with the collector's own naming rule
(program/metric_names.py). The HTTP and process panels ask for every name the app's runtime may
give a measure, so an app instrumented today and one instrumented the seed's way both fill them.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping

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



PROMETHEUS = DataSourceRef(type_val="prometheus", uid=DATASOURCE_UIDS["prometheus"])
LOKI = DataSourceRef(type_val="loki", uid=DATASOURCE_UIDS["loki"])
RATE = "$__rate_interval"
QUANTILES = (0.5, 0.95, 0.99)
EXEMPLAR_HINT = "Dots are exemplars: click one to open its trace in Tempo."


@dataclass(frozen=True)
class AppMetric:
    otel_name: str
    unit: str  # as the app declares it; assumed: durations in ms, as OpenTelemetry JS writes them
    monotonic_sum: bool = False

    @property
    def series(self) -> str:
        return prometheus_metric_name(self.otel_name, self.unit, self.monotonic_sum)


# The seed's business metrics (shared/seed/trace-stack-readme.txt, "Available metrics").
APP_METRICS = {
    "llm_calls": AppMetric("llm.invocation.count", "", monotonic_sum=True),
    "llm_duration": AppMetric("llm.invocation.duration", "ms"),
    "llm_tokens": AppMetric("llm.token.count", "{token}", monotonic_sum=True),
    "tool_calls": AppMetric("tool.invocation.count", "", monotonic_sum=True),
    "tool_duration": AppMetric("tool.execution.duration", "ms"),
    "db_duration": AppMetric("db.query.duration", "ms"),
    "db_slow": AppMetric("db.slow_query.count", "", monotonic_sum=True),
    "db_queries": AppMetric("db.query.count", "", monotonic_sum=True),
}


@dataclass(frozen=True)
class HttpConvention:
    """One generation of OpenTelemetry's HTTP server duration histogram, as the collector exports it."""

    histogram: str
    method: str  # the label holding the request's method
    status: str  # the label holding the response's status code
    seconds_per_unit: float


# Both generations, newest first: an app sends one of them (or both, while it migrates, when
# the newest wins). Neither always has http_route: only where a framework sets the route.
HTTP_CONVENTIONS = (
    # Stable since semantic conventions 1.23: instrumentation-http 0.5x and later, every SDK today.
    HttpConvention(prometheus_metric_name("http.server.request.duration", "s"), "http_request_method",
                   "http_response_status_code", 1),
    # Before: the seed's app, and any instrumentation older than that.
    HttpConvention(prometheus_metric_name("http.server.duration", "ms"), "http_method", "http_status_code", 0.001),
)
# The labels the HTTP panels group by, whichever generation they come from.
HTTP_METHOD, HTTP_STATUS = "method", "status"
HTTP_GROUPS = f"{HTTP_METHOD}, http_route, {HTTP_STATUS}"


@dataclass(frozen=True)
class ProcessMetric:
    """A process panel: one measure under each name an app's runtime may give it, tried in order,
    each as (metric, expression of {metric}, which the app's selector completes[, matchers the
    selector adds]); `runtimes` are those whose usual instrumentation reports it."""

    title: str
    unit: str
    runtimes: tuple[str, ...]
    sources: tuple[tuple[str, ...], ...]
    legend: str = "{{instance}}"

    def expr(self, selector: str) -> str:
        return " or ".join(template.format(metric=name + (selector[:-1] + ", " + matchers[0] + "}" if matchers else selector))
                           for name, template, *matchers in self.sources)

    @property
    def names(self) -> list[str]:
        return list(dict.fromkeys(name for name, *_ in self.sources))


def _rate_of(template: str = "{metric}", without: str = "") -> str:
    rate = f"rate({template}[{RATE}])"
    return f"sum without ({without}) ({rate})" if without else rate


NODE, PYTHON, GO, JVM = "Node.js", "Python", "Go", "JVM"
# What each runtime reports, whatever measures it, read from each instrumentation's source:
# - Node.js: prom-client's default metrics (process_*, nodejs_*; the seed's names), or
#   OpenTelemetry's runtime-node and host-metrics (v8js_*, nodejs_eventloop_delay_*, process_*);
# - Python: OpenTelemetry's system-metrics instrumentation 0.66b1, its names and its deprecated
#   process_runtime_cpython_* ones, or prometheus_client's defaults (process_*, python_gc_*);
# - Go: OpenTelemetry's runtime instrumentation v0.72 (go_memory_*, go_goroutine_count; its
#   deprecated process_runtime_go_* with OTEL_GO_X_DEPRECATED_RUNTIME_METRICS; CPU time from its host
#   instrumentation), or client_golang's default registry (go_memstats_*, go_gc_*, process_*);
# - the JVM: the OpenTelemetry Java agent 2.33 (jvm_*), or Micrometer (jvm_gc_pause_*, area labels).
PROCESS_METRICS = (
    ProcessMetric("Memory (resident)", "bytes", (NODE, PYTHON, GO), (
        ("process_resident_memory_bytes", "{metric}"),
        ("process_memory_usage", "{metric}"),
        ("process_memory_usage_bytes", "{metric}"),
        ("process_runtime_cpython_memory_bytes", "sum without (type) ({metric})", 'type="rss"'))),
    ProcessMetric("CPU", "percentunit", (NODE, PYTHON, GO, JVM), (
        ("process_cpu_seconds_total", _rate_of()),
        # Its state (Node: process_cpu_state, Python: type, Go: cpu_mode) summed: one series.
        ("process_cpu_time_seconds_total", _rate_of(without="process_cpu_state, type, cpu_mode")),
        ("process_runtime_cpython_cpu_time_seconds_total", _rate_of(without="type")),
        ("jvm_cpu_time_seconds_total", _rate_of()))),
    ProcessMetric("Heap / runtime memory in use", "bytes", (NODE, GO, JVM), (
        ("v8js_memory_heap_used_bytes", "sum without (v8js_heap_space_name) ({metric})"),
        ("nodejs_heap_size_used_bytes", "{metric}"),
        ("go_memory_used_bytes", "sum without (go_memory_type) ({metric})"),
        ("process_runtime_go_mem_heap_inuse_bytes", "{metric}"),
        ("go_memstats_heap_inuse_bytes", "{metric}"),
        ("jvm_memory_used_bytes", "sum without (jvm_memory_pool_name, jvm_memory_type) ({metric})",
         'jvm_memory_type="heap"'),
        ("jvm_memory_used_bytes", "sum without (area, id) ({metric})", 'area="heap"'))),
    ProcessMetric("Time in garbage collection", "percentunit", (NODE, GO, JVM), (
        ("v8js_gc_duration_seconds_sum", _rate_of(without="v8js_gc_type")),
        ("nodejs_gc_duration_seconds_sum", _rate_of(without="kind")),
        ("go_gc_duration_seconds_sum", _rate_of()),
        ("process_runtime_go_gc_pause_ns_nanoseconds_sum", _rate_of() + " / 1e9"),
        ("jvm_gc_duration_seconds_sum", _rate_of(without="jvm_gc_name, jvm_gc_action")),
        ("jvm_gc_pause_seconds_sum", _rate_of(without="action, cause, gc")))),
    ProcessMetric("Garbage collections", "ops", (NODE, PYTHON, GO, JVM), (
        ("v8js_gc_duration_seconds_count", _rate_of(without="v8js_gc_type")),
        ("nodejs_gc_duration_seconds_count", _rate_of(without="kind")),
        ("cpython_gc_collections_total", _rate_of(without="cpython_gc_generation, generation")),
        ("python_gc_collections_total", _rate_of(without="generation")),
        ("go_gc_duration_seconds_count", _rate_of()),
        ("process_runtime_go_gc_count_total", _rate_of()),
        ("jvm_gc_duration_seconds_count", _rate_of(without="jvm_gc_name, jvm_gc_action")),
        ("jvm_gc_pause_seconds_count", _rate_of(without="action, cause, gc")))),
    ProcessMetric("Event loop delay (p99)", "s", (NODE,), (
        ("nodejs_eventloop_delay_p99_seconds", "{metric}"),
        ("nodejs_eventloop_lag_p99_seconds", "{metric}"))),
    ProcessMetric("Threads / goroutines", "short", (PYTHON, GO, JVM), (
        ("process_thread_count", "{metric}"),
        ("process_runtime_cpython_thread_count", "{metric}"),
        ("go_goroutine_count", "{metric}"),
        ("process_runtime_go_goroutines", "{metric}"),
        ("go_goroutines", "{metric}"),
        ("jvm_thread_count", "sum without (jvm_thread_daemon, jvm_thread_state) ({metric})"),
        ("jvm_threads_live_threads", "{metric}"))),
)

# Tempo's metrics-generator: a latency histogram of every span, labelled by service, span_name,
# span_kind and status_code, in seconds, with the trace id of a sampled span as exemplar
# (modules/generator/processor/spanmetrics at v2.3.0). It needs only traces, from any SDK.
SPAN_LATENCY = "traces_spanmetrics_latency_bucket"
SERVER_SPANS = 'span_kind="SPAN_KIND_SERVER"'


def _rate(series: str, by: str = "", selector: str = "") -> str:
    """Per-second rate of a counter over Grafana's rate interval, summed (by labels, if given)."""
    rate = f"rate({series}{selector}[{RATE}])"
    return f"sum by ({by}) ({rate})" if by else f"sum({rate})"


def _selector(app: str, *matchers: str) -> str:
    """The app's own series: those of its job (the collector's exporter takes it from the app's
    service.name), never the stack's services'."""
    return "{" + ", ".join((f'job="{app}"', *matchers)) + "}"


def _errors(title: str, calls: str, by: str, app: str, ids: Iterator[int]) -> TimeSeries:
    return _series(title, "reqps", ids, (_rate(calls, by, _selector(app, 'status!="success"')), f"{{{{{by}}}}}"))


def _series(title: str, unit: str, ids: Iterator[int], *targets: tuple[str, str], exemplars: bool = False,
            description: str = "", no_value: str = "") -> TimeSeries:
    panel = (TimeSeries().id(next(ids)).title(title).description(description).unit(unit)
             .datasource(PROMETHEUS).height(8).span(12))
    if no_value:
        panel = panel.no_value(no_value)
    for ref, (expr, legend) in zip("ABCDEFGH", targets):
        panel = panel.with_target(PromQuery().ref_id(ref).expr(expr).legend_format(legend).exemplar(exemplars))
    return panel


def _quantile_targets(histogram: Callable[[float], str], by: str = "") -> list[tuple[str, str]]:
    return [(histogram(q), f"p{round(q * 100)}" + (f" {{{{{by}}}}}" if by else "")) for q in QUANTILES]


def _quantiles(title: str, buckets: str, by: str, app: str, ids: Iterator[int]) -> TimeSeries:
    """p50/p95/p99 from one of the app's histograms in ms, with exemplars that link to the trace."""
    group = f"le, {by}" if by else "le"
    return _series(title, "ms", ids, *_quantile_targets(
        lambda q: f"histogram_quantile({q}, {_rate(buckets, group, _selector(app))})", by),
        exemplars=True, description=EXEMPLAR_HINT)


def _no_data(*names: str, where: str) -> str:
    return f"No data: looks for {' or '.join(names)} with {where}"


def _renamed(expr: str, convention: HttpConvention) -> str:
    """expr with the convention's method and status labels copied to the shared names."""
    for shared, own in ((HTTP_METHOD, convention.method), (HTTP_STATUS, convention.status)):
        expr = f'label_replace({expr}, "{shared}", "$1", "{own}", "(.*)")'
    return expr


def http_request_rate(app: str) -> str:
    """Requests a second by method, route and status, from whichever generation the app sends."""
    return " or ".join(f"sum by ({HTTP_GROUPS}) ({_renamed(f'rate({c.histogram}_count{_selector(app)}[{RATE}])', c)})"
                       for c in HTTP_CONVENTIONS)


def http_server_error_share(app: str) -> str:
    """The share of requests answered 5xx; 0, not nothing, while there are none."""
    shares = []
    for c in HTTP_CONVENTIONS:
        count = f"{c.histogram}_count"
        errors, total = _rate(count, selector=_selector(app, f'{c.status}=~"5.."')), _rate(count, selector=_selector(app))
        shares.append(f"(({errors} or 0 * {total}) / {total})")
    return " or ".join(shares)


def http_latency_quantile(app: str, quantile: float) -> str:
    """A latency quantile in seconds, from whichever generation the app sends."""
    parts = []
    for c in HTTP_CONVENTIONS:
        expr = f"histogram_quantile({quantile}, {_rate(c.histogram + '_bucket', 'le', _selector(app))})"
        parts.append(expr if c.seconds_per_unit == 1 else f"{expr} * {c.seconds_per_unit:g}")
    return " or ".join(f"({part})" for part in parts)


def span_latency_quantile(app: str, quantile: float) -> str:
    """A latency quantile of the app's server spans in seconds, from Tempo's span metrics."""
    spans = "{" + f'service="{app}", {SERVER_SPANS}' + "}"
    return f"histogram_quantile({quantile}, {_rate(SPAN_LATENCY, 'le', spans)})"


def app_overview(labels: Mapping[str, str]) -> Dashboard:
    """The app's own dashboard, named after it (labels: its logs' job and env); every metric it
    shows is the app's own: its job (service.name) is the stack's appName."""
    app = labels["job"]
    selector = logs_selector(labels)
    m = {key: metric.series for key, metric in APP_METRICS.items()}
    ids = itertools.count(1)  # the SDK places panels; Grafana wants an id on each
    job = f'job="{app}"'
    http_histograms = [c.histogram for c in HTTP_CONVENTIONS]
    dashboard = (
        Dashboard(f"{app}: overview").uid(f"trace-stack-{app}").tags(["trace-stack", app])
        .refresh("30s").time("now-1h", "now")
        .with_row(Row("LLM").id(next(ids)))
        .with_panel(_series("LLM invocations", "reqps", ids,
                            (_rate(m["llm_calls"], "model_name, status", _selector(app)), "{{model_name}} {{status}}")))
        .with_panel(_series("Tokens", "short", ids,
                            (_rate(m["llm_tokens"], "token_type, model_name", _selector(app)),
                             "{{token_type}} {{model_name}}")))
        .with_panel(_quantiles("LLM latency", m["llm_duration"] + "_bucket", "", app, ids))
        .with_panel(_errors("LLM errors", m["llm_calls"], "model_name", app, ids))
        .with_row(Row("Tools").id(next(ids)))
        .with_panel(_series("Tool calls", "reqps", ids,
                            (_rate(m["tool_calls"], "tool_name, status", _selector(app)), "{{tool_name}} {{status}}")))
        .with_panel(_quantiles("Tool duration", m["tool_duration"] + "_bucket", "tool_name", app, ids))
        .with_panel(_errors("Tool errors", m["tool_calls"], "tool_name", app, ids))
        .with_row(Row("Database").id(next(ids)))
        .with_panel(_quantiles("Query duration", m["db_duration"] + "_bucket", "", app, ids))
        .with_panel(_series("Queries", "reqps", ids,
                            (_rate(m["db_queries"], "operation, model", _selector(app)), "{{operation}} {{model}}"),
                            (_rate(m["db_slow"], selector=_selector(app)), "slow (>100ms)")))
        .with_row(Row("HTTP").id(next(ids)))
        .with_panel(_series("Request rate", "reqps", ids,
                            (http_request_rate(app), f"{{{{{HTTP_METHOD}}}}} {{{{http_route}}}} {{{{{HTTP_STATUS}}}}}"),
                            no_value=_no_data(*(f"{name}_count" for name in http_histograms), where=job)))
        .with_panel(_series("Error rate (5xx)", "percentunit", ids, (http_server_error_share(app), "5xx share"),
                            no_value=_no_data(*(f"{name}_count" for name in http_histograms), where=job)))
        .with_panel(_series("Request latency", "s", ids,
                            *[(http_latency_quantile(app, q), f"p{round(q * 100)}") for q in QUANTILES],
                            exemplars=True, description=EXEMPLAR_HINT + " Only SDKs that attach exemplars to "
                                                                        "their histograms draw them here.",
                            no_value=_no_data(*(f"{name}_bucket" for name in http_histograms), where=job)))
        .with_panel(_series("Request latency, from traces", "s", ids,
                            *[(span_latency_quantile(app, q), f"p{round(q * 100)}") for q in QUANTILES],
                            exemplars=True,
                            description="Server spans' latency, from Tempo's span metrics: any app that sends "
                                        "traces has it, and its exemplars open the trace. " + EXEMPLAR_HINT,
                            no_value=_no_data(SPAN_LATENCY, where=f'service="{app}", {SERVER_SPANS}')))
        .with_row(Row("Process").id(next(ids)))
    )
    # A panel of another runtime's says so, rather than showing nothing.
    for metric in PROCESS_METRICS:
        dashboard = dashboard.with_panel(_series(
            metric.title, metric.unit, ids, (metric.expr(_selector(app)), metric.legend),
            description=f"Reported by {', '.join(metric.runtimes)} apps.",
            no_value=_no_data(*metric.names, where=job) + f": {' and '.join(metric.runtimes)} apps report it"))
    # Pino lines (through Alloy) and OpenTelemetry log records (through the collector) carry the
    # same labels, so these show both.
    return (
        dashboard.with_row(Row("Logs").id(next(ids)))
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
