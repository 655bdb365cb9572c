"""The settings: read with pulumi.Config's getters from the stack's config, defaults from
Pulumi.yaml, and every validation rule with a value that breaks it."""

import pytest
import yaml

from program.ports import published_ports
from program.services import SERVICES
from program.settings import (
    DEFAULTS, SCHEMA, ConfigError, pinned_images, go_duration_seconds, is_image_reference, prometheus_duration_seconds,
)
from tests.program import ROOT
from tests.tools import stack_config


def problems_for(raw, secret_keys=("grafanaAdminPassword",), stack="dev"):
    with pytest.raises(ConfigError) as caught:
        stack_config(raw, stack=stack, secret_keys=secret_keys)
    return caught.value.problems


def test_defaults_are_the_seeds():
    config = stack_config()
    assert (config.port_offset, config.bind_address, config.log_dir) == (0, "127.0.0.1", "/tmp/alloy/logs/refly")
    assert (config.prometheus_retention, config.tempo_retention, config.loki_retention) == ("30d", "168h", "168h")
    assert dict(config.images) == {
        "grafana": "grafana/grafana:12.3.0", "prometheus": "prom/prometheus:v2.48.0", "tempo": "grafana/tempo:2.3.0",
        "loki": "grafana/loki:2.9.0", "otel-collector": "otel/opentelemetry-collector-contrib:0.91.0",
        "alloy": "grafana/alloy:v1.5.1"}
    assert (config.grafana_anonymous_enabled, config.grafana_anonymous_role) == (True, "Admin")
    assert config.docker_host is None and not config.grafana_admin_password_set


def test_pulumi_yaml_declares_each_setting_the_program_reads_for_the_cli():
    for service in SERVICES:
        assert {service.image_key, service.memory_key} <= set(SCHEMA), service.name
    for key, entry in SCHEMA.items():
        assert entry["type"] in ("string", "integer", "boolean") and entry["description"], key
        assert type(entry["default"]).__name__ == {"string": "str", "integer": "int", "boolean": "bool"}[entry["type"]], key


def test_defaults_as_the_cli_passes_them_read_as_the_defaults():
    # The CLI hands a deployed program every default as text; read back, they are the defaults.
    as_passed = {key: value for key, value in DEFAULTS.items() if key != "grafanaAdminPassword"}
    assert stack_config(as_passed) == stack_config()


def test_values_are_read():
    config = stack_config(stack="alice", raw={
        "portOffset": "1000", "bindAddress": "::1", "logDir": "/var/log/refly",
        "prometheusRetention": "2w", "tempoRetention": "720h", "lokiRetention": "30d",
        "grafanaImage": "registry.local:5000/grafana/grafana:12.3.1", "grafanaAdminUser": "alice",
        "grafanaAnonymousEnabled": "false", "grafanaAnonymousRole": "Viewer", "dockerHost": "ssh://dev@team-box",
    })
    assert config.port_offset == 1000 and config.bind_address == "::1" and config.log_dir == "/var/log/refly"
    assert (config.prometheus_retention, config.tempo_retention, config.loki_retention) == ("2w", "720h", "30d")
    assert config.images["grafana"] == "registry.local:5000/grafana/grafana:12.3.1"
    assert config.images["loki"] == pinned_images("seed")["loki"]
    assert not config.grafana_anonymous_enabled and config.grafana_anonymous_role == "Viewer"
    assert config.docker_host == "ssh://dev@team-box"


def test_versions_picks_every_image_and_an_image_setting_wins_over_either():
    seed, current = pinned_images("seed"), pinned_images("current")
    assert stack_config().versions == "seed" and dict(stack_config().images) == seed
    assert dict(stack_config({"versions": "current"}).images) == current
    # Every image but Grafana's moves on (Grafana is not run here, so the newest one proven is the seed's).
    assert {name for name in seed if seed[name] != current[name]} == {name for name in seed} - {"grafana"}
    for versions in ("seed", "current"):
        config = stack_config({"versions": versions, "tempoImage": "registry.local/tempo:2.9.1"})
        assert config.images["tempo"] == "registry.local/tempo:2.9.1" and config.images["loki"] == pinned_images(versions)["loki"]


