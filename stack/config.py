"""The stack's settings: one typed, validated object holding every default.

Pulumi.yaml declares the same keys for the CLI, but its defaults are not applied under test mocks,
so the defaults live here, once. `parse_settings` is pure: it takes the raw strings Pulumi hands a
program and returns a `StackConfig`, or raises `ConfigError` listing every bad value at once.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional
from urllib.parse import urlsplit

from .ports import published_ports

PROJECT = "trace-stack"

SERVICE_NAMES = ("grafana", "prometheus", "tempo", "loki", "otel-collector", "alloy")

DEFAULT_IMAGES = {
    "grafana": "grafana/grafana:12.3.0",
    "prometheus": "prom/prometheus:v2.48.0",
    "tempo": "grafana/tempo:2.3.0",
    "loki": "grafana/loki:2.9.0",
    "otel-collector": "otel/opentelemetry-collector-contrib:0.91.0",
    "alloy": "grafana/alloy:v1.5.1",
}

# Config key of each service's image override: grafanaImage, otelCollectorImage, ...
IMAGE_KEYS = {
    service: re.sub(r"-(\w)", lambda m: m.group(1).upper(), service) + "Image"
    for service in SERVICE_NAMES
}

# Memory limit of each container in MiB: grafanaMemoryMiB, otelCollectorMemoryMiB, ... Sized for a
# laptop running one stack: about 4 GiB in all.
DEFAULT_MEMORY_MIB = {
    "grafana": 512,
    "prometheus": 1024,
    "tempo": 1024,
    "loki": 768,
    "otel-collector": 512,
    "alloy": 256,
}
MEMORY_KEYS = {service: key[: -len("Image")] + "MemoryMiB" for service, key in IMAGE_KEYS.items()}
MIN_MEMORY_MIB = 64

KEYS = (
    "portOffset", "bindAddress", "logDir",
    "prometheusRetention", "tempoRetention", "lokiRetention",
    *IMAGE_KEYS.values(),
    *MEMORY_KEYS.values(),
    "grafanaAdminUser", "grafanaAdminPassword", "grafanaAnonymousEnabled", "grafanaAnonymousRole",
    "dockerHost",
)
PASSWORD_KEY = "grafanaAdminPassword"

ANONYMOUS_ROLES = ("Viewer", "Editor", "Admin")
DOCKER_HOST_SCHEMES = ("unix", "tcp", "ssh", "npipe")
LOKI_MIN_RETENTION_SECONDS = 24 * 3600


class ConfigError(Exception):
    """Every bad setting, one line each: key, value, and what is allowed."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class StackConfig:
    stack: str
    port_offset: int = 0
    bind_address: str = "127.0.0.1"
    log_dir: str = "/tmp/alloy/logs/refly"
    prometheus_retention: str = "30d"
    tempo_retention: str = "168h"
    loki_retention: str = "168h"
    images: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_IMAGES))
    memory_mib: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_MEMORY_MIB))
    grafana_admin_user: str = "admin"
    # Whether a password was configured; the value itself stays a Pulumi secret (see
    # stack/component.py) and never passes through this object.
    grafana_admin_password_set: bool = False
    grafana_anonymous_enabled: bool = True
    grafana_anonymous_role: str = "Admin"
    docker_host: Optional[str] = None

    def host_port(self, base_port: int) -> int:
        return base_port + self.port_offset

    @property
    def bind_is_loopback(self) -> bool:
        return ipaddress.ip_address(self.bind_address).is_loopback


# --- syntax of the values each service accepts -------------------------------------------------

# Prometheus' model.ParseDuration: units largest first, each at most once, integers only.
_PROMETHEUS_DURATION = re.compile(
    r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$"
)
_PROMETHEUS_UNIT_SECONDS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)

# Go's time.ParseDuration (Tempo reads its durations with it): no d, w or y.
_GO_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_GO_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}

# The grammar of github.com/distribution/reference (what `docker pull` accepts).
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_IMAGE_REFERENCE = re.compile(
    rf"^(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
    r"(?::[\w][\w.-]{0,127})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
)


