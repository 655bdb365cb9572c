"""Drift, read from the engine's own events during `pulumi preview --refresh`.

Each resource the preview would change arrives as a ResourcePreEvent whose metadata carries the
step's op, the properties that differ (`diffs`, `detailed_diff`) and the resource's type; errors
arrive as DiagnosticEvents. After a refresh, any op other than `same` (or a read) means the
running containers and the program disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional

from pulumi.automation import events

from program.services import PROJECT

ROOT_STACK_TYPE = "pulumi:pulumi:Stack"
# Ops that change nothing.
UNCHANGED_OPS = {"same", "read", "refresh", "discard", "remove-pending-replace"}
# A replacement shows as up to three steps on one URN; the strongest names it.
_STRENGTH = ["update", "delete", "create", "create-replacement", "delete-replaced", "replace"]

# What a differing property means for a trace-stack resource.
PROPERTY_MEANING = {
    "uploads": "a config file the container reads changed (template or setting)",
    "image": "the image changed (re-tagged, re-pulled or overridden)",
    "imageId": "the pulled image changed",
    "envs": "its environment changed",
    "command": "its command changed",
    "ports": "its published ports changed",
    "healthcheck": "its health check changed",
    "memory": "its memory limit changed",
    "memorySwap": "its memory limit changed",
    "volumes": "its volumes changed",
    "networksAdvanced": "its network changed",
    "labels": "its labels changed",
    "restart": "its restart policy changed",
    "hostname": "its hostname changed (the collector's follows Tempo's container, to be replaced with it)",
    "stopTimeout": "its stop timeout changed",
    "user": "the user it runs as changed",
    "capabilities": "its capabilities changed",
    # Kubernetes objects
    "spec.replicas": "scaled: its replicas differ from the program's",
    "spec": "its spec differs (edited outside Pulumi, or it follows a ConfigMap or Secret replaced)",
    "data": "its content differs (edited outside Pulumi)",
    "stringData": "its content differs (edited outside Pulumi)",
    "metadata": "its labels or annotations differ",
}


@dataclass
class ResourceDrift:
    urn: str
    type: str
    op: str
    properties: list[str] = field(default_factory=list)
    down: Optional[str] = None  # a container that is not running: how (`exited, code 137`)

    @property
    def name(self) -> str:
        return self.urn.rsplit("::", 1)[-1]

    @property
    def short_name(self) -> str:
        """The name without the component's: a container's is its service (`tempo`)."""
        return self.name.removeprefix(PROJECT + "-")

    def line(self) -> str:
        if self.down:
            return f"{'down':<8} {self.type} {self.name}: {self.short_name} is down ({self.down})"
        if self.op == "create":
            why = "missing: it was removed outside Pulumi, or is new in the program"
        elif self.op == "delete":
            why = "no longer in the program"
        else:
            meanings = dict.fromkeys(PROPERTY_MEANING.get(p, PROPERTY_MEANING.get(p.split(".")[0].split("[")[0],
                                                                                  f"{p} differs"))
                                     for p in self.properties)
            why = "; ".join(meanings) or "differs"
        return f"{self.op:<8} {self.type} {self.name}: {why}"


def drift_from_events(engine_events: Iterable[events.EngineEvent]) -> list[ResourceDrift]:
    """Every resource the preview would change, one entry per resource."""
    by_urn: dict[str, ResourceDrift] = {}
    for event in engine_events:
        if event.resource_pre_event is None:
            continue
        step = event.resource_pre_event.metadata
        op = step.op.value
        if op in UNCHANGED_OPS or step.type == ROOT_STACK_TYPE:
            continue
        properties = list(dict.fromkeys([*(step.keys or []), *(step.diffs or []), *(step.detailed_diff or {})]))
        current = by_urn.get(step.urn)
        if current is None:
            by_urn[step.urn] = ResourceDrift(step.urn, step.type, _normal(op), properties)
        else:
            if _STRENGTH.index(_normal(op)) > _STRENGTH.index(current.op):
                current.op = _normal(op)
            current.properties = list(dict.fromkeys(current.properties + properties))
    return list(by_urn.values())


def repairs(engine_events: Iterable[events.EngineEvent], down_before: Mapping[str, str], workload_type: str) -> list[str]:
    """What an `up` that refreshed first put back, one phrase each (`tempo was down (exited, code
    137): replaced`), from its engine events and which workloads (of workload_type) were down
    before it (service -> how). A resource the refresh found (every one in the state gets a `refresh` step)
    and the update then created had been removed outside Pulumi; a container that was down and
    was replaced or updated is running again. Other changes are the program's, not repairs."""
    engine_events = list(engine_events)
    in_state = {event.resource_pre_event.metadata.urn for event in engine_events
                if event.resource_pre_event is not None and event.resource_pre_event.metadata.op.value == "refresh"}
    repaired = []
    for change in drift_from_events(engine_events):
        name = change.short_name
        if change.op == "create" and change.urn in in_state:
            repaired.append(f"{name} was missing: created")
        elif change.type == workload_type and name in down_before:
            repaired.append(f"{name} was down ({down_before[name]}): {'replaced' if change.op == 'replace' else 'started'}")
    return repaired


def first_error(engine_events: Iterable[events.EngineEvent]) -> Optional[str]:
    """The engine's first error diagnostic, its first line, or None."""
    for event in engine_events:
        diagnostic = event.diagnostic_event
        if diagnostic is not None and diagnostic.severity == "error":
            lines = [line.strip() for line in diagnostic.message.splitlines() if line.strip()]
            return lines[0] if lines else "the preview failed"
    return None


def _normal(op: str) -> str:
    return "replace" if op in ("create-replacement", "delete-replaced") else op if op in _STRENGTH else "update"
