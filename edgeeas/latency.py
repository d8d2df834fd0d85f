"""Latency tables and the latency predictor of a target.

A **table** holds one row per distinct layer configuration of a search space, in context:
the stem, every inverted-residual block (input size and channels, output channels, expand,
kernel, stride, residual: :attr:`BlockSpec.key`), and the head for a few class counts.  A
row is measured by running an int8 TFLite model of that one layer on the target::

    stem                              3x32x32 -> 16x32x32
    ir_h16_i16_o24_e6_k5_s2           16x16x16 -> 24x8x8    (one block, NHWC int8 I/O)
    head_k5                           80x4x4 -> 5 logits

The models depend on the search space only, never on the target, so they are exported once
into a shared cache (``targets/_models/<space>-<hash>/``) that the host and every phone reuse;
whole-subnet models for the predictor check live there too.

The table is SQLite (``targets/<name>/latency.sqlite``): ``meta`` (space, protocol,
fingerprint, created), ``rows`` and ``subnets``.  Every measured row is committed on its
own as the target reports it, so killing ``bench`` at any moment loses no measured row and
a rerun measures only what is missing.

The **predictor** sums table rows plus a per-target overhead fitted by least squares on
end-to-end measurements of random whole subnets::

    measured(a) ~ intercept + scale * (stem + head(K) + sum(rows of a)) + per_block * blocks(a)

so that, exactly, ``predict(a, K) == fixed_ms(K) + sum(block_ms(s) for s in space.block_specs(a))``
with ``block_ms(s) = scale * row(s) + per_block`` and
``fixed_ms(K) = intercept + scale * (stem + head(K))``.  The per-block term absorbs what a
row measures but a block inside a network does not cost (one interpreter invocation per
single-layer model).  Errors are reported on held-out subnets (k-fold) and stored with the
fit in ``targets/<name>/predictor.json``, with a PNG of predicted vs measured latency.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import random
import sqlite3
import threading
import time
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Sequence

from .errors import EdgeeasError, EdgeeasUsageError
from .space import DEFAULT_SPACE, Arch, BlockSpec, SearchSpace

__all__ = [
    "LatencyError", "TableMismatchError", "MissingRowError", "HEAD_CLASSES", "RowSpec",
    "table_rows", "head_key", "model_cache_dir", "row_model_path", "subnet_model_path",
    "export_row_models", "export_subnet_models", "subnet_archs", "LatencyTable",
    "measure_rows", "measure_subnets", "fit_predictor", "LatencyPredictor", "bench_targets",
    "BenchReport",
]

HEAD_CLASSES = (5, 100)   # head rows measured; other class counts are interpolated
SUBNET_CLASSES = 5        # whole subnets are checked with a one-superclass (5-way) head
FORMAT = "edgeeas-latency/1"
CALIB_SAMPLES = 8
FOLDS = 5


class LatencyError(EdgeeasError):
    """A latency table or predictor cannot be built or read (one line)."""


class TableMismatchError(EdgeeasUsageError):
    """The target's table was measured for another search space or protocol."""


