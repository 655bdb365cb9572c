"""The fault benchmark's short version (bench/faults.py): a collector killed while Tempo and Loki
are away loses nothing it acknowledged with its queues on disk, and loses what it held without."""

import pytest

from bench.faults import run


@pytest.mark.parametrize("file_storage", [True, False], ids=["queues-on-disk", "queues-in-memory"])
def test_a_collector_killed_while_tempo_and_loki_are_away(file_storage):
    rows = run("collector-killed", rate=200, outage=3, file_storage=file_storage, drain_seconds=10, margin=1)
    assert {row.signal for row in rows} == {"traces", "logs"}
    for row in rows:
        assert row.acknowledged > 0 and row.arrived > 0, row
        if file_storage:
            assert row.lost == 0, row.line()
        else:
            # What it had queued in memory died with it (a retry comes within 4 s of the outage's end).
            assert row.lost > 0, row.line()
