"""Measuring a table's missing rows and whole subnets on a target, committing each figure as
it arrives (so a kill loses at most what was in flight)."""
from __future__ import annotations

from pathlib import Path

from ..space import Arch
from .errors import LatencyError
from .export import row_model_path, subnet_model_path
from .rows import SUBNET_CLASSES, RowSpec, _head_ms
from .table import LatencyTable, statistic_column

__all__ = ["measure_rows", "measure_subnets"]


def measure_rows(target, table: LatencyTable, rows: list[RowSpec], cache: Path, *,
                 progress: bool = False, position: int = 0) -> int:
    """Measure the rows the table lacks on ``target``, committing each as it arrives.

    Args:
        target: an :class:`edgeeas.targets.Target` (its ``measure_many`` and ``protocol``).
        table: the target's table; rows it already holds are skipped.
        rows: the rows wanted (:func:`~edgeeas.latency.rows.table_rows`).
        cache: the model cache holding every row's ``.tflite`` (:func:`~edgeeas.latency.export.export_row_models`).
        progress, position: a tqdm bar, at this line (one per parallel target).

    Returns:
        How many rows were measured now.

    Raises:
        LatencyError: a row's model is missing from the cache.
        TargetError: the target failed (rows committed before the failure stay).
    """
    from tqdm import tqdm

    have = table.rows()
    todo = [r for r in rows if r.key not in have]
    if not todo:
        return 0
    by_path = {str(row_model_path(cache, r)): r for r in todo}
    missing = [p for p in by_path if not Path(p).is_file()]
    if missing:
        raise LatencyError(f"model {missing[0]} is missing from the cache (export it first)")
    with tqdm(total=len(todo), desc=f"measure rows on {target.name}", unit="row", position=position,
              disable=not progress, leave=True) as bar:
        def on_result(path, m):
            row = by_path[str(path)]
            table.put_row(row.key, row.kind, m)
            table.set_meta(measured_protocol=m.protocol.to_dict())
            bar.update(1)

        target.measure_many([Path(p) for p in by_path], on_result=on_result)
    return len(todo)


def measure_subnets(target, table: LatencyTable, archs: list[Arch], cache: Path, *,
                    num_classes: int = SUBNET_CLASSES, progress: bool = False, position: int = 0) -> int:
    """Measure the whole subnets the table lacks, committing each as it arrives, with the sum
    of its rows under the target protocol's statistic (``None`` while rows are missing).

    Args:
        archs: the subnets (:func:`~edgeeas.latency.rows.subnet_archs`); their models
            (``num_classes``-way heads) must be in ``cache``.

    Returns:
        How many subnets were measured now.

    Raises:
        TargetError: the target failed (subnets committed before stay).
    """
    from tqdm import tqdm

    have = {(s["arch"], s["num_classes"]) for s in table.subnets()}
    todo = [a for a in archs if (str(a), num_classes) not in have]
    if not todo:
        return 0
    by_path = {str(subnet_model_path(cache, a, num_classes)): a for a in todo}
    rows = table.rows()
    space = table.space
    col = statistic_column(target.protocol)

    def rows_sum(a):
        try:
            keys = ["stem", *(s.key for s in space.block_specs(a))]
            return sum(rows[k][col] for k in keys) + _head_ms({int(k[6:]): r[col] for k, r in rows.items()
                                                               if k.startswith("head_k")}, num_classes)
        except (KeyError, LatencyError):
            return None

    with tqdm(total=len(todo), desc=f"measure subnets on {target.name}", unit="net", position=position,
              disable=not progress, leave=True) as bar:
        def on_result(path, m):
            a = by_path[str(path)]
            table.put_subnet(a, num_classes, m, rows_sum(a))
            bar.update(1)

        target.measure_many([Path(p) for p in by_path], on_result=on_result)
    return len(todo)