class MissingRowError(LatencyError, KeyError):
    """The table has no row for a layer the predictor was asked about."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ----------------------------------------------------------------------------- rows


@dataclass(frozen=True)
class RowSpec:
    """One table row: what to export (a single layer, in context) and its key."""

    key: str
    kind: str                          # "stem" | "block" | "head"
    input_chw: tuple[int, int, int]
    block: BlockSpec | None = None
    num_classes: int | None = None


def head_key(num_classes: int) -> str:
    return f"head_k{int(num_classes)}"


def table_rows(space: SearchSpace = DEFAULT_SPACE, head_classes: Sequence[int] = HEAD_CLASSES) -> list[RowSpec]:
    """Every distinct row of ``space``: stem, each block configuration in context, heads.

    A block's context depends only on its stage and on whether it is the stage's first
    block (its input size and channels follow from the stage table, not from the depths),
    so the rows are: per stage, first block and later blocks, times expand times kernel.
    """
    r = space.resolution // space.stem_stride
    rows = [RowSpec("stem", "stem", (space.in_channels, space.resolution, space.resolution))]
    seen = set()
    h, cin = r, space.stem_channels
    for s, st in enumerate(space.stages):
        positions = [(0, h, cin, st.stride)]
        hout = (h + st.stride - 1) // st.stride
        if space.max_depth > 1:
            positions.append((1, hout, st.channels, 1))
        for index, hh, ci, stride in positions:
            for e in space.expands:
                for k in space.kernels:
                    spec = BlockSpec(stage=s, index=index, h=hh, cin=ci, cout=st.channels,
                                     expand=e, kernel=k, stride=stride)
                    if spec.key not in seen:
                        seen.add(spec.key)
                        rows.append(RowSpec(spec.key, "block", (ci, hh, hh), block=spec))
        h, cin = hout, st.channels
    hf = space.final_resolution
    for k in sorted(set(int(c) for c in head_classes)):
        if k < 1:
            raise EdgeeasUsageError(f"head class counts must be >= 1, got {k}")
        rows.append(RowSpec(head_key(k), "head", (space.stages[-1].channels, hf, hf), num_classes=k))
    return rows


def _space_hash(space: SearchSpace) -> str:
    return hashlib.sha256(json.dumps(space.to_dict(), sort_keys=True).encode()).hexdigest()[:8]


def model_cache_dir(space: SearchSpace, root: Path | None = None) -> Path:
    """``<targets root>/_models/<space name>-<hash of its table>``: shared by every target."""
    from .targets import targets_root

    return Path(root or targets_root()) / "_models" / f"{space.name}-{_space_hash(space)}"


def row_model_path(cache: Path, row: RowSpec) -> Path:
    return Path(cache) / f"{row.key}.tflite"


def subnet_model_path(cache: Path, arch: Arch, num_classes: int) -> Path:
    return Path(cache) / f"net_{arch}_k{int(num_classes)}.tflite"


def _randomize_bn(module, gen) -> None:
    """BN statistics and affine away from the identity, so no layer is degenerate (a
    zero-initialised residual BN would give the converter an all-zero tensor)."""
    import torch

    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(0.5 + torch.rand(n, generator=gen))
                m.bias.copy_(0.1 * torch.randn(n, generator=gen))
                m.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(n, generator=gen))


def _row_module(space: SearchSpace, row: RowSpec):
    import torch

    from .nn.blocks import ConvBNReLU, InvertedResidual
    from .nn.supernet import _Head

    gen = torch.Generator().manual_seed(zlib.crc32(row.key.encode()))
    torch.manual_seed(zlib.crc32(row.key.encode()))
    if row.kind == "stem":
        m = ConvBNReLU(space.in_channels, space.stem_channels, 3, space.stem_stride)
    elif row.kind == "block":
        b = row.block
        m = InvertedResidual(b.cin, b.cout, b.expand, b.kernel, b.stride)
    else:
        m = _Head(space.stages[-1].channels, space.head_channels, row.num_classes)
    _randomize_bn(m, gen)
    return m.eval(), gen


def default_export_jobs() -> int:
    """Export processes: ``$EDGEEAS_EXPORT_JOBS``, else one per CPU (at most 4)."""
    env = os.environ.get("EDGEEAS_EXPORT_JOBS")
    if env:
        try:
            n = int(env)
        except ValueError:
            raise EdgeeasUsageError(f"EDGEEAS_EXPORT_JOBS must be a positive integer, got {env!r}") from None
        if n < 1:
            raise EdgeeasUsageError(f"EDGEEAS_EXPORT_JOBS must be a positive integer, got {env!r}")
        return n
    return max(1, min(4, os.cpu_count() or 1))


def _build_row(space: SearchSpace, row: RowSpec):
    import torch

    module, gen = _row_module(space, row)
    calib = torch.randn(CALIB_SAMPLES, *row.input_chw, generator=gen)
    return module, calib, row.input_chw, row.kind == "head"


_SUPERNETS: dict[str, object] = {}


def _build_subnet(space: SearchSpace, arch: Arch, num_classes: int):
    """A subnet of a seeded random supernet (random weights: latency only), BN away from identity."""
    import torch

    from .nn.supernet import Supernet

    key = _space_hash(space)
    if key not in _SUPERNETS:
        torch.manual_seed(0)
        net = Supernet(space)
        _randomize_bn(net, torch.Generator().manual_seed(0))
        _SUPERNETS[key] = net.eval()
    sub = _SUPERNETS[key].subnet(arch).restrict_head(list(range(num_classes))).eval()
    gen = torch.Generator().manual_seed(zlib.crc32(str(arch).encode()))
    chw = (space.in_channels, space.resolution, space.resolution)
    return sub, torch.randn(CALIB_SAMPLES, *chw, generator=gen), chw, True


def _export_one(space_dict: dict, kind: str, item, path: str) -> str:
    """Build and export one model (module-level, so export worker processes can run it).

    On one torch thread whatever the caller's setting: calibration sums floats, and with
    another thread count a quantization parameter can round differently, so the same model
    would not be the same file."""
    import torch

    from .export import ExportError, export_tflite_int8

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        space = SearchSpace.from_dict(space_dict)
        module, calib, input_chw, logits = _build_row(space, item) if kind == "row" else _build_subnet(space, *item)
        export_tflite_int8(module, calib, path, input_chw=input_chw, logits=logits)
    except ExportError as e:
        raise LatencyError(f"exporting {Path(path).name} failed: {e}") from None
    finally:
        torch.set_num_threads(threads)
    return path


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)  # one conversion per core; intra-op threads would fight each other


def _export_jobs(space: SearchSpace, jobs: list[tuple[Path, str, object]], progress: bool, desc: str,
                 workers: int | None = None) -> int:
    """Export every ``(path, kind, item)`` whose file is missing, in ``workers`` processes.

    The exports are deterministic (seeded per model), so a model is the same file whichever
    process made it; each is written atomically, so a kill leaves no half file."""
    todo = [(str(p), k, it) for p, k, it in jobs if not Path(p).is_file()]
    if not todo:
        return 0
    from tqdm import tqdm

    _clean_stale_tmp(Path(todo[0][0]).parent)
    workers = min(workers or default_export_jobs(), len(todo))
    sd = space.to_dict()
    with tqdm(total=len(todo), desc=desc, unit="model", disable=not progress, leave=True) as bar:
        if workers <= 1:
            for path, kind, item in todo:
                if not Path(path).is_file():  # another bench process exported it meanwhile
                    _export_one(sd, kind, item, path)
                bar.update(1)
            return len(todo)
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        ctx = multiprocessing.get_context("spawn")  # no fork of a process that holds torch threads
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init) as pool:
            futures = [pool.submit(_export_one, sd, kind, item, path) for path, kind, item in todo]
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    if f.exception() is not None:
                        for p in pending:
                            p.cancel()
                        raise f.exception()
                    bar.update(1)
    return len(todo)


def _clean_stale_tmp(cache: Path, older_than_s: float = 3600.0) -> None:
    """Temp files of exports killed mid-way (an atomic rename never happened)."""
    if not cache.is_dir():
        return
    now = time.time()
    for p in cache.glob(".*.tmp"):
        try:
            if now - p.stat().st_mtime > older_than_s:
                p.unlink()
        except OSError:
            pass


def export_row_models(space: SearchSpace, rows: Iterable[RowSpec], cache: Path, *, progress: bool = False,
                      workers: int | None = None) -> int:
    """Export the single-layer int8 models of ``rows`` that the cache lacks; returns how many."""
    return _export_jobs(space, [(row_model_path(cache, r), "row", r) for r in rows], progress, "export rows",
                        workers)


def export_subnet_models(space: SearchSpace, archs: Iterable[Arch], cache: Path, *,
                         num_classes: int = SUBNET_CLASSES, progress: bool = False, workers: int | None = None) -> int:
    """Export whole-subnet int8 models (random weights: latency only) the cache lacks."""
    jobs = [(subnet_model_path(cache, a, num_classes), "subnet", (a, num_classes)) for a in archs]
    return _export_jobs(space, jobs, progress, "export subnets", workers)


def subnet_archs(space: SearchSpace, n: int, seed: int = 0) -> list[Arch]:
    """The subnets a bench measures end to end: smallest, largest, then seeded random ones
    (the same list every time, so a rerun measures only the missing ones)."""
    if n <= 0:
        return []
    out = [space.smallest(), space.largest()][:n]
    seen = set(out)
    rng = random.Random(seed)
    tries = 0
    while len(out) < n and tries < 100 * n:
        a = space.sample(rng)
        tries += 1
        if a not in seen:
            seen.add(a)
            out.append(a)
    return out


# ----------------------------------------------------------------------------- the table

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rows (
    key TEXT PRIMARY KEY, kind TEXT NOT NULL, count INTEGER NOT NULL,
    median_ms REAL NOT NULL, p90_ms REAL NOT NULL, std_ms REAL NOT NULL,
    runs_us TEXT NOT NULL, measured_at TEXT NOT NULL, attempts INTEGER NOT NULL, command TEXT);
CREATE TABLE IF NOT EXISTS subnets (
    arch TEXT NOT NULL, num_classes INTEGER NOT NULL, median_ms REAL NOT NULL, p90_ms REAL NOT NULL,
    std_ms REAL NOT NULL, count INTEGER NOT NULL, rows_sum_ms REAL, predicted_ms REAL,
    measured_at TEXT NOT NULL, attempts INTEGER NOT NULL, command TEXT,
    PRIMARY KEY (arch, num_classes));
"""

