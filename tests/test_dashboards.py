"""The provisioned dashboards: what they show, and every query parsed by a real Prometheus."""

import json
import re
import urllib.error
import urllib.parse
import urllib.request

import pytest
import yaml

from program.dashboards import APP_METRICS
from program.services import GRAFANA_DASHBOARDS_DIR
from tests.program import run_program
from tests.tools import DEFAULT_LABELS, prometheus_server

# What Grafana puts in place of its variables before a query reaches Prometheus.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "30s", "$__range": "1h"}


@pytest.fixture(scope="module")
def grafana_files():
    program = run_program()
    return {upload["file"]: upload["content"] for upload in program.containers["grafana"]["uploads"]}


@pytest.fixture(scope="module")
def dashboards(grafana_files):
    return {json.loads(content)["uid"]: json.loads(content)
            for path, content in grafana_files.items() if path.startswith(GRAFANA_DASHBOARDS_DIR + "/")}


def panels(dashboard):
    return [panel for panel in dashboard["panels"] if panel["type"] != "row"]


def targets(dashboards, datasource="prometheus"):
    return [(uid, panel["title"], target["expr"]) for uid, dashboard in dashboards.items()
            for panel in panels(dashboard) if panel["datasource"]["type"] == datasource for target in panel["targets"]]


def test_two_dashboards_are_provisioned_into_the_providers_folder(dashboards, grafana_files):
    assert set(dashboards) == {"trace-stack-refly-api", "trace-stack-health"}
    provider = yaml.safe_load(grafana_files["/etc/grafana/provisioning/dashboards/trace-stack.yaml"])["providers"][0]
    assert provider["options"]["path"] == GRAFANA_DASHBOARDS_DIR and provider["folder"] == "trace-stack"


def test_the_app_overview_has_a_row_for_each_part_of_the_app(dashboards):
    rows = [panel["title"] for panel in dashboards["trace-stack-refly-api"]["panels"] if panel["type"] == "row"]
    assert rows == ["LLM", "Tools", "Database", "HTTP", "Process", "Logs"]


def test_the_app_logs_panels_select_both_log_paths_by_the_shared_labels(dashboards):
    # Alloy's Pino lines and the collector's log records carry these labels alike
    # (tests/test_collector_real.py compares them), so one selector shows both.
    logs = targets(dashboards, "loki")
    assert [(uid, title) for uid, title, _ in logs] == [("trace-stack-refly-api", "Log lines by level"),
                                                       ("trace-stack-refly-api", "Logs")]
    selector = "{" + ", ".join(f'{name}="{value}"' for name, value in DEFAULT_LABELS.items()) + "}"
    assert logs[0][2] == f"sum by (level) (count_over_time({selector} [$__auto]))"
    assert logs[1][2] == selector


def test_latency_panels_show_p50_p95_p99_with_exemplars(dashboards):
    units = {p["title"]: p.get("fieldConfig", {}).get("defaults", {}).get("unit")
             for p in panels(dashboards["trace-stack-refly-api"])}
    latency = [p for p in panels(dashboards["trace-stack-refly-api"]) if units[p["title"]] in ("ms", "s")
               and "histogram_quantile" in p["targets"][0]["expr"]]
    assert [(p["title"], units[p["title"]]) for p in latency] == [
        ("LLM latency", "ms"), ("Tool duration", "ms"), ("Query duration", "ms"), ("Request latency", "s"),
        ("Request latency, from traces", "s")]
    for panel in latency:
        assert [t["expr"].lstrip("(").split(",")[0] for t in panel["targets"]] == [
            "histogram_quantile(0.5", "histogram_quantile(0.95", "histogram_quantile(0.99"]
        assert all(target["exemplar"] is True for target in panel["targets"])


