"""Checks before anything changes: each problem is one line a person can act on."""

from __future__ import annotations

import errno
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Callable, Optional

from program.ports import published_addresses
from program.settings import StackConfig

DOCKER_TIMEOUT_SECONDS = 15


class PreflightError(Exception):
    """Something must be fixed first; the message says what and how."""


def docker(config: StackConfig, *args: str) -> subprocess.CompletedProcess:
    """The docker CLI against the stack's engine (DOCKER_HOST, or dockerHost when set)."""
    binary = shutil.which("docker")
    if binary is None:
        raise PreflightError("the docker CLI is not installed: see https://docs.docker.com/engine/install/")
    env = {**os.environ, **({"DOCKER_HOST": config.docker_host} if config.docker_host else {})}
    try:
        return subprocess.run([binary, *args], capture_output=True, text=True, env=env, timeout=DOCKER_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        raise PreflightError(f"the Docker engine at {_engine(config)} did not answer within "
                             f"{DOCKER_TIMEOUT_SECONDS}s") from None


def _engine(config: StackConfig) -> str:
    return config.docker_host or os.environ.get("DOCKER_HOST") or "the local socket"


def check_docker(config: StackConfig) -> None:
    result = docker(config, "version", "--format", "{{.Server.Version}}")
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["no answer"])[-1]
        raise PreflightError(f"the Docker engine at {_engine(config)} is unreachable: {reason}")


def ports_of_this_stack(config: StackConfig) -> set[int]:
    """Host ports this stack's own running containers publish (so they do not count as taken)."""
    result = docker(config, "ps", "--filter", f"label=trace-stack.stack={config.stack}", "--format", "{{.Ports}}")
    return {int(port) for port in re.findall(r":(\d+)->", result.stdout)} if result.returncode == 0 else set()


def taken_ports(config: StackConfig, ours: set[int]) -> list[str]:
    """Ports this stack wants that something else already listens on, as `name port` strings."""
    taken = []
    for name, (address, port) in published_addresses(config).items():
        if port in ours:
            continue
        with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as probe:
            try:
                probe.bind((address, port))
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    taken.append(f"{name} {port}")
    return taken


def check_ports(config: StackConfig) -> None:
    if config.docker_host:
        return  # the ports are on the remote host; its engine refuses a taken one at create
    taken = taken_ports(config, ports_of_this_stack(config))
    if taken:
        raise PreflightError(f"host ports already taken by something that is not stack {config.stack!r}: "
                             f"{', '.join(taken)}; stop it, or choose another portOffset "
                             f"(`pulumi config set portOffset 1000`)")


def check_log_dir(config: StackConfig, ask: Optional[Callable[[str], bool]]) -> None:
    """The log directory must exist before Docker mounts it, or Docker makes it owned by root."""
    if config.docker_host or Path(config.log_dir).is_dir():
        return
    if ask is not None and ask(f"logDir {config.log_dir} does not exist. Create it?"):
        Path(config.log_dir).mkdir(parents=True)
        return
    raise PreflightError(f"logDir {config.log_dir} does not exist: create it (`mkdir -p {config.log_dir}`) "
                         f"or run `up --create-log-dir`")


def preflight(config: StackConfig, ask: Optional[Callable[[str], bool]]) -> None:
    check_docker(config)
    check_ports(config)
    check_log_dir(config, ask)
