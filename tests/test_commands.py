"""up, drift, down and logs: the exact CLI calls (against a recording fake `pulumi`), the drift
parser, preflight against real sockets and a real docker CLI, and logs against a real tmux."""

import base64
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pulumi.automation.events import EngineEvent

from stack.drift import drift_from_events, first_error
from stack.pane_filter import app_line
from tests.program import ROOT
from program.log_labels import PINO_LEVELS
from program.services import switch_losses
from tests.cli_outputs import RUN_WITHOUT_LANGUAGE_HOST, install_fails_to_download
from tests.standins import (
    StandIn, Telemetry, collector_routes, healthy_stack, loki_routes, prometheus_routes, tempo_routes,
)
from tests.tools import DEFAULT_LABELS, PORT_OFFSET, unused_port, wait_until

URN = "urn:pulumi:alice::trace-stack::trace-stack:index:TraceStack$docker:index/container:Container::"
STACK_URN = "urn:pulumi:alice::trace-stack::pulumi:pulumi:Stack::trace-stack-alice"


def step(op, name, kind="container:Container", **metadata):
    """A ResourcePreEvent as the engine sends it for one step of a preview."""
    urn = (STACK_URN if kind == "Stack" else URN.replace("container:Container", kind) + name)
    resource_type = "pulumi:pulumi:Stack" if kind == "Stack" else f"docker:index/{kind}"
    return {"resourcePreEvent": {"metadata": {"op": op, "urn": urn, "type": resource_type, "provider": "",
                                              **metadata}, "planning": True}}


def error(message):
    return {"diagnosticEvent": {"message": message + "\n", "color": "raw", "severity": "error", "prefix": "error: "}}


NO_CHANGES = [step("same", "", "Stack"), step("same", "grafana"), step("same", "loki")]
UPDATED = [step("same", "", "Stack"), step("update", "prometheus", diffs=["memory"],
                                            detailedDiff={"memory": {"diffKind": "update", "inputDiff": False}})]
REPLACED = [
    step("replace", "tempo", keys=["uploads"], diffs=["uploads"],
         detailedDiff={"uploads[0].content": {"diffKind": "update-replace", "inputDiff": True}}),
    step("delete-replaced", "tempo", keys=["uploads"]),
    step("create-replacement", "tempo", keys=["uploads"]),
    step("replace", "grafana", keys=["image"], diffs=["image"]),
]
CREATED_AND_DELETED = [step("create", "alloy"), step("delete", "old-dashboard-sidecar")]
# As the real CLI reports a preview whose provider plugin cannot be had: steps, then the error.
FAILED = [step("create", "", "Stack"), step("create", "grafana"),
          error("could not load plugin for docker provider 'default_5_2_0': no resource plugin 'docker-v5.2.0' found\n"
                "  in the workspace or on your $PATH")]


def events(*engine_events):
    return [EngineEvent.from_json({"sequence": 1, "timestamp": 1, **event}) for event in engine_events]


# --- drift, from the engine's events ------------------------------------------------------------


def test_no_changes_is_no_drift():
    assert drift_from_events(events(*NO_CHANGES)) == []


def test_an_update_names_the_property_that_differs():
    [drift] = drift_from_events(events(*UPDATED))
    assert (drift.op, drift.name, drift.properties) == ("update", "prometheus", ["memory"])
    assert drift.line() == "update   docker:index/container:Container prometheus: its memory limit changed"


def test_a_replacement_is_one_entry_per_resource_with_its_reason():
    drifts = {d.name: d for d in drift_from_events(events(*REPLACED))}
    assert set(drifts) == {"tempo", "grafana"} and {d.op for d in drifts.values()} == {"replace"}
    assert "a config file the container reads changed" in drifts["tempo"].line()
    assert "the image changed" in drifts["grafana"].line()


def test_a_create_and_a_delete():
    drifts = {d.name: d for d in drift_from_events(events(*CREATED_AND_DELETED))}
    assert drifts["alloy"].op == "create" and "removed outside Pulumi" in drifts["alloy"].line()
    assert drifts["old-dashboard-sidecar"].op == "delete"


def test_the_root_stack_is_never_drift_and_the_first_error_is_named():
    # The root stack's URN ends with the stack's name, not its type: it is known by its type.
    assert [d.name for d in drift_from_events(events(*FAILED))] == ["grafana"]
    assert first_error(events(*FAILED)) == (
        "could not load plugin for docker provider 'default_5_2_0': no resource plugin 'docker-v5.2.0' found")
    assert first_error(events(*UPDATED)) is None


# --- commands against the fake CLI --------------------------------------------------------------


