"""``edgeeas bench``'s engine: build or resume the tables of several targets in parallel (one
thread per device), measure whole subnets and fit each target's predictor.

    reports = bench_targets([resolve_target("host"), resolve_target("pixel")], subnets=100)
    reports["pixel"].error        # None, or the one-line reason that device stopped

Models are exported once into the shared cache (:mod:`.export`) for every target.
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from ..errors import EdgeeasError, EdgeeasUsageError
from ..space import DEFAULT_SPACE, SearchSpace
from .errors import EmulatedDeviceError, TableMismatchError
from .export import export_row_models, export_subnet_models, model_cache_dir, row_model_path
from .fit import fit_predictor
from .measure import measure_rows, measure_subnets
from .rows import HEAD_CLASSES, SUBNET_CLASSES, subnet_archs, table_rows
from .table import LatencyTable

__all__ = ["BenchReport", "bench_targets", "table_lock", "TableBusyError"]


@dataclass
class BenchReport:
    """What :func:`bench_targets` did on one target: rows and subnets (``*_total`` wanted,
    ``*_measured`` measured by this run), the ``predictor.json`` dict, ``error`` (one line, or
    ``None``), wall ``seconds`` since the bench started, the target's ``directory``."""

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


class TableBusyError(EdgeeasError):
    """Another process is measuring into the same target's table."""


@contextmanager
def table_lock(directory: Path, name: str):
    """Hold the lock of the table in ``directory`` (``.NAME.lock`` beside it: an exclusive
    ``flock``, released by the kernel even on ``kill -9``), or raise :class:`TableBusyError`
    naming the holder (pid, host, start time, command) in one line."""
    import fcntl
    import json
    import os
    import socket

    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    path = directory.parent / f".{directory.name}.lock"
    f = open(path, "a+")
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            try:
                h = json.loads(f.read() or "{}")
            except ValueError:
                h = {}
            raise TableBusyError(
                f"target {name}: its table {directory} is being measured by pid {h.get('pid', '?')} on "
                f"{h.get('host', '?')} since {h.get('since', '?')} (`{h.get('command', '?')}`); wait for it to "
                f"finish, or stop it and rerun") from None
        from ..utils import command_line

        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": command_line(),
                            "since": time.strftime("%Y-%m-%d %H:%M:%S")}))
        f.flush()
        yield path
    finally:
        f.close()  # releases the lock


def bench_targets(targets: list, space: SearchSpace = DEFAULT_SPACE, **kwargs) -> dict[str, BenchReport]:
    """:func:`_bench_targets` holding every target's :func:`table_lock`: two ``bench`` processes
    on one table would both measure everything and the last one would win ``predictor.json``;
    the second one stops at once with a one-line :class:`TableBusyError` naming the first."""
    import contextlib

    names = [t.name for t in targets]
    if len(set(names)) != len(names):
        raise EdgeeasUsageError(f"two targets share a name: {names}; give each its own")
    with contextlib.ExitStack() as stack:
        for t in targets:
            stack.enter_context(table_lock(t.directory, t.name))
        return _bench_targets(targets, space, **kwargs)