# Protocol fields that change what a figure means; a table keeps one value of each.
_PROTOCOL_KEYS = ("runner", "runner_version", "interpreter", "interpreter_version", "threads", "cpu_mask",
                  "warmup_runs", "num_runs", "min_secs", "warmup_min_secs", "statistic", "use_xnnpack", "passes")


class LatencyTable:
    """``targets/<name>/latency.sqlite``.  Every write is its own transaction."""

    FILENAME = "latency.sqlite"

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, timeout=60)
            conn.execute("PRAGMA synchronous=FULL")
            return conn
        except sqlite3.Error as e:
            raise LatencyError(f"cannot open latency table {self.path}: {e}") from None

    def _q(self, sql: str, args: tuple = (), *, many: bool = False) -> list:
        with self._lock:
            conn = self._connect()
            try:
                with conn:
                    cur = conn.executescript(sql) if many else conn.execute(sql, args)
                    return cur.fetchall()
            except sqlite3.DatabaseError as e:
                raise LatencyError(f"{self.path} is not a readable latency table ({e}): "
                                   f"move it away or rerun with --force") from None
            finally:
                conn.close()

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    def open(cls, directory: Path, space: SearchSpace | None = None, protocol=None, fingerprint: dict | None = None,
             *, create: bool = True, force: bool = False, target_name: str = "") -> "LatencyTable":
        """Open (or create) the table of a target directory, checking it was measured for
        ``space`` under ``protocol``; ``force`` starts it afresh instead."""
        directory = Path(directory)
        path = directory / cls.FILENAME
        if force and create and path.exists():
            for p in (path, directory / "predictor.json", directory / "predicted_vs_measured.png",
                      Path(str(path) + "-journal")):
                if p.exists():
                    p.unlink()
        if not path.exists() and not create:
            raise LatencyError(f"no latency table at {path}: run `edgeeas bench --target "
                               f"{target_name or directory.name}` first")
        directory.mkdir(parents=True, exist_ok=True)
        table = cls(path)
        table._q(_SCHEMA, many=True)
        meta = table.meta()
        if create and "space" not in meta:
            if space is None or protocol is None:
                raise LatencyError(f"{path} has no metadata and cannot be created without a space and protocol")
            table.set_meta(format=FORMAT, space_name=space.name, space=space.to_dict(),
                           protocol=protocol.to_dict(), fingerprint=fingerprint or {}, created=_now(),
                           target=target_name or directory.name)
            return table
        if "space" not in meta:
            raise LatencyError(f"{path} is not a latency table (no metadata): move it away or rerun with --force")
        if space is not None:
            table.check_space(space)
        if protocol is not None:
            table.check_protocol(protocol)
        return table

    def meta(self) -> dict:
        out = {}
        for k, v in self._q("SELECT key, value FROM meta"):
            try:
                out[k] = json.loads(v)
            except ValueError:
                out[k] = v
        return out

    def set_meta(self, **items) -> None:
        with self._lock:
            conn = self._connect()
            try:
                with conn:
                    conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                                     [(k, json.dumps(v, sort_keys=True)) for k, v in items.items()])
            finally:
                conn.close()

    @property
    def space(self) -> SearchSpace:
        try:
            return SearchSpace.from_dict(self.meta()["space"])
        except (KeyError, TypeError, ValueError) as e:
            raise LatencyError(f"{self.path}: unreadable search space in the table ({e})") from None

    def _hint(self) -> str:
        return ("use another target name (--name NAME) for the new table, or --force to discard this one")

    def check_space(self, space: SearchSpace) -> None:
        stored = self.meta().get("space")
        if stored != space.to_dict():
            name = stored.get("name") if isinstance(stored, dict) else stored
            diff = ""
            if isinstance(stored, dict):
                keys = [k for k in space.to_dict() if stored.get(k) != space.to_dict()[k]]
                diff = ", ".join(f"{k} {stored.get(k)} vs {space.to_dict()[k]}" for k in keys[:2])
            raise TableMismatchError(f"{self.path} holds a table for search space {name!r}, not {space.name!r}"
                                     f"{' (' + diff + ')' if diff else ''}: {self._hint()}")

    def check_protocol(self, protocol) -> None:
        stored = self.meta().get("protocol") or {}
        want = protocol.to_dict()
        # tables from before passes existed were measured in one pass
        have = {**stored, "passes": stored.get("passes", 1)} if stored else stored
        diff = [f"{k} {have.get(k)!r} vs {want.get(k)!r}" for k in _PROTOCOL_KEYS
                if have.get(k) != want.get(k)]
        if diff:
            raise TableMismatchError(f"{self.path} was measured under another protocol ({'; '.join(diff[:3])}): "
                                     f"{self._hint()}")

    # -- rows ------------------------------------------------------------------------------
    def rows(self) -> dict[str, dict]:
        cols = ("key", "kind", "count", "median_ms", "p90_ms", "std_ms", "runs_us", "measured_at", "attempts",
                "command")
        out = {}
        for r in self._q(f"SELECT {', '.join(cols)} FROM rows"):
            d = dict(zip(cols, r))
            d["runs_us"] = json.loads(d["runs_us"])
            out[d["key"]] = d
        return out

    def put_row(self, key: str, kind: str, m) -> None:
        self._q("INSERT OR REPLACE INTO rows (key, kind, count, median_ms, p90_ms, std_ms, runs_us, measured_at, "
                "attempts, command) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, kind, int(m.count), float(m.median_ms), float(m.p90_ms), float(m.std_ms),
                 json.dumps([round(float(v), 3) for v in m.runs_us]), _now(), int(m.attempts), m.command))

    def subnets(self) -> list[dict]:
        cols = ("arch", "num_classes", "median_ms", "p90_ms", "std_ms", "count", "rows_sum_ms", "predicted_ms",
                "measured_at", "attempts", "command")
        return [dict(zip(cols, r)) for r in self._q(f"SELECT {', '.join(cols)} FROM subnets ORDER BY rowid")]

    def put_subnet(self, arch: Arch, num_classes: int, m, rows_sum_ms: float | None) -> None:
        self._q("INSERT OR REPLACE INTO subnets (arch, num_classes, median_ms, p90_ms, std_ms, count, rows_sum_ms, "
                "predicted_ms, measured_at, attempts, command) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?)",
                (str(arch), int(num_classes), float(m.median_ms), float(m.p90_ms), float(m.std_ms), int(m.count),
                 rows_sum_ms, _now(), int(m.attempts), m.command))

    def set_predicted(self, values: dict[tuple[str, int], float]) -> None:
        with self._lock:
            conn = self._connect()
            try:
                with conn:
                    conn.executemany("UPDATE subnets SET predicted_ms = ? WHERE arch = ? AND num_classes = ?",
                                     [(v, a, k) for (a, k), v in values.items()])
            finally:
                conn.close()


