"""Build the real services the integration tests run, once, cached outside the repo.

    python -m tools.build_services            # build what is missing, print each one's path

The collector of each version profile is built by the OpenTelemetry Collector Builder (ocb) of its
release from tools/collector/<profile>.yaml, Prometheus from the Go module tools/prometheus/<profile>
requires, the Pulumi CLI and the Pulumi Python language host by `go build` in
the Go modules tools/pulumi and tools/pulumi-python-host (which pin their versions; the host comes
with its pulumi-language-python-exec script, and its directory is what goes on PATH), everything
from the Go module proxy; the test Node.js app's packages are installed by `npm ci`, the test
Python app's by pip into a venv of its own. Each is cached under ~/.cache/trace-stack/services
(TRACE_STACK_SERVICE_CACHE), keyed by its inputs (the manifest, go.mod and go.sum,
package-lock.json or requirements.txt) and the Go (Node.js, Python) version, so a later run takes
no time.

For the Kubernetes tests (tests/kube_cluster.py): the Kubernetes programs from the Go module
tools/kubernetes (k8s.io/kubernetes v1.34.2), etcd v3.6.6, the static pause program of tools/pause
(the pods' sandbox image) and the Pulumi Kubernetes provider plugin 4.34.2, built from the
provider's module at that release (the pulumi CLI finds it on PATH instead of downloading it).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import yaml

from program.services import VERSION_PROFILES

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("TRACE_STACK_SERVICE_CACHE", Path.home() / ".cache" / "trace-stack" / "services"))
OCB = "go.opentelemetry.io/collector/cmd/builder"
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


def _run(command: list[str], cwd: Path, what: str, env: Optional[dict[str, str]] = None) -> str:
    result = subprocess.run(command, cwd=cwd, env={**_env(), **(env or {})}, capture_output=True, text=True)
    if result.returncode != 0:
        raise BuildError(f"{what} failed:\n{(result.stdout + result.stderr)[-4000:]}")
    return result.stdout


def ocb(version: str) -> Path:
    """The OpenTelemetry Collector Builder at `version` (0.91.0)."""
    module = f"{OCB}@v{version}"
    binary = CACHE / f"ocb-{_key(module.encode())}" / "builder"
    if not binary.exists():
        binary.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=CACHE) as gobin:
            _run([_go(), "install", module], ROOT, f"go install {module}", env={"GOBIN": gobin})
            shutil.move(Path(gobin) / "builder", binary)
    return binary


def collector(versions: str = "seed") -> Path:
    """The collector of the version profile's release (tools/collector/<versions>.yaml), with
    exactly the manifest's components, built by ocb of the same release."""
    manifest_text = (ROOT / "tools" / "collector" / f"{versions}.yaml").read_text()
    target = CACHE / f"otelcol-{_key(manifest_text.encode())}"
    binary = target / "otelcol-trace-stack"
    if binary.exists():
        return binary
    manifest = yaml.safe_load(manifest_text)
    builder = ocb(manifest["dist"]["version"])
    with tempfile.TemporaryDirectory(dir=CACHE) as work:
        source = Path(work) / "src"
        manifest["dist"]["output_path"] = str(source)
        config = Path(work) / "manifest.yaml"
        config.write_text(yaml.safe_dump(manifest))
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


def python_app() -> Path:
    """The bin directory of a venv holding tests/python_app's packages (OpenTelemetry's zero-code
    setup for Flask), as pip installs its requirements.txt from PyPI; the app runs with
    `opentelemetry-instrument` from it."""
    requirements = (ROOT / "tests" / "python_app" / "requirements.txt").read_bytes()
    target = CACHE / f"python-app-{hashlib.sha256(requirements + sys.version.encode()).hexdigest()[:16]}"
    if (target / "bin" / "opentelemetry-instrument").exists():
        return target / "bin"
    # Made where it stays (a venv's scripts name its path); one left half-made is made again.
    CACHE.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(target, ignore_errors=True)
    _run([sys.executable, "-m", "venv", str(target)], CACHE, "python -m venv (tests/python_app)")
    _run([str(target / "bin" / "pip"), "install", "--quiet", "--no-cache-dir", "-r",
          str(ROOT / "tests" / "python_app" / "requirements.txt")], CACHE, "pip install (tests/python_app)")
    return target / "bin"


