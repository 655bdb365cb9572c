"""Benchmark: a developer's load test through the stack's own collector, with nothing lost.

The real collector 0.91.0 (tools/build_services) runs on the stack's rendered config. The
OpenTelemetry SDK sends it traces (one span per trace), log records of 500 bytes and an app's
metrics exported every second, each signal from its own process at a steady rate. Downstream,
stand-ins count what arrives: an OTLP gRPC trace receiver where Tempo would be, the Loki push
stand-in (it decodes every push), and a real Prometheus scraping the collector.

    venv/bin/python -m bench.load                            # 5,000 spans/s and log records/s for 10 s
    venv/bin/python -m bench.load --rate 500 --seconds 5     # what CI runs
    venv/bin/python -m bench.load --find-max                 # raise the rate until something is lost

Per signal it reports what was sent, what the collector accepted, refused and exported (its own
counters), what arrived downstream, and what was lost; then the collector's peak memory against
its container's limit. Exit 1 when anything was lost.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import re
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from program.services import SERVICES_BY_NAME
from program.settings import DEFAULTS
from tests.loki_push import LokiPushStandIn
from tests.tempo_grpc import TempoGrpcStandIn
from tests.tools import collector_process, loopback_values, prometheus_server
from tools.build_services import collector

RESOURCE = Resource.create({"service.name": "bench"})
LINE_BYTES = 500
TICKS_PER_SECOND = 20
METRIC_ROUTES = 10  # one app's handful of series: a counter and a histogram per route
COUNTER_SERIES = "bench_requests_total"
DRAIN_SECONDS = 60
FIND_MAX_RATES = (1_000, 2_000, 5_000, 10_000, 20_000)
# The collector's own counters, per signal, as 0.91.0 names them on its telemetry port.
ITEMS = {"traces": "spans", "logs": "log_records", "metrics": "metric_points"}


# --- senders: one process per signal, so the three do not share one interpreter's lock ---------


def _paced(rate: int, seconds: float) -> Iterator[int]:
    """How many items to make at each tick, TICKS_PER_SECOND times a second, for `seconds`."""
    started = time.monotonic()
    per_tick, made = rate / TICKS_PER_SECOND, 0.0
    for tick in range(int(seconds * TICKS_PER_SECOND)):
        due = started + tick / TICKS_PER_SECOND
        time.sleep(max(0.0, due - time.monotonic()))
        made += per_tick
        count = int(made)
        made -= count
        yield count


def _send_paced(name: str, rate: int, seconds: float, make_one, provider, results) -> None:
    """Call make_one(n) `rate` times a second for `seconds`, then flush the SDK's provider."""
    started, sent = time.monotonic(), 0
    for count in _paced(rate, seconds):
        for _ in range(count):
            make_one(sent)
            sent += 1
    elapsed = time.monotonic() - started
    provider.shutdown()  # exports what is still queued
    results.put((name, sent, elapsed))


def _sdk_batching(rate: int, seconds: float) -> dict:
    # A queue that holds the whole run: the SDK itself must drop nothing.
    return {"max_queue_size": int(rate * seconds) + 1, "schedule_delay_millis": 200, "max_export_batch_size": 1000}


def send_traces(endpoint: str, rate: int, seconds: float, results) -> None:
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces"),
                                                   **_sdk_batching(rate, seconds)))
    tracer = provider.get_tracer("bench")

    def span(number: int) -> None:
        tracer.start_span("GET /bench", attributes={"http.route": "/bench", "http.status_code": 200}).end()

    _send_paced("traces", rate, seconds, span, provider, results)


def send_logs(endpoint: str, rate: int, seconds: float, results) -> None:
    provider = LoggerProvider(resource=RESOURCE)
    provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=f"{endpoint}/v1/logs"),
                                                              **_sdk_batching(rate, seconds)))
    logger = provider.get_logger("bench")

    def record(number: int) -> None:
        body = f"bench line {number:08d} " + "x" * (LINE_BYTES - 20)
        logger.emit(severity_number=SeverityNumber.INFO, severity_text="INFO", body=body)

    _send_paced("logs", rate, seconds, record, provider, results)


def send_metrics(endpoint: str, rate: int, seconds: float, results) -> None:
    reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics"),
                                           export_interval_millis=1000)
    provider = MeterProvider(resource=RESOURCE, metric_readers=[reader])
    meter = provider.get_meter("bench")
    requests = meter.create_counter("bench.requests")
    duration = meter.create_histogram("bench.duration", unit="ms")

    def measure(number: int) -> None:
        route = {"route": f"/r{number % METRIC_ROUTES}"}
        requests.add(1, route)
        duration.record(number % 250, route)

    _send_paced("metrics", rate, seconds, measure, provider, results)


# --- measuring --------------------------------------------------------------------------------


@dataclass
class Signal:
    name: str
    sent: int = 0
    seconds: float = 0.0
    received: int = 0
    collector: dict[str, float] = field(default_factory=dict)  # accepted, refused, exported

    @property
    def lost(self) -> int:
        return self.sent - self.received

    def row(self) -> str:
        rate = self.sent / self.seconds if self.seconds else 0
        c = self.collector
        return (f"{self.name:<8} {self.sent:>9} {rate:>9.0f} {c.get('accepted', 0):>9.0f} {c.get('refused', 0):>8.0f} "
                f"{c.get('exported', 0):>9.0f} {self.received:>9} {self.lost:>6}")


