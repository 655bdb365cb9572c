"""trace-stack's commands: up, check, validate, drift, down, logs (`python -m stack --help`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import sys
import time
from functools import partial
from pathlib import Path
from typing import Iterator, Optional

import httpx
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from program.settings import DEFAULTS, ConfigError, pinned_images, settings_notes

from . import logs
from .check import (
    PROBES, REQUIRED_OUTPUTS, CheckOptions, Result, check, collector_losses, grafana_view, images_by_setting,
)
from .outputs import OutputsError, read_outputs
from .platforms import PreflightError, platform_of
from .pulumi_cli import PulumiMissing, stack_file
from .validate import StackFileUnreadable, validate_stack_file

EXIT_OK, EXIT_FAILED, EXIT_CANNOT_TELL = 0, 1, 2


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack", description="trace-stack's commands.")
    commands = parser.add_subparsers(dest="command", required=True)
    own_stack = getpass.getuser()

    up_parser = commands.add_parser("up", help="bring your stack up, check it, and print its URLs",
                                    description="Create or select the stack, check what would stop it, deploy it "
                                                "with `pulumi up`, then check every service is ready.")
    up_parser.add_argument("--stack", default=own_stack,
                           help="the stack (default: your login name, %(default)s)")
    up_parser.add_argument("--create-log-dir", action="store_true", help="create logDir if it is missing, without asking")
    up_parser.add_argument("--timeout", type=float, default=180.0, metavar="SECONDS",
                           help="how long the post-deploy check waits for services (default 180)")
    up_parser.add_argument("--accept-data-loss", action="store_true",
                           help="switch the stack to another `versions` even where the new releases cannot read "
                                "its data (up names what would be lost, and stops, without it)")

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
    check_parser.add_argument("--log-dir", help="where --smoke appends its log line (default: the stack's logDir)")

    validate_parser = commands.add_parser(
        "validate", help="check a stack's settings from its stack file, with no pulumi CLI and no Docker",
        description="Read Pulumi.<stack>.yaml (encrypted values stay encrypted) and check every setting as the "
                    "program would. Exit 0: valid, 1: problems (all listed), 2: the file cannot be read.")
    target = validate_parser.add_mutually_exclusive_group()
    target.add_argument("--stack", default=own_stack, help="the stack, whose file is Pulumi.<stack>.yaml (default %(default)s)")
    target.add_argument("--file", metavar="PATH", help="a stack file elsewhere")

    drift_parser = commands.add_parser(
        "drift", help="show how what runs (containers, workloads) differs from the program",
        description="Refresh the stack from the Docker engine or cluster and preview it against the program "
                    "(pulumi preview --refresh --expect-no-changes --json). Exit 0: no drift, 1: drift, 2: could not tell.")
    drift_parser.add_argument("--stack", default=own_stack, help="the stack (default %(default)s)")
    drift_parser.add_argument("--json", action="store_true", help="print the differences as JSON")

    down_parser = commands.add_parser("down", help="remove your stack; its data stays",
                                      description="Destroy the stack's containers and network (Docker), or its "
                                                  "workloads, services and configs (Kubernetes). Its data volumes "
                                                  "(claims) are kept unless --delete-data is given.")
    down_parser.add_argument("--stack", default=own_stack, help="the stack (default %(default)s)")
    down_parser.add_argument("--delete-data", action="store_true",
                             help="remove the data volumes too (on Kubernetes, the claims and the namespace)")

    logs_parser = commands.add_parser("logs", help="pipe the app's tmux pane into logDir for Alloy (attach, detach, status)",
                                      description="The seed's tmux pipe-pane recipe: the app's output appended to "
                                                  "logDir/api.log, which Alloy tails.")
    logs_parser.add_argument("action", choices=("attach", "detach", "status"))
    logs_parser.add_argument("--session", help="the app's tmux session (default: the stack's appName)")
    logs_parser.add_argument("--stack", default=own_stack, help="the stack whose logDir Alloy reads (default %(default)s)")
    logs_parser.add_argument("--log-dir", help="the directory to pipe into (default: the stack's logDir)")

    args = parser.parse_args(argv)
    return {"up": run_up, "check": run_check, "validate": run_validate, "drift": run_drift, "down": run_down,
            "logs": run_logs}[args.command](args)


def run_check(args: argparse.Namespace) -> int:
    out, err = _consoles()
    required = REQUIRED_OUTPUTS
    if args.smoke:
        from .smoke import REQUIRED_OUTPUTS as SMOKE_OUTPUTS
        required += SMOKE_OUTPUTS
    try:
        outputs = read_outputs(tuple(dict.fromkeys(required)), outputs_file=args.outputs, stack=args.stack)
        if args.outputs:
            expected = _pinned_defaults()
        else:
            settings, password = stack_settings_of(args.stack, "--outputs FILE")
            expected = _expected(settings, password)
            _reach(settings, err)
    except (OutputsError, SettingsUnknown, PreflightError) as error:
        err.print(f"check: {error}")
        return EXIT_CANNOT_TELL
    return _check_outputs(outputs, args, out, err, expected)


def _reach(settings, console: Console) -> None:
    """The stack's URLs answering on this machine (on Kubernetes, its port-forwards open)."""
    with console.status(f"opening the stack's ports on this machine ({settings.platform})", spinner="dots"):
        platform_of(settings).reach(settings)


