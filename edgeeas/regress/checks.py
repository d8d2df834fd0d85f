"""The checks: latency (noise-aware, relative to the baseline) and accuracy (absolute), and setup warnings.

Latency check: the noise-aware verdict of :mod:`edgeeas.verdict`, with the budget set at
``baseline value * (1 + latency_rel)`` (default +10 %).  The model is measured pass after pass
(one runner process each, the models of a device together) until the confidence interval of
the median of the pass values is clear of that budget, or ``max_passes`` passes are spent:

* ``pass``: the interval's upper end is at or under the budget (no regression beyond the tolerance);
* ``fail``: its lower end is over it (a regression, exit 1);
* ``inconclusive``: the interval still straddles the budget (too noisy here to tell; exit 3
  when nothing failed or errored).  The message gives the interval and the measured spread.

The baseline's figure is the median of its own passes (``--update-baseline`` measures the
verdict's first-look count of passes, 9 by default), taken as the reference.

Accuracy check (absolute, percentage points): fail when
``accuracy_pct_now < accuracy_pct_base - accuracy_pp`` (the two evaluation modes are
described in :mod:`edgeeas.regress.run`).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable

from .farm import RegressUsageError

if TYPE_CHECKING:
    from .run import DeviceRun

__all__ = ["Tolerances", "Case", "latency_check", "accuracy_check", "device_cases", "protocol_warnings"]

# Protocol fields whose difference changes figures outright: the warning is loud.
_LOUD = ("threads", "runner", "runner_version", "interpreter", "interpreter_version", "cpu_mask", "use_xnnpack")
_QUIET = ("num_runs", "warmup_runs", "min_secs", "warmup_min_secs", "statistic")


@dataclass(frozen=True)
class Tolerances:
    """How far a check may move before it fails, and how sure a latency verdict must be.

    Args:
        latency_rel: allowed slowdown, a fraction of the baseline's figure (0.10 = +10 %).
        accuracy_pp: allowed accuracy drop, percentage points.
        confidence: of the latency verdict's interval (0.95).
        max_passes: the cap of passes per model before a straddling interval is INCONCLUSIVE.

    Raises:
        RegressUsageError: a negative tolerance, a confidence outside (0, 1), or max_passes < 3.
    """

    latency_rel: float = 0.10
    accuracy_pp: float = 1.0
    confidence: float = 0.95
    max_passes: int = 15

    def __post_init__(self):
        if not (self.latency_rel >= 0 and self.accuracy_pp >= 0):
            raise RegressUsageError(f"tolerances must be >= 0, got {self}")
        if not 0 < self.confidence < 1:
            raise RegressUsageError(f"confidence must be in (0, 1), got {self.confidence!r}")
        if self.max_passes < 3:
            raise RegressUsageError(f"max_passes must be at least 3, got {self.max_passes!r}")

    def rule(self):
        """The :class:`edgeeas.verdict.VerdictRule` of the latency check."""
        from ..verdict import VerdictRule

        return VerdictRule(confidence=self.confidence, min_passes=3, max_passes=self.max_passes)

    def budget_ms(self, base: dict) -> float:
        """The latency budget against a baseline latency record: ``value_ms * (1 + latency_rel)``."""
        return float(base["value_ms"]) * (1.0 + self.latency_rel)


@dataclass
class Case:
    """One check of one device x model x metric, as the reports show it.

    ``base`` and ``now`` are in the metric's unit: milliseconds for ``latency``, percent for
    ``accuracy``; ``status`` is ``pass``, ``fail``, ``inconclusive`` (latency too noisy to tell), ``error`` (the device failed) or
    ``recorded`` (an ``--update-baseline`` run); ``details`` holds the check's figures
    (``ratio``/``allowed`` or ``delta_pp``).
    """

    device: str
    model: str
    metric: str                     # "latency" | "accuracy"
    status: str                     # "pass" | "fail" | "inconclusive" | "error" | "recorded"
    message: str = ""
    base: float | None = None
    now: float | None = None
    details: dict = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        """The case as plain JSON-able data (``dataclasses.asdict``)."""
        return dataclasses.asdict(self)


def latency_check(base: dict, now: dict, tol: Tolerances, final: bool = True):
    """The noise-aware verdict of ``now`` against ``base`` (see the module docstring).

    Args:
        base: the baseline's latency record (``value_ms``, milliseconds).
        now: this run's record: ``pass_runs_us`` (one list of run times in microseconds per pass)
            and ``pass_values_ms`` (each pass's figure, milliseconds).
        tol: the tolerances.
        final: no more passes will come (a straddling interval is then INCONCLUSIVE for good).

    Returns:
        The :class:`edgeeas.verdict.LatencyVerdict` against ``tol.budget_ms(base)``.
    """
    from ..verdict import latency_verdict

    rule = tol.rule()
    _, alpha = rule.looks()
    return latency_verdict([[r / 1e3 for r in runs] for runs in now["pass_runs_us"]], tol.budget_ms(base), rule,
                           statistic=now.get("statistic") or "median", final=final, alpha=alpha,
                           pass_values_ms=now["pass_values_ms"])


def accuracy_check(base: dict, now: dict, tol: Tolerances) -> tuple[bool, float]:
    """``(ok, now - base)`` of two accuracy records' ``accuracy_pct``, in percentage points;
    fails when the drop exceeds ``tol.accuracy_pp``."""
    delta = now["accuracy_pct"] - base["accuracy_pct"]
    return delta >= -tol.accuracy_pp - 1e-9, delta


def protocol_warnings(name: str, base: dict, now: dict, bfp: dict, nfp: dict) -> list[str]:
    """Warnings (one line each) when device ``name`` was measured with another protocol or changed.

    Args:
        base, now: the baseline's and this run's protocol dicts (``Protocol.to_dict()``).
        bfp, nfp: the baseline's and this run's device fingerprints.

    Returns:
        The warnings; those that can change figures outright start with ``LOUD:``.
    """
    out = []
    loud = [f"{k} {base.get(k)!r} -> {now.get(k)!r}" for k in _LOUD if base.get(k) != now.get(k)]
    if loud:
        out.append(f"LOUD: {name}: measured with a different protocol than the baseline ({'; '.join(loud)}): "
                   f"latency differences may come from the setup, not the model")
    quiet = [f"{k} {base.get(k)!r} -> {now.get(k)!r}" for k in _QUIET if base.get(k) != now.get(k)]
    if quiet:
        out.append(f"{name}: protocol differs from the baseline's ({'; '.join(quiet)})")
    for k in ("interpreter_version", "cpu_model", "model", "soc", "abi", "cores"):
        if k in bfp and k in nfp and bfp[k] != nfp[k] and not (k == "interpreter_version" and loud):
            out.append(f"LOUD: {name}: device fingerprint {k} changed since the baseline "
                       f"({bfp[k]!r} -> {nfp[k]!r})")
    return out


def device_cases(name: str, run: "DeviceRun", bdev: dict | None, model_keys: Iterable[str],
                 tolerances: Tolerances) -> list[Case]:
    """The cases of one device: latency then accuracy for every model, in ``model_keys`` order.

    Args:
        name: the device's name.
        run: what the device measured (``latency``/``accuracy`` records by model key, ``error``).
        bdev: the baseline's record of the device, or None when recording a baseline
            (every measured metric is then ``recorded``).
        model_keys: the models' keys.
        tolerances: the tolerances.

    Returns:
        One :class:`Case` per model x metric; a metric the device did not deliver is an ``error``.
    """
    cases: list[Case] = []
    for key in model_keys:
        for metric in ("latency", "accuracy"):
            rec = (run.latency if metric == "latency" else run.accuracy).get(key)
            if rec is None:
                why = run.error or "not measured"
                cases.append(Case(name, key, metric, "error", f"device {name} failed: {why}"))
                continue
            if bdev is None:
                now = rec["value_ms"] if metric == "latency" else rec["accuracy_pct"]
                cases.append(Case(name, key, metric, "recorded", "", None, now))
                continue
            brec = bdev["models"][key][metric]
            if metric == "latency":
                v = rec.get("verdict")
                if v is None:
                    cases.append(Case(name, key, metric, "error", f"{name} {key}: no latency verdict measured"))
                    continue
                ratio = rec["value_ms"] / brec["value_ms"] - 1.0 if brec["value_ms"] > 0 else math.inf
                ci = (f"{v['confidence'] * 100:g} % CI {v['ci_low_ms']:.4g}-{v['ci_high_ms']:.4g} ms"
                      if v.get("ci_low_ms") is not None else "no interval")
                status = {"PASS": "pass", "FAIL": "fail"}.get(v["status"], "inconclusive")
                msg = (f"{name} {key}: latency {v['status']}: {rec['value_ms']:.4g} ms ({ratio * 100:+.1f} %; {ci}, "
                       f"{v['passes']} passes, spread {v['spread'] * 100:.1f} %) vs baseline {brec['value_ms']:.4g} ms "
                       f"+ {tolerances.latency_rel * 100:g} % = {v['budget_ms']:.4g} ms"
                       + (": too noisy to tell within the cap of passes" if status == "inconclusive" else ""))
                det = {"ratio": ratio, "allowed": tolerances.latency_rel, "budget_ms": v["budget_ms"],
                       "ci_low_ms": v.get("ci_low_ms"), "ci_high_ms": v.get("ci_high_ms"), "passes": v["passes"],
                       "spread": v["spread"], "base_spread": brec["spread"], "verdict": v["status"],
                       "pass_values_ms": v["pass_values_ms"], "base_p90_ms": brec.get("p90_ms"),
                       "now_p90_ms": rec.get("p90_ms")}
                cases.append(Case(name, key, metric, status, msg, brec["value_ms"], rec["value_ms"], det))
            else:
                ok, delta = accuracy_check(brec, rec, tolerances)
                msg = (f"{name} {key}: {rec['metric']} {rec['accuracy_pct']:.2f} % vs baseline "
                       f"{brec['accuracy_pct']:.2f} % ({delta:+.2f} pp, allowed -{tolerances.accuracy_pp:g} pp)")
                dvh = rec.get("device_vs_host")
                if dvh:
                    msg += (f"; device vs host top-1 agreement {dvh['top1_agreement_pct']:.1f} %, accuracy "
                            f"{dvh['accuracy_diff_points']:+.2f} pp ({dvh['status']})")
                det = {"delta_pp": delta, "mode": rec["mode"], "n": rec["n"],
                       "agreement_pct": rec.get("agreement_pct"), "device_vs_host": dvh,
                       "base_device_vs_host": brec.get("device_vs_host")}
                cases.append(Case(name, key, metric, "pass" if ok else "fail", msg, brec["accuracy_pct"],
                                  rec["accuracy_pct"], det))
    return cases
