"""The real OpenTelemetry Collector of each version profile (0.91.0 and 0.161.0, built by ocb from
tools/collector/<profile>.yaml) on the config the stack renders for it, with a real Prometheus of the
same profile scraping it and a Loki stand-in decoding its pushes (Loki's push API on seed, Loki's own
OTLP endpoint on current): telemetry sent with the OpenTelemetry SDK comes out as the series,
exemplars and log streams the dashboards and Grafana expect, on both."""

import functools
import json
import re
import subprocess
import time
import urllib.parse
import urllib.request
from types import SimpleNamespace

import pytest
import yaml
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from program.log_labels import PINO_LEVELS
from program.services import LOG_MOUNT, SERVICES_BY_NAME, VERSION_PROFILES, image_version
from program.metric_names import prometheus_metric_name
from program.log_labels import TRACE_ID_METADATA
from program.render import EXEMPLAR_TRACE_ID_LABELS, TRACE_ID_FIELD_REGEX
from stack.check import collector_losses
from stack.smoke import COUNTER, HISTOGRAM, SMOKE_SERVICE, send_telemetry
from tests.loki_push import LokiPushStandIn
from tests.program import ROOT
from tests.tools import (
    DEFAULT_LABELS,
    alloy_blocks, alloy_stream_labels, built, collector_process, loopback_values, prometheus_server, rendered_files,
    run_coroutine, run_go_template, source_file_labels, stages, wait_until,
)
from tools.build_services import collector

KINDS = ("receivers", "processors", "exporters", "extensions", "connectors")
# A component's package, by the name the config gives its type where the two differ.
PACKAGES = {"memory_limiter": "memorylimiter", "otlp_grpc": "otlp", "otlp_http": "otlphttp"}


@pytest.fixture(scope="module", params=VERSION_PROFILES)
def versions(request):
    return request.param


def test_the_manifest_has_every_component_the_config_names(versions):
    manifest_path = ROOT / "tools" / "collector" / f"{versions}.yaml"
    manifest = yaml.safe_load(manifest_path.read_text())
    # A component's package: its import path where the manifest gives one, else its module's.
    built = {kind: {entry.get("import", entry["gomod"].split()[0]).rsplit("/", 1)[1] for entry in manifest.get(kind, [])}
             for kind in KINDS}
    used = yaml.safe_load(rendered_files("otel-collector", {"versions": versions})["/etc/otelcol-contrib/config.yaml"])
    for kind in KINDS:
        for component in used.get(kind, {}):
            package = PACKAGES.get(component.split("/")[0], component.split("/")[0].replace("_", ""))
            # memorylimiterprocessor, or filestorage (a package of contrib's extension/storage at 0.91)
            assert {package + kind[:-1], package} & built[kind], f"{kind} {component}: no {package} in {manifest_path.name}"
    # Every component at the release the profile's image runs, and the binary reports it.
    release = image_version(SERVICES_BY_NAME["otel-collector"].releases[versions].image)
    assert all(entry["gomod"].endswith(f" v{release}") for kind in KINDS for entry in manifest.get(kind, []))
    assert manifest["dist"]["version"] == release


@pytest.fixture(scope="module")
def otelcol(versions):
    return built(functools.partial(collector, versions))