HEADER = f"{'signal':<8} {'sent':>9} {'sent/s':>9} {'accepted':>9} {'refused':>8} {'exported':>9} {'received':>9} {'lost':>6}"


def collector_counters(telemetry_url: str) -> dict[str, float]:
    """The collector's own counters, summed over their labels."""
    with urllib.request.urlopen(telemetry_url, timeout=5) as response:
        text = response.read().decode()
    totals: dict[str, float] = {}
    for match in re.finditer(r"^(otelcol_[a-z_]+)(?:\{[^}]*\})? ([0-9.e+]+)$", text, re.MULTILINE):
        totals[match[1]] = totals.get(match[1], 0.0) + float(match[2])
    return totals


def prometheus_value(prometheus: str, query: str) -> float:
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=5) as response:
        result = json.load(response)["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


def peak_memory_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status)[1]) / 1024


@contextlib.contextmanager
def the_stack(directory: Path) -> Iterator[tuple[dict, TempoGrpcStandIn, LokiPushStandIn, str, int]]:
    tempo, loki = TempoGrpcStandIn(), LokiPushStandIn()
    values = loopback_values({"tempo_otlp_grpc": tempo.port, "loki_http": loki.port})
    try:
        with collector_process(collector(), directory, values) as process:
            with prometheus_server(directory, values=values, port=values["port"]["prometheus_http"]) as prometheus:
                yield values, tempo, loki, prometheus, process.pid
    finally:
        tempo.close()
        loki.close()


def run(rate: int, seconds: float) -> tuple[list[Signal], float]:
    """One run at `rate` items/s per signal; the signals and the collector's peak memory (MiB)."""
    with tempfile.TemporaryDirectory() as directory, the_stack(Path(directory)) as (values, tempo, loki, prometheus, pid):
        endpoint = f"http://127.0.0.1:{values['port']['collector_otlp_http']}"
        telemetry = f"http://127.0.0.1:{values['port']['collector_telemetry']}/metrics"
        context = multiprocessing.get_context("spawn")
        results = context.Queue()
        senders = [context.Process(target=target, args=(endpoint, rate, seconds, results))
                   for target in (send_traces, send_logs, send_metrics)]
        for sender in senders:
            sender.start()
        signals = {}
        for _ in senders:
            name, sent, elapsed = results.get(timeout=seconds + DRAIN_SECONDS)
            signals[name] = Signal(name, sent, elapsed)
        for sender in senders:
            sender.join()

        def arrived() -> dict[str, int]:
            return {"traces": tempo.spans, "logs": len(loki.entries),
                    "metrics": int(prometheus_value(prometheus, f"sum({COUNTER_SERIES})"))}

        deadline, last, steady_since = time.monotonic() + DRAIN_SECONDS, None, time.monotonic()
        while time.monotonic() < deadline:
            now = arrived()
            if all(now[name] >= signal.sent for name, signal in signals.items()):
                break
            if now != last:
                last, steady_since = now, time.monotonic()
            elif time.monotonic() - steady_since > 10:
                break  # nothing more is coming
            time.sleep(0.5)
        for name, count in arrived().items():
            signals[name].received = count
        counters = collector_counters(telemetry)
        for name, signal in signals.items():
            items = ITEMS[name]
            signal.collector = {"accepted": counters.get(f"otelcol_receiver_accepted_{items}", 0),
                                "refused": counters.get(f"otelcol_receiver_refused_{items}", 0),
                                "exported": counters.get(f"otelcol_exporter_sent_{items}", 0)}
        return [signals[name] for name in ITEMS], peak_memory_mib(pid)


def report(rate: int, signals: list[Signal], peak_mib: float) -> None:
    limit = DEFAULTS[SERVICES_BY_NAME["otel-collector"].memory_key]
    print(f"\nrate asked: {rate}/s per signal (traces: spans, logs: records of {LINE_BYTES} bytes, "
          f"metrics: counter increments, exported every 1s, over {METRIC_ROUTES} routes)")
    print(HEADER)
    for signal in signals:
        print(signal.row())
    print(f"collector peak memory (VmHWM): {peak_mib:.0f} MiB of its container's {limit} MiB")
    print("(metrics: sent and received count the counter's increments, as the app made them and as "
          "Prometheus reads them; accepted/exported count data points)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=5_000, help="items per second per signal (default 5000)")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to send (default 10)")
    parser.add_argument("--find-max", action="store_true", help=f"run at {FIND_MAX_RATES} until something is lost")
    args = parser.parse_args(argv)
    print("building the collector, or taking it from the cache...", flush=True)
    collector()
    if not args.find_max:
        signals, peak = run(args.rate, args.seconds)
        report(args.rate, signals, peak)
        lost = [signal.name for signal in signals if signal.lost]
        print(f"\nlost: {', '.join(lost)}" if lost else "\nnothing lost")
        return 1 if lost else 0
    held = None
    for rate in FIND_MAX_RATES:
        signals, peak = run(rate, args.seconds)
        report(rate, signals, peak)
        if any(signal.lost for signal in signals):
            break
        held = min(signal.sent / signal.seconds for signal in signals)
    print(f"\nhighest rate with zero loss on this machine: {held:.0f} items/s per signal" if held
          else "\nsomething was lost even at the lowest rate")
    return 0


if __name__ == "__main__":
    sys.exit(main())
