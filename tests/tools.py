"""Real tools the tests run: Go programs of ours built once and cached outside the repo, and
Debian's Prometheus."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("TRACE_STACK_TOOL_CACHE", Path.home() / ".cache" / "trace-stack" / "tools"))


def require(command: str, install_hint: str) -> str:
    path = shutil.which(command)
    if path is None:
        pytest.fail(f"{command} is not installed: {install_hint}")
    return path


def go_tool(name: str) -> Path:
    """Path to tools/<name> built with Go, rebuilt only when its sources or Go change."""
    go = require("go", "install Go (https://go.dev/dl) to build the test tools")
    source = ROOT / "tools" / name
    digest = hashlib.sha256(subprocess.run([go, "version"], capture_output=True, text=True, check=True).stdout.encode())
    for path in sorted(source.iterdir()):
        digest.update(path.name.encode() + path.read_bytes())
    binary = CACHE / f"{name}-{digest.hexdigest()[:16]}"
    if not binary.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = binary.with_suffix(".partial")
        build = subprocess.run([go, "build", "-o", str(partial), "."], cwd=source, capture_output=True, text=True)
        if build.returncode != 0:
            pytest.fail(f"building tools/{name} failed:\n{build.stderr}")
        partial.replace(binary)
    return binary


def alloy_parse(path: Path) -> list:
    """An Alloy file parsed by Alloy's own parser (tools/alloycheck)."""
    result = subprocess.run([str(go_tool("alloycheck")), "parse", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def run_go_template(text: str, values: list[str]) -> list[str]:
    """Go's text/template run as Alloy's stage.template runs it, once per .Value."""
    result = subprocess.run([str(go_tool("alloycheck")), "template", text, *values], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)
