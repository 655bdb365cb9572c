"""Build the real services the integration tests run, once, cached outside the repo.

    python -m tools.build_services            # build what is missing, print each binary's path

The collector is built by the OpenTelemetry Collector Builder (ocb) v0.91.0 from
tools/collector/manifest.yaml, everything from the Go module proxy. A binary is cached under
~/.cache/trace-stack/services (TRACE_STACK_SERVICE_CACHE), keyed by its manifest and the Go
version, so a later run takes no time.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("TRACE_STACK_SERVICE_CACHE", Path.home() / ".cache" / "trace-stack" / "services"))
OCB = "go.opentelemetry.io/collector/cmd/builder@v0.91.0"
# The checksum database has no entry for these module paths at 0.91.0 (it answers 404), so they
# are checked against the go.sum files they ship with instead.
NO_SUMDB = "go.opentelemetry.io/collector,github.com/open-telemetry/opentelemetry-collector-contrib"


class BuildError(Exception):
    pass


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise BuildError("go is not installed: the services are built from the Go module proxy")
    return go


def _env() -> dict[str, str]:
    return {**os.environ, "GONOSUMDB": NO_SUMDB, "GOFLAGS": "-mod=mod"}


def _key(*parts: bytes) -> str:
    digest = hashlib.sha256(subprocess.run([_go(), "version"], capture_output=True, check=True).stdout)
    for part in parts:
        digest.update(part)
    return digest.hexdigest()[:16]


def _run(command: list[str], cwd: Path, what: str) -> None:
    result = subprocess.run(command, cwd=cwd, env=_env(), capture_output=True, text=True)
    if result.returncode != 0:
        raise BuildError(f"{what} failed:\n{(result.stdout + result.stderr)[-4000:]}")


def ocb() -> Path:
    binary = CACHE / f"ocb-{_key(OCB.encode())}" / "builder"
    if not binary.exists():
        binary.parent.mkdir(parents=True, exist_ok=True)
        _run([_go(), "install", OCB], ROOT, f"go install {OCB}")
        gobin = subprocess.run([_go(), "env", "GOPATH"], capture_output=True, text=True, check=True).stdout.strip()
        shutil.copy2(Path(gobin) / "bin" / "builder", binary)
    return binary


def collector() -> Path:
    """The collector with exactly the manifest's components."""
    manifest = (ROOT / "tools" / "collector" / "manifest.yaml").read_text()
    target = CACHE / f"otelcol-{_key(manifest.encode())}"
    binary = target / "otelcol-trace-stack"
    if binary.exists():
        return binary
    builder = ocb()
    with tempfile.TemporaryDirectory(dir=CACHE) as work:
        source = Path(work) / "src"
        config = Path(work) / "manifest.yaml"
        config.write_text(manifest.replace("  version: 0.91.0\n", f"  version: 0.91.0\n  output_path: {source}\n", 1))
        _run([str(builder), "--config", str(config)], Path(work), "the collector build (ocb)")
        target.mkdir(parents=True, exist_ok=True)
        shutil.move(source / "otelcol-trace-stack", binary)
    return binary


SERVICES = {"collector": collector}


def main() -> int:
    for name, build in SERVICES.items():
        print(f"{name}: building, or taking it from the cache ({CACHE})...", flush=True)
        started = time.monotonic()
        try:
            path = build()
        except BuildError as error:
            print(f"build_services: {name}: {error}", file=sys.stderr)
            return 1
        print(f"{name}: {path} ({time.monotonic() - started:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
