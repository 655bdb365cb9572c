"""The URLs a developer reaches the stack at: every published port, with the stack's offset, on
the address it is published on."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .services import OUTPUT_PORTS, PORTS

if TYPE_CHECKING:
    from .settings import StackConfig


def published_ports(config: "StackConfig") -> dict[str, int]:
    """Host port of every published port, by port name, with the stack's offset applied."""
    return {port.name: config.host_port(port.host) for port in PORTS if port.host is not None}


def url_host(config: "StackConfig") -> str:
    """The host name a developer's browser uses to reach the published ports.

    Ports bound to loopback on a remote Docker host are reached through an SSH tunnel, so they
    are on localhost too.
    """
    address = ipaddress.ip_address(config.bind_address)
    if address.is_loopback:
        return "localhost"
    if address.is_unspecified:
        remote = urlsplit(config.docker_host or "")
        return remote.hostname if remote.scheme in ("tcp", "ssh") and remote.hostname else "localhost"
    return f"[{address}]" if address.version == 6 else str(address)


def endpoint_urls(config: "StackConfig") -> dict[str, str]:
    """Every stack output (a name in the contract) and its URL."""
    host = url_host(config)
    return {output: f"http://{host}:{config.host_port(port.host)}{port.output_path}"
            for output, port in OUTPUT_PORTS.items()}
