"""The six services, each one declaration holding everything about it: its ports (and the stack
outputs that name them), data directory, config files with the flag that reads each, command,
health check, readiness endpoint, and the settings that pick its image and memory.

Plain data, importable without Pulumi or Jinja: the component (program/component.py), the
renderer (program/render.py), the settings, and the operator's commands (`check`, `preflight`,
`down`) all derive from SERVICES. A seventh service is one more declaration, its templates in
configs/, and its two settings in Pulumi.yaml.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional

if TYPE_CHECKING:
    from .settings import StackConfig

PROJECT = "trace-stack"
# Where a stack can run: each is one module of program/platforms (the resources) and one of
# stack/platforms (what the commands ask of it).
PLATFORMS = ("docker", "kubernetes")
# Which releases a stack runs: `seed`, the versions the team pinned in 2023, or `current`, the
# newest ones proven here (the README lists them with the date each was proven).
VERSION_PROFILES = ("seed", "current")

# Where the app's log directory appears inside the Alloy container.
LOG_MOUNT = "/var/log/app"
GRAFANA_DASHBOARDS_DIR = "/etc/grafana/dashboards"
PASSWORD_KEY = "grafanaAdminPassword"
# Health checks (Docker's, Kubernetes' liveness probes): how often, how long each may take, how long
# a start may take, and how many failures in a row mean unhealthy.
HEALTHCHECK_INTERVAL_SECONDS, HEALTHCHECK_TIMEOUT_SECONDS, HEALTHCHECK_START_SECONDS, HEALTHCHECK_RETRIES = 10, 5, 30, 3
# Grafana's datasources, by the service each reads: fixed uids, so links between datasources and
# from dashboards survive re-provisioning.
DATASOURCE_UIDS = {"prometheus": "prometheus", "tempo": "tempo", "loki": "loki"}


@dataclass(frozen=True)
class Port:
    name: str  # how config templates refer to it: port.<name>
    internal: int
    host: Optional[int] = None  # host port at portOffset 0; None: reachable on the stack's network only
    output: Optional[str] = None  # the stack output holding its URL (a name in the contract)
    output_path: str = ""
    label: str = ""  # what it is for, where a service publishes several
    # Published on bindAddress whatever it is: Grafana (which has its own login) and the OTLP
    # receivers the app sends to. The other, unauthenticated backends stay on 127.0.0.1 when
    # bindAddress is not loopback, unless exposeBackends.
    public: bool = False
    platforms: tuple[str, ...] = PLATFORMS  # where the service listens on it


@dataclass(frozen=True)
class ConfigFile:
    template: str  # path below configs/
    path: str  # where the service reads it inside the container
    # How the service's command names the file: "--config.file" gives --config.file=PATH, "" gives
    # PATH alone; None: the service finds it where it is (Grafana's provisioning directories).
    flag: Optional[str] = None

    def argument(self) -> Optional[str]:
        if self.flag is None:
            return None
        return f"{self.flag}={self.path}" if self.flag else self.path


@dataclass(frozen=True)
class Readiness:
    """The service's own readiness endpoint, on one of its published ports."""

    port: str
    path: str
    # A (key, value) the JSON answer must hold, besides HTTP 200: a 200 without it is not the
    # service.
    json_field: Optional[tuple[str, str]] = None


@dataclass(frozen=True)
class BuildInfo:
    """How the running service says what it is and which version, as its source at the pinned
    tag answers. One of: a JSON document at `path` on the readiness port (the version under
    `version_keys`, and `identity` a (key, value) that only this service answers with, or a key
    that must be there); a Prometheus metric at `path` whose `label` holds the version; or, for a
    service that publishes neither, the line its process logs as it starts (`log_line`, the
    version in its group `version`), read from the stack's platform, and where the platform
    cannot be asked (`check --outputs`), a query to the stack's Prometheus: each process's start
    time (seconds since the epoch), of which the one that the readiness answer's `started_key`
    names is the running process's."""

    path: str = ""
    version_keys: tuple[str, ...] = ()
    identity: tuple[str, Optional[str]] = ("version", None)
    metric: str = ""
    label: str = ""
    log_line: str = ""
    prometheus_query: str = ""
    started_key: str = ""


@dataclass(frozen=True)
class HostMount:
    host_path: str
    container_path: str
    read_only: bool = True