def _pinned_defaults() -> CheckOptions:
    """What a stack with the default settings runs: the pinned images, anonymous Grafana."""
    return CheckOptions(images=images_by_setting(pinned_images(DEFAULTS["versions"])))


def _expected(settings, password: Optional[str]) -> CheckOptions:
    anonymous = settings.grafana_anonymous_enabled
    return CheckOptions(images=images_by_setting(settings.images),
                        versions=settings.versions, process_log=partial(platform_of(settings).process_log, settings),
                        grafana_auth=None if anonymous else (settings.grafana_admin_user, password or "admin"))


def _consoles() -> tuple[Console, Console]:
    # No markup: a message holding square brackets ("[secret]", a URL) is printed as it is.
    return (Console(highlight=False, soft_wrap=True, markup=False),
            Console(stderr=True, highlight=False, soft_wrap=True, markup=False))


def _check_outputs(outputs: dict[str, str], args: argparse.Namespace, out: Console, err: Console,
                   options: CheckOptions) -> int:
    options.timeout, options.down_after = args.timeout, getattr(args, "down_after", 5.0)
    results = _probe_with_progress(outputs, options, err)
    report: dict = {"services": [vars(result) for result in results]}
    ready = all(result.ok for result in results)
    as_json = getattr(args, "json", False)
    if not as_json:
        for result in results:
            out.print(result.line())
        if not all(result.ready for result in results):
            failed = ", ".join(result.service for result in results if not result.ready)
            err.print(f"check: not ready: {failed}")
        drifted = [result.service for result in results if result.version_drift]
        if drifted:
            err.print(f"check: version drift: {', '.join(drifted)}")
    if all(result.ready for result in results):
        views = asyncio.run(grafana_view(outputs["grafana_url"], options.grafana_auth))
        report["grafana"] = [vars(view) for view in views]
        if not as_json:
            for view in views:
                out.print(view.line())
        ready = ready and all(view.ok for view in views)
    prometheus_ready = any(result.ready for result in results if result.service == "prometheus")
    if prometheus_ready:
        report["collector_losses"] = losses = _collector_losses(outputs["prometheus_url"], err)
        if losses and not as_json:
            err.print("check: the collector has lost data since it started: " + "; ".join(losses))

    if ready and getattr(args, "smoke", False):
        hops = _smoke(outputs, args, err)
        report["hops"] = [vars(hop) for hop in hops]
        if not as_json:
            for hop in hops:
                out.print(hop.line())
        missing = [hop.name for hop in hops if not hop.arrived]
        if missing:
            ready = False
            if not as_json:
                err.print(f"check: never arrived: {', '.join(missing)}")
    if as_json:
        out.print_json(json.dumps({**report, "ok": ready}))
    return EXIT_OK if ready else EXIT_FAILED