# Each rule, the key it guards, and a value that breaks it.
BAD_VALUES = [
    ("portOffset", "ten"),
    ("portOffset", "1.5"),
    ("portOffset", "40000"),  # 39090 + 40000 > 65535
    ("portOffset", "-12345"),  # alloy's 12345 would become 0
    ("bindAddress", "localhost"),
    ("bindAddress", "300.1.1.1"),
    ("logDir", "logs/refly"),
    ("prometheusRetention", "30 days"),
    ("prometheusRetention", "1.5d"),
    ("prometheusRetention", "0d"),
    ("tempoRetention", "7d"),
    ("tempoRetention", "0h"),
    ("lokiRetention", "12h"),
    ("lokiRetention", "1.5h"),
    ("lokiRetention", "forever"),
    ("grafanaImage", "Grafana/Grafana:12"),
    ("lokiImage", "grafana/loki:"),
    ("alloyImage", "grafana/alloy@sha256:123"),
    ("grafanaAnonymousRole", "admin"),
    ("appName", "shop api"),
    ("exposeBackends", "sometimes"),
    ("grafanaAnonymousEnabled", "yes"),
    ("grafanaAdminUser", " "),
    ("dockerHost", "http://team-box:2375"),
    ("dockerHost", "team-box"),
    ("dockerHost", "ssh://"),
    ("lokiMemoryMiB", "1g"),
    ("otelCollectorMemoryMiB", "32"),
    ("versions", "latest"),
]


@pytest.mark.parametrize(("key", "value"), BAD_VALUES)
def test_a_bad_value_is_refused_naming_key_and_value(key, value):
    [problem] = problems_for({key: value})
    assert f"trace-stack:{key}" in problem and repr(value) in problem and "allowed" in problem


def test_every_bad_value_is_reported_not_only_the_first():
    problems = problems_for({"portOffset": "x", "bindAddress": "nowhere", "tempoRetention": "7d", "lokiImage": "A B"})
    assert len(problems) == 4
    for key in ("portOffset", "bindAddress", "tempoRetention", "lokiImage"):
        assert any(f"trace-stack:{key}" in problem for problem in problems)


def test_port_offsets_at_the_edges_of_the_port_range():
    assert stack_config({"portOffset": 65535 - 39090}).port_offset == 26445
    assert stack_config({"portOffset": 1 - 12345}).port_offset == -12344


@pytest.mark.parametrize("value", ["unix:///var/run/docker.sock", "tcp://10.0.0.5:2376", "ssh://dev@team-box",
                                   "ssh://dev@team-box:2222", "npipe:////./pipe/docker_engine"])
def test_docker_hosts_docker_accepts(value):
    assert stack_config({"dockerHost": value}).docker_host == value


def test_an_empty_docker_host_is_the_local_engine():
    assert stack_config({"dockerHost": ""}).docker_host is None


def test_on_the_network_grafana_needs_a_password_and_no_anonymous_admin():
    problems = problems_for({"bindAddress": "0.0.0.0"})
    assert any("grafanaAdminPassword is not set" in p and "0.0.0.0" in p for p in problems)
    assert any("grafanaAnonymousRole = 'Admin'" in p for p in problems)
    config = stack_config({"bindAddress": "0.0.0.0", "grafanaAdminPassword": "s3cret",
                           "grafanaAnonymousRole": "Viewer"}, secret_keys=("grafanaAdminPassword",))
    assert config.grafana_admin_password_set and not config.bind_is_loopback
    stack_config({"bindAddress": "0.0.0.0", "grafanaAdminPassword": "s3cret", "grafanaAnonymousEnabled": "false"},
                 secret_keys=("grafanaAdminPassword",))


def test_a_password_in_plain_text_is_refused():
    [problem] = problems_for({"grafanaAdminPassword": "s3cret"}, secret_keys=())
    assert "plain text" in problem and "--secret" in problem and "s3cret" not in problem


def test_a_problem_never_shows_the_password():
    problems = problems_for({"grafanaAdminPassword": "s3cret", "bindAddress": "0.0.0.0"}, secret_keys=())
    assert problems and not any("s3cret" in p for p in problems)


@pytest.mark.parametrize(("text", "seconds"), [("30d", 30 * 86400), ("2w", 14 * 86400), ("720h", 720 * 3600),
                                                ("1y", 365 * 86400), ("1d12h", 36 * 3600), ("90s", 90)])
def test_prometheus_durations(text, seconds):
    assert prometheus_duration_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "30", "d", "1h1d", "1.5d", "30D", " 30d"])
def test_not_prometheus_durations(text):
    assert prometheus_duration_seconds(text) is None


@pytest.mark.parametrize(("text", "seconds"), [("168h", 168 * 3600), ("1h30m", 5400), ("1.5h", 5400),
                                                ("90m", 5400), ("300ms", 0.3)])
def test_go_durations(text, seconds):
    assert go_duration_seconds(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "7d", "168", "1w", "h", "168h "])
def test_not_go_durations(text):
    assert go_duration_seconds(text) is None


@pytest.mark.parametrize("image", ["grafana/grafana:12.3.0", "loki", "localhost:5000/team/loki:2.9.0-fix",
                                   "ghcr.io/org/img@sha256:" + "a" * 64, "img:tag@sha256:" + "0" * 64,
                                   "[::1]:5000/img:1"])
def test_image_references(image):
    assert is_image_reference(image)


@pytest.mark.parametrize("image", ["", "grafana/Grafana", "img:", "img:-tag", "img@sha256:abc", "a b", "/img",
                                   "img/", "img:" + "t" * 129])
