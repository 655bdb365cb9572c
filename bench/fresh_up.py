"""Benchmark: a fresh `up` on your Docker engine, against the engine's own floor, in one run.

    venv/bin/python -m bench.fresh_up                                # 3 rounds, settings as a new stack's
    venv/bin/python -m bench.fresh_up --set versions=current --set portOffset=-10000

The floor: the stack's six containers created and started with the docker CLI alone, as the
program declares them (the same images, data volumes, config files, health checks, memory,
users and published ports), one after another in the program's start order, until every
service's readiness endpoint answers as `check` wants it. Then `python -m stack up` of a new stack
with the same settings, with its phases as it prints them. Each round removes what it made; the
images must be on the engine. Prints every figure and the ratio of `up` to the floor.
"""

from __future__ import annotations

import argparse
import io
import re
import statistics
import subprocess
import tarfile
import time

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


def floor(config: StackConfig, name: str) -> float:
    """Seconds from the first `docker create` until every service is ready; everything is removed after."""
    values, network = template_values(config), docker_name(name)
    urls = [(f"http://127.0.0.1:{config.host_port(service.port(service.readiness.port).host)}"
             f"{service.readiness.path}", service.readiness.json_field) for service in SERVICES]
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
        with httpx.Client() as client:
            waiting = list(urls)
            while waiting:
                waiting = [(url, field) for url, field in waiting if not _ready(client, url, field)]
                time.sleep(0.05)
        return time.monotonic() - started
    finally:
        for service in SERVICES:
            subprocess.run(["docker", "rm", "-f", docker_name(name, service.name)], capture_output=True)
            subprocess.run(["docker", "volume", "rm", docker_name(name, service.name, service.at(config.versions)
                                                                   .data_volume)], capture_output=True)
        subprocess.run(["docker", "network", "rm", network], capture_output=True)


def _ready(client: httpx.Client, url: str, field) -> bool:
    try:
        return judge(client.get(url, timeout=1), field) is None
    except Exception:
        return False


def fresh_up(name: str, settings: dict[str, str]) -> tuple[float, str]:
    """Seconds `python -m stack up` of a new stack takes, and the phases it printed; the stack is
    removed after, its data too."""
    def run(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(list(argv), cwd=PROJECT_DIR, capture_output=True, text=True, env=pulumi_env())

    (PROJECT_DIR / f"Pulumi.{name}.yaml").write_text(
        "config:\n" + "".join(f"  trace-stack:{key}: {value!r}\n" for key, value in settings.items()))
    try:
        started = time.monotonic()
        result = run("venv/bin/python", "-m", "stack", "up", "--stack", name)
        took = time.monotonic() - started
        if result.returncode != 0:
            raise SystemExit(f"up failed:\n{result.stdout[-3000:]}\n{result.stderr}")
        return took, result.stdout[result.stdout.index("up took"):].split("\n\nstack ")[0]
    finally:
        run("venv/bin/python", "-m", "stack", "down", "--stack", name, "--delete-data")
        run("pulumi", "stack", "rm", "--yes", "--force", "--stack", name)
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
    floors, ups = [], []
    for round_ in range(args.rounds):
        name = f"bench{int(time.time())}"
        floors.append(floor(config, name))
        print(f"round {round_ + 1}: floor {floors[-1]:.1f}s", flush=True)
        took, phases = fresh_up(name, settings)
        ups.append(took)
        print(f"round {round_ + 1}: up {took:.1f}s\n  " + "\n  ".join(phases.splitlines()[1:]), flush=True)
    floor_median, up_median = statistics.median(floors), statistics.median(ups)
    print(f"floor median {floor_median:.1f}s, up median {up_median:.1f}s: up / floor = {up_median / floor_median:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