class Cli:
    """A PATH with the fake `pulumi` (and optionally a fake `docker`), and the calls they record."""

    def __init__(self, tmp_path: Path, **spec):
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        self.log = tmp_path / "calls.jsonl"
        self.spec_path = tmp_path / "fake.json"
        self.spec = {"log": str(self.log), "stacks": ["alice"], "config": {}, "outputs": {},
                     "preview_events": NO_CHANGES, **spec}
        self.spec_path.write_text(json.dumps(self.spec))
        self._script("pulumi", f'exec {sys.executable} {ROOT / "tests" / "fake_pulumi.py"} "$@"')
        # PULUMI_HOME: where the plugins and the record of the last `pulumi install` are.
        self.pulumi_home = tmp_path / "pulumi-home"
        self.env = {**os.environ, "PATH": f"{self.bin}:{os.environ['PATH']}", "FAKE_PULUMI": str(self.spec_path),
                    "TMUX_TMPDIR": str(tmp_path), "PULUMI_HOME": str(self.pulumi_home)}
        for variable in ("PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE", "DOCKER_HOST"):
            self.env.pop(variable, None)

    def _script(self, name, body):
        path = self.bin / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)

    def fake_docker(self, tmp_path, volume_rm_exit=0, containers=(), started="", log=""):
        """A docker CLI whose engine holds `containers` (as `ps_line` writes them), each started at
        `started` (as `docker inspect` says it; none: it has never run), having logged `log` on stderr."""
        calls = tmp_path / "docker-calls"
        listing, log_file = tmp_path / "docker-ps", tmp_path / "docker-log"
        listing.write_text("".join(line + "\n" for line in containers))
        log_file.write_text(log)
        self._script("docker", f'echo "$@" >> {calls}\ncase "$1" in ps) cat {listing};; '
                               f'volume) exit {volume_rm_exit};; inspect) echo "{started}";; logs) cat {log_file} >&2;; esac')
        return calls

    def run(self, *args, timeout=60):
        return subprocess.run([sys.executable, "-m", "stack", *args], cwd=ROOT, env=self.env, capture_output=True,
                              text=True, timeout=timeout)

    def calls(self):
        return [json.loads(line) for line in self.log.read_text().splitlines()] if self.log.exists() else []

    def call(self, command):
        matches = [c for c in self.calls() if c["args"][:len(command)] == command]
        assert matches, f"no `pulumi {' '.join(command)}` among {[c['args'] for c in self.calls()]}"
        return matches[-1]


def test_drift_runs_a_refreshing_preview_that_expects_no_changes(tmp_path):
    cli = Cli(tmp_path)
    result = cli.run("drift", "--stack", "alice")
    assert result.returncode == 0, result.stderr
    assert "stack alice: no drift" in result.stdout
    preview = cli.call(["preview"])["args"]
    for flag in ("--refresh", "--expect-no-changes", "--event-log"):
        assert flag in preview
    assert preview[-2:] == ["--stack", "alice"]
    assert cli.call(["stack", "select"])["args"][:4] == ["stack", "select", "--stack", "alice"]
    assert all(call["passphrase"] == "" for call in cli.calls())


def test_drift_exits_1_and_names_each_difference(tmp_path):
    cli = Cli(tmp_path, preview_events=REPLACED, preview_exit=255)
    cli.fake_docker(tmp_path, containers=[ps_line("alice", "tempo"), ps_line("alice", "grafana")])
    result = cli.run("drift", "--stack", "alice")
    assert result.returncode == 1, result.stderr
    assert "replace  docker:index/container:Container tempo: a config file the container reads changed" in result.stdout
    report = json.loads(cli.run("drift", "--stack", "alice", "--json").stdout)
    assert {entry["op"] for entry in report["drift"]} == {"replace"}


def test_a_preview_that_failed_after_some_steps_cannot_tell_and_names_the_error(tmp_path):
    result = Cli(tmp_path, preview_events=FAILED, preview_exit=255).run("drift", "--stack", "alice")
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip() == ("drift: could not tell, the preview failed: could not load plugin for docker "
                                     "provider 'default_5_2_0': no resource plugin 'docker-v5.2.0' found")
    assert "drifted" not in result.stdout


def test_a_preview_that_failed_without_a_step_or_a_diagnostic_cannot_tell(tmp_path):
    result = Cli(tmp_path, preview_events=[], preview_exit=255).run("drift", "--stack", "alice")
    assert result.returncode == 2 and result.stderr.startswith("drift: could not tell, the preview failed: ")


def test_drift_of_a_stack_never_deployed_says_so(tmp_path):
    result = Cli(tmp_path, config=stack_config(tmp_path), deployed=False).run("drift", "--stack", "alice")
    assert result.returncode == 2
    assert result.stderr.strip() == "drift: stack alice has not been deployed yet: run up"


def test_down_of_a_stack_never_deployed_has_nothing_to_destroy(tmp_path):
    cli = Cli(tmp_path, config=stack_config(tmp_path), deployed=False)
    result = cli.run("down", "--stack", "alice")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "stack alice has nothing to destroy: it has not been deployed"
    assert not [c for c in cli.calls() if c["args"][0] == "destroy"]