def _collector_losses(prometheus_url: str, err: Console) -> list[str]:
    try:
        return asyncio.run(collector_losses(prometheus_url))
    except (httpx.HTTPError, ValueError) as error:
        err.print(f"check: could not ask Prometheus for the collector's losses: {error}")
        return []


def run_validate(args: argparse.Namespace) -> int:
    out, err = _consoles()
    if args.file:
        path = Path(args.file)
        return _validate(path, path.name.removeprefix("Pulumi.").removesuffix(".yaml"), out, err)
    return _validate(stack_file(args.stack), args.stack, out, err)


def _validate(path: Path, stack: str, out: Console, err: Console) -> int:
    try:
        settings, stored = validate_stack_file(path, stack)
    except StackFileUnreadable as error:
        err.print(f"validate: {error}")
        return EXIT_CANNOT_TELL
    except ConfigError as error:
        err.print(f"validate: {path}: {len(error.problems)} problem(s):")
        for problem in error.problems:
            err.print(f"  {problem}")
        return EXIT_FAILED
    out.print(f"{path}: the settings are valid")
    for note in settings_notes(settings, stored):
        out.print(f"note: {note}")
    return EXIT_OK


class Phases:
    """Where `up`'s time went: each phase's seconds, and what it did not need to do."""

    def __init__(self):
        self.done: list[tuple[str, float, str]] = []
        self.started = time.monotonic()

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[list[str]]:
        """Times the block; a note appended to the list it yields is said beside the time."""
        started, notes = time.monotonic(), []
        try:
            yield notes
        finally:
            self.done.append((name, time.monotonic() - started, "; ".join(notes)))

    def report(self, console: Console) -> None:
        console.print(f"\nup took {time.monotonic() - self.started:.1f}s:")
        for name, seconds, note in self.done:
            console.print(f"  {name:<15} {seconds:5.1f}s" + (f"  {note}" if note else ""))


def run_up(args: argparse.Namespace) -> int:
    out, err = _consoles()
    phases = Phases()
    outputs: dict[str, str] = {}
    try:
        return _up(args, phases, outputs, out, err)
    finally:
        phases.report(out)
        if outputs:
            out.print(f"\nstack {args.stack}:")
            for name, url in outputs.items():
                out.print(f"  {name:<22} {url}")


def _up(args: argparse.Namespace, phases: Phases, outputs: dict[str, str], out: Console, err: Console) -> int:
    """`up`'s steps, each in its phase; the stack's outputs go into `outputs`."""
    from pulumi import automation as auto

    from . import lifecycle

    with phases("validate"):
        # The stack file first, before the CLI and Docker are asked anything (a new stack has none).
        if stack_file(args.stack).exists() and _validate(stack_file(args.stack), args.stack, out, err) != EXIT_OK:
            return EXIT_CANNOT_TELL

    def ask(question: str) -> bool:
        if args.create_log_dir:
            return True
        return sys.stdin.isatty() and input(f"{question} [y/N] ").strip().lower() in ("y", "yes")

    try:
        with phases("preflight"):
            stack = lifecycle.open_stack(args.stack, create=True)
            settings, password = lifecycle.stack_settings(stack)
            written, losses = lifecycle.versions_switch_losses(stack, settings)
            if losses and not args.accept_data_loss:
                err.print(f"up: stack {args.stack}'s data was written at versions {written}; switched to "
                          f"{settings.versions}, it would lose:")
                for loss in losses:
                    err.print(f"  {loss}")
                err.print(f"Nothing was changed. To switch anyway: python -m stack up --stack {args.stack} "
                          f"--accept-data-loss; to keep it: pulumi config set versions {written}")
                return EXIT_CANNOT_TELL
            platform = platform_of(settings)
            down_before = platform.preflight(settings, ask)
    except (PreflightError, PulumiMissing, ConfigError) as error:
        err.print(f"up: {error}")
        return EXIT_CANNOT_TELL
    except auto.CommandError as error:
        cause = lifecycle.failure_cause(error)
        err.print(f"up: cannot open stack {args.stack}: {cause}")
        if lifecycle.hint(cause):
            err.print(lifecycle.hint(cause))
        return EXIT_CANNOT_TELL
    try:
        with phases("install") as notes:
            if not lifecycle.install(stack, settings, on_output=lambda line: out.print(line)):
                notes.append("skipped: nothing it installs from changed since the last one")
        with phases("refresh/update"):
            deployed, repaired = lifecycle.up(stack, settings, down_before, on_output=lambda line: out.print(line))
            outputs.update(deployed)
    except lifecycle.StepFailed as failed:
        err.print(f"up: `{failed.step}` failed for stack {args.stack}: {failed.cause}")
        if failed.hint:
            err.print(failed.hint)
        return EXIT_FAILED

    if repaired:
        out.print(f"\nput back what changed outside Pulumi in stack {args.stack}:")
        for phrase in repaired:
            out.print(f"  {phrase}")
    with phases("check"):
        try:
            _reach(settings, err)
        except PreflightError as error:
            err.print(f"up: {error}")
            return EXIT_FAILED
        return _check_outputs(outputs, args, out, err, _expected(settings, password))


