"""A developer's load test through the real collector on the stack's config, at a modest rate:
nothing is lost on the way to Tempo's, Loki's and Prometheus' ends. (`python -m bench.load`
measures how much more it holds.)"""

from bench.load import HEADER, run


def test_a_modest_load_through_the_real_collector_loses_nothing():
    signals, _ = run(rate=500, seconds=3)
    report = "\n".join([HEADER, *(signal.row() for signal in signals)])
    assert all(signal.sent and not signal.lost for signal in signals), report