def test_every_app_panel_shows_the_apps_own_series_only(dashboards):
    """Scoped to the app's job (its service.name, the stack's appName), so the stack's own
    Prometheus, Tempo and Loki, which report process_* too, never show as the app; Tempo's span
    metrics name the app as `service`."""
    for _, title, expr in targets({"app": dashboards["trace-stack-refly-api"]}):
        selectors = re.findall(r"\b(\w+)\{([^}]*)\}", expr)
        assert selectors, title
        for metric, matchers in selectors:
            scope = 'service="refly-api"' if metric.startswith("traces_spanmetrics") else 'job="refly-api"'
            assert matchers.split(", ")[0] == scope, (title, metric)


def test_a_panel_with_nothing_to_show_names_what_it_looks_for(dashboards):
    overview = dashboards["trace-stack-refly-api"]
    rows = {}
    for panel in overview["panels"]:
        if panel["type"] == "row":
            row = panel["title"]
        else:
            rows.setdefault(row, []).append(panel)
    for panel in rows["HTTP"] + rows["Process"]:
        no_value = panel["fieldConfig"]["defaults"]["noValue"]
        assert no_value.startswith("No data: looks for "), panel["title"]
        for name in re.findall(r"\b([a-z][a-z0-9_]+)\{", " ".join(t["expr"] for t in panel["targets"])):
            assert name in no_value, (panel["title"], name)


def test_queries_use_the_names_the_collector_exports(dashboards):
    exprs = " ".join(expr for _, _, expr in targets(dashboards))
    for series in ("llm_invocation_count_total", "llm_invocation_duration_milliseconds_bucket",
                   "llm_token_count_total", "tool_invocation_count_total", "tool_execution_duration_milliseconds_bucket",
                   "db_query_duration_milliseconds_bucket", "db_query_count_total", "db_slow_query_count_total",
                   # both generations of the HTTP conventions
                   "http_server_duration_milliseconds_count", "http_server_duration_milliseconds_bucket",
                   "http_server_request_duration_seconds_count", "http_server_request_duration_seconds_bucket",
                   # prom-client's and OpenTelemetry's Node.js runtime names
                   "process_resident_memory_bytes", "process_memory_usage", "process_cpu_seconds_total",
                   "process_cpu_time_seconds_total", "v8js_memory_heap_used_bytes", "nodejs_heap_size_used_bytes",
                   "nodejs_eventloop_delay_p99_seconds", "nodejs_eventloop_lag_p99_seconds",
                   "v8js_gc_duration_seconds_sum", "nodejs_gc_duration_seconds_sum",
                   "traces_spanmetrics_latency_bucket"):
        assert series in exprs
    assert {metric.series for metric in APP_METRICS.values()} <= {
        name.removesuffix("_bucket").removesuffix("_count") for name in exprs.replace("(", " ").replace("{", " ").replace("[", " ").split()}


def test_every_panel_uses_a_provisioned_datasource(dashboards, grafana_files):
    provisioned = {source["uid"] for source in yaml.safe_load(
        grafana_files["/etc/grafana/provisioning/datasources/trace-stack.yaml"])["datasources"]}
    for dashboard in dashboards.values():
        for panel in panels(dashboard):
            assert panel["datasource"]["uid"] in provisioned, panel["title"]


def test_panel_ids_are_unique(dashboards):
    for dashboard in dashboards.values():
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(ids) == len(set(ids))


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    with prometheus_server(tmp_path_factory.mktemp("prometheus")) as url:
        yield url


def test_every_query_is_valid_promql_to_a_real_prometheus(dashboards, prometheus):
    checked = 0
    for uid, title, expr in targets(dashboards):
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        # Grafana leaves `$1` (label_replace's) alone: it is no variable of the dashboard's.
        assert not re.search(r"\$(?!\d)", expr), (uid, title, expr)
        url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                assert json.load(response)["status"] == "success"
        except urllib.error.HTTPError as refused:
            pytest.fail(f"{uid} / {title}: Prometheus refused {expr!r}: {refused.read().decode()}")
        checked += 1
    assert checked >= 30