KUBERNETES_VERSION = "v1.34.2"
KUBERNETES_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kubectl")
ETCD = "go.etcd.io/etcd/server/v3@v3.6.6"
KUBERNETES_PROVIDER = "github.com/pulumi/pulumi-kubernetes/provider/v4"
# The provider's module as the Go module proxy serves it for the 4.34.2 release: the repository's
# tags are not versions of this module path, so it is named by its pseudo-version.
KUBERNETES_PROVIDER_AT = "v4.0.0-20260115033456-f47bc2d6f199"
KUBERNETES_PROVIDER_VERSION = "4.34.2"


def kubernetes() -> Path:
    """The directory holding the Kubernetes programs the test cluster runs (kube-apiserver,
    kube-controller-manager, kube-scheduler, kubelet, kube-proxy and kubectl), built from the Go
    module tools/kubernetes (which pins k8s.io/kubernetes) and reporting v1.34.2."""
    source = ROOT / "tools" / "kubernetes"
    target = CACHE / f"kubernetes-{_key((source / 'go.mod').read_bytes(), (source / 'go.sum').read_bytes())}"
    if all((target / name).exists() for name in KUBERNETES_COMMANDS):
        return target
    major, minor = KUBERNETES_VERSION[1:].split(".")[:2]
    ldflags = (f"-s -w -X k8s.io/component-base/version.gitVersion={KUBERNETES_VERSION}"
               f" -X k8s.io/component-base/version.gitMajor={major} -X k8s.io/component-base/version.gitMinor={minor}")
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as work:
        _run(["nice", _go(), "build", "-ldflags", ldflags, "-o", f"{work}/",
              *(f"k8s.io/kubernetes/cmd/{name}" for name in KUBERNETES_COMMANDS)], source, "go build (Kubernetes)")
        target.mkdir(parents=True, exist_ok=True)
        for name in KUBERNETES_COMMANDS:
            shutil.move(Path(work) / name, target / name)
    return target


def etcd() -> Path:
    """etcd v3.6.6, the test cluster's store, built from the Go module proxy in a throwaway module
    that requires it (its go.mod has replace directives, so `go install ...@v3.6.6` refuses it)."""
    target = CACHE / f"etcd-{_key(ETCD.encode())}"
    binary = target / "etcd"
    if binary.exists():
        return binary
    module, version = ETCD.split("@")
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as work:
        (Path(work) / "go.mod").write_text(f"module trace-stack/etcd\n\ngo 1.24\n\nrequire {module} {version}\n")
        _run([_go(), "mod", "download", module], Path(work), f"go mod download {ETCD}")
        _run(["nice", _go(), "build", "-ldflags", "-s -w", "-o", f"{work}/etcd", module], Path(work), f"go build {ETCD}")
        target.mkdir(parents=True, exist_ok=True)
        shutil.move(Path(work) / "etcd", binary)
    return binary


def _static_program(name: str, files: tuple[str, ...]) -> Path:
    """The static Go program of tools/<name> (CGO off: it runs in an image with nothing else)."""
    source = ROOT / "tools" / name
    target = CACHE / f"{name}-{_key(*((source / file).read_bytes() for file in files))}"
    binary = target / name
    if binary.exists():
        return binary
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as work:
        result = subprocess.run(["nice", _go(), "build", "-trimpath", "-ldflags", "-s -w", "-o", f"{work}/{name}", "."],
                                cwd=source, env={**_env(), "CGO_ENABLED": "0"}, capture_output=True, text=True)
        if result.returncode != 0:
            raise BuildError(f"go build (tools/{name}) failed:\n{(result.stdout + result.stderr)[-4000:]}")
        target.mkdir(parents=True, exist_ok=True)
        shutil.move(Path(work) / name, binary)
    return binary


def pause() -> Path:
    """The pause program of tools/pause: the test cluster's pod sandbox image runs it."""
    return _static_program("pause", ("go.mod", "main.go"))


