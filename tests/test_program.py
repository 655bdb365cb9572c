"""The real __main__.py under Pulumi mocks: what it declares, for one stack and for several."""

import json

import pulumi
import pytest
from pulumi.runtime.sync_await import _sync_await

from program.services import SERVICES
from program.settings import DEFAULTS, pinned_images
from tests.program import COMPONENT, ROOT, is_secret, run_program
from tests.test_config import BAD_VALUES

SEED_IMAGES = pinned_images("seed")

EXPECTED_PORTS = {
    "grafana": {3000: 33000},
    "prometheus": {9090: 39090},
    "tempo": {3200: 33200},
    "loki": {3100: 33100},
    "otel-collector": {4318: 34318, 4317: 34317, 8889: 38889, 13133: 33133},
    "alloy": {12345: 12345},
}

EXPECTED_OUTPUTS = {
    "grafana_url": "http://localhost:33000",
    "prometheus_url": "http://localhost:39090",
    "tempo_url": "http://localhost:33200",
    "loki_url": "http://localhost:33100",
    "alloy_url": "http://localhost:12345",
    "otlp_http_endpoint": "http://localhost:34318",
    "otlp_grpc_endpoint": "http://localhost:34317",
    "collector_metrics_url": "http://localhost:38889/metrics",
    "collector_health_url": "http://localhost:33133/",
}


@pytest.fixture(scope="module")
def default_stack():
    program = run_program()
    assert program.error is None
    return program


def published(container):
    return {int(port["internal"]): int(port["external"]) for port in container["ports"]}


def test_one_component_holds_every_docker_object(default_stack):
    [component] = [r for r in default_stack.resources if r.type == "trace-stack:index:TraceStack"]
    assert component.name == "trace-stack"
    kinds = sorted(r.type for r in default_stack.resources if r.type.startswith("docker:"))
    assert kinds.count("docker:index/container:Container") == 6
    assert kinds.count("docker:index/remoteImage:RemoteImage") == 6
    assert kinds.count("docker:index/network:Network") == 1
    assert kinds.count("docker:index/volume:Volume") == 6


def test_six_containers_with_names_images_and_restart_policy(default_stack):
    containers = default_stack.containers
    assert sorted(containers) == sorted(service.name for service in SERVICES)
    for service in SERVICES:
        container, image = containers[service.name], default_stack.child("remoteImage:RemoteImage", f"{service.name}-image")
        assert container["name"] == f"trace-stack-dev-{service.name}"
        assert container["restart"] == "unless-stopped"
        assert image.inputs["name"] == SEED_IMAGES[service.name] and image.inputs["keepLocally"] is True
        assert container["image"] == f"sha256:{SEED_IMAGES[service.name]}"  # the pulled image's id


def test_ports_are_the_seeds_on_loopback(default_stack):
    for service, container in default_stack.containers.items():
        assert published(container) == EXPECTED_PORTS[service]
        assert {port["ip"] for port in container["ports"]} == {"127.0.0.1"}
        assert {port["protocol"] for port in container["ports"]} == {"tcp"}


def test_one_bridge_network_and_each_container_on_it_by_its_service_name(default_stack):
    network = default_stack.child("network:Network", "network")
    assert network.inputs["name"] == "trace-stack-dev" and network.inputs["driver"] == "bridge"
    for service, container in default_stack.containers.items():
        assert container["networksAdvanced"] == [{"name": "trace-stack-dev", "aliases": [service]}]


def test_data_volumes_are_named_for_the_stack_and_mounted_where_each_image_keeps_data(default_stack):
    volumes = {r.name: r.inputs["name"] for r in default_stack.of_type("volume:Volume")}
    assert volumes == {f"{COMPONENT}-{s}-data": f"trace-stack-dev-{s}-data"
                       for s in ("grafana", "prometheus", "tempo", "loki", "alloy", "otel-collector")}
    mounts = {service: {v.get("volumeName") or v.get("hostPath"): (v["containerPath"], v.get("readOnly", False))
                        for v in container.get("volumes", [])}
              for service, container in default_stack.containers.items()}
    assert mounts["grafana"] == {"trace-stack-dev-grafana-data": ("/var/lib/grafana", False)}
    assert mounts["prometheus"] == {"trace-stack-dev-prometheus-data": ("/prometheus", False)}
    assert mounts["tempo"] == {"trace-stack-dev-tempo-data": ("/var/tempo", False)}
    assert mounts["loki"] == {"trace-stack-dev-loki-data": ("/loki", False)}
    assert mounts["alloy"] == {"trace-stack-dev-alloy-data": ("/var/lib/alloy/data", False),
                               "/tmp/alloy/logs/refly": ("/var/log/app", True)}
    assert mounts["otel-collector"] == {"trace-stack-dev-otel-collector-data": ("/var/lib/otelcol/file_storage", False)}


