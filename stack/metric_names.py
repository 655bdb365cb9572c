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
