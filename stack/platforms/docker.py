"""The commands on a Docker engine: its containers asked with the docker CLI. Every problem is one
line a person can act on."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable, Optional

from program.services import data_volume_names, docker_name
from program.settings import StackConfig

from . import PreflightError, run_tool, taken_ports
from ..logs import LOG_FILE, FileSink

DOCKER_TIMEOUT_SECONDS = 15
WORKLOAD_TYPE = "docker:index/container:Container"
# How long before a container's recorded start its process's log is read from.
LOG_SLACK_SECONDS = 10


def docker(config: StackConfig, *args: str) -> subprocess.CompletedProcess:
    """The docker CLI against the stack's engine (DOCKER_HOST, or dockerHost when set)."""
    env = {**os.environ, **({"DOCKER_HOST": config.docker_host} if config.docker_host else {})}
    return run_tool("docker", "https://docs.docker.com/engine/install/", list(args), DOCKER_TIMEOUT_SECONDS,
                    f"the Docker engine at {_engine(config)}", env)


def _engine(config: StackConfig) -> str:
    return config.docker_host or os.environ.get("DOCKER_HOST") or "the local socket"


@dataclass(frozen=True)
class Container:
    """A trace-stack container on the engine, of this stack or another."""

    name: str
    stack: str
    service: str
    state: str  # running, exited, restarting, created, paused, dead
    status: str  # as `docker ps` says it: "Exited (137) 2 minutes ago"
    ports: frozenset[int]  # host ports it publishes now (a container that is not running publishes none)
    mounts: str  # `docker ps --no-trunc`'s mounts: sources and volume names, comma-separated

    @property
    def down(self) -> Optional[str]:
        """How it is down (`exited, code 137`), or None when it runs."""
        if self.state == "running":
            return None
        code = re.search(r"\((-?\d+)\)", self.status)
        return f"{self.state}, code {code.group(1)}" if code else self.state

    def mounts_path(self, path: str) -> bool:
        return f",{os.path.normpath(path)}," in f",{self.mounts},"


_PS_FIELDS = ('{{.Label "trace-stack.stack"}}', '{{.Label "trace-stack.service"}}', "{{.Names}}", "{{.State}}",
              "{{.Status}}", "{{.Ports}}", "{{.Mounts}}")


def trace_stack_containers(config: StackConfig) -> list[Container]:
    """Every trace-stack container on the stack's engine, whichever stack it belongs to (its
    labels say). Raises PreflightError when the engine does not answer."""
    result = docker(config, "ps", "--all", "--no-trunc", "--filter", "label=trace-stack.stack",
                    "--format", "\t".join(_PS_FIELDS))
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["no answer"])[-1]
        raise PreflightError(f"the Docker engine at {_engine(config)} is unreachable: {reason}")
    containers = []
    for line in result.stdout.splitlines():
        fields = line.split("\t")
        if len(fields) != len(_PS_FIELDS):
            continue
        stack, service, name, state, status, ports, mounts = fields
        containers.append(Container(name, stack, service, state, status,
                                    frozenset(int(port) for port in re.findall(r":(\d+)->", ports)), mounts))
    return containers


def containers_down(stack: str, containers: list[Container]) -> dict[str, str]:
    """The stack's containers that exist but do not run: service -> how (`exited, code 137`)."""
    return {container.service: container.down for container in containers
            if container.stack == stack and container.down}


def check_ports(config: StackConfig, containers: list[Container]) -> None:
    if config.docker_host:
        return  # the ports are on the remote host; its engine refuses a taken one at create
    ours = {port for container in containers if container.stack == config.stack for port in container.ports}
    taken = taken_ports(config, ours)
    if taken:
        raise PreflightError(f"host ports already taken by something that is not stack {config.stack!r}: "
                             f"{', '.join(taken)}; stop it, or choose another portOffset "
                             f"(`pulumi config set portOffset 1000`)")


def check_log_dir_is_its_own(config: StackConfig, containers: list[Container]) -> None:
    """Two stacks whose Alloys tail one directory each get the other's app logs."""
    readers = sorted({container.stack for container in containers
                      if container.stack != config.stack and container.mounts_path(config.log_dir)})
    if readers:
        suggestion = str(Path(config.log_dir).parent / config.stack)
        raise PreflightError(
            f"logDir {config.log_dir} is already read by stack {', '.join(readers)} on this Docker engine: two "
            f"stacks reading one logDir get each other's app logs; give stack {config.stack!r} its own "
            f"(`pulumi config set logDir {suggestion} --stack {config.stack}`)")


def check_log_dir(config: StackConfig, ask: Optional[Callable[[str], bool]]) -> None:
    """The log directory must exist before Docker mounts it, or Docker makes it owned by root."""
    if config.docker_host or Path(config.log_dir).is_dir():
        return
    if ask is not None and ask(f"logDir {config.log_dir} does not exist. Create it?"):
        Path(config.log_dir).mkdir(parents=True)
        return
    raise PreflightError(f"logDir {config.log_dir} does not exist: create it (`mkdir -p {config.log_dir}`) "
                         f"or run `up --create-log-dir`")


def preflight(config: StackConfig, ask: Optional[Callable[[str], bool]]) -> dict[str, str]:
    """Everything that would stop `up`, checked before anything changes; returns the stack's
    containers that were down, as they were."""
    containers = trace_stack_containers(config)
    check_ports(config, containers)
    check_log_dir_is_its_own(config, containers)
    check_log_dir(config, ask)
    return containers_down(config.stack, containers)


def workloads_down(config: StackConfig) -> dict[str, str]:
    return containers_down(config.stack, trace_stack_containers(config))


def reach(config: StackConfig) -> None:
    """Docker publishes the ports itself."""


def process_log(config: StackConfig, service: str) -> Optional[str]:
    """What the service's container has logged, its stdout and stderr, from a little before it
    last started (the engine may note the start after the process's first lines), so its running
    process's lines come last; None when the engine cannot say."""
    container = docker_name(config.stack, service)
    try:
        started = docker(config, "inspect", "--type", "container", "--format", "{{.State.StartedAt}}", container)
        if started.returncode != 0 or not re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", started.stdout):
            return None
        # UTC, to the second: the slack covers the rest.
        since = datetime.fromisoformat(started.stdout[:19] + "+00:00").timestamp() - LOG_SLACK_SECONDS
        if since <= 0:  # never started: the engine says 0001-01-01
            return None
        logs = docker(config, "logs", "--since", f"{since:.0f}", container)
    except PreflightError:
        return None
    return logs.stdout + logs.stderr if logs.returncode == 0 else None


def after_down(config: StackConfig) -> None:
    """Nothing of the stack is left on this machine."""


def data_volumes(config: StackConfig, every_release: bool = False) -> list[str]:
    return data_volume_names(config.stack, None if every_release else config.versions)


def delete_data(config: StackConfig) -> Optional[str]:
    """Remove the data volumes, of every version profile's releases; why that failed, or None."""
    result = docker(config, "volume", "rm", *data_volumes(config, every_release=True))
    errors = result.stderr.strip().splitlines()
    only_missing = bool(errors) and all("no such volume" in line.lower() for line in errors)
    if result.returncode == 0 or only_missing:
        return None
    return result.stderr.strip() or f"`docker volume rm` exited {result.returncode}"


def log_sink(config: StackConfig, file_name: str = LOG_FILE) -> FileSink:
    """A file in logDir, which Alloy tails."""
    return FileSink(Path(config.log_dir) / file_name)
