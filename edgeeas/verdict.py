"""Noise-aware latency verdicts: PASS, FAIL or INCONCLUSIVE against a budget.

One latency figure is the median of a runner process's runs (a *pass*).  On a shared machine
or a phone with background work, the level of a whole pass moves with the load of the moment:
runs inside one pass are not independent, and their spread says little about how far the next
pass will land (here: one model's pass medians ranged 2.74-3.86 ms while each pass reported a
p90/median spread of 4 %).  So the passes are the independent repetitions, as process
executions are in Kalibera & Jones, "Rigorous Benchmarking in Reasonable Time" (ISMM 2013):
a confidence interval must be built from the top level that varies, never from the runs of
one execution alone.

The method (:func:`latency_verdict`):

* Each pass gives one value ``v_i`` (the protocol's statistic, the median by default).  The
  figure is the median of the ``v_i`` (as :func:`device_bench.combine_passes` reports it).
* Its interval is the distribution-free confidence interval of a median from order
  statistics, ``[v_(k), v_(n+1-k)]`` with the largest ``k`` such that
  ``2 P(Binomial(n, 1/2) <= k - 1) <= alpha_look`` (Conover, *Practical Nonparametric
  Statistics*, 3rd ed. 1999, sec. 3.2; the inverted sign test).  It assumes nothing about the
  shape of the pass-to-pass distribution (load bursts make it skewed), only that passes are
  independent and identically distributed.
* That interval is widened to contain the order-statistic interval of the same quantile over
  every run pooled across passes (within-pass noise), so the reported interval is never
  narrower than either level shows.
* Sequential measuring: passes are added one at a time up to ``max_passes``; the interval is
  looked at after each pass from the first count where it can exclude anything (with
  ``n`` passes the widest interval ``[min, max]`` has confidence ``1 - 2^(1-n)``).  Looking
  ``L`` times at ``alpha`` would let noise pass more often than ``alpha``, so each look uses
  ``alpha / L`` (Bonferroni): the chance that any look's interval misses the true median is
  at most ``alpha``.  With the defaults (95 %, at most 15 passes) the looks are at 9..15
  passes.
* PASS when the interval's upper end is at or under the budget, FAIL when its lower end is
  over it, INCONCLUSIVE when it still straddles the budget after ``max_passes`` passes.

``spread`` is reported as the larger of the between-pass range ``(max v_i - min v_i) / median``
and the within-pass spread (the median over passes of ``(p90 - median) / median``): never less
than what repeated passes show.
"""
from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass, field
from typing import Callable, Sequence

from .errors import EdgeeasUsageError

__all__ = ["PASS", "FAIL", "INCONCLUSIVE", "VerdictRule", "LatencyVerdict", "latency_verdict",
           "measure_verdict", "order_statistic_ci", "old_rule"]

PASS, FAIL, INCONCLUSIVE = "PASS", "FAIL", "INCONCLUSIVE"


def _binom_cdfs(n: int, p: float) -> list[float]:
    """``[P(Binomial(n, p) <= k) for k in 0..n]`` (pmf terms in log space: exact enough for the
    tails used here, fast for thousands of runs)."""
    if p in (0.0, 1.0):
        return [1.0 - p] * n + [1.0]
    lp, lq, lg = math.log(p), math.log1p(-p), math.lgamma(n + 1)
    out, acc = [], 0.0
    for i in range(n + 1):
        acc += math.exp(lg - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq)
        out.append(min(acc, 1.0))
    return out


def order_statistic_ci(values: Sequence[float], alpha: float, q: float = 0.5) -> tuple[float, float] | None:
    """Distribution-free two-sided ``1 - alpha`` confidence interval of the ``q`` quantile of the
    population ``values`` were drawn from: ``(x_(l), x_(u))`` (1-based order statistics) with
    the largest ``l`` such that ``P(B <= l - 1) <= alpha / 2`` and the smallest ``u`` such that
    ``P(B >= u) <= alpha / 2``, ``B ~ Binomial(n, q)`` (Conover 1999, sec. 3.2).  ``None`` when
    there are too few values for that confidence.
    """
    x = sorted(values)
    n = len(x)
    if n == 0:
        return None
    cdf = _binom_cdfs(n, q)
    lo = 0  # largest l with P(B <= l - 1) <= alpha/2
    while lo + 1 <= n and cdf[lo] <= alpha / 2:
        lo += 1
    up = n + 1  # smallest u with P(B >= u) = 1 - P(B <= u - 1) <= alpha/2
    while up - 1 >= 1 and 1.0 - cdf[up - 2] <= alpha / 2 + 1e-15:
        up -= 1
    if lo < 1 or up > n or lo > up:
        return None
    return x[lo - 1], x[up - 1]


