"""The six services, each a small declaration: image, command, config files, data, ports.

Pure data derived from a StackConfig; stack/component.py turns it into Docker resources.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional

from .config import StackConfig
from .ports import PORTS, PORTS_BY_NAME, Port

# Where the app's log directory appears inside the Alloy container.
LOG_MOUNT = "/var/log/app"
GRAFANA_DASHBOARDS_DIR = "/etc/grafana/dashboards"

# Where each image keeps its data, owned by the user the image runs as, so a new named volume
# mounted there inherits that ownership.
DATA_DIRS = {
    "grafana": "/var/lib/grafana",
    "prometheus": "/prometheus",
    "tempo": "/var/tempo",
    "loki": "/loki",
    "alloy": "/var/lib/alloy/data",
}


@dataclass(frozen=True)
class ConfigFile:
    template: str  # path below configs/
    path: str  # where the service reads it inside the container


@dataclass(frozen=True)
class HostMount:
    host_path: str
    container_path: str
    read_only: bool = True


@dataclass(frozen=True)
class Service:
    name: str
    image: str
    # None keeps the image's own command; a list replaces it whole, defaults included.
    command: Optional[tuple[str, ...]] = None
    env: Mapping[str, str] = field(default_factory=dict)
    # Environment variables whose value is a secret config key: name -> config key.
    secret_env: Mapping[str, str] = field(default_factory=dict)
    config_files: tuple[ConfigFile, ...] = ()
    host_mounts: tuple[HostMount, ...] = ()
    depends_on: tuple[str, ...] = ()

    @property
    def data_dir(self) -> Optional[str]:
        return DATA_DIRS.get(self.name)

    @property
    def published_ports(self) -> tuple[Port, ...]:
        return tuple(port for port in PORTS if port.service == self.name and port.host is not None)


def declare_services(config: StackConfig) -> list[Service]:
    images = config.images
    return [
        Service(
            name="prometheus",
            image=images["prometheus"],
            # The image's CMD, restated because a command replaces it, plus ours.
            command=(
                "--config.file=/etc/prometheus/prometheus.yml",
                f"--storage.tsdb.path={DATA_DIRS['prometheus']}",
                "--web.console.libraries=/usr/share/prometheus/console_libraries",
                "--web.console.templates=/usr/share/prometheus/consoles",
                f"--storage.tsdb.retention.time={config.prometheus_retention}",
                "--enable-feature=exemplar-storage",
                # Tempo's metrics-generator writes span metrics and the service graph here.
                "--web.enable-remote-write-receiver",
            ),
            config_files=(ConfigFile("prometheus.yaml", "/etc/prometheus/prometheus.yml"),),
        ),
        Service(
            name="tempo",
            image=images["tempo"],
            command=("-config.file=/etc/tempo/tempo.yaml",),
            config_files=(ConfigFile("tempo.yaml", "/etc/tempo/tempo.yaml"),),
            # The metrics-generator remote-writes to Prometheus from its first span.
            depends_on=("prometheus",),
        ),
        Service(
            name="loki",
            image=images["loki"],
            command=("-config.file=/etc/loki/loki.yaml",),
            config_files=(ConfigFile("loki.yaml", "/etc/loki/loki.yaml"),),
        ),
        Service(
            name="otel-collector",
            image=images["otel-collector"],
            command=("--config=/etc/otelcol-contrib/config.yaml",),
            config_files=(ConfigFile("otel-collector.yaml", "/etc/otelcol-contrib/config.yaml"),),
            depends_on=("tempo",),
        ),
        Service(
            name="alloy",
            image=images["alloy"],
            command=(
                "run",
                "/etc/alloy/config.alloy",
                f"--storage.path={DATA_DIRS['alloy']}",
                # Alloy 1.5 listens on 127.0.0.1 by default: unreachable from outside the container.
                f"--server.http.listen-addr=0.0.0.0:{PORTS_BY_NAME['alloy_http'].internal}",
            ),
            config_files=(ConfigFile("alloy.alloy", "/etc/alloy/config.alloy"),),
            host_mounts=(HostMount(config.log_dir, LOG_MOUNT, read_only=True),),
            depends_on=("loki",),
        ),
        Service(
            name="grafana",
            image=images["grafana"],
            env={
                "GF_SECURITY_ADMIN_USER": config.grafana_admin_user,
                "GF_AUTH_ANONYMOUS_ENABLED": str(config.grafana_anonymous_enabled).lower(),
                "GF_AUTH_ANONYMOUS_ORG_ROLE": config.grafana_anonymous_role,
                "GF_ANALYTICS_REPORTING_ENABLED": "false",
            },
            secret_env={"GF_SECURITY_ADMIN_PASSWORD": "grafanaAdminPassword"},
            config_files=(
                ConfigFile("grafana/datasources.yaml", "/etc/grafana/provisioning/datasources/trace-stack.yaml"),
                ConfigFile("grafana/dashboards.yaml", "/etc/grafana/provisioning/dashboards/trace-stack.yaml"),
            ),
            depends_on=("prometheus", "tempo", "loki"),
        ),
    ]
