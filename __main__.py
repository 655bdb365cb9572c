"""trace-stack: read and validate the stack's settings, declare the stack, export its URLs."""

import pulumi

from program.component import TraceStack
from program.services import PASSWORD_KEY
from program.settings import ConfigError, read_settings

config = pulumi.Config()
try:
    settings = read_settings(config, pulumi.get_stack())
except ConfigError as error:
    # RunError ends the program with this message and no stack trace, before any resource exists.
    raise pulumi.RunError(f"invalid configuration for stack {pulumi.get_stack()!r}:\n" + str(error)) from None

password = config.get_secret(PASSWORD_KEY) if settings.grafana_admin_password_set else None
trace_stack = TraceStack("trace-stack", settings, grafana_admin_password=password)

for name, url in trace_stack.urls.items():
    pulumi.export(name, url)
