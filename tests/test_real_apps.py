"""Real apps' telemetry on the app dashboard: a Node.js HTTP service instrumented as services are
instrumented today (tests/node_app: the OpenTelemetry JS SDK with its auto-instrumentations,
runtime and host metrics, Pino) and a Flask one under OpenTelemetry's Python zero-code setup
(tests/python_app), sending OTLP to the real collector on the stack's config, scraped by a real
Prometheus. Every query of the dashboard's HTTP and Process rows, as Grafana would send it,
returns each app's data and nothing of another job's, where its runtime reports the measure, and
nothing where it does not; so it does for recorded samples of an app that reports the seed's older
Node.js names, of Go apps (OpenTelemetry's runtime instrumentation; client_golang's registry) and
of a JVM app (the OpenTelemetry Java agent), each a real exposition of a real run. Tempo cannot run here: its span metrics are made from the
app's real spans the way Tempo 2.3's generator makes them, and the span-latency panel's
exemplars lead to the app's real traces. The Logs row's selector finds both log paths' lines.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import re
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Iterator

import pytest

from program.dashboards import GO, JVM, NODE, PROCESS_METRICS, PYTHON, SPAN_LATENCY, rendered_dashboards
from program.log_labels import PINO_LEVELS, log_labels
from program.render import TRACE_ID_FIELD_REGEX
from program.services import LOG_MOUNT
from tests.loki_push import LokiPushStandIn, parse_labels
from tests.program import ROOT
from tests.standins import StandIn
from tests.tempo_grpc import Span, TempoGrpcStandIn
from tests.tools import (
    alloy_blocks, alloy_stream_labels, built, collector_process, loopback_values, prometheus_server, rendered_files,
    run_go_template, source_file_labels, stages, unused_port, wait_until,
)
from tools.build_services import collector, node_app_modules, python_app

APP, OLDER_APP, PYTHON_APP, ENV = "shop-api", "older-app", "python-api", "local"
# Recorded expositions, by the app's job: the collector's exporter's (OpenMetrics), or the app's
# own Prometheus client's (text format, which names no job).
FIXTURES = ROOT / "tests" / "fixtures"
RECORDED = {OLDER_APP: "older-app.openmetrics.txt", "go-api": "go-otel-app.openmetrics.txt",
            "go-client-api": "go-client-app.prom.txt", "jvm-api": "jvm-app.openmetrics.txt"}
RUNTIME = {APP: NODE, OLDER_APP: NODE, PYTHON_APP: PYTHON, "go-api": GO, "go-client-api": GO, "jvm-api": JVM}
MEMORY, CPU, HEAP, GC_TIME, GC_COUNT, EVENT_LOOP, THREADS = (metric.title for metric in PROCESS_METRICS)
# The Process panels each app's instrumentation fills (read in its source, seen in its exposition):
# OpenTelemetry's Python instrumentation measures no heap and no GC time; its Go runtime
# instrumentation no CPU (its host one does), resident memory or GC; the Java agent no resident memory.
PROCESS_PANELS = {
    APP: {MEMORY, CPU, HEAP, GC_TIME, GC_COUNT, EVENT_LOOP}, OLDER_APP: {MEMORY, CPU, HEAP, GC_TIME, GC_COUNT, EVENT_LOOP},
    PYTHON_APP: {MEMORY, CPU, GC_COUNT, THREADS}, "go-api": {HEAP, THREADS},
    "go-client-api": {MEMORY, CPU, HEAP, GC_TIME, GC_COUNT, THREADS}, "jvm-api": {CPU, HEAP, GC_TIME, GC_COUNT, THREADS},
}
# The apps that report HTTP server metrics (client_golang's registry has none).
HTTP_APPS = (APP, OLDER_APP, PYTHON_APP, "go-api", "jvm-api")
# What Grafana puts in place of its variables before a query reaches Prometheus.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
REQUESTS = {"/items/7": 30, "/fail": 10, "/slow": 5}

# Tempo 2.3.0's span metrics (modules/generator/processor/spanmetrics): latency buckets
# prometheus.ExponentialBuckets(0.002, 2, 14), labels service, span_name, span_kind and
# status_code as the protobuf enums' names, one exemplar per bucket labelled traceID (the trace
# id in hex, leading zeros trimmed).
SPAN_BUCKETS = [0.002 * 2 ** n for n in range(14)]
SPAN_KINDS = {0: "SPAN_KIND_UNSPECIFIED", 1: "SPAN_KIND_INTERNAL", 2: "SPAN_KIND_SERVER", 3: "SPAN_KIND_CLIENT",
              4: "SPAN_KIND_PRODUCER", 5: "SPAN_KIND_CONSUMER"}
STATUS_CODES = {0: "STATUS_CODE_UNSET", 1: "STATUS_CODE_OK", 2: "STATUS_CODE_ERROR"}


def tempo_span_metrics(spans: list[Span]) -> str:
    """The latency histogram Tempo's generator would write for these spans, as OpenMetrics."""
    series: dict[tuple, list[Span]] = {}
    for span in spans:
        key = (span.service, span.name, SPAN_KINDS[span.kind], STATUS_CODES[span.status_code])
        series.setdefault(key, []).append(span)
    lines = ["# TYPE traces_spanmetrics_latency histogram"]
    for (service, name, kind, status), members in series.items():
        labels = f'service="{service}",span_name="{name}",span_kind="{kind}",status_code="{status}"'
        seconds = [(span.end_ns - span.start_ns) / 1e9 for span in members]
        for bound in [*SPAN_BUCKETS, math.inf]:
            inside = [(s, span) for s, span in zip(seconds, members) if s <= bound]
            line = f'traces_spanmetrics_latency_bucket{{{labels},le="{"+Inf" if bound == math.inf else bound}"}} {len(inside)}'
            if inside:
                value, span = inside[-1]
                line += f' # {{traceID="{span.trace_id.lstrip("0")}"}} {value} {span.end_ns / 1e9:.3f}'
            lines.append(line)
        lines += [f"traces_spanmetrics_latency_count{{{labels}}} {len(members)}",
                  f"traces_spanmetrics_latency_sum{{{labels}}} {sum(seconds)}"]
    return "\n".join([*lines, "# EOF", ""])


