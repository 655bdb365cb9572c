"""Benchmark: a fresh `up` on your Docker engine, against the engine's own floor, in one run.

    venv/bin/python -m bench.fresh_up                                # 3 rounds, settings as a new stack's
    venv/bin/python -m bench.fresh_up --set versions=current --set portOffset=-10000

The floor: the stack's six containers created and started with the docker CLI alone, as the
program declares them (the same images, data volumes, config files, health checks, memory,
users and published ports), one after another in the program's start order, until every
service's readiness endpoint answers as `check` wants it. Then `python -m stack up` of a new stack
with the same settings, with its phases as it prints them, while every readiness endpoint is
asked every 50 ms: how long its check ran past the moment the last service became ready. Then,
on that stack with nothing to change, `up` again and the bare `pulumi up --refresh` it runs.
Each round removes what it made; the images must be on the engine. Prints every figure and the
ratios.
"""

from __future__ import annotations

import argparse
import io
import re
import statistics
import subprocess
import tarfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx

from program.ports import published, port_address
from program.render import render_service_files, template_values
from program.services import SERVICES, docker_name
from program.settings import DEFAULTS, StackConfig, validate
from stack.check import judge
from stack.pulumi_cli import PROJECT_DIR, pulumi_env


def _docker(*args: str, stdin: bytes = b"") -> None:
    result = subprocess.run(["docker", *args], input=stdin, capture_output=True)
    if result.returncode != 0:
        raise SystemExit(f"docker {' '.join(args[:2])} failed: {result.stderr.decode().strip()}")


def _files_tar(files: dict[str, str]) -> bytes:
    """The files at their paths, their directories made: `docker cp -` takes it as the provider's uploads."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path, content in files.items():
            data = content.encode()
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _readiness(config: StackConfig) -> dict[str, tuple[str, object]]:
    """Each service's readiness URL on this machine, and what its answer must hold."""
    return {service.name: (f"http://127.0.0.1:{config.host_port(service.port(service.readiness.port).host)}"
                           f"{service.readiness.path}", service.readiness.json_field) for service in SERVICES}


def floor(config: StackConfig, name: str) -> float:
    """Seconds from the first `docker create` until every service is ready; everything is removed after."""
    values, network = template_values(config), docker_name(name)
    started = time.monotonic()
    try:
        _docker("network", "create", network)
        for declared in SERVICES:
            service = declared.at(config.versions)
            container = docker_name(name, service.name)
            memory = f"{config.memory_mib[service.name]}m"
            args = ["--name", container, "--network", network, "--network-alias", service.name,
                    "--memory", memory, "--memory-swap", memory, "--restart", "unless-stopped",
                    "--stop-timeout", str(service.stop_seconds)]
            for port in service.published_on("docker"):
                args += ["-p", f"{port_address(config, port)}:{config.host_port(port.host)}:{port.internal}"]
            if service.data_dir:
                args += ["-v", f"{docker_name(name, service.name, service.data_volume)}:{service.data_dir}"]
            args += [f"-v{mount.host_path}:{mount.container_path}{':ro' if mount.read_only else ''}"
                     for mount in service.host_mounts(config)]
            args += [f"-e{key}={value}" for key, value in service.env(config).items()]
            if service.user:
                args += ["--user", service.user]
            args += [f"--cap-drop={capability}" for capability in service.dropped_capabilities]
            test = service.healthcheck_test()
            if test:
                args += ["--health-cmd", subprocess.list2cmdline(test[1:]), "--health-interval", "10s"]
            _docker("create", *args, config.images[service.name], *(service.command(config) or ()))
            _docker("cp", "-", f"{container}:/", stdin=_files_tar(render_service_files(service, values)))
            _docker("start", container)
        _ready_times(_readiness(config), threading.Event())
        return time.monotonic() - started
    finally:
        for service in SERVICES:
            subprocess.run(["docker", "rm", "-f", docker_name(name, service.name)], capture_output=True)
            subprocess.run(["docker", "volume", "rm", docker_name(name, service.name, service.at(config.versions)
                                                                   .data_volume)], capture_output=True)
        subprocess.run(["docker", "network", "rm", network], capture_output=True)


def _ready_times(readiness: dict[str, tuple[str, object]], stop: threading.Event) -> dict[str, float]:
    """When (time.monotonic()) each service's readiness endpoint first answered as `check` wants
    it, asked every 50 ms until every one has, or until `stop` is set."""
    ready: dict[str, float] = {}
    with httpx.Client() as client:
        while len(ready) < len(readiness) and not stop.is_set():
            for service, (url, field) in readiness.items():
                if service not in ready and _ready(client, url, field):
                    ready[service] = time.monotonic()
            time.sleep(0.05)
    return ready


def _ready(client: httpx.Client, url: str, field) -> bool:
    try:
        return judge(client.get(url, timeout=1), field) is None
    except Exception:
        return False


