"""Build the real services the integration tests run, once, cached outside the repo.

    python -m tools.build_services            # build what is missing, print each one's path

The collector is built by the OpenTelemetry Collector Builder (ocb) v0.91.0 from
tools/collector/manifest.yaml, the Pulumi CLI and the Pulumi Python language host by `go build` in
the Go modules tools/pulumi and tools/pulumi-python-host (which pin their versions; the host comes
with its pulumi-language-python-exec script, and its directory is what goes on PATH), everything
from the Go module proxy; the test Node.js app's packages are installed by `npm ci`. Each is
cached under ~/.cache/trace-stack/services (TRACE_STACK_SERVICE_CACHE), keyed by its inputs (the
manifest, go.mod and go.sum, or package-lock.json) and the Go (or Node.js) version, so a later run
takes no time.
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
PULUMI = "github.com/pulumi/pulumi"


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


def _run(command: list[str], cwd: Path, what: str) -> str:
    result = subprocess.run(command, cwd=cwd, env=_env(), capture_output=True, text=True)
    if result.returncode != 0:
        raise BuildError(f"{what} failed:\n{(result.stdout + result.stderr)[-4000:]}")
    return result.stdout


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


def _pulumi_build(module: str, package: str, version_of: str) -> Path:
    """`go build` a command of github.com/pulumi/pulumi in the Go module tools/<module>, into a
    directory cached under <module>-<key>; the command reports the version go.mod requires of
    the module version_of."""
    source = ROOT / "tools" / module
    target = CACHE / f"{module}-{_key((source / 'go.mod').read_bytes(), (source / 'go.sum').read_bytes())}"
    binary = target / package.rsplit("/", 1)[-1]
    if binary.exists():
        return binary
    version = _run([_go(), "list", "-m", "-f", "{{.Version}}", f"{PULUMI}/{version_of}"], source, "go list").strip()
    ldflags = f"-X {PULUMI}/sdk/v3/go/common/version.Version={version}"
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as work:
        _run([_go(), "build", "-ldflags", ldflags, "-o", f"{work}/{binary.name}", f"{PULUMI}/{package}"], source,
             f"go build {PULUMI}/{package}")
        shutil.move(Path(work) / binary.name, binary)
    return binary


def pulumi_cli() -> Path:
    """The Pulumi CLI at the version tools/pulumi/go.mod requires, reporting that version."""
    return _pulumi_build("pulumi", "pkg/v3/cmd/pulumi", "pkg/v3")


def python_language_host() -> Path:
    """The directory to put on PATH for the Pulumi Python language host at the version
    tools/pulumi-python-host/go.mod requires: pulumi-language-python and, beside it, the
    pulumi-language-python-exec script it runs a program with (shipped in the sdk/v3 module)."""
    host = _pulumi_build("pulumi-python-host", "sdk/v3/python/cmd/pulumi-language-python", "sdk/v3")
    script = host.with_name("pulumi-language-python-exec")
    if not script.exists():
        sdk = _run([_go(), "list", "-m", "-f", "{{.Dir}}", f"{PULUMI}/sdk/v3"], ROOT / "tools" / "pulumi-python-host",
                   "go list").strip()
        shutil.copyfile(Path(sdk) / "python" / "cmd" / script.name, script)
        script.chmod(0o755)
    return host.parent


def node_app_modules() -> Path:
    """The node_modules of tests/node_app (a real OpenTelemetry-instrumented Node.js service), as
    `npm ci` installs its package-lock.json from the npm registry; the app runs with NODE_PATH
    set to it."""
    app = ROOT / "tests" / "node_app"
    npm = shutil.which("npm")
    if npm is None:
        raise BuildError("npm is not installed: the test app's packages come from the npm registry (Node.js 20+)")
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    lock = (app / "package-lock.json").read_bytes()
    target = CACHE / f"node-app-{hashlib.sha256(lock + node.encode()).hexdigest()[:16]}"
    if (target / "node_modules").exists():
        return target / "node_modules"
    with tempfile.TemporaryDirectory(dir=CACHE) as work:
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(app / name, Path(work) / name)
        _run([npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"], Path(work), "npm ci (tests/node_app)")
        target.mkdir(parents=True, exist_ok=True)
        shutil.move(Path(work) / "node_modules", target / "node_modules")
    return target / "node_modules"


SERVICES = {"collector": collector, "pulumi": pulumi_cli, "python-host": python_language_host,
            "node-app": node_app_modules}
# Roughly how long each takes on 2 cores the first time (nothing once cached).
FIRST_BUILD = {"collector": "about 3 minutes", "pulumi": "about 8 minutes", "python-host": "under a minute",
               "node-app": "under a minute"}


def main() -> int:
    for name, build in SERVICES.items():
        print(f"{name}: building, or taking it from the cache ({CACHE}; {FIRST_BUILD[name]} the first time)...",
              flush=True)
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