def growing(sample: str, scrape: int) -> str:
    """A recorded exposition as a running app would expose it at its `scrape`-th scrape: its
    counters and histograms grown `scrape` times what they were, gauges as they were."""
    kinds = dict(re.findall(r"^# TYPE (\S+) (\S+)$", sample, re.MULTILINE))

    def grown(match: re.Match) -> str:
        name, labels, value, rest = match.groups()
        family = next((f for f in (name, *(name.removesuffix(s) for s in ("_total", "_bucket", "_count", "_sum",
                                                                            "_created"))) if f in kinds), name)
        if kinds.get(family) in ("counter", "histogram") and not name.endswith("_created"):
            value = repr(float(value) * scrape)
        return f"{name}{labels or ''} {value}{rest}"

    return re.sub(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)(.*)$", grown, sample, flags=re.MULTILINE)


def query(prometheus: str, expr: str, path: str = "/api/v1/query", **params) -> list:
    url = f"{prometheus}{path}?" + urllib.parse.urlencode({"query": expr, **params})
    with urllib.request.urlopen(url, timeout=10) as response:
        answer = json.load(response)
    assert answer["status"] == "success", answer
    return answer["data"] if path.endswith("query_exemplars") else answer["data"]["result"]


def as_grafana_sends(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def dashboard_rows(app: str) -> dict[str, list[dict]]:
    """The app overview, as provisioned for `app`: its panels by row."""
    [overview] = [json.loads(content) for name, content in rendered_dashboards(log_labels(app, ENV)).items()
                  if name == f"trace-stack-{app}.json"]
    rows: dict[str, list[dict]] = {}
    for panel in overview["panels"]:
        if panel["type"] == "row":
            row = rows.setdefault(panel["title"], [])
        else:
            row.append(panel)
    return rows


class Traffic:
    """Requests to the app, as a user's: REQUESTS' mix of routes, 20 a second, until stopped."""

    def __init__(self, base: str):
        self.served = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(base,), daemon=True)
        self._thread.start()

    def _run(self, base: str) -> None:
        mix = [path for path, count in REQUESTS.items() for _ in range(count)]
        while not self._stop.is_set():
            for path in mix:
                try:
                    urllib.request.urlopen(base + path, timeout=5).read()
                except urllib.error.HTTPError as error:
                    assert error.code == 500 and path == "/fail"
                self.served += 1
                if self._stop.wait(0.05):
                    return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def recorded(job: str) -> tuple[str, Callable]:
    """The route a stand-in serves the job's recorded exposition on, as a running app would."""
    scrapes = itertools.count(1)
    sample = (FIXTURES / RECORDED[job]).read_text()
    content_type = OPENMETRICS if RECORDED[job].endswith(".openmetrics.txt") else PROMETHEUS_TEXT
    return f"/{job}", lambda path, query_, body: (200, content_type, growing(sample, next(scrapes)).encode())


