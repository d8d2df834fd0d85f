"""Exporting the table's single-layer models and whole subnets to int8 TFLite, in processes.

The models depend on the search space only, never on the target, so they are exported once
into a shared cache (``<targets root>/_models/<space>-<hash>/``) that the host and every phone
reuse::

    _models/default-1a2b3c4d/stem.tflite
    _models/default-1a2b3c4d/ir_h16_i16_o24_e6_k5_s2.tflite     (row_model_path)
    _models/default-1a2b3c4d/net_d1111-k...-e..._k5.tflite      (subnet_model_path)

Weights are seeded random (latency only).  torch and the converter are imported inside the
functions that build and convert, never at import time.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import zlib
from pathlib import Path
from typing import Iterable

from ..errors import EdgeeasUsageError
from ..space import Arch, SearchSpace
from .errors import LatencyError
from .rows import SUBNET_CLASSES, RowSpec

__all__ = ["model_cache_dir", "row_model_path", "subnet_model_path", "default_export_jobs",
           "export_row_models", "export_subnet_models"]

CALIB_SAMPLES = 8


def _space_hash(space: SearchSpace) -> str:
    return hashlib.sha256(json.dumps(space.to_dict(), sort_keys=True).encode()).hexdigest()[:8]


def model_cache_dir(space: SearchSpace, root: Path | None = None) -> Path:
    """``<targets root>/_models/<space name>-<hash of its table>``: shared by every target."""
    from ..targets import targets_root

    return Path(root or targets_root()) / "_models" / f"{space.name}-{_space_hash(space)}"


def row_model_path(cache: Path, row: RowSpec) -> Path:
    """``<cache>/<row key>.tflite``: the single-layer model of ``row``."""
    return Path(cache) / f"{row.key}.tflite"


def subnet_model_path(cache: Path, arch: Arch, num_classes: int) -> Path:
    """``<cache>/net_<arch>_k<num_classes>.tflite``: a whole subnet with a ``num_classes``-way head."""
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

    from ..nn.blocks import ConvBNReLU, InvertedResidual
    from ..nn.supernet import _Head

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

    from ..nn.supernet import Supernet

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

    from ..export import ExportError, export_tflite_int8

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


def _worker_init(parent_pid: int | None = None) -> None:
    from device_bench.lifetime import die_with_parent

    die_with_parent(parent_pid)  # a kill -9 of bench takes its export workers with it
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
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init,
                                 initargs=(os.getpid(),)) as pool:
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
    """Export the single-layer int8 models of ``rows`` that the cache lacks; returns how many.

    Each model takes the row's NHWC int8 input (``RowSpec.input_chw`` transposed) and is calibrated
    on 8 seeded random tensors.  ``workers`` processes (default :func:`default_export_jobs`),
    spawned, one torch thread each; files are written atomically and are the same bytes
    whichever process made them.  Raises :class:`LatencyError` when a conversion fails."""
    return _export_jobs(space, [(row_model_path(cache, r), "row", r) for r in rows], progress, "export rows",
                        workers)


def export_subnet_models(space: SearchSpace, archs: Iterable[Arch], cache: Path, *,
                         num_classes: int = SUBNET_CLASSES, progress: bool = False, workers: int | None = None) -> int:
    """Export whole-subnet int8 models (random weights: latency only) the cache lacks; returns
    how many.  Input ``[1, H, W, 3]`` int8, output ``num_classes`` int8 logits; otherwise as
    :func:`export_row_models`."""
    jobs = [(subnet_model_path(cache, a, num_classes), "subnet", (a, num_classes)) for a in archs]
    return _export_jobs(space, jobs, progress, "export subnets", workers)