def test_a_container_that_is_down_is_named_as_down_not_as_changed(tmp_path):
    # What a refresh of an exited container reads back: no ports (a replace) and must_run false
    # (an update), as terraform-provider-docker v4.5.0's resourceDockerContainerRead has it.
    down = [step("replace", "trace-stack-prometheus", keys=["ports"], diffs=["ports", "mustRun"]),
            step("delete-replaced", "trace-stack-prometheus", keys=["ports"]),
            step("create-replacement", "trace-stack-prometheus", keys=["ports"])]
    cli = Cli(tmp_path, config=stack_config(tmp_path), preview_events=down, preview_exit=255)
    docker_calls = cli.fake_docker(tmp_path, containers=[
        ps_line("alice", "prometheus", "Exited (137) 5 seconds ago"), ps_line("alice", "loki"),
        ps_line("bob", "prometheus", "Exited (0) 1 hour ago")])
    result = cli.run("drift", "--stack", "alice")
    assert result.returncode == 1, result.stderr
    assert "down     docker:index/container:Container trace-stack-prometheus: prometheus is down (exited, code 137)" \
        in result.stdout
    assert docker_calls.read_text().startswith("ps --all --no-trunc --filter label=trace-stack.stack")


def test_drift_of_a_stack_that_does_not_exist_exits_2(tmp_path):
    result = Cli(tmp_path).run("drift", "--stack", "nobody")
    assert result.returncode == 2
    assert "no stack named 'nobody'" in result.stderr


@pytest.fixture
def stand_ins():
    started = []

    def start(routes):
        started.append(StandIn(routes))
        return started[-1].url

    yield start
    for stand_in in started:
        stand_in.close()


@pytest.fixture
def healthy_outputs(stand_ins):
    return healthy_stack(stand_ins)


def ps_line(stack, service, status="Up 2 minutes", ports=(), mounts=""):
    """A container as `docker ps --format` prints it for preflight: stack and service labels, name,
    state, status, published ports and mounts."""
    state = "running" if status.startswith("Up") else status.split()[0].lower()
    published = ", ".join(f"127.0.0.1:{port}->{port}/tcp" for port in ports)
    return "\t".join((stack, service, f"trace-stack-{stack}-{service}", state, status, published, mounts))


def stack_config(tmp_path, **extra):
    log_dir = tmp_path / "logs"
    log_dir.mkdir(exist_ok=True)
    values = {"trace-stack:logDir": str(log_dir), "trace-stack:portOffset": str(PORT_OFFSET), **extra}
    return {key: {"value": value, "secret": False} for key, value in values.items()}


def test_up_selects_the_stack_deploys_checks_and_prints_the_urls(tmp_path, healthy_outputs):
    cli = Cli(tmp_path, config=stack_config(tmp_path), outputs=healthy_outputs)
    docker_calls = cli.fake_docker(tmp_path)
    result = cli.run("up", "--stack", "alice", "--timeout", "20")
    assert result.returncode == 0, result.stdout + result.stderr
    commands = [call["args"] for call in cli.calls() if call["args"] != ["version"]]
    assert commands[0][:4] == ["stack", "select", "--stack", "alice"]
    assert [c[0] for c in commands].index("install") < [c[0] for c in commands].index("up")
    up = cli.call(["up"])["args"]
    assert up[:3] == ["up", "--yes", "--skip-preview"] and up[-2:] == ["--stack", "alice"]
    # Refreshed first: what was stopped or removed outside Pulumi is put back.
    assert "--refresh" in up
    assert docker_calls.read_text().startswith("ps --all")
    assert all(call["passphrase"] == "" for call in cli.calls())
    lines = result.stdout.splitlines()
    assert any(line.startswith("grafana ") and " ready " in line for line in lines)
    assert f"  grafana_url            {healthy_outputs['grafana_url']}" in lines


def test_up_reads_the_collectors_version_from_its_running_process_log(tmp_path, stand_ins):
    """Not from Prometheus, which has no new process's metrics until at least 5 s after it starts
    itself (here it still holds an older process's)."""
    outputs = healthy_stack(stand_ins, versions={"otel-collector": "0.90.0"})
    cli = Cli(tmp_path, config=stack_config(tmp_path), outputs=outputs)
    started = "2026-12-05T17:57:52.600336651Z"
    docker_calls = cli.fake_docker(tmp_path, started=started, log=(
        "2026-12-05T17:57:52.607Z\tinfo\tservice@v0.91.0/telemetry.go:86\tSetting up own telemetry...\n"
        '2026-12-05T17:57:52.610Z\tinfo\tservice@v0.91.0/service.go:145\tStarting otelcol-contrib...\t'
        '{"Version": "0.91.0", "NumCPU": 2}\n'
        "2026-12-05T17:57:52.611Z\tinfo\textensions/extensions.go:34\tStarting extensions...\n"))
    result = cli.run("up", "--stack", "alice", "--timeout", "20")
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^otel-collector\s+ready .* 0\.91\.0$", result.stdout, re.M), result.stdout
    # From 10 s before the engine noted its start, which may come after the process's first lines.
    assert "logs --since 1796493462 trace-stack-alice-otel-collector" in docker_calls.read_text().splitlines()


def test_check_without_the_engines_word_asks_prometheus_for_the_collectors_version(tmp_path, stand_ins):
    outputs = healthy_stack(stand_ins, versions={"otel-collector": "0.90.0"})
    cli = Cli(tmp_path, config=stack_config(tmp_path), outputs=outputs)
    cli.fake_docker(tmp_path)  # the container has never started: the engine cannot say
    result = cli.run("check", "--stack", "alice", "--timeout", "20")
    assert result.returncode == 1
    assert "version drift: runs 0.90.0, the stack's image is otel/opentelemetry-collector-contrib:0.91.0" in result.stdout


