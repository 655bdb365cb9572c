"""The real OpenTelemetry Collector 0.91.0 (built by ocb from tools/collector/manifest.yaml) on
the config the stack renders, with a real Prometheus scraping it: telemetry sent with the
OpenTelemetry SDK comes out as the series and exemplars the dashboards and Grafana expect."""

import json
import subprocess
import time
import urllib.parse
import urllib.request

import pytest
import yaml

from stack.config import parse_settings
from stack.metric_names import prometheus_metric_name
from stack.render import EXEMPLAR_TRACE_ID_LABELS, render_service_files, template_values
from stack.services import declare_services
from stack.smoke import COUNTER, HISTOGRAM, SMOKE_SERVICE, send_telemetry
from tests.program import ROOT
from tests.tools import free_port, prometheus_server, running_process
from tools.build_services import BuildError, collector

MANIFEST = ROOT / "tools" / "collector" / "manifest.yaml"
KINDS = ("receivers", "processors", "exporters", "extensions", "connectors")


def rendered_collector_config(values):
    config = parse_settings("dev", {})
    [service] = [s for s in declare_services(config) if s.name == "otel-collector"]
    return render_service_files(service, values)["/etc/otelcol-contrib/config.yaml"]


def test_the_manifest_has_every_component_the_config_names():
    manifest = yaml.safe_load(MANIFEST.read_text())
    built = {kind: {entry["gomod"].split()[0].rsplit("/", 1)[1] for entry in manifest.get(kind, [])} for kind in KINDS}
    used = yaml.safe_load(rendered_collector_config(template_values(parse_settings("dev", {}))))
    for kind in KINDS:
        for component in used.get(kind, {}):
            module = component.split("/")[0].replace("_", "") + kind[:-1]  # memory_limiter -> memorylimiterprocessor
            assert module in built[kind], f"{kind} {component}: no {module} in {MANIFEST.name}"
    assert all(entry["gomod"].endswith(" v0.91.0") for kind in KINDS for entry in manifest.get(kind, []))
    assert manifest["dist"]["otelcol_version"] == "0.91.0"


@pytest.fixture(scope="module")
def otelcol():
    try:
        return collector()
    except BuildError as error:
        pytest.fail(f"building the collector: {error}")


def test_the_collector_accepts_the_default_config(otelcol, tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(rendered_collector_config(template_values(parse_settings("dev", {}))))
    result = subprocess.run([str(otelcol), "validate", "--config", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def running(otelcol, tmp_path_factory):
    """The collector and Prometheus running on the stack's own files; only what Docker would
    provide is rewritten: host names to 127.0.0.1, ports to free loopback ports."""
    directory = tmp_path_factory.mktemp("collector")
    values = template_values(parse_settings("dev", {}))
    values["host"] = {name: "127.0.0.1" for name in values["host"]}
    values["port"] = {name: free_port() for name in values["port"]}
    values["listen_host"] = "127.0.0.1"
    values["scrape_interval"] = "1s"
    config = directory / "config.yaml"
    config.write_text(rendered_collector_config(values))
    log_path = directory / "collector.log"
    health = f"http://127.0.0.1:{values['port']['collector_health']}/"
    with running_process([str(otelcol), "--config", str(config)], log_path, health):
        with prometheus_server(directory, values=values, port=values["port"]["prometheus_http"]) as prometheus:
            yield values, prometheus, log_path


def query(prometheus, path, **params):
    with urllib.request.urlopen(f"{prometheus}{path}?{urllib.parse.urlencode(params)}", timeout=5) as response:
        return json.load(response)["data"]


def wait_for(what, look, log_path, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = look()
        if found:
            return found
        time.sleep(0.5)
    pytest.fail(f"{what} never arrived; collector log:\n{log_path.read_text()[-3000:]}")


def test_sdk_telemetry_reaches_prometheus_with_its_trace_id_as_exemplar(running):
    values, prometheus, log_path = running
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
    _, prometheus, log_path = running

    def both_up():
        result = query(prometheus, "/api/v1/query", query='up{job=~"app|otel-collector"} == 1')["result"]
        return result if len(result) == 2 else None

    up = wait_for("the app and otel-collector jobs up", both_up, log_path)
    assert {r["metric"]["job"] for r in up} == {"app", "otel-collector"}