@dataclass(frozen=True)
class VerdictRule:
    """How sure a latency verdict must be, and how many passes it may spend.

    Args:
        confidence: that the reported interval holds the true figure, over every look (0.95).
        min_passes: passes measured before the first look (at least the protocol's passes).
        max_passes: the cap: INCONCLUSIVE if the interval still straddles the budget then.

    Raises:
        EdgeeasUsageError: a confidence outside (0, 1) or passes < 1 / max < min.
    """

    confidence: float = 0.95
    min_passes: int = 3
    max_passes: int = 15

    def __post_init__(self):
        if not 0 < self.confidence < 1:
            raise EdgeeasUsageError(f"confidence must be in (0, 1), got {self.confidence!r}")
        if self.min_passes < 1 or self.max_passes < self.min_passes:
            raise EdgeeasUsageError(f"need 1 <= min_passes <= max_passes, got {self.min_passes}, {self.max_passes}")

    @property
    def alpha(self) -> float:
        """The error rate of the whole sequential test, 1 - ``confidence``."""
        return 1.0 - self.confidence

    def looks(self) -> tuple[list[int], float]:
        """(pass counts at which the interval is looked at, alpha of each look): every count from
        the first whose ``[min, max]`` interval reaches ``alpha / L`` up to ``max_passes``, with
        ``L`` the number of those looks (a fixed point; Bonferroni over the looks)."""
        n_looks = self.max_passes - self.min_passes + 1
        for _ in range(64):
            a = self.alpha / max(n_looks, 1)
            first = max(self.min_passes, 1 + math.ceil(math.log2(1.0 / a) - 1e-12))
            new = max(self.max_passes - first + 1, 1)
            if new == n_looks:
                break
            n_looks = new
        a = self.alpha / n_looks
        first = max(self.min_passes, 1 + math.ceil(math.log2(1.0 / a) - 1e-12))
        if first > self.max_passes:  # the cap is too low for this confidence: one look at the cap
            return [self.max_passes], self.alpha
        looks = list(range(first, self.max_passes + 1))
        return looks, self.alpha / len(looks)  # Bonferroni over the looks actually taken


@dataclass
class LatencyVerdict:
    """A latency verdict and the figures behind it (milliseconds; ``spread`` a fraction).

    ``status`` is :data:`PASS`, :data:`FAIL` or :data:`INCONCLUSIVE`; ``value_ms`` the median of
    the per-pass values; ``ci_low_ms``/``ci_high_ms`` its interval (``None`` before enough
    passes); ``pass_values_ms`` one value per pass; ``within_spread`` the median over passes of each pass's
    ``(p90 - median) / median``; ``between_spread`` ``(max - min) / median`` of the pass values;
    ``spread`` the larger of the two.
    """

    status: str
    budget_ms: float
    value_ms: float
    ci_low_ms: float | None
    ci_high_ms: float | None
    confidence: float
    passes: int
    runs: int
    pass_values_ms: list[float]
    within_spread: float
    between_spread: float
    spread: float
    statistic: str = "median"
    max_passes: int = 0
    method: str = ("distribution-free order-statistic CI of the median of per-pass values (Conover 1999), "
                   "widened to the pooled runs' order-statistic CI; Bonferroni over sequential looks; passes as "
                   "independent executions (Kalibera & Jones 2013)")
    looks: list[int] = field(default_factory=list)

    def to_dict(self) -> dict:
        """Plain JSON-able data."""
        return dataclasses.asdict(self)

    def describe(self, status: bool = True) -> str:
        """One line: ``2.910 ms (95 % CI 2.84-3.02 ms, 9 passes, spread 6.1 %) vs budget 3 ms: PASS``
        (without ``: PASS`` when not ``status``)."""
        ci = (f"{self.confidence * 100:g} % CI {self.ci_low_ms:.3f}-{self.ci_high_ms:.3f} ms"
              if self.ci_low_ms is not None else "no interval yet")
        return (f"{self.value_ms:.3f} ms {self.statistic} ({ci}, {self.passes} passes, pass values "
                f"{min(self.pass_values_ms):.3f}-{max(self.pass_values_ms):.3f} ms, spread "
                f"{self.spread * 100:.1f} %) vs budget {self.budget_ms:g} ms" + (f": {self.status}" if status else ""))


