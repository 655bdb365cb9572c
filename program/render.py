"""Rendering of the config files in configs/ with a stack's values.

Every template sees the same values (`template_values`), so a port, a host name or a label is
written in one place. Values are inserted with `tojson`, which YAML and Alloy both read as a
quoted string, so no value can break a file's syntax.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import jinja2

from .log_labels import LEVEL_ALIASES, OTEL_SEVERITY_RANGES, PINO_LEVELS, TRACE_ID_METADATA, log_labels
from .services import (DATASOURCE_UIDS, GRAFANA_DASHBOARDS_DIR, LOG_MOUNT, PORTS, PORTS_BY_NAME, SERVICES, Service,
                       image_version)
from .settings import StackConfig

CONFIGS_DIR = Path(__file__).resolve().parent.parent / "configs"

# The collector's Prometheus exporter labels exemplars trace_id; Tempo's metrics-generator traceID.
EXEMPLAR_TRACE_ID_LABELS = ("trace_id", "traceID")

# The seed's app writes traceId; Pino's OpenTelemetry instrumentation writes trace_id; the
# collector's loki exporter writes traceid.
TRACE_ID_FIELD_REGEX = r'"(?:traceId|trace_id|traceid)"\s*:\s*"([0-9a-fA-F]{16,32})"'

# How the collector's exporters hold on to data while Tempo or Loki cannot take it (a restart, a
# replace): a queue of the app's requests on the collector's volume (the file_storage extension),
# retried with backoff. At 5,000 items/s an SDK sends about 10 requests/s per signal (512 items
# each), so 6,000 requests hold 10 minutes, as long as the retries go on; on disk, a queue only
# takes the space of what it holds.
COLLECTOR_QUEUE_STORAGE = "file_storage/queues"
EXPORTER_QUEUE = {"enabled": True, "num_consumers": 10, "queue_size": 6000, "storage": COLLECTOR_QUEUE_STORAGE}
# The largest request the collector takes from the app, which goes on to Tempo or Loki whole.
COLLECTOR_MAX_REQUEST_MIB = 4
EXPORTER_RETRY = {"enabled": True, "initial_interval": "1s", "max_interval": "30s", "max_elapsed_time": "10m"}

# The collector's memory_limiter refuses data above this share of its container's limit, so the
# collector slows its senders down instead of being killed; a fifth of that is kept for spikes.
COLLECTOR_HEAP_SHARE = 0.8

_environment = jinja2.Environment(
    loader=jinja2.FileSystemLoader(CONFIGS_DIR),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,
)
# Jinja's own tojson escapes <, >, & and ' for HTML; these files are not HTML.
_environment.filters["tojson"] = lambda value: json.dumps(value, ensure_ascii=False)


def pino_level_template() -> str:
    """The Go template Alloy's stage.template runs on a line's `level`: Pino's numbers, its names
    and other loggers' names for them (LEVEL_ALIASES), in any case, to Pino's names; any other
    level lower-cased.

    A line without a level renders empty, which drops the key, instead of "<no value>".
    """
    given = {name: [str(number), name] for number, name in PINO_LEVELS.items()}
    for alias, name in LEVEL_ALIASES.items():
        given[name].append(alias)
    # eq with several arguments is true when the first equals any of the others.
    branches = " else if ".join("eq $level " + " ".join(json.dumps(value) for value in values) + f" }}}}{name}{{{{"
                                for name, values in given.items())
    return "{{ if .Value }}{{ $level := ToLower .Value }}{{ if " + branches + " else }}{{ $level }}{{ end }}{{ end }}"


def otel_severity_level_statements(path_context: str = "") -> list[str]:
    """OTTL statements (transform processor, log context) that set attributes["level"] from a
    record's severity number; a record without one gets no level, as a Pino line without one.
    path_context prefixes each path (`log.`) where the collector's OTTL wants it said."""
    severity = f"{path_context}severity_number"
    statements = []
    for name, next_name in zip(OTEL_SEVERITY_RANGES, (*OTEL_SEVERITY_RANGES[1:], None)):
        condition = f"{severity} >= SEVERITY_NUMBER_{name.upper()}"
        if next_name:
            condition += f" and {severity} < SEVERITY_NUMBER_{next_name.upper()}"
        statements.append(f'set({path_context}attributes["level"], "{name}") where {condition}')
    return statements


def template_values(config: StackConfig) -> dict[str, Any]:
    """The values every template is rendered with: one dict, so tests can render with others."""
    collector_limit = int(config.memory_mib["otel-collector"] * COLLECTOR_HEAP_SHARE)
    release = {_template_key(service): dict(service.releases[config.versions].values)
               for service in SERVICES if config.versions in service.releases}
    return {
        "port": {port.name: port.internal for port in PORTS},
        # Inside a container every interface is the container's own; tests listen on loopback.
        "listen_host": "0.0.0.0",
        "scrape_interval": "15s",
        # The collector's Prometheus exporter, where the app's metrics are: an app of 3,000 series
        # costs Prometheus 600 samples/s at 5 s (200 at 15 s).
        "app_scrape_interval": "5s",
        # On the stack's network each container answers to its service name.
        "host": {_template_key(service): service.name for service in SERVICES},
        "data_dir": {service.name: service.data_dir for service in SERVICES if service.data_dir},
        "uid": dict(DATASOURCE_UIDS),
        "tempo_retention": config.tempo_retention,
        "loki_retention": config.loki_retention,
        "log_mount": LOG_MOUNT,
        # Where Alloy takes the app's lines: files in logDir on Docker, pushed lines on Kubernetes.
        "log_push_port": PORTS_BY_NAME["alloy_push"].internal if config.platform == "kubernetes" else None,
        "log_labels": log_labels(config.app_name, config.app_env),
        "pino_level_template": pino_level_template(),
        "otel_severity_levels": otel_severity_level_statements(release["otel_collector"]["ottl_log"]),
        "exemplar_trace_id_labels": list(EXEMPLAR_TRACE_ID_LABELS),
        "trace_id_field_regex": TRACE_ID_FIELD_REGEX,
        "trace_id_metadata": TRACE_ID_METADATA,
        "grafana_dashboards_dir": GRAFANA_DASHBOARDS_DIR,
        "collector_memory_limit_mib": collector_limit,
        "collector_memory_spike_mib": collector_limit // 5,
        "exporter_queue": EXPORTER_QUEUE,
        "queue_storage": COLLECTOR_QUEUE_STORAGE,
        "collector_max_request_mib": COLLECTOR_MAX_REQUEST_MIB,
        "exporter_retry": EXPORTER_RETRY,
        # Where a service's config differs between its releases: what the stack's release says.
        "release": release,
        # The version each runs, as its image names it, for the files' own headers.
        "version": {_template_key(service): image_version(config.images[service.name]) or config.images[service.name]
                    for service in SERVICES},
    }


def _template_key(service: Service) -> str:
    return service.name.replace("-", "_")


def render(template: str, values: Mapping[str, Any]) -> str:
    return _environment.get_template(template).render(values)


def render_service_files(service: Service, values: Mapping[str, Any]) -> dict[str, str]:
    """Container path -> content of every config file the service reads: templates rendered,
    generated files (dashboards) as they are."""
    rendered = {file.path: render(file.template, values) for file in service.config_files}
    return {**rendered, **service.generated_files(values)}