def kubernetes_provider() -> Path:
    """The directory holding pulumi-resource-kubernetes, the Pulumi Kubernetes provider plugin
    4.34.2 (on PATH, the pulumi CLI runs it instead of downloading a plugin). Built from the
    provider module at that release: its go.mod points the SDK at ../sdk (absent from the module
    download), so that replace is dropped, and the schema and terraform mapping it embeds are
    written as its `make` would."""
    target = CACHE / f"pulumi-kubernetes-{_key(f'{KUBERNETES_PROVIDER}@{KUBERNETES_PROVIDER_AT}'.encode(), KUBERNETES_PROVIDER_VERSION.encode())}"
    binary = target / "pulumi-resource-kubernetes"
    if binary.exists():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as work:
        downloaded = json.loads(_run([_go(), "mod", "download", "-json", f"{KUBERNETES_PROVIDER}@{KUBERNETES_PROVIDER_AT}"],
                                     Path(work), "go mod download (pulumi-kubernetes provider)"))
        source = Path(work) / "provider"
        shutil.copytree(downloaded["Dir"], source)
        for path in source.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        go_mod = source / "go.mod"
        go_mod.write_text("".join(line for line in go_mod.read_text().splitlines(keepends=True)
                                  if line.strip() != "replace github.com/pulumi/pulumi-kubernetes/sdk/v4 => ../sdk"))
        command = source / "cmd" / "pulumi-resource-kubernetes"
        schema = json.loads((command / "schema.json").read_text())
        schema["version"] = KUBERNETES_PROVIDER_VERSION
        (command / "schema-embed.json").write_text(json.dumps(schema))
        shutil.copyfile(command / "terraform-mapping.json", command / "terraform-mapping-embed.json")
        ldflags = f"-s -w -X {KUBERNETES_PROVIDER}/pkg/version.Version={KUBERNETES_PROVIDER_VERSION}"
        _run(["nice", _go(), "build", "-ldflags", ldflags, "-o", f"{work}/{binary.name}", "./cmd/pulumi-resource-kubernetes"],
             source, "go build (pulumi-kubernetes provider)")
        target.mkdir(parents=True, exist_ok=True)
        shutil.move(Path(work) / binary.name, binary)
    return target


PROMETHEUS = "github.com/prometheus/prometheus"
# The build tags of each release's .promu.yml.
PROMETHEUS_TAGS = {"seed": "netgo,stringlabels", "current": "netgo"}


def prometheus(versions: str = "seed") -> Path:
    """The Prometheus server of the version profile's release, built from the Go module that
    tools/prometheus/<versions>/go.mod requires (module v0.48.0 is Prometheus 2.48.0, v0.316.0 is
    3.16.0: 3.x is v0.3xx), reporting that version as the release does."""
    source = ROOT / "tools" / "prometheus" / versions
    target = CACHE / f"prometheus-{_key((source / 'go.mod').read_bytes(), (source / 'go.sum').read_bytes())}"
    binary = target / "prometheus"
    if binary.exists():
        return binary
    module_version = _run([_go(), "list", "-m", "-f", "{{.Version}}", PROMETHEUS], source, "go list").strip()
    _, minor, patch = module_version.split(".")
    version = f"3.{int(minor) - 300}.{patch}" if int(minor) >= 300 else f"2.{minor}.{patch}"
    ldflags = " ".join(f"-X github.com/prometheus/common/version.{name}={value}"
                       for name, value in (("Version", version), ("Branch", "HEAD"), ("BuildUser", "trace-stack")))
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as work:
        _run(["nice", _go(), "build", "-trimpath", "-tags", PROMETHEUS_TAGS[versions], "-ldflags", ldflags,
              "-o", f"{work}/prometheus", f"{PROMETHEUS}/cmd/prometheus"], source, f"go build {PROMETHEUS} {version}",
             env={"CGO_ENABLED": "0"})
        shutil.move(Path(work) / "prometheus", binary)
    return binary


def standin() -> Path:
    """The stand-in for Tempo, Loki, Alloy and Grafana, which CI cannot build (licence or size):
    one program of tools/standin, run as `standin tempo|loki|alloy|grafana ARGS...`."""
    return _static_program("standin", ("go.mod", "go.sum", "main.go"))


SERVICES = {**{f"collector-{versions}": lambda versions=versions: collector(versions) for versions in VERSION_PROFILES},
            **{f"prometheus-{versions}": lambda versions=versions: prometheus(versions) for versions in VERSION_PROFILES},
            "pulumi": pulumi_cli, "python-host": python_language_host,
            "node-app": node_app_modules, "python-app": python_app, "kubernetes": kubernetes, "etcd": etcd, "pause": pause,
            "kubernetes-provider": kubernetes_provider, "standin": standin}
# Roughly how long each takes on 2 cores the first time (nothing once cached).
FIRST_BUILD = {"collector-seed": "about 3 minutes", "collector-current": "about 6 minutes",
               "prometheus-seed": "about 5 minutes", "prometheus-current": "about 8 minutes", "pulumi": "about 8 minutes", "python-host": "under a minute",
               "node-app": "under a minute", "python-app": "under a minute", "kubernetes": "about 15 minutes", "etcd": "about a minute",
               "pause": "seconds", "kubernetes-provider": "about 15 minutes", "standin": "under a minute"}


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
