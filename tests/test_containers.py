"""How the containers are run: health checks, memory, start order, what outlives a destroy."""

import re
import subprocess

import pytest
import yaml

from program.platforms.docker import go_duration
from program.services import SERVICES
from program.settings import DEFAULTS
from program.tables import containers_table, services_table, versions_table
from tests.program import COMPONENT, ROOT, run_program, sources
from tests.standins import StandIn, text
from tests.tools import require

GO_DURATION = re.compile(r"^(\d+h)?(\d+m)?\d+s$")


@pytest.fixture(scope="module")
def default_stack():
    return run_program()


def test_every_image_that_can_run_a_health_check_has_one(default_stack):
    checks = {name: c.get("healthcheck") for name, c in default_stack.containers.items()}
    assert checks["otel-collector"] is None  # FROM scratch: nothing in the image can run one
    assert checks["prometheus"]["tests"] == ["CMD", "wget", "--spider", "-q", "http://127.0.0.1:9090/-/ready"]
    assert checks["tempo"]["tests"] == ["CMD", "wget", "--spider", "-q", "http://127.0.0.1:3200/ready"]
    assert checks["loki"]["tests"] == ["CMD", "wget", "--spider", "-q", "http://127.0.0.1:3100/ready"]
    assert checks["grafana"]["tests"][:2] == ["CMD", "curl"]
    assert checks["alloy"]["tests"][:3] == ["CMD", "bash", "-c"]


def test_health_check_durations_are_written_as_the_provider_reads_them_back(default_stack):
    for name, container in default_stack.containers.items():
        check = container.get("healthcheck")
        if check:
            for key in ("interval", "timeout", "startPeriod"):
                assert GO_DURATION.match(check[key]), (name, key, check[key])
            assert check["retries"] == 3


@pytest.mark.parametrize(("seconds", "printed"), [(10, "10s"), (60, "1m0s"), (90, "1m30s"), (3600, "1h0m0s"),
                                                  (3725, "1h2m5s"), (0, "0s")])
def test_go_duration_prints_as_go_does(seconds, printed):
    assert go_duration(seconds) == printed


def options(stack, short_type, suffix):
    return stack.options[(f"docker:index/{short_type}", f"{COMPONENT}-{suffix}")]


def test_a_changed_health_check_or_memory_limit_replaces_the_container(default_stack):
    for name in default_stack.containers:
        assert options(default_stack, "container:Container", name).replace_on_changes == ["healthcheck", "memory"]


def test_what_a_host_decides_is_never_drift(default_stack):
    # Swap: -1 on a host without swap accounting, whatever the container was given (moby
    # verifyPlatformContainerResources). IPv6: on where the daemon enables it by default. Both are
    # read back by terraform-provider-docker v4.5.0, so they are left out of every diff.
    for name in default_stack.containers:
        assert options(default_stack, "container:Container", name).ignore_changes == ["memorySwap"]
    assert options(default_stack, "network:Network", "network").ignore_changes == ["ipv6"]


def test_memory_is_limited_with_no_swap_beyond_it(default_stack):
    for service in SERVICES:
        container = default_stack.containers[service.name]
        assert container["memory"] == container["memorySwap"] == DEFAULTS[service.memory_key]


def test_a_memory_setting_reaches_its_container_and_the_collectors_limiter():
    program = run_program({"otelCollectorMemoryMiB": 1000, "lokiMemoryMiB": 2048})
    assert program.containers["otel-collector"]["memory"] == 1000
    assert program.containers["loki"]["memorySwap"] == 2048
    [config] = [u["content"] for u in program.containers["otel-collector"]["uploads"]]
    limiter = yaml.safe_load(config)["processors"]["memory_limiter"]
    assert (limiter["limit_mib"], limiter["spike_limit_mib"]) == (800, 160)


def test_the_collectors_limiter_stays_inside_its_container_by_default(default_stack):
    [config] = [u["content"] for u in default_stack.containers["otel-collector"]["uploads"]]
    limiter = yaml.safe_load(config)["processors"]["memory_limiter"]
    memory = default_stack.containers["otel-collector"]["memory"]
    assert limiter["limit_mib"] < memory and limiter["spike_limit_mib"] < limiter["limit_mib"]