def test_not_image_references(image):
    assert not is_image_reference(image)


def test_offsets_a_thousand_apart_never_share_a_host_port():
    # The README's and Pulumi.bob.yaml.example's advice, for every such offset in range.
    taken: dict[int, int] = {}
    for developer in range(27):
        config = stack_config({"portOffset": developer * 1000}, stack=f"dev{developer}")
        for port in published_ports(config).values():
            assert port not in taken, f"offsets {taken.get(port)} and {developer * 1000} share port {port}"
            taken[port] = developer * 1000


def test_the_example_second_stack_is_valid_and_apart_from_the_first():
    example = yaml.safe_load((ROOT / "Pulumi.bob.yaml.example").read_text())["config"]
    raw = {key.split(":", 1)[1]: value for key, value in example.items()}
    bob = stack_config(raw, stack="bob")
    assert bob.port_offset == 1000 and bob.log_dir != stack_config().log_dir


@pytest.mark.parametrize(("key", "value", "said"), [
    ("grafanaImage", "Grafana/Grafana:12", "image names are lower case: grafana/grafana:12"),
    ("lokiImage", "Registry.local/Loki:2.9.0-RC1", "image names are lower case: registry.local/loki:2.9.0-RC1"),
    ("grafanaAnonymousRole", "admin", "roles are spelt Viewer, Editor, Admin: did you mean Admin?"),
    ("grafanaAnonymousRole", "Owner", "roles are spelt Viewer, Editor, Admin"),
])
def test_a_refusal_says_what_is_wrong(key, value, said):
    [problem] = problems_for({key: value})
    assert problem.endswith(said)


def test_an_unknown_key_gets_the_nearest_setting():
    [problem] = problems_for({"portOfset": "1000"})
    assert problem == "trace-stack:portOfset is not a trace-stack setting: did you mean portOffset?"


@pytest.mark.parametrize("value", ["shop api", "-shop", "shop/api", "a" * 29, ""])
def test_app_name_and_env_are_label_safe(value):
    for key in ("appName", "appEnv"):
        [problem] = problems_for({key: value})
        assert problem.startswith(f"trace-stack:{key} = {value!r} is not allowed: letters, digits")


KUBERNETES_BAD_VALUES = [
    ("platform", "k8s"),
    ("platform", "Docker"),
    ("namespace", "Alice"),
    ("namespace", "obs_alice"),
    ("namespace", "-obs"),
    ("namespace", "a" * 64),
    ("storageClass", "Fast SSD"),
    ("storageClass", "fast-"),
    ("kubeContext", " team"),
]


@pytest.mark.parametrize(("key", "value"), KUBERNETES_BAD_VALUES)
def test_a_bad_kubernetes_value_is_refused_naming_key_and_value(key, value):
    [problem] = problems_for({"platform": "kubernetes", key: value})
    assert f"trace-stack:{key}" in problem and repr(value) in problem and "allowed" in problem


def test_kubernetes_settings_are_read_with_their_defaults():
    config = stack_config({"platform": "kubernetes"}, stack="alice")
    assert (config.platform, config.namespace, config.kube_context, config.storage_class) == \
        ("kubernetes", "trace-stack-alice", None, None)
    config = stack_config({"platform": "kubernetes", "namespace": "obs-alice", "kubeContext": "kind-team",
                           "storageClass": "local-path"}, stack="alice")
    assert (config.namespace, config.kube_context, config.storage_class) == ("obs-alice", "kind-team", "local-path")
    assert stack_config().platform == "docker"


def test_a_stack_name_that_makes_no_namespace_asks_for_one():
    [problem] = problems_for({"platform": "kubernetes"}, stack="Alice_Dev")
    assert "'trace-stack-Alice_Dev', is not a Kubernetes namespace name" in problem and "pulumi config set namespace" in problem
    assert stack_config({"platform": "kubernetes", "namespace": "alice-dev"}, stack="Alice_Dev").namespace == "alice-dev"
    assert stack_config(stack="Alice_Dev").platform == "docker"  # Docker names need no namespace


def test_a_docker_host_is_refused_on_kubernetes():
    [problem] = problems_for({"platform": "kubernetes", "dockerHost": "ssh://dev@team-box"})
    assert problem.startswith("trace-stack:dockerHost = 'ssh://dev@team-box' is not allowed: empty on platform kubernetes")


def test_settings_of_the_other_platform_are_noted():
    from program.settings import settings_notes

    assert settings_notes(stack_config({"namespace": "obs"}), frozenset({"namespace"})) == [
        "namespace is read on platform kubernetes only; this stack runs on docker"]
    notes = settings_notes(stack_config({"platform": "kubernetes"}), frozenset({"platform", "logDir"}))
    assert notes and notes[0].startswith("logDir is read on platform docker only")
