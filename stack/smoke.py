"""`check --smoke`: send real telemetry and follow it to where Grafana will look for it.

A trace, with a counter, a histogram and a log record made inside its span (so they carry its
trace id), goes to the collector with the OpenTelemetry SDK; a Pino line with the same trace id
is appended to a file in the log directory, for Alloy. Then each hop is polled until it has the
data: both log lines are found in Loki by the one query Grafana's trace-to-logs link runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Awaitable, Callable

import httpx
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, LogRecordExportResult, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricExportResult
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_fixed

from program.metric_names import prometheus_metric_name
from program.log_labels import PINO_LEVELS, TRACE_ID_METADATA

if TYPE_CHECKING:
    from .logs import Sink

SMOKE_SERVICE = "trace-stack-smoke"
COUNTER = ("trace_stack.smoke.runs", "")
HISTOGRAM = ("trace_stack.smoke.duration", "ms")
LOG_FILE = "trace-stack-smoke.log"
REQUIRED_OUTPUTS = ("otlp_http_endpoint", "tempo_url", "prometheus_url", "loki_url")
LOG_MESSAGE = "trace-stack smoke check"
# A Loki query is one request: one that takes longer than this is not coming.
LOKI_QUERY_TIMEOUT_SECONDS = 5.0

class HopFailed(Exception):
    def __init__(self, hop: str, reason: str):
        super().__init__(f"{hop}: {reason}")
        self.hop = hop


@dataclass
class Hop:
    name: str
    arrived: bool
    seconds: float
    detail: str

    def line(self) -> str:
        state = "arrived" if self.arrived else "MISSING"
        return f"{self.name:<33} {state:<8} {self.seconds:6.1f}s  {self.detail}"


def send_telemetry(otlp_http_endpoint: str, timeout: float = 10.0) -> str:
    """Send one trace, and metrics and a log record made inside it; returns the trace id (32 hex digits)."""
    resource = Resource.create({"service.name": SMOKE_SERVICE})
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
    meter = meter_provider.get_meter("trace-stack.check")
    counter = meter.create_counter(COUNTER[0], unit=COUNTER[1], description="trace-stack smoke checks")
    histogram = meter.create_histogram(HISTOGRAM[0], unit=HISTOGRAM[1], description="trace-stack smoke check time")
    records = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(records))

    with tracer_provider.get_tracer("trace-stack.check").start_as_current_span("trace-stack smoke check") as span:
        counter.add(1, {"check": "smoke"})
        histogram.record(42.0, {"check": "smoke"})
        logger_provider.get_logger("trace-stack.check").emit(
            severity_number=SeverityNumber.INFO, severity_text="INFO", body=LOG_MESSAGE)
        trace_id = format(span.get_span_context().trace_id, "032x")

    # The SDK's exporters report failure instead of raising: export by hand to see the answer.
    endpoint = otlp_http_endpoint.rstrip("/")
    if OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces", timeout=timeout).export(
            spans.get_finished_spans()) != SpanExportResult.SUCCESS:
        raise HopFailed("collector accepts the trace", f"OTLP/HTTP export to {endpoint}/v1/traces failed")
    if OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics", timeout=timeout).export(
            reader.get_metrics_data()) != MetricExportResult.SUCCESS:
        raise HopFailed("collector accepts the metrics", f"OTLP/HTTP export to {endpoint}/v1/metrics failed")
    if OTLPLogExporter(endpoint=f"{endpoint}/v1/logs", timeout=timeout).export(
            records.get_finished_logs()) != LogRecordExportResult.SUCCESS:
        raise HopFailed("collector accepts the log record", f"OTLP/HTTP export to {endpoint}/v1/logs failed")
    tracer_provider.shutdown()
    meter_provider.shutdown()
    logger_provider.shutdown()
    return trace_id


def write_log_line(sink: "Sink", trace_id: str) -> str:
    """Send a Pino-style line carrying the trace id where the app's piped stdout goes; says where."""
    line = {"level": 30, "time": int(time.time() * 1000), "pid": os.getpid(), "hostname": socket.gethostname(),
            "traceId": trace_id, "msg": LOG_MESSAGE}
    return sink.write(json.dumps(line, separators=(",", ":")))


class _NotYet(Exception):
    pass


class _WillNotAnswer(Exception):
    """Waiting longer will not help: the hop has failed."""


async def _poll(name: str, started: float, timeout: float, look: Callable[[], Awaitable[str]]) -> Hop:
    last = "never answered"
    try:
        async for attempt in AsyncRetrying(stop=stop_after_delay(timeout), wait=wait_fixed(1.0),
                                           retry=retry_if_exception_type(_NotYet), reraise=True):
            with attempt:
                try:
                    detail = await look()
                except httpx.HTTPError as error:
                    last = f"{type(error).__name__}: {error}"
                    raise _NotYet() from None
                except _NotYet as not_yet:
                    last = str(not_yet) or last
                    raise
        return Hop(name, True, time.monotonic() - started, detail)
    except _NotYet:
        return Hop(name, False, time.monotonic() - started, f"not there after {timeout:g}s: {last}")
    except _WillNotAnswer as failed:
        return Hop(name, False, time.monotonic() - started, str(failed))


