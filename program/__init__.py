"""The Pulumi program: the stack's settings, its six services, their config files, the
dashboards, and the TraceStack component. Only render, dashboards and component load Jinja,
grafana-foundation-sdk and pulumi_docker; the rest is plain data the commands may import."""
