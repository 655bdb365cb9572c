"""The port-forwards of a stack on Kubernetes, kept open: `python -m stack.port_forward SPEC`, as
stack/platforms/kubernetes.py starts it. One `kubectl port-forward` per service and address; a
kubectl that exits (its pod was replaced by a rollout, the API server restarted) is started again
after a short pause, so the stack's URLs keep answering. SIGTERM stops them all."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

# A kubectl that exits is started again after this pause, doubled each time it exits within
# STEADY_SECONDS of starting (the cluster is away), up to MAX_PAUSE_SECONDS.
RESTART_PAUSE_SECONDS, MAX_PAUSE_SECONDS, STEADY_SECONDS = 0.5, 8.0, 10.0


def command(spec: dict, forward: dict) -> list[str]:
    context = ["--context", spec["context"]] if spec["context"] else []
    return [spec["kubectl"], *context, "port-forward", "--namespace", spec["namespace"], "--address",
            forward["address"], f"service/{forward['service']}",
            *(f"{host}:{inside}" for host, inside in forward["ports"])]


def supervise(spec: dict) -> None:
    running: dict[int, subprocess.Popen] = {}
    started: dict[int, float] = {}
    exited: dict[int, float] = {}
    pause = {index: RESTART_PAUSE_SECONDS for index in range(len(spec["forwards"]))}
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    def start(index: int, forward: dict) -> None:
        running[index], started[index] = subprocess.Popen(command(spec, forward), stdin=subprocess.DEVNULL), now
        exited.pop(index, None)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopping:
        now = time.monotonic()
        for index, forward in enumerate(spec["forwards"]):
            process = running.get(index)
            if process is None:
                start(index, forward)
            elif process.poll() is not None:
                if index not in exited:
                    exited[index] = now
                    steady = now - started[index] >= STEADY_SECONDS
                    pause[index] = RESTART_PAUSE_SECONDS if steady else min(pause[index] * 2, MAX_PAUSE_SECONDS)
                if now - exited[index] >= pause[index]:
                    start(index, forward)
        time.sleep(0.1)
    for process in running.values():
        process.terminate()
    for process in running.values():
        process.wait()


if __name__ == "__main__":
    supervise(json.loads(sys.argv[1]))
