"""up, drift and down, on Pulumi's Automation API (which drives the `pulumi` CLI)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path
from typing import Callable, Optional

from pulumi import automation as auto

from program.services import PASSWORD_KEY, PROJECT, VERSION_PROFILES, switch_losses
from program.settings import StackConfig, settings_from_stack_config

from .drift import ResourceDrift, drift_from_events, first_error, repairs
from .platforms import platform_of
from .pulumi_cli import PROJECT_DIR, local_state, pulumi_env, pulumi_home, require_pulumi


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


def _versions_record(stack_name: str) -> Path:
    """Where `up` records the version profile a stack's data was written at: it outlives `down`,
    which keeps the data."""
    return local_state(f"versions-{stack_name}")


def data_versions(stack: auto.Stack) -> Optional[str]:
    """The version profile the stack's data was written at; None when `up` knows of no data."""
    record = _versions_record(stack.name)
    if record.exists():
        return record.read_text().strip()
    # Deployed before `up` kept the record: at the one profile there was then.
    return VERSION_PROFILES[0] if deployed(stack) else None


def versions_switch_losses(stack: auto.Stack, config: StackConfig) -> tuple[Optional[str], list[str]]:
    """The profile the stack's data was written at, and what switching it to config.versions
    would lose (nothing when it is not a switch)."""
    written = data_versions(stack)
    if written is None or written == config.versions:
        return written, []
    return written, switch_losses(written, config.versions)


def _install_record() -> Path:
    """Where the last successful `pulumi install` of this project is recorded: beside the plugins
    it installed, so a new Pulumi home starts without one."""
    return local_state("installed")


def _install_inputs(cli_version: str) -> str:
    """What `pulumi install` installs from: the CLI, requirements.txt, Pulumi.yaml, and the venv
    itself (made anew, it holds nothing)."""
    digest = hashlib.sha256(cli_version.encode())
    for path in (PROJECT_DIR / "requirements.txt", PROJECT_DIR / "Pulumi.yaml"):
        digest.update(path.read_bytes())
    venv = PROJECT_DIR / "venv" / "pyvenv.cfg"
    digest.update(str(venv.stat().st_mtime_ns if venv.exists() else 0).encode())
    return digest.hexdigest()


def _provider_plugin_installed(platform: str) -> bool:
    """The provider plugin of the stack's platform, at the version its package in requirements.txt
    asks for, is installed, or on PATH (where the CLI finds a plugin before its own)."""
    pinned = re.search(rf"^pulumi-{platform}==(\S+)$", (PROJECT_DIR / "requirements.txt").read_text(), re.MULTILINE)
    return bool(pinned) and ((pulumi_home() / "plugins" / f"resource-{platform}-v{pinned[1]}").is_dir()
                             or shutil.which(f"pulumi-resource-{platform}") is not None)


def _venv_installed() -> bool:
    """venv/ holds requirements.txt as it is now: scripts/ensure-venv records what it installed."""
    installed = PROJECT_DIR / "venv" / ".requirements.txt"
    return installed.exists() and installed.read_bytes() == (PROJECT_DIR / "requirements.txt").read_bytes()


def install(stack: auto.Stack, config: StackConfig, on_output: Callable[[str], None]) -> bool:
    """`pulumi install` (the program's packages and the provider plugins), unless nothing it
    installs from changed since it last succeeded and the stack's platform's plugin is still there.
    Returns whether it ran. Raises StepFailed."""
    inputs, record = _install_inputs(stack.workspace.pulumi_version), _install_record()
    if record.exists() and record.read_text() == inputs and _provider_plugin_installed(config.platform):
        return False
    try:
        # The program runs in venv/, which ./up (scripts/ensure-venv) keeps to requirements.txt:
        # then only the plugins are left to install, and pip is not run twice.
        stack.workspace.install(no_dependencies=_venv_installed(), on_output=on_output)
    except auto.CommandError as error:
        raise StepFailed("pulumi install", failure_cause(error)) from None
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(inputs)
    return True


def up(stack: auto.Stack, config: StackConfig, down_before: dict[str, str],
       on_output: Callable[[str], None]) -> tuple[dict[str, str], list[str]]:
    """Refresh the state from the engine and deploy: whatever happened outside Pulumi, the stack
    ends as the program declares. Returns the stack's outputs and what was put back, given which
    of its containers were down before (service -> how); what pulumi prints goes to on_output as
    it comes. Raises StepFailed."""
    seen: list[auto.EngineEvent] = []
    try:
        # Without the refresh the engine trusts its state: a container stopped or removed
        # outside Pulumi would stay so ("20 unchanged").
        result = stack.up(refresh=True, on_output=on_output, on_event=seen.append)
    except auto.CommandError as error:
        raise StepFailed("pulumi up", first_error(seen) or failure_cause(error)) from None
    outputs = {name: str(output.value) for name, output in result.outputs.items()}
    record = _versions_record(stack.name)
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(config.versions)
    return outputs, repairs(seen, down_before, platform_of(config).WORKLOAD_TYPE)


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
    platform = platform_of(config)
    if any(resource.type == platform.WORKLOAD_TYPE for resource in drifted):
        # A refresh of a container that has exited or is restarting reads back no ports (the
        # engine has released its network) and must_run false, so the preview plans a replace
        # and an update (terraform-provider-docker v4.5.0, resourceDockerContainerRead); a
        # Deployment scaled to 0 differs in its replicas: the workload is down, the program did
        # not change.
        down = platform.workloads_down(config)
        for resource in drifted:
            if resource.type == platform.WORKLOAD_TYPE:
                resource.down = down.get(resource.short_name)
    return drifted


def down(stack: auto.Stack, config: StackConfig, delete_data: bool,
         on_output: Callable[[str], None]) -> tuple[list[str], Optional[str]]:
    """Destroy everything but the data (volumes, claims) unless delete_data. Returns the data
    volumes and, if removing them failed, why. Raises NotDeployed when there is nothing to destroy."""
    platform = platform_of(config)
    if not deployed(stack):
        platform.after_down(config)
        raise NotDeployed(stack.name)
    stack.destroy(on_output=on_output)
    platform.after_down(config)
    failure = platform.delete_data(config) if delete_data else None
    if delete_data and failure is None:
        _versions_record(stack.name).unlink(missing_ok=True)
    return platform.data_volumes(config, every_release=delete_data), failure


