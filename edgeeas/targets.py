"""Targets: a device plus a measurement protocol, and the directory that holds its figures.

``host`` runs ``device_bench/runner.py`` on this machine with the LiteRT interpreter (the
embedded default: no phone needed).  Other kinds register themselves with
:func:`register_target_kind` (the adb kind lives in ``edgeeas.adb_target``) and are chosen by
:func:`resolve_target` from ``--target NAME`` / ``--adb-serial SERIAL``.

Every kind offers the same few operations, so latency tables, the predictor, validation and
regression checks run unchanged on any of them::

    t = resolve_target("host")
    t.measure_many([a.tflite, b.tflite])        -> {path: Measurement}
    t.evaluate(model.tflite, inputs)            -> outputs (the runner's evaluation mode)
    t.fingerprint()                             -> dict (CPU, cores, governor, interpreter ...)
    t.directory                                 -> targets/<name>/ (table, predictor, plots)
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from .errors import EdgeeasError, EdgeeasUsageError

__all__ = ["Target", "HostTarget", "TargetError", "register_target_kind", "resolve_target",
           "targets_root", "TARGET_KINDS"]


class TargetError(EdgeeasError):
    """A target cannot be reached, or its measurements cannot be made (one line)."""


def targets_root() -> Path:
    """Where targets keep their tables: ``$EDGEEAS_TARGETS``, else ``./targets``."""
    return Path(os.environ.get("EDGEEAS_TARGETS") or "targets")


_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")


class Target(ABC):
    kind: str = "?"

    def __init__(self, name: str, protocol=None, root: Path | None = None):
        from device_bench import Protocol

        if not _NAME_RE.match(name):
            raise EdgeeasUsageError(f"bad target name {name!r}: use letters, digits, '_', '-', '.', ':'")
        self.name = name
        self.protocol = protocol or Protocol()
        self._root = root

    @property
    def directory(self) -> Path:
        # ':' (host:port serials) is not welcome in file names everywhere
        return (self._root or targets_root()) / self.name.replace(":", "_")

    @abstractmethod
    def fingerprint(self) -> dict:
        """What the figures were measured on (stored with every table)."""

    @abstractmethod
    def measure_many(self, paths: Iterable[Path], on_result: Callable | None = None) -> dict:
        """Measure ``.tflite`` files under ``self.protocol``: ``{str(path): Measurement}``.
        ``on_result(path, measurement)`` is called as each result arrives (to commit it)."""

    def measure(self, path: Path):
        return self.measure_many([path])[str(path)]

    @abstractmethod
    def evaluate(self, model: Path, inputs: np.ndarray) -> np.ndarray:
        """Run ``model`` over every row of ``inputs`` (its input dtype), return the raw outputs."""

    def describe(self) -> str:
        return f"{self.kind} target {self.name!r}"


def measure_in_passes(keys: list[str], chunk: int, passes: int, measure_chunk: Callable[[list[str]], dict],
                      on_result: Callable | None = None) -> dict:
    """Measure ``keys`` chunk by chunk, each chunk in ``passes`` sweeps (``measure_chunk(part)``
    -> ``{key: Measurement}``, one runner process per sweep), combined by their median
    (:func:`device_bench.combine_passes`). ``on_result`` gets each combined figure as its chunk
    ends, so a kill loses at most one chunk."""
    from device_bench import combine_passes

    order = list(dict.fromkeys(keys))
    out: dict = {}
    for i in range(0, len(order), chunk):
        part = order[i:i + chunk]
        sweeps = [measure_chunk(part) for _ in range(passes)]
        for k in part:
            out[k] = combine_passes([s[k] for s in sweeps])
            if on_result:
                on_result(k, out[k])
    return out


TARGET_KINDS: dict[str, type[Target]] = {}


def register_target_kind(kind: str):
    def deco(cls):
        cls.kind = kind
        TARGET_KINDS[kind] = cls
        return cls
    return deco


@register_target_kind("host")
class HostTarget(Target):
    """This machine, through the very runner that is pushed to devices."""

    def __init__(self, name: str = "host", protocol=None, root: Path | None = None):
        super().__init__(name, protocol, root)

    def fingerprint(self) -> dict:
        from device_bench import host_fingerprint

        return {"kind": "host", **host_fingerprint()}

    def measure_many(self, paths: Iterable[Path], on_result: Callable | None = None, chunk: int = 8) -> dict:
        from device_bench import RunnerError, measure_many_host

        def sweep(part: list[str]) -> dict:
            # One runner process per sweep of a chunk: the interpreter import is amortised over the
            # chunk, and a process start (~0.5 s) plus the chunk's runs separate its sweeps in time
            # (see device_bench.protocol on passes).
            try:
                return measure_many_host(part, self.protocol)
            except RunnerError as e:
                raise TargetError(f"host measurement failed: {e}") from None

        return measure_in_passes([str(p) for p in paths], chunk, self.protocol.passes, sweep, on_result)

    def evaluate(self, model: Path, inputs: np.ndarray) -> np.ndarray:
        from device_bench import RUNNER_PATH

        with tempfile.TemporaryDirectory(prefix="edgeeas-eval-") as tmp:
            inp, outp = Path(tmp) / "inputs.npy", Path(tmp) / "outputs.npy"
            np.save(inp, inputs)
            cmd = [sys.executable, str(RUNNER_PATH), f"--graph={model}", f"--eval_input={inp}",
                   f"--eval_output={outp}", f"--num_threads={self.protocol.threads}"]
            proc = subprocess.run(cmd, capture_output=True, text=True,
                                  env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
            if proc.returncode != 0:
                err = [ln for ln in proc.stderr.splitlines() if ln.strip()]
                raise TargetError(f"evaluating {model} on the host failed: {err[-1] if err else 'no output'}")
            return np.load(outp)


def resolve_target(name: str | None = None, *, adb_serial: str | None = None, targets_file: str | None = None,
                   protocol=None, **kwargs) -> Target:
    """``host`` (the default), a name from ``targets.yaml``, or an adb serial.

    Extra keywords (e.g. ``benchmark_binary``) go to the adb kind; ``None`` values are dropped.
    """
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if adb_serial or (name and name != "host"):
        if "adb" not in TARGET_KINDS:
            try:
                import edgeeas.adb_target  # noqa: F401  (registers the adb kind)
            except ImportError as e:
                raise TargetError(f"adb targets are unavailable here ({e})") from None
        return TARGET_KINDS["adb"].resolve(name=name, adb_serial=adb_serial, targets_file=targets_file,
                                           protocol=protocol, **kwargs)
    if kwargs:
        raise EdgeeasUsageError(f"{', '.join('--' + k.replace('_', '-') for k in sorted(kwargs))} "
                                f"applies to adb targets only, not to the host target")
    return HostTarget(protocol=protocol)


def write_json(path: Path, obj) -> None:
    from .utils import atomic_write_text

    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