@dataclass(frozen=True)
class Release:
    """A service at one version profile: its image, the values its config templates read as
    `release.<service>` (where its config differs between releases), and the fields of its record
    that differ from the declaration, which describes the seed release."""

    image: str
    values: Mapping[str, Any] = field(default_factory=dict)
    changes: Mapping[str, Any] = field(default_factory=dict)
    # The profiles whose data this release cannot read, and what a stack switched from one loses.
    cannot_read: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self):
        unknown = set(self.changes) - {f.name for f in fields(Service)}
        if unknown:
            raise TypeError(f"a Release can only change a Service's fields, not {sorted(unknown)}")


@dataclass(frozen=True)
class Service:
    """One container. Each runs as its image's own user; where that is root, `runs_as` says why."""

    name: str
    ports: tuple[Port, ...]
    readiness: Readiness
    build_info: BuildInfo
    runs_as: str
    # The tool the image has to ask `readiness` from inside the container: "wget" (busybox),
    # "curl", "bash" (its /dev/tcp), the path of the service's own program where it asks (`-health`);
    # None when the image has none.
    healthcheck_tool: Optional[str]
    data_dir: Optional[str] = None  # where the image keeps its data, owned by the user it runs as
    # Its data volume's name, after the service's: another release that reads no data of this one
    # has a volume of its own, so the data stays for the release that wrote it.
    data_volume: str = "data"
    # How long `docker stop`, and Pulumi's replace and destroy, wait for a clean exit after SIGTERM
    # before they kill it; and how long it took on a real deployment.
    stop_seconds: int = 10
    stop_measured: str = ""
    # How long the program's own removal (`down`, a replacement; on Kubernetes every stop of its
    # pod) waits instead, where the service needs less when the program removes it (None: as long).
    removal_seconds: Optional[int] = None
    # Another user than the image's, and the Linux capabilities it does without.
    user: Optional[str] = None
    dropped_capabilities: tuple[str, ...] = ()
    # On Kubernetes every service runs as this non-root user and group, which owns its data volume
    # (fsGroup), with every capability dropped: nothing there needs root (no host files to read,
    # and the cluster, not the image, decides who owns a volume).
    uid: int = 10001
    # The size its data volume (a PersistentVolumeClaim) asks for on Kubernetes.
    volume_gib: int = 2
    config_files: tuple[ConfigFile, ...] = ()
    # The command is command_prefix, the config files' arguments, then arguments(self, config).
    # When all three are empty the image's own command runs.
    command_prefix: tuple[str, ...] = ()
    arguments: Callable[["Service", "StackConfig"], tuple[str, ...]] = lambda service, config: ()
    env: Callable[["StackConfig"], Mapping[str, str]] = lambda config: {}
    # Environment variables whose value is a secret setting: name -> setting.
    secret_env: Mapping[str, str] = field(default_factory=dict)
    host_mounts: Callable[["StackConfig"], tuple[HostMount, ...]] = lambda config: ()
    # Files made by the program rather than rendered from configs/, from the template values:
    # container path -> content.
    generated_files: Callable[[Mapping], Mapping[str, str]] = lambda values: {}
    depends_on: tuple[str, ...] = ()
    # Services whose replacement replaces this container too, stopping it first: its hostname
    # derives from their containers' ids, and Pulumi deletes what depends on a container it
    # replaces delete-first before that container (program/component.py).
    replaced_with: tuple[str, ...] = ()
    # Each version profile's release (none: the image setting's default is the only image).
    releases: Mapping[str, Release] = field(default_factory=dict)

    def at(self, versions: str) -> "Service":
        """The service as the version profile runs it."""
        release = self.releases.get(versions)
        return replace(self, **release.changes) if release else self

    @property
    def removal_grace_seconds(self) -> int:
        return self.stop_seconds if self.removal_seconds is None else self.removal_seconds

    @property
    def setting_prefix(self) -> str:
        """otel-collector -> otelCollector: its settings are otelCollectorImage, otelCollectorMemoryMiB."""
        return re.sub(r"-(\w)", lambda match: match.group(1).upper(), self.name)

    @property
    def image_key(self) -> str:
        return f"{self.setting_prefix}Image"

    @property
    def memory_key(self) -> str:
        return f"{self.setting_prefix}MemoryMiB"

    def ports_on(self, platform: str) -> tuple[Port, ...]:
        """The ports it listens on, on that platform."""
        return tuple(port for port in self.ports if platform in port.platforms)

    def published_on(self, platform: str) -> tuple[Port, ...]:
        return tuple(port for port in self.ports_on(platform) if port.host is not None)

    def port(self, name: str) -> Port:
        [port] = [port for port in self.ports if port.name == name]
        return port

    def command(self, config: "StackConfig") -> Optional[tuple[str, ...]]:
        files = tuple(argument for file in self.config_files if (argument := file.argument()) is not None)
        command = (*self.command_prefix, *files, *self.arguments(self, config))
        return command or None

    def healthcheck_test(self) -> Optional[tuple[str, ...]]:
        """The readiness endpoint asked from inside the container, with what its image has."""
        port, path = self.port(self.readiness.port).internal, self.readiness.path
        url = f"http://127.0.0.1:{port}{path}"
        if self.healthcheck_tool == "wget":
            # Busybox wget: --spider asks without writing a file and fails on any status but 2xx.
            return ("CMD", "wget", "--spider", "-q", url)
        if self.healthcheck_tool == "curl":
            return ("CMD", "curl", "-fsS", "-o", "/dev/null", url)
        if self.healthcheck_tool and self.healthcheck_tool.startswith("/"):
            # The service's own program asks the URL, and exits 0 on a 200 (Loki 3 and Tempo 3:
            # cmd/<service>/health.go).
            return ("CMD", self.healthcheck_tool, "-health", f"-health.url={url}")
        if self.healthcheck_tool == "bash":
            return ("CMD", "bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{port} "
                    f"&& printf 'GET {path} HTTP/1.0\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '")
        return None


