"""The rendered Prometheus config and flags, checked by Debian's promtool and a real server.

Debian ships Prometheus 2.42, older than the pinned 2.48: every key and flag used here exists in both.
"""

import json
import subprocess
import urllib.error
import urllib.request

import pytest

from program.services import SERVICES_BY_NAME
from tests.tools import PROMETHEUS_HINT, prometheus_server, rendered_files, require, wait_until


def test_promtool_accepts_the_rendered_config(tmp_path):
    promtool = require("promtool", PROMETHEUS_HINT)
    files = rendered_files("prometheus")
    path = tmp_path / "prometheus.yml"
    path.write_text(files["/etc/prometheus/prometheus.yml"])
    result = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with prometheus_server(tmp_path_factory.mktemp("prometheus"), {"prometheusRetention": "45d"}) as url:
        yield url


def get_json(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def test_the_server_runs_with_our_retention_and_exemplar_storage(server):
    flags = get_json(f"{server}/api/v1/status/flags")["data"]
    assert flags["storage.tsdb.retention.time"] == "45d"
    assert flags["enable-feature"] == "exemplar-storage"
    assert flags["web.enable-remote-write-receiver"] == "true"
    exemplars = get_json(f"{server}/api/v1/query_exemplars?query=up&start=0&end=1")
    assert exemplars["status"] == "success"
    loaded = get_json(f"{server}/api/v1/status/config")["data"]["yaml"]
    assert "max_exemplars: 500000" in loaded  # the server's own dump of what it loaded


def test_the_server_accepts_remote_write(server):
    # An empty body is a bad write request (400); a server without the receiver answers 404.
    request = urllib.request.Request(f"{server}/api/v1/write", data=b"", method="POST",
                                     headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 400


def test_the_server_loaded_every_scrape_job(server):
    expected = {"app", "otel-collector", "prometheus", "tempo", "loki", "alloy", "grafana"}

    def jobs():
        return {target["labels"]["job"] for target in get_json(f"{server}/api/v1/targets")["data"]["activeTargets"]}

    # Targets appear after service discovery's first update (5s).
    wait_until("every scrape job", lambda: jobs() == expected, why_not=lambda: f"jobs: {sorted(jobs())}")


def promql_answers(tmp_path, series: dict[str, str], query: str, at: str, expected: list[dict]) -> None:
    """`query` evaluated by Prometheus' own engine (promtool's rule tests) over `series` (promtool's
    expanding notation, one sample every 15 s) gives `expected` at time `at`."""
    promtool = require("promtool", PROMETHEUS_HINT)
    (tmp_path / "rules.yaml").write_text("groups: []\n")
    test = {"rule_files": ["rules.yaml"], "evaluation_interval": "15s", "tests": [{
        "interval": "15s",
        "input_series": [{"series": name, "values": values} for name, values in series.items()],
        "promql_expr_test": [{"expr": query, "eval_time": at, "exp_samples": expected}]}]}
    (tmp_path / "test.yaml").write_text(json.dumps(test))
    result = subprocess.run([promtool, "test", "rules", "test.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_checks_collector_query_gives_each_process_its_start_time(tmp_path):
    """A replaced collector's old series stay queryable for Prometheus' lookback: `check` reads
    each process's start and version, and takes the one that started when the running collector's
    health check says it did, not whichever series comes first."""
    query = SERVICES_BY_NAME["otel-collector"].build_info.prometheus_query
    labels = 'job="otel-collector", service_name="otelcol-contrib"'
    old = f'otelcol_process_uptime{{{labels}, service_instance_id="a", service_version="0.90.0"}}'
    new = f'otelcol_process_uptime{{{labels}, service_instance_id="b", service_version="0.91.0"}}'
    # The old process ran for an hour and stopped at 60 s; the new one started at 75 s.
    promql_answers(tmp_path, {old: "3600+15x4", new: "_x5 0+15x5"}, query, "2m",
                   [{"labels": f'{{{labels}, service_instance_id="a", service_version="0.90.0"}}', "value": -3600},
                    {"labels": f'{{{labels}, service_instance_id="b", service_version="0.91.0"}}', "value": 75}])
