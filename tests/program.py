"""Run the real __main__.py under Pulumi mocks and record what it declares."""

from __future__ import annotations

import json
import runpy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pulumi
from pulumi.runtime import mocks, settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "trace-stack"
COMPONENT = "trace-stack"  # the TraceStack's name in __main__.py; its children's names start with it

# How the engine marks a secret value in the inputs it hands a provider.
SECRET_SIGNATURE = "1b47061264138c4ac30d75fd1eb44270"


@dataclass
class Declared:
    type: str
    name: str
    inputs: dict
    provider: Optional[str]


@dataclass
class Program:
    resources: list[Declared] = field(default_factory=list)
    # The ResourceOptions each resource was declared with, and the inputs as the program gave them
    # (Outputs, with the resources they come from), by (type token, name): mocks never see them.
    options: dict[tuple[str, str], pulumi.ResourceOptions] = field(default_factory=dict)
    arguments: dict[tuple[str, str], Any] = field(default_factory=dict)
    instances: dict[tuple[str, str], pulumi.CustomResource] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    error: Optional[BaseException] = None

    def of_type(self, short_type: str) -> list[Declared]:
        return [r for r in self.resources if r.type == f"docker:index/{short_type}"]

    def kubernetes(self, kind: str) -> dict[str, dict]:
        """Each declared Kubernetes object of `kind` (`apps/v1:Deployment`), by its resource name
        without the component's."""
        return {r.name.removeprefix(f"{COMPONENT}-"): r.inputs for r in self.resources
                if r.type == f"kubernetes:{kind}"}

    def one(self, short_type: str, name: str) -> Declared:
        matches = [r for r in self.of_type(short_type) if r.name == name]
        assert len(matches) == 1, f"expected one {short_type} {name}, found {len(matches)}"
        return matches[0]

    def child(self, short_type: str, suffix: str) -> Declared:
        """The component's child named `{component}-{suffix}`."""
        return self.one(short_type, f"{COMPONENT}-{suffix}")

    @property
    def containers(self) -> dict[str, dict]:
        """Each container's inputs, by its service."""
        return {r.name.removeprefix(f"{COMPONENT}-"): r.inputs for r in self.of_type("container:Container")}


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self, program: Program):
        self.program = program

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        self.program.resources.append(Declared(args.typ, args.name, dict(args.inputs), args.provider))
        state = dict(args.inputs)
        if args.typ == "docker:index/remoteImage:RemoteImage":
            state["imageId"] = f"sha256:{args.inputs['name']}"
        if args.typ.startswith("kubernetes:") and "metadata" in state and not state["metadata"].get("name"):
            # Pulumi names an object the program leaves unnamed: its resource name and a suffix.
            state["metadata"] = {**state["metadata"], "name": f"{args.name}-0a1b2c3d"}
        return [f"{args.name}-id", state]

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


def run_program(config: Optional[dict[str, Any]] = None, stack: str = "dev",
                secret_keys: tuple[str, ...] = ()) -> Program:
    """Run __main__.py for `stack` with `config` (keys without the project prefix)."""
    program = Program()
    settings.reset_options()
    mocks.set_mocks(RecordingMocks(program), project=PROJECT, stack=stack, preview=False)
    pulumi.runtime.set_all_config(
        {f"{PROJECT}:{key}": value if isinstance(value, str) else json.dumps(value)
         for key, value in (config or {}).items()},
        [f"{PROJECT}:{key}" for key in secret_keys],
    )

    original_export, original_init = pulumi.export, pulumi.CustomResource.__init__
    pulumi.export = lambda name, value: program.outputs.__setitem__(name, value)

    def recording_init(resource, t, name, props=None, opts=None, *args, **kwargs):
        program.options[(t, name)] = opts or pulumi.ResourceOptions()
        program.arguments[(t, name)] = props
        program.instances[(t, name)] = resource
        original_init(resource, t, name, props, opts, *args, **kwargs)

    pulumi.CustomResource.__init__ = recording_init
    try:
        _sync_await(run_pulumi_func(lambda: runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")))
    except pulumi.RunError as error:
        program.error = error
    finally:
        pulumi.export, pulumi.CustomResource.__init__ = original_export, original_init
    program.outputs = {name: _resolve(value) for name, value in program.outputs.items()}
    return program


def sources(value: pulumi.Output) -> set:
    """The resources an Output comes from."""
    return _sync_await(value.resources())


def _resolve(value: Any) -> Any:
    if isinstance(value, pulumi.Output):
        return _sync_await(value.future())
    return value


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get("4dabf18193072939515e22adb298388d") == SECRET_SIGNATURE