def _grafana_dashboards(values: Mapping) -> dict[str, str]:
    from .dashboards import rendered_dashboards  # grafana-foundation-sdk: the program needs it, commands do not

    return {f"{GRAFANA_DASHBOARDS_DIR}/{name}": content
            for name, content in rendered_dashboards(values["log_labels"]).items()}


def _prometheus_arguments(*image_directories: str) -> Callable[[Service, "StackConfig"], tuple[str, ...]]:
    """Prometheus's arguments: its image's CMD, restated because a command replaces it, plus ours."""
    return lambda service, config: (
        f"--storage.tsdb.path={service.data_dir}",
        *image_directories,
        f"--storage.tsdb.retention.time={config.prometheus_retention}",
        "--enable-feature=exemplar-storage",
        # Tempo's metrics-generator writes span metrics and the service graph here.
        "--web.enable-remote-write-receiver",
    )


# Seconds since the collector's process started, one series per process (service_instance_id).
_COLLECTOR_UPTIME = 'otelcol_process_uptime{job="otel-collector"}'

SERVICES = (
    Service(
        name="prometheus",
        releases={
            "seed": Release("prom/prometheus:v2.48.0", values={"legacy_names": False}),
            # Its image's CMD has no console directories (3.0 dropped them from the image).
            "current": Release("prom/prometheus:v3.16.0", values={"legacy_names": True},
                               changes={"arguments": _prometheus_arguments()}),
        },
        ports=(Port("prometheus_http", 9090, 39090, output="prometheus_url"),),
        readiness=Readiness("prometheus_http", "/-/ready"),
        # web/api/v1/api.go at v2.48.0: {"status": "success", "data": {"version": "2.48.0", ...}}
        build_info=BuildInfo("/api/v1/status/buildinfo", ("data", "version"), identity=("status", "success")),
        runs_as="nobody (image's)",
        uid=65534,
        healthcheck_tool="wget",  # the image is busybox
        data_dir="/prometheus",
        volume_gib=10,
        stop_measured="0.1 s, exit 0",
        config_files=(ConfigFile("prometheus.yaml", "/etc/prometheus/prometheus.yml", flag="--config.file"),),
        arguments=_prometheus_arguments("--web.console.libraries=/usr/share/prometheus/console_libraries",
                                        "--web.console.templates=/usr/share/prometheus/consoles"),
    ),
    Service(
        name="tempo",
        # Each release reads no block the other writes (tempodb/encoding/versioned.go, FromVersion):
        # 2.3 writes vParquet2 and reads up to vParquet3, 3.0 writes vParquet4 and reads from vParquet3.
        releases={
            "seed": Release("grafana/tempo:2.3.0", values={"live_store": False}, cannot_read={
                "current": "its traces: Tempo 2.3.0 cannot read the blocks Tempo 3.0 wrote (vParquet4); they stay "
                           "in its current volume, read again at versions current"}),
            # Distroless, as its own user, on a volume of its own: it stops on finding 2.3's WAL.
            # Stopped, it exits in 1-2 s, but never after answering a query in the last 30 s
            # (modules/frontend/queue/queue.go at v3.0.3): its traces are on disk within
            # milliseconds of SIGTERM, so it is killed 2 s after.
            "current": Release("grafana/tempo:3.0.3", values={"live_store": True}, changes={
                "runs_as": "10001 (image's), which owns `/var/tempo`", "healthcheck_tool": "/tempo",
                "data_volume": "data-3", "stop_seconds": 2, "removal_seconds": None,
                "stop_measured": "1–2 s, exit 0; killed at 2 s after a query (a Tempo 3.0 bug)"}, cannot_read={
                "seed": "its traces: Tempo 3.0.3 cannot read the blocks Tempo 2.3 wrote (vParquet2); they stay "
                        "in its seed volume, read again at versions seed"}),
        },
        ports=(Port("tempo_http", 3200, 33200, output="tempo_url"), Port("tempo_otlp_grpc", 4317),
               Port("tempo_otlp_http", 4318)),
        readiness=Readiness("tempo_http", "/ready"),
        # cmd/tempo/app/app.go at v2.3.0: {"version": "2.3.0", "goVersion": "go1.21.3", ...}
        build_info=BuildInfo("/api/status/buildinfo", ("version",), identity=("goVersion", None)),
        # As another user it could not write its data.
        runs_as="root: Tempo 2.3's image runs as root and owns `/var/tempo` as root (10001 arrives in 2.5)",
        healthcheck_tool="wget",  # alpine
        data_dir="/var/tempo",
        volume_gib=10,
        # On SIGTERM Tempo 2.3 flushes its ingester to the WAL at once, then its distributor sleeps
        # a hard-coded 30 s before closing the receivers (modules/distributor/receiver/shim.go;
        # gone in 2.5): a clean exit takes about 31 s.
        stop_seconds=45,
        stop_measured="30–31 s, exit 0",
        # The program removes it with or after the collector, so nothing is in flight then, and
        # its ingester cuts its live traces to the WAL on the volume at SIGTERM (the lifecycler's
        # flush, before the distributor's sleep): measured, 20 traces sent just before SIGTERM,
        # killed 1 s after, were replayed and answered, three times out of three. The 30 s sleep
        # serves no one.
        removal_seconds=2,
        config_files=(ConfigFile("tempo.yaml", "/etc/tempo/tempo.yaml", flag="-config.file"),),
        # The metrics-generator remote-writes to Prometheus from its first span.
        depends_on=("prometheus",),
    ),
    Service(
        name="loki",
        releases={
            "seed": Release("grafana/loki:2.9.0", values={"otlp_ingest": False}),
            # Takes the collector's log records over OTLP itself (/otlp/v1/logs). Its image is
            # distroless: no wget, but Loki asks its own readiness.
            "current": Release("grafana/loki:3.7.6", values={"otlp_ingest": True},
                               changes={"healthcheck_tool": "/usr/bin/loki"}),
        },
        ports=(Port("loki_http", 3100, 33100, output="loki_url"), Port("loki_grpc", 9096)),
        readiness=Readiness("loki_http", "/ready"),
        # pkg/loki/version_handler.go at v2.9.0: {"version": "2.9.0", "revision": "2feb64f", ...}
        build_info=BuildInfo("/loki/api/v1/status/buildinfo", ("version",), identity=("revision", None)),
        runs_as="10001 (image's), which owns `/loki`",
        healthcheck_tool="wget",  # alpine
        data_dir="/loki",
        volume_gib=10,
        stop_measured="0.1–2.1 s, exit 0",
        config_files=(ConfigFile("loki.yaml", "/etc/loki/loki.yaml", flag="-config.file"),),
    ),
    Service(
        name="otel-collector",
        releases={
            "seed": Release("otel/opentelemetry-collector-contrib:0.91.0", values={
                "otlp_grpc": "otlp", "ottl_resource": "", "ottl_log": "", "logs_over_otlp": False,
                "telemetry_reader": False}),
            "current": Release("otel/opentelemetry-collector-contrib:0.161.0", values={
                # The exporters' type names since 0.144 (otlp and otlphttp are deprecated aliases).
                "otlp_grpc": "otlp_grpc", "otlp_http": "otlp_http",
                # OTTL paths name their context: bare ones are rewritten, with a warning at start.
                "ottl_resource": "resource.", "ottl_log": "log.",
                # Into Loki's own OTLP endpoint: the loki exporter left contrib in 0.131.
                "logs_over_otlp": True,
                # service.telemetry.metrics.address is gone: a pull reader serves the collector's metrics.
                "telemetry_reader": True}),
        },
        ports=(
            Port("collector_otlp_http", 4318, 34318, output="otlp_http_endpoint", label="OTLP HTTP", public=True),
            Port("collector_otlp_grpc", 4317, 34317, output="otlp_grpc_endpoint", label="OTLP gRPC", public=True),
            Port("collector_prometheus", 8889, 38889, output="collector_metrics_url", output_path="/metrics",
                 label="metrics"),
            Port("collector_health", 13133, 33133, output="collector_health_url", output_path="/", label="health"),
            Port("collector_telemetry", 8888),
        ),
        # The health_check extension (jaeger's handler): {"status": "Server available",
        # "upSince": "<when it became ready, RFC 3339>", ...}.
        readiness=Readiness("collector_health", "/", json_field=("status", "Server available")),
        # Its health check answers any path alike, and its own metrics (port 8888) are not
        # published. As it starts, before it is ready, it logs `Starting otelcol-contrib...
        # {"Version": "0.91.0", "NumCPU": 2}` (service/service.go at v0.91.0 and v0.161.0).
        # Prometheus, which scrapes those metrics (service_version="0.91.0" on every series), has
        # a new process's only from its next scrape, at the earliest 5 s after Prometheus itself
        # started (its discovery sends targets every 5 s: discovery/manager.go), and still holds
        # the old process's for its lookback (5 minutes): there the version is the one of the
        # process that started when the health check says the running one did.
        build_info=BuildInfo(log_line=r'Starting [\w.-]+\.\.\..*"Version": ?"(?P<version>[^"]+)"',
                             prometheus_query=f"timestamp({_COLLECTOR_UPTIME}) - {_COLLECTOR_UPTIME}",
                             label="service_version", started_key="upSince"),
        runs_as="root with every capability dropped: a new volume at a path the image lacks is root's, and the "
                "image (FROM scratch) has nothing to hand it to its own user 10001",
        # The image is FROM scratch (no shell, no wget): `check` asks its health_check extension
        # from the host instead.
        healthcheck_tool=None,
        # The exporters' sending queues (file_storage): what the collector accepted outlives it.
        data_dir="/var/lib/otelcol/file_storage",
        user="0",
        dropped_capabilities=("ALL",),
        stop_measured="0.1 s, exit 0",
        config_files=(ConfigFile("otel-collector.yaml", "/etc/otelcol-contrib/config.yaml", flag="--config"),),
        depends_on=("tempo",),
        # From SIGTERM until it exits (31 s), Tempo 2.3 takes spans it can no longer store and
        # answers "DoBatch: InstancesCount <= 0" (gRPC Unknown), which the collector drops as
        # permanent: measured, 6,000 of 10,220 spans lost over a restart at 200 spans/s. Stopped
        # before Tempo, the collector holds them in its queue on disk and sends them when Tempo is
        # back.
        replaced_with=("tempo",),
    ),
    Service(
        name="alloy",
        # 1.13.1: the newest release whose whole build the Go module proxy serves (from 1.13.2 on,
        # modules it needs are refused); our pipeline ran alike on 1.18.1's own code.
        releases={"seed": Release("grafana/alloy:v1.5.1"), "current": Release("grafana/alloy:v1.13.1")},
        ports=(Port("alloy_http", 12345, 12345, output="alloy_url"),
               # On Kubernetes, Alloy cannot read files on the developer's machine: `logs attach` and
               # `check --smoke` push the app's lines here (Loki's push API), into the same pipeline.
               Port("alloy_push", 3500, 33500, label="pushed lines", platforms=("kubernetes",))),
        readiness=Readiness("alloy_http", "/-/ready"),
        # alloy_build_info{version="v1.5.1", ...} on /metrics; its UI answers any other path.
        build_info=BuildInfo("/metrics", metric="alloy_build_info", label="version"),
        runs_as="root, as its image: it reads the app's log files whatever their owner",
        # Its image's own user, which owns /var/lib/alloy (mode 0770): any other cannot reach the data.
        uid=473,
        healthcheck_tool="bash",  # Ubuntu with bash but no curl or wget
        data_dir="/var/lib/alloy/data",
        stop_measured="0.1 s, exit 0",
        config_files=(ConfigFile("alloy.alloy", "/etc/alloy/config.alloy", flag=""),),
        command_prefix=("run",),
        arguments=lambda service, config: (
            f"--storage.path={service.data_dir}",
            # Alloy 1.5 listens on 127.0.0.1 by default: unreachable from outside the container.
            f"--server.http.listen-addr=0.0.0.0:{service.port('alloy_http').internal}",
        ),
        host_mounts=lambda config: (HostMount(config.log_dir, LOG_MOUNT, read_only=True),),
        depends_on=("loki",),
    ),
    Service(
        name="grafana",
        releases={"seed": Release("grafana/grafana:12.3.0"), "current": Release("grafana/grafana:12.3.0")},
        ports=(Port("grafana_http", 3000, 33000, output="grafana_url", public=True),),
        readiness=Readiness("grafana_http", "/api/health", json_field=("database", "ok")),
        # pkg/api/http_server.go: {"database": "ok", "version": "12.3.0", "commit": "..."}
        build_info=BuildInfo("/api/health", ("version",), identity=("database", None)),
        runs_as="472 (image's), which owns `/var/lib/grafana`",
        uid=472,
        healthcheck_tool="curl",  # alpine with curl
        data_dir="/var/lib/grafana",
        config_files=(
            ConfigFile("grafana/datasources.yaml", "/etc/grafana/provisioning/datasources/trace-stack.yaml"),
            ConfigFile("grafana/dashboards.yaml", "/etc/grafana/provisioning/dashboards/trace-stack.yaml"),
        ),
        env=lambda config: {
            "GF_SECURITY_ADMIN_USER": config.grafana_admin_user,
            "GF_AUTH_ANONYMOUS_ENABLED": str(config.grafana_anonymous_enabled).lower(),
            "GF_AUTH_ANONYMOUS_ORG_ROLE": config.grafana_anonymous_role,
            "GF_ANALYTICS_REPORTING_ENABLED": "false",
        },
        secret_env={"GF_SECURITY_ADMIN_PASSWORD": PASSWORD_KEY},
        generated_files=_grafana_dashboards,
        depends_on=("prometheus", "tempo", "loki"),
    ),
)

