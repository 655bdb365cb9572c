"""What the commands ask of a Kubernetes stack (stack/platforms/kubernetes.py), against a fake
`kubectl` on PATH: the namespace another stack owns, workloads scaled to 0, the port-forwards kept
open and restarted, and Alloy's push endpoint fed by the pane filter."""

import json
import os
import signal
import subprocess
import sys

import httpx
import pytest

from stack.platforms import PreflightError
from stack.platforms import kubernetes
from tests.program import ROOT
from tests.standins import StandIn, text
from tests.tools import PORT_OFFSET, stack_config, wait_until


@pytest.fixture
def kubectl(tmp_path, monkeypatch):
    """A fake kubectl first on PATH; returns (its spec to edit, the calls it saw)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "kubectl"
    script.write_text(f'#!/bin/sh\nexec {sys.executable} {ROOT / "tests" / "fake_kubectl.py"} "$@"\n')
    script.chmod(0o755)
    spec_path, log = tmp_path / "kubectl.json", tmp_path / "kubectl.log"
    spec = {"log": str(log), "namespace": None, "deployments": []}

    def save():
        spec_path.write_text(json.dumps(spec))

    save()
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_KUBECTL", str(spec_path))
    monkeypatch.setenv("PULUMI_HOME", str(tmp_path / "pulumi-home"))

    def calls():
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    return spec, save, calls


def settings(**raw):
    return stack_config({"platform": "kubernetes", "portOffset": PORT_OFFSET, **raw}, stack="alice",
                        secret_keys=("grafanaAdminPassword",))


def test_up_refuses_a_namespace_another_stack_owns(kubectl):
    spec, save, calls = kubectl
    spec["namespace"] = {"metadata": {"name": "team-obs", "labels": {"trace-stack.stack": "bob"}}}
    save()
    with pytest.raises(PreflightError) as refused:
        kubernetes.preflight(settings(namespace="team-obs", kubeContext="team"), None)
    assert str(refused.value).startswith("namespace team-obs belongs to stack 'bob' (context team)")
    assert ["--context", "team"] == calls()[0][:2]


def test_up_takes_its_own_namespace_and_a_free_one(kubectl):
    spec, save, _ = kubectl
    assert kubernetes.preflight(settings(), None) == {}  # none yet: nothing is down
    spec["namespace"] = {"metadata": {"name": "trace-stack-alice", "labels": {"trace-stack.stack": "alice"}}}
    spec["deployments"] = [
        {"metadata": {"labels": {"trace-stack.service": "tempo"}}, "spec": {"replicas": 0}, "status": {}},
        {"metadata": {"labels": {"trace-stack.service": "loki"}}, "spec": {"replicas": 1}, "status": {}},
        {"metadata": {"labels": {"trace-stack.service": "grafana"}}, "spec": {"replicas": 1},
         "status": {"readyReplicas": 1}},
    ]
    save()
    assert kubernetes.preflight(settings(), None) == {"tempo": "scaled to 0", "loki": "0 of 1 ready"}


def test_an_unreachable_cluster_is_named(kubectl):
    spec, save, _ = kubectl
    spec["unreachable"] = True
    save()
    with pytest.raises(PreflightError) as refused:
        kubernetes.preflight(settings(), None)
    assert str(refused.value).startswith("the cluster of the kubeconfig's current context is unreachable: "
                                         "The connection to the server")


def test_port_forwards_follow_the_docker_publishing_rules():
    spec = kubernetes.forward_spec(settings(bindAddress="0.0.0.0", grafanaAdminPassword="x",
                                            grafanaAnonymousRole="Viewer"))
    by_service = {(f["service"], f["address"]): f["ports"] for f in spec["forwards"]}
    assert by_service[("grafana", "0.0.0.0")] == [[33000 + PORT_OFFSET, 3000]]
    assert by_service[("otel-collector", "0.0.0.0")] == [[34318 + PORT_OFFSET, 4318], [34317 + PORT_OFFSET, 4317]]
    assert by_service[("otel-collector", "127.0.0.1")] == [[38889 + PORT_OFFSET, 8889], [33133 + PORT_OFFSET, 13133]]
    assert by_service[("alloy", "127.0.0.1")] == [[12345 + PORT_OFFSET, 12345], [33500 + PORT_OFFSET, 3500]]
    assert spec["namespace"] == "trace-stack-alice" and spec["context"] is None


def test_a_services_log_is_its_running_containers_as_kubectl_gives_it(kubectl):
    spec, save, calls = kubectl
    spec["logs"] = {"deployment/otel-collector": "Starting otelcol-contrib...\n"}
    save()
    assert kubernetes.process_log(settings(), "otel-collector") == "Starting otelcol-contrib...\n"
    assert calls()[-1][-4:] == ["logs", "deployment/otel-collector", "--namespace", "trace-stack-alice"]
    assert kubernetes.process_log(settings(), "tempo") is None  # the cluster cannot say
    spec["unreachable"] = True
    save()
    assert kubernetes.process_log(settings(), "otel-collector") is None


def test_the_port_forwards_stay_open_when_a_pod_is_replaced_and_stop_with_down(kubectl):
    _, _, calls = kubectl
    config = settings()
    grafana = f"http://127.0.0.1:{33000 + PORT_OFFSET}/"
    kubernetes.reach(config)
    try:
        assert httpx.get(grafana).text == "service/grafana"
        forwards = [call for call in calls() if "port-forward" in call]
        assert len(forwards) == len(kubernetes.forward_spec(config)["forwards"])
        kubernetes.reach(config)  # already open as wanted: nothing started again
        assert len([call for call in calls() if "port-forward" in call]) == len(forwards)

        # A rollout replaces the pod: kubectl port-forward exits, and is started again.
        grafana_forward = subprocess.run(["pgrep", "-f", "fake_kubectl.py port-forward .*service/grafana"],
                                         capture_output=True, text=True).stdout.split()
        os.kill(int(grafana_forward[0]), signal.SIGKILL)
        wait_until("grafana's forward restarted", lambda: _answers(grafana), timeout=10)
    finally:
        kubernetes.after_down(config)
    assert not _answers(grafana)


def _answers(url):
    try:
        return httpx.get(url, timeout=1).text == "service/grafana"
    except httpx.HTTPError:
        return False


def test_pino_lines_are_pushed_to_alloy_through_its_forward(tmp_path):
    received = []
    alloy = StandIn({"/loki/api/v1/raw": lambda path, query, body: received.append(body) or text(204, "")})
    try:
        pane = b'\x1b[32mapp$\x1b[0m node app.js\r\n{"level":30,"msg":"hello"}\r\nnot json\r\n'
        subprocess.run([sys.executable, str(ROOT / "stack" / "pane_filter.py"), "--push",
                        f"{alloy.url}/loki/api/v1/raw"], input=pane, check=True, timeout=30)
    finally:
        alloy.close()
    assert received == [b'{"level":30,"msg":"hello"}\n']
    assert kubernetes.log_sink(settings()).url == f"http://localhost:{33500 + PORT_OFFSET}/loki/api/v1/raw"


def test_up_says_how_to_install_a_kubernetes_plugin_it_cannot_download():
    from stack.lifecycle import hint

    said = hint("installing packages: failed to download plugin: kubernetes-4.34.2: 404 HTTP error fetching plugin")
    assert "`pulumi plugin install resource kubernetes v4.34.2 --file pulumi-resource-kubernetes-v4.34.2-" \
           "linux-amd64.tar.gz`" in said and "put `pulumi-resource-kubernetes` on PATH" in said
