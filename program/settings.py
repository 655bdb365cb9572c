"""The stack's settings: read with pulumi.Config's getters, every value checked, every problem
reported at once.

Pulumi.yaml declares each setting with its type, default and description, for the CLI: it is the
one place a default is written, and this module reads the defaults from it (the CLI applies
them to a deployed program; tests under mocks and the commands need them too). A service's image
and memory settings are named after the service (program/services.py).
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional
from urllib.parse import urlsplit

import yaml

from .ports import published_ports
from .services import PASSWORD_KEY, PLATFORMS, PROJECT, SERVICES, VERSION_PROFILES

if TYPE_CHECKING:
    import pulumi

SCHEMA: dict[str, dict[str, Any]] = yaml.safe_load(
    (Path(__file__).resolve().parent.parent / "Pulumi.yaml").read_text())["config"]
DEFAULTS = {key: entry["default"] for key, entry in SCHEMA.items()}

ANONYMOUS_ROLES = ("Viewer", "Editor", "Admin")
DOCKER_HOST_SCHEMES = ("unix", "tcp", "ssh", "npipe")
KUBERNETES_KEYS = ("kubeContext", "namespace", "storageClass")
# Kubernetes object names: a namespace is a DNS label (RFC 1123), a StorageClass a DNS subdomain.
DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
DNS_SUBDOMAIN = re.compile(r"(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*")
LOKI_MIN_RETENTION_SECONDS = 24 * 3600
MIN_MEMORY_MIB = 64
# A Loki label value and a part of the app dashboard's uid (40 characters at most, with the
# 12 of "trace-stack-").
LABEL_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,27}")
_TYPE_ALLOWED = {"integer": "a whole number", "boolean": "true or false", "string": "text"}


class ConfigError(Exception):
    """Every bad setting, one line each: key, value, and what is allowed."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class StackConfig:
    stack: str
    app_name: str
    app_env: str
    port_offset: int
    bind_address: str
    expose_backends: bool
    log_dir: str
    prometheus_retention: str
    tempo_retention: str
    loki_retention: str
    images: Mapping[str, str]  # by service name
    memory_mib: Mapping[str, int]  # by service name
    grafana_admin_user: str
    # Whether a password was configured; the value itself stays a Pulumi secret (see
    # program/component.py) and never passes through this object.
    grafana_admin_password_set: bool
    grafana_anonymous_enabled: bool
    grafana_anonymous_role: str
    docker_host: Optional[str]
    platform: str = "docker"
    # On kubernetes: the kubeconfig context (None: its current one), the namespace the stack owns,
    # and the data volumes' StorageClass (None: the cluster's default).
    kube_context: Optional[str] = None
    namespace: str = ""
    storage_class: Optional[str] = None
    versions: str = "seed"

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


def read_settings(config: "pulumi.Config", stack: str) -> StackConfig:
    """The stack's settings through `config`'s public getters (each default from Pulumi.yaml),
    validated; raises ConfigError listing every problem."""
    import pulumi

    getters = {"string": config.get, "integer": config.get_int, "boolean": config.get_bool}
    values, problems = {}, []
    for key, entry in SCHEMA.items():
        try:
            value = getters[entry["type"]](key)
        except pulumi.ConfigTypeError:
            problems.append(_refusal(key, config.get(key), _TYPE_ALLOWED[entry["type"]]))
            value = None
        values[key] = DEFAULTS[key] if value is None else value
    stored, password_encrypted = _stored_settings()
    for key in sorted(stored - set(SCHEMA)):
        nearest = difflib.get_close_matches(key, SCHEMA, n=1)
        problems.append(f"{PROJECT}:{key} is not a {PROJECT} setting: "
                        + (f"did you mean {nearest[0]}?" if nearest else f"the settings are {', '.join(SCHEMA)}"))
    if values[PASSWORD_KEY] and not password_encrypted:
        problems.append(f"{PROJECT}:{PASSWORD_KEY} is stored in plain text in the stack's config: set it again "
                        f"with `pulumi config set --secret {PASSWORD_KEY}`")
    return validate(stack, values, problems)


