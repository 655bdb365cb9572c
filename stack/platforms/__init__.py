"""What the commands ask of the platform a stack runs on, one module each with the same functions:

- WORKLOAD_TYPE: the resource type of a service's workload in the stack (drift and repairs name them);
- preflight(config, ask): everything that would stop `up`, checked before anything changes; returns
  the services whose workload exists but does not run (service -> how);
- workloads_down(config): the same, asked again (drift);
- reach(config): make the stack's URLs answer from this machine (check, after up);
- process_log(config, service): what the service's running process has logged (check reads a
  version there that no published port says), or None when the platform cannot say;
- after_down(config): what `down` leaves behind on this machine, undone;
- data_volumes(config, every_release), delete_data(config): the stack's data (its release's, or
  every version profile's), kept by `down` unless asked;
- log_sink(config): where the app's Pino lines go for Alloy to read (`logs attach`, `check --smoke`).
"""

from __future__ import annotations

import errno
import importlib
import shutil
import socket
import subprocess
from types import ModuleType
from typing import Optional

from program.ports import published_addresses
from program.settings import StackConfig


class PreflightError(Exception):
    """Something must be fixed first; the message says what and how."""


def platform_of(config: StackConfig) -> ModuleType:
    return importlib.import_module(f".{config.platform}", __package__)


def run_tool(tool: str, install_url: str, args: list[str], timeout: float, asked: str,
             env: Optional[dict[str, str]] = None) -> subprocess.CompletedProcess:
    """`tool args` (docker, kubectl), its output captured; PreflightError when it is not installed,
    or when what it asks (`asked`: the Docker engine at …) does not answer within `timeout`."""
    binary = shutil.which(tool)
    if binary is None:
        raise PreflightError(f"{tool} is not installed: see {install_url}")
    try:
        return subprocess.run([binary, *args], capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise PreflightError(f"{asked} did not answer within {timeout:.0f}s") from None


def taken_ports(config: StackConfig, ours: set[int]) -> list[str]:
    """Ports this stack wants that something else listens on, as `name port` strings.

    Each is test-bound with SO_REUSEADDR, as Docker's port proxy binds: a port whose last
    connections linger in TIME-WAIT or FIN-WAIT-2 (a browser tab on a container just removed)
    is free to it, and only a socket that listens there takes it."""
    taken = []
    for name, (address, port) in published_addresses(config).items():
        if port in ours:
            continue
        with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((address, port))
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    taken.append(f"{name} {port}")
    return taken
