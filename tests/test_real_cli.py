"""The commands against the real `pulumi` CLI 3.274.1, built from its Go module by
tools/build_services. Its Python language host and the docker provider plugin cannot be had on
these machines, so nothing deploys: these are the cases the real CLI reaches without them.

Every test keeps its state in its own temporary directory: the project is copied there (the CLI
writes Pulumi.<stack>.yaml beside Pulumi.yaml), PULUMI_BACKEND_URL overrides the project's
`file://~` (which the CLI resolves to the OS user's home, not $HOME), and PULUMI_HOME holds the
plugins. The real ~/.pulumi is never touched.
"""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.cli_outputs import (
    INSTALL_WITHOUT_LANGUAGE_HOST, RUN_WITHOUT_LANGUAGE_HOST, STACK_NOT_FOUND_EXIT, install_fails_to_download,
    stack_not_found,
)
from tests.program import ROOT
from tests.standins import StandIn, healthy_stack
from tests.tools import PORT_OFFSET, built
from tools.build_services import pulumi_cli, python_language_host

STACK_URN = "urn:pulumi:{stack}::trace-stack::pulumi:pulumi:Stack::trace-stack-{stack}"
SECRET = "4dabf18193072939515e22adb298388d"


@pytest.fixture(scope="module")
def pulumi_binary():
    return built(pulumi_cli)


class RealCli:
    """A copy of the project, the real CLI first on PATH (and a docker that answers), and state
    in temporary directories."""

    def __init__(self, tmp_path, binary):
        self.project = tmp_path / "project"
        shutil.copytree(ROOT, self.project, ignore=shutil.ignore_patterns(
            "venv", "venv.old", ".git", "__pycache__", "tests", "bench", "tools", "Pulumi.*.yaml"))
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        # The Docker engine's answer to preflight: it holds no container.
        docker = bin_dir / "docker"
        docker.write_text("#!/bin/sh\nexit 0\n")
        docker.chmod(0o755)
        for directory in ("home", "pulumi-home", "state", "logs"):
            (tmp_path / directory).mkdir()
        self.logs = tmp_path / "logs"
        self.env = {**os.environ, "PATH": f"{binary.parent}:{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path / "home"),
                    "PULUMI_HOME": str(tmp_path / "pulumi-home"), "PULUMI_BACKEND_URL": f"file://{tmp_path / 'state'}",
                    "PULUMI_SKIP_UPDATE_CHECK": "true"}
        for variable in ("PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE", "PULUMI_ACCESS_TOKEN"):
            self.env.pop(variable, None)

    def pulumi(self, *args, passphrase="", check=True):
        result = subprocess.run(["pulumi", *args], cwd=self.project, capture_output=True, text=True, timeout=120,
                                env={**self.env, "PULUMI_CONFIG_PASSPHRASE": passphrase})
        assert result.returncode == 0 or not check, result.stderr
        return result

    def command(self, *args, **env):
        return subprocess.run([sys.executable, "-m", "stack", *args], cwd=self.project, capture_output=True,
                              text=True, timeout=180, env={**self.env, **env})

    def python(self, code, **env):
        return subprocess.run([sys.executable, "-c", code], cwd=self.project, capture_output=True, text=True,
                              timeout=120, env={**self.env, **env})

    def new_stack(self, stack="dev", passphrase="", **settings):
        self.pulumi("stack", "init", stack, "--non-interactive", passphrase=passphrase)
        pairs = [argument for key, value in {**self.own_ports_and_logs(), **settings}.items()
                 for argument in ("--plaintext", f"{key}={value}")]
        self.pulumi("config", "set-all", "--stack", stack, *pairs, passphrase=passphrase)

    def own_ports_and_logs(self) -> dict:
        """Settings that keep a test's stack off every other test's host ports and log files."""
        return {"portOffset": PORT_OFFSET, "logDir": str(self.logs)}

    def deploy_outputs(self, stack, outputs, secret=()):
        """A deployment holding only the root stack with these outputs, imported as `pulumi up`
        would have left it (secrets in plain text for the import, encrypted by the CLI)."""
        exported = json.loads(self.pulumi("stack", "export", "--stack", stack).stdout)
        values = {name: {SECRET: "1b47061264138c4ac30d75fd1eb44270", "plaintext": json.dumps(url)}
                  if name in secret else url for name, url in outputs.items()}
        exported["deployment"]["resources"] = [{"urn": STACK_URN.format(stack=stack), "custom": False,
                                                "type": "pulumi:pulumi:Stack", "outputs": values}]
        path = self.project.parent / "deployment.json"
        path.write_text(json.dumps(exported))
        self.pulumi("stack", "import", "--file", str(path), "--stack", stack)


