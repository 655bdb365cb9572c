"""tools/standin: the stand-in CI runs for Tempo, Loki, Alloy and Grafana, built by
tools/build_services and run on loopback with the arguments and configs the stack gives the real
services (only paths and listen addresses moved), judged by `stack.check`'s own code."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator, Optional

import grpc
import httpx
import pytest
import snappy
import yaml
from google.protobuf import timestamp_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from program.services import DATASOURCE_UIDS, SERVICES_BY_NAME
from stack.check import PROBES, CheckOptions, Result, grafana_view, judge, probe_one
from tests.loki_push import PushRequest
from tests.tools import (
    built, loopback_values, prometheus_server, rendered_files, run_coroutine, stack_config, unused_port, wait_until,
)
from tools.build_services import standin

CONFIG = stack_config()
# The version each stand-in is told to report: the one the stack's image names.
VERSIONS = {"tempo": "2.3.0", "loki": "2.9.0", "alloy": "v1.5.1", "grafana": "12.3.0"}


@pytest.fixture(scope="module")
def binary() -> Path:
    return built(standin)


class Running(SimpleNamespace):
    process: subprocess.Popen
    url: str
    log: Path
    workdir: Path

    def stop(self) -> tuple[int, float]:
        """SIGTERM, as Kubernetes stops a container: its exit status and how long it took."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        status = self.process.wait(timeout=5)
        return status, time.monotonic() - started

    def assert_stops_cleanly(self) -> None:
        status, seconds = self.stop()
        assert (status, seconds < 1) == (0, True), \
            f"exit {status} after {seconds:.2f}s:\n{self.log.read_text()[-2000:]}"
        assert not any(self.workdir.iterdir()), "wrote into its working directory"

    def logged(self, method: str, path: str) -> int:
        """How many requests the log has a line for."""
        return len(re.findall(rf" http {method} {re.escape(path)} \d{{3}} ", self.log.read_text()))