def prometheus_duration_seconds(value: str) -> Optional[float]:
    """Seconds in a Prometheus duration (`30d`, `2w`, `720h`), or None if it is not one."""
    match = _PROMETHEUS_DURATION.match(value)
    if not value or not match:
        return None
    return sum(int(n) * unit for n, unit in zip(match.groups(), _PROMETHEUS_UNIT_SECONDS) if n)


def go_duration_seconds(value: str) -> Optional[float]:
    """Seconds in a Go duration (`168h`, `1h30m`), or None if Go would refuse it."""
    if not value or _GO_DURATION_PART.sub("", value):
        return None
    return sum(float(n) * _GO_UNIT_SECONDS[unit] for n, unit in _GO_DURATION_PART.findall(value))


def is_image_reference(value: str) -> bool:
    return len(value) <= 255 and bool(_IMAGE_REFERENCE.match(value))


# --- reading and checking -----------------------------------------------------------------------


def parse_settings(stack: str, raw: Mapping[str, str], password_encrypted: bool = True) -> StackConfig:
    """Build the StackConfig from raw config strings (`key` without the project prefix).

    Every key is checked, and every problem reported, before anything is returned.
    `password_encrypted` says whether the stack stores grafanaAdminPassword as a secret.
    """
    problems: list[str] = []
    defaults = StackConfig(stack=stack)

    for key in sorted(set(raw) - set(KEYS)):
        problems.append(f"{PROJECT}:{key} is not a {PROJECT} setting; the settings are: {', '.join(KEYS)}")
    password_set = bool(raw.get(PASSWORD_KEY))
    if password_set and not password_encrypted:
        problems.append(f"{PROJECT}:{PASSWORD_KEY} is stored in plain text in the stack's config: set it again "
                        f"with `pulumi config set --secret {PASSWORD_KEY}`")

    def take(key: str, default, convert: Callable[[str], object], allowed: str):
        text = raw.get(key)
        if text is None:
            return default
        try:
            return convert(text)
        except ValueError:
            problems.append(_refusal(key, text, allowed))
            return default

    def check(key: str, value, ok: bool, allowed: str) -> None:
        if not ok:
            problems.append(_refusal(key, value, allowed))

    port_offset = take("portOffset", 0, _parse_int, "a whole number")
    bind_address = take("bindAddress", defaults.bind_address, _parse_ip, "an IPv4 or IPv6 address such as 127.0.0.1")
    log_dir = raw.get("logDir", defaults.log_dir)
    check("logDir", log_dir, log_dir.startswith("/"), "an absolute path on the Docker host, such as /tmp/alloy/logs/refly")

    prometheus_retention = raw.get("prometheusRetention", defaults.prometheus_retention)
    check("prometheusRetention", prometheus_retention,
          bool(prometheus_duration_seconds(prometheus_retention)),
          "a positive Prometheus duration such as 30d, 2w or 720h")
    tempo_retention = raw.get("tempoRetention", defaults.tempo_retention)
    check("tempoRetention", tempo_retention, bool(go_duration_seconds(tempo_retention)),
          "a positive Go duration such as 168h (Tempo takes no d or w)")
    loki_retention = raw.get("lokiRetention", defaults.loki_retention)
    loki_seconds = prometheus_duration_seconds(loki_retention)
    check("lokiRetention", loki_retention,
          loki_seconds is not None and loki_seconds >= LOKI_MIN_RETENTION_SECONDS,
          "a duration of at least 24h such as 168h (whole units only, no fractions)")

    images = dict(DEFAULT_IMAGES)
    for service, key in IMAGE_KEYS.items():
        if key in raw:
            images[service] = raw[key]
            check(key, raw[key], is_image_reference(raw[key]),
                  "an image reference such as grafana/grafana:12.3.0 or registry:5000/team/loki@sha256:<digest>")

    memory_mib = dict(DEFAULT_MEMORY_MIB)
    for service, key in MEMORY_KEYS.items():
        memory_mib[service] = take(key, DEFAULT_MEMORY_MIB[service], _parse_int, "a whole number of MiB")
        check(key, memory_mib[service], memory_mib[service] >= MIN_MEMORY_MIB,
              f"at least {MIN_MEMORY_MIB} (MiB); the default is {DEFAULT_MEMORY_MIB[service]}")

    admin_user = raw.get("grafanaAdminUser", defaults.grafana_admin_user)
    check("grafanaAdminUser", admin_user, bool(admin_user.strip()), "a non-empty user name")
    anonymous_enabled = take("grafanaAnonymousEnabled", True, _parse_bool, "true or false")
    anonymous_role = raw.get("grafanaAnonymousRole", defaults.grafana_anonymous_role)
    check("grafanaAnonymousRole", anonymous_role, anonymous_role in ANONYMOUS_ROLES,
          " or ".join(ANONYMOUS_ROLES))

    docker_host = raw.get("dockerHost") or None
    if docker_host is not None:
        check("dockerHost", docker_host, _is_docker_host(docker_host),
              "a Docker engine URL: unix:///path, tcp://host:port, ssh://user@host or npipe:////./pipe/name")

    config = StackConfig(
        stack=stack,
        port_offset=port_offset,
        bind_address=bind_address,
        log_dir=log_dir,
        prometheus_retention=prometheus_retention,
        tempo_retention=tempo_retention,
        loki_retention=loki_retention,
        images=images,
        memory_mib=memory_mib,
        grafana_admin_user=admin_user,
        grafana_admin_password_set=password_set,
        grafana_anonymous_enabled=anonymous_enabled,
        grafana_anonymous_role=anonymous_role,
        docker_host=docker_host,
    )
    problems.extend(_check_combinations(config))
    if problems:
        raise ConfigError(problems)
    return config


