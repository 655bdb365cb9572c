"""The commands on Kubernetes: the stack's namespace asked with kubectl (the context and namespace
the stack's settings name), and the stack's URLs kept answering on this machine by port-forwards
that a small supervisor restarts whenever a pod is replaced (stack/port_forward.py). Every problem
is one line a person can act on."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

from program.ports import LOOPBACK, port_address, published_addresses, url_host
from program.services import PROJECT, SERVICES, data_claim_names
from program.settings import StackConfig

from . import PreflightError, run_tool, taken_ports
from ..logs import PushSink
from ..pulumi_cli import PROJECT_DIR, local_state

WORKLOAD_TYPE = "kubernetes:apps/v1:Deployment"
KUBECTL_TIMEOUT_SECONDS = 15
# How long the port-forwards may take to listen once started.
FORWARD_START_SECONDS = 30
PUSH_PATH = "/loki/api/v1/raw"
KUBECTL_INSTALL = "https://kubernetes.io/docs/tasks/tools/"


def _kubectl(config: StackConfig, *args: str) -> subprocess.CompletedProcess:
    context = ["--context", config.kube_context] if config.kube_context else []
    return run_tool("kubectl", KUBECTL_INSTALL, [*context, f"--request-timeout={KUBECTL_TIMEOUT_SECONDS}s", *args],
                    KUBECTL_TIMEOUT_SECONDS + 5, f"the cluster of {_context(config)}")


def _context(config: StackConfig) -> str:
    return f"context {config.kube_context}" if config.kube_context else "the kubeconfig's current context"


def _failed(config: StackConfig, result: subprocess.CompletedProcess) -> PreflightError:
    reason = (result.stderr.strip().splitlines() or ["no answer"])[-1]
    return PreflightError(f"the cluster of {_context(config)} is unreachable: {reason}")


def _namespace(config: StackConfig) -> Optional[dict]:
    """The stack's namespace as the cluster has it, or None when there is none."""
    result = _kubectl(config, "get", "namespace", config.namespace, "--output=json")
    if result.returncode != 0:
        if "NotFound" in result.stderr or "not found" in result.stderr:
            return None
        raise _failed(config, result)
    return json.loads(result.stdout)


def preflight(config: StackConfig, ask: Optional[Callable[[str], bool]]) -> dict[str, str]:
    """The cluster answers, the namespace is this stack's or free, and no other program listens on
    the ports the stack's port-forwards take; returns the services whose workload does not run."""
    stop_forwards(config)  # this stack's own forwards hold its ports: `up` opens them anew
    namespace = _namespace(config)
    owner = ((namespace or {}).get("metadata", {}).get("labels") or {}).get("trace-stack.stack")
    if owner and owner != config.stack:
        raise PreflightError(
            f"namespace {config.namespace} belongs to stack {owner!r} ({_context(config)}): two stacks in one "
            f"namespace would share their data; give stack {config.stack!r} its own "
            f"(`pulumi config set namespace {PROJECT}-{config.stack} --stack {config.stack}`)")
    taken = taken_ports(config, set())
    if taken:
        raise PreflightError(f"ports on this machine already taken by something that is not stack {config.stack!r}: "
                             f"{', '.join(taken)}; the stack's port-forwards need them: stop it, or choose another "
                             f"portOffset (`pulumi config set portOffset 1000`)")
    return workloads_down(config) if namespace else {}


def workloads_down(config: StackConfig) -> dict[str, str]:
    """The stack's Deployments that run no pod: service -> how (`scaled to 0`, `0 of 1 ready`)."""
    result = _kubectl(config, "get", "deployments", "--namespace", config.namespace,
                      f"--selector=trace-stack.stack={config.stack}", "--output=json")
    if result.returncode != 0:
        raise _failed(config, result)
    down = {}
    for deployment in json.loads(result.stdout).get("items", []):
        service = deployment["metadata"].get("labels", {}).get("trace-stack.service")
        wanted, ready = deployment["spec"].get("replicas", 1), deployment.get("status", {}).get("readyReplicas", 0)
        if service and wanted == 0:
            down[service] = "scaled to 0"
        elif service and not ready:
            down[service] = f"0 of {wanted} ready"
    return down


def data_volumes(config: StackConfig, every_release: bool = False) -> list[str]:
    return [f"{config.namespace}/{claim}" for claim in data_claim_names(None if every_release else config.versions)]


