"""`up`, `check`, `drift` and `down` deploying the program for real, on a real Kubernetes control
plane and node (tests/kube_cluster.py: in a network namespace with no route off this machine),
with the real pulumi CLI, its Python language host and the pulumi-kubernetes provider, all built
from their Go modules (tools/build_services.py).

The collector (our build of 0.91.0) and Prometheus (Debian's) run for real; Tempo, Loki, Alloy and
Grafana cannot be built here, and run as small stand-ins that answer what `check` asks them as the
real ones do (tools/standin), under image tags that say so, so `check` only notes their versions.

The docker provider plugin cannot be had here: the stacks' `pulumi install` is taken as done (the
kubernetes plugin on PATH, where the CLI finds it first, and the record up keeps of an install
written), and `up` installs nothing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from program.services import SERVICES, SERVICES_BY_NAME
from tests.kube_cluster import shared_cluster
from tests.oci_image import Dir
from tests.program import ROOT
from tests.tools import built
from tools.build_services import collector, kubernetes_provider, pulumi_cli, python_language_host, standin

pytestmark = [
    pytest.mark.xdist_group("kubernetes"),
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("containerd") is None,
                       reason="the test cluster needs root and containerd"),
]

STANDINS = ("tempo", "loki", "alloy", "grafana")
# The images the stacks run: ours, under tags that name what they are.
IMAGES = {"prometheusImage": "trace-stack-test/prometheus:debian",
          "otelCollectorImage": "trace-stack-test/otel-collector:0.91.0",
          **{f"{name}Image": f"trace-stack-test/{name}-standin:1" for name in STANDINS}}


def _libraries(binary: Path) -> dict:
    """A dynamically linked binary's libraries and loader, at their paths, as ldd finds them."""
    found = re.findall(r"(/\S+) \(0x", subprocess.run(["ldd", str(binary)], capture_output=True, text=True).stdout)
    return {path: Path(path).resolve() for path in found}


def _import_images(cluster) -> None:
    etc = {"/etc/passwd": b"root:x:0:0::/:/sbin/nologin\nnobody:x:65534:65534::/:/sbin/nologin\n",
           "/etc/group": b"root:x:0:\nnogroup:x:65534:\n"}
    prometheus = Path(shutil.which("prometheus") or "/usr/bin/prometheus")
    cluster.import_image(IMAGES["prometheusImage"], {
        "/bin/prometheus": prometheus, **_libraries(prometheus), **etc,
        "/usr/share/prometheus/console_libraries": Dir(), "/usr/share/prometheus/consoles": Dir(),
        "/prometheus": Dir(0o777, 65534, 65534)}, ["/bin/prometheus"])
    otelcol = built(collector)
    cluster.import_image(IMAGES["otelCollectorImage"], {"/otelcol-contrib": otelcol, **_libraries(otelcol), **etc},
                         ["/otelcol-contrib"])
    binary = built(standin)
    for name in STANDINS:
        cluster.import_image(IMAGES[f"{name}Image"], {"/standin": binary, **etc}, ["/standin", name])