@contextlib.contextmanager
def serving(name: str, command: list[str], env: dict, directory: Path, port: int) -> Iterator[None]:
    """The app running, and answering REQUESTS' mix, 20 a second, until the block ends."""
    with open(directory / f"{name}.out", "w") as out:
        app = subprocess.Popen(command, env={**os.environ, "PORT": str(port), "OTEL_SERVICE_NAME": name,
                                             "OTEL_RESOURCE_ATTRIBUTES": f"service.instance.id={name}-1", **env},
                               stdout=out, stderr=subprocess.STDOUT)
    traffic = None
    try:
        wait_until(f"{name} answering", lambda: _answers(f"http://127.0.0.1:{port}/items/1"),
                   why_not=lambda: (directory / f"{name}.out").read_text()[-2000:])
        traffic = Traffic(f"http://127.0.0.1:{port}")
        wait_until(f"{name}'s first requests served", lambda: traffic.served >= sum(REQUESTS.values()))
        yield
    finally:
        if traffic:
            traffic.stop()
        app.terminate()
        app.wait(timeout=15)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The collector, Prometheus, Tempo and Loki stand-ins, the Node app, and the recorded apps'
    metrics; the app has served REQUESTS."""
    directory = tmp_path_factory.mktemp("node-app")
    modules = built(node_app_modules)
    tempo, loki = TempoGrpcStandIn(keep_spans=True), LokiPushStandIn()
    exporters = StandIn({**dict(recorded(job) for job in RECORDED),
                         "/tempo": lambda *_: (200, OPENMETRICS, tempo_span_metrics(list(tempo.kept)).encode())})
    values = loopback_values({"tempo_otlp_grpc": tempo.port, "loki_http": loki.port}, raw={"appName": APP})
    target = exporters.url.removeprefix("http://")
    extra_jobs = (*({"job_name": job, "honor_labels": True, "metrics_path": f"/{job}", "scrape_interval": "1s",
                     "static_configs": [{"targets": [target]}]} for job in RECORDED),
                  {"job_name": "tempo-span-metrics", "metrics_path": "/tempo", "scrape_interval": "1s",
                   "static_configs": [{"targets": [target]}]})
    log_file = directory / "app-logs" / "api.log"
    try:
        with collector_process(built(collector), directory, values), \
                prometheus_server(directory, values=values, port=values["port"]["prometheus_http"],
                                  extra_jobs=extra_jobs) as prometheus, \
                serving(APP, ["node", str(ROOT / "tests" / "node_app" / "app.js")], {
                    "NODE_PATH": str(modules), "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_endpoint(values),
                    "APP_LOG_FILE": str(log_file), "METRIC_EXPORT_MS": "1000", "OTEL_BSP_SCHEDULE_DELAY": "500"},
                    directory, unused_port()):
            yield SimpleNamespace(prometheus=prometheus, tempo=tempo, loki=loki, log_file=log_file,
                                  app_out=directory / f"{APP}.out")
    finally:
        exporters.close()
        tempo.close()
        loki.close()


@pytest.fixture(scope="module")
def python_stack(tmp_path_factory):
    """The Python app under OpenTelemetry's zero-code setup, as its docs give it (metrics every
    second), with a collector and Prometheus of its own: through the Node app's collector, the
    Node app's process_cpu_time series were gone from its exporter (seen), the Python app's there."""
    directory = tmp_path_factory.mktemp("python-app")
    python_bin = built(python_app)
    values = loopback_values(raw={"appName": PYTHON_APP})
    with collector_process(built(collector), directory, values), \
            prometheus_server(directory, values=values, port=values["port"]["prometheus_http"]) as prometheus, \
            serving(PYTHON_APP, [str(python_bin / "opentelemetry-instrument"), str(python_bin / "python"),
                                 str(ROOT / "tests" / "python_app" / "app.py")], {
                "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_endpoint(values), "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "otlp", "OTEL_LOGS_EXPORTER": "otlp",
                "OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED": "true", "OTEL_METRIC_EXPORT_INTERVAL": "1000"},
                directory, unused_port()):
        yield SimpleNamespace(prometheus=prometheus)


def otlp_endpoint(values: dict) -> str:
    return f"http://127.0.0.1:{values['port']['collector_otlp_http']}"


def prometheus_with(request, app: str) -> str:
    """The Prometheus that scrapes the app."""
    return request.getfixturevalue("python_stack" if app == PYTHON_APP else "stack").prometheus


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def answers(prometheus: str, expr: str) -> list:
    return [series for series in query(prometheus, as_grafana_sends(expr))
            if not math.isnan(float(series["value"][1]))]


@pytest.mark.parametrize("app", HTTP_APPS)
def test_every_http_panel_shows_the_apps_data(request, app):
    """Services instrumented today (stable HTTP conventions in seconds: Node.js, Go, the JVM), the
    seed's way (http.server.duration in ms) and Python's way (in ms, its route in http_target) all
    fill every HTTP panel, with no edit to the dashboard."""
    prometheus = prometheus_with(request, app)
    panels = [panel for panel in dashboard_rows(app)["HTTP"] if "traces_spanmetrics" not in json.dumps(panel)]
    assert len(panels) >= 3
    for panel in panels:
        for target in panel["targets"]:
            wait_until(f"{app}: HTTP / {panel['title']}", lambda: answers(prometheus, target["expr"]),
                       timeout=20, why_not=lambda: as_grafana_sends(target["expr"]))


@pytest.mark.parametrize("app", RUNTIME)
def test_each_process_panel_shows_the_apps_data_where_its_runtime_reports_it_and_says_so_where_not(request, app):
    prometheus = prometheus_with(request, app)
    panels = {panel["title"]: panel for panel in dashboard_rows(app)["Process"]}
    assert PROCESS_PANELS[app] <= {metric.title for metric in PROCESS_METRICS if RUNTIME[app] in metric.runtimes}
    for title, panel in panels.items():
        [target] = panel["targets"]
        if title in PROCESS_PANELS[app]:
            found = wait_until(f"{app}: Process / {title}", lambda: answers(prometheus, target["expr"]),
                               timeout=20, why_not=lambda: as_grafana_sends(target["expr"]))
            # The stack's own Prometheus reports process_* and go_* too: it must never show as the app.
            assert {series["metric"].get("job", app) for series in found} == {app}, title
            assert len(found) == 1, f"{title}: one series per process, not {found}"
        else:
            # Empty, and it says which runtimes' apps report it.
            assert not answers(prometheus, target["expr"]), title
            [runtimes] = [metric.runtimes for metric in PROCESS_METRICS if metric.title == title]
            assert panel["fieldConfig"]["defaults"]["noValue"].endswith(f": {' and '.join(runtimes)} apps report it")
    assert query(prometheus, 'process_resident_memory_bytes{job="prometheus"}'), "no other job to tell apart"
    assert query(prometheus, 'go_goroutines{job="prometheus"}'), "no other job to tell apart"


def test_the_http_panels_tell_routes_methods_and_statuses(stack):
    [rate] = [panel for panel in dashboard_rows(APP)["HTTP"] if panel["title"] == "Request rate"]
    expected = {("GET", "/items/:id", "200"), ("GET", "/fail", "500"), ("GET", "/slow", "200")}

    def groups():
        return {(s["metric"]["method"], s["metric"].get("http_route"), s["metric"]["status"])
                for s in answers(stack.prometheus, rate["targets"][0]["expr"])}

    wait_until("a rate for each route", lambda: groups() == expected, timeout=20, why_not=lambda: str(groups()))
    [share] = [panel for panel in dashboard_rows(APP)["HTTP"] if panel["title"] == "Error rate (5xx)"]

    def share_of_errors():
        [value] = answers(stack.prometheus, share["targets"][0]["expr"])
        return float(value["value"][1]) or None

    # 10 of each 45 requests fail; the share is 0 until two scrapes have seen one.
    assert 0 < wait_until("5xx share above 0", share_of_errors, timeout=20) < 0.5


def test_the_span_latency_panel_carries_exemplars_that_open_the_apps_traces(stack):
    [panel] = [panel for panel in dashboard_rows(APP)["HTTP"] if SPAN_LATENCY in json.dumps(panel)]
    assert all(target["exemplar"] for target in panel["targets"])
    for target in panel["targets"]:
        wait_until(f"span latency: {target['expr']}", lambda: answers(stack.prometheus, target["expr"]), timeout=20)
    now = time.time()
    exemplars = wait_until("exemplars for the span latency panel", lambda: query(
        stack.prometheus, as_grafana_sends(panel["targets"][-1]["expr"]), "/api/v1/query_exemplars",
        start=now - 300, end=now + 60), timeout=20)
    trace_ids = {label["labels"]["traceID"] for group in exemplars for label in group["exemplars"]}
    app_traces = {span.trace_id.lstrip("0") for span in stack.tempo.kept if span.service == APP}
    assert trace_ids and trace_ids <= app_traces
    assert {group["seriesLabels"]["service"] for group in exemplars} == {APP}


def test_both_log_paths_lines_are_what_the_logs_row_selects_and_link_to_the_apps_traces(stack, tmp_path):
    [by_level, lines] = dashboard_rows(APP)["Logs"]
    selector = parse_labels(lines["targets"][0]["expr"])
    assert by_level["targets"][0]["expr"].startswith("sum by (level) (count_over_time({")
    # OpenTelemetry log records: the Pino instrumentation sends each line through the collector.
    records = wait_until("the app's log records in Loki", lambda: [entry for entry in stack.loki.entries
                                                                    if "request failed" in entry.line])
    for entry in stack.loki.entries:
        assert selector.items() <= entry.label_dict.items() and entry.label_dict.get("level") in PINO_LEVELS.values()
    assert {entry.label_dict["level"] for entry in records} == {"error"}
    assert_traces_reach_tempo(stack, {re.search(TRACE_ID_FIELD_REGEX, entry.line)[1] for entry in records})
    # Pino's own lines in the file Alloy tails, labelled as the rendered pipeline labels them.
    pipeline = stages(alloy_blocks(rendered_files("alloy", {"appName": APP})["/etc/alloy/config.alloy"],
                                   tmp_path)[("loki.process", "pino")])
    levels = dict(zip(map(str, PINO_LEVELS), run_go_template(dict(pipeline)["stage.template"]["template"],
                                                              list(map(str, PINO_LEVELS)))))
    pino_lines = [json.loads(line) for line in stack.log_file.read_text().splitlines()]
    assert len(pino_lines) >= sum(REQUESTS.values())
    for line in pino_lines:
        labels = alloy_stream_labels(pipeline, source_file_labels(f"{LOG_MOUNT}/api.log"),
                                     {"level": levels[str(line["level"])]})
        assert selector.items() <= labels.items()
    linked = {re.search(TRACE_ID_FIELD_REGEX, json.dumps(line))[1] for line in pino_lines if "trace_id" in line}
    assert len(linked) >= sum(REQUESTS.values())
    assert_traces_reach_tempo(stack, linked)


def assert_traces_reach_tempo(stack, trace_ids: set[str]) -> None:
    """Each is a trace of the app's in Tempo (a line's span arrives with the SDK's next batch)."""
    def missing():
        return trace_ids - {span.trace_id for span in stack.tempo.kept if span.service == APP}

    wait_until("the lines' traces in Tempo", lambda: not missing(), why_not=lambda: f"{len(missing())} not there")