def delete_data(config: StackConfig) -> Optional[str]:
    """Remove the claims (of every version profile's releases), and the namespace `down` kept for
    them; why that failed, or None."""
    for command in (("delete", "persistentvolumeclaims", "--namespace", config.namespace, *data_claim_names()),
                    ("delete", "namespace", config.namespace)):
        result = _kubectl(config, *command, "--ignore-not-found", "--wait=false")
        if result.returncode != 0:
            return result.stderr.strip() or f"`kubectl {' '.join(command[:2])}` exited {result.returncode}"
    return None


def process_log(config: StackConfig, service: str) -> Optional[str]:
    """What the service's running container has logged (its pod is one at a time: Recreate, or
    rolled out before `up` ends); None when the cluster cannot say."""
    try:
        result = _kubectl(config, "logs", f"deployment/{service}", "--namespace", config.namespace)
    except PreflightError:
        return None
    return result.stdout if result.returncode == 0 else None


def log_sink(config: StackConfig, file_name: str = "") -> PushSink:
    """Alloy's push endpoint, through its port-forward (lines pushed there have no file)."""
    address, port = published_addresses(config)["alloy_push"]
    return PushSink(f"http://{'localhost' if address == LOOPBACK else url_host(config)}:{port}{PUSH_PATH}")


# --- the port-forwards ----------------------------------------------------------------------------


def _forwards_pid(config: StackConfig) -> Path:
    return local_state(f"forward-{config.stack}.pid")


def forward_spec(config: StackConfig) -> dict:
    """What the supervisor keeps open: one `kubectl port-forward` per service and address."""
    forwards: dict[tuple[str, str], list[list[int]]] = {}
    for service in SERVICES:
        for port in service.published_on(config.platform):
            forwards.setdefault((service.name, port_address(config, port)), []).append(
                [config.host_port(port.host), port.internal])
    return {"kubectl": shutil.which("kubectl"), "context": config.kube_context, "namespace": config.namespace,
            "forwards": [{"service": service, "address": address, "ports": ports}
                         for (service, address), ports in forwards.items()]}


def _running(pid_file: Path) -> Optional[tuple[int, dict]]:
    """The supervisor's pid and spec, when it still runs."""
    try:
        recorded = json.loads(pid_file.read_text())
        os.kill(recorded["pid"], 0)
        return recorded["pid"], recorded["spec"]
    except (OSError, ValueError, KeyError):
        return None


def stop_forwards(config: StackConfig) -> None:
    pid_file = _forwards_pid(config)
    running = _running(pid_file)
    if running:
        # Killed, not asked: a kubectl port-forward takes a second or two over SIGTERM, and holds
        # nothing that needs a clean exit (the kernel closes its sockets).
        try:
            os.killpg(running[0], signal.SIGKILL)
        except OSError:
            pass
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _running(pid_file):
            time.sleep(0.05)
    pid_file.unlink(missing_ok=True)


def reach(config: StackConfig) -> None:
    """Keep the stack's URLs answering on this machine: start the port-forwards' supervisor unless
    it runs with this very spec, then wait until every forwarded port listens."""
    spec, pid_file = forward_spec(config), _forwards_pid(config)
    if spec["kubectl"] is None:
        raise PreflightError(f"kubectl is not installed: see {KUBECTL_INSTALL}")
    running = _running(pid_file)
    if not running or running[1] != spec:
        stop_forwards(config)
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        with pid_file.with_suffix(".log").open("ab") as log:
            # Its own session, so it outlives this command and stops with its port-forwards as one group.
            process = subprocess.Popen([sys.executable, "-m", "stack.port_forward", json.dumps(spec)],
                                       cwd=PROJECT_DIR, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                       start_new_session=True)
        pid_file.write_text(json.dumps({"pid": process.pid, "spec": spec}))
    _wait_listening(config, pid_file)


def after_down(config: StackConfig) -> None:
    stop_forwards(config)


def _wait_listening(config: StackConfig, pid_file: Path) -> None:
    deadline = time.monotonic() + FORWARD_START_SECONDS
    waiting = dict(published_addresses(config))
    while waiting and time.monotonic() < deadline:
        for name, (address, port) in list(waiting.items()):
            try:
                socket.create_connection((address, port), timeout=0.5).close()
                del waiting[name]
            except OSError:
                pass
        if waiting:
            time.sleep(0.2)
    if waiting:
        raise PreflightError(f"the port-forwards to namespace {config.namespace} did not listen within "
                             f"{FORWARD_START_SECONDS}s ({', '.join(waiting)}): see {pid_file.with_suffix('.log')}")
