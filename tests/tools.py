"""Real tools the tests run: Go programs of ours built once and cached outside the repo, and
Debian's Prometheus."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import itertools
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest
import yaml

from program.render import render_service_files, template_values
from tools.build_services import BuildError, prometheus
from program.services import SERVICES_BY_NAME
from program.settings import StackConfig, settings_from_stack_config

ROOT = Path(__file__).resolve().parent.parent
# The labels of a default stack's app logs (appName, appEnv).
DEFAULT_LABELS = {"job": "refly-api", "env": "local"}
PROMETHEUS_HINT = "apt-get install -y prometheus (Debian's package ships promtool and the server)"
CACHE = Path(os.environ.get("TRACE_STACK_TOOL_CACHE", Path.home() / ".cache" / "trace-stack" / "tools"))


def require(command: str, install_hint: str) -> str:
    path = shutil.which(command)
    if path is None:
        pytest.fail(f"{command} is not installed: {install_hint}")
    return path


def built(build: Callable[[], Path]) -> Path:
    """What a tools/build_services build gives (cached after the first), or the test fails with why."""
    try:
        return build()
    except BuildError as error:
        pytest.fail(f"building {getattr(build, 'func', build).__name__}: {error}")


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
        partial = binary.with_suffix(f".partial-{os.getpid()}")  # test workers may build at once
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


def alloy_blocks(text: str, directory: Path) -> dict[tuple[str, str], list]:
    """An Alloy file's blocks by (name, label), as Alloy's own parser reads them."""
    path = directory / "config.alloy"
    path.write_text(text)
    return {(block["block"], block["label"]): block["body"] for block in alloy_parse(path)}


def attributes(body: list) -> dict:
    return {item["attr"]: item["value"] for item in body if "attr" in item}


def stages(body: list) -> list[tuple[str, dict]]:
    return [(item["block"], attributes(item["body"])) for item in body if "block" in item]


# The labels loki.source.file gives every line it reads, before loki.process sees it: the file's
# path (internal/component/loki/source/file/tailer.go at Alloy v1.5.1, `filenameLabel`).
def source_file_labels(path: str) -> dict[str, str]:
    return {"filename": path}


def alloy_stream_labels(pipeline: list[tuple[str, dict]], labels: dict[str, str],
                        extracted: dict[str, str]) -> dict[str, str]:
    """The labels a line leaves loki.process with: `labels` as its source gave them, changed by
    each label stage in the pipeline's order, as Alloy's stages do (stage.labels takes an extracted
    value that exists, stage.static_labels sets, stage.label_drop deletes)."""
    labels = dict(labels)
    for block, values in pipeline:
        if block == "stage.labels":
            labels.update({name: extracted[source or name] for name, source in values["values"].items()
                           if extracted.get(source or name) is not None})
        elif block == "stage.static_labels":
            labels.update(values["values"])
        elif block == "stage.label_drop":
            for name in values["values"]:
                labels.pop(name, None)
    return labels


def run_go_template(text: str, values: list[str]) -> list[str]:
    """Go's text/template run as Alloy's stage.template runs it, once per .Value."""
    result = subprocess.run([str(go_tool("alloycheck")), "template", text, *values], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# A portOffset for the stacks whose commands probe their host ports (preflight): every host port
# (12345..39090 plus it) below Linux's ephemeral range (32768 and up), where no test's server or
# connection lands, above 1023, away from the ports unused_port gives, and apart for each of up to
# eight pytest workers (500 apart: no two of the stack's host ports differ by a multiple of 500).
PORT_OFFSET = -6500 - 500 * int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))

# Ports for the real servers the tests start that cannot bind port 0 and say which they got
# (Prometheus, the collector): below Linux's ephemeral range (32768 and up), where no port-0 bind
# or outgoing connection lands, a block of its own for each pytest worker (10000.., 11000..), never
# one twice, and apart from the host ports tests/test_commands.py gives its stacks.
_next_port = itertools.count(10000 + 1000 * int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")))


def unused_port() -> int:
    """A loopback port nothing listens on, that no other test of this run is given."""
    for port in _next_port:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise AssertionError("no unused port left")




@contextlib.contextmanager
def prometheus_server(directory: Path, raw: Optional[dict] = None, values: Optional[dict] = None,
                      port: Optional[int] = None, extra_jobs: tuple[dict, ...] = (),
                      binary: Optional[str] = None) -> Iterator[str]:
    """A real Prometheus of the stack's version profile's release (built from its Go module; or
    `binary`) started with the container's own flags and rendered config; only the file paths and
    the listen address are moved, and `extra_jobs` scraped too. Yields its URL once /-/ready."""
    settings = stack_config(raw)
    binary = binary or built(functools.partial(prometheus, settings.versions))
    config = yaml.safe_load(rendered_files("prometheus", raw, values)["/etc/prometheus/prometheus.yml"])
    config["scrape_configs"] += list(extra_jobs)
    (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
    moved = {"--config.file": str(directory / "prometheus.yml"), "--storage.tsdb.path": str(directory / "data")}
    flags = [f"{name}={moved[name]}" if name in moved else flag
             for flag in SERVICES_BY_NAME["prometheus"].at(settings.versions).command(settings)
             for name in [flag.split("=", 1)[0]]]
    address = f"127.0.0.1:{port or unused_port()}"
    with running_process([binary, *flags, f"--web.listen-address={address}"], directory / "prometheus.log",
                         f"http://{address}/-/ready"):
        yield f"http://{address}"


def stack_config(raw: Optional[dict] = None, stack: str = "dev", secret_keys: tuple[str, ...] = ()) -> StackConfig:
    """A stack's settings from its config as the CLI hands it over (every value as text), read
    by the program's own code."""
    text = {key: value if isinstance(value, str) else json.dumps(value) for key, value in (raw or {}).items()}
    return settings_from_stack_config(stack, text, set(secret_keys))