class Project:
    """A copy of the project whose commands run inside the cluster's network namespace, with the
    real CLI, language host, kubernetes plugin and the cluster's kubectl first on PATH, and its own
    Pulumi home and state."""

    def __init__(self, cluster, directory: Path):
        self.cluster, self.directory = cluster, directory / "project"
        shutil.copytree(ROOT, self.directory, ignore=shutil.ignore_patterns(
            "venv", "venv.old", ".git", "__pycache__", "tests", "bench", "tools", "Pulumi.*.yaml"))
        os.symlink(ROOT / "venv", self.directory / "venv")
        for name in ("home", "pulumi-home", "state"):
            (directory / name).mkdir()
        # The v3.68 language host takes no `virtualenv` option from the 3.274 CLI (it came as a flag
        # then): it runs the program with the first python3 on PATH, so the venv's comes first.
        path = [built(pulumi_cli).parent, built(python_language_host), built(kubernetes_provider), cluster.bin,
                ROOT / "venv" / "bin"]
        self.env = {**cluster.env(), "PATH": ":".join(map(str, path)) + ":/usr/bin:/bin",
                    "HOME": str(directory / "home"), "PULUMI_HOME": str(directory / "pulumi-home"),
                    "PULUMI_BACKEND_URL": f"file://{directory / 'state'}", "PULUMI_SKIP_UPDATE_CHECK": "true",
                    "PULUMI_CONFIG_PASSPHRASE": ""}
        self._installed()

    def _installed(self) -> None:
        """What a `pulumi install` that succeeded leaves: up's record of it."""
        code = ("from stack import lifecycle; r = lifecycle._install_record(); r.parent.mkdir(parents=True); "
                "r.write_text(lifecycle._install_inputs(lifecycle.auto.LocalWorkspace(work_dir='.').pulumi_version))")
        self.run([sys.executable, "-c", code])

    def run(self, argv: list, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(self.cluster.command(argv), cwd=self.directory, env=self.env, capture_output=True,
                                text=True, timeout=timeout)
        assert result.returncode == 0 or not check, f"{argv}: {result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        return result

    def command(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return self.run([sys.executable, "-m", "stack", *args], timeout=timeout, check=False)

    def new_stack(self, stack: str, **settings) -> None:
        self.run(["pulumi", "stack", "init", stack, "--non-interactive"])
        pairs = [item for key, value in {"platform": "kubernetes", **IMAGES, **settings}.items()
                 for item in ("--plaintext", f"{key}={value}")]
        self.run(["pulumi", "config", "set-all", "--stack", stack, *pairs])

    def kubectl(self, *args: str) -> subprocess.CompletedProcess:
        return self.run(["kubectl", *args])


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    cluster = shared_cluster()
    _import_images(cluster)
    return Project(cluster, tmp_path_factory.mktemp("kubernetes"))


def _pods(project: Project, namespace: str) -> dict[str, dict]:
    pods = json.loads(project.kubectl("get", "pods", "--namespace", namespace, "--output=json").stdout)["items"]
    return {pod["metadata"]["labels"]["trace-stack.service"]: pod for pod in pods}


def _ready(pod: dict) -> bool:
    return pod["status"].get("phase") == "Running" and all(
        status.get("ready") for status in pod["status"].get("containerStatuses", []))


def test_two_stacks_up_checked_drifted_repaired_and_down_on_a_real_cluster(project):
    # Inside the cluster's network namespace the ports are its own; below Linux's ephemeral range
    # (32768 and up), where the CLI's own connections to its plugins land.
    project.new_stack("kate", portOffset="-12000")
    project.new_stack("lena", portOffset="-11000")
    lena_up = subprocess.Popen(project.cluster.command([sys.executable, "-m", "stack", "up", "--stack", "lena"]),
                               cwd=project.directory, env=project.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    up = project.command("up", "--stack", "kate", "--timeout", "90")
    assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-4000:]
    lena_output = lena_up.communicate(timeout=300)[0]
    assert lena_up.returncode == 0, lena_output[-4000:]
    assert _ready(_pods(project, "trace-stack-lena")["grafana"])

    # A third developer who names a namespace another stack owns is stopped before anything changes.
    project.new_stack("mia", portOffset="-10000", namespace="trace-stack-kate")
    refused = project.command("up", "--stack", "mia")
    assert refused.returncode == 2 and "up: namespace trace-stack-kate belongs to stack 'kate'" in refused.stderr, \
        refused.stdout + refused.stderr

    assert "install           0.0s  skipped" in up.stdout
    pods = _pods(project, "trace-stack-kate")
    assert sorted(pods) == sorted(service.name for service in SERVICES)
    assert all(_ready(pod) for pod in pods.values()), {name: pod["status"] for name, pod in pods.items()}
    # Every line of the check that up ran says ready, with what answered.
    for service in SERVICES:
        assert re.search(rf"^{re.escape(service.name)}\s+ready\s", up.stdout, re.M), up.stdout

    check = project.command("check", "--stack", "kate", "--timeout", "60")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "Grafana → Prometheus: ok" in check.stdout
    # The collector's version is its running container's word, in the line it logged as it started.
    assert re.search(r"^otel-collector\s+ready .* 0\.91\.0$", check.stdout, re.M), check.stdout
    collector_log = project.kubectl("logs", "deployment/otel-collector", "--namespace", "trace-stack-kate").stdout
    assert [found.group("version") for found in re.finditer(SERVICES_BY_NAME["otel-collector"].build_info.log_line,
                                                            collector_log)] == ["0.91.0"]

    # The other developer's stack is checked and removed meanwhile, and never notices this one.
    lena = subprocess.Popen(project.cluster.command(
        ["sh", "-c", f"{sys.executable} -m stack check --stack lena --timeout 30 && "
                     f"{sys.executable} -m stack down --stack lena --delete-data"]),
        cwd=project.directory, env=project.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    assert project.command("drift", "--stack", "kate").returncode == 0
    project.kubectl("scale", "deployment/tempo", "--replicas=0", "--namespace", "trace-stack-kate")
    drift = project.command("drift", "--stack", "kate")
    assert drift.returncode == 1, drift.stdout + drift.stderr
    assert re.search(r"down\s+kubernetes:apps/v1:Deployment trace-stack-tempo: tempo is down \(scaled to 0\)",
                     drift.stdout), drift.stdout

    repair = project.command("up", "--stack", "kate", "--timeout", "90")
    assert repair.returncode == 0, repair.stdout[-4000:] + repair.stderr[-4000:]
    assert "tempo was down (scaled to 0): started" in repair.stdout
    assert _ready(_pods(project, "trace-stack-kate")["tempo"])

    down = project.command("down", "--stack", "kate")
    assert down.returncode == 0, down.stdout + down.stderr
    claims = json.loads(project.kubectl("get", "pvc", "--namespace", "trace-stack-kate", "--output=json").stdout)
    assert sorted(claim["metadata"]["name"] for claim in claims["items"]) == \
        sorted(f"{service.name}-data" for service in SERVICES if service.data_dir)
    assert not project.kubectl("get", "deployments", "--namespace", "trace-stack-kate", "--output=name").stdout

    lena_output = lena.communicate(timeout=120)[0]
    assert lena.returncode == 0, lena_output[-4000:]
    assert "removed the data volumes: trace-stack-lena/prometheus-data" in lena_output