def test_start_order_follows_what_each_service_needs(default_stack):
    def depends(name):
        return sorted(dependency._name.removeprefix(f"{COMPONENT}-")
                      for dependency in options(default_stack, "container:Container", name).depends_on)

    assert depends("grafana") == ["loki", "prometheus", "tempo"]
    assert depends("otel-collector") == ["tempo"]
    assert depends("tempo") == ["prometheus"]
    assert depends("alloy") == ["loki"]


def test_data_volumes_outlive_a_destroy_and_the_network_is_replaced_delete_first(default_stack):
    for volume in default_stack.of_type("volume:Volume"):
        assert default_stack.options[("docker:index/volume:Volume", volume.name)].retain_on_delete is True
    assert options(default_stack, "network:Network", "network").delete_before_replace is True


def test_only_the_collector_overrides_its_images_user_and_it_as_root_without_capabilities(default_stack):
    # Grafana 472, Prometheus nobody, Loki 10001 as their images run them; Tempo 2.3 and Alloy
    # run as root, as their images do (program/services.py says why). The collector writes its
    # queues to a volume only root can write, so it is root with no capability at all.
    overriding = {name: container for name, container in default_stack.containers.items() if "user" in container}
    assert list(overriding) == ["otel-collector"]
    assert overriding["otel-collector"]["user"] == "0"
    assert overriding["otel-collector"]["capabilities"] == {"drops": ["ALL"]}
    assert all("capabilities" not in container for name, container in default_stack.containers.items()
               if name != "otel-collector")


def test_a_replaced_tempo_replaces_the_collector_and_stops_it_first(default_stack):
    """The collector's hostname comes from Tempo's container id: when Tempo is replaced (delete
    first), Pulumi deletes the collector before it, which keeps what it holds on disk instead of
    sending it to a Tempo that takes spans while it stops and drops them."""
    container = "docker:index/container:Container"
    hostname = default_stack.arguments[(container, "trace-stack-otel-collector")].__dict__["hostname"]
    assert default_stack.containers["otel-collector"]["hostname"] == "otel-collector"
    assert sources(hostname) == {default_stack.instances[(container, "trace-stack-tempo")]}
    assert all("hostname" not in inputs for name, inputs in default_stack.containers.items() if name != "otel-collector")


def test_every_container_is_stopped_with_grace_on_replace_and_destroy(default_stack):
    # Without destroy_grace_seconds the provider stops a container with no grace: SIGKILL.
    for name, container in default_stack.containers.items():
        if name != "tempo":
            assert container["destroyGraceSeconds"] == container["stopTimeout"] >= 10, name
    # Tempo 2.3 sleeps 30 s after SIGTERM before it exits: `docker stop` by hand waits for that;
    # `down` and a replacement, which remove the collector first, give it the seconds its ingester
    # needs to cut its live traces to the WAL.
    tempo = default_stack.containers["tempo"]
    assert tempo["stopTimeout"] >= 40 and tempo["destroyGraceSeconds"] == 2


# --- the health checks' commands, run for real against stand-ins --------------------------------

# What runs them inside each image: the alpine and busybox images have BusyBox's wget (GET, where
# GNU wget's --spider would send HEAD), Grafana's alpine has curl, Alloy's Ubuntu has bash.
TOOLS = {"wget": ["busybox", "wget"], "curl": ["curl"], "bash": ["bash"]}


def run_check_command(service, status):
    """Run a service's health check command here, pointed at a stand-in answering `status` on its
    readiness path (and 404 elsewhere)."""
    readiness = service.readiness
    stand_in = StandIn({readiness.path: (lambda p, q, b: text(status, "ok" if status == 200 else "starting"))})
    try:
        internal, port = str(service.port(readiness.port).internal), stand_in.url.rsplit(":", 1)[1]
        [_, tool, *arguments] = service.healthcheck_test()
        command = [*TOOLS[tool], *(part.replace(internal, port) for part in arguments)]
        require(command[0], f"apt-get install -y {'busybox-static' if tool == 'wget' else tool}")
        return subprocess.run(command, capture_output=True, timeout=10).returncode
    finally:
        stand_in.close()


@pytest.mark.parametrize("service", [s for s in SERVICES if s.healthcheck_tool], ids=lambda s: s.name)
def test_health_check_commands_pass_on_200_and_fail_otherwise(service):
    assert run_check_command(service, 200) == 0
    assert run_check_command(service, 503) != 0


def test_the_readmes_tables_are_made_from_the_declarations():
    readme = (ROOT / "README.md").read_text()
    assert all(table in readme for table in (services_table(), versions_table(), containers_table())), \
        "run `python -m program.tables`"
