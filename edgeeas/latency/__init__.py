"""Latency tables and the latency predictor of a target.

A **table** holds one row per distinct layer configuration of a search space, in context:
the stem, every inverted-residual block (input size and channels, output channels, expand,
kernel, stride, residual: :attr:`BlockSpec.key`), and the head for a few class counts.  A
row is measured by running an int8 TFLite model of that one layer on the target.  The
**predictor** sums a subnet's rows plus an overhead fitted on end-to-end measurements of
random whole subnets, so that, exactly::

    predict(a, K) == fixed_ms(K) + sum(block_ms(s) for s in space.block_specs(a)) + crowding_ms(a)

The package follows the pipeline, one module a step::

    rows.py       RowSpec, table_rows, head_key, subnet_archs     what to measure
    export.py     export_row_models, export_subnet_models         int8 .tflite models, in processes, cached
    table.py      LatencyTable                                    targets/<name>/latency.sqlite, row by row
    measure.py    measure_rows, measure_subnets                   on a Target, each figure committed
    fit.py        Fit, fit_predictor                              relative NNLS, k-fold model choice
    plot.py       plot_predicted_vs_measured                      the PNG beside predictor.json
    predictor.py  LatencyPredictor                                rows + fit -> ms of any architecture
    bench.py      bench_targets, BenchReport                      all of it on several devices at once

A target's files are addressed by :class:`edgeeas.targets.TargetStore`.  Nothing here
imports torch, the converter or matplotlib at import time.
"""
from __future__ import annotations

from .bench import BenchReport, _parallel, bench_targets
from .errors import LatencyError, MissingRowError, TableMismatchError
from .export import (default_export_jobs, export_row_models, export_subnet_models, model_cache_dir,
                     row_model_path, subnet_model_path)
from .fit import FOLDS, Fit, _lstsq, _Sample, fit_predictor
from .measure import measure_rows, measure_subnets
from .plot import plot_predicted_vs_measured
from .predictor import MARGIN_QUANTILE, LatencyPredictor
from .rows import HEAD_CLASSES, SUBNET_CLASSES, RowSpec, head_key, subnet_archs, table_rows
from .table import FORMAT, LatencyTable, statistic_column

__all__ = [
    "LatencyError", "TableMismatchError", "MissingRowError", "HEAD_CLASSES", "RowSpec",
    "table_rows", "head_key", "model_cache_dir", "row_model_path", "subnet_model_path",
    "export_row_models", "export_subnet_models", "subnet_archs", "LatencyTable",
    "measure_rows", "measure_subnets", "fit_predictor", "LatencyPredictor", "bench_targets",
    "BenchReport",
    # also public, beside the historical list above
    "SUBNET_CLASSES", "FORMAT", "FOLDS", "MARGIN_QUANTILE", "Fit", "default_export_jobs",
    "statistic_column", "plot_predicted_vs_measured",
]
