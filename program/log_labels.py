"""The one label scheme of the app's logs, whichever way they come: Pino lines through Alloy,
OpenTelemetry log records through the collector. One query and one dashboard serve both: `job`
(the stack's appName), `env` (its appEnv) and `level`."""

from typing import Mapping

# Pino's numeric levels (pino/lib/constants.js).
PINO_LEVELS = {10: "trace", 20: "debug", 30: "info", 40: "warn", 50: "error", 60: "fatal"}

# Other loggers' names for the same levels (Python's logging, logrus, zap, Log4j), read as Pino's,
# whatever their case: a line's level is always one of the six the OTel path gives a record.
LEVEL_ALIASES = {"warning": "warn", "err": "error", "critical": "fatal", "panic": "fatal"}

# OpenTelemetry's severity numbers come in six ranges (SEVERITY_NUMBER_TRACE..TRACE4, ...), named
# as Pino names its levels: a record's level label then reads as a Pino line's does.
OTEL_SEVERITY_RANGES = tuple(PINO_LEVELS.values())



# Where Loki 3's own OTLP endpoint keeps a record's trace id: structured metadata of this name,
# which its query API answers among a stream's labels.
TRACE_ID_METADATA = "trace_id"


def log_labels(app_name: str, app_env: str) -> dict[str, str]:
    """The labels every line of the app gets besides its level."""
    return {"job": app_name, "env": app_env}


def logs_selector(labels: Mapping[str, str]) -> str:
    """The LogQL stream selector for all of the app's logs."""
    return "{" + ", ".join(f'{name}="{value}"' for name, value in labels.items()) + "}"
