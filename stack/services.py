"""The six services, each a small declaration: image, command, config files, data, ports.

Pure data derived from a StackConfig; stack/component.py turns it into Docker resources.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional

from .config import PASSWORD_KEY, StackConfig
from .grafana import rendered_dashboards
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
class Healthcheck:
    """A check the image itself can run (see each service below for what its image has)."""

    test: tuple[str, ...]
    interval_seconds: int = 10
    timeout_seconds: int = 5
    start_period_seconds: int = 30
    retries: int = 3


def _http_ok_with_wget(port: str, path: str) -> Healthcheck:
    # Busybox wget: --spider asks without writing a file, and fails on any status but 2xx.
    return Healthcheck(("CMD", "wget", "--spider", "-q", f"http://127.0.0.1:{PORTS_BY_NAME[port].internal}{path}"))


@dataclass(frozen=True)
class Service:
    """One container. Each runs as its image's own user; where that is root, the declaration says why."""

    name: str
    image: str
    # None keeps the image's own command; a list replaces it whole, defaults included.
    command: Optional[tuple[str, ...]] = None
    env: Mapping[str, str] = field(default_factory=dict)
    # Environment variables whose value is a secret config key: name -> config key.
    secret_env: Mapping[str, str] = field(default_factory=dict)
    config_files: tuple[ConfigFile, ...] = ()
    # Files made by the program rather than rendered from configs/: container path -> content.
    generated_files: Mapping[str, str] = field(default_factory=dict)
    host_mounts: tuple[HostMount, ...] = ()
    depends_on: tuple[str, ...] = ()
    memory_mib: int = 0
    healthcheck: Optional[Healthcheck] = None

    @property
    def data_dir(self) -> Optional[str]:
        return DATA_DIRS.get(self.name)

    @property
    def published_ports(self) -> tuple[Port, ...]:
        return tuple(port for port in PORTS if port.service == self.name and port.host is not None)


def declare_services(config: StackConfig) -> list[Service]:
    images, memory = config.images, config.memory_mib
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
            memory_mib=memory["prometheus"],
            healthcheck=_http_ok_with_wget("prometheus_http", "/-/ready"),  # image: busybox, runs as nobody
        ),
        Service(
            name="tempo",
            image=images["tempo"],
            command=("-config.file=/etc/tempo/tempo.yaml",),
            config_files=(ConfigFile("tempo.yaml", "/etc/tempo/tempo.yaml"),),
            # The metrics-generator remote-writes to Prometheus from its first span.
            depends_on=("prometheus",),
            memory_mib=memory["tempo"],
            # Alpine, busybox wget. Tempo 2.3's image runs as root and owns /var/tempo as root (a
            # non-root user, 10001, comes with 2.5): running it as another user could not write there.
            healthcheck=_http_ok_with_wget("tempo_http", "/ready"),
        ),
        Service(
            name="loki",
            image=images["loki"],
            command=("-config.file=/etc/loki/loki.yaml",),
            config_files=(ConfigFile("loki.yaml", "/etc/loki/loki.yaml"),),
            memory_mib=memory["loki"],
            healthcheck=_http_ok_with_wget("loki_http", "/ready"),  # alpine; runs as 10001, owns /loki
        ),
        Service(
            name="otel-collector",
            image=images["otel-collector"],
            command=("--config=/etc/otelcol-contrib/config.yaml",),
            config_files=(ConfigFile("otel-collector.yaml", "/etc/otelcol-contrib/config.yaml"),),
            depends_on=("tempo",),
            memory_mib=memory["otel-collector"],
            # No health check: the image is FROM scratch (no shell, no wget), running as 10001.
            # `python -m stack check` probes its health_check extension from the host instead.
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
            memory_mib=memory["alloy"],
            # Ubuntu with bash but no curl or wget: ask /-/ready over bash's /dev/tcp. Alloy runs as
            # root, as its image does: it must read whatever owner and mode the app's log files have.
            healthcheck=Healthcheck((
                "CMD", "bash", "-c",
                f"exec 3<>/dev/tcp/127.0.0.1/{PORTS_BY_NAME['alloy_http'].internal} "
                "&& printf 'GET /-/ready HTTP/1.0\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '",
            )),
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
            secret_env={"GF_SECURITY_ADMIN_PASSWORD": PASSWORD_KEY},
            config_files=(
                ConfigFile("grafana/datasources.yaml", "/etc/grafana/provisioning/datasources/trace-stack.yaml"),
                ConfigFile("grafana/dashboards.yaml", "/etc/grafana/provisioning/dashboards/trace-stack.yaml"),
            ),
            generated_files={f"{GRAFANA_DASHBOARDS_DIR}/{name}": content for name, content in rendered_dashboards().items()},
            depends_on=("prometheus", "tempo", "loki"),
            memory_mib=memory["grafana"],
            # Alpine with curl; runs as 472, which owns /var/lib/grafana.
            healthcheck=Healthcheck(("CMD", "curl", "-fsS", "-o", "/dev/null",
                                     f"http://127.0.0.1:{PORTS_BY_NAME['grafana_http'].internal}/api/health")),
        ),
    ]
