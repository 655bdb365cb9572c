"""The `pulumi` CLI as every command runs it: installed, and never stopping to ask for a
passphrase."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

# The project the CLI works in: where Pulumi.yaml and the stack files are.
PROJECT_DIR = Path(__file__).resolve().parent.parent
PULUMI_INSTALL_HINT = "install it with: curl -fsSL https://get.pulumi.com | sh"


class PulumiMissing(Exception):
    pass


def require_pulumi() -> str:
    path = shutil.which("pulumi")
    if path is None:
        raise PulumiMissing(f"the pulumi CLI is not installed: {PULUMI_INSTALL_HINT}")
    return path


def pulumi_home() -> Path:
    """Where the CLI keeps its plugins; the commands keep what they record of this machine beside them."""
    return Path(os.environ.get("PULUMI_HOME") or Path.home() / ".pulumi")


def local_state(name: str) -> Path:
    """A file the commands keep for this project on this machine (under PULUMI_HOME/trace-stack)."""
    project = hashlib.sha256(str(PROJECT_DIR).encode()).hexdigest()[:16]
    return pulumi_home() / "trace-stack" / f"{name}-{project}"


def stack_file(stack: str) -> Path:
    return PROJECT_DIR / f"Pulumi.{stack}.yaml"


def pulumi_env() -> dict[str, str]:
    """The environment for the CLI: a local stack encrypts its secrets with a passphrase; without
    one set, an empty one, so no command ever stops to prompt. The user's
    PULUMI_CONFIG_PASSPHRASE(_FILE) win."""
    if "PULUMI_CONFIG_PASSPHRASE" in os.environ or "PULUMI_CONFIG_PASSPHRASE_FILE" in os.environ:
        return dict(os.environ)
    return {**os.environ, "PULUMI_CONFIG_PASSPHRASE": ""}
