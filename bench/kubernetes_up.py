"""Benchmark: `up` of a fresh stack on Kubernetes to all-ready, then `check --smoke`, on the cluster
of the current kubeconfig context (or --context).

    venv/bin/python -m bench.kubernetes_up                          # a new stack, then it is removed
    venv/bin/python -m bench.kubernetes_up --set prometheusImage=registry.local/prom/prometheus:v2.48.0

A stack named bench-<time> is made with platform kubernetes and the given settings, brought up
with `python -m stack up` (its phases as it prints them), checked with `check --smoke`, and removed
with `down --delete-data`. Prints each figure; exit 1 when a step fails.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time

from stack.pulumi_cli import PROJECT_DIR, pulumi_env


def _run(argv: list[str], timeout: float = 600) -> tuple[float, subprocess.CompletedProcess]:
    started = time.monotonic()
    result = subprocess.run(argv, cwd=PROJECT_DIR, capture_output=True, text=True, timeout=timeout, env=pulumi_env())
    return time.monotonic() - started, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.kubernetes_up", description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a setting of the stack")
    parser.add_argument("--context", help="the kubeconfig context (default: its current one)")
    parser.add_argument("--keep", action="store_true", help="leave the stack up")
    args = parser.parse_args(argv)
    stack = f"bench-{int(time.time())}"
    settings = {"platform": "kubernetes", **({"kubeContext": args.context} if args.context else {}),
                **dict(item.split("=", 1) for item in args.set)}
    _run(["pulumi", "stack", "init", stack, "--non-interactive"])
    pairs = [part for key, value in settings.items() for part in ("--plaintext", f"{key}={value}")]
    _run(["pulumi", "config", "set-all", "--stack", stack, *pairs])
    failed = False
    try:
        took, up = _run([sys.executable, "-m", "stack", "up", "--stack", stack])
        print(f"up of a fresh stack to all-ready: {took:.1f}s (exit {up.returncode})")
        print("\n".join(line for line in up.stdout.splitlines() if re.match(r"\s+\S+\s+\d+\.\d+s", line)))
        took, smoke = _run([sys.executable, "-m", "stack", "check", "--stack", stack, "--smoke"])
        print(f"check --smoke: {took:.1f}s (exit {smoke.returncode})")
        print("\n".join(line for line in smoke.stdout.splitlines() if "arrived" in line or "MISSING" in line))
        failed = up.returncode != 0 or smoke.returncode != 0
        if failed:
            print(up.stdout[-3000:], up.stderr[-3000:], smoke.stdout[-3000:], smoke.stderr[-3000:], sep="\n")
    finally:
        if not args.keep:
            took, down = _run([sys.executable, "-m", "stack", "down", "--stack", stack, "--delete-data"])
            print(f"down --delete-data: {took:.1f}s (exit {down.returncode})")
            _run(["pulumi", "stack", "rm", stack, "--yes", "--force"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