def test_the_collector_accepts_the_default_config(otelcol, versions, tmp_path):
    path = tmp_path / "config.yaml"
    # Its queue directory, where the container has its data volume, moved here: the extension
    # wants it to exist.
    queues = SERVICES_BY_NAME["otel-collector"].data_dir
    (tmp_path / queues.lstrip("/")).mkdir(parents=True)
    config = rendered_files("otel-collector", {"versions": versions})["/etc/otelcol-contrib/config.yaml"]
    path.write_text(config.replace(queues, str(tmp_path / queues.lstrip("/"))))
    result = subprocess.run([str(otelcol), "validate", "--config", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def otlp_index_labels(versions: str) -> tuple[str, ...]:
    """The resource attributes the profile's Loki makes labels of, on its OTLP endpoint (if any)."""
    loki = yaml.safe_load(rendered_files("loki", {"versions": versions})["/etc/loki/loki.yaml"])
    attributes = loki["limits_config"].get("otlp_config", {}).get("resource_attributes", {})
    return tuple(name for entry in attributes.get("attributes_config", []) if entry["action"] == "index_label"
                 for name in entry["attributes"])


@pytest.fixture(scope="module")
def running(otelcol, versions, tmp_path_factory):
    """The collector and Prometheus running on the stack's own files; only what Docker would
    provide is rewritten: host names to 127.0.0.1, ports to free loopback ports."""
    directory = tmp_path_factory.mktemp("collector")
    loki = LokiPushStandIn(otlp_index_labels(versions))
    raw = {"versions": versions}
    values = loopback_values({"loki_http": loki.port}, raw=raw)
    config = yaml.safe_load(rendered_files("otel-collector", values=values)["/etc/otelcol-contrib/config.yaml"])
    try:
        with collector_process(otelcol, directory, values):
            with prometheus_server(directory, raw=raw, values=values, port=values["port"]["prometheus_http"]) as prometheus:
                yield SimpleNamespace(values=values, prometheus=prometheus, log_path=directory / "collector.log",
                                      loki=loki, logs_exporter=config["service"]["pipelines"]["logs"]["exporters"][0])
    finally:
        loki.close()


def query(prometheus, path, **params):
    with urllib.request.urlopen(f"{prometheus}{path}?{urllib.parse.urlencode(params)}", timeout=5) as response:
        return json.load(response)["data"]


def wait_for(what, look, log_path, timeout=30):
    return wait_until(f"{what} arrived", look, timeout, lambda: "collector log:\n" + log_path.read_text()[-3000:])


def test_sdk_telemetry_reaches_prometheus_with_its_trace_id_as_exemplar(running):
    values, prometheus, log_path = running.values, running.prometheus, running.log_path
    trace_id = send_telemetry(f"http://127.0.0.1:{values['port']['collector_otlp_http']}")
    counter = prometheus_metric_name(*COUNTER, monotonic_sum=True)
    buckets = prometheus_metric_name(*HISTOGRAM) + "_bucket"

    series = wait_for(counter, lambda: query(prometheus, "/api/v1/query", query=f'{counter}{{job="{SMOKE_SERVICE}"}}')["result"],
                      log_path)
    assert series[0]["metric"]["__name__"] == "trace_stack_smoke_runs_total" and series[0]["value"][1] == "1"

    def exemplar():
        now = time.time()
        for found in query(prometheus, "/api/v1/query_exemplars", query=buckets, start=now - 600, end=now + 60):
            for item in found["exemplars"]:
                if item["labels"].get("trace_id") == trace_id:
                    return item["labels"]
        return None

    labels = wait_for(f"an exemplar with trace id {trace_id}", exemplar, log_path)
    assert set(labels) & set(EXEMPLAR_TRACE_ID_LABELS) == {"trace_id"}  # the label Grafana is provisioned for
    assert buckets == "trace_stack_smoke_duration_milliseconds_bucket"


def test_prometheus_scrapes_the_collectors_own_metrics(running):
    prometheus, log_path = running.prometheus, running.log_path

    def both_up():
        result = query(prometheus, "/api/v1/query", query='up{job=~"app|otel-collector"} == 1')["result"]
        return result if len(result) == 2 else None

    up = wait_for("the app and otel-collector jobs up", both_up, log_path)
    assert {r["metric"]["job"] for r in up} == {"app", "otel-collector"}


def test_the_collector_logs_its_version_as_check_reads_it(running, versions):
    """`check` reads the running collector's version from the line its process logs as it starts."""
    log_line = SERVICES_BY_NAME["otel-collector"].build_info.log_line
    starts = [found.group("version") for found in re.finditer(log_line, running.log_path.read_text())]
    assert starts and set(starts) == {image_version(SERVICES_BY_NAME["otel-collector"].releases[versions].image)}


# --- logs: OTLP -> collector -> Loki ----------------------------------------------------------

# The six severity ranges' first numbers (SEVERITY_NUMBER_TRACE, ..._DEBUG, ...) and a higher one
# in a range (WARN3), by the level Loki must label them with.
SEVERITIES = {"trace": SeverityNumber.TRACE, "debug": SeverityNumber.DEBUG, "info": SeverityNumber.INFO,
              "warn": SeverityNumber.WARN3, "error": SeverityNumber.ERROR, "fatal": SeverityNumber.FATAL}


def send_log_records(values, run: str) -> dict[str, dict]:
    """Records at every severity, inside a span and outside one, and one without a severity,
    sent with the SDK's OTLP/HTTP exporter. Returns what was sent, by body."""
    resource = Resource.create({"service.name": "checkout", "deployment.environment": "staging"})
    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(SimpleLogRecordProcessor(
        OTLPLogExporter(endpoint=f"http://127.0.0.1:{values['port']['collector_otlp_http']}/v1/logs")))
    logger = provider.get_logger("tests")
    tracer = TracerProvider(resource=resource).get_tracer("tests")
    sent = {}

    def emit(body: str, level, severity, trace_id: str = "") -> None:
        timestamp = time.time_ns()
        logger.emit(timestamp=timestamp, severity_number=severity, severity_text=severity.name if severity else None,
                    body=body)
        sent[body] = {"level": level, "timestamp": timestamp, "trace_id": trace_id}

    for level, severity in SEVERITIES.items():
        emit(f"{run} {level} outside a span", level, severity)
        with tracer.start_as_current_span("work") as span:
            emit(f"{run} {level} inside a span", level, severity, format(span.get_span_context().trace_id, "032x"))
    emit(f"{run} without a severity", None, None)
    provider.shutdown()
    return sent


def kept(entry) -> dict:
    """What Loki keeps of a record besides its labels, alike for both profiles: its body, trace id,
    the app's service.name, and the names of everything else kept. On seed all of it is in the
    loki exporter's JSON line; on current the line is the body, the rest Loki's structured metadata."""
    if entry.structured_metadata:
        metadata = dict(entry.structured_metadata)
        return {"body": entry.line, "trace_id": metadata.get("trace_id", ""), "service.name": metadata["service_name"],
                "names": set(metadata), "linked_trace": metadata.get(TRACE_ID_METADATA, "")}
    line = json.loads(entry.line)
    linked = re.search(TRACE_ID_FIELD_REGEX, entry.line)
    return {"body": line["body"], "trace_id": line.get("traceid", ""), "service.name": line["resources"]["service.name"],
            "names": set(line["resources"]) | set(line.get("attributes", {})), "linked_trace": linked[1] if linked else ""}


def arrived(loki, run: str) -> list[tuple[dict, dict, int]]:
    """(labels, what Loki kept, timestamp) of every entry from this run that reached Loki."""
    return [(entry.label_dict, kept(entry), entry.timestamp_ns) for entry in list(loki.entries) if run in entry.line]


def wait_for_records(loki, run: str, count: int, log_path, timeout=30) -> list[tuple[dict, dict, int]]:
    return wait_for(f"{count} records of run {run}",
                    lambda: (lambda found: found if len(found) >= count else None)(arrived(loki, run)),
                    log_path, timeout)


def assert_each_arrived_once(sent: dict, found: list) -> None:
    bodies = [line["body"] for _, line, _ in found]
    duplicated = {body for body in bodies if bodies.count(body) > 1}
    missing = set(sent) - set(bodies)
    assert not duplicated and not missing, (
        f"sent {len(sent)}, arrived {len(bodies)}: missing {sorted(missing)}, more than once {sorted(duplicated)}")


def test_otel_log_records_reach_loki_with_the_labels_of_pino_lines(running):
    run = f"run-{time.monotonic_ns()}"
    sent = send_log_records(running.values, run)
    found = wait_for_records(running.loki, run, len(sent), running.log_path)
    time.sleep(1)  # a record sent twice would come in the next batch
    found = arrived(running.loki, run)
    assert_each_arrived_once(sent, found)

    for labels, line, timestamp in found:
        record = sent[line["body"]]
        # The labels Alloy gives a Pino line: the stack's job and env, Pino's name for the level.
        expected = {**DEFAULT_LABELS, "level": record["level"]} if record["level"] else dict(DEFAULT_LABELS)
        assert labels == expected, line["body"]
        # The trace id, where Grafana's derived fields find it (in the line, or the structured
        # metadata), the app's own service.name kept, no label or hint attribute kept twice.
        assert line["trace_id"] == line["linked_trace"] == record["trace_id"], line
        assert line["service.name"] == "checkout"
        assert not {"job", "env", "level", "loki.resource.labels"} & line["names"]
        assert timestamp == record["timestamp"]
    assert set(PINO_LEVELS.values()) == {labels["level"] for labels, _, _ in found if "level" in labels}


def test_alloy_labels_a_pino_line_as_the_collector_labels_the_same_record(running, tmp_path):
    """One label scheme for both log paths: for each level, the labels Alloy's rendered pipeline
    gives a JSON line (Pino's number, or another logger's name: Python's "warning", "CRITICAL")
    equal those the real collector gave a record of that severity."""
    alloy = alloy_blocks(rendered_files("alloy")["/etc/alloy/config.alloy"], tmp_path)
    pipeline = stages(alloy[("loki.process", "pino")])
    read_by_alloy = source_file_labels(f"{LOG_MOUNT}/api.log")
    numbers = [str(number) for number in PINO_LEVELS]
    template = dict(pipeline)["stage.template"]["template"]
    levels = run_go_template(template, numbers)
    alloy_labels = {level: alloy_stream_labels(pipeline, read_by_alloy, {"level": level}) for level in levels}
    alloy_labels[None] = alloy_stream_labels(pipeline, read_by_alloy, {})  # a line without a level

    run = f"run-{time.monotonic_ns()}"
    sent = send_log_records(running.values, run)
    found = wait_for_records(running.loki, run, len(sent), running.log_path)
    collector_labels = {sent[line["body"]]["level"]: labels for labels, line, _ in found}
    assert collector_labels == alloy_labels
    spelled = {"warning": "warn", "WARNING": "warn", "CRITICAL": "fatal", "err": "error", "Info": "info"}
    for given, level in zip(spelled, run_go_template(template, list(spelled))):
        assert alloy_stream_labels(pipeline, read_by_alloy, {"level": level}) == collector_labels[spelled[given]], given


# A Loki away for a moment, as each exporter retries it: the loki exporter any 5xx; the OTLP/HTTP
# exporter 429, 502, 503 and 504 only (otlphttpexporter otlp.go, isRetryableStatusCode).
UNAVAILABLE = {"loki": 500, "otlp_http/loki": 503}


def test_a_loki_that_fails_for_a_while_gets_every_record_once_it_recovers(running):
    run = f"run-{time.monotonic_ns()}"
    refused_before = running.loki.refused
    running.loki.fail(UNAVAILABLE[running.logs_exporter], seconds=1.5)
    sent = send_log_records(running.values, run)
    # The exporter retries after retry_on_failure.initial_interval (with jitter) and backs off.
    found = wait_for_records(running.loki, run, len(sent), running.log_path, timeout=60)
    time.sleep(1)
    found = arrived(running.loki, run)
    assert running.loki.refused > refused_before, "the stand-in never refused: nothing was retried"
    assert_each_arrived_once(sent, found)


def test_what_the_collector_drops_is_named_by_check(running):
    """A permanent refusal (Loki's 400) makes the collector drop the batch; `check` names the
    loss from the collector's own counters, as the stack's Prometheus scrapes them."""
    running.loki.fail(400, seconds=30)
    sent = send_log_records(running.values, f"run-{time.monotonic_ns()}")
    try:
        losses = wait_for("the collector's loss counter in Prometheus",
                          lambda: run_coroutine(collector_losses(running.prometheus)), running.log_path)
    finally:
        running.loki.recover()
    [loss] = [loss for loss in losses if "log records" in loss]
    dropped = int(re.search(r"failed to send (\d+) log records", loss).group(1))
    assert loss.startswith(f"exporter {running.logs_exporter} failed to send ")
    assert loss.endswith("(otelcol_exporter_send_failed_log_records)")
    assert 0 < dropped <= len(sent)
