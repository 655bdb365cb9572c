"""The app's JSON lines out of what a tmux pane shows: `logs attach` pipes the pane through this.

A pane's output is the terminal's byte stream: the shell's prompt, the commands typed and their
echo, colours and mode switches (`\\e[?2004l`), carriage returns that redraw a line. Only the
app's JSON lines may reach Alloy. Run as a script: `python pane_filter.py` reads the pane on stdin
and writes each JSON line to stdout as soon as it is complete; `python pane_filter.py --push URL`
posts each to Alloy's push endpoint instead (on Kubernetes, where Alloy cannot read a file here).
"""

from __future__ import annotations

import json
import re
import sys
import urllib.request
from typing import BinaryIO, Callable, Optional

# ECMA-48 control sequences: CSI (`ESC [ … final`), OSC and the other string commands (ended by
# BEL or `ESC \`), and two-byte escapes (charset selection, keypad modes).
_CONTROL = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[\]PX^_].*?(?:\x07|\x1b\\)|\x1b[ -/]*[0-~]")


def app_line(raw: bytes) -> Optional[bytes]:
    """The JSON object a pane line shows, or None when it shows none. The line is what the
    terminal displays: control sequences removed, and only what follows the last carriage return
    (it overwrote the rest). The object runs from the line's first `{` to its end, so a prompt
    printed before the app's output is left out, and a typed command that merely contains JSON
    (`echo '{…}'`) is not an object to its end."""
    shown = _CONTROL.sub(b"", raw.rstrip(b"\r\n")).rsplit(b"\r", 1)[-1]
    start = shown.find(b"{")
    if start < 0:
        return None
    candidate = shown[start:].rstrip()
    try:
        parsed = json.loads(candidate.decode("utf-8", errors="strict"))
    except ValueError:  # UnicodeDecodeError is one too
        return None
    return candidate if isinstance(parsed, dict) else None


def copy_app_lines(pane: BinaryIO, send: Callable[[bytes], None]) -> None:
    for raw in pane:
        line = app_line(raw)
        if line is not None:
            send(line + b"\n")


def to_file(out: BinaryIO) -> Callable[[bytes], None]:
    def send(line: bytes) -> None:
        out.write(line)
        out.flush()  # Alloy reads the file as it grows: never hold a line back
    return send


def to_alloy(url: str) -> Callable[[bytes], None]:
    def send(line: bytes) -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(url, data=line, method="POST"), timeout=5).close()
        except OSError as error:  # a line Alloy did not take is reported, and the next one tried
            print(f"pane_filter: Alloy did not take a line at {url}: {error}", file=sys.stderr)
    return send


if __name__ == "__main__":
    push = sys.argv[1:3] if sys.argv[1:2] == ["--push"] else None
    copy_app_lines(sys.stdin.buffer, to_alloy(push[1]) if push else to_file(sys.stdout.buffer))
