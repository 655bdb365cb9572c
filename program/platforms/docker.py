"""The stack on a Docker engine: a network, and for each service its image, data volume and
container, every one a child of the TraceStack component."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import pulumi
import pulumi_docker as docker

from ..ports import port_address
from ..render import render_service_files
from ..services import (HEALTHCHECK_INTERVAL_SECONDS, HEALTHCHECK_RETRIES, HEALTHCHECK_START_SECONDS,
                        HEALTHCHECK_TIMEOUT_SECONDS, Service, docker_name)

if TYPE_CHECKING:
    from ..component import TraceStack


class Platform:
    """Turns service records into Docker objects under `stack`."""

    def __init__(self, stack: "TraceStack"):
        self.stack = stack
        config = stack.config
        self.provider = None
        if config.docker_host:
            self.provider = docker.Provider(*stack.child("docker"), host=config.docker_host)

        # A fixed name collides with itself when replaced create-first.
        self.network = docker.Network(
            # A daemon whose default network options enable IPv6 reads `ipv6` back as true, and
            # every preview would replace the network (terraform-provider-docker v4.5.0 does not
            # compute it): the stack needs no say in it.
            *self._child("network", delete_before_replace=True, ignore_changes=["ipv6"]),
            name=docker_name(config.stack),
            driver="bridge",
            labels=self._labels(docker.NetworkLabelArgs),
        )
        self.containers: dict[str, docker.Container] = {}

    def _child(self, suffix: str, **options) -> tuple[str, pulumi.ResourceOptions]:
        return self.stack.child(suffix, provider=self.provider, **options)

    def _labels(self, label_args: type, service: Optional[str] = None) -> list:
        return [label_args(label=key, value=value) for key, value in self.stack.labels(service).items()]

    def declare(self, service: Service, values: dict) -> None:
        self.containers[service.name] = self._container(service, values)

    def _container(self, service: Service, values: dict) -> docker.Container:
        config = self.stack.config
        # Shared by every stack on the host: a destroy must not delete it from under the others.
        image = docker.RemoteImage(*self._child(f"{service.name}-image"), name=config.images[service.name],
                                   keep_locally=True)

        volumes = [
            docker.ContainerVolumeArgs(host_path=mount.host_path, container_path=mount.container_path,
                                       read_only=mount.read_only)
            for mount in service.host_mounts(config)
        ]
        if service.data_dir:
            # The data outlives the containers, and `pulumi destroy` too unless asked (see README).
            volume = docker.Volume(
                *self._child(f"{service.name}-data", retain_on_delete=True),
                name=docker_name(config.stack, service.name, service.data_volume),
                labels=self._labels(docker.VolumeLabelArgs, service.name),
            )
            volumes.append(docker.ContainerVolumeArgs(volume_name=volume.name, container_path=service.data_dir))

        envs: list = [f"{key}={value}" for key, value in service.env(config).items()]
        for variable, key in service.secret_env.items():
            secret = self.stack.secrets.get(key)
            if secret is not None:
                envs.append(pulumi.Output.secret(secret).apply(lambda value, variable=variable: f"{variable}={value}"))

        # Uploaded content is part of the container's inputs: an edited template or setting shows in
        # `pulumi preview` as a replacement of the container that reads it.
        uploads = [docker.ContainerUploadArgs(file=path, content=content)
                   for path, content in render_service_files(service, values).items()]
        command = service.command(config)

        return docker.Container(
            *self._child(service.name,
                         depends_on=[self.containers[name] for name in service.depends_on],
                         # The provider never applies a changed health check in place: replace instead.
                         # A changed memory limit replaces too, so swap is only ever set at create.
                         replace_on_changes=["healthcheck", "memory"],
                         # On a host without swap accounting the engine stores -1 whatever it is given
                         # (moby verifyPlatformContainerResources), and every preview of a fresh stack
                         # would plan an update: what it reads back is not the program's to judge.
                         ignore_changes=["memorySwap"]),
            name=docker_name(config.stack, service.name),
            image=image.image_id,
            command=list(command) if command is not None else None,
            envs=envs,
            ports=[
                docker.ContainerPortArgs(internal=port.internal, external=config.host_port(port.host),
                                         ip=port_address(config, port), protocol="tcp")
                for port in service.published_on("docker")
            ],
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=self.network.name, aliases=[service.name])],
            volumes=volumes,
            uploads=uploads,
            labels=self._labels(docker.ContainerLabelArgs, service.name),
            hostname=_hostname_replaced_with(service, self.containers),
            restart="unless-stopped",
            stop_timeout=service.stop_seconds,
            # Replace and destroy stop the container this long before removing it; unset, the
            # provider stops it with no grace at all, a SIGKILL (terraform-provider-docker v4.5.0,
            # resourceDockerContainerDelete).
            destroy_grace_seconds=service.removal_grace_seconds,
            user=service.user,
            capabilities=docker.ContainerCapabilitiesArgs(drops=list(service.dropped_capabilities))
            if service.dropped_capabilities else None,
            # Swap equal to memory means none beyond the limit (unset, Docker allows as much again).
            memory=config.memory_mib[service.name],
            memory_swap=config.memory_mib[service.name],
            healthcheck=_healthcheck_args(service),
        )


def _hostname_replaced_with(service: Service, containers: dict[str, docker.Container]) -> Optional[pulumi.Output[str]]:
    """The service's own name as its hostname, taken from the ids of the containers it is replaced
    with: when one of those is replaced, delete first, Pulumi sees this container's hostname
    depend on it (a change of hostname replaces a container) and deletes this container before it."""
    if not service.replaced_with:
        return None
    return pulumi.Output.all(*(containers[name].id for name in service.replaced_with)).apply(lambda _: service.name)


def go_duration(seconds: int) -> str:
    """A whole number of seconds as Go prints a time.Duration (`1m30s`, `1m0s`, `10s`), which is how
    the provider reads health check durations back: any other spelling is a change at every preview."""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def _healthcheck_args(service: Service) -> Optional[docker.ContainerHealthcheckArgs]:
    test = service.healthcheck_test()
    if test is None:
        return None
    return docker.ContainerHealthcheckArgs(
        tests=list(test),
        interval=go_duration(HEALTHCHECK_INTERVAL_SECONDS),
        timeout=go_duration(HEALTHCHECK_TIMEOUT_SECONDS),
        start_period=go_duration(HEALTHCHECK_START_SECONDS),
        retries=HEALTHCHECK_RETRIES,
    )