def _quantile(x: Sequence[float], q: float) -> float:
    s = sorted(x)
    if not s:
        return float("nan")
    if q == 0.5:
        return statistics.median(s)
    pos = q * (len(s) - 1)
    lo = math.floor(pos)
    return s[lo] + (s[min(lo + 1, len(s) - 1)] - s[lo]) * (pos - lo)


def latency_verdict(pass_runs_ms: Sequence[Sequence[float]], budget_ms: float, rule: VerdictRule = VerdictRule(),
                    *, statistic: str = "median", final: bool = True, alpha: float | None = None,
                    pass_values_ms: Sequence[float] | None = None) -> LatencyVerdict:
    """The verdict of the passes measured so far (see the module docstring).

    Args:
        pass_runs_ms: one list of run times (ms) per pass.
        budget_ms: the budget.
        rule: confidence and caps.
        statistic: ``median`` or ``p90`` (the quantile judged).
        final: no more passes will come: a straddling interval is INCONCLUSIVE (else also
            INCONCLUSIVE, meaning "measure more").
        alpha: the look's alpha (default: from ``rule.looks()``).
        pass_values_ms: each pass's figure when it is not the quantile of its runs (e.g. a
            runner's own median); default computed from the runs.

    Returns:
        The :class:`LatencyVerdict`.
    """
    q = 0.9 if statistic == "p90" else 0.5
    passes = [list(r) for r in pass_runs_ms]
    if not passes:
        raise EdgeeasUsageError("a latency verdict needs at least one pass")
    vals = list(pass_values_ms) if pass_values_ms is not None else [_quantile(r, q) for r in passes]
    pooled = [x for r in passes for x in r]
    value = statistics.median(vals)
    looks, look_alpha = rule.looks()
    a = alpha if alpha is not None else look_alpha
    ci = order_statistic_ci(vals, a, 0.5)
    if ci is not None and pooled:
        pc = order_statistic_ci(pooled, a, q)
        if pc is not None:
            ci = (min(ci[0], pc[0]), max(ci[1], pc[1]))
    # within one pass: the median over passes of (p90 - median) / median of its own runs
    inner = [(_quantile(r, 0.9) - _quantile(r, 0.5)) / _quantile(r, 0.5) for r in passes if r and _quantile(r, 0.5) > 0]
    within = statistics.median(inner) if inner else 0.0
    between = (max(vals) - min(vals)) / value if value > 0 else 0.0
    status = INCONCLUSIVE
    if ci is not None:
        if ci[1] <= budget_ms:
            status = PASS
        elif ci[0] > budget_ms:
            status = FAIL
    return LatencyVerdict(status, float(budget_ms), float(value), None if ci is None else float(ci[0]),
                          None if ci is None else float(ci[1]), rule.confidence, len(passes), len(pooled),
                          [float(v) for v in vals], float(within), float(between), float(max(within, between)),
                          statistic, rule.max_passes, looks=looks)


def measure_verdict(measure_pass: Callable[[], object], budget_ms: float, rule: VerdictRule = VerdictRule(),
                    *, statistic: str = "median", first: Sequence[object] = ()) -> tuple[LatencyVerdict, list]:
    """Measure passes until the interval is clear of the budget or ``rule.max_passes`` is reached.

    Args:
        measure_pass: returns one pass's :class:`device_bench.Measurement` (one runner process).
        budget_ms: the budget.
        rule: confidence and caps.
        statistic: the protocol's statistic.
        first: passes already measured (counted, not measured again).

    Returns:
        ``(verdict, measurements)``: every pass's measurement, in order.
    """
    ms = list(first)
    looks, a = rule.looks()

    def verdict(final: bool) -> LatencyVerdict:
        return latency_verdict([[r / 1e3 for r in m.runs_us] for m in ms], budget_ms, rule, statistic=statistic,
                               final=final, alpha=a, pass_values_ms=[m.value_ms for m in ms])

    while len(ms) < rule.max_passes:
        if len(ms) >= rule.min_passes and len(ms) in looks:
            v = verdict(False)
            if v.status != INCONCLUSIVE:
                return v, ms
        ms.append(measure_pass())
    return verdict(True), ms


def old_rule(pass_values_ms: Sequence[float], budget_ms: float) -> str:
    """The rule before noise-aware verdicts: the median of the passes against the budget, PASS or
    FAIL (kept for the verdict benchmark's comparison)."""
    return PASS if statistics.median(pass_values_ms) <= budget_ms else FAIL
