"""Where each published port is, with the stack's offset and on the address it is published on,
and the URLs a developer reaches them at."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .services import OUTPUT_PORTS, SERVICES, Port

LOOPBACK = "127.0.0.1"

if TYPE_CHECKING:
    from .settings import StackConfig


def published(config: "StackConfig") -> tuple[Port, ...]:
    """The ports the stack publishes on the developer's machine (or the Docker host), on its platform."""
    return tuple(port for service in SERVICES for port in service.published_on(config.platform))


def published_ports(config: "StackConfig") -> dict[str, int]:
    """Host port of every published port, by port name, with the stack's offset applied."""
    return {port.name: config.host_port(port.host) for port in published(config)}


def port_address(config: "StackConfig", port: Port) -> str:
    """The host address a published port is bound to."""
    if config.bind_is_loopback or port.public or config.expose_backends:
        return config.bind_address
    return LOOPBACK


def published_addresses(config: "StackConfig") -> dict[str, tuple[str, int]]:
    """Address and host port of every published port, by port name."""
    return {port.name: (port_address(config, port), config.host_port(port.host)) for port in published(config)}


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
    """Every stack output (a name in the contract) and its URL, on the address its port is bound to."""
    host = url_host(config)
    return {output: f"http://{host if port_address(config, port) == config.bind_address else 'localhost'}:"
                    f"{config.host_port(port.host)}{port.output_path}"
            for output, port in OUTPUT_PORTS.items()}