def test_commands_restate_the_image_defaults_they_replace(default_stack):
    commands = {service: container.get("command") for service, container in default_stack.containers.items()}
    assert commands["prometheus"] == [
        "--config.file=/etc/prometheus/prometheus.yml",
        "--storage.tsdb.path=/prometheus",
        "--web.console.libraries=/usr/share/prometheus/console_libraries",
        "--web.console.templates=/usr/share/prometheus/consoles",
        "--storage.tsdb.retention.time=30d",
        "--enable-feature=exemplar-storage",
        "--web.enable-remote-write-receiver",
    ]
    assert commands["tempo"] == ["-config.file=/etc/tempo/tempo.yaml"]
    assert commands["loki"] == ["-config.file=/etc/loki/loki.yaml"]
    assert commands["otel-collector"] == ["--config=/etc/otelcol-contrib/config.yaml"]
    assert commands["alloy"] == ["run", "/etc/alloy/config.alloy", "--storage.path=/var/lib/alloy/data",
                                 "--server.http.listen-addr=0.0.0.0:12345"]
    assert commands["grafana"] is None  # the image's own entrypoint, configured by environment


def test_grafana_environment_is_the_seeds(default_stack):
    envs = default_stack.containers["grafana"]["envs"]
    assert "GF_AUTH_ANONYMOUS_ENABLED=true" in envs and "GF_AUTH_ANONYMOUS_ORG_ROLE=Admin" in envs
    assert "GF_SECURITY_ADMIN_USER=admin" in envs
    assert not any(env.startswith("GF_SECURITY_ADMIN_PASSWORD=") for env in envs)  # Grafana's own default


def test_start_up_order(default_stack):
    order = list(default_stack.containers)
    assert order.index("tempo") < order.index("otel-collector")
    for datasource in ("prometheus", "tempo", "loki"):
        assert order.index(datasource) < order.index("grafana")


def test_outputs_are_the_contracts(default_stack):
    assert default_stack.outputs == EXPECTED_OUTPUTS


def test_local_engine_uses_the_default_provider(default_stack):
    assert not default_stack.of_type("provider:Provider") and not [
        r for r in default_stack.resources if r.type == "pulumi:providers:docker"]


def test_docker_host_sends_every_docker_object_through_one_explicit_provider():
    program = run_program({"dockerHost": "ssh://dev@team-box", "bindAddress": "0.0.0.0",
                           "grafanaAdminPassword": "s3cret", "grafanaAnonymousRole": "Viewer"},
                          secret_keys=("grafanaAdminPassword",))
    assert program.error is None
    [provider] = [r for r in program.resources if r.type == "pulumi:providers:docker"]
    assert provider.inputs["host"] == "ssh://dev@team-box"
    docker_objects = [r for r in program.resources if r.type.startswith("docker:index/")]
    assert len(docker_objects) == 19
    # A provider reference is the provider's URN and id.
    assert all(f"$pulumi:providers:docker::{COMPONENT}-docker::" in r.provider for r in docker_objects)
    assert program.outputs["grafana_url"] == "http://team-box:33000"


def test_two_stacks_share_no_docker_name():
    alice = run_program({"portOffset": 1000}, stack="alice")
    bob = run_program({"portOffset": 2000}, stack="bob")

    def names(program):
        return {r.inputs["name"] for r in program.resources
                if r.type in ("docker:index/container:Container", "docker:index/network:Network",
                              "docker:index/volume:Volume")}

    assert len(names(alice)) == len(names(bob)) == 13
    assert not names(alice) & names(bob)
    assert all("-alice" in name for name in names(alice))
    host_ports = [{p for c in program.containers.values() for p in published(c).values()} for program in (alice, bob)]
    assert not host_ports[0] & host_ports[1]


def test_port_offset_moves_every_host_port_and_output():
    program = run_program({"portOffset": 1000})
    for service, container in program.containers.items():
        assert published(container) == {inside: host + 1000 for inside, host in EXPECTED_PORTS[service].items()}
    for name, url in EXPECTED_OUTPUTS.items():
        port = int(url.split(":")[2].split("/")[0])
        assert program.outputs[name] == url.replace(f":{port}", f":{port + 1000}")


def test_bind_address_reaches_every_published_port():
    program = run_program({"bindAddress": "::1"})
    assert {p["ip"] for c in program.containers.values() for p in c["ports"]} == {"::1"}
    assert program.outputs["grafana_url"] == "http://localhost:33000"


def test_image_overrides_and_retention_reach_the_containers():
    program = run_program({"lokiImage": "registry.local/loki:2.9.1", "prometheusRetention": "2w",
                           "tempoRetention": "720h", "lokiRetention": "336h"})
    assert program.child("remoteImage:RemoteImage", "loki-image").inputs["name"] == "registry.local/loki:2.9.1"
    assert "--storage.tsdb.retention.time=2w" in program.containers["prometheus"]["command"]
    uploads = {c: {u["file"]: u["content"] for u in v["uploads"]} for c, v in program.containers.items()}
    assert 'block_retention: "720h"' in uploads["tempo"]["/etc/tempo/tempo.yaml"]
    assert 'retention_period: "336h"' in uploads["loki"]["/etc/loki/loki.yaml"]


