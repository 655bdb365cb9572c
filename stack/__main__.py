"""trace-stack's commands: `python -m stack check` (see --help)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Optional

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from .check import PROBES, REQUIRED_OUTPUTS, CheckOptions, Result, check
from .config import StackConfig
from .outputs import OutputsError, read_outputs
from .smoke import REQUIRED_OUTPUTS as SMOKE_OUTPUTS
from .smoke import Hop, HopFailed, follow, send_telemetry, write_log_line

EXIT_OK, EXIT_FAILED, EXIT_CANNOT_TELL = 0, 1, 2


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack", description="trace-stack's commands.")
    commands = parser.add_subparsers(dest="command", required=True)
    check_parser = commands.add_parser(
        "check", help="prove a deployed stack is ready: every service's readiness endpoint, probed at once",
        description="Probe every service's readiness endpoint at once, waiting for those still starting. "
                    "Exit 0 when all are ready, 1 when one is not, 2 when the stack's outputs cannot be had.")
    source = check_parser.add_mutually_exclusive_group()
    source.add_argument("--outputs", metavar="FILE", help="the stack's outputs as `pulumi stack output --json` prints them")
    source.add_argument("--stack", metavar="NAME", help="ask `pulumi stack output` for this stack (default: the current one)")
    check_parser.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS",
                              help="how long to wait for services still starting (default 120)")
    check_parser.add_argument("--down-after", type=float, default=5.0, metavar="SECONDS",
                              help="report a service down once its port has refused connections this long (default 5)")
    check_parser.add_argument("--json", action="store_true", help="print the results as JSON")
    check_parser.add_argument("--smoke", action="store_true",
                              help="then send a trace, metrics and a log line and wait for each to arrive")
    check_parser.add_argument("--log-dir", default=StackConfig(stack="").log_dir,
                              help="the stack's logDir, where --smoke appends its log line (default %(default)s)")
    args = parser.parse_args(argv)
    return run_check(args)


def run_check(args: argparse.Namespace) -> int:
    out = Console(highlight=False, soft_wrap=True)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    required = REQUIRED_OUTPUTS + (SMOKE_OUTPUTS if args.smoke else ())
    try:
        outputs = read_outputs(tuple(dict.fromkeys(required)), outputs_file=args.outputs, stack=args.stack)
    except OutputsError as error:
        err.print(f"check: {error}")
        return EXIT_CANNOT_TELL

    results = _probe_with_progress(outputs, CheckOptions(timeout=args.timeout, down_after=args.down_after), err)
    report: dict = {"services": [vars(result) for result in results]}
    ready = all(result.ready for result in results)
    if not args.json:
        for result in results:
            out.print(result.line())
        if not ready:
            failed = ", ".join(result.service for result in results if not result.ready)
            err.print(f"check: not ready: {failed}")

    if ready and args.smoke:
        hops = _smoke(outputs, args, err)
        report["hops"] = [vars(hop) for hop in hops]
        if not args.json:
            for hop in hops:
                out.print(hop.line())
        missing = [hop.name for hop in hops if not hop.arrived]
        if missing:
            ready = False
            if not args.json:
                err.print(f"check: never arrived: {', '.join(missing)}")
    if args.json:
        out.print_json(json.dumps({**report, "ok": ready}))
    return EXIT_OK if ready else EXIT_FAILED


def _probe_with_progress(outputs: dict[str, str], options: CheckOptions, console: Console) -> list[Result]:
    # A spinner per service while waiting, on a terminal only; gone once the results print.
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as progress:
        tasks = {probe.service: progress.add_task(f"{probe.service}: waiting", total=1) for probe in PROBES}

        def show(result: Result) -> None:
            state = "ready" if result.ready else result.reason or "waiting"
            progress.update(tasks[result.service], description=f"{result.service}: {state}",
                            completed=1 if result.ready else 0)

        options.on_attempt = show
        return asyncio.run(check(outputs, options))


def _smoke(outputs: dict[str, str], args: argparse.Namespace, console: Console) -> list[Hop]:
    sent_at = time.monotonic()
    try:
        with console.status("sending a trace and metrics to the collector", spinner="dots"):
            trace_id = send_telemetry(outputs["otlp_http_endpoint"], timeout=min(args.timeout, 10.0))
    except HopFailed as failed:
        return [Hop(failed.hop, False, time.monotonic() - sent_at, str(failed))]
    hops = [Hop("collector accepted the telemetry", True, time.monotonic() - sent_at, f"trace id {trace_id}")]
    try:
        path = write_log_line(args.log_dir, trace_id)
        hops.append(Hop("log line written", True, time.monotonic() - sent_at, str(path)))
    except OSError as error:
        hops.append(Hop("log line written", False, time.monotonic() - sent_at,
                        f"cannot append to {args.log_dir}: {error.strerror} (is --log-dir the stack's logDir?)"))
    with console.status(f"following trace {trace_id} through Tempo, Prometheus and Loki", spinner="dots"):
        hops += asyncio.run(follow(outputs, trace_id, sent_at, args.timeout))
    return hops


if __name__ == "__main__":
    sys.exit(main())
