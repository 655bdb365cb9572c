"""up, drift and down, on Pulumi's Automation API (which drives the `pulumi` CLI)."""

from __future__ import annotations

import os
import re
from typing import Callable, Optional

from pulumi import automation as auto

from program.services import PASSWORD_KEY, PROJECT, data_volume_names, docker_name
from program.settings import StackConfig, settings_from_stack_config

from .drift import ResourceDrift, drift_from_events, first_error
from .preflight import docker
from .pulumi_cli import PROJECT_DIR, pulumi_env, require_pulumi

CONTAINER_TYPE = "docker:index/container:Container"


class DriftUnknown(Exception):
    """The preview failed for another reason than finding changes: whether the stack drifted
    cannot be told."""


class NotDeployed(Exception):
    """The stack exists but holds no resources: it was never deployed (or was destroyed)."""


class StepFailed(Exception):
    """A `pulumi` step failed: which one, the line that says why, and what to do if known."""

    def __init__(self, step: str, cause: str):
        self.step, self.cause, self.hint = step, cause, hint(cause)
        super().__init__(f"`{step}` failed: {cause}" + (f"\n{self.hint}" if self.hint else ""))


def failure_cause(error: auto.CommandError) -> str:
    """Why a pulumi command failed: the text of the last `error:` it printed, or its last line.
    Its very last line can hide the cause (`pulumi install` ends with "context canceled")."""
    text = str(error)
    stderr = text.split("\n stderr: ", 1)[1] if "\n stderr: " in text else text
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line.rsplit("error: ", 1)[1] for line in lines if "error: " in line]
    return errors[-1] if errors else (lines[-1] if lines else "no message")


def hint(cause: str) -> str:
    """What to do about a known cause, or nothing."""
    plugin = re.search(r"failed to download plugin: (\w+)-v?(\d[\w.-]*)", cause)
    if plugin:
        name, version = plugin.groups()
        return (f"The {name} provider plugin could not be downloaded (a proxy may block it). Install it from a file: "
                f"`pulumi plugin install resource {name} v{version} --file pulumi-resource-{name}-v{version}-"
                f"linux-amd64.tar.gz` (from the provider's release page), or put `pulumi-resource-{name}` on PATH.")
    if "incorrect passphrase" in cause:
        return ("The stack's secrets were encrypted with another passphrase: set PULUMI_CONFIG_PASSPHRASE (or "
                "PULUMI_CONFIG_PASSPHRASE_FILE) to it.")
    if "no language plugin 'pulumi-language-python'" in cause:
        return ("This pulumi CLI has no Python language host: install the CLI with its language hosts "
                "(https://www.pulumi.com/docs/install/), which puts pulumi-language-python beside it.")
    return ""


def _prepare_cli() -> None:
    """The Automation API runs the CLI with this process's environment: give it the passphrase."""
    require_pulumi()
    os.environ.update(pulumi_env())


def open_stack(name: str, create: bool) -> auto.Stack:
    _prepare_cli()
    if create:
        return auto.create_or_select_stack(stack_name=name, work_dir=str(PROJECT_DIR))
    return auto.select_stack(stack_name=name, work_dir=str(PROJECT_DIR))


def current_stack_name() -> Optional[str]:
    """The stack `pulumi stack select` last chose, if any."""
    _prepare_cli()
    summary = auto.LocalWorkspace(work_dir=str(PROJECT_DIR)).stack()
    return summary.name if summary else None


def stack_settings(stack: auto.Stack) -> tuple[StackConfig, Optional[str]]:
    """The stack's settings as the program will see them, validated (raises ConfigError), and
    its Grafana admin password, as `up` gives it to Grafana (never printed)."""
    prefix = f"{PROJECT}:"
    values = {key[len(prefix):]: value for key, value in stack.get_all_config().items() if key.startswith(prefix)}
    settings = settings_from_stack_config(stack.name, {key: value.value for key, value in values.items()},
                                          {key for key, value in values.items() if value.secret})
    password = values.get(PASSWORD_KEY)
    return settings, password.value if password and password.value else None


def deployed(stack: auto.Stack) -> bool:
    return bool(stack.export_stack().deployment.get("resources"))


def up(stack: auto.Stack, on_output: Callable[[str], None]) -> dict[str, str]:
    """Install the program's dependencies and plugins, deploy, and return the stack's outputs;
    what pulumi prints goes to on_output as it comes. Raises StepFailed."""
    try:
        stack.workspace.install(on_output=on_output)
    except auto.CommandError as error:
        raise StepFailed("pulumi install", failure_cause(error)) from None
    seen: list[auto.EngineEvent] = []
    try:
        result = stack.up(on_output=on_output, on_event=seen.append)
    except auto.CommandError as error:
        raise StepFailed("pulumi up", first_error(seen) or failure_cause(error)) from None
    return {name: str(output.value) for name, output in result.outputs.items()}


def drift(stack: auto.Stack, config: StackConfig) -> list[ResourceDrift]:
    """Refresh from the engine, then preview against the program: what differs. Raises
    NotDeployed, or DriftUnknown when the preview fails for any other reason than the changes
    it found."""
    if not deployed(stack):
        raise NotDeployed(stack.name)
    seen: list[auto.EngineEvent] = []
    try:
        stack.preview(refresh=True, expect_no_changes=True, on_event=seen.append)
    except auto.CommandError as error:
        # --expect-no-changes fails the command on drift, and only then is the failure an answer.
        error_line = first_error(seen)
        if error_line or not drift_from_events(seen):
            raise DriftUnknown(error_line or failure_cause(error)) from None
    drifted = drift_from_events(seen)
    for resource in drifted:
        if resource.type == CONTAINER_TYPE:
            resource.down = container_down(config, resource.name.removeprefix(f"{PROJECT}-"))
    return drifted


def container_down(config: StackConfig, service: str) -> Optional[str]:
    """How a service's container is down (`exited, code 137`), or None when it runs or is not there.

    A refresh of a container that has exited or is restarting reads back no ports (the engine
    has released its network) and must_run false, so the preview plans a replace and an update
    (terraform-provider-docker v4.5.0, resourceDockerContainerRead): the container is down, the
    program did not change."""
    result = docker(config, "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}",
                    docker_name(config.stack, service))
    if result.returncode != 0 or not result.stdout.split():
        return None
    status, code = result.stdout.split()[:2]
    return None if status == "running" else f"{status}, code {code}"


def down(stack: auto.Stack, config: StackConfig, delete_data: bool,
         on_output: Callable[[str], None]) -> tuple[list[str], Optional[str]]:
    """Destroy containers and network; the volumes stay unless delete_data. Returns the volumes
    and, if removing them failed, why. Raises NotDeployed when there is nothing to destroy."""
    if not deployed(stack):
        raise NotDeployed(stack.name)
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


