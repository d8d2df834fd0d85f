"""Fitting a target's predictor on its measured whole subnets.

The predictor sums table rows plus a per-target overhead fitted by non-negative least squares
on relative errors of end-to-end measurements of random whole subnets::

    measured(a) ~ intercept + scale * (stem + head(K)) + sum over blocks of (scale_k * row + per_block)
                  + crowding (kernel sizes only; see Fit)

The per-block term absorbs what a row measures but a block inside a network does not cost (one
interpreter invocation per single-layer model).  Two models compete: one shared scale, or a
scale and a crowding term per depthwise kernel size; the richer one is kept only when it
predicts held-out subnets better (k-fold).  Errors are reported on held-out subnets and stored
with the fit in the target's ``predictor.json``, with a PNG of predicted vs measured latency.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable

from ..space import Arch, SearchSpace
from ..targets import TargetStore
from .errors import LatencyError
from .rows import HEAD_CLASSES, table_rows
from .table import FORMAT, LatencyTable, _now, statistic_column

__all__ = ["Fit", "FOLDS", "fit_predictor"]

FOLDS = 5


@dataclass
class Fit:
    """predicted = intercept + scale * (stem + head) + sum over blocks of
    ((kernel_scales[kernel] or scale) * row + per_block_ms) + crowding (:meth:`crowding_ms`).

    Every term in ms; coefficients >= 0 (non-negative least squares, :func:`_lstsq`);
    ``method`` says which model was fitted and ``n`` on how many subnets.
    """

    intercept_ms: float = 0.0
    scale: float = 1.0
    per_block_ms: float = 0.0
    method: str = "none"
    n: int = 0
    kernel_scales: dict = field(default_factory=dict)   # {"7": 1.1, ...}; empty: ``scale`` for all
    # Crowding: a kernel-k block costs more the more kernel-k blocks the net has. Each kernel
    # size adds crowding[k] * (its rows' sum) * (its block count) / (the space's most blocks).
    kernel_crowding: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready, as stored under ``predictor.json``'s ``fit`` (kernel keys as strings)."""
        return {"intercept_ms": self.intercept_ms, "scale": self.scale, "per_block_ms": self.per_block_ms,
                "method": self.method, "n": self.n, "kernel_scales": dict(self.kernel_scales),
                "kernel_crowding": dict(self.kernel_crowding)}

    @classmethod
    def from_dict(cls, d: dict) -> "Fit":
        """The inverse of :meth:`to_dict`; ``KeyError``/``ValueError`` on a malformed dict."""
        return cls(float(d["intercept_ms"]), float(d["scale"]), float(d["per_block_ms"]), d.get("method", ""),
                   int(d.get("n", 0)), {str(k): float(v) for k, v in (d.get("kernel_scales") or {}).items()},
                   {str(k): float(v) for k, v in (d.get("kernel_crowding") or {}).items()})

    def block_scale(self, kernel: int) -> float:
        """The scale of a block row with depthwise ``kernel``: its own, else the shared ``scale``."""
        return self.kernel_scales.get(str(kernel), self.scale)

    def crowding_ms(self, by_kernel: dict, count_by_kernel: dict, max_blocks: int) -> float:
        """The term that is not a sum over blocks: for each kernel size, its crowding times its
        rows' sum times its share of the space's most blocks."""
        return sum(self.kernel_crowding.get(str(k), 0.0) * v * count_by_kernel.get(k, 0) / max_blocks
                   for k, v in by_kernel.items())


@dataclass(frozen=True)
class _Sample:
    """One measured subnet as the fit sees it: its rows summed by group, and its figure."""

    fixed_ms: float                  # stem + head rows
    by_kernel: dict                  # {kernel: sum of that kernel's block rows}
    blocks: int
    measured_ms: float
    count_by_kernel: dict = field(default_factory=dict)   # {kernel: number of blocks}
    max_blocks: int = 1

    @property
    def rows_sum_ms(self) -> float:
        return self.fixed_ms + sum(self.by_kernel.values())

    def crowd(self, k) -> float:
        """Kernel ``k``'s crowding feature (its coefficient's column in the fit)."""
        return Fit(kernel_crowding={str(k): 1.0}).crowding_ms(self.by_kernel, self.count_by_kernel, self.max_blocks)

    def predict(self, fit: Fit) -> float:
        return (fit.intercept_ms + fit.scale * self.fixed_ms + fit.per_block_ms * self.blocks
                + sum(fit.block_scale(k) * v for k, v in self.by_kernel.items())
                + fit.crowding_ms(self.by_kernel, self.count_by_kernel, self.max_blocks))


# Ridge weight pulling the per-kernel scales toward 1 (chosen on the host table's 200 subnets:
# held-out MAPE 5.6 % either way, worst subnet 33 % instead of 61 %).
_RIDGE = 0.1

# Fewest subnets per coefficient before a richer model is tried.
_PER_COEF = 8


