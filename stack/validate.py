"""`python -m stack validate`: a stack's settings, checked from its stack file alone by the
program's own code, with no pulumi CLI and no Docker."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from program.services import PROJECT
from program.settings import StackConfig, settings_from_stack_config

# What stands for an encrypted value, which is never decrypted here: set, and a secret.
ENCRYPTED = "[encrypted]"


class StackFileUnreadable(Exception):
    pass


def read_stack_file(path: Path) -> tuple[dict[str, str], set[str]]:
    """The project's settings in a Pulumi.<stack>.yaml, as text the way the CLI hands them to a
    program, and the keys stored encrypted (`secure:`)."""
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except OSError as error:
        raise StackFileUnreadable(f"cannot read {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise StackFileUnreadable(f"{path} is not YAML: {str(error).splitlines()[0]}") from None
    config = document.get("config", {}) if isinstance(document, dict) else None
    if not isinstance(config, dict):
        raise StackFileUnreadable(f"{path} has no `config:` mapping of settings")
    values, secret = {}, set()
    for full_key, value in config.items():
        namespace, _, key = str(full_key).rpartition(":")
        if namespace not in ("", PROJECT):
            continue  # another package's setting (a provider's), not this program's
        if isinstance(value, dict) and set(value) == {"secure"}:
            values[key] = ENCRYPTED
            secret.add(key)
        else:
            values[key] = value if isinstance(value, str) else json.dumps(value)
    return values, secret


def validate_stack_file(path: Path, stack: str) -> tuple[StackConfig, frozenset[str]]:
    """The stack file's settings as the program would take them, and the keys it sets; raises
    ConfigError listing every problem, or StackFileUnreadable."""
    values, secret = read_stack_file(path)
    return settings_from_stack_config(stack, values, secret), frozenset(values)