def settings_from_stack_config(stack: str, values: Mapping[str, str], secret_keys: set[str]) -> StackConfig:
    """The settings of a stack's config as the CLI lists it (values as text, the keys stored
    encrypted named), read by the program's own code: they become this process's Pulumi config."""
    import pulumi

    pulumi.runtime.set_all_config({f"{PROJECT}:{key}": value for key, value in values.items()},
                                  [f"{PROJECT}:{key}" for key in secret_keys])
    return read_settings(pulumi.Config(PROJECT), stack)


def _stored_settings() -> tuple[set[str], bool]:
    """Which of the project's keys the stack sets, and whether it stores the password encrypted.

    pulumi.Config reads one key at a time and does not say whether a value was stored as a
    secret, so these two facts come from the runtime's own config table.
    """
    from pulumi.runtime.config import CONFIG, get_config_env, is_config_secret

    prefix = f"{PROJECT}:"
    stored = {key[len(prefix):] for key in {**get_config_env(), **CONFIG.get()} if key.startswith(prefix)}
    return stored, is_config_secret(prefix + PASSWORD_KEY)


def validate(stack: str, values: Mapping[str, Any], problems: Optional[list[str]] = None) -> StackConfig:
    """A StackConfig from typed values (every key of Pulumi.yaml), or ConfigError listing every
    problem, those given included."""
    problems = list(problems or [])

    def check(key: str, ok: bool, allowed: str) -> None:
        if not ok:
            problems.append(_refusal(key, values[key], allowed))

    bind_address = values["bindAddress"]
    try:
        bind_address = str(ipaddress.ip_address(bind_address.strip()))
    except ValueError:
        check("bindAddress", False, "an IPv4 or IPv6 address such as 127.0.0.1")
        bind_address = DEFAULTS["bindAddress"]
    for key in ("appName", "appEnv"):
        check(key, bool(LABEL_SAFE.fullmatch(values[key])),
              "letters, digits, '.', '_' and '-', starting with a letter or digit, at most 28 characters")
    check("logDir", values["logDir"].startswith("/"), "an absolute path on the Docker host, such as /tmp/alloy/logs/refly")
    check("prometheusRetention", bool(prometheus_duration_seconds(values["prometheusRetention"])),
          "a positive Prometheus duration such as 30d, 2w or 720h")
    check("tempoRetention", bool(go_duration_seconds(values["tempoRetention"])),
          "a positive Go duration such as 168h (Tempo takes no d or w)")
    loki_seconds = prometheus_duration_seconds(values["lokiRetention"])
    check("lokiRetention", loki_seconds is not None and loki_seconds >= LOKI_MIN_RETENTION_SECONDS,
          "a duration of at least 24h such as 168h (whole units only, no fractions)")
    versions = values["versions"]
    check("versions", versions in VERSION_PROFILES, f"one of {', '.join(VERSION_PROFILES)}")
    if versions not in VERSION_PROFILES:
        versions = DEFAULTS["versions"]
    images = pinned_images(versions)
    for service in SERVICES:
        image = images[service.name] = values[service.image_key] or images.get(service.name, "")
        lowered = _lower_case_name(image)
        check(service.image_key, is_image_reference(image),
              f"image names are lower case: {lowered}" if lowered != image and is_image_reference(lowered) else
              "an image reference such as grafana/grafana:12.3.0 or registry:5000/team/loki@sha256:<digest>"
              + ("" if image else f" (versions {versions} pins no {service.name} image)"))
        check(service.memory_key, values[service.memory_key] >= MIN_MEMORY_MIB,
              f"at least {MIN_MEMORY_MIB} (MiB); the default is {DEFAULTS[service.memory_key]}")
    check("grafanaAdminUser", bool(values["grafanaAdminUser"].strip()), "a non-empty user name")
    role = values["grafanaAnonymousRole"]
    check("grafanaAnonymousRole", role in ANONYMOUS_ROLES, f"roles are spelt {', '.join(ANONYMOUS_ROLES)}"
          + (f": did you mean {role.capitalize()}?" if role.capitalize() in ANONYMOUS_ROLES else ""))
    docker_host = values["dockerHost"] or None
    if docker_host is not None:
        check("dockerHost", _is_docker_host(docker_host),
              "a Docker engine URL: unix:///path, tcp://host:port, ssh://user@host or npipe:////./pipe/name")
    platform = values["platform"]
    check("platform", platform in PLATFORMS, f"one of {', '.join(PLATFORMS)}")
    if platform not in PLATFORMS:
        platform = DEFAULTS["platform"]
    if platform == "kubernetes" and docker_host is not None:
        check("dockerHost", False, "empty on platform kubernetes, which deploys to kubeContext instead")
    namespace = values["namespace"] or default_namespace(stack)
    if values["namespace"]:
        check("namespace", bool(DNS_LABEL.fullmatch(namespace)),
              "a Kubernetes namespace name: lower-case letters, digits and '-', starting and ending with a letter "
              "or digit, at most 63 characters")
    elif platform == "kubernetes" and not DNS_LABEL.fullmatch(namespace):
        problems.append(f"{PROJECT}:namespace is not set and the default, {namespace!r}, is not a Kubernetes "
                        f"namespace name (lower-case letters, digits and '-', at most 63): set one with "
                        f"`pulumi config set namespace <name>`")
    check("storageClass", not values["storageClass"] or bool(DNS_SUBDOMAIN.fullmatch(values["storageClass"])),
          "a StorageClass name (lower-case letters, digits, '-' and '.'), or empty for the cluster's default")
    check("kubeContext", values["kubeContext"] == values["kubeContext"].strip(),
          "a context name of your kubeconfig, without surrounding spaces, or empty for its current context")

    config = StackConfig(
        stack=stack,
        app_name=values["appName"],
        app_env=values["appEnv"],
        port_offset=values["portOffset"],
        bind_address=bind_address,
        expose_backends=values["exposeBackends"],
        log_dir=values["logDir"],
        prometheus_retention=values["prometheusRetention"],
        tempo_retention=values["tempoRetention"],
        loki_retention=values["lokiRetention"],
        images=images,
        memory_mib={service.name: values[service.memory_key] for service in SERVICES},
        grafana_admin_user=values["grafanaAdminUser"],
        grafana_admin_password_set=bool(values[PASSWORD_KEY]),
        grafana_anonymous_enabled=values["grafanaAnonymousEnabled"],
        grafana_anonymous_role=values["grafanaAnonymousRole"],
        docker_host=docker_host,
        platform=platform,
        kube_context=values["kubeContext"] or None,
        namespace=namespace,
        storage_class=values["storageClass"] or None,
        versions=versions,
    )
    problems.extend(_check_combinations(config))
    if problems:
        raise ConfigError(problems)
    return config


