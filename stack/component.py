"""The whole stack as one Pulumi component; every Docker object is its child."""

from __future__ import annotations

from typing import Optional

import pulumi
import pulumi_docker as docker

from .config import PASSWORD_KEY, StackConfig
from .ports import endpoint_urls
from .render import render_service_files, template_values
from .services import Healthcheck, Service, declare_services

COMPONENT_TYPE = "trace-stack:index:TraceStack"


def docker_name(config: StackConfig, *parts: str) -> str:
    """Name of a Docker object: every one carries the stack, so two stacks never collide."""
    return "-".join(("trace-stack", config.stack, *parts))


class TraceStack(pulumi.ComponentResource):
    """Network, volumes, images and the six containers of one developer's stack."""

    urls: dict[str, str]

    def __init__(
        self,
        name: str,
        config: StackConfig,
        grafana_admin_password: Optional[pulumi.Output[str]] = None,
        opts: Optional[pulumi.ResourceOptions] = None,
    ):
        super().__init__(COMPONENT_TYPE, name, None, opts)
        self._config = config
        self._secrets = {PASSWORD_KEY: grafana_admin_password}
        child = pulumi.ResourceOptions(parent=self)
        if config.docker_host:
            provider = docker.Provider("docker", host=config.docker_host, opts=child)
            child = pulumi.ResourceOptions(parent=self, provider=provider)
        self._child = child

        # A fixed name collides with itself when replaced create-first.
        self.network = docker.Network(
            "network",
            name=docker_name(config),
            driver="bridge",
            labels=self._labels(docker.NetworkLabelArgs),
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(delete_before_replace=True)),
        )

        values = template_values(config)
        self.containers: dict[str, docker.Container] = {}
        for service in declare_services(config):
            self.containers[service.name] = self._declare(service, values)

        self.urls = endpoint_urls(config)
        self.register_outputs(dict(self.urls))

    def _labels(self, label_args: type, service: Optional[str] = None) -> list:
        """Labels that tell which stack (and service) a Docker object belongs to."""
        labels = {"trace-stack.stack": self._config.stack}
        if service:
            labels["trace-stack.service"] = service
        return [label_args(label=key, value=value) for key, value in labels.items()]

    def _declare(self, service: Service, values: dict) -> docker.Container:
        config, child = self._config, self._child
        # Shared by every stack on the host: a destroy must not delete it from under the others.
        image = docker.RemoteImage(f"{service.name}-image", name=service.image, keep_locally=True, opts=child)

        volumes = [
            docker.ContainerVolumeArgs(host_path=mount.host_path, container_path=mount.container_path,
                                       read_only=mount.read_only)
            for mount in service.host_mounts
        ]
        if service.data_dir:
            # The data outlives the containers, and `pulumi destroy` too unless asked (see README).
            volume = docker.Volume(
                f"{service.name}-data",
                name=docker_name(config, service.name, "data"),
                labels=self._labels(docker.VolumeLabelArgs, service.name),
                opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(retain_on_delete=True)),
            )
            volumes.append(docker.ContainerVolumeArgs(volume_name=volume.name, container_path=service.data_dir))

        envs: list = [f"{key}={value}" for key, value in service.env.items()]
        for variable, key in service.secret_env.items():
            secret = self._secrets.get(key)
            if secret is not None:
                envs.append(pulumi.Output.secret(secret).apply(lambda value, variable=variable: f"{variable}={value}"))

        # Uploaded content is part of the container's inputs: an edited template or setting shows in
        # `pulumi preview` as a replacement of the container that reads it.
        uploads = [docker.ContainerUploadArgs(file=path, content=content)
                   for path, content in render_service_files(service, values).items()]

        return docker.Container(
            service.name,
            name=docker_name(config, service.name),
            image=image.image_id,
            command=list(service.command) if service.command is not None else None,
            envs=envs,
            ports=[
                docker.ContainerPortArgs(internal=port.internal, external=config.host_port(port.host),
                                         ip=config.bind_address, protocol="tcp")
                for port in service.published_ports
            ],
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=self.network.name, aliases=[service.name])],
            volumes=volumes,
            uploads=uploads,
            labels=self._labels(docker.ContainerLabelArgs, service.name),
            restart="unless-stopped",
            # Swap equal to memory means none beyond the limit; unset, the engine reads back another
            # value and every preview would show a change.
            memory=service.memory_mib,
            memory_swap=service.memory_mib,
            healthcheck=_healthcheck_args(service.healthcheck),
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(
                depends_on=[self.containers[name] for name in service.depends_on],
                # The provider never applies a changed health check in place: replace instead.
                replace_on_changes=["healthcheck"],
            )),
        )


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


def _healthcheck_args(check: Optional[Healthcheck]) -> Optional[docker.ContainerHealthcheckArgs]:
    if check is None:
        return None
    return docker.ContainerHealthcheckArgs(
        tests=list(check.test),
        interval=go_duration(check.interval_seconds),
        timeout=go_duration(check.timeout_seconds),
        start_period=go_duration(check.start_period_seconds),
        retries=check.retries,
    )
