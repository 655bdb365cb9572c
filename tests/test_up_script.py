"""./up against a fake `pulumi` on PATH that records how it was called."""

import os
import subprocess
from pathlib import Path

from tests.program import ROOT

FAKE_PULUMI = """#!/usr/bin/env bash
printf '%s|PASSPHRASE=%s\\n' "$*" "${PULUMI_CONFIG_PASSPHRASE-unset}" >> "$CALLS"
"""


def run_up(tmp_path: Path, *args: str, env_extra=None, with_pulumi=True):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if with_pulumi:
        fake = bin_dir / "pulumi"
        fake.write_text(FAKE_PULUMI)
        fake.chmod(0o755)
    calls = tmp_path / "calls"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "CALLS": str(calls), "HOME": str(tmp_path), **(env_extra or {})}
    result = subprocess.run([str(ROOT / "up"), *args], capture_output=True, text=True, env=env)
    return result, calls.read_text().splitlines() if calls.exists() else []


def test_up_creates_or_selects_the_named_stack_and_deploys_it(tmp_path):
    result, calls = run_up(tmp_path, "alice")
    assert result.returncode == 0, result.stderr
    assert calls == [
        "install|PASSPHRASE=",
        "stack select --create alice|PASSPHRASE=",
        "up --yes --stack alice|PASSPHRASE=",
        "stack output --stack alice|PASSPHRASE=",
    ]


def test_up_names_the_stack_after_the_user_by_default(tmp_path):
    _, calls = run_up(tmp_path)
    user = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    assert f"stack select --create {user}|PASSPHRASE=" in calls


def test_up_keeps_a_passphrase_the_user_chose(tmp_path):
    _, calls = run_up(tmp_path, "bob", env_extra={"PULUMI_CONFIG_PASSPHRASE": "hunter2"})
    assert all(call.endswith("PASSPHRASE=hunter2") for call in calls)
    (tmp_path / "with-file").mkdir()
    _, calls = run_up(tmp_path / "with-file", "bob", env_extra={"PULUMI_CONFIG_PASSPHRASE_FILE": "/dev/null"})
    assert calls and all(call.endswith("PASSPHRASE=unset") for call in calls)


def test_up_without_the_cli_says_how_to_install_it(tmp_path):
    result, calls = run_up(tmp_path, "alice", with_pulumi=False)
    assert result.returncode == 2 and calls == []
    assert result.stderr.strip() == ("up: the pulumi CLI is not installed; install it with: "
                                     "curl -fsSL https://get.pulumi.com | sh")
    assert os.access(ROOT / "up", os.X_OK)