def refreshed(name, kind="container:Container", gone=False):
    """The refresh step an `up --refresh` makes for a resource in the state; one removed outside
    Pulumi is read back as nothing (`new` null)."""
    event = step("refresh", name, kind)
    urn, resource_type = (event["resourcePreEvent"]["metadata"][key] for key in ("urn", "type"))
    state = {"urn": urn, "type": resource_type, "custom": True, "id": "abc", "inputs": {}, "outputs": {}}
    event["resourcePreEvent"]["metadata"].update(old=state, new=None if gone else state)
    return event


def test_up_puts_back_what_was_stopped_or_removed_outside_pulumi_and_names_it(tmp_path, healthy_outputs):
    up_events = [refreshed("trace-stack-tempo"), refreshed("trace-stack-grafana", gone=True),
                 refreshed("trace-stack-network", "network:Network", gone=True), refreshed("trace-stack-loki"),
                 step("replace", "trace-stack-tempo", keys=["ports"], diffs=["ports", "mustRun"]),
                 step("create", "trace-stack-grafana"), step("create", "trace-stack-network", "network:Network"),
                 step("replace", "trace-stack-loki", keys=["uploads"], diffs=["uploads"])]
    cli = Cli(tmp_path, config=stack_config(tmp_path), outputs=healthy_outputs, up_events=up_events)
    cli.fake_docker(tmp_path, containers=[ps_line("alice", "tempo", "Exited (137) 1 minute ago"),
                                          ps_line("alice", "loki")])
    result = cli.run("up", "--stack", "alice", "--timeout", "20")
    assert result.returncode == 0, result.stdout + result.stderr
    report = result.stdout[result.stdout.index("put back what changed outside Pulumi in stack alice:"):]
    # loki's replacement is the program's change (a config file), not a repair.
    assert report.splitlines()[1:4] == ["  tempo was down (exited, code 137): replaced", "  grafana was missing: created",
                                        "  network was missing: created"]


def test_up_says_where_its_time_went_and_skips_an_install_with_nothing_new(tmp_path, healthy_outputs):
    cli = Cli(tmp_path, config=stack_config(tmp_path), outputs=healthy_outputs)
    cli.fake_docker(tmp_path)
    plugin = cli.pulumi_home / "plugins" / "resource-docker-v5.2.0"  # as requirements.txt pins pulumi-docker
    plugin.mkdir(parents=True)

    def installs_and_phases():
        result = cli.run("up", "--stack", "alice", "--timeout", "20")
        assert result.returncode == 0, result.stdout + result.stderr
        report = result.stdout[result.stdout.index("\nup took "):].splitlines()[2:7]
        assert [line.split()[0] for line in report] == ["validate", "preflight", "install", "refresh/update", "check"]
        return len([call for call in cli.calls() if call["args"][:1] == ["install"]]), report[2]

    assert installs_and_phases()[0] == 1
    count, install = installs_and_phases()
    assert count == 1 and install.endswith("skipped: nothing it installs from changed since the last one")
    plugin.rmdir()  # the plugin gone: installed again
    assert installs_and_phases()[0] == 2


def test_up_creates_a_stack_that_does_not_exist(tmp_path, healthy_outputs):
    cli = Cli(tmp_path, stacks=[], config=stack_config(tmp_path), outputs=healthy_outputs)
    cli.fake_docker(tmp_path)
    assert cli.run("up", "--stack", "bob", "--timeout", "20").returncode == 0
    assert cli.call(["stack", "init"])["args"][:3] == ["stack", "init", "bob"]


def test_up_keeps_a_passphrase_the_user_set(tmp_path, healthy_outputs):
    cli = Cli(tmp_path, config=stack_config(tmp_path), outputs=healthy_outputs)
    cli.fake_docker(tmp_path)
    cli.env["PULUMI_CONFIG_PASSPHRASE"] = "hunter2"
    cli.run("up", "--stack", "alice", "--timeout", "20")
    assert {call["passphrase"] for call in cli.calls()} == {"hunter2"}


@pytest.mark.parametrize(("failing", "printed", "reported", "hint"), [
    ("install_stderr", install_fails_to_download("http://127.0.0.1:9"),
     "`pulumi install` failed for stack alice: installing packages: failed to download plugin: docker-5.2.0: "
     "404 HTTP error fetching plugin from http://127.0.0.1:9/pulumi-resource-docker-v5.2.0-linux-amd64.tar.gz",
     "The docker provider plugin could not be downloaded"),
    ("up_stderr", RUN_WITHOUT_LANGUAGE_HOST,
     "`pulumi up` failed for stack alice: failed to load language plugin python: no language plugin "
     "'pulumi-language-python' found in the workspace or on your $PATH",
     "This pulumi CLI has no Python language host"),
])
def test_up_names_the_step_that_failed_its_cause_and_what_to_do(tmp_path, failing, printed, reported, hint):
    cli = Cli(tmp_path, config=stack_config(tmp_path), **{failing: printed})
    cli.fake_docker(tmp_path)
    result = cli.run("up", "--stack", "alice")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[0] == f"up: {reported}"
    assert result.stderr.strip().splitlines()[1].startswith(hint)