def run_drift(args: argparse.Namespace) -> int:
    from pulumi import automation as auto

    from . import lifecycle

    out, err = _consoles()
    try:
        stack = lifecycle.open_stack(args.stack, create=False)
        settings, _ = lifecycle.stack_settings(stack)
        with err.status(f"refreshing stack {args.stack} from the engine and previewing it", spinner="dots"):
            drifted = lifecycle.drift(stack, settings)
    except (PulumiMissing, PreflightError, ConfigError) as error:
        err.print(f"drift: {error}")
        return EXIT_CANNOT_TELL
    except lifecycle.NotDeployed:
        err.print(f"drift: stack {args.stack} has not been deployed yet: run up")
        return EXIT_CANNOT_TELL
    except auto.StackNotFoundError:
        err.print(f"drift: no stack named {args.stack!r} (bring it up first: python -m stack up --stack {args.stack})")
        return EXIT_CANNOT_TELL
    except lifecycle.DriftUnknown as error:
        err.print(f"drift: could not tell, the preview failed: {error}")
        return EXIT_CANNOT_TELL
    if args.json:
        out.print_json(json.dumps({"stack": args.stack, "drift": [
            {"urn": d.urn, "type": d.type, "op": d.op, "properties": d.properties, "summary": d.line()}
            for d in drifted]}))
    elif drifted:
        out.print(f"stack {args.stack} has drifted from the program:")
        for resource in drifted:
            out.print(f"  {resource.line()}")
        out.print("`python -m stack up` puts it back.")
    else:
        running = "containers" if settings.platform == "docker" else "workloads"
        out.print(f"stack {args.stack}: no drift; the running {running} match the program")
    return EXIT_FAILED if drifted else EXIT_OK


def run_down(args: argparse.Namespace) -> int:
    from pulumi import automation as auto

    from . import lifecycle

    out, err = _consoles()
    try:
        stack = lifecycle.open_stack(args.stack, create=False)
        settings, _ = lifecycle.stack_settings(stack)
        volumes, failure = lifecycle.down(stack, settings, args.delete_data,
                                          on_output=lambda line: out.print(line))
    except (PreflightError, PulumiMissing, ConfigError) as error:
        err.print(f"down: {error}")
        return EXIT_CANNOT_TELL
    except lifecycle.NotDeployed:
        out.print(f"stack {args.stack} has nothing to destroy: it has not been deployed")
        return EXIT_OK
    except auto.StackNotFoundError:
        err.print(f"down: no stack named {args.stack!r}")
        return EXIT_CANNOT_TELL
    except auto.CommandError as error:
        err.print(f"down: `pulumi destroy` failed for stack {args.stack}: {lifecycle.failure_cause(error)}")
        return EXIT_FAILED
    if failure:
        err.print(f"down: the containers are gone, but removing the data volumes failed: {failure}")
        return EXIT_FAILED
    if args.delete_data:
        out.print(f"removed the data volumes: {', '.join(volumes)}")
    else:
        out.print(f"kept the data volumes (remove them with `down --delete-data`): {', '.join(volumes)}")
    return EXIT_OK


