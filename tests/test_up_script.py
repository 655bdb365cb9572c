"""./up: the README's one command to bring a stack up is `python -m stack up` in the project's venv."""

import os
import subprocess

from tests.program import ROOT


def test_up_runs_the_up_command_with_its_arguments():
    result = subprocess.run([str(ROOT / "up"), "--help"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m stack up")


def test_up_without_the_pulumi_cli_says_how_to_install_it(tmp_path):
    env = {**os.environ, "PATH": "/usr/bin:/bin"}
    result = subprocess.run([str(ROOT / "up"), "--stack", "alice"], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip() == "up: the pulumi CLI is not installed: install it with: curl -fsSL https://get.pulumi.com | sh"
