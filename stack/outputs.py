"""A deployed stack's outputs, from a file or from the pulumi CLI, as `pulumi stack output --json` prints them."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Optional

from .pulumi_cli import PULUMI_INSTALL_HINT, pulumi_env


class OutputsError(Exception):
    """The outputs could not be had; the message is one line a person can act on."""


def parse_outputs(text: str, required: tuple[str, ...], source: str) -> dict[str, str]:
    try:
        outputs = json.loads(text)
    except json.JSONDecodeError as error:
        raise OutputsError(f"{source} is not JSON as `pulumi stack output --json` prints it ({error.msg})") from None
    if not isinstance(outputs, dict):
        raise OutputsError(f"{source} is not a JSON object of stack outputs")
    missing = [name for name in required if name not in outputs]
    if missing:
        raise OutputsError(f"{source} has no {', '.join(missing)}: is it trace-stack's outputs?")
    hidden = [name for name in required if outputs[name] == "[secret]"]
    if hidden:
        raise OutputsError(f"{source} hides {', '.join(hidden)} as [secret]: use `pulumi stack output --json "
                           f"--show-secrets`")
    return {name: str(outputs[name]) for name in required}


def read_outputs(required: tuple[str, ...], outputs_file: Optional[str] = None,
                 stack: Optional[str] = None) -> dict[str, str]:
    if outputs_file is not None:
        path = Path(outputs_file)
        try:
            text = path.read_text()
        except OSError as error:
            raise OutputsError(f"cannot read {outputs_file}: {error.strerror}") from None
        return parse_outputs(text, required, outputs_file)

    pulumi = shutil.which("pulumi")
    if pulumi is None:
        raise OutputsError(f"the pulumi CLI is not installed ({PULUMI_INSTALL_HINT}), "
                           f"or pass the outputs with --outputs FILE")
    # The URLs are no secret, but a stack may mark one so: show it, or it reads "[secret]".
    command = [pulumi, "stack", "output", "--json", "--show-secrets", *(["--stack", stack] if stack else [])]
    result = subprocess.run(command, capture_output=True, text=True, env=pulumi_env())
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise OutputsError(f"`{' '.join(command[1:])}` failed: {reason}")
    return parse_outputs(result.stdout, required, f"the outputs of stack {stack or '(current)'}")