def run_logs(args: argparse.Namespace) -> int:
    out, err = _consoles()
    action = {"attach": logs.attach, "detach": logs.detach, "status": logs.status}[args.action]
    try:
        settings, _ = (None, None) if args.log_dir and args.session else \
            stack_settings_of(args.stack, "--log-dir and --session")
        session = args.session or settings.app_name
        sink = logs.FileSink(Path(args.log_dir) / logs.LOG_FILE) if args.log_dir else platform_of(settings).log_sink(settings)
        out.print(action(session, sink).line())
    except (logs.LogsError, SettingsUnknown) as error:
        err.print(f"logs: {error}")
        return EXIT_CANNOT_TELL
    return EXIT_OK


class SettingsUnknown(Exception):
    pass


def stack_settings_of(stack_name: Optional[str], instead: str):
    """The stack's settings (its logDir, its appName, its images) and Grafana password, through
    the pulumi CLI; `instead` names the options that make them unneeded."""
    from pulumi import automation as auto

    from . import lifecycle

    try:
        name = stack_name or lifecycle.current_stack_name()
        if name is None:
            raise SettingsUnknown(f"no stack is selected: name one with --stack, or give {instead}")
        return lifecycle.stack_settings(lifecycle.open_stack(name, create=False))
    except (PulumiMissing, ConfigError, auto.StackNotFoundError, auto.CommandError) as error:
        reason = lifecycle.failure_cause(error) if isinstance(error, auto.CommandError) else str(error).splitlines()[0]
        raise SettingsUnknown(f"cannot read the stack's settings ({reason}): give {instead}") from None


def _probe_with_progress(outputs: dict[str, str], options: CheckOptions, console: Console) -> list[Result]:
    # A spinner per service while waiting, on a terminal only; gone once the results print.
    with Progress(SpinnerColumn(), TextColumn("{task.description}", markup=False), TimeElapsedColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as progress:
        tasks = {probe.service: progress.add_task(f"{probe.service}: waiting", total=1) for probe in PROBES}

        def show(result: Result) -> None:
            state = "ready" if result.ready else result.reason or "waiting"
            progress.update(tasks[result.service], description=f"{result.service}: {state}",
                            completed=1 if result.ready else 0)

        options.on_attempt = show
        return asyncio.run(check(outputs, options))


def _smoke(outputs: dict[str, str], args: argparse.Namespace, console: Console) -> list:
    from .smoke import LOG_FILE, Hop, HopFailed, follow, send_telemetry, write_log_line

    sent_at = time.monotonic()
    try:
        with console.status("sending a trace, metrics and a log record to the collector", spinner="dots"):
            trace_id = send_telemetry(outputs["otlp_http_endpoint"], timeout=min(args.timeout, 10.0))
    except HopFailed as failed:
        return [Hop(failed.hop, False, time.monotonic() - sent_at, str(failed))]
    hops = [Hop("collector accepted the telemetry", True, time.monotonic() - sent_at, f"trace id {trace_id}")]
    try:
        if args.log_dir:
            sink = logs.FileSink(Path(args.log_dir) / LOG_FILE)
        else:
            settings = stack_settings_of(args.stack, "--log-dir")[0]
            sink = platform_of(settings).log_sink(settings, LOG_FILE)
        hops.append(Hop("log line written", True, time.monotonic() - sent_at, write_log_line(sink, trace_id)))
    except (SettingsUnknown, logs.LogsError) as error:
        hops.append(Hop("log line written", False, time.monotonic() - sent_at, str(error)))
    except OSError as error:
        hops.append(Hop("log line written", False, time.monotonic() - sent_at,
                        f"cannot append to {sink.path}: {error.strerror} (is it the stack's logDir?)"))
    with console.status(f"following trace {trace_id} through Tempo, Prometheus and Loki", spinner="dots"):
        hops += asyncio.run(follow(outputs, trace_id, sent_at, args.timeout, log_line_written=hops[-1].arrived))
    return hops


if __name__ == "__main__":
    sys.exit(main())
