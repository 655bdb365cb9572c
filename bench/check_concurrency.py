"""Benchmark: `check` probes concurrently, so it takes about as long as its slowest probe.

Six stand-ins answer their readiness endpoint after a fixed delay each (0.2 s .. 1.2 s). The
check's wall time over several runs is compared with the slowest probe's delay; the target is a
ratio of at most 1.5 (run serially it would be 3.5). Run: venv/bin/python -m bench.check_concurrency
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time

from stack.check import PROBES, CheckOptions, check
from tests.standins import StandIn, grafana_health, ready_text

DELAYS = (0.2, 0.4, 0.6, 0.8, 1.0, 1.2)
RUNS = 5
TARGET_RATIO = 1.5


def main() -> int:
    stand_ins = []
    outputs = {}
    for probe, delay in zip(PROBES, DELAYS):
        route = grafana_health() if probe.service == "grafana" else ready_text()
        stand_in = StandIn({probe.path: route}, delay=delay)
        stand_ins.append(stand_in)
        outputs[probe.output] = stand_in.url
    try:
        times = []
        for _ in range(RUNS):
            started = time.monotonic()
            results = asyncio.run(check(outputs, CheckOptions(timeout=10)))
            times.append(time.monotonic() - started)
            assert all(result.ready for result in results), [r.reason for r in results if not r.ready]
    finally:
        for stand_in in stand_ins:
            stand_in.close()
    slowest, serial = max(DELAYS), sum(DELAYS)
    ratio = statistics.median(times) / slowest
    print(f"check over {len(DELAYS)} probes of {min(DELAYS)}..{slowest}s (serial would take {serial:.1f}s): "
          f"median {statistics.median(times):.3f}s, worst {max(times):.3f}s over {RUNS} runs")
    print(f"ratio to the slowest probe: {ratio:.2f} (target <= {TARGET_RATIO})")
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