def test_up_switches_versions_only_when_nothing_would_be_lost_or_the_loss_is_accepted(tmp_path, healthy_outputs):
    # Deployed before `up` recorded a profile: its data is the seed's.
    cli = Cli(tmp_path, config=stack_config(tmp_path, **{"trace-stack:versions": "current"}), outputs=healthy_outputs)
    cli.fake_docker(tmp_path)
    refused = cli.run("up", "--stack", "alice", "--timeout", "5")
    assert refused.returncode == 2
    assert refused.stderr.startswith("up: stack alice's data was written at versions seed; switched to current, "
                                      "it would lose:\n")
    losses = switch_losses("seed", "current")
    assert losses and refused.stderr.splitlines()[1:1 + len(losses)] == [f"  {loss}" for loss in losses]
    assert "--accept-data-loss" in refused.stderr and "pulumi config set versions seed" in refused.stderr
    assert not [call for call in cli.calls() if call["args"][0] in ("install", "up", "refresh")]

    cli.run("up", "--stack", "alice", "--timeout", "5", "--accept-data-loss")
    assert "--refresh" in cli.call(["up"])["args"]
    # Recorded at its new profile, the stack goes up again without the flag; back at the seed's,
    # it would lose what the current releases wrote.
    cli.run("up", "--stack", "alice", "--timeout", "5")
    assert len([call for call in cli.calls() if call["args"][0] == "up"]) == 2
    cli.spec["config"] = stack_config(tmp_path)
    cli.spec_path.write_text(json.dumps(cli.spec))
    back = cli.run("up", "--stack", "alice", "--timeout", "5")
    assert back.returncode == 2 and "written at versions current; switched to seed" in back.stderr


def test_up_refuses_a_bad_setting_before_deploying(tmp_path):
    cli = Cli(tmp_path, config=stack_config(tmp_path, **{"trace-stack:tempoRetention": "7d"}))
    cli.fake_docker(tmp_path)
    result = cli.run("up", "--stack", "alice")
    assert result.returncode == 2 and "trace-stack:tempoRetention = '7d'" in result.stderr
    assert not [c for c in cli.calls() if c["args"][0] == "up"]


def test_preflight_without_the_pulumi_cli(tmp_path):
    cli = Cli(tmp_path)
    (cli.bin / "pulumi").unlink()
    cli.env["PATH"] = f"{cli.bin}:/usr/bin:/bin"
    result = cli.run("up", "--stack", "alice")
    assert result.returncode == 2
    assert result.stderr.strip() == "up: the pulumi CLI is not installed: install it with: curl -fsSL https://get.pulumi.com | sh"


def test_preflight_with_the_docker_engine_unreachable(tmp_path):
    cli = Cli(tmp_path, config=stack_config(tmp_path))
    cli.env["DOCKER_HOST"] = f"tcp://127.0.0.1:{unused_port()}"  # the real docker CLI, nothing listening
    result = cli.run("up", "--stack", "alice")
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"up: the Docker engine at {cli.env['DOCKER_HOST']} is unreachable")
    assert not [c for c in cli.calls() if c["args"][0] == "up"]


def test_preflight_with_a_host_port_taken(tmp_path):
    with socket.socket() as listener:
        taken = unused_port()  # 10000.., which alloy's 12345 reaches with an offset in range
        listener.bind(("127.0.0.1", taken))
        listener.listen()
        offset = taken - 12345  # alloy's host port lands on the taken one
        cli = Cli(tmp_path, config=stack_config(tmp_path, **{"trace-stack:portOffset": str(offset)}))
        cli.fake_docker(tmp_path)
        result = cli.run("up", "--stack", "alice")
    assert result.returncode == 2
    assert f"alloy_http {taken}" in result.stderr and "portOffset" in result.stderr