def _lstsq(samples: list[_Sample], per_kernel: bool = False) -> Fit:
    """Fit the overhead on measured subnets; ``per_kernel`` gives each kernel size its own scale.

    Least squares on *relative* errors (each equation divided by the measured time): budgets
    and the goal are in percent, and plain least squares lets the few slowest subnets (10x the
    median, on the host's non-XNNPACK 7x7 depthwise kernels) drag the small ones off by 100s of %.
    Coefficients are kept >= 0 (non-negative least squares): an overhead cannot be negative, and
    a negative per-block term would make the cheapest blocks cost less than nothing.

    Why per kernel: the depthwise kernel size decides which implementation runs (on this host,
    int8 7x7 depthwise is not XNNPACK's and its rows cost 12-19x the 5x5 ones), and a layer
    measured alone (its weights and activations hot in cache) is not off from its in-network
    cost by the same factor for every implementation.  Why crowding: in a whole net the 7x7
    blocks cost more the more of them there are (measured / sum of rows: 1.00 with <= 5 of
    them, 1.14 with 6-8, 1.27 with all 20), which no per-block scale can express.
    """
    import numpy as np
    from scipy.optimize import nnls

    n = len(samples)
    if n == 0:
        return Fit()
    y = np.array([x.measured_ms for x in samples], dtype=float)
    w = 1.0 / np.maximum(y, 1e-9)
    b = np.array([x.blocks for x in samples], dtype=float)
    kernels = sorted({k for x in samples for k in x.by_kernel})
    if per_kernel and kernels and n >= _PER_COEF * (2 * len(kernels) + 3):
        cols = [np.ones(n), np.array([x.fixed_ms for x in samples])]
        cols += [np.array([x.by_kernel.get(k, 0.0) for x in samples]) for k in kernels]
        crowd = [np.array([x.crowd(k) for x in samples]) for k in kernels]
        A = np.stack(cols + [b] + crowd, axis=1)
        # Ridge toward 1 (the plain sum of rows) for every scale: a kernel size that is a small
        # share of most subnets' time is otherwise poorly determined, and a fold without the few
        # subnets it dominates fits it at nearly 0 (on the host table, the all-3x3 smallest subnet
        # was then predicted 58 % low).
        r = np.zeros((len(kernels) + 1, A.shape[1]))
        for j in range(len(kernels) + 1):
            r[j, 1 + j] = np.sqrt(_RIDGE)
        c, _ = nnls(np.vstack([A * w[:, None], r]), np.concatenate([y * w, np.full(len(r), np.sqrt(_RIDGE))]))
        nk = len(kernels)
        return Fit(float(c[0]), float(c[1]), float(c[2 + nk]), "relative nnls: intercept, scale of stem+head, "
                   f"scale per kernel size (ridge {_RIDGE:g} toward 1), per block, crowding per kernel size", n,
                   {str(k): float(v) for k, v in zip(kernels, c[2:2 + nk])},
                   {str(k): float(v) for k, v in zip(kernels, c[3 + nk:])})
    s = np.array([x.rows_sum_ms for x in samples], dtype=float)
    if n >= _PER_COEF and np.ptp(b) > 0:
        A = np.stack([np.ones(n), s, b], axis=1)
        (c0, c1, c2), _ = nnls(A * w[:, None], y * w)
        return Fit(float(c0), float(c1), float(c2), "relative nnls lstsq intercept+scale+per_block", n)
    if n >= 3 and np.ptp(s) > 0:
        A = np.stack([np.ones(n), s], axis=1)
        (c0, c1), _ = nnls(A * w[:, None], y * w)
        return Fit(float(c0), float(c1), 0.0, "relative nnls lstsq intercept+scale", n)
    return Fit(float(np.mean(y - s)), 1.0, 0.0, "mean offset", n)


def _max_blocks(space: SearchSpace) -> int:
    return space.num_stages * space.max_depth


def _kernel_sums(space: SearchSpace, arch: Arch, row_ms: Callable[[str], float]) -> tuple[dict, dict]:
    """({kernel: sum of its blocks' rows}, {kernel: number of its blocks})."""
    by_kernel: dict[int, float] = {}
    count: dict[int, int] = {}
    for spec in space.block_specs(arch):
        by_kernel[spec.kernel] = by_kernel.get(spec.kernel, 0.0) + row_ms(spec.key)
        count[spec.kernel] = count.get(spec.kernel, 0) + 1
    return by_kernel, count


def _heldout(samples: list[_Sample], folds: int, per_kernel: bool) -> list[float | None]:
    """Every subnet predicted by the fit on the other folds (seeded assignment)."""
    out: list[float | None] = [None] * len(samples)
    if len(samples) < 2:
        return out
    k = min(folds, len(samples))
    order = list(range(len(samples)))
    random.Random(0).shuffle(order)
    for f in range(k):
        test = set(order[f::k])
        fit = _lstsq([samples[i] for i in range(len(samples)) if i not in test], per_kernel)
        for i in test:
            out[i] = samples[i].predict(fit)
    return out


def _error_stats(errors_pct: list[float]) -> dict:
    import numpy as np

    if not errors_pct:
        return {"n": 0}
    e = np.abs(np.array(errors_pct, dtype=float))
    return {"n": int(e.size), "mape_pct": round(float(e.mean()), 3), "median_ape_pct": round(float(np.median(e)), 3),
            "max_ape_pct": round(float(e.max()), 3),
            "within_5_pct": round(float((e <= 5).mean()), 4), "within_10_pct": round(float((e <= 10).mean()), 4)}


