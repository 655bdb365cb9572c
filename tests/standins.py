"""Small local stand-ins for the stack's HTTP endpoints, each on a loopback port of its own.

The smoke stand-ins are fed only by what the OpenTelemetry SDK really sends: the collector
decodes the OTLP protobuf it receives, and Tempo, Prometheus and Loki answer from that; Loki also
reads the log directory as Alloy would.
"""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import parse_qs, urlsplit

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

Reply = tuple[int, str, bytes]  # status, content type, body
Route = Callable[[str, dict, bytes], Reply]


def text(status: int, body: str) -> Reply:
    return status, "text/plain", body.encode()


def as_json(status: int, body) -> Reply:
    return status, "application/json", json.dumps(body).encode()


class StandIn:
    """An HTTP server on a loopback port of its own (bound as port 0, or `port`), answering
    `routes` (path regex -> handler) after `delay` seconds each."""

    def __init__(self, routes: dict[str, Route], delay: float = 0.0, port: int = 0):
        self.routes, self.delay = routes, delay
        self.seen: list[tuple[str, dict]] = []  # every request's path and headers
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, body: bytes):
                time.sleep(stand_in.delay)
                parts = urlsplit(self.path)
                stand_in.seen.append((parts.path, dict(self.headers)))
                query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
                status, content_type, payload = stand_in.reply(parts.path, query, body)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self):
                self._answer(b"")

            def do_POST(self):
                self._answer(self.rfile.read(int(self.headers.get("Content-Length", 0))))

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads, self.server.block_on_close = True, False
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def reply(self, path: str, query: dict, body: bytes) -> Reply:
        for pattern, route in self.routes.items():
            if re.fullmatch(pattern, path):
                return route(path, query, body)
        return text(404, "404 page not found")

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def ready_text(body: str = "ready") -> Route:
    return lambda path, query, body_: text(200, body)


# --- each service as its source at the pinned tag answers ----------------------------------------

PINNED = {"prometheus": "2.48.0", "tempo": "2.3.0", "loki": "2.9.0", "otel-collector": "0.91.0", "alloy": "1.5.1",
          "grafana": "12.3.0"}


def grafana_health(database: str = "ok", version: str = PINNED["grafana"]) -> Route:
    return lambda path, query, body: as_json(200 if database == "ok" else 503, {
        "database": database, "version": version, "commit": "20051fb1fc604fc54aae76356da1c14612af41d0"})


def grafana_datasources(failing: Optional[dict[str, str]] = None) -> dict[str, Route]:
    """Grafana's datasource health API and its proxy to Tempo's /api/echo (pkg/api/datasources.go),
    with anonymous access on: 200 {"status": "OK", "message"}, or 400 {"status": "ERROR",
    "message"} for a failing datasource's uid."""
    failing = failing or {}

    def health(path, query, body):
        uid = path.split("/")[4]
        if uid in failing:
            return as_json(400, {"status": "ERROR", "message": failing[uid]})
        message = {"prometheus": "Successfully queried the Prometheus API.",
                   "loki": "Data source successfully connected."}.get(uid, "")
        return as_json(200, {"status": "OK", "message": message})

    def echo(path, query, body):
        return text(502, "dial tcp: lookup tempo: no such host") if "tempo" in failing else text(200, "echo")

    return {r"/api/datasources/uid/[\w-]+/health": health, "/api/datasources/proxy/uid/tempo/api/echo": echo}


def build_info(service: str, version: str) -> dict[str, Route]:
    """The route a service says its version at, answering as its source does."""
    if service == "prometheus":  # web/api/v1/api.go: an envelope
        return {"/api/v1/status/buildinfo": lambda *_: as_json(200, {"status": "success", "data": {
            "version": version, "revision": "6d80b30990bc297d95b5c844e118c4011fad8054", "branch": "HEAD",
            "buildUser": "root@buildkitsandbox", "buildDate": "20231116-04:35:21", "goVersion": "go1.21.4"}})}
    if service in ("tempo", "loki"):  # the same struct, bare; Loki's goVersion is always empty
        path = "/api/status/buildinfo" if service == "tempo" else "/loki/api/v1/status/buildinfo"
        return {path: lambda *_: as_json(200, {"version": version, "revision": "bedecd2", "branch": "HEAD",
                                               "buildUser": "", "buildDate": "",
                                               "goVersion": "go1.21.3" if service == "tempo" else ""})}
    if service == "alloy":
        return {"/metrics": lambda *_: text(200, f'# TYPE alloy_build_info gauge\nalloy_build_info{{branch="HEAD",'
                                                 f'goarch="amd64",goos="linux",goversion="go1.22.7",revision="b0a7c9e",'
                                                 f'tags="netgo",version="v{version}"}} 1\n')}
    return {}