@contextlib.contextmanager
def lingering(port):
    """`port` as Docker's proxy leaves it when its container goes while a client (a browser tab)
    is connected: the proxy listened with SO_REUSEADDR (Go sets it), closed its side first, and
    the connection lingers in TIME-WAIT. Nothing listens there."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen()
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = listener.accept()
        accepted.close()
        client.close()
    with socket.socket() as plain:  # what preflight once did: refused
        with pytest.raises(OSError):
            plain.bind(("127.0.0.1", port))
    assert f"{port:04X} " in "".join(line.split()[1] + " " for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
                                      if line.split()[3] == "06"), "no connection in TIME-WAIT"
    yield


def test_up_goes_through_when_its_ports_only_linger_in_time_wait(tmp_path, healthy_outputs):
    # Right after `down`, or after `docker rm -f` of one container: grafana's port lingers, and
    # alloy's is published by this stack's own running container.
    grafana_port, alloy_port = 33000 + PORT_OFFSET, 12345 + PORT_OFFSET
    with lingering(grafana_port), socket.socket() as alloy_proxy:
        alloy_proxy.bind(("127.0.0.1", alloy_port))
        alloy_proxy.listen()
        cli = Cli(tmp_path, config=stack_config(tmp_path), outputs=healthy_outputs)
        cli.fake_docker(tmp_path, containers=[ps_line("alice", "alloy", ports=[alloy_port])])
        result = cli.run("up", "--stack", "alice", "--timeout", "20")
    assert result.returncode == 0, result.stdout + result.stderr


def test_up_refuses_a_log_dir_another_stacks_alloy_reads(tmp_path):
    cli = Cli(tmp_path, config=stack_config(tmp_path))
    log_dir = tmp_path / "logs"
    cli.fake_docker(tmp_path, containers=[
        ps_line("dev", "alloy", mounts=f"{log_dir},trace-stack-dev-alloy-data"),
        ps_line("dev", "loki", mounts="trace-stack-dev-loki-data"),
        ps_line("carol", "alloy", "Exited (0) 2 days ago", mounts=f"{log_dir}/carol,trace-stack-carol-alloy-data")])
    result = cli.run("up", "--stack", "alice")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"up: logDir {log_dir} is already read by stack dev on this Docker engine: two stacks reading one logDir get "
        f"each other's app logs; give stack 'alice' its own (`pulumi config set logDir {tmp_path / 'alice'} "
        f"--stack alice`)")
    assert not [c for c in cli.calls() if c["args"][0] == "up"]


def test_preflight_with_log_dir_missing_offers_to_create_it(tmp_path, healthy_outputs):
    missing = tmp_path / "no" / "such" / "dir"
    cli = Cli(tmp_path, config=stack_config(tmp_path, **{"trace-stack:logDir": str(missing)}), outputs=healthy_outputs)
    cli.fake_docker(tmp_path)
    result = cli.run("up", "--stack", "alice")
    assert result.returncode == 2 and f"logDir {missing} does not exist" in result.stderr
    assert cli.run("up", "--stack", "alice", "--create-log-dir", "--timeout", "20").returncode == 0
    assert missing.is_dir()


def test_down_keeps_the_data_and_says_so(tmp_path):
    cli = Cli(tmp_path, config=stack_config(tmp_path))
    docker_calls = cli.fake_docker(tmp_path)
    result = cli.run("down", "--stack", "alice")
    assert result.returncode == 0, result.stderr
    assert cli.call(["destroy"])["args"][-2:] == ["--stack", "alice"]
    assert "kept the data volumes" in result.stdout and "trace-stack-alice-prometheus-data" in result.stdout
    assert not docker_calls.exists()


def test_down_delete_data_removes_the_volumes(tmp_path):
    cli = Cli(tmp_path, config=stack_config(tmp_path))
    docker_calls = cli.fake_docker(tmp_path)
    result = cli.run("down", "--stack", "alice", "--delete-data")
    assert result.returncode == 0, result.stderr
    # Every version profile's: Tempo 3 keeps its traces in a volume of its own.
    removed = [f"trace-stack-alice-{s}" for s in ("prometheus-data", "tempo-data", "tempo-data-3", "loki-data",
                                                  "otel-collector-data", "alloy-data", "grafana-data")]
    assert docker_calls.read_text().split() == ["volume", "rm"] + removed
    assert f"removed the data volumes: {', '.join(removed)}" in result.stdout


def test_down_delete_data_fails_when_docker_fails_without_a_word(tmp_path):
    cli = Cli(tmp_path, config=stack_config(tmp_path))
    cli.fake_docker(tmp_path, volume_rm_exit=1)
    result = cli.run("down", "--stack", "alice", "--delete-data")
    assert result.returncode == 1
    assert result.stderr.strip() == ("down: the containers are gone, but removing the data volumes failed: "
                                     "`docker volume rm` exited 1")


def test_check_asks_pulumi_for_the_outputs_without_a_passphrase_prompt(tmp_path, healthy_outputs):
    cli = Cli(tmp_path, outputs=healthy_outputs)
    result = cli.run("check", "--stack", "alice", "--timeout", "20")
    assert result.returncode == 0, result.stderr
    assert cli.call(["stack", "output"])["passphrase"] == ""


def test_check_asks_grafana_as_its_admin_when_anonymous_access_is_off(tmp_path):
    started = {}

    def start(routes):
        stand_in = StandIn(routes)
        started[stand_in.url] = stand_in
        return stand_in.url

    outputs = healthy_stack(start)
    config = stack_config(tmp_path, **{"trace-stack:grafanaAnonymousEnabled": "false"})
    config["trace-stack:grafanaAdminPassword"] = {"value": "s3cret", "secret": True}
    result = Cli(tmp_path, config=config, outputs=outputs).run("check", "--stack", "alice", "--timeout", "20")
    for stand_in in started.values():
        stand_in.close()
    assert result.returncode == 0, result.stdout + result.stderr
    asked = [headers for path, headers in started[outputs["grafana_url"]].seen if path.startswith("/api/datasources/")]
    assert len(asked) == 3
    assert {headers.get("Authorization") for headers in asked} == {"Basic " + base64.b64encode(b"admin:s3cret").decode()}
    assert "s3cret" not in result.stdout + result.stderr


def test_check_smoke_writes_its_line_where_the_stacks_alloy_reads(tmp_path, stand_ins):
    """Without --log-dir, the smoke line goes to the stack's own logDir, not the default one."""
    telemetry = Telemetry()
    outputs = healthy_stack(stand_ins, prometheus_url=prometheus_routes(telemetry), tempo_url=tempo_routes(telemetry),
                            loki_url=loki_routes(tmp_path / "logs", telemetry, PINO_LEVELS, DEFAULT_LABELS),
                            collector_health_url=collector_routes(telemetry))
    cli = Cli(tmp_path, config=stack_config(tmp_path), outputs={**outputs,
                                                                "otlp_http_endpoint": outputs["collector_health_url"]})
    result = cli.run("check", "--stack", "alice", "--smoke", "--timeout", "20")
    assert result.returncode == 0, result.stdout + result.stderr
    [line] = (tmp_path / "logs" / "trace-stack-smoke.log").read_text().splitlines()
    assert json.loads(line)["traceId"] in telemetry.trace_ids


