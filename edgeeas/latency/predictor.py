"""A target's latency predictor: its table's rows plus the fitted overhead (:mod:`.fit`).

``LatencyPredictor.load(target)`` is the one entry point to a target's predictor (nn-Meter's
``load_latency_predictor`` plays the same part); searches use :meth:`~LatencyPredictor.fixed_ms`,
:meth:`~LatencyPredictor.block_ms` and :meth:`~LatencyPredictor.crowding_ms`, users
:meth:`~LatencyPredictor.predict` and :meth:`~LatencyPredictor.breakdown`.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import EdgeeasUsageError
from ..space import Arch, BlockSpec, SearchSpace
from ..targets import TargetStore
from .errors import LatencyError, MissingRowError
from .fit import Fit, _kernel_sums, _max_blocks
from .rows import SUBNET_CLASSES, _head_ms, head_key
from .table import LatencyTable

__all__ = ["LatencyPredictor", "MARGIN_QUANTILE"]

# The share of held-out subnets a latency budget's safety margin covers (``safety_margin``).
MARGIN_QUANTILE = 0.95


class LatencyPredictor:
    """Latency of any architecture of a space on one target, from its table and fit.

    ``predict(a, k) == fixed_ms(k) + sum(block_ms(s) for s in space.block_specs(a)) + crowding_ms(a)``:
    the sum over blocks is what searches tabulate; ``crowding_ms`` (0 without fitted crowding)
    is the one term that depends on the whole architecture, and searches check it at the end.

    Args:
        space: the search space the rows were measured for.
        rows: ``{row key: ms}`` (:func:`~edgeeas.latency.rows.table_rows` keys).
        fit: the fitted overhead (default: none, the plain sum of rows).
        target, errors, source: the target's name, ``predictor.json``'s ``errors``, the file read.

    Every ``*_ms`` is milliseconds on the target under its table's protocol statistic (median
    or p90).  A row the table lacks raises :class:`MissingRowError`, never counts as 0 ms.

    Example::

        pred = LatencyPredictor.load(resolve_target("host"))
        pred.predict("d23423-k35735573557357-e34634634634634", num_classes=5)   # -> 2.64
    """

    def __init__(self, space: SearchSpace, rows: dict[str, float], fit: Fit | None = None, *,
                 target: str = "", errors: dict | None = None, source: str = ""):
        self.space = space
        self.rows = dict(rows)
        self.fit = fit or Fit()
        self.target = target
        self.errors = errors or {}
        self.source = source
        self._heads = {int(k[6:]): v for k, v in self.rows.items() if k.startswith("head_k")}

    @classmethod
    def load(cls, target) -> "LatencyPredictor":
        """The predictor of a target: its ``predictor.json``, else its bare table (the sum of
        rows under the table protocol's statistic, no fitted overhead).

        Args:
            target: a :class:`~edgeeas.targets.Target`, a :class:`~edgeeas.targets.TargetStore`,
                or a target's folder.

        Raises:
            LatencyError: ``predictor.json`` is unreadable, or the folder has neither file
                (run ``edgeeas bench --target NAME`` first).
        """
        directory = Path(target.directory if hasattr(target, "directory") else target)
        store = TargetStore(directory)
        pj = store.predictor_path
        if pj.is_file():
            try:
                d = json.loads(pj.read_text())
                return cls(SearchSpace.from_dict(d["space"]), {k: float(v) for k, v in d["rows"].items()},
                           Fit.from_dict(d["fit"]),
                           target=d.get("target", directory.name), errors=d.get("errors", {}), source=str(pj))
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise LatencyError(f"{pj} is not a readable predictor ({type(e).__name__}: {e}): "
                                   f"rerun `edgeeas bench`") from None
        db = store.table_path
        if not db.is_file():
            raise LatencyError(f"no latency table in {directory}: run `edgeeas bench --target {directory.name}` first")
        table = LatencyTable(db)
        col = table.statistic
        return cls(table.space, {k: r[col] for k, r in table.rows().items()}, Fit(),
                   target=directory.name, source=str(db))

    def _arch(self, arch) -> Arch:
        return self.space.resolve(arch) if isinstance(arch, str) else self.space.validate(arch)

    def row_ms(self, key: str) -> float:
        """Row ``key``'s table figure (ms); :class:`MissingRowError` if the table lacks it."""
        try:
            return self.rows[key]
        except KeyError:
            raise MissingRowError(f"no latency row {key!r} for target {self.target!r} (space {self.space.name}): "
                                  f"the table is incomplete or from another search space; rerun "
                                  f"`edgeeas bench --target {self.target}`") from None

    def block_ms(self, spec: BlockSpec) -> float:
        """The block's row, scaled, plus the fitted per-block term."""
        return self.fit.block_scale(spec.kernel) * self.row_ms(spec.key) + self.fit.per_block_ms

    def head_ms(self, num_classes: int = SUBNET_CLASSES) -> float:
        """The head row for ``num_classes`` logits (ms): measured, else linear in the class count
        through the nearest measured heads; :class:`EdgeeasUsageError` for ``num_classes < 1``."""
        if num_classes < 1:
            raise EdgeeasUsageError(f"num_classes must be >= 1, got {num_classes}")
        return _head_ms(self._heads, int(num_classes))

    def fixed_ms(self, num_classes: int = SUBNET_CLASSES) -> float:
        """Stem + head (``num_classes`` rows) + fitted intercept: what every subnet pays."""
        return self.fit.intercept_ms + self.fit.scale * (self.row_ms("stem") + self.head_ms(num_classes))

    def crowding_ms(self, arch) -> float:
        """The part of ``predict`` that is not a sum over blocks (``Fit.kernel_crowding``)."""
        if not self.fit.kernel_crowding:
            return 0.0
        by_kernel, count = _kernel_sums(self.space, self._arch(arch), self.row_ms)
        return self.fit.crowding_ms(by_kernel, count, _max_blocks(self.space))

    def predict(self, arch, num_classes: int = SUBNET_CLASSES) -> float:
        """Predicted latency (ms) of ``arch`` (string or :class:`~edgeeas.space.Arch`) with a
        ``num_classes``-way head.  Raises :class:`~edgeeas.space.ArchError` for a malformed architecture,
        :class:`MissingRowError` for a row the table lacks."""
        a = self._arch(arch)
        return (self.fixed_ms(num_classes) + sum(self.block_ms(s) for s in self.space.block_specs(a))
                + self.crowding_ms(a))

    def safety_margin(self, quantile: float = MARGIN_QUANTILE) -> float:
        """How much slower than predicted a subnet runs at the ``quantile`` of the held-out
        measured subnets (``measured / predicted - 1``, >= 0; 0 without measured subnets).
        Searching for ``budget / (1 + margin)`` makes a measured model meet ``budget`` that often."""
        import numpy as np

        per = (self.errors or {}).get("per_subnet") or []
        r = [p["measured_ms"] / p["heldout_predicted_ms"] for p in per
             if p.get("heldout_predicted_ms") and p.get("measured_ms")]
        if not r:
            return 0.0
        return max(0.0, float(np.quantile(r, quantile)) - 1.0)

    def breakdown(self, arch, num_classes: int = SUBNET_CLASSES) -> list[tuple[str, float, float]]:
        """(layer, table row ms, contribution ms) for stem, every block, head and the overhead."""
        a = self._arch(arch)
        f = self.fit
        out = [("stem", self.row_ms("stem"), f.scale * self.row_ms("stem"))]
        out += [(s.key, self.row_ms(s.key), self.block_ms(s)) for s in self.space.block_specs(a)]
        h = self.head_ms(num_classes)
        out.append((head_key(num_classes), h, f.scale * h))
        out.append(("overhead (fitted intercept)", float("nan"), f.intercept_ms))
        if f.kernel_crowding:
            out.append(("crowding (many blocks of one kernel size)", float("nan"), self.crowding_ms(a)))
        return out
