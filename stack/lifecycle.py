"""up, drift and down, on Pulumi's Automation API (which drives the `pulumi` CLI)."""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Callable, Optional

from pulumi import automation as auto

from .component import docker_name
from .config import PASSWORD_KEY, PROJECT, StackConfig, parse_settings
from .drift import ResourceDrift, parse_preview
from .preflight import docker, require_pulumi
from .services import DATA_DIRS

PROJECT_DIR = Path(__file__).resolve().parent.parent


def default_stack_name() -> str:
    """Each developer's own stack: their login name."""
    return getpass.getuser()


def _use_local_passphrase() -> None:
    # A local stack encrypts its secrets with a passphrase; without one set, an empty one, so no
    # command ever stops to prompt. PULUMI_CONFIG_PASSPHRASE(_FILE) set by the user win.
    if "PULUMI_CONFIG_PASSPHRASE" not in os.environ and "PULUMI_CONFIG_PASSPHRASE_FILE" not in os.environ:
        os.environ["PULUMI_CONFIG_PASSPHRASE"] = ""


def open_stack(name: str, create: bool) -> auto.Stack:
    require_pulumi()
    _use_local_passphrase()
    if create:
        return auto.create_or_select_stack(stack_name=name, work_dir=str(PROJECT_DIR))
    return auto.select_stack(stack_name=name, work_dir=str(PROJECT_DIR))


def stack_settings(stack: auto.Stack) -> StackConfig:
    """The stack's settings as the program will see them, validated (raises ConfigError)."""
    prefix = f"{PROJECT}:"
    values = stack.get_all_config()
    raw = {key[len(prefix):]: value.value for key, value in values.items() if key.startswith(prefix)}
    password = values.get(prefix + PASSWORD_KEY)
    return parse_settings(stack.name, raw, password_encrypted=password is None or password.secret or not password.value)


def up(stack: auto.Stack, on_output: Callable[[str], None]) -> dict[str, str]:
    """Install the program's dependencies, deploy, and return the stack's outputs."""
    stack.workspace.install()
    result = stack.up(on_output=on_output)
    return {name: str(output.value) for name, output in result.outputs.items()}


def drift(stack: auto.Stack) -> list[ResourceDrift]:
    """Refresh from the engine, then preview against the program: what differs."""
    printed: list[str] = []
    try:
        stack.preview(refresh=True, expect_no_changes=True, json=True, on_output=printed.append)
    except auto.CommandError:
        pass  # --expect-no-changes fails the command on drift; the JSON it printed says what differs
    return parse_preview("\n".join(printed))


def down(stack: auto.Stack, config: StackConfig, delete_data: bool,
         on_output: Callable[[str], None]) -> tuple[list[str], Optional[str]]:
    """Destroy containers and network; the volumes stay unless delete_data. Returns the volumes
    and, if removing them failed, why."""
    stack.destroy(on_output=on_output)
    volumes = [docker_name(config, service, "data") for service in DATA_DIRS]
    if not delete_data:
        return volumes, None
    result = docker(config, "volume", "rm", *volumes)
    missing_is_fine = all("no such volume" in line.lower() for line in result.stderr.strip().splitlines())
    return volumes, None if result.returncode == 0 or missing_is_fine else result.stderr.strip()
