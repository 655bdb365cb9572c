"""`python -m stack check`, run as a developer runs it, against a real Prometheus and stand-ins."""

import json
import os
import subprocess
import sys
import time

import pytest

from program.log_labels import PINO_LEVELS
from program.metric_names import prometheus_metric_name
from program.settings import pinned_images
from stack.check import CheckOptions, check, images_by_setting
from stack.outputs import OutputsError, parse_outputs
from tests.program import ROOT
from tests.standins import (
    COLLECTOR_STARTED, PINNED, StandIn, Telemetry, as_json, build_info, collector_routes, grafana_datasources, grafana_health,
    healthy_stack, loki_routes, loki_whose_queries_hang, prometheus_answering, prometheus_routes, tempo_routes, text,
)
from tests.tools import (
    DEFAULT_LABELS, PROMETHEUS_HINT, loopback_values, prometheus_server, require, run_coroutine, unused_port,
)

SERVICES = ("grafana", "prometheus", "tempo", "loki", "otel-collector", "alloy")


# Far beyond any wait a test expects: a check that waits it out has waited for what it should
# have reported at once, and the command is stopped, failing the test.
LONG_TIMEOUT = "600"


def run_check(*args, env=None):
    return subprocess.run([sys.executable, "-m", "stack", "check", *args], cwd=ROOT, capture_output=True,
                          text=True, env=env, timeout=120)


def outputs_file(tmp_path, **urls):
    """Outputs in the shape `pulumi stack output --json` prints, with the stack's other outputs too."""
    outputs = {"otlp_grpc_endpoint": "http://localhost:34317", "collector_metrics_url": "http://localhost:38889/metrics",
               "otlp_http_endpoint": "http://localhost:34318", **urls}
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(outputs, indent=4) + "\n")
    return path


@pytest.fixture(scope="module")
def real_prometheus(tmp_path_factory):
    """Debian's Prometheus on the stack's config, scraping a stand-in for the collector's own
    metrics (every series labelled with its version, as 0.91.0's are)."""
    collector = StandIn({"/metrics": lambda *_: text(200, 'otelcol_process_uptime{service_instance_id="x",'
                                                         'service_name="otelcol-contrib",service_version="0.91.0"} '
                                                         f'{time.time() - COLLECTOR_STARTED}\n')})
    values = loopback_values({"collector_telemetry": int(collector.url.rsplit(":", 1)[1])})
    with prometheus_server(tmp_path_factory.mktemp("prometheus"), values=values,
                           binary=require("prometheus", PROMETHEUS_HINT)) as url:
        yield url
    collector.close()


@pytest.fixture
def stand_ins():
    started = []

    def start(routes, **kwargs):
        stand_in = StandIn(routes, **kwargs)
        started.append(stand_in)
        return stand_in.url

    yield start
    for stand_in in started:
        stand_in.close()


def healthy_urls(stand_ins, routes=None, **urls):
    """Stand-ins answering as each service's source does at the pinned tag, with `routes` (by
    output) added or replaced; `urls` replace whole services."""
    return {**healthy_stack(stand_ins, **(routes or {})), **urls}


def lines_by_service(stdout):
    return {line.split()[0]: line for line in stdout.splitlines() if line.split() and line.split()[0] in SERVICES}


def test_a_healthy_stack_passes_and_every_service_is_named(tmp_path, stand_ins):
    result = run_check("--outputs", str(outputs_file(tmp_path, **healthy_urls(stand_ins))),
                          "--timeout", "20")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = lines_by_service(result.stdout)
    assert set(lines) == set(SERVICES)
    assert all(" ready " in line for line in lines.values())
    # Each service's own word on its version, the one its image names.
    for service, version in PINNED.items():
        assert lines[service].split("  ")[-1].endswith(version if service != "alloy" else f"v{version}"), lines[service]
    assert [line for line in result.stdout.splitlines() if line.startswith("Grafana → ")] == [
        "Grafana → Prometheus: ok (Successfully queried the Prometheus API.)",
        "Grafana → Tempo: ok (its API answers through Grafana)",
        "Grafana → Loki: ok (Data source successfully connected.)"]


