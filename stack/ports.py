"""Every port the stack uses, and the URLs a developer reaches them at.

One table serves the containers' published ports, the config files' listen addresses and the
stack outputs, so they cannot disagree.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from .config import StackConfig


@dataclass(frozen=True)
class Port:
    service: str
    name: str  # how config templates refer to it: port.<name>
    internal: int
    host: Optional[int] = None  # host port at portOffset 0; None: reachable on the stack's network only


PORTS = (
    Port("grafana", "grafana_http", 3000, 33000),
    Port("prometheus", "prometheus_http", 9090, 39090),
    Port("tempo", "tempo_http", 3200, 33200),
    Port("tempo", "tempo_otlp_grpc", 4317),
    Port("tempo", "tempo_otlp_http", 4318),
    Port("loki", "loki_http", 3100, 33100),
    Port("loki", "loki_grpc", 9096),
    Port("otel-collector", "collector_otlp_http", 4318, 34318),
    Port("otel-collector", "collector_otlp_grpc", 4317, 34317),
    Port("otel-collector", "collector_prometheus", 8889, 38889),
    Port("otel-collector", "collector_health", 13133, 33133),
    Port("otel-collector", "collector_telemetry", 8888),
    Port("alloy", "alloy_http", 12345, 12345),
)

PORTS_BY_NAME = {port.name: port for port in PORTS}

# Stack output name -> (port, path). The names are part of the contract (SPEC.md).
OUTPUTS = {
    "grafana_url": ("grafana_http", ""),
    "prometheus_url": ("prometheus_http", ""),
    "tempo_url": ("tempo_http", ""),
    "loki_url": ("loki_http", ""),
    "alloy_url": ("alloy_http", ""),
    "otlp_http_endpoint": ("collector_otlp_http", ""),
    "otlp_grpc_endpoint": ("collector_otlp_grpc", ""),
    "collector_metrics_url": ("collector_prometheus", "/metrics"),
    "collector_health_url": ("collector_health", "/"),
}


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
    host = url_host(config)
    ports = published_ports(config)
    return {output: f"http://{host}:{ports[port]}{path}" for output, (port, path) in OUTPUTS.items()}
