"""Benchmark: what `python -m stack up` adds to `pulumi up` on a stack with nothing to change.

`up` runs against the fake `pulumi` of the tests, each of whose commands takes as long as the
real CLI 3.274.1 was measured to take on a deployed stack of this project (below), a docker CLI
that answers at once, and services that answer `check` at once. What `up` takes beyond the
`pulumi up --refresh` it runs is its own overhead: the Python start, validating the stack file,
preflight, the CLI's other calls, the check.

    venv/bin/python -m bench.up_overhead                 # 5 runs
    venv/bin/python -m bench.up_overhead --runs 10 --pulumi-up 3.9

Prints each run's phases and the ratio of `up` to `pulumi up --refresh` alone; exit 1 when it is
2 or more.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tests.standins import StandIn, healthy_stack
from tests.test_commands import Cli, stack_config

# The real CLI on a deployed stack of 21 resources, nothing to change (seconds; 2 cores, Docker 20.10).
MEASURED = {"up": 3.85, "stack": 0.12, "config": 0.12, "version": 0.11, "install": 0.6}
BUDGET = 2.0


def timed_up(cli: Cli) -> tuple[float, str]:
    started = time.monotonic()
    result = cli.run("up", "--stack", "alice", "--timeout", "20")
    took = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"up failed:\n{result.stdout}\n{result.stderr}")
    return took, result.stdout[result.stdout.index("up took"):].split("\n\nstack ")[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.up_overhead", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pulumi-up", type=float, default=MEASURED["up"],
                        help="seconds `pulumi up --refresh` takes alone (default: measured, %(default)s)")
    args = parser.parse_args(argv)
    started = []
    outputs = healthy_stack(lambda routes: (started.append(StandIn(routes)), started[-1].url)[1])
    times = []
    directory = tempfile.TemporaryDirectory()
    try:
        root = Path(directory.name)
        cli = Cli(root, config=stack_config(root), outputs=outputs, seconds={**MEASURED, "up": args.pulumi_up})
        cli.fake_docker(root)
        (cli.pulumi_home / "plugins" / "resource-docker-v5.2.0").mkdir(parents=True)
        timed_up(cli)  # the first up installs; the ones measured have nothing new to install
        for run in range(args.runs):
            took, phases = timed_up(cli)
            times.append(took)
            skipped = "install skipped" if re.search(r"install .*skipped", phases) else "install ran"
            print(f"run {run + 1}: {took:.2f}s ({skipped}); " + "; ".join(
                " ".join(line.split()[:2]) for line in phases.splitlines()[1:]))
    finally:
        directory.cleanup()
        for stand_in in started:
            stand_in.close()
    median = statistics.median(times)
    ratio = median / args.pulumi_up
    print(f"\nup: {median:.2f}s median of {args.runs}; pulumi up --refresh alone: {args.pulumi_up:.2f}s; "
          f"{ratio:.2f}x (budget {BUDGET:g}x)")
    return 0 if ratio < BUDGET else 1


if __name__ == "__main__":
    sys.exit(main())