def test_what_the_collector_lost_is_named_without_failing_the_check(tmp_path, stand_ins):
    # The query itself is proved against the real collector and Prometheus in test_collector_real.
    versions = prometheus_answering()

    def loss_series(path, query, body):
        if not query["query"].endswith(" > 0"):
            return versions(path, query, body)
        return as_json(200, {"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {"__name__": "otelcol_exporter_send_failed_spans", "exporter": "otlp/tempo"},
             "value": [time.time(), "2753"]}]}})

    urls = healthy_urls(stand_ins, routes={"prometheus_url": {"/api/v1/query": loss_series}})
    result = run_check("--outputs", str(outputs_file(tmp_path, **urls)))
    assert result.returncode == 0, result.stderr
    assert ("check: the collector has lost data since it started: exporter otlp/tempo failed to send 2753 spans "
            "(otelcol_exporter_send_failed_spans)") in result.stderr


def test_a_service_that_is_down_is_named_without_waiting_for_the_timeout(tmp_path, stand_ins):
    closed = f"http://127.0.0.1:{unused_port()}"  # nothing listens there
    urls = healthy_urls(stand_ins, loki_url=closed)
    result = run_check("--outputs", str(outputs_file(tmp_path, **urls)), "--timeout", LONG_TIMEOUT,
                       "--down-after", "1")
    assert result.returncode == 1
    loki = lines_by_service(result.stdout)["loki"]
    assert "NOT READY" in loki and "refused" in loki
    assert "not ready: loki" in result.stderr


def test_a_prometheus_that_is_down_leaves_the_collectors_version_untold_at_once(tmp_path, stand_ins):
    urls = healthy_urls(stand_ins, prometheus_url=f"http://127.0.0.1:{unused_port()}")
    result = run_check("--outputs", str(outputs_file(tmp_path, **urls)), "--timeout", LONG_TIMEOUT, "--down-after", "1")
    assert result.returncode == 1
    lines = lines_by_service(result.stdout)
    assert "refused" in lines["prometheus"]
    assert "cannot tell its version: the stack's Prometheus refuses connections" in lines["otel-collector"]


def collector_start(version):
    """The line the collector logs as it starts (service/service.go at v0.91.0 and v0.161.0)."""
    return (f"2026-12-05T17:57:52.610Z\tinfo\tservice@v{version}/service.go:145\tStarting otelcol-contrib...\t"
            f'{{"Version": "{version}", "NumCPU": 2}}\n')


def check_reading_logs(urls, process_log):
    options = CheckOptions(images=images_by_setting(pinned_images("seed")), timeout=20, process_log=process_log)
    return {result.service: result for result in run_coroutine(check(urls, options))}


def test_the_collectors_version_is_the_start_line_its_running_process_logged(stand_ins):
    # Prometheus still holds an older process's series; so does the log, before the running one's.
    urls = healthy_urls(stand_ins, routes={"prometheus_url": {"/api/v1/query": prometheus_answering("0.90.0")}})
    asked = []

    def process_log(service):
        asked.append(service)
        return collector_start("0.90.0") + "Shutdown complete.\n" + collector_start("0.91.0")

    collector = check_reading_logs(urls, process_log)["otel-collector"]
    assert collector.ok and collector.version == "0.91.0", collector
    assert asked == ["otel-collector"]


@pytest.mark.parametrize("log", [None, "2026-12-05T17:57:52.611Z\tinfo\textensions/extensions.go:34\tStarting extensions...\n"])
def test_a_log_without_the_start_line_leaves_the_collectors_version_to_prometheus(stand_ins, log):
    """None to read, or rotated past it: Prometheus has the running process's metrics."""
    urls = healthy_urls(stand_ins, routes={"prometheus_url": {"/api/v1/query": prometheus_answering("0.90.0")}})
    collector = check_reading_logs(urls, lambda service: log)["otel-collector"]
    assert collector.ready and collector.version == "0.90.0", collector