def rendered_files(service: str, raw: Optional[dict] = None, values: Optional[dict] = None) -> dict[str, str]:
    """Container path -> content of every file `service` reads, for a stack with `raw` settings
    (rendered with `values` instead of the stack's own, if given)."""
    config = stack_config(raw)
    return render_service_files(SERVICES_BY_NAME[service].at(config.versions), values or template_values(config))


def loopback_values(ports: Optional[dict[str, int]] = None, scrape_interval: str = "1s",
                    raw: Optional[dict] = None) -> dict:
    """A stack's template values (the default stack's, or one with `raw` settings) with only what
    Docker would provide moved onto loopback: host names to 127.0.0.1, every port to a free one
    (or the one given)."""
    values = template_values(stack_config(raw))
    values["host"] = {name: "127.0.0.1" for name in values["host"]}
    values["port"] = {name: (ports or {}).get(name) or unused_port() for name in values["port"]}
    values["listen_host"] = "127.0.0.1"
    values["scrape_interval"] = values["app_scrape_interval"] = scrape_interval
    return values


@contextlib.contextmanager
def collector_process(binary: Path, directory: Path, values: dict) -> Iterator[subprocess.Popen]:
    """The real collector on the stack's rendered config (with `values`), logging to
    directory/collector.log, its sending queues in directory/queues (where a collector started
    again in the same directory finds them)."""
    queues = directory / "queues"
    queues.mkdir(exist_ok=True)
    values = {**values, "data_dir": {**values["data_dir"], "otel-collector": str(queues)}}
    config = directory / "collector.yaml"
    config.write_text(rendered_files("otel-collector", values=values)["/etc/otelcol-contrib/config.yaml"])
    with running_process([str(binary), "--config", str(config)], directory / "collector.log",
                         f"http://127.0.0.1:{values['port']['collector_health']}/") as process:
        yield process


def run_coroutine(coroutine):
    # Not asyncio.run: it leaves the thread without an event loop, which the Pulumi program tests
    # on the same pytest worker need.
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coroutine)
    finally:
        loop.close()


def wait_until(what: str, look: Callable[[], Any], timeout: float = 30, why_not: Callable[[], str] = str) -> Any:
    """Ask `look` until it returns something truthy, which is returned; past `timeout` seconds,
    fail naming `what` and, from why_not(), what stands in the way."""
    deadline = time.monotonic() + timeout
    while True:
        found = look()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not after {timeout:g}s. {why_not()}")
        time.sleep(0.2)


@contextlib.contextmanager
def running_process(command: list[str], log_path: Path, ready_url: str, timeout: float = 30) -> Iterator[subprocess.Popen]:
    """A server process, logging to log_path, once ready_url answers 200; stopped afterwards.
    If it dies or is not ready in time, the failure shows the end of its log."""
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log)

    def ready() -> bool:
        assert process.poll() is None, log_path.read_text()[-3000:]
        try:
            with urllib.request.urlopen(ready_url, timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    try:
        wait_until(f"{command[0]} ready at {ready_url}", ready, timeout, lambda: log_path.read_text()[-3000:])
        yield process
    finally:
        process.terminate()
        process.wait(timeout=10)
