"""up, drift and down, on Pulumi's Automation API (which drives the `pulumi` CLI)."""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Callable, Optional

from pulumi import automation as auto

from program.services import PROJECT, data_volume_names
from program.settings import StackConfig, settings_from_stack_config

from .drift import ResourceDrift, drift_from_events, first_error
from .preflight import docker
from .pulumi_cli import pulumi_env, require_pulumi

PROJECT_DIR = Path(__file__).resolve().parent.parent


class DriftUnknown(Exception):
    """The preview failed for another reason than finding changes: whether the stack drifted
    cannot be told."""


def default_stack_name() -> str:
    """Each developer's own stack: their login name."""
    return getpass.getuser()


def open_stack(name: str, create: bool) -> auto.Stack:
    require_pulumi()
    os.environ.update(pulumi_env())
    if create:
        return auto.create_or_select_stack(stack_name=name, work_dir=str(PROJECT_DIR))
    return auto.select_stack(stack_name=name, work_dir=str(PROJECT_DIR))


def current_stack_name() -> Optional[str]:
    """The stack `pulumi stack select` last chose, if any."""
    require_pulumi()
    os.environ.update(pulumi_env())
    summary = auto.LocalWorkspace(work_dir=str(PROJECT_DIR)).stack()
    return summary.name if summary else None


def stack_settings(stack: auto.Stack) -> StackConfig:
    """The stack's settings as the program will see them, validated (raises ConfigError)."""
    prefix = f"{PROJECT}:"
    values = {key[len(prefix):]: value for key, value in stack.get_all_config().items() if key.startswith(prefix)}
    return settings_from_stack_config(stack.name, {key: value.value for key, value in values.items()},
                                      {key for key, value in values.items() if value.secret})


def up(stack: auto.Stack, on_output: Callable[[str], None]) -> dict[str, str]:
    """Install the program's dependencies, deploy, and return the stack's outputs."""
    stack.workspace.install()
    result = stack.up(on_output=on_output)
    return {name: str(output.value) for name, output in result.outputs.items()}


def drift(stack: auto.Stack) -> list[ResourceDrift]:
    """Refresh from the engine, then preview against the program: what differs. Raises
    DriftUnknown when the preview fails for any other reason than the changes it found."""
    seen: list[auto.EngineEvent] = []
    try:
        stack.preview(refresh=True, expect_no_changes=True, on_event=seen.append)
    except auto.CommandError as error:
        drifted = drift_from_events(seen)
        error_line = first_error(seen)
        # --expect-no-changes fails the command on drift, and only then is the failure an answer.
        if error_line or not drifted:
            raise DriftUnknown(error_line or _last_line(str(error))) from None
        return drifted
    return drift_from_events(seen)


def down(stack: auto.Stack, config: StackConfig, delete_data: bool,
         on_output: Callable[[str], None]) -> tuple[list[str], Optional[str]]:
    """Destroy containers and network; the volumes stay unless delete_data. Returns the volumes
    and, if removing them failed, why."""
    stack.destroy(on_output=on_output)
    volumes = data_volume_names(config.stack)
    if not delete_data:
        return volumes, None
    result = docker(config, "volume", "rm", *volumes)
    errors = result.stderr.strip().splitlines()
    only_missing = bool(errors) and all("no such volume" in line.lower() for line in errors)
    if result.returncode == 0 or only_missing:
        return volumes, None
    return volumes, result.stderr.strip() or f"`docker volume rm` exited {result.returncode}"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and not line.strip().startswith(("code:", "stdout:", "stderr:"))]
    return lines[-1] if lines else "no message"
