"""The seed's tmux pipe-pane recipe as commands: the app's JSON lines appended to a file Alloy tails."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

LOG_FILE = "api.log"
PANE_FILTER = Path(__file__).with_name("pane_filter.py")


class LogsError(Exception):
    pass


@dataclass
class LogStatus:
    session: str
    attached: bool
    path: Path
    size: Optional[int]
    last_line_age_seconds: Optional[float]

    def line(self) -> str:
        state = "attached" if self.attached else "not attached"
        if self.size is None:
            file = f"{self.path} does not exist yet"
        else:
            age = ("no lines yet" if self.last_line_age_seconds is None
                   else f"last line {self.last_line_age_seconds:.0f}s ago")
            file = f"{self.path}: {self.size} bytes, {age}"
        return f"tmux session {self.session}: pipe-pane {state}; {file}"


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


def attach(session: str, log_dir: str) -> LogStatus:
    _require_session(session)
    path = Path(log_dir) / LOG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    if not _piping(session):
        # -o opens the pipe only if none is open, so attaching twice never pipes twice. The pane
        # shows prompts, typed commands and escape sequences too: only the app's JSON lines pass.
        pipe = f"{shlex.quote(sys.executable)} {shlex.quote(str(PANE_FILTER))} >> {shlex.quote(str(path))}"
        result = _tmux("pipe-pane", "-o", "-t", _pane(session), pipe)
        if result.returncode != 0:
            raise LogsError(f"tmux pipe-pane failed: {result.stderr.strip()}")
    return status(session, log_dir)


def detach(session: str, log_dir: str) -> LogStatus:
    _require_session(session)
    _tmux("pipe-pane", "-t", _pane(session))  # no command: closes the pane's pipe
    return status(session, log_dir)


def status(session: str, log_dir: str) -> LogStatus:
    _require_session(session)
    path = Path(log_dir) / LOG_FILE
    size = path.stat().st_size if path.exists() else None
    return LogStatus(session, _piping(session), path, size, _last_line_age(path) if size else None)


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
