"""trace-stack: a local observability stack for an OpenTelemetry-instrumented service, as Pulumi code."""
