"""Benchmark: what a restart loses, between the app and Tempo and Loki.

The real collector 0.91.0 (tools/build_services) runs on the stack's rendered config. The
OpenTelemetry SDK sends it traces (one span per trace) and log records at a steady rate, through
exporters that note what the collector acknowledged. Downstream, stand-ins keep what arrives: an
OTLP gRPC trace receiver where Tempo would be, and the Loki push stand-in. Then, one at a time:

- tempo-refusing: Tempo answers UNAVAILABLE (as while it restarts) for the outage;
- loki-gone: nothing listens on Loki's port for the outage;
- collector-killed: Tempo and Loki refuse for the outage; half-way through, the collector is killed
  (SIGKILL) and started again on the same queue directory (its data volume);
- collector-stopped: the same, stopped with SIGTERM.

    venv/bin/python -m bench.faults                            # each fault: 1,000 items/s, 30 s outages
    venv/bin/python -m bench.faults --no-file-storage          # the same, the queues in memory
    venv/bin/python -m bench.faults --faults collector-killed --rate 200 --outage 3   # what CI runs

For each fault and signal it reports what the SDK sent, what the collector acknowledged, what
arrived (at least once), what was acknowledged and never arrived (lost), and how many arrived
twice. Exit 1 when anything acknowledged was lost.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExportResult
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult

from program.render import EXPORTER_QUEUE
from tests.loki_push import LokiPushStandIn
from tests.tempo_grpc import TempoGrpcStandIn
from tests.tools import collector_process, loopback_values
from tools.build_services import collector

RESOURCE = Resource.create({"service.name": "faults"})
TICKS_PER_SECOND = 20
FAULTS = ("tempo-refusing", "loki-gone", "collector-killed", "collector-stopped")
# Sending before the fault and after it, around the outage.
MARGIN_SECONDS = 2.0


# --- the app: the SDK, noting what the collector acknowledged -----------------------------------


class AckedSpans(OTLPSpanExporter):
    def __init__(self, acknowledged: set, **kwargs):
        super().__init__(**kwargs)
        self.acknowledged = acknowledged

    def export(self, spans):
        result = super().export(spans)
        if result is SpanExportResult.SUCCESS:
            self.acknowledged.update(format(span.context.trace_id, "032x") for span in spans)
        return result


class AckedRecords(OTLPLogExporter):
    def __init__(self, acknowledged: set, **kwargs):
        super().__init__(**kwargs)
        self.acknowledged = acknowledged

    def export(self, batch):
        result = super().export(batch)
        if result is LogRecordExportResult.SUCCESS:
            self.acknowledged.update(item.log_record.body for item in batch)
        return result


@dataclass
class Signal:
    name: str
    sent: set = field(default_factory=set)
    acknowledged: set = field(default_factory=set)


class App:
    """Traces and log records at `rate` a second each, from two threads, until stopped."""

    def __init__(self, endpoint: str, rate: int, run: str = ""):
        """`run` tells this run's log records from another's in a store that keeps both."""
        self.traces, self.logs = Signal("traces"), Signal("logs")
        # Queues that hold the whole run: whatever the SDK drops, it drops for being refused.
        batching = {"max_queue_size": 1_000_000, "schedule_delay_millis": 200, "max_export_batch_size": 512}
        self.tracer_provider = TracerProvider(resource=RESOURCE)
        self.tracer_provider.add_span_processor(BatchSpanProcessor(
            AckedSpans(self.traces.acknowledged, endpoint=f"{endpoint}/v1/traces", timeout=5), **batching))
        self.logger_provider = LoggerProvider(resource=RESOURCE)
        self.logger_provider.add_log_record_processor(BatchLogRecordProcessor(
            AckedRecords(self.logs.acknowledged, endpoint=f"{endpoint}/v1/logs", timeout=5), **batching))
        tracer, logger = self.tracer_provider.get_tracer("faults"), self.logger_provider.get_logger("faults")

        def span(number: int) -> None:
            with tracer.start_as_current_span("GET /faults") as made:
                self.traces.sent.add(format(made.get_span_context().trace_id, "032x"))

        def record(number: int) -> None:
            body = f"faults record {run}{number:08d}"
            self.logs.sent.add(body)
            logger.emit(severity_number=SeverityNumber.INFO, severity_text="INFO", body=body)

        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._paced, args=(make, rate), daemon=True) for make in (span, record)]
        for thread in self._threads:
            thread.start()

    def _paced(self, make: Callable[[int], None], rate: int) -> None:
        started, made, number = time.monotonic(), 0.0, 0
        for tick in range(10**9):
            if self._stop.wait(max(0.0, started + tick / TICKS_PER_SECOND - time.monotonic())):
                return
            made += rate / TICKS_PER_SECOND
            while made >= 1:
                make(number)
                number, made = number + 1, made - 1

    def stop(self) -> None:
        """Stop making items and export what the SDK still holds."""
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self.tracer_provider.shutdown()
        self.logger_provider.shutdown()


# --- downstream, and the collector between --------------------------------------------------------


def arrived_traces(tempo: TempoGrpcStandIn) -> list[str]:
    return [span.trace_id for span in list(tempo.kept)]


def arrived_records(loki: LokiPushStandIn) -> list[str]:
    # The loki exporter writes each record as JSON with its body under "body".
    return [json.loads(entry.line)["body"] for entry in list(loki.entries)]


@dataclass
class Row:
    fault: str
    storage: str
    signal: str
    sent: int
    acknowledged: int
    arrived: int
    lost: int
    duplicates: int

    def line(self) -> str:
        return (f"{self.fault:<18} {self.storage:<7} {self.signal:<7} {self.sent:>7} {self.acknowledged:>12} "
                f"{self.arrived:>8} {self.lost:>6} {self.duplicates:>10}")


HEADER = f"{'fault':<18} {'queues':<7} {'signal':<7} {'sent':>7} {'acknowledged':>12} {'arrived':>8} {'lost':>6} {'duplicates':>10}"


class Collector:
    """The real collector, which a fault may kill or stop and start again on the same queue directory."""

    def __init__(self, directory: Path, values: dict):
        self.directory, self.values, self.binary = directory, values, collector()
        self._stack = contextlib.ExitStack()
        self.process = self._stack.enter_context(collector_process(self.binary, directory, values))

    def restart(self, signal: str) -> None:
        self.process.kill() if signal == "SIGKILL" else self.process.terminate()
        self.process.wait(timeout=60)
        self._stack.close()
        self.process = self._stack.enter_context(collector_process(self.binary, self.directory, self.values))

    def close(self) -> None:
        self._stack.close()


def run(fault: str, rate: int, outage: float, file_storage: bool, drain_seconds: float,
        margin: float = MARGIN_SECONDS) -> list[Row]:
    """One fault: send for `margin` seconds, break, mend, send as long again, then wait for what
    was acknowledged to arrive."""
    tempo, loki = TempoGrpcStandIn(keep_spans=True), LokiPushStandIn()
    values = loopback_values({"tempo_otlp_grpc": tempo.port, "loki_http": loki.port})
    if not file_storage:
        values["exporter_queue"] = {key: value for key, value in EXPORTER_QUEUE.items() if key != "storage"}
    with tempfile.TemporaryDirectory() as directory:
        running = Collector(Path(directory), values)
        try:
            app = App(f"http://127.0.0.1:{values['port']['collector_otlp_http']}", rate)
            time.sleep(margin)
            if fault == "tempo-refusing":
                tempo.fail(outage)
            elif fault == "loki-gone":
                loki.away(outage)
            else:
                tempo.fail(outage)
                loki.fail(503, outage)
                time.sleep(outage / 2)
                running.restart("SIGKILL" if fault == "collector-killed" else "SIGTERM")
                outage /= 2
            # What the collector acknowledged before it restarted: in memory, it died with it.
            before_restart = {signal.name: set(signal.acknowledged) for signal in (app.traces, app.logs)}
            time.sleep(outage + margin)
            app.stop()
            # Until everything acknowledged has arrived (a request the exporter is retrying comes
            # after its backoff), or, with the queues in memory, everything the collector running
            # now acknowledged; or for drain_seconds.
            deadline = time.monotonic() + drain_seconds
            while time.monotonic() < deadline:
                waiting = [signal.acknowledged - set(arrived) for signal, arrived in
                           ((app.traces, arrived_traces(tempo)), (app.logs, arrived_records(loki)))]
                if not file_storage and fault.startswith("collector-"):
                    waiting = [left - before_restart[name] for left, name in zip(waiting, ("traces", "logs"))]
                if not any(waiting):
                    break
                time.sleep(0.5)
        finally:
            running.close()
            tempo.close()
            loki.close()
    storage = "file" if file_storage else "memory"
    rows = []
    for signal, arrived in ((app.traces, arrived_traces(tempo)), (app.logs, arrived_records(loki))):
        unique = set(arrived)
        rows.append(Row(fault, storage, signal.name, len(signal.sent), len(signal.acknowledged), len(unique & signal.sent),
                        len(signal.acknowledged - unique), len(arrived) - len(unique)))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__.split("\n\n")[0])
    parser.add_argument("--faults", nargs="+", choices=FAULTS, default=list(FAULTS))
    parser.add_argument("--rate", type=int, default=1000, help="items a second, per signal (default 1000)")
    parser.add_argument("--outage", type=float, default=30.0, help="seconds Tempo or Loki are away (default 30)")
    parser.add_argument("--no-file-storage", action="store_true", help="the exporters' queues in memory, as before")
    parser.add_argument("--drain", type=float, default=90.0,
                        help="seconds to wait, at most, for what was acknowledged to arrive (default 90)")
    args = parser.parse_args(argv)
    print(HEADER)
    rows = []
    for fault in args.faults:
        for row in run(fault, args.rate, args.outage, not args.no_file_storage, args.drain):
            print(row.line(), flush=True)
            rows.append(row)
    lost = sum(row.lost for row in rows)
    print("\nnothing the collector acknowledged was lost" if not lost else f"\n{lost} acknowledged items never arrived")
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