def test_a_service_still_starting_is_waited_for(tmp_path, stand_ins):
    answers = iter([503, 503, 503])

    def starting(path, query, body):
        status = next(answers, 200)
        return text(status, "ready" if status == 200 else "not ready: still starting")

    urls = healthy_urls(stand_ins, routes={"tempo_url": {"/ready": starting}})
    result = run_check("--outputs", str(outputs_file(tmp_path, **urls)), "--timeout", LONG_TIMEOUT, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    services = {service["service"]: service for service in report["services"]}
    assert report["ok"] is True and services["tempo"]["ready"] is True
    assert services["tempo"]["attempts"] == 4 and services["grafana"]["attempts"] == 1


def test_a_service_never_ready_fails_at_the_timeout_with_its_answer(tmp_path, stand_ins):
    urls = healthy_urls(stand_ins, routes={"grafana_url": {"/api/health": grafana_health("failing")}})
    result = run_check("--outputs", str(outputs_file(tmp_path, **urls)), "--timeout", "2")
    assert result.returncode == 1
    grafana = lines_by_service(result.stdout)["grafana"]
    assert "HTTP 503: '{\"database\": \"failing\"" in grafana and "still not ready after 2s" in grafana


def test_a_client_error_names_status_and_body_without_waiting(tmp_path, stand_ins):
    urls = healthy_urls(stand_ins, alloy_url=stand_ins({}))
    result = run_check("--outputs", str(outputs_file(tmp_path, **urls)), "--timeout", LONG_TIMEOUT)
    assert result.returncode == 1
    assert "HTTP 404: '404 page not found' (is this the service's port?)" in lines_by_service(result.stdout)["alloy"]


# --- identity, version, and Grafana's own view ------------------------------------------------------


def test_a_server_that_answers_anything_is_not_taken_for_the_services(tmp_path, stand_ins):
    """A dummy answering {"database": "ok"} with 200 on every path passes no service but Grafana's
    readiness, and each is named at once with what answered."""
    dummy = stand_ins({r"/.*": lambda *_: as_json(200, {"database": "ok"})})
    urls = {output: dummy for output in ("grafana_url", "prometheus_url", "tempo_url", "loki_url", "alloy_url")}
    urls["collector_health_url"] = dummy + "/"
    result = run_check("--outputs", str(outputs_file(tmp_path, **urls)), "--timeout", LONG_TIMEOUT)
    assert result.returncode == 1
    lines = lines_by_service(result.stdout)
    assert """not prometheus: /api/v1/status/buildinfo answered '{"database": "ok"}'""" in lines["prometheus"]
    assert "not tempo: /api/status/buildinfo answered" in lines["tempo"]
    assert "not loki: /loki/api/v1/status/buildinfo answered" in lines["loki"]
    assert "not alloy: /metrics has no alloy_build_info" in lines["alloy"]
    assert "not grafana: /api/health answered" in lines["grafana"]
    assert all("NOT READY" in line for line in lines.values() if not line.startswith("otel-collector"))


def test_a_200_that_is_not_the_services_json_is_named_at_once(tmp_path, stand_ins):
    urls = healthy_urls(stand_ins, routes={"grafana_url": {"/api/health": lambda *_: text(200, "<html>login</html>")}})
    result = run_check("--outputs", str(outputs_file(tmp_path, **urls)), "--timeout", LONG_TIMEOUT)
    assert result.returncode == 1
    assert "answered '<html>login</html>', not JSON" in lines_by_service(result.stdout)["grafana"]


def test_another_version_than_the_image_is_version_drift(tmp_path, stand_ins):
    urls = healthy_urls(stand_ins, routes={"loki_url": build_info("loki", "2.8.4")})
    result = run_check("--outputs", str(outputs_file(tmp_path, **urls)))
    assert result.returncode == 1
    loki = lines_by_service(result.stdout)["loki"]
    assert loki.startswith("loki            VERSION")
    assert "version drift: runs 2.8.4, the stack's image is grafana/loki:2.9.0" in loki
    assert "check: version drift: loki" in result.stderr


def test_a_real_prometheus_of_another_version_is_named_and_the_collectors_version_read_from_it(
        tmp_path, stand_ins, real_prometheus):
    """Debian's Prometheus (2.42) where the stack pins 2.48; the collector's version as that
    Prometheus scraped it from the collector's own metrics."""
    urls = healthy_urls(stand_ins, prometheus_url=real_prometheus)
    result = run_check("--outputs", str(outputs_file(tmp_path, **urls)), "--timeout", "60")
    lines = lines_by_service(result.stdout)
    assert result.returncode == 1
    assert "version drift: runs 2.42.0+ds, the stack's image is prom/prometheus:v2.48.0" in lines["prometheus"]
    assert " ready " in lines["otel-collector"] and lines["otel-collector"].endswith(" 0.91.0"), lines["otel-collector"]


def test_grafanas_own_view_of_a_datasource_it_cannot_reach(tmp_path, stand_ins):
    unreachable = ("Post \"http://loki:3100/loki/api/v1/query\": dial tcp: lookup loki: no such host - "
                   "Unable to connect with Loki. Please check the server logs for more details.")
    urls = healthy_urls(stand_ins, routes={"grafana_url": grafana_datasources(failing={"loki": unreachable})})
    result = run_check("--outputs", str(outputs_file(tmp_path, **urls)))
    assert result.returncode == 1
    assert f"Grafana → Loki: FAILED ({unreachable})" in result.stdout
    assert "Grafana → Prometheus: ok" in result.stdout


# --- where the outputs come from ----------------------------------------------------------------


def test_outputs_as_pulumi_prints_them_are_read():
    text = json.dumps({"grafana_url": "http://localhost:33000", "loki_url": "http://localhost:33100"}, indent=4)
    assert parse_outputs(text, ("grafana_url",), "f") == {"grafana_url": "http://localhost:33000"}


@pytest.mark.parametrize(("text", "complaint"), [
    ('{"grafana_url": "[secret]"}', "hides grafana_url as [secret]: use `pulumi stack output --json --show-secrets`"),
    ('{"loki_url": "http://localhost:33100"}', "has no grafana_url"),
    ("Current stack outputs (9):", "is not JSON"),
    ('["http://localhost:33000"]', "not a JSON object"),
])
def test_outputs_that_cannot_be_used_say_why(text, complaint):
    with pytest.raises(OutputsError) as caught:
        parse_outputs(text, ("grafana_url",), "outputs.json")
    assert complaint in str(caught.value)


def test_without_the_pulumi_cli_the_check_says_how_to_install_it(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path)}
    result = run_check("--stack", "alice", env=env)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip() == ("check: the pulumi CLI is not installed (install it with: curl -fsSL "
                                     "https://get.pulumi.com | sh), or pass the outputs with --outputs FILE")