@pytest.fixture
def cli(tmp_path, pulumi_binary):
    return RealCli(tmp_path, pulumi_binary)


@pytest.fixture(scope="module")
def old_python_host():
    return built(python_language_host)


@pytest.fixture
def plugin_downloads_refused(tmp_path):
    """Where the CLI downloads the docker provider plugin from, pointed (its own override,
    PULUMI_PLUGIN_DOWNLOAD_URL_OVERRIDES) at a server that has nothing: it fails at the first try,
    as behind a proxy that refuses, where the real URL would take five."""
    (tmp_path / "nothing").mkdir()
    server = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory",
                               str(tmp_path / "nothing"), "0"], stdout=subprocess.PIPE, text=True)
    port = re.search(r"port (\d+)", server.stdout.readline())[1]
    yield f"http://127.0.0.1:{port}"
    server.terminate()
    server.wait()


def test_up_when_the_provider_plugin_cannot_be_downloaded(cli, old_python_host, plugin_downloads_refused):
    """With a Python language host (v3.68.0's: 3.274's cannot be had), `pulumi install` gets as far
    as the docker provider plugin, whose download fails."""
    # That host ignores Pulumi.yaml's virtualenv and runs the python first on PATH: the project's,
    # with requirements.txt installed, as ./up leaves venv/ (and records in venv/.requirements.txt).
    cli.env["PATH"] = f"{cli.env['PATH'].split(':', 1)[0]}:{old_python_host}:{ROOT / 'venv' / 'bin'}:" \
                      f"{cli.env['PATH'].split(':', 1)[1]}"
    (cli.project / "venv").mkdir()
    shutil.copyfile(cli.project / "requirements.txt", cli.project / "venv" / ".requirements.txt")
    cli.env["PULUMI_PLUGIN_DOWNLOAD_URL_OVERRIDES"] = \
        f"^github://api\\.github\\.com/pulumi/pulumi-docker$={plugin_downloads_refused}"
    cli.new_stack()
    install = cli.pulumi("install", "--no-dependencies", check=False)
    assert install.returncode == 1, install.stderr[-500:]
    assert install.stderr.endswith(install_fails_to_download(plugin_downloads_refused)), install.stderr[-500:]

    result = cli.command("up", "--stack", "dev")
    assert result.returncode == 1
    [failed, hint] = result.stderr.strip().splitlines()
    assert failed == ("up: `pulumi install` failed for stack dev: installing packages: failed to download plugin: "
                      f"docker-5.2.0: 404 HTTP error fetching plugin from {plugin_downloads_refused}/"
                      "pulumi-resource-docker-v5.2.0-linux-amd64.tar.gz")
    assert "`pulumi plugin install resource docker v5.2.0 --file " in hint


def test_up_creates_the_stack_then_selects_it_and_names_the_missing_language_host(cli):
    # The stack file comes first, as a user writes one: the stack itself does not exist yet.
    (cli.project / "Pulumi.dev.yaml").write_text(
        "config:\n" + "".join(f"  trace-stack:{key}: {value}\n" for key, value in cli.own_ports_and_logs().items()))
    for attempt in ("creates", "selects"):
        result = cli.command("up", "--stack", "dev")
        assert result.returncode == 1, (attempt, result.stdout, result.stderr)
        [failed, hint] = result.stderr.strip().splitlines()
        assert failed == "up: `pulumi install` failed for stack dev: " + INSTALL_WITHOUT_LANGUAGE_HOST.strip()[
            len("error: "):]
        assert hint.startswith("This pulumi CLI has no Python language host")
        stacks = json.loads(cli.pulumi("stack", "ls", "--json").stdout)
        assert [stack["name"] for stack in stacks] == ["dev"]


READ_SETTINGS = ("import json\n"
                 "from stack import lifecycle\n"
                 "settings, _ = lifecycle.stack_settings(lifecycle.open_stack('dev', create=False))\n"
                 "print(json.dumps([settings.grafana_admin_password_set, settings.bind_address, settings.port_offset,"
                 " settings.grafana_anonymous_role]))")


def test_settings_and_a_secret_read_back_under_the_empty_passphrase(cli):
    cli.new_stack(bindAddress="0.0.0.0", grafanaAnonymousRole="Viewer", portOffset=3000)
    cli.pulumi("config", "set", "--secret", "grafanaAdminPassword", "s3cret", "--stack", "dev")
    result = cli.python(READ_SETTINGS)
    assert result.returncode == 0, result.stderr
    # Off loopback the program refuses to run without a password: it was read, and as a secret.
    assert json.loads(result.stdout) == [True, "0.0.0.0", 3000, "Viewer"]