def fit_predictor(table: LatencyTable, *, target_name: str = "", fingerprint: dict | None = None,
                  plot: bool = True, folds: int = FOLDS) -> dict:
    """Fit the overhead on the table's measured subnets, store ``predictor.json`` (fit, rows,
    held-out error distribution) and the PNG beside the table; return the JSON dict.

    Args:
        table: a complete table (every row of its space measured), with measured subnets.
        target_name: stored as ``target`` (default: the table folder's name).
        fingerprint: stored as ``fingerprint`` (default: the table's).
        plot: also write ``predicted_vs_measured.png``.
        folds: k of the k-fold held-out errors and model selection.

    Returns:
        ``{"format", "target", "space", "protocol", "statistic" ("median_ms"|"p90_ms"), "fit"
        (:meth:`Fit.to_dict`), "rows" ({key: ms}), "errors" ({"heldout", "in_sample", "raw_sum":
        error stats in %, "per_subnet": [...]}), "model_selection_heldout_mape_pct", ...}``.

    Raises:
        LatencyError: the table lacks rows (rerun ``edgeeas bench``).
    """
    from ..targets import write_json
    from ..utils import command_line, versions
    from .plot import plot_predicted_vs_measured
    from .predictor import LatencyPredictor

    meta = table.meta()
    space = table.space
    protocol = meta.get("protocol", {})
    col = statistic_column(protocol)
    rows = table.rows()
    missing = [r.key for r in table_rows(space, [int(k[6:]) for k in rows if k.startswith("head_k")] or HEAD_CLASSES)
               if r.key not in rows]
    if missing:
        raise LatencyError(f"{table.path} lacks {len(missing)} rows (e.g. {missing[0]}): rerun `edgeeas bench` "
                           f"to finish the table before fitting")
    base = LatencyPredictor(space, {k: r[col] for k, r in rows.items()}, Fit(), target=target_name)

    samples, names = [], []
    for s in table.subnets():
        arch = space.parse(s["arch"])
        by_kernel, count = _kernel_sums(space, arch, base.row_ms)
        samples.append(_Sample(base.row_ms("stem") + base.head_ms(s["num_classes"]), by_kernel,
                               sum(arch.depths), s[col], count, _max_blocks(space)))
        names.append((s["arch"], s["num_classes"]))

    # Two models, the richer one only if it predicts held-out subnets better (5-fold).
    candidates = {}
    for per_kernel in (False, True):
        h = _heldout(samples, folds, per_kernel)
        errs = [abs(p - x.measured_ms) / x.measured_ms for p, x in zip(h, samples) if p is not None]
        candidates[per_kernel] = (sum(errs) / len(errs) if errs else float("inf"), h)
    per_kernel = candidates[True][0] < candidates[False][0]
    heldout = candidates[per_kernel][1]
    fit = _lstsq(samples, per_kernel)
    selection = {("per_kernel" if pk else "shared_scale"): round(100 * m, 3) for pk, (m, _) in candidates.items()
                 if m != float("inf")}
    per = []
    for (arch, k), x, h in zip(names, samples, heldout):
        pred, y = x.predict(fit), x.measured_ms
        per.append({"arch": arch, "num_classes": k, "blocks": x.blocks, "measured_ms": y,
                    "rows_sum_ms": x.rows_sum_ms, "predicted_ms": pred, "heldout_predicted_ms": h,
                    "error_pct": round(100 * (pred - y) / y, 3),
                    "heldout_error_pct": None if h is None else round(100 * (h - y) / y, 3)})
    table.set_predicted({(p["arch"], p["num_classes"]): (p["heldout_predicted_ms"] if p["heldout_predicted_ms"]
                                                          is not None else p["predicted_ms"]) for p in per})
    out = {
        "format": FORMAT,
        "target": target_name or table.path.parent.name,
        "space": space.to_dict(),
        "protocol": protocol,
        "measured_protocol": meta.get("measured_protocol"),
        "fingerprint": fingerprint if fingerprint is not None else meta.get("fingerprint"),
        "statistic": col,
        "fit": fit.to_dict(),
        "model_selection_heldout_mape_pct": selection,
        "rows": {k: rows[k][col] for k in sorted(rows)},
        "errors": {
            "heldout": _error_stats([p["heldout_error_pct"] for p in per if p["heldout_error_pct"] is not None]),
            "heldout_folds": folds,
            "in_sample": _error_stats([p["error_pct"] for p in per]),
            "raw_sum": _error_stats([100 * (p["rows_sum_ms"] - p["measured_ms"]) / p["measured_ms"] for p in per]),
            "per_subnet": per,
        },
        "created": _now(),
        "command": command_line(),
        "versions": versions(),
    }
    store = TargetStore(table.path.parent)
    write_json(store.predictor_path, out)
    if plot and per:
        plot_predicted_vs_measured(per, out, store.plot_path)
    return out