# ----------------------------------------------------------------------------- measuring


def _statistic(protocol) -> str:
    return "p90_ms" if getattr(protocol, "statistic", "median") == "p90" else "median_ms"


def measure_rows(target, table: LatencyTable, rows: list[RowSpec], cache: Path, *,
                 progress: bool = False, position: int = 0) -> int:
    """Measure the rows the table lacks on ``target``, committing each as it arrives."""
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
    """Measure the whole subnets the table lacks, committing each as it arrives."""
    from tqdm import tqdm

    have = {(s["arch"], s["num_classes"]) for s in table.subnets()}
    todo = [a for a in archs if (str(a), num_classes) not in have]
    if not todo:
        return 0
    by_path = {str(subnet_model_path(cache, a, num_classes)): a for a in todo}
    rows = table.rows()
    space = table.space
    col = _statistic(target.protocol)

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


# ----------------------------------------------------------------------------- the predictor


def _head_ms(heads: dict[int, float], k: int) -> float:
    """Head latency for ``k`` classes: the measured row, else linear in ``k`` through the two
    nearest measured class counts (a head is a 1x1 conv plus a K-row linear layer)."""
    if not heads:
        raise MissingRowError("the table has no head row (head_k<K>): the table is incomplete, rerun `edgeeas bench`")
    if k in heads:
        return heads[k]
    ks = sorted(heads)
    if len(ks) == 1:
        return heads[ks[0]]
    lo, hi = (ks[0], ks[1]) if k < ks[0] else (ks[-2], ks[-1]) if k > ks[-1] else \
        max((a, b) for a, b in zip(ks, ks[1:]) if a < k < b)
    return heads[lo] + (heads[hi] - heads[lo]) * (k - lo) / (hi - lo)