# When the stand-in collector's process started: its health check and its own metrics say so.
COLLECTOR_STARTED = time.time() - 60


def collector_health() -> Route:
    """The collector's health_check extension (jaeger's handler), ready."""
    up_since = datetime.fromtimestamp(COLLECTOR_STARTED, timezone.utc).isoformat().replace("+00:00", "Z")
    return lambda *_: as_json(200, {"status": "Server available", "upSince": up_since, "uptime": "1m0s"})


def prometheus_answering(collector_version: str = PINNED["otel-collector"]) -> Route:
    """Prometheus' /api/v1/query, holding the collector's own metrics (service_version on every
    series) and no loss counters."""
    def query(path, query_, body):
        result = [{"metric": {"service_version": collector_version}, "value": [time.time(), str(COLLECTOR_STARTED)]}] \
            if "otelcol_process_uptime" in query_.get("query", "") else []
        return as_json(200, {"status": "success", "data": {"resultType": "vector", "result": result}})
    return query


def healthy_stack(start: Callable[[dict], str], versions: Optional[dict[str, str]] = None, **routes) -> dict[str, str]:
    """Stand-ins for the six services, each answering as its source does at the pinned tag (or at
    `versions`); `routes` add to or replace a service's routes. Returns the outputs' URLs."""
    versions = {**PINNED, **(versions or {})}
    answers = {
        "grafana_url": {"/api/health": grafana_health(version=versions["grafana"]), **grafana_datasources()},
        "prometheus_url": {"/-/ready": ready_text("Prometheus Server is Ready."),
                           "/api/v1/query": prometheus_answering(versions["otel-collector"]),
                           **build_info("prometheus", versions["prometheus"])},
        "tempo_url": {"/ready": ready_text(), **build_info("tempo", versions["tempo"])},
        "loki_url": {"/ready": ready_text(), **build_info("loki", versions["loki"])},
        "collector_health_url": {"/": collector_health()},
        "alloy_url": {"/-/ready": ready_text("Alloy is ready."), **build_info("alloy", versions["alloy"])},
    }
    return {output: start({**answers[output], **routes.get(output, {})}) for output in answers}


# --- the smoke check's data path ---------------------------------------------------------------


class Telemetry:
    """What the collector stand-in received, decoded."""

    def __init__(self):
        self.trace_ids: set[str] = set()
        # Prometheus name -> {"job": service.name, "value": float, "exemplar_trace_ids": set}
        self.series: dict[str, dict] = {}
        self.log_records: list = []  # opentelemetry.proto.logs.v1.LogRecord

    def receive_traces(self, body: bytes) -> None:
        request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                self.trace_ids.update(span.trace_id.hex() for span in scope_spans.spans)

    def receive_metrics(self, body: bytes) -> None:
        request = metrics_service_pb2.ExportMetricsServiceRequest.FromString(body)
        for resource_metrics in request.resource_metrics:
            job = next(a.value.string_value for a in resource_metrics.resource.attributes if a.key == "service.name")
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    self._record(job, metric)

    def receive_logs(self, body: bytes) -> None:
        request = logs_service_pb2.ExportLogsServiceRequest.FromString(body)
        for resource_logs in request.resource_logs:
            for scope_logs in resource_logs.scope_logs:
                self.log_records.extend(scope_logs.log_records)

    def _record(self, job: str, metric) -> None:
        # Written out for the two kinds the smoke check sends, as collector 0.91 names them.
        base = metric.name.replace(".", "_")
        if metric.HasField("sum") and metric.sum.is_monotonic:
            points, name = metric.sum.data_points, f"{base}_total"
            value = sum(point.as_double or point.as_int for point in points)
        elif metric.HasField("histogram"):
            points = metric.histogram.data_points
            name = f"{base}_milliseconds_bucket" if metric.unit == "ms" else f"{base}_bucket"
            value = sum(point.count for point in points)
        else:
            return
        exemplars = {exemplar.trace_id.hex() for point in points for exemplar in point.exemplars}
        self.series[name] = {"job": job, "value": value, "exemplar_trace_ids": exemplars}


