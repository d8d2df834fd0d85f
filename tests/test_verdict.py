"""Noise-aware latency verdicts (edgeeas.verdict): synthetic passes with known answers, and one
real host measurement of a tiny model."""
from __future__ import annotations

import itertools
import random

import pytest

from device_bench import Measurement, Protocol, combine_passes
from edgeeas.verdict import (FAIL, INCONCLUSIVE, PASS, VerdictRule, latency_verdict, measure_verdict, old_rule,
                             order_statistic_ci)


def fake_pass(runs_ms: list[float]) -> Measurement:
    """One pass's Measurement of the given run times (ms), as a runner process reports it."""
    s = sorted(runs_ms)
    med = s[len(s) // 2] if len(s) % 2 else (s[len(s) // 2 - 1] + s[len(s) // 2]) / 2
    p90 = s[min(len(s) - 1, int(0.9 * (len(s) - 1) + 0.5))]
    return Measurement("m.tflite", med, p90, 0.0, len(s), tuple(r * 1e3 for r in runs_ms), Protocol(passes=1),
                       (p90 - med) / med)


def passes_at(levels, within=0.01, runs=50, seed=0):
    """An endless stream of passes: pass i's runs scatter by ``within`` around ``levels[i % len]``."""
    rng = random.Random(seed)
    for level in itertools.cycle(levels):
        yield fake_pass([level * (1 + rng.gauss(0, within)) for _ in range(runs)])


def test_order_statistic_ci_has_the_binomial_coverage():
    # n = 5: [min, max] covers the median with 1 - 2/32 = 93.75 % < 95 %: no interval
    assert order_statistic_ci([1, 2, 3, 4, 5], 0.05) is None
    # n = 6: [min, max] at 1 - 2/64 = 96.9 %
    assert order_statistic_ci([6, 1, 5, 2, 4, 3], 0.05) == (1, 6)
    # n = 9: [x(2), x(8)] at 1 - 2 * 10/512 = 96.1 % (x(3), x(7) would be 82 %)
    assert order_statistic_ci(range(1, 10), 0.05) == (2, 8)
    # the p90 of 100 values: an interval around the 90th value
    lo, hi = order_statistic_ci(range(1, 101), 0.05, q=0.9)
    assert 80 <= lo < 90 < hi <= 97


def test_looks_spend_alpha_once():
    looks, a = VerdictRule().looks()
    assert looks == list(range(9, 16)) and a == pytest.approx(0.05 / 7)
    assert 2.0 ** (1 - looks[0]) <= a  # the first look can decide
    assert VerdictRule(max_passes=4).looks() == ([4], pytest.approx(0.05))


@pytest.mark.parametrize("level, want", [(2.0, PASS), (4.0, FAIL)])
def test_clear_cases_decide_at_the_first_look(level, want):
    stream = passes_at([level])
    v, ms = measure_verdict(lambda: next(stream), 3.0)
    assert v.status == want and v.passes == len(ms) == 9
    assert (v.ci_high_ms <= 3.0) if want == PASS else (v.ci_low_ms > 3.0)
    assert v.ci_low_ms <= v.value_ms <= v.ci_high_ms


def test_straddling_is_inconclusive_at_the_cap():
    stream = passes_at([2.9, 3.1, 2.95, 3.05])
    v, ms = measure_verdict(lambda: next(stream), 3.0, VerdictRule(max_passes=15))
    assert v.status == INCONCLUSIVE and v.passes == len(ms) == 15
    assert v.ci_low_ms < 3.0 < v.ci_high_ms
    assert "INCONCLUSIVE" in v.describe() and "15 passes" in v.describe()


def test_spread_includes_the_passes():
    """The issue's case: passes that each look tight (1 % within) but land 2.74-3.86 ms apart."""
    levels = [2.74, 3.86, 3.1, 3.3, 2.9]
    runs = [[r / 1e3 for r in p.runs_us] for p in itertools.islice(passes_at(levels), 5)]
    v = latency_verdict(runs, 3.0)
    assert v.within_spread < 0.05
    assert v.spread >= v.between_spread >= (3.86 * 0.97 - 2.74 * 1.03) / v.value_ms
    # and the combined Measurement every command prints says the same
    c = combine_passes(list(itertools.islice(passes_at(levels), 5)))
    assert c.spread >= (max(c.pass_medians_ms) - min(c.pass_medians_ms)) / c.median_ms > 0.3


def test_one_slow_pass_among_fast_ones_is_not_a_fail():
    """A burst of load moves one pass: the median of passes and its interval shrug it off."""
    stream = passes_at([2.0, 2.0, 2.0, 9.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0])
    v, _ = measure_verdict(lambda: next(stream), 3.0)
    assert v.status == PASS


def test_old_rule_flips_where_the_new_one_does_not():
    rng = random.Random(1)
    old, new = set(), set()
    for seed in range(12):
        stream = passes_at([3.0 * (1 + rng.gauss(0, 0.04)) for _ in range(15)], seed=seed)
        v, ms = measure_verdict(lambda: next(stream), 3.0)
        old.add(old_rule([m.value_ms for m in ms[:3]], 3.0))
        new.add(v.status)
    assert old == {PASS, FAIL}
    assert not {PASS, FAIL} <= new


def test_real_host_measurement_of_a_tiny_model(tmp_path):
    """The same model on the host: PASS against a generous budget, FAIL against an impossible one."""
    from testing.tiny_model import build_tiny_model

    from edgeeas.targets import HostTarget

    model = build_tiny_model("int8", width=8, num_classes=5)
    t = HostTarget(protocol=Protocol(warmup_runs=1, num_runs=10, passes=1))
    rule = VerdictRule(max_passes=8)  # looks at 7 and 8 passes
    v, ms = measure_verdict(lambda: t.measure(model), 10_000.0, rule)
    assert v.status == PASS and v.passes == 7 and v.runs == 70 and v.ci_high_ms < 10_000
    v2, _ = measure_verdict(lambda: t.measure(model), 1e-6, rule, first=ms)
    assert v2.status == FAIL and v2.ci_low_ms > 1e-6 and v2.passes == 7
    assert v2.spread >= v2.between_spread