def test_a_secret_password_is_secret_wherever_it_goes():
    program = run_program({"grafanaAdminPassword": "s3cret"}, secret_keys=("grafanaAdminPassword",))
    assert program.error is None
    envs = program.containers["grafana"]["envs"]
    assert is_secret(envs)
    assert "GF_SECURITY_ADMIN_PASSWORD=s3cret" in envs["value"]
    for resource in program.resources:
        if resource is not None and resource.name != f"{COMPONENT}-grafana":
            assert "s3cret" not in repr(resource.inputs), resource.name
    assert "s3cret" not in repr(program.outputs)


def test_a_bad_config_stops_the_program_before_any_resource():
    program = run_program({"portOffset": "x", "tempoRetention": "7d", "bindAddress": "0.0.0.0"})
    assert isinstance(program.error, Exception)
    message = str(program.error)
    for key in ("portOffset", "tempoRetention", "grafanaAdminPassword", "grafanaAnonymousRole"):
        assert f"trace-stack:{key}" in message
    assert "bindAddress 0.0.0.0" in message
    assert program.resources == []
    assert program.outputs == {}


@pytest.mark.parametrize(("key", "value"), BAD_VALUES)
def test_each_bad_value_registers_nothing(key, value):
    program = run_program({key: value})
    assert program.error is not None and f"trace-stack:{key} = {value!r}" in str(program.error)
    assert program.resources == [] and program.outputs == {}


def test_a_plain_text_password_stops_the_program():
    program = run_program({"grafanaAdminPassword": "s3cret"})
    assert program.error is not None and "--secret" in str(program.error) and "s3cret" not in str(program.error)
    assert program.resources == []


# What the program registered before its children's names carried the component's (the "dev"
# stack with the defaults, "bob" on a remote engine), recorded from that program under these mocks.
URNS_BEFORE = json.loads((ROOT / "tests" / "fixtures" / "urns-before-children-carried-the-component-name.json").read_text())
STACK_CONFIGS = {"dev": {}, "bob": {"portOffset": 1000, "dockerHost": "ssh://dev@box"}}


@pytest.mark.parametrize("stack", sorted(STACK_CONFIGS))
def test_a_stack_deployed_with_the_earlier_names_is_not_replaced(stack):
    program = run_program(STACK_CONFIGS[stack], stack=stack)
    aliases = {}
    for (resource_type, name), options in program.options.items():
        [alias] = options.aliases
        urn = _sync_await(pulumi.create_urn(alias.name, resource_type, parent=options.parent).future())
        # The mock monitor prefixes the component's own URN with the root stack's type, which the
        # engine leaves out, and types a child by its parent's type alone: so do the same here.
        aliases[name] = urn.replace("pulumi:pulumi:Stack$", "")
    children_before = {urn for urn in URNS_BEFORE[stack] if "trace-stack:index:TraceStack$" in urn}
    # Every earlier child is some child's alias, and each child's alias is its own earlier name.
    assert children_before <= set(aliases.values())
    for name, urn in aliases.items():
        assert urn.endswith("::" + name.removeprefix(f"{COMPONENT}-")), (name, urn)


def test_off_loopback_only_grafana_and_the_otlp_receivers_leave_the_host():
    network = {"bindAddress": "0.0.0.0", "grafanaAdminPassword": "s3cret", "grafanaAnonymousRole": "Viewer"}
    program = run_program(network, secret_keys=("grafanaAdminPassword",))
    addresses = {(service, int(port["internal"])): port["ip"]
                 for service, container in program.containers.items() for port in container["ports"]}
    public = {("grafana", 3000), ("otel-collector", 4318), ("otel-collector", 4317)}
    assert {key for key, ip in addresses.items() if ip == "0.0.0.0"} == public
    assert {ip for key, ip in addresses.items() if key not in public} == {"127.0.0.1"}
    # Each URL is where its port really is: the backends through a tunnel, on localhost.
    assert program.outputs["loki_url"] == "http://localhost:33100"

    exposed = run_program({**network, "exposeBackends": True}, secret_keys=("grafanaAdminPassword",))
    assert {port["ip"] for c in exposed.containers.values() for port in c["ports"]} == {"0.0.0.0"}


def test_the_app_is_a_setting():
    program = run_program({"appName": "shop-api", "appEnv": "staging"})
    grafana = {upload["file"]: upload["content"] for upload in program.containers["grafana"]["uploads"]}
    dashboard = json.loads(grafana["/etc/grafana/dashboards/trace-stack-shop-api.json"])
    assert (dashboard["title"], dashboard["uid"]) == ("shop-api: overview", "trace-stack-shop-api")
    logs = [target["expr"] for panel in dashboard["panels"] if panel.get("datasource", {}).get("type") == "loki"
            for target in panel["targets"]]
    assert logs and all('{job="shop-api", env="staging"}' in expr for expr in logs)
    alloy = program.containers["alloy"]["uploads"][0]["content"]
    assert '"shop-api"' in alloy and '"staging"' in alloy