def collector_routes(telemetry: Telemetry) -> dict[str, Route]:
    def traces(path, query, body):
        telemetry.receive_traces(body)
        return 200, "application/x-protobuf", trace_service_pb2.ExportTraceServiceResponse().SerializeToString()

    def metrics(path, query, body):
        telemetry.receive_metrics(body)
        return 200, "application/x-protobuf", metrics_service_pb2.ExportMetricsServiceResponse().SerializeToString()

    def logs(path, query, body):
        telemetry.receive_logs(body)
        return 200, "application/x-protobuf", logs_service_pb2.ExportLogsServiceResponse().SerializeToString()

    return {"/v1/traces": traces, "/v1/metrics": metrics, "/v1/logs": logs, "/": collector_health()}


def tempo_routes(telemetry: Telemetry) -> dict[str, Route]:
    def trace(path, query, body):
        trace_id = path.rsplit("/", 1)[1]
        if trace_id in telemetry.trace_ids:
            return as_json(200, {"batches": [{"traceId": trace_id}]})
        return text(404, "trace not found")

    return {"/ready": ready_text(), r"/api/traces/[0-9a-f]+": trace}


_SELECTOR = re.compile(r'(?P<name>\w+)\{job="(?P<job>[^"]+)"\}')


def prometheus_routes(telemetry: Telemetry) -> dict[str, Route]:
    def matching(query) -> Optional[tuple[str, dict]]:
        selector = _SELECTOR.fullmatch(query.get("query", ""))
        series = selector and telemetry.series.get(selector["name"])
        return (selector["name"], series) if series and series["job"] == selector["job"] else None

    collector_version = prometheus_answering()

    def instant(path, query, body):
        if "otelcol_" in query.get("query", ""):
            return collector_version(path, query, body)
        found = matching(query)
        result = [{"metric": {"__name__": found[0], "job": found[1]["job"]}, "value": [time.time(), str(found[1]["value"])]}] \
            if found else []
        return as_json(200, {"status": "success", "data": {"resultType": "vector", "result": result}})

    def exemplars(path, query, body):
        found = matching(query)
        data = [{"seriesLabels": {"__name__": found[0], "job": found[1]["job"]},
                 "exemplars": [{"labels": {"trace_id": trace_id}, "value": "42", "timestamp": time.time()}
                               for trace_id in sorted(found[1]["exemplar_trace_ids"])]}] if found else []
        return as_json(200, {"status": "success", "data": data})

    return {"/-/ready": ready_text(), "/api/v1/query": instant, "/api/v1/query_exemplars": exemplars}


_LINE_FILTER = re.compile(r'\{job=~"\.\+"\} \|= "(?P<needle>[^"]+)"')


def loki_routes(log_dir: Path, telemetry: Telemetry, levels: dict[int, str], labels: dict[str, str]) -> dict[str, Route]:
    """Loki with Alloy and the collector in front: the lines of log_dir/*.log, labelled as the
    Alloy pipeline does, and the collector's log records, labelled and written as its loki
    exporter does (tests/test_collector_real.py shows the real one doing so)."""
    severity_levels = list(levels.values())

    def pino_streams(needle: str) -> list[dict]:
        streams = []
        for file in sorted(log_dir.glob("*.log")):
            for line in file.read_text().splitlines():
                if needle in line:
                    level = json.loads(line).get("level")
                    stream = {**labels, "filename": str(file), "level": levels.get(level, str(level))}
                    streams.append({"stream": stream, "values": [[str(time.time_ns()), line]]})
        return streams

    def exporter_streams(needle: str) -> list[dict]:
        streams = []
        for record in telemetry.log_records:
            line = json.dumps({"body": record.body.string_value, "traceid": record.trace_id.hex(),
                               "severity": record.severity_text}, separators=(",", ":"))
            if needle in line:
                stream = {**labels, "level": severity_levels[(record.severity_number - 1) // 4]}
                streams.append({"stream": stream, "values": [[str(record.time_unix_nano), line]]})
        return streams

    def query_range(path, query, body):
        selector = _LINE_FILTER.fullmatch(query.get("query", ""))
        streams = []
        if selector:
            streams = pino_streams(selector["needle"]) + exporter_streams(selector["needle"])
        return as_json(200, {"status": "success", "data": {"resultType": "streams", "result": streams}})

    return {"/ready": ready_text(), "/loki/api/v1/query_range": query_range}


def loki_whose_queries_hang(lines_received: int) -> dict[str, Route]:
    """Loki 2.9 as it was on a scheduler looked up too early: ready, taking pushes, and never
    answering a query."""
    def hang(path, query, body):
        time.sleep(60)
        return text(504, "gave up")

    metrics = f'loki_distributor_lines_received_total{{tenant="fake"}} {lines_received}\n'
    return {"/ready": ready_text(), "/loki/api/v1/query_range": hang, "/metrics": lambda *_: text(200, metrics)}