def test_a_password_set_in_plain_text_is_refused(cli):
    cli.new_stack()
    cli.pulumi("config", "set", "grafanaAdminPassword", "s3cret", "--stack", "dev")
    result = cli.command("up", "--stack", "dev")
    assert result.returncode == 2
    assert "grafanaAdminPassword is stored in plain text" in result.stderr and "s3cret" not in result.stderr


def test_a_users_own_passphrase_is_used_and_a_wrong_one_named(cli):
    cli.new_stack(passphrase="hunter2", bindAddress="0.0.0.0", grafanaAnonymousRole="Viewer")
    cli.pulumi("config", "set", "--secret", "grafanaAdminPassword", "s3cret", "--stack", "dev", passphrase="hunter2")
    result = cli.python(READ_SETTINGS, PULUMI_CONFIG_PASSPHRASE="hunter2")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0] is True
    # Without it the commands' empty default cannot decrypt: said, with what to do.
    result = cli.command("up", "--stack", "dev")
    assert result.returncode == 2
    [failed, hint] = result.stderr.strip().splitlines()
    assert failed == "up: cannot open stack dev: incorrect passphrase"
    assert hint.startswith("The stack's secrets were encrypted with another passphrase: set PULUMI_CONFIG_PASSPHRASE")


@pytest.fixture
def healthy_services():
    started = []
    yield healthy_stack(lambda routes: (started.append(StandIn(routes)), started[-1].url)[1])
    for stand_in in started:
        stand_in.close()


def test_check_reads_the_stacks_real_outputs_a_secret_one_too(cli, healthy_services):
    cli.new_stack()
    cli.deploy_outputs("dev", healthy_services, secret=("loki_url",))
    assert json.loads(cli.pulumi("stack", "output", "--json", "--stack", "dev").stdout)["loki_url"] == "[secret]"
    result = cli.command("check", "--stack", "dev", "--timeout", "20")
    assert result.returncode == 0, result.stdout + result.stderr
    loki = [line for line in result.stdout.splitlines() if line.startswith("loki ")]
    assert loki and " ready " in loki[0] and healthy_services["loki_url"] in loki[0]


def test_drift_and_down_of_a_stack_never_deployed(cli):
    cli.new_stack()
    drift = cli.command("drift", "--stack", "dev")
    assert drift.returncode == 2 and drift.stderr.strip() == "drift: stack dev has not been deployed yet: run up"
    down = cli.command("down", "--stack", "dev")
    assert down.returncode == 0, down.stderr
    assert down.stdout.strip() == "stack dev has nothing to destroy: it has not been deployed"


def test_drift_without_a_language_host_cannot_tell_and_says_why(cli, healthy_services):
    cli.new_stack()
    cli.deploy_outputs("dev", healthy_services)
    result = cli.command("drift", "--stack", "dev")
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip() == "drift: could not tell, the preview failed: " + RUN_WITHOUT_LANGUAGE_HOST.strip()[
        len("error: "):]
    assert "drifted" not in result.stdout


# --- what the fake CLI of tests/test_commands.py emulates, said by the real one -------------------


def test_the_real_cli_prints_what_the_fake_one_answers_with(cli):
    missing = cli.pulumi("stack", "select", "--stack", "nosuch", "--non-interactive", check=False)
    assert (missing.returncode, missing.stderr) == (STACK_NOT_FOUND_EXIT, stack_not_found("nosuch"))
    cli.new_stack()
    install = cli.pulumi("install", check=False)
    assert (install.returncode, install.stderr) == (1, INSTALL_WITHOUT_LANGUAGE_HOST)
    preview = cli.pulumi("preview", "--stack", "dev", check=False)
    assert (preview.returncode, preview.stderr) == (1, RUN_WITHOUT_LANGUAGE_HOST)
    # The JSON the fake prints: settings as text with their secrecy, outputs, a deployment that
    # holds resources only once deployed.
    config = json.loads(cli.pulumi("config", "--json", "--show-secrets", "--stack", "dev").stdout)
    assert config["trace-stack:portOffset"] == {"value": str(PORT_OFFSET), "secret": False}
    assert config["trace-stack:appEnv"] == {"value": "local", "secret": False}  # a default, from Pulumi.yaml
    assert json.loads(cli.pulumi("stack", "output", "--json", "--show-secrets", "--stack", "dev").stdout) == {}
    exported = json.loads(cli.pulumi("stack", "export", "--show-secrets", "--stack", "dev").stdout)
    assert exported["version"] == 3 and "resources" not in exported["deployment"]
