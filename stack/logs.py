"""The seed's tmux pipe-pane recipe as commands: the app's JSON lines appended to a file Alloy tails
(Docker), or pushed to Alloy (Kubernetes)."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

LOG_FILE = "api.log"
PANE_FILTER = Path(__file__).with_name("pane_filter.py")


class LogsError(Exception):
    pass


@dataclass(frozen=True)
class FileSink:
    """A file Alloy tails (Docker: logDir/api.log, mounted into its container)."""

    path: Path

    def write(self, line: str) -> str:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as log:
            log.write(line + "\n")
        return str(self.path)

    def pipe_target(self) -> str:
        """What tmux pipe-pane runs the pane filter into."""
        return f">> {shlex.quote(str(self.path))}"

    def describe(self) -> str:
        if not self.path.exists():
            return f"{self.path} does not exist yet"
        age = _last_line_age(self.path)
        return f"{self.path}: {self.path.stat().st_size} bytes, " + \
            ("no lines yet" if age is None else f"last line {age:.0f}s ago")


@dataclass(frozen=True)
class PushSink:
    """Alloy's push endpoint, one line per line (Kubernetes: the app's files are not in the cluster)."""

    url: str

    def write(self, line: str) -> str:
        try:
            with urllib.request.urlopen(urllib.request.Request(self.url, data=(line + "\n").encode(), method="POST"),
                                        timeout=PUSH_TIMEOUT_SECONDS):
                pass
        except OSError as error:
            raise LogsError(f"Alloy did not take the line at {self.url}: {error}") from None
        return self.url

    def pipe_target(self) -> str:
        return f"--push {shlex.quote(self.url)}"

    def describe(self) -> str:
        return f"lines pushed to Alloy at {self.url}"


Sink = Union[FileSink, PushSink]
PUSH_TIMEOUT_SECONDS = 5


@dataclass
class LogStatus:
    session: str
    attached: bool
    sink: Sink

    def line(self) -> str:
        state = "attached" if self.attached else "not attached"
        return f"tmux session {self.session}: pipe-pane {state}; {self.sink.describe()}"


def _tmux(*args: str) -> subprocess.CompletedProcess:
    tmux = shutil.which("tmux")
    if tmux is None:
        raise LogsError("tmux is not installed: install it (apt-get install tmux, brew install tmux)")
    return subprocess.run([tmux, *args], capture_output=True, text=True)


def _pane(session: str) -> str:
    """The active pane of the session named exactly `session` (no prefix matching)."""
    return f"={session}:"


def _require_session(session: str) -> None:
    if _tmux("has-session", "-t", f"={session}").returncode != 0:
        raise LogsError(f"no tmux session named {session!r}: start the app in one (tmux new -s {session}) "
                        f"or name yours with --session")


def _piping(session: str) -> bool:
    shown = _tmux("display-message", "-p", "-t", _pane(session), "#{pane_pipe}")
    return shown.stdout.strip() == "1"


def attach(session: str, sink: Sink) -> LogStatus:
    _require_session(session)
    if isinstance(sink, FileSink):
        sink.path.parent.mkdir(parents=True, exist_ok=True)
    if not _piping(session):
        # -o opens the pipe only if none is open, so attaching twice never pipes twice. The pane
        # shows prompts, typed commands and escape sequences too: only the app's JSON lines pass.
        pipe = f"{shlex.quote(sys.executable)} {shlex.quote(str(PANE_FILTER))} {sink.pipe_target()}"
        result = _tmux("pipe-pane", "-o", "-t", _pane(session), pipe)
        if result.returncode != 0:
            raise LogsError(f"tmux pipe-pane failed: {result.stderr.strip()}")
    return status(session, sink)


def detach(session: str, sink: Sink) -> LogStatus:
    _require_session(session)
    _tmux("pipe-pane", "-t", _pane(session))  # no command: closes the pane's pipe
    return status(session, sink)


def status(session: str, sink: Sink) -> LogStatus:
    _require_session(session)
    return LogStatus(session, _piping(session), sink)


def _last_line_age(path: Path) -> Optional[float]:
    """Seconds since the last line: Pino's own `time` when the line is Pino JSON, else the file's mtime."""
    with path.open("rb") as log:
        log.seek(max(0, path.stat().st_size - 65536))
        lines = [line for line in log.read().decode(errors="replace").splitlines() if line.strip()]
    if not lines:
        return None
    try:
        return max(0.0, time.time() - json.loads(lines[-1])["time"] / 1000)
    except (ValueError, KeyError, TypeError):
        return max(0.0, time.time() - path.stat().st_mtime)
