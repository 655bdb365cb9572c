"""The whole stack as one Pulumi component: its platform's objects are its children, named after it."""

from __future__ import annotations

import importlib
from typing import Optional

import pulumi

from .ports import endpoint_urls
from .render import template_values
from .services import PASSWORD_KEY, SERVICES
from .settings import StackConfig

COMPONENT_TYPE = "trace-stack:index:TraceStack"


class TraceStack(pulumi.ComponentResource):
    """One developer's stack: the six services on the stack's platform (program/platforms/<platform>.py),
    and the URLs they are reached at."""

    urls: dict[str, str]

    def __init__(
        self,
        name: str,
        config: StackConfig,
        grafana_admin_password: Optional[pulumi.Output[str]] = None,
        opts: Optional[pulumi.ResourceOptions] = None,
    ):
        super().__init__(COMPONENT_TYPE, name, None, opts)
        self.name = name
        self.config = config
        self.secrets = {PASSWORD_KEY: grafana_admin_password}
        # Only the stack's own platform module is loaded: a Docker stack never imports pulumi_kubernetes.
        platform = importlib.import_module(f".platforms.{config.platform}", __package__).Platform(self)
        values = template_values(config)
        for service in SERVICES:
            platform.declare(service.at(config.versions), values)

        self.urls = endpoint_urls(config)
        self.register_outputs(dict(self.urls))

    def child(self, suffix: str, provider: Optional[pulumi.ProviderResource] = None,
              **options) -> tuple[str, pulumi.ResourceOptions]:
        """A child's resource name and options. The name carries the component's, as Pulumi's
        examples name children, so two components never collide; a stack deployed when children
        were named by `suffix` alone keeps its resources through the alias."""
        return f"{self.name}-{suffix}", pulumi.ResourceOptions(
            parent=self, provider=provider, aliases=[pulumi.Alias(name=suffix)], **options)

    def labels(self, service: Optional[str] = None) -> dict[str, str]:
        """Labels that tell which stack (and service) an object belongs to."""
        labels = {"trace-stack.stack": self.config.stack}
        if service:
            labels["trace-stack.service"] = service
        return labels
