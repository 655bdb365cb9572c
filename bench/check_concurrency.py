"""Benchmark: `check` probes concurrently, so it takes about as long as its slowest probe.

Six stand-ins answering as the services do, each after a fixed delay (0.2 s .. 1.2 s). A probe
asks twice (ready? which version?), so the slowest takes twice its delay. The check's wall time
over several runs is compared with that; the target is a ratio of at most 1.5 (one probe after
another it would be 8.4 s). Run: venv/bin/python -m bench.check_concurrency
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time

from program.settings import DEFAULTS, pinned_images
from stack.check import CheckOptions, check, images_by_setting
from tests.standins import StandIn, healthy_stack

PINNED_IMAGES = images_by_setting(pinned_images(DEFAULTS["versions"]))

DELAYS = (0.2, 0.4, 0.6, 0.8, 1.0, 1.2)
RUNS = 5
TARGET_RATIO = 1.5


def main() -> int:
    stand_ins = []
    delays = iter(DELAYS)

    def start(routes):
        stand_ins.append(StandIn(routes, delay=next(delays)))
        return stand_ins[-1].url

    outputs = healthy_stack(start)
    try:
        times = []
        for _ in range(RUNS):
            started = time.monotonic()
            results = asyncio.run(check(outputs, CheckOptions(images=PINNED_IMAGES, timeout=10)))
            times.append(time.monotonic() - started)
            assert all(result.ready for result in results), [r.reason for r in results if not r.ready]
    finally:
        for stand_in in stand_ins:
            stand_in.close()
    slowest, serial = 2 * max(DELAYS), 2 * sum(DELAYS)
    ratio = statistics.median(times) / slowest
    print(f"check over {len(DELAYS)} probes of {min(DELAYS)}..{slowest}s (serial would take {serial:.1f}s): "
          f"median {statistics.median(times):.3f}s, worst {max(times):.3f}s over {RUNS} runs")
    print(f"ratio to the slowest probe: {ratio:.2f} (target <= {TARGET_RATIO})")
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