def _refusal(key: str, value: object, allowed: str) -> str:
    return f"{PROJECT}:{key} = {str(value)!r} is not allowed: {allowed}"


def _check_combinations(config: StackConfig) -> list[str]:
    problems = []
    ports = published_ports(config)
    base_ports = [port - config.port_offset for port in ports.values()]
    lowest, highest = 1 - min(base_ports), 65535 - max(base_ports)
    if not lowest <= config.port_offset <= highest:
        problems.append(_refusal("portOffset", config.port_offset,
                                 f"a whole number from {lowest} to {highest}, so every host port "
                                 f"({min(base_ports)}..{max(base_ports)} plus the offset) stays in 1..65535"))
    seen: dict[int, str] = {}
    for name, port in ports.items():
        if port in seen:
            problems.append(_refusal("portOffset", config.port_offset,
                                     f"an offset at which {seen[port]} and {name} do not share host port {port}"))
        seen[port] = name

    if not config.bind_is_loopback:
        where = f"bindAddress {config.bind_address} is reachable from the network"
        if not config.grafana_admin_password_set:
            problems.append(
                f"{PROJECT}:grafanaAdminPassword is not set: {where}, so Grafana must not keep its "
                f"default password; set one with `pulumi config set --secret grafanaAdminPassword`")
        if config.grafana_anonymous_enabled and config.grafana_anonymous_role == "Admin":
            problems.append(
                f"{PROJECT}:grafanaAnonymousRole = 'Admin' is not allowed with anonymous access on: {where}; "
                f"use Viewer or Editor, or set grafanaAnonymousEnabled to false")
    return problems


def read_stack_config() -> StackConfig:
    """The running Pulumi stack's settings, validated; raises ConfigError."""
    import pulumi
    from pulumi.runtime.config import CONFIG, get_config_env, is_config_secret

    prefix = f"{PROJECT}:"
    every_value = {**get_config_env(), **CONFIG.get()}
    raw = {key[len(prefix):]: str(value) for key, value in every_value.items() if key.startswith(prefix)}
    return parse_settings(pulumi.get_stack(), raw, password_encrypted=is_config_secret(prefix + PASSWORD_KEY))


def _parse_int(text: str) -> int:
    if not re.fullmatch(r"[+-]?\d+", text.strip()):
        raise ValueError(text)
    return int(text)


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered not in ("true", "false"):
        raise ValueError(text)
    return lowered == "true"


def _parse_ip(text: str) -> str:
    return str(ipaddress.ip_address(text.strip()))


def _is_docker_host(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme not in DOCKER_HOST_SCHEMES:
        return False
    if parts.scheme in ("unix", "npipe"):
        return bool(parts.path.strip("/"))
    return bool(parts.hostname)
