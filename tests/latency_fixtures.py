"""A tiny search space and its host latency table, built once per test session.

The session fixture ``tiny_bench`` (in ``conftest.py``) calls :func:`build_tiny_bench`; test
modules import the space explicitly (``from latency_fixtures import TINY, tiny_protocol``).
The table is real: real int8 exports of every row (11 of them) and of a few whole subnets,
measured by the real runner and LiteRT interpreter.  It lives in one temporary targets root
shared by ``test_latency.py`` and ``test_bench_cli.py`` (the module-level cache makes the
expensive part happen once), so later tests reuse the exported models and measure only.
"""
from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from pathlib import Path

from edgeeas.space import SearchSpace, Stage

__all__ = ["TINY", "PROTO_ARGS", "build_tiny_bench", "tiny_protocol"]

# 2 stages, depth 1 or 2, expand 3 or 6, kernel 3: stem + 8 block rows + 2 heads = 11 rows,
# with a stride-2 first block and a residual second block in each stage.
TINY = SearchSpace(name="tiny-latency-test", stem_channels=8, stages=(Stage(8, 2), Stage(16, 2)),
                   head_channels=32, num_classes=10, depths=(1, 2), expands=(3, 6), kernels=(3,))
PROTO_ARGS = {"warmup_runs": 1, "num_runs": 10}
TINY_SUBNETS = 3

_STATE: dict = {}


def tiny_protocol():
    from device_bench import Protocol

    return Protocol(**PROTO_ARGS)


def build_tiny_bench() -> dict:
    """``{root, target, report}`` of the tiny space's host table, built on the first call."""
    if "root" not in _STATE:
        from edgeeas.latency import bench_targets
        from edgeeas.targets import HostTarget

        root = Path(tempfile.mkdtemp(prefix="edgeeas-latency-test-"))
        atexit.register(shutil.rmtree, root, True)
        (root / "tiny.json").write_text(json.dumps(TINY.to_dict()))
        target = HostTarget(name="tiny", protocol=tiny_protocol(), root=root)
        # two export processes: the parallel path is what every test below reads
        reports = bench_targets([target], TINY, subnets=TINY_SUBNETS, export_jobs=2)
        _STATE.update(root=root, target=target, report=reports["tiny"])
    return _STATE
