"""The checks: latency (relative, noise-aware) and accuracy (absolute), and the warnings about setups.

Latency check (noise-aware).  ``v`` is the protocol's statistic (median by default) and
``s = (p90 - median) / median`` the measured spread of one measurement::

    ratio   = v_now / v_base - 1
    allowed = latency_rel + spread_weight * (min(s_base, spread_cap) + min(s_now, spread_cap))
    fail  if ratio > allowed, confirmed by ``confirm`` re-measurements (the lowest value is kept)

Defaults 0.10, 1.0, 0.10, confirm 2.  The spread terms widen the tolerance as much as the two
measurements are noisy: on a quiet phone (s ~ 1-2 %) the check stays near ``latency_rel``; on
a loaded machine bursts of stolen CPU both widen the run distribution and shift one
invocation's median, and the widening absorbs that shift instead of raising a false alarm.
The cap keeps one burst-ridden measurement (p90 at several times the median: seen on the
loaded 2-core CI machine) from widening the check into uselessness; such bursts mostly
inflate the tail, and the confirming re-measurements deal with the rest.  A suspected
regression is re-measured before it is reported (a real slowdown reproduces, a burst of
load rarely does twice).  Baselines are recorded as the middle of ``repeats`` measurements
so that one lucky (fast) baseline does not make every later run look slow.

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
    """How far a check may move before it fails (see the module docstring for the formula).

    Raises:
        RegressUsageError: a negative value.
    """

    latency_rel: float = 0.10      # relative, before widening
    spread_weight: float = 1.0     # k in allowed = latency_rel + k (min(s_base, cap) + min(s_now, cap))
    spread_cap: float = 0.10       # one measurement's spread counts at most this much
    accuracy_pp: float = 1.0       # absolute, percentage points
    confirm: int = 2               # re-measurements of a suspected latency regression

    def __post_init__(self):
        if not (self.latency_rel >= 0 and self.spread_weight >= 0 and self.spread_cap >= 0 and self.accuracy_pp >= 0
                and self.confirm >= 0):
            raise RegressUsageError(f"tolerances must be >= 0, got {self}")


@dataclass
class Case:
    """One check of one device x model x metric, as the reports show it.

    ``base`` and ``now`` are in the metric's unit: milliseconds for ``latency``, percent for
    ``accuracy``; ``status`` is ``pass``, ``fail``, ``error`` (the device failed) or
    ``recorded`` (an ``--update-baseline`` run); ``details`` holds the check's figures
    (``ratio``/``allowed`` or ``delta_pp``).
    """

    device: str
    model: str
    metric: str                     # "latency" | "accuracy"
    status: str                     # "pass" | "fail" | "error" | "recorded"
    message: str = ""
    base: float | None = None
    now: float | None = None
    details: dict = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        """The case as plain JSON-able data (``dataclasses.asdict``)."""
        return dataclasses.asdict(self)


def latency_check(base: dict, now: dict, tol: Tolerances) -> tuple[bool, dict]:
    """Does ``now`` pass against ``base``?

    Args:
        base, now: latency records with ``value_ms`` (milliseconds) and ``spread``
            (``(p90 - median) / median``, a fraction).
        tol: the tolerances.

    Returns:
        ``(ok, {"ratio": now / base - 1, "allowed": the widened tolerance})``, both fractions;
        a baseline of 0 ms gives an infinite ratio (a failure).
    """
    ratio = now["value_ms"] / base["value_ms"] - 1.0 if base["value_ms"] > 0 else math.inf
    allowed = tol.latency_rel + tol.spread_weight * (min(base["spread"], tol.spread_cap)
                                                     + min(now["spread"], tol.spread_cap))
    return ratio <= allowed, {"ratio": ratio, "allowed": allowed}


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
                ok, det = latency_check(brec, rec, tolerances)
                msg = (f"{name} {key}: latency {rec['value_ms']:.4g} ms vs baseline {brec['value_ms']:.4g} ms "
                       f"({det['ratio'] * 100:+.1f} %, allowed +{det['allowed'] * 100:.1f} % = "
                       f"{tolerances.latency_rel * 100:g} % + {tolerances.spread_weight:g} x spread "
                       f"({brec['spread'] * 100:.1f} % + {rec['spread'] * 100:.1f} %, each capped at "
                       f"{tolerances.spread_cap * 100:g} %))")
                det.update(base_p90_ms=brec.get("p90_ms"), now_p90_ms=rec.get("p90_ms"),
                           base_spread=brec["spread"], now_spread=rec["spread"],
                           attempts_ms=rec.get("attempts_ms"))
                cases.append(Case(name, key, metric, "pass" if ok else "fail", msg, brec["value_ms"],
                                  rec["value_ms"], det))
            else:
                ok, delta = accuracy_check(brec, rec, tolerances)
                msg = (f"{name} {key}: {rec['metric']} {rec['accuracy_pct']:.2f} % vs baseline "
                       f"{brec['accuracy_pct']:.2f} % ({delta:+.2f} pp, allowed -{tolerances.accuracy_pp:g} pp)")
                det = {"delta_pp": delta, "mode": rec["mode"], "n": rec["n"],
                       "agreement_pct": rec.get("agreement_pct")}
                cases.append(Case(name, key, metric, "pass" if ok else "fail", msg, brec["accuracy_pct"],
                                  rec["accuracy_pct"], det))
    return cases
