"""Reading drift out of `pulumi preview --refresh --json`.

The document is Pulumi's preview digest (pkg/backend/display/json.go, ShowPreviewDigest):
`{"steps": [{"op", "urn", "diffReasons", "replaceReasons", "detailedDiff": {path: {"kind",
"inputDiff"}}, "oldState", "newState"}], "changeSummary": {op: count}, "diagnostics": [...]}`.
After a refresh, any step other than `same` (or a read) means the running containers and the
program disagree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

# Ops that change nothing (deploy.StepOp values).
UNCHANGED_OPS = {"same", "read", "refresh", "discard"}
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
}


class DriftParseError(Exception):
    pass


@dataclass
class ResourceDrift:
    urn: str
    op: str
    properties: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.urn.rsplit("::", 1)[-1]

    @property
    def type(self) -> str:
        return self.urn.rsplit("::", 2)[-2].rsplit("$", 1)[-1]

    def line(self) -> str:
        if self.op == "create":
            why = "missing: it was removed outside Pulumi, or is new in the program"
        elif self.op == "delete":
            why = "no longer in the program"
        else:
            meanings = dict.fromkeys(PROPERTY_MEANING.get(p.split(".")[0].split("[")[0], f"{p} differs")
                                     for p in self.properties)
            why = "; ".join(meanings) or "differs"
        return f"{self.op:<8} {self.type} {self.name}: {why}"


def parse_preview(text: str) -> list[ResourceDrift]:
    """Every resource whose preview step is a change, one entry per resource."""
    try:
        digest = json.loads(text)
    except json.JSONDecodeError as error:
        raise DriftParseError(f"the preview printed no JSON ({error.msg})") from None
    if not isinstance(digest, dict) or not isinstance(digest.get("steps", []), list):
        raise DriftParseError("the preview's JSON has no list of steps")
    errors = [d.get("message", "").strip() for d in digest.get("diagnostics", []) if d.get("severity") == "error"]
    if errors and not digest.get("steps"):
        raise DriftParseError(errors[0].splitlines()[0] if errors[0] else "the preview failed")

    by_urn: dict[str, ResourceDrift] = {}
    for step in digest.get("steps", []):
        op = step.get("op", "")
        if op in UNCHANGED_OPS or step.get("urn", "").endswith("::" + "pulumi:pulumi:Stack"):
            continue
        properties = list(dict.fromkeys([*(step.get("replaceReasons") or []), *(step.get("diffReasons") or []),
                                         *(step.get("detailedDiff") or {})]))
        current = by_urn.get(step["urn"])
        if current is None:
            by_urn[step["urn"]] = ResourceDrift(step["urn"], _normal(op), properties)
        else:
            if _STRENGTH.index(_normal(op)) > _STRENGTH.index(current.op):
                current.op = _normal(op)
            current.properties = list(dict.fromkeys(current.properties + properties))
    return list(by_urn.values())


def _normal(op: str) -> str:
    return "replace" if op in ("create-replacement", "delete-replaced") else op if op in _STRENGTH else "update"