@dataclass
class Fit:
    """predicted = intercept + scale * (stem + head) + sum over blocks of
    ((kernel_scales[kernel] or scale) * row + per_block_ms) + crowding (:meth:`crowding_ms`)."""

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
        return {"intercept_ms": self.intercept_ms, "scale": self.scale, "per_block_ms": self.per_block_ms,
                "method": self.method, "n": self.n, "kernel_scales": dict(self.kernel_scales),
                "kernel_crowding": dict(self.kernel_crowding)}

    @classmethod
    def from_dict(cls, d: dict) -> "Fit":
        return cls(float(d["intercept_ms"]), float(d["scale"]), float(d["per_block_ms"]), d.get("method", ""),
                   int(d.get("n", 0)), {str(k): float(v) for k, v in (d.get("kernel_scales") or {}).items()},
                   {str(k): float(v) for k, v in (d.get("kernel_crowding") or {}).items()})

    def block_scale(self, kernel: int) -> float:
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


# The share of held-out subnets a latency budget's safety margin covers (``safety_margin``).
MARGIN_QUANTILE = 0.95

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
    held-out error distribution) and the PNG beside the table; return the JSON dict."""
    from .targets import write_json
    from .utils import command_line, versions

    meta = table.meta()
    space = table.space
    protocol = meta.get("protocol", {})
    col = "p90_ms" if protocol.get("statistic") == "p90" else "median_ms"
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
    write_json(table.path.parent / "predictor.json", out)
    if plot and per:
        _plot(per, out, table.path.parent / "predicted_vs_measured.png")
    return out


def _plot(per: list[dict], out: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .utils import save_figure

    y = [p["measured_ms"] for p in per]
    pred = [p["heldout_predicted_ms"] if p["heldout_predicted_ms"] is not None else p["predicted_ms"] for p in per]
    raw = [p["rows_sum_ms"] for p in per]
    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=120)
    lo, hi = min(y + pred) * 0.9, max(y + pred) * 1.1
    ax.fill_between([lo, hi], [lo * 0.9, hi * 0.9], [lo * 1.1, hi * 1.1], color="0.9", label="±10 %")
    ax.plot([lo, hi], [lo, hi], color="0.4", lw=1)
    ax.scatter(y, raw, s=8, color="tab:orange", alpha=0.6, label="sum of rows (no fit)")
    ax.scatter(y, pred, s=10, color="tab:blue", label="predicted (held-out)")
    e = out["errors"]["heldout"] if out["errors"]["heldout"].get("n") else out["errors"]["in_sample"]
    ax.set_title(f"{out['target']}: MAPE {e.get('mape_pct', float('nan')):.2f} %, "
                 f"{100 * e.get('within_10_pct', float('nan')):.1f} % within ±10 % (n={e.get('n', 0)})", fontsize=9)
    ax.set_xlabel("measured latency (ms)")
    ax.set_ylabel("predicted latency (ms)")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, max(hi, max(raw) * 1.05))
    if hi / max(lo, 1e-12) > 20:  # latencies over decades: log axes keep the small subnets visible
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    save_figure(fig, path)


class LatencyPredictor:
    """Latency of any architecture of a space on one target, from its table and fit.

    ``predict(a, k) == fixed_ms(k) + sum(block_ms(s) for s in space.block_specs(a)) + crowding_ms(a)``:
    the sum over blocks is what searches tabulate; ``crowding_ms`` (0 without fitted crowding)
    is the one term that depends on the whole architecture, and searches check it at the end.
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
        """From a :class:`~edgeeas.targets.Target` or its directory: ``predictor.json``, else
        the bare table (sum of rows, no fitted overhead)."""
        directory = Path(target.directory if hasattr(target, "directory") else target)
        pj = directory / "predictor.json"
        if pj.is_file():
            try:
                d = json.loads(pj.read_text())
                return cls(SearchSpace.from_dict(d["space"]), {k: float(v) for k, v in d["rows"].items()},
                           Fit.from_dict(d["fit"]),
                           target=d.get("target", directory.name), errors=d.get("errors", {}), source=str(pj))
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise LatencyError(f"{pj} is not a readable predictor ({type(e).__name__}: {e}): "
                                   f"rerun `edgeeas bench`") from None
        db = directory / LatencyTable.FILENAME
        if not db.is_file():
            raise LatencyError(f"no latency table in {directory}: run `edgeeas bench --target {directory.name}` first")
        table = LatencyTable(db)
        meta = table.meta()
        col = "p90_ms" if (meta.get("protocol") or {}).get("statistic") == "p90" else "median_ms"
        return cls(table.space, {k: r[col] for k, r in table.rows().items()}, Fit(),
                   target=directory.name, source=str(db))

    def _arch(self, arch) -> Arch:
        return self.space.parse(arch) if isinstance(arch, str) else self.space.validate(arch)

    def row_ms(self, key: str) -> float:
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