# --- logs against a real tmux -------------------------------------------------------------------


@pytest.fixture
def tmux_session(tmp_path):
    env = {**os.environ, "TMUX_TMPDIR": str(tmp_path)}
    env.pop("TMUX", None)
    subprocess.run(["tmux", "new-session", "-d", "-s", "refly-api", "-x", "120", "-y", "20", "sh"], env=env, check=True)
    yield env
    subprocess.run(["tmux", "kill-server"], env=env)


def logs(tmp_path, env, *args):
    session = () if "--session" in args else ("--session", "refly-api")
    return subprocess.run([sys.executable, "-m", "stack", "logs", *args, *session, "--log-dir", str(tmp_path / "logs")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)


def pino_line(message):
    return json.dumps({"level": 30, "time": int(time.time() * 1000), "msg": message}, separators=(",", ":"))


def test_logs_attach_pipes_only_the_apps_json_lines_into_the_log_dir(tmp_path, tmux_session):
    result = logs(tmp_path, tmux_session, "attach")
    assert result.returncode == 0, result.stderr
    assert "pipe-pane attached" in result.stdout
    # An interactive bash: a prompt, bracketed-paste mode switches, the typed commands' echo, a
    # coloured line; only what the commands print as JSON is the app's.
    def type_in(*keys):
        subprocess.run(["tmux", "send-keys", "-t", "refly-api", *keys], env=tmux_session, check=True)

    type_in("exec bash --norc -i", "Enter")
    first, last = pino_line("hello"), pino_line("bye")
    type_in(f"echo '{first}'", "Enter")
    type_in("printf '\\033[31mnot json\\033[0m\\n'", "Enter")
    type_in(f"echo '{last}'", "Enter")
    log_file = tmp_path / "logs" / "api.log"
    wait_until("the last line printed in the pane in the log file",
               lambda: log_file.exists() and last in log_file.read_text())
    assert log_file.read_text() == f"{first}\n{last}\n"
    status = logs(tmp_path, tmux_session, "status").stdout
    assert "pipe-pane attached" in status and "bytes, last line" in status
    assert logs(tmp_path, tmux_session, "attach").returncode == 0  # twice is still one pipe

    assert "pipe-pane not attached" in logs(tmp_path, tmux_session, "detach").stdout


# Bytes a real tmux 3.3 pane running bash 5.2 sent to pipe-pane: typeahead echoed before the
# prompt, the prompt with bracketed-paste switches, a coloured line, a prompt before output.
PANE_BYTES = (b'echo \'{"level":30,"msg":"hi"}\'\r\n'
              b'\x1b[?2004hroot@vm:/tmp# echo \'{"level":30,"msg":"hi"}\'\r\n'
              b'\x1b[?2004l\r{"level":30,"msg":"hi"}\r\n'
              b'\x1b[?2004l\r\x1b[31mred\x1b[0m\r\n'
              b'\x1b]0;title\x07{"level":40,"msg":"from node"}\r\n'
              b'# {"level":50}\r\n'
              b'# ')


def test_the_pane_filter_keeps_each_json_object_a_line_shows_and_nothing_else():
    kept = [app_line(raw) for raw in PANE_BYTES.splitlines(keepends=True)]
    assert [line for line in kept if line is not None] == [
        b'{"level":30,"msg":"hi"}', b'{"level":40,"msg":"from node"}', b'{"level":50}']
    assert app_line(b"[1, 2]\r\n") is None and app_line(b'{"cut": \r\n') is None
    assert app_line(b'{"msg":"\xff"}\n') is None  # not UTF-8: no JSON


def test_logs_pipes_into_the_stacks_own_log_dir(tmp_path, tmux_session):
    cli = Cli(tmp_path, config=stack_config(tmp_path))
    result = subprocess.run([sys.executable, "-m", "stack", "logs", "attach", "--stack", "alice"], cwd=ROOT,
                            env={**cli.env, "TMUX_TMPDIR": tmux_session["TMUX_TMPDIR"]}, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    # The stack's appName is the session's name, its logDir where the pane goes.
    assert result.stdout.startswith("tmux session refly-api: pipe-pane attached")
    assert f"{tmp_path / 'logs' / 'api.log'}" in result.stdout


def test_logs_without_the_session_or_tmux(tmp_path, tmux_session):
    result = logs(tmp_path, tmux_session, "status", "--session", "other-app")
    assert result.returncode == 2 and "no tmux session named 'other-app'" in result.stderr
    no_tmux = {**tmux_session, "PATH": str(tmp_path)}
    result = logs(tmp_path, no_tmux, "attach")
    assert result.returncode == 2 and result.stderr.startswith("logs: tmux is not installed")


def test_every_command_has_a_one_line_help():
    result = subprocess.run([sys.executable, "-m", "stack", "--help"], cwd=ROOT, capture_output=True, text=True)
    for command in ("up", "check", "validate", "drift", "down", "logs"):
        assert any(line.strip().startswith(command + " ") for line in result.stdout.splitlines()), command


def test_the_commands_load_neither_pulumi_docker_nor_jinja():
    """The operator's commands take plain data from the program; only the program itself needs
    the docker provider's SDK and the template engine (and the dashboards' SDK)."""
    script = ("import runpy, sys\n"
              "sys.argv = ['stack', 'check', '--help']\n"
              "try:\n    runpy.run_module('stack', run_name='__main__')\n"
              "except SystemExit:\n    pass\n"
              "print(sorted({m.split('.')[0] for m in sys.modules}))")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    loaded = set(json.loads(result.stdout.strip().splitlines()[-1].replace("'", '"')))
    assert "usage: stack check" in result.stdout or "usage:" in result.stdout
    assert not loaded & {"pulumi_docker", "jinja2", "grafana_foundation_sdk"}, loaded


# --- validate: the stack file alone ---------------------------------------------------------------

BROKEN_STACK_FILE = """\
encryptionsalt: v1:abc
config:
  trace-stack:portOfset: 1000
  trace-stack:grafanaImage: Grafana/Grafana:12
  trace-stack:grafanaAnonymousRole: admin
  trace-stack:grafanaAdminPassword:
    secure: v1:AAAAAAAAAAAA
  docker:host: unix:///var/run/docker.sock
"""


def test_validate_reads_every_problem_of_a_stack_file_with_no_cli_and_no_docker(tmp_path):
    stack_file = tmp_path / "Pulumi.carol.yaml"
    stack_file.write_text(BROKEN_STACK_FILE)
    env = {**os.environ, "PATH": str(tmp_path)}  # neither pulumi nor docker
    result = subprocess.run([sys.executable, "-m", "stack", "validate", "--file", str(stack_file)], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"validate: {stack_file}: 3 problem(s):",
        "  trace-stack:portOfset is not a trace-stack setting: did you mean portOffset?",
        "  trace-stack:grafanaImage = 'Grafana/Grafana:12' is not allowed: image names are lower case: grafana/grafana:12",
        "  trace-stack:grafanaAnonymousRole = 'admin' is not allowed: roles are spelt Viewer, Editor, Admin: "
        "did you mean Admin?",
    ]


def test_validate_explains_what_stays_on_the_host_and_cannot_read_a_missing_file(tmp_path):
    stack_file = tmp_path / "Pulumi.dana.yaml"
    stack_file.write_text("config:\n  trace-stack:bindAddress: 0.0.0.0\n  trace-stack:grafanaAnonymousRole: Viewer\n"
                          "  trace-stack:grafanaAdminPassword:\n    secure: v1:AAAA\n")
    result = subprocess.run([sys.executable, "-m", "stack", "validate", "--file", str(stack_file)], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "stay on 127.0.0.1" in result.stdout and "exposeBackends" in result.stdout
    missing = subprocess.run([sys.executable, "-m", "stack", "validate", "--file", str(tmp_path / "nope.yaml")],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and missing.stderr.startswith("validate: cannot read")


def test_up_validates_the_stack_file_before_asking_pulumi_anything(tmp_path):
    stack = f"validate-{os.getpid()}-{time.monotonic_ns()}"
    stack_file = ROOT / f"Pulumi.{stack}.yaml"
    stack_file.write_text(BROKEN_STACK_FILE)
    try:
        cli = Cli(tmp_path)
        result = cli.run("up", "--stack", stack)
    finally:
        stack_file.unlink()
    assert result.returncode == 2
    assert "did you mean portOffset?" in result.stderr
    assert cli.calls() == []


def test_the_example_stack_files_instructions_work(tmp_path):
    example = (ROOT / "Pulumi.bob.yaml.example").read_text()
    assert "`./up --stack bob`" in example and "`venv/bin/python -m stack validate --stack bob`" in example
    (tmp_path / "Pulumi.bob.yaml").write_text(example)
    result = subprocess.run([sys.executable, "-m", "stack", "validate", "--file", str(tmp_path / "Pulumi.bob.yaml")],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
