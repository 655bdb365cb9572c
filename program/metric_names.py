"""How collector 0.91's Prometheus exporter names an OpenTelemetry metric.

The rule (pkg/translator/prometheus, normalize_name.go, at v0.91.0, with add_metric_suffixes on,
its default): every run of characters other than letters and digits becomes one underscore; the
unit is appended as a word unless the name already has it (`{...}` units are dropped); a
monotonic sum ends in `_total`; a leading digit gets an underscore.
"""

from __future__ import annotations

import re

# The collector 0.91 Prometheus exporter's unit words (pkg/translator/prometheus, normalize_name.go).
_UNIT_WORDS = {"d": "days", "h": "hours", "min": "minutes", "s": "seconds", "ms": "milliseconds",
               "us": "microseconds", "ns": "nanoseconds", "By": "bytes", "KiBy": "kibibytes",
               "MiBy": "mebibytes", "GiBy": "gibibytes", "KBy": "kilobytes", "MBy": "megabytes",
               "GBy": "gigabytes", "%": "percent"}


def prometheus_metric_name(name: str, unit: str, monotonic_sum: bool = False) -> str:
    """The name collector 0.91's Prometheus exporter gives an OTel metric (suffixes on, the default)."""
    words = [word for word in re.split(r"[^a-zA-Z0-9]", name) if word]
    unit_word = "" if "{" in unit else _UNIT_WORDS.get(unit, unit)
    if unit_word and unit_word not in words:
        words.append(unit_word)
    if monotonic_sum:
        words = [word for word in words if word != "total"] + ["total"]
    joined = "_".join(words)
    return f"_{joined}" if joined[:1].isdigit() else joined


# The collector's own counters of data it did not pass on, as 0.91.0 names them on its telemetry
# port (OpenCensus: no _total suffix), each with what it means. The exporter's series exist only
# after a first failure.
COLLECTOR_LOSS_COUNTERS = {
    "otelcol_receiver_refused": "refused",  # the memory_limiter refused it: the app was told
    "otelcol_processor_refused": "refused",
    "otelcol_processor_memory_limiter_refused": "refused",  # its name at 0.161
    "otelcol_processor_dropped": "dropped",
    "otelcol_exporter_send_failed": "failed to send",  # a permanent error, or retries ran out
    "otelcol_exporter_enqueue_failed": "could not queue",  # the sending queue was full
}
COLLECTOR_ITEMS = {"spans": "spans", "metric_points": "metric points", "log_records": "log records"}


def collector_loss_selector() -> str:
    """A PromQL selector of every loss counter, for every kind of telemetry."""
    return (f'{{__name__=~"({"|".join(COLLECTOR_LOSS_COUNTERS)})_({"|".join(COLLECTOR_ITEMS)})"}}')