# ----------------------------------------------------------------------------- bench


@dataclass
class BenchReport:
    target: str
    rows_measured: int = 0
    rows_total: int = 0
    subnets_measured: int = 0
    subnets_total: int = 0
    predictor: dict | None = None
    error: str | None = None
    seconds: float = 0.0
    directory: str = ""
    extra: dict = field(default_factory=dict)


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    msg = text[0] if text else ""
    return msg if isinstance(e, EdgeeasError) else f"{type(e).__name__}: {msg}"


def _parallel(targets: list, fn: Callable, reports: dict) -> None:
    """Run ``fn(target, position)`` on every target still without an error, one thread per
    target; a failure is recorded in its report and spares the others."""
    live = [t for t in targets if reports[t.name].error is None]

    def run(t, i):
        try:
            fn(t, i)
        except BaseException as e:  # noqa: BLE001 - one device's failure must not stop the others
            reports[t.name].error = _one_line(e)

    if len(live) == 1:
        run(live[0], 0)
        return
    threads = [threading.Thread(target=run, args=(t, i), name=f"bench-{t.name}", daemon=True)
               for i, t in enumerate(live)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()


def bench_targets(targets: list, space: SearchSpace = DEFAULT_SPACE, *, subnets: int = 100, seed: int = 0,
                  head_classes: Sequence[int] = HEAD_CLASSES, force: bool = False, progress: bool = False,
                  log: Callable[[str], None] = lambda m: None, cache_root: Path | None = None,
                  export_jobs: int | None = None) -> dict[str, BenchReport]:
    """Build or resume the latency table of every target (in parallel, one thread each), then
    measure ``subnets`` whole subnets and fit and store each target's predictor.

    Models are exported once into the shared cache.  A target that fails is reported in its
    :class:`BenchReport` (``error``) and keeps every row it measured; the others go on.
    Table mismatches (another space or protocol) raise before anything is measured.
    """
    names = [t.name for t in targets]
    if len(set(names)) != len(names):
        raise EdgeeasUsageError(f"two targets share a name: {names}; give each its own")
    rows = table_rows(space, head_classes)
    archs = subnet_archs(space, subnets, seed)
    cache = model_cache_dir(space, cache_root or (targets[0].directory.parent if targets else None))
    reports = {t.name: BenchReport(t.name, rows_total=len(rows), subnets_total=len(archs),
                                   directory=str(t.directory)) for t in targets}
    t0 = time.perf_counter()
    tables, fingerprints = {}, {}

    # Reach every device first (its fingerprint): an unreachable one gets no table directory.
    def fingerprint(t, _i):
        fingerprints[t.name] = t.fingerprint()

    _parallel(targets, fingerprint, reports)
    live = [t for t in targets if reports[t.name].error is None]
    # Then open the tables: another space or protocol stops everything before any work.
    for t in live:
        tables[t.name] = LatencyTable.open(t.directory, space, t.protocol, fingerprints[t.name], force=force,
                                           target_name=t.name)
    from .targets import write_json

    for t in live:
        tab, fp = tables[t.name], fingerprints[t.name]
        p = t.protocol
        log(f"{t.describe()}: table {tab.path} ({space.name}: {len(rows)} rows, {len(tab.rows())} measured; "
            f"{p.threads} thread(s), {p.warmup_runs}+{p.num_runs} runs)")
        if not tab.meta().get("fingerprint"):
            tab.set_meta(fingerprint=fp)
        tab.set_meta(fingerprint_last=fp)
        write_json(t.directory / "fingerprint.json", fp)
        write_json(t.directory / "protocol.json", t.protocol.to_dict())

    have = {n: set(tab.rows()) for n, tab in tables.items()}
    need = [r for r in rows if any(r.key not in have[t.name] for t in live)]
    if need:
        log(f"exporting {len([r for r in need if not row_model_path(cache, r).is_file()])} of {len(rows)} "
            f"single-layer models into {cache}")
    export_row_models(space, need, cache, progress=progress, workers=export_jobs)

    def do_rows(t, i):
        te = time.perf_counter()
        reports[t.name].rows_measured = measure_rows(t, tables[t.name], rows, cache, progress=progress, position=i)
        reports[t.name].extra["rows_seconds"] = round(time.perf_counter() - te, 1)

    _parallel(targets, do_rows, reports)

    if archs:
        have_s = {n: {(s["arch"], s["num_classes"]) for s in tab.subnets()} for n, tab in tables.items()}
        need_a = [a for a in archs if any((str(a), SUBNET_CLASSES) not in have_s[t.name]
                                          for t in targets if reports[t.name].error is None)]
        if need_a:
            log(f"exporting up to {len(need_a)} subnet models into {cache}")
        export_subnet_models(space, need_a, cache, progress=progress, workers=export_jobs)

        def do_subnets(t, i):
            reports[t.name].subnets_measured = measure_subnets(t, tables[t.name], archs, cache,
                                                               progress=progress, position=i)

        _parallel(targets, do_subnets, reports)

    def do_fit(t, _i):
        reports[t.name].predictor = fit_predictor(tables[t.name], target_name=t.name,
                                                  fingerprint=fingerprints.get(t.name))

    _parallel(targets, do_fit, reports)
    for r in reports.values():
        r.seconds = round(time.perf_counter() - t0, 1)
    return reports