@contextlib.contextmanager
def running(binary: Path, directory: Path, service: str, args: list[str], port: int, ready_path: str,
            env: Optional[dict] = None) -> Iterator[Running]:
    """The stand-in for `service`, its output in directory/<service>.log, once ready_path answers 200."""
    log, workdir = directory / f"{service}.log", directory / f"{service}-cwd"
    workdir.mkdir()
    environment = {**os.environ, "STANDIN_VERSION": VERSIONS[service], **(env or {})}
    with log.open("w") as out:
        process = subprocess.Popen([str(binary), service, *args], stdout=out, stderr=subprocess.STDOUT, cwd=workdir,
                                   env=environment)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            return httpx.get(url + ready_path, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(f"standin {service} ready", ready, 20, lambda: log.read_text()[-3000:])
        yield Running(process=process, url=url, log=log, workdir=workdir)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def command(service: str, moved: dict[str, str]) -> list[str]:
    """The service's command as the stack gives it, with the flags (or bare arguments) in `moved`
    pointed elsewhere: `flag` or the argument itself -> its new value."""
    arguments = []
    for argument in SERVICES_BY_NAME[service].command(CONFIG):
        name = argument.split("=", 1)[0]
        if argument in moved:
            arguments.append(moved[argument])
        elif "=" in argument and name in moved:
            arguments.append(f"{name}={moved[name]}")
        else:
            arguments.append(argument)
    return arguments


def values_in(directory: Path) -> dict:
    """The default stack's template values on loopback, its data directories under directory/data."""
    values = loopback_values()
    values["data_dir"] = {name: str(directory / "data" / name) for name in values["data_dir"]}
    return values


def config_file(directory: Path, service: str, container_path: str, values: dict) -> Path:
    """The service's rendered config, with its HTTP server on loopback (server.http_listen_address,
    the real key)."""
    config = yaml.safe_load(rendered_files(service, values=values)[container_path])
    config["server"]["http_listen_address"] = "127.0.0.1"
    path = directory / Path(container_path).name
    path.write_text(yaml.safe_dump(config))
    return path


def check_result(service: str, url: str) -> Result:
    """`python -m stack check`'s own probe of the service (readiness, then its version against
    the stack's image)."""
    [probe] = [probe for probe in PROBES if probe.service == service]
    outputs = {probe.output: url, "prometheus_url": f"http://127.0.0.1:{unused_port()}"}
    options = CheckOptions(images={probe.image_key: CONFIG.images[service]}, timeout=5, down_after=1)

    async def probe_it() -> Result:
        async with httpx.AsyncClient() as client:
            return await probe_one(client, probe, outputs, options)

    return run_coroutine(probe_it())


def assert_checked(service: str, url: str) -> None:
    result = check_result(service, url)
    assert result.ok, result.line()
    assert result.version == VERSIONS[service]


def no_data_written(directory: Path) -> None:
    data = directory / "data"
    assert not data.exists() or not any(data.rglob("*")), sorted(data.rglob("*"))


def spans_request(trace_id: bytes, count: int) -> trace_service_pb2.ExportTraceServiceRequest:
    service = common_pb2.KeyValue(key="service.name", value=common_pb2.AnyValue(string_value="standin-test"))
    spans = [trace_pb2.Span(trace_id=trace_id, span_id=bytes([i + 1] * 8), name=f"span {i}",
                            start_time_unix_nano=time.time_ns(), end_time_unix_nano=time.time_ns() + 1000)
             for i in range(count)]
    return trace_service_pb2.ExportTraceServiceRequest(resource_spans=[trace_pb2.ResourceSpans(
        resource=resource_pb2.Resource(attributes=[service]), scope_spans=[trace_pb2.ScopeSpans(spans=spans)])])


def metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


# --- tempo ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def on_its_config(binary: Path, directory: Path, name: str) -> Iterator[Running]:
    """The stand-in as the service `name`, on its one rendered config file, named by the flag its
    command names it with, until its readiness endpoint answers."""
    service, values = SERVICES_BY_NAME[name], values_in(directory)
    [file] = service.config_files
    config = config_file(directory, name, file.path, values)
    with running(binary, directory, name, command(name, {file.flag: str(config)}),
                 values["port"][service.readiness.port], service.readiness.path) as server:
        server.ports = values["port"]
        yield server


@contextlib.contextmanager
def tempo(binary: Path, directory: Path) -> Iterator[Running]:
    with on_its_config(binary, directory, "tempo") as server:
        server.grpc_port, server.http_otlp_port = server.ports["tempo_otlp_grpc"], server.ports["tempo_otlp_http"]
        yield server


def test_tempo_answers_the_check_and_keeps_the_traces_it_is_sent(binary, tmp_path):
    with tempo(binary, tmp_path) as server:
        assert judge(httpx.get(server.url + "/ready"), SERVICES_BY_NAME["tempo"].readiness.json_field) is None
        assert_checked("tempo", server.url)
        info = httpx.get(server.url + "/api/status/buildinfo").json()
        assert info["version"] == "2.3.0" and info["revision"] == "standin" and info["goVersion"].startswith("go")
        echo = httpx.get(server.url + "/api/echo")
        assert (echo.status_code, echo.text) == (200, "echo")

        # OTLP gRPC, as the collector's otlp/tempo exporter sends.
        trace_id = os.urandom(16)
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            trace_service_pb2_grpc.TraceServiceStub(channel).Export(spans_request(trace_id, 3), timeout=5)
        # OTLP HTTP (protobuf, gzipped), on the port the config names too.
        other = os.urandom(16)
        sent = httpx.post(f"http://127.0.0.1:{server.http_otlp_port}/v1/traces",
                          content=gzip.compress(spans_request(other, 2).SerializeToString()),
                          headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"})
        assert sent.status_code == 200, sent.text

        metrics = httpx.get(server.url + "/metrics").text
        assert metric(metrics, "tempo_distributor_spans_received_total") == 5
        assert re.search(r'^tempo_build_info\{.*version="2\.3\.0".*\} 1$', metrics, re.MULTILINE)
        found = httpx.get(f"{server.url}/api/traces/{trace_id.hex()}")
        assert found.status_code == 200
        [batch] = found.json()["batches"]
        assert [span["name"] for span in batch["scopeSpans"][0]["spans"]] == ["span 0", "span 1", "span 2"]
        assert httpx.get(f"{server.url}/api/traces/{other.hex()}").status_code == 200
        assert httpx.get(f"{server.url}/api/traces/{os.urandom(16).hex()}").status_code == 404
        assert httpx.get(server.url + "/api/search").status_code == 404  # not there: not claimed
        assert server.logged("GET", "/api/echo") == 1
        assert "/opentelemetry.proto.collector.trace.v1.TraceService/Export 3 spans" in server.log.read_text()
        server.assert_stops_cleanly()
    no_data_written(tmp_path)


# --- loki ----------------------------------------------------------------------------------------


def loki(binary: Path, directory: Path) -> contextlib.AbstractContextManager[Running]:
    return on_its_config(binary, directory, "loki")


def test_loki_answers_the_check_and_the_queries_of_what_it_is_pushed(binary, tmp_path):
    with loki(binary, tmp_path) as server:
        assert_checked("loki", server.url)
        needle = os.urandom(8).hex()
        now = time.time_ns()
        # JSON, as Alloy's loki.write can, and snappy protobuf, as the collector's loki exporter does.
        pushed = httpx.post(server.url + "/loki/api/v1/push", json={"streams": [
            {"stream": {"job": "refly-api", "level": "info"}, "values": [[str(now), f'{{"traceId":"{needle}"}}']]}]})
        assert pushed.status_code == 204, pushed.text
        request = PushRequest()
        stream = request.streams.add(labels='{job="refly-api", level="error", exporter="OTLP"}')
        entry = stream.entries.add(line=f'{{"traceid":"{needle}"}}')
        entry.timestamp.CopyFrom(timestamp_pb2.Timestamp(seconds=now // 10**9, nanos=now % 10**9 + 1))
        stream.entries.add(line="unrelated").timestamp.CopyFrom(timestamp_pb2.Timestamp(seconds=now // 10**9))
        pushed = httpx.post(server.url + "/loki/api/v1/push", content=snappy.compress(request.SerializeToString()),
                            headers={"Content-Type": "application/x-protobuf"})
        assert pushed.status_code == 204, pushed.text

        # The smoke check's query, as stack/smoke.py asks it.
        answer = httpx.get(server.url + "/loki/api/v1/query_range", params={
            "query": f'{{job=~".+"}} |= "{needle}"', "start": now - 3600 * 10**9, "end": now + 60 * 10**9,
            "limit": 10}).json()
        assert answer["status"] == "success" and answer["data"]["resultType"] == "streams"
        found = {stream["stream"]["level"]: [json.loads(line) for _, line in stream["values"]]
                 for stream in answer["data"]["result"]}
        assert found == {"info": [{"traceId": needle}], "error": [{"traceid": needle}]}
        labels = httpx.get(server.url + "/loki/api/v1/labels").json()
        assert labels == {"status": "success", "data": ["exporter", "job", "level"]}
        assert httpx.get(server.url + "/loki/api/v1/label/level/values").json()["data"] == ["error", "info"]
        # Grafana's health check's instant query; what the stand-in cannot evaluate, it refuses.
        vector = httpx.get(server.url + "/loki/api/v1/query",
                           params={"query": "vector(1)+vector(1)", "time": "4000000000"})
        # (Loki reads a time of up to 10 digits as seconds: Grafana's 4000000000 "ns" is in the year 2096.)
        assert vector.json()["data"]["result"] == [{"metric": {}, "value": [4000000000, "2"]}]
        refused = httpx.get(server.url + "/loki/api/v1/query_range", params={"query": 'rate({job="x"}[1m])'})
        assert refused.status_code == 400
        assert metric(httpx.get(server.url + "/metrics").text, "loki_distributor_lines_received_total") == 3
        assert server.logged("POST", "/loki/api/v1/push") == 2
        server.assert_stops_cleanly()
    no_data_written(tmp_path)


# --- alloy ---------------------------------------------------------------------------------------


def test_alloy_answers_the_check_and_needs_its_config(binary, tmp_path):
    values = values_in(tmp_path)
    config = tmp_path / "config.alloy"
    config.write_text(rendered_files("alloy", values=values)["/etc/alloy/config.alloy"])
    port = values["port"]["alloy_http"]
    args = command("alloy", {"/etc/alloy/config.alloy": str(config), "--storage.path": str(tmp_path / "data" / "alloy"),
                             "--server.http.listen-addr": f"127.0.0.1:{port}"})
    assert args[0] == "run" and args[1] == str(config)
    with running(binary, tmp_path, "alloy", args, port, "/-/ready") as server:
        assert_checked("alloy", server.url)
        assert "no file is tailed, nothing is sent to Loki" in server.log.read_text()
        server.assert_stops_cleanly()
    no_data_written(tmp_path)
    missing = subprocess.run([str(binary), "alloy", "run", str(tmp_path / "absent.alloy")], capture_output=True,
                             text=True, timeout=10)
    assert missing.returncode != 0 and "absent.alloy" in missing.stderr


# --- grafana -------------------------------------------------------------------------------------


@contextlib.contextmanager
def grafana(binary: Path, directory: Path, values: dict, env: dict[str, str]) -> Iterator[Running]:
    """The Grafana stand-in on the stack's provisioned datasources (rendered with `values`) and
    the stack's Grafana environment, plus `env`."""
    provisioning = directory / "provisioning"
    (provisioning / "datasources").mkdir(parents=True)
    (provisioning / "datasources" / "trace-stack.yaml").write_text(
        rendered_files("grafana", values=values)["/etc/grafana/provisioning/datasources/trace-stack.yaml"])
    port = unused_port()
    environment = {**SERVICES_BY_NAME["grafana"].env(CONFIG), "GF_PATHS_PROVISIONING": str(provisioning),
                   "GF_SERVER_HTTP_ADDR": "127.0.0.1", "GF_SERVER_HTTP_PORT": str(port), **env}
    with running(binary, directory, "grafana", [], port, "/api/health", environment) as server:
        yield server


def views(url: str, auth: Optional[tuple[str, str]]) -> dict[str, tuple[bool, str]]:
    return {view.datasource: (view.ok, view.detail) for view in run_coroutine(grafana_view(url, auth))}


def test_grafana_asks_its_datasources_as_grafana_does(binary, tmp_path):
    values = values_in(tmp_path)
    values["port"]["prometheus_http"] = unused_port()
    for name in ("tempo", "loki", "prometheus", "grafana", "anonymous"):
        (tmp_path / name).mkdir()
    with tempo(binary, tmp_path / "tempo") as tempo_server, loki(binary, tmp_path / "loki") as loki_server, \
            prometheus_server(tmp_path / "prometheus", port=values["port"]["prometheus_http"]):
        values["port"]["tempo_http"] = int(tempo_server.url.rsplit(":", 1)[1])
        values["port"]["loki_http"] = int(loki_server.url.rsplit(":", 1)[1])
        admin = {"GF_AUTH_ANONYMOUS_ENABLED": "false", "GF_SECURITY_ADMIN_PASSWORD": "s3cret"}
        with grafana(binary, tmp_path / "grafana", values, admin) as server:
            assert_checked("grafana", server.url)
            assert views(server.url, ("admin", "s3cret")) == {
                "Prometheus": (True, "Successfully queried the Prometheus API."),
                "Tempo": (True, "its API answers through Grafana"),
                "Loki": (True, "Successfully queried the Loki API.")}
            assert all(not ok and "HTTP 401" in detail for ok, detail in views(server.url, None).values())
            assert all(not ok for ok, _ in views(server.url, ("admin", "wrong")).values())
            # It really asked them: Tempo's /api/echo through the proxy, Loki its instant query.
            assert tempo_server.logged("GET", "/api/echo") == 1
            assert loki_server.logged("GET", "/loki/api/v1/query?direction=backward&query=vector%281%29%2Bvector%281%29"
                                              "&time=4000000000") == 1
            loki_server.assert_stops_cleanly()
            down = views(server.url, ("admin", "s3cret"))
            assert down["Prometheus"][0] and down["Tempo"][0]
            assert not down["Loki"][0]
            assert down["Loki"][1].startswith("There was an error returned querying the Loki API.")
            admin_auth = ("admin", "s3cret")
            answer = httpx.get(f"{server.url}/api/datasources/uid/{DATASOURCE_UIDS['loki']}/health", auth=admin_auth)
            assert (answer.status_code, answer.json()["status"]) == (400, "ERROR")
            assert httpx.get(f"{server.url}/api/datasources/uid/nope/health", auth=admin_auth).status_code == 404
            assert server.logged("GET", f"/api/datasources/uid/{DATASOURCE_UIDS['prometheus']}/health") == 4
            server.assert_stops_cleanly()
        with grafana(binary, tmp_path / "anonymous", values, {"GF_AUTH_ANONYMOUS_ENABLED": "true"}) as server:
            seen = views(server.url, None)
            assert seen["Prometheus"][0] and seen["Tempo"][0] and not seen["Loki"][0]
            server.assert_stops_cleanly()
        tempo_server.assert_stops_cleanly()


def test_an_unknown_service_or_a_missing_config_is_an_error(binary, tmp_path):
    unknown = subprocess.run([str(binary), "mimir"], capture_output=True, text=True, timeout=10)
    assert unknown.returncode != 0 and "tempo|loki|alloy|grafana" in unknown.stderr
    missing = subprocess.run([str(binary), "loki", f"-config.file={tmp_path / 'absent.yaml'}"], capture_output=True,
                             text=True, timeout=10)
    assert missing.returncode != 0 and "absent.yaml" in missing.stderr