def pinned_images(versions: str) -> dict[str, str]:
    """The image of each service the version profile pins, by service name."""
    return {service.name: service.releases[versions].image for service in SERVICES if versions in service.releases}


def default_namespace(stack: str) -> str:
    return f"{PROJECT}-{stack}"


def settings_notes(config: StackConfig, stored: frozenset[str] = frozenset()) -> list[str]:
    """What a user should know about valid settings that may not do what they expect; `stored`
    names the keys the stack file sets."""
    notes = []
    if config.platform == "docker":
        notes += [f"{key} is read on platform kubernetes only; this stack runs on docker"
                  for key in KUBERNETES_KEYS if key in stored]
    elif "logDir" in stored:
        notes.append("logDir is read on platform docker only: on kubernetes, `logs attach` and `check --smoke` push "
                     "the app's lines to Alloy")
    if config.bind_is_loopback or config.expose_backends:
        return notes
    return notes + [
        f"bindAddress {config.bind_address}: Grafana and the collector's OTLP receivers are published there; "
        f"Prometheus, Tempo, Loki, Alloy and the collector's metrics and health have no authentication and stay "
            f"on 127.0.0.1 (reach them through an SSH tunnel), unless you set exposeBackends to true"]


def _lower_case_name(image: str) -> str:
    """The image reference with its name (not its tag or digest) in lower case."""
    name, separator, rest = image.partition("@")
    if ":" in name.rsplit("/", 1)[-1]:
        name, tag = name.rsplit(":", 1)
        return f"{name.lower()}:{tag}{separator}{rest}"
    return f"{name.lower()}{separator}{rest}"


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


def _is_docker_host(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme not in DOCKER_HOST_SCHEMES:
        return False
    if parts.scheme in ("unix", "npipe"):
        return bool(parts.path.strip("/"))
    return bool(parts.hostname)