SERVICES_BY_NAME = {service.name: service for service in SERVICES}
PORTS = tuple(port for service in SERVICES for port in service.ports)
PORTS_BY_NAME = {port.name: port for port in PORTS}
OUTPUT_PORTS = {port.output: port for port in PORTS if port.output}


def image_version(image: str) -> Optional[str]:
    """The version an image's tag names (`grafana/loki:2.9.0` -> 2.9.0, `...:v2.48.0` -> 2.48.0),
    or None when it names none (`latest`, a custom tag, a digest)."""
    if "@" in image:
        return None
    tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
    return tag.removeprefix("v") if re.fullmatch(r"v?\d+\.\d+\.\d+", tag) else None


def switch_losses(deployed: str, versions: str) -> list[str]:
    """What a stack deployed at one version profile loses when switched to another: one line per
    service whose new release cannot read its data."""
    return [f"{service.name}: {service.releases[versions].cannot_read[deployed]}" for service in SERVICES
            if versions in service.releases and deployed in service.releases[versions].cannot_read]


def docker_name(stack: str, *parts: str) -> str:
    """Name of a Docker object: every one carries the stack, so two stacks never collide."""
    return "-".join((PROJECT, stack, *parts))


def data_claim_name(service: Service) -> str:
    """A service's PersistentVolumeClaim on Kubernetes, in its stack's namespace."""
    return f"{service.name}-{service.data_volume}"


def _with_data(versions: Optional[str]) -> list[Service]:
    """Each service with data as the version profile runs it; with none, as every profile does
    (a release that reads no data of another keeps its own volume)."""
    profiles = [versions] if versions else VERSION_PROFILES
    found = [service.at(profile) for service in SERVICES for profile in profiles if service.data_dir]
    return list({(service.name, service.data_volume): service for service in found}.values())


def data_claim_names(versions: Optional[str] = None) -> list[str]:
    return [data_claim_name(service) for service in _with_data(versions)]


def data_volume_names(stack: str, versions: Optional[str] = None) -> list[str]:
    return [docker_name(stack, service.name, service.data_volume) for service in _with_data(versions)]