def test_a_missing_outputs_file_is_one_line(tmp_path):
    result = run_check("--outputs", str(tmp_path / "nope.json"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"check: cannot read {tmp_path / 'nope.json'}: No such file or directory"


# --- --smoke ------------------------------------------------------------------------------------


@pytest.fixture
def smoke_stack(tmp_path, stand_ins):
    telemetry = Telemetry()
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    urls = healthy_urls(stand_ins, routes={
        "prometheus_url": prometheus_routes(telemetry), "tempo_url": tempo_routes(telemetry),
        "loki_url": loki_routes(log_dir, telemetry, PINO_LEVELS, DEFAULT_LABELS),
        "collector_health_url": collector_routes(telemetry)})
    return telemetry, log_dir, outputs_file(tmp_path, **urls, otlp_http_endpoint=urls["collector_health_url"])


def test_smoke_follows_one_trace_id_through_every_hop(smoke_stack):
    telemetry, log_dir, outputs = smoke_stack
    result = run_check("--outputs", str(outputs), "--smoke", "--log-dir", str(log_dir), "--timeout", "10", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    hops = {hop["name"]: hop for hop in report["hops"]}
    assert all(hop["arrived"] for hop in hops.values()), hops
    # The trace id the SDK really sent is the one each hop found.
    [trace_id] = telemetry.trace_ids
    assert hops["collector accepted the telemetry"]["detail"] == f"trace id {trace_id}"
    assert telemetry.series["trace_stack_smoke_duration_milliseconds_bucket"]["exemplar_trace_ids"] == {trace_id}
    assert telemetry.series["trace_stack_smoke_runs_total"]["exemplar_trace_ids"] == {trace_id}
    assert telemetry.series["trace_stack_smoke_runs_total"]["job"] == "trace-stack-smoke"
    assert trace_id in hops["Prometheus has the exemplar"]["detail"]
    for hop in ("Loki has the Pino log line", "Loki has the OTel log record"):
        assert "'level': 'info'" in hops[hop]["detail"]
    [line] = (log_dir / "trace-stack-smoke.log").read_text().splitlines()
    assert json.loads(line)["traceId"] == trace_id and json.loads(line)["level"] == 30
    # The log record the SDK really sent was made inside the span.
    [record] = telemetry.log_records
    assert record.trace_id.hex() == trace_id and record.severity_number == 9


def test_smoke_names_the_hop_that_never_arrived(smoke_stack, tmp_path):
    _, _, outputs = smoke_stack
    elsewhere = tmp_path / "not-the-log-dir"
    elsewhere.mkdir()
    result = run_check("--outputs", str(outputs), "--smoke", "--log-dir", str(elsewhere), "--timeout", "3")
    assert result.returncode == 1
    assert "never arrived: Loki has the Pino log line" in result.stderr
    missing = [line for line in result.stdout.splitlines() if "MISSING" in line]
    assert len(missing) == 1 and missing[0].startswith("Loki has the Pino log line")
    assert "not there after 3s: no line from Alloy with the trace id yet" in missing[0]


def test_smoke_reads_every_stream_loki_answers_with(smoke_stack, stand_ins):
    """Another line that mentions the trace id, in a stream of its own ahead of the smoke's lines,
    does not hide them."""
    telemetry, log_dir, outputs = smoke_stack
    routes = {**loki_routes(log_dir, telemetry, PINO_LEVELS, DEFAULT_LABELS), **build_info("loki", PINNED["loki"])}
    answer_streams = routes["/loki/api/v1/query_range"]

    def with_another_stream_first(path, query, body):
        status, content_type, payload = answer_streams(path, query, body)
        answer = json.loads(payload)
        needle = query["query"].rsplit('"', 2)[1]
        answer["data"]["result"].insert(0, {"stream": {**DEFAULT_LABELS, "level": "debug"},
                                            "values": [["1", json.dumps({"msg": f"retrying {needle}"})]]})
        return as_json(200, answer)

    urls = json.loads(outputs.read_text())
    urls["loki_url"] = stand_ins({**routes, "/loki/api/v1/query_range": with_another_stream_first})
    outputs.write_text(json.dumps(urls))
    result = run_check("--outputs", str(outputs), "--smoke", "--log-dir", str(log_dir), "--timeout", "10")
    assert result.returncode == 0, result.stdout + result.stderr


def test_smoke_tells_a_loki_whose_queries_hang_from_a_line_not_there_yet(smoke_stack, stand_ins):
    _, log_dir, outputs = smoke_stack
    urls = json.loads(outputs.read_text())
    urls["loki_url"] = stand_ins({**loki_whose_queries_hang(lines_received=2), **build_info("loki", PINNED["loki"])})
    outputs.write_text(json.dumps(urls))
    # A timeout far beyond the per-query one: the hop must fail on the first query that hangs.
    result = run_check("--outputs", str(outputs), "--smoke", "--log-dir", str(log_dir), "--timeout", "60")
    assert result.returncode == 1
    missing = [line for line in result.stdout.splitlines() if "MISSING" in line]
    assert len(missing) == 2, result.stdout
    for line in missing:
        assert "Loki accepted the push (2 lines received) but its query API does not answer (no reply within 5s)" in line
        assert "not there after" not in line


def test_smoke_with_the_collector_refusing_names_it(smoke_stack, tmp_path):
    _, log_dir, outputs = smoke_stack
    urls = json.loads(outputs.read_text())
    urls["otlp_http_endpoint"] = f"http://127.0.0.1:{unused_port()}"
    outputs.write_text(json.dumps(urls))
    result = run_check("--outputs", str(outputs), "--smoke", "--log-dir", str(log_dir), "--timeout", "3")
    assert result.returncode == 1
    assert "never arrived: collector accepts the trace" in result.stderr


@pytest.mark.parametrize(("name", "unit", "monotonic", "expected"), [
    ("db.query.count", "", True, "db_query_count_total"),
    ("llm.invocation.duration", "ms", False, "llm_invocation_duration_milliseconds"),
    ("http.server.duration", "s", False, "http_server_duration_seconds"),
    ("process.memory.usage", "By", False, "process_memory_usage_bytes"),
    ("llm.token.count", "{token}", True, "llm_token_count_total"),
    ("requests.total", "", True, "requests_total"),
    ("db.query.duration.milliseconds", "ms", False, "db_query_duration_milliseconds"),
])
def test_prometheus_names_of_otel_metrics(name, unit, monotonic, expected):
    assert prometheus_metric_name(name, unit, monotonic) == expected


def test_a_message_with_square_brackets_is_printed_as_it_is(tmp_path):
    urls = {output: "http://localhost:1" for output in ("prometheus_url", "tempo_url", "loki_url", "alloy_url",
                                                         "collector_health_url")}
    outputs = outputs_file(tmp_path, grafana_url="[secret]", **urls)
    result = run_check("--outputs", str(outputs))
    assert result.returncode == 2
    assert "hides grafana_url as [secret]" in result.stderr