async def follow(outputs: dict[str, str], trace_id: str, sent_at: float, timeout: float,
                 log_line_written: bool = True) -> list[Hop]:
    """Poll Tempo, Prometheus and Loki at once until each has the smoke check's data."""
    tempo, prometheus, loki = (outputs[key].rstrip("/") for key in ("tempo_url", "prometheus_url", "loki_url"))
    counter = prometheus_metric_name(*COUNTER, monotonic_sum=True)
    buckets = prometheus_metric_name(*HISTOGRAM) + "_bucket"
    level = PINO_LEVELS[30]

    async with httpx.AsyncClient(timeout=5.0) as client:

        async def trace_in_tempo() -> str:
            response = await client.get(f"{tempo}/api/traces/{trace_id}")
            if response.status_code != 200:
                raise _NotYet(f"HTTP {response.status_code}")
            return f"{tempo}/api/traces/{trace_id}"

        async def metric_in_prometheus() -> str:
            response = await client.get(f"{prometheus}/api/v1/query",
                                        params={"query": f'{counter}{{job="{SMOKE_SERVICE}"}}'})
            series = response.json().get("data", {}).get("result", [])
            if not series:
                raise _NotYet(f"no {counter} series yet")
            return f"{counter} = {series[0]['value'][1]}"

        async def exemplar_in_prometheus() -> str:
            now = time.time()
            response = await client.get(f"{prometheus}/api/v1/query_exemplars", params={
                "query": f'{buckets}{{job="{SMOKE_SERVICE}"}}', "start": now - 3600, "end": now + 60})
            for series in response.json().get("data", []):
                for exemplar in series.get("exemplars", []):
                    labels = exemplar.get("labels", {})
                    if trace_id in (labels.get("trace_id"), labels.get("traceID")):
                        return f"{buckets} exemplar {labels}"
            raise _NotYet(f"no exemplar with trace id {trace_id} on {buckets} yet")

        async def lines_in_loki(pipeline: str) -> list[tuple[dict, dict]]:
            """(labels, line as JSON, or {} if it is not) of every line `pipeline` keeps, whichever app it is."""
            now_ns = time.time_ns()
            try:
                response = await client.get(f"{loki}/loki/api/v1/query_range", timeout=LOKI_QUERY_TIMEOUT_SECONDS, params={
                    "query": f'{{job=~".+"}} {pipeline}', "start": now_ns - 3600 * 10**9,
                    "end": now_ns + 60 * 10**9, "limit": 10})
            except httpx.TimeoutException:
                raise _WillNotAnswer(await _loki_query_hangs(client, loki)) from None
            found = []
            for stream in response.json().get("data", {}).get("result", []):
                for _, line in stream.get("values", []):
                    try:
                        document = json.loads(line)
                    except ValueError:
                        document = {}
                    found.append((stream.get("stream", {}), document if isinstance(document, dict) else {}))
            return found

        def log_in_loki(source: str, trace_id_field: str) -> Callable[[], Awaitable[str]]:
            """Where the line's JSON holds the trace id under trace_id_field; with none, beside the line
            (Loki 3 keeps an OTel record's as structured metadata, answered among the stream's labels)."""
            async def look() -> str:
                if trace_id_field:
                    found = await lines_in_loki(f'|= "{trace_id}"')
                else:
                    found = await lines_in_loki(f'| {TRACE_ID_METADATA}="{trace_id}"')
                lines = [labels for labels, line in found
                         if (line.get(trace_id_field) if trace_id_field else labels.get(TRACE_ID_METADATA)) == trace_id]
                if not lines:
                    raise _NotYet(f"no line from {source} with the trace id yet")
                if lines[0].get("level") != level:
                    raise _NotYet(f"a line from {source} arrived labelled {lines[0]}, not level={level!r}")
                return f"line labelled {lines[0]}"
            return look

        return list(await asyncio.gather(
            _poll("Tempo has the trace", sent_at, timeout, trace_in_tempo),
            _poll("Prometheus has the metric", sent_at, timeout, metric_in_prometheus),
            _poll("Prometheus has the exemplar", sent_at, timeout, exemplar_in_prometheus),
            # The loki exporter (seed) writes the record as JSON with the trace id under "traceid";
            # into Loki's OTLP endpoint (current) the trace id goes beside the line.
            _poll("Loki has the OTel log record", sent_at, timeout, _first_of(
                log_in_loki("the collector", "traceid"), log_in_loki("the collector", ""))),
            _poll("Loki has the Pino log line", sent_at, timeout, log_in_loki("Alloy", "traceId"))
            if log_line_written else _not_sent("Loki has the Pino log line", sent_at),
        ))


def _first_of(*looks: Callable[[], Awaitable[str]]) -> Callable[[], Awaitable[str]]:
    """A look that finds what the first of `looks` that finds it finds; else the last one's why not."""
    async def look() -> str:
        for each in looks[:-1]:
            with contextlib.suppress(_NotYet):
                return await each()
        return await looks[-1]()
    return look


async def _not_sent(name: str, sent_at: float) -> Hop:
    return Hop(name, False, time.monotonic() - sent_at, "not looked for: the line was not written")


async def _loki_query_hangs(client: httpx.AsyncClient, loki: str) -> str:
    """Why a Loki query that never answered failed: a Loki whose pushes work but whose queries
    hang is a broken query path, not a line still on its way."""
    hangs = f"its query API does not answer (no reply within {LOKI_QUERY_TIMEOUT_SECONDS:g}s)"
    try:
        metrics = (await client.get(f"{loki}/metrics", timeout=LOKI_QUERY_TIMEOUT_SECONDS)).text
    except httpx.HTTPError:
        return f"Loki: {hangs}"
    received = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                   if line.startswith("loki_distributor_lines_received_total"))
    if received:
        return f"Loki accepted the push ({received:g} lines received) but {hangs}"
    return f"Loki: {hangs}"