def _bench_targets(targets: list, space: SearchSpace = DEFAULT_SPACE, *, subnets: int = 100, seed: int = 0,
                   head_classes: Sequence[int] = HEAD_CLASSES, force: bool = False, progress: bool = False,
                   log: Callable[[str], None] = lambda m: None, cache_root: Path | None = None,
                   export_jobs: int | None = None, allow_emulated: bool = False) -> dict[str, BenchReport]:
    """Build or resume the latency table of every target (in parallel, one thread each), then
    measure ``subnets`` whole subnets and fit and store each target's predictor.

    Models are exported once into the shared cache.  A target that fails is reported in its
    :class:`BenchReport` (``error``) and keeps every row it measured; the others go on.
    Table mismatches (another space or protocol) raise before anything is measured.

    Args:
        targets: :class:`edgeeas.targets.Target` objects with distinct names.
        space: the search space; its rows with heads for ``head_classes``.
        subnets, seed: how many whole subnets (:func:`~edgeeas.latency.rows.subnet_archs`).
        force: start every table afresh (see :meth:`LatencyTable.open`).
        progress, log: tqdm bars; one-line progress messages.
        allow_emulated: build tables on emulated devices too (fingerprint ``emulated``, e.g. the
            Android emulator or the arm64 test device); by default they are refused, since
            emulation is 40-90x slower than a phone and its table would pass for one.
        cache_root: where ``_models/`` lives (default: beside the first target's folder).
        export_jobs: export processes (default :func:`~edgeeas.latency.export.default_export_jobs`).

    Returns:
        ``{target name: BenchReport}``; each target's folder gets ``latency.sqlite``,
        ``predictor.json``, the plot, ``fingerprint.json`` and ``protocol.json``.

    Raises:
        EdgeeasUsageError: two targets share a name.
        EmulatedDeviceError: a device is emulated and ``allow_emulated`` is false, before any table is opened.
        TableMismatchError: a table holds another space or protocol, or was measured on another device
            (:func:`edgeeas.targets.same_device`), before any measuring.
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
    emulated = [t for t in live if fingerprints[t.name].get("emulated")]
    if emulated and not allow_emulated:
        t = emulated[0]
        raise EmulatedDeviceError(f"{t.describe()} is emulated ({fingerprints[t.name].get('hardware') or 'qemu'}): "
                                  f"its latency means nothing on a phone; bench a real device, or pass "
                                  f"--allow-emulated to build a table anyway (testing the pipeline)")
    for t in emulated:
        log(f"{t.describe()}: emulated device: its table times the emulator, not a phone")
    # Then open the tables: another space or protocol stops everything before any work.
    for t in live:
        tables[t.name] = LatencyTable.open(t.directory, space, t.protocol, fingerprints[t.name], force=force,
                                           target_name=t.name)
    # A table is one device's: resuming it on another (another kind, serial or CPU) would mix rows.
    from ..targets import describe_fingerprint, same_device

    for t in live:
        stored = tables[t.name].meta().get("fingerprint")
        if stored and not same_device(stored, fingerprints[t.name]):
            raise TableMismatchError(f"{tables[t.name].path} was measured on {describe_fingerprint(stored)}, and "
                                     f"this run is on {describe_fingerprint(fingerprints[t.name])}: resume it on "
                                     f"the first device, use another --name for a new table, or --force to discard it")
    for t in live:
        tab, fp = tables[t.name], fingerprints[t.name]
        p = t.protocol
        log(f"{t.describe()}: table {tab.path} ({space.name}: {len(rows)} rows, {len(tab.rows())} measured; "
            f"{p.threads} thread(s), {p.warmup_runs}+{p.num_runs} runs)")
        if not tab.meta().get("fingerprint"):
            tab.set_meta(fingerprint=fp)
        tab.set_meta(fingerprint_last=fp)
        t.store.write_setup(fp, t.protocol)

    have = {n: set(tab.rows()) for n, tab in tables.items()}
    need = [r for r in rows if any(r.key not in have[t.name] for t in live)]
    if need:
        log(f"exporting {len([r for r in need if not row_model_path(cache, r).is_file()])} of {len(rows)} "
            f"single-layer models into {cache}")
    export_row_models(space, need, cache, progress=progress, workers=export_jobs)

    # "measured now" counts what this run committed to the table, read from the table itself:
    # a device that drops midway still reports the rows it committed before the drop.
    def do_rows(t, i):
        te = time.perf_counter()
        before = len(tables[t.name].rows())
        try:
            measure_rows(t, tables[t.name], rows, cache, progress=progress, position=i)
        finally:
            reports[t.name].rows_measured = len(tables[t.name].rows()) - before
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
            before = len(tables[t.name].subnets())
            try:
                measure_subnets(t, tables[t.name], archs, cache, progress=progress, position=i)
            finally:
                reports[t.name].subnets_measured = len(tables[t.name].subnets()) - before

        _parallel(targets, do_subnets, reports)

    def do_fit(t, _i):
        reports[t.name].predictor = fit_predictor(tables[t.name], target_name=t.name,
                                                  fingerprint=fingerprints.get(t.name))

    _parallel(targets, do_fit, reports)
    for r in reports.values():
        r.seconds = round(time.perf_counter() - t0, 1)
    return reports
