"""The stack in a Kubernetes namespace: for each service a Deployment, a Service of its name (so the
rendered configs reach `tempo:4317` as on Docker), a ConfigMap of its files and a
PersistentVolumeClaim for its data; the namespace, the Grafana password's Secret and a
NetworkPolicy. Every object is a child of the TraceStack component and carries the stack's labels."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.apps.v1 import DeploymentSpecArgs, DeploymentStrategyArgs
from pulumi_kubernetes.core.v1 import (CapabilitiesArgs, ConfigMapVolumeSourceArgs, ContainerArgs, ContainerPortArgs,
                                       EnvVarArgs, EnvVarSourceArgs, HTTPGetActionArgs,
                                       PersistentVolumeClaimSpecArgs, PersistentVolumeClaimVolumeSourceArgs,
                                       PodSecurityContextArgs, PodSpecArgs, PodTemplateSpecArgs, ProbeArgs,
                                       ResourceRequirementsArgs, SeccompProfileArgs, SecretKeySelectorArgs,
                                       SecurityContextArgs, ServicePortArgs, ServiceSpecArgs, VolumeArgs,
                                       VolumeMountArgs, VolumeResourceRequirementsArgs)
from pulumi_kubernetes.meta.v1 import LabelSelectorArgs, ObjectMetaArgs
from pulumi_kubernetes.networking.v1 import (NetworkPolicyIngressRuleArgs, NetworkPolicyPeerArgs,
                                             NetworkPolicyPortArgs, NetworkPolicySpecArgs)

from ..ports import published
from ..render import render_service_files
from ..services import (HEALTHCHECK_INTERVAL_SECONDS, HEALTHCHECK_RETRIES, HEALTHCHECK_START_SECONDS,
                        HEALTHCHECK_TIMEOUT_SECONDS, PASSWORD_KEY, Port, Service, data_claim_name)

if TYPE_CHECKING:
    from ..component import TraceStack

PLATFORM = "kubernetes"
PASSWORD_SECRET_KEY = "password"
# `down` keeps the namespace (deleting it would delete the claims in it) and the claims; the next
# `up` takes them over, field conflicts with the manager that made them resolved in its favour.
ADOPT = {"pulumi.com/patchForce": "true"}
# The provider waits for a new Service's endpoints, then 10 s more for them to settle
# (await/service.go): the Deployment's own wait for its pod to be ready already says so.
SKIP_AWAIT = {"pulumi.com/skipAwait": "true"}
# How often the kubelet asks a starting pod whether it is ready: `up` waits for that answer (the
# liveness probe keeps the health check's 10 s).
READINESS_PERIOD_SECONDS = 2


def port_name(port: Port) -> str:
    """A Kubernetes port name (a DNS label of at most 15): the port's name without its service's
    prefix, `collector_otlp_http` -> `otlp-http`."""
    return port.name.split("_", 1)[-1].replace("_", "-")[:15]


def config_key(path: str) -> str:
    """A ConfigMap key for a file the container reads at `path` (keys cannot hold `/`)."""
    return path.strip("/").replace("/", "_")


class Platform:
    """Turns service records into Kubernetes objects under `stack`, in the stack's namespace."""

    def __init__(self, stack: "TraceStack"):
        self.stack = stack
        config = stack.config
        self.provider = k8s.Provider(*stack.child("kubernetes"), context=config.kube_context)
        self.namespace = k8s.core.v1.Namespace(
            *self._child("namespace", retain_on_delete=True),
            metadata=ObjectMetaArgs(name=config.namespace, labels=stack.labels(), annotations=ADOPT))
        self.password_secret: Optional[k8s.core.v1.Secret] = None
        password = stack.secrets.get(PASSWORD_KEY)
        if password is not None:
            # Named by Pulumi: a new password is a new Secret, and Grafana's pods roll to read it.
            self.password_secret = k8s.core.v1.Secret(
                *self._child("grafana-admin"), metadata=self._metadata(None, "grafana"),
                string_data={PASSWORD_SECRET_KEY: pulumi.Output.secret(password)})
        self._network_policy()

    def _child(self, suffix: str, **options) -> tuple[str, pulumi.ResourceOptions]:
        return self.stack.child(suffix, provider=self.provider, **options)

    def _metadata(self, name: Optional[str], service: Optional[str] = None,
                  annotations: Optional[dict] = None) -> ObjectMetaArgs:
        return ObjectMetaArgs(name=name, namespace=self.namespace.metadata.name, labels=self.stack.labels(service),
                              annotations=annotations)

    def _network_policy(self) -> None:
        """Inside the namespace every service reaches every other; from outside it only what Docker
        publishes on bindAddress (Grafana and the OTLP receivers), unless exposeBackends. (The
        commands' port-forwards arrive through the kubelet, which no policy applies to.)"""
        config = self.stack.config
        from_outside = NetworkPolicyIngressRuleArgs(
            ports=None if config.expose_backends else [
                NetworkPolicyPortArgs(port=port.internal, protocol="TCP") for port in published(config) if port.public])
        self.network_policy = k8s.networking.v1.NetworkPolicy(
            *self._child("network-policy"), metadata=self._metadata("trace-stack"),
            spec=NetworkPolicySpecArgs(
                pod_selector=LabelSelectorArgs(match_labels=self.stack.labels()),
                policy_types=["Ingress"],
                ingress=[NetworkPolicyIngressRuleArgs(from_=[NetworkPolicyPeerArgs(pod_selector=LabelSelectorArgs())]),
                         from_outside]))

    def declare(self, service: Service, values: dict) -> None:
        config = self.stack.config
        volumes, mounts = [], []
        files = render_service_files(service, values)
        if files:
            # Named by Pulumi: changed content is a new ConfigMap, and the Deployment rolls to it.
            config_map = k8s.core.v1.ConfigMap(
                *self._child(f"{service.name}-config"), metadata=self._metadata(None, service.name),
                data={config_key(path): content for path, content in files.items()})
            volumes.append(VolumeArgs(name="config", config_map=ConfigMapVolumeSourceArgs(name=config_map.metadata.name)))
            mounts += [VolumeMountArgs(name="config", mount_path=path, sub_path=config_key(path), read_only=True)
                       for path in files]
        if service.data_dir:
            claim = k8s.core.v1.PersistentVolumeClaim(
                *self._child(f"{service.name}-data", retain_on_delete=True),
                metadata=self._metadata(data_claim_name(service), service.name, ADOPT),
                spec=PersistentVolumeClaimSpecArgs(
                    access_modes=["ReadWriteOnce"], storage_class_name=config.storage_class,
                    resources=VolumeResourceRequirementsArgs(requests={"storage": f"{service.volume_gib}Gi"})))
            volumes.append(VolumeArgs(name="data", persistent_volume_claim=PersistentVolumeClaimVolumeSourceArgs(
                claim_name=claim.metadata.name)))
            mounts.append(VolumeMountArgs(name="data", mount_path=service.data_dir))

        labels = self.stack.labels(service.name)
        ports = service.ports_on(PLATFORM)
        command = service.command(config)
        memory = f"{config.memory_mib[service.name]}Mi"
        readiness = HTTPGetActionArgs(path=service.readiness.path, port=service.port(service.readiness.port).internal)
        container = ContainerArgs(
            name=service.name,
            image=config.images[service.name],
            # No registry is asked for an image the node has; never `latest`, so never Always.
            image_pull_policy="IfNotPresent",
            # args, not command: the image's entrypoint runs them, as Docker's CMD.
            args=list(command) if command is not None else None,
            env=self._env(service),
            ports=[ContainerPortArgs(container_port=port.internal, name=port_name(port)) for port in ports],
            volume_mounts=mounts,
            resources=ResourceRequirementsArgs(requests={"memory": memory}, limits={"memory": memory}),
            readiness_probe=ProbeArgs(http_get=readiness, period_seconds=READINESS_PERIOD_SECONDS,
                                      timeout_seconds=HEALTHCHECK_TIMEOUT_SECONDS),
            liveness_probe=ProbeArgs(http_get=readiness, initial_delay_seconds=HEALTHCHECK_START_SECONDS,
                                     period_seconds=HEALTHCHECK_INTERVAL_SECONDS,
                                     timeout_seconds=HEALTHCHECK_TIMEOUT_SECONDS,
                                     failure_threshold=HEALTHCHECK_RETRIES),
            security_context=SecurityContextArgs(
                run_as_non_root=True, run_as_user=service.uid, run_as_group=service.uid,
                allow_privilege_escalation=False, capabilities=CapabilitiesArgs(drop=["ALL"])),
        )
        k8s.apps.v1.Deployment(
            *self._child(service.name),
            metadata=self._metadata(service.name, service.name),
            spec=DeploymentSpecArgs(
                replicas=1,
                selector=LabelSelectorArgs(match_labels=labels),
                # One writer per data volume: the old pod is gone before the new one mounts it.
                strategy=DeploymentStrategyArgs(type="Recreate" if service.data_dir else "RollingUpdate"),
                template=PodTemplateSpecArgs(
                    metadata=ObjectMetaArgs(labels=labels),
                    spec=PodSpecArgs(
                        containers=[container],
                        volumes=volumes,
                        # The data volume belongs to the service's group, whatever the image made it.
                        security_context=PodSecurityContextArgs(
                            fs_group=service.uid, seccomp_profile=SeccompProfileArgs(type="RuntimeDefault")),
                        # SIGTERM, then this long for a clean exit before the kill. Only the program
                        # stops pods here (a rollout, `down`), so the grace of the program's removal.
                        termination_grace_period_seconds=service.removal_grace_seconds,
                        enable_service_links=False,
                    ))))
        k8s.core.v1.Service(
            *self._child(f"{service.name}-service"),
            metadata=self._metadata(service.name, service.name, SKIP_AWAIT),
            spec=ServiceSpecArgs(selector=labels, ports=[
                ServicePortArgs(name=port_name(port), port=port.internal, target_port=port.internal, protocol="TCP")
                for port in ports]))

    def _env(self, service: Service) -> list[EnvVarArgs]:
        env = [EnvVarArgs(name=key, value=value) for key, value in service.env(self.stack.config).items()]
        if self.password_secret is not None:
            env += [EnvVarArgs(name=variable, value_from=EnvVarSourceArgs(secret_key_ref=SecretKeySelectorArgs(
                        name=self.password_secret.metadata.name, key=PASSWORD_SECRET_KEY)))
                    for variable, key in service.secret_env.items() if key == PASSWORD_KEY]
        return env
