"""The one label scheme of the app's logs, whichever way they come: Pino lines through Alloy,
OpenTelemetry log records through the collector. One query and one dashboard serve both."""

# Pino's numeric levels (pino/lib/constants.js).
PINO_LEVELS = {10: "trace", 20: "debug", 30: "info", 40: "warn", 50: "error", 60: "fatal"}

# OpenTelemetry's severity numbers come in six ranges (SEVERITY_NUMBER_TRACE..TRACE4, ...), named
# as Pino names its levels: a record's level label then reads as a Pino line's does.
OTEL_SEVERITY_RANGES = tuple(PINO_LEVELS.values())

# Labels every log line gets besides its level, as the seed's queries expect them.
LOG_LABELS = {"job": "refly-api", "env": "local"}


def logs_selector() -> str:
    """The LogQL stream selector for all of the app's logs."""
    return "{" + ", ".join(f'{name}="{value}"' for name, value in LOG_LABELS.items()) + "}"