@dataclass
class Round:
    floor: float
    up: float  # `python -m stack up` of a new stack
    phases: dict[str, float]  # as it printed them
    # When the last service was ready, from the moment its check began (negative: before), and
    # how long the check ran past that moment (or past its beginning, when that came later).
    last_ready: float
    past_readiness: float
    unchanged_up: float  # `up` again, nothing to change
    bare_up: float  # `pulumi up --refresh` alone, nothing to change

    def lines(self) -> list[str]:
        return [f"floor {self.floor:.1f}s; fresh up {self.up:.1f}s, " + ", ".join(
                    f"{phase} {seconds:.1f}" for phase, seconds in self.phases.items()),
                f"the last service was ready {abs(self.last_ready):.1f}s {'after' if self.last_ready > 0 else 'before'} "
                f"the check began; the check ended {self.past_readiness:.1f}s after that or its beginning",
                f"unchanged: up {self.unchanged_up:.1f}s, pulumi up --refresh {self.bare_up:.1f}s "
                f"({self.unchanged_up / self.bare_up:.2f}x)"]


def _phases(stdout: str) -> dict[str, float]:
    report = stdout[stdout.index("up took"):].split("\n\nstack ")[0]
    return {found.group(1): float(found.group(2)) for found in re.finditer(r"^  (\S+)\s+([\d.]+)s", report, re.M)}


def fresh_up(config: StackConfig, name: str, settings: dict[str, str], floor_seconds: float) -> Round:
    """`python -m stack up` of a new stack, watched; then `up` and the bare `pulumi up --refresh`
    on it unchanged. The stack is removed after, its data too."""
    def run(*argv: str) -> tuple[float, str, float]:
        """Seconds it took, what it printed, and when (time.monotonic()) it printed `up took`: `up`
        prints its phases as its check ends."""
        started, phases_printed, lines = time.monotonic(), 0.0, []
        # Unbuffered, so each line comes as it is printed.
        process = subprocess.Popen(list(argv), cwd=PROJECT_DIR, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, env={**pulumi_env(), "PYTHONUNBUFFERED": "1"})
        for line in process.stdout:
            lines.append(line)
            if line.startswith("up took") and not phases_printed:
                phases_printed = time.monotonic()
        if process.wait() != 0:
            raise SystemExit(f"{' '.join(argv[:4])} failed:\n{''.join(lines)[-3000:]}")
        return time.monotonic() - started, "".join(lines), phases_printed

    (PROJECT_DIR / f"Pulumi.{name}.yaml").write_text(
        "config:\n" + "".join(f"  trace-stack:{key}: {value!r}\n" for key, value in settings.items()))
    up = ["venv/bin/python", "-m", "stack", "up", "--stack", name]
    try:
        stop = threading.Event()
        with ThreadPoolExecutor(1) as watcher:
            watching = watcher.submit(_ready_times, _readiness(config), stop)
            try:
                took, output, check_ended = run(*up)
            finally:
                stop.set()
            last_ready = max(watching.result().values())
        phases = _phases(output)
        check_began = check_ended - phases["check"]
        return Round(floor_seconds, took, phases, last_ready - check_began, check_ended - max(last_ready, check_began),
                     run(*up)[0], run("pulumi", "up", "--yes", "--skip-preview", "--refresh", "--stack", name)[0])
    finally:
        subprocess.run(["venv/bin/python", "-m", "stack", "down", "--stack", name, "--delete-data"], cwd=PROJECT_DIR,
                       capture_output=True, env=pulumi_env())
        subprocess.run(["pulumi", "stack", "rm", "--yes", "--force", "--stack", name], cwd=PROJECT_DIR,
                       capture_output=True, env=pulumi_env())
        (PROJECT_DIR / f"Pulumi.{name}.yaml").unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fresh_up", description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a setting of the stacks")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    settings = dict(item.split("=", 1) for item in args.set)
    config = validate("bench", {**DEFAULTS, **{key: type(DEFAULTS[key])(value) if not isinstance(DEFAULTS[key], bool)
                                               else value == "true" for key, value in settings.items()}})
    published(config)  # every port valid, as `up` would check
    rounds = []
    for round_ in range(args.rounds):
        name = f"bench{int(time.time())}"
        rounds.append(fresh_up(config, name, settings, floor(config, name)))
        print(f"round {round_ + 1}: " + "\n  ".join(rounds[-1].lines()), flush=True)
    floor_median, up_median = (statistics.median(r.floor for r in rounds), statistics.median(r.up for r in rounds))
    print(f"floor median {floor_median:.1f}s, up median {up_median:.1f}s: up / floor = {up_median / floor_median:.2f}; "
          f"check past the last readiness: at most {max(r.past_readiness for r in rounds):.1f}s; unchanged up / "
          f"pulumi up --refresh: median {statistics.median(r.unchanged_up / r.bare_up for r in rounds):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
