"""The README's tables of the services, made from their declarations:
`python -m program.tables` prints them, and a test keeps the README's copy the same."""

from __future__ import annotations

from .services import SERVICES, VERSION_PROFILES, Service, docker_name
from .settings import DEFAULTS, pinned_images


def _host_ports(service: Service) -> str:
    ports = service.published_on("docker")
    return ", ".join(f"{port.host} ({port.label})" if len(ports) > 1 else str(port.host) for port in ports)


def _healthcheck(service: Service) -> str:
    test = service.healthcheck_test()
    if test is None:
        return f"none: nothing in the image can run one; `check` asks `{service.readiness.path}` from the host"
    if service.healthcheck_tool == "bash":
        return f"bash `/dev/tcp` GET `{service.readiness.path}` (the image has no curl or wget)"
    return f"`{' '.join(test[1:])}`"


def services_table() -> str:
    rows = ["| service | image (setting) | host port (portOffset 0) | data volume |", "|---|---|---|---|"]
    images = pinned_images(DEFAULTS["versions"])
    for service in SERVICES:
        volume = f"`{docker_name('<stack>', service.name, 'data')}`" if service.data_dir else "—"
        rows.append(f"| {service.name} | {images.get(service.name, DEFAULTS[service.image_key])} (`{service.image_key}`) "
                    f"| {_host_ports(service)} | {volume} |")
    return "\n".join(rows)


def versions_table() -> str:
    rows = ["| service | " + " | ".join(f"`{versions}`" for versions in VERSION_PROFILES) + " |",
            "|---" * (len(VERSION_PROFILES) + 1) + "|"]
    pinned = [pinned_images(versions) for versions in VERSION_PROFILES]
    for service in SERVICES:
        images = [each.get(service.name, DEFAULTS[service.image_key]) for each in pinned]
        rows.append(f"| {service.name} | " + " | ".join(images) + " |")
    return "\n".join(rows)


def _stop(service: Service) -> str:
    return f"{service.stop_seconds} s" + (f"; {service.stop_measured}" if service.stop_measured else "")


def containers_table() -> str:
    rows = ["| service | memory in MiB (setting) | health check (inside the container) | runs as "
            "| stop timeout; `docker stop` measured |",
            "|---|---|---|---|---|"]
    for service in SERVICES:
        rows.append(f"| {service.name} | {DEFAULTS[service.memory_key]} (`{service.memory_key}`) "
                    f"| {_healthcheck(service)} | {service.runs_as} | {_stop(service)} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(services_table(), versions_table(), containers_table(), sep="\n\n")
