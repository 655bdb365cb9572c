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

RESTART_PAUSE_SECONDS = 0.5


def command(spec: dict, forward: dict) -> list[str]:
    context = ["--context", spec["context"]] if spec["context"] else []
    return [spec["kubectl"], *context, "port-forward", "--namespace", spec["namespace"], "--address",
            forward["address"], f"service/{forward['service']}",
            *(f"{host}:{inside}" for host, inside in forward["ports"])]


def supervise(spec: dict) -> None:
    running: dict[int, subprocess.Popen] = {}
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopping:
        for index, forward in enumerate(spec["forwards"]):
            if index not in running or running[index].poll() is not None:
                running[index] = subprocess.Popen(command(spec, forward), stdin=subprocess.DEVNULL)
        time.sleep(RESTART_PAUSE_SECONDS)
    for process in running.values():
        process.terminate()
    for process in running.values():
        process.wait()


if __name__ == "__main__":
    supervise(json.loads(sys.argv[1]))
