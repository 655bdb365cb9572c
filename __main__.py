"""trace-stack: read and validate the stack's settings, declare the stack, export its URLs."""

import pulumi

from stack.component import TraceStack
from stack.config import PASSWORD_KEY, ConfigError, read_stack_config

try:
    settings = read_stack_config()
except ConfigError as error:
    # RunError ends the program with this message and no stack trace, before any resource exists.
    raise pulumi.RunError(f"invalid configuration for stack {pulumi.get_stack()!r}:\n" + str(error)) from None

password = pulumi.Config().get_secret(PASSWORD_KEY) if settings.grafana_admin_password_set else None
trace_stack = TraceStack("trace-stack", settings, grafana_admin_password=password)

for name, url in trace_stack.urls.items():
    pulumi.export(name, url)
