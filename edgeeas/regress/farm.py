"""The farm: ``farm.yaml`` (which devices, which models) and one job per device, in parallel.

    from edgeeas.regress import load_farm, build_targets, run_on_devices
    farm = load_farm("farm.yaml")                 # Farm; a bad file is a one-line RegressUsageError
    targets = build_targets(farm)                 # one Target per device entry, no connection yet
    res = run_on_devices(targets, job)            # FarmResult: .results, .errors (one line each)

``farm.yaml``::

    devices:                       # one job per device at a time, devices in parallel
      - host                       # this machine (LiteRT interpreter)
      - 192.168.1.20:5555          # an adb serial (USB serial or host:port)
      - pixel                      # a name from targets.yaml
      - {name: board, serial: 10.0.0.5:5555, protocol: {threads: 2}}
    models:                        # optional: default = every model of the baseline
      - out/host/vehicles_1/20ms/model.tflite   # paths (and globs) relative to farm.yaml
      - {name: tiny, path: models/tiny.tflite}
    protocol: {threads: 1, num_runs: 50, warmup_runs: 5}   # device_bench.Protocol fields, for every device
    eval: {seed: 0, random_inputs: 64, max_images: 0}
    data: ../shared/data           # CIFAR-100, for models with a manifest (else $EDGEEAS_DATA / ./data)
    targets_file: targets.yaml     # optional

:func:`run_on_devices` gives every device its own thread, running one job at a time (a
:class:`android_runner.Device` serialises its commands anyway, and two benchmarks on one phone
would disturb each other's figures).  A device that drops out
(:class:`android_runner.AdbConnectionError`: unplugged, Wi-Fi gone, adbd restarted) is retried
``retries`` times after ``retry_delay_s``; the job should therefore be resumable — e.g. commit
rows through ``Target.measure_many(on_result=...)`` and skip rows already on disk, as the
regression run does with what a device measured before it dropped.  Any other error is
reported for that device and not retried.
"""
from __future__ import annotations

import glob
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import EdgeeasError, EdgeeasUsageError

__all__ = ["RegressUsageError", "DeviceEntry", "ModelEntry", "Farm", "load_farm", "build_targets",
           "FarmError", "FarmResult", "run_on_devices"]

log = logging.getLogger(__name__)

# eval: settings when farm.yaml leaves them out (and for baselines that recorded fewer)
EVAL_DEFAULTS = {"seed": 0, "random_inputs": 64, "max_images": 0}
_FARM_FORM = ("expected `devices: [host, SERIAL, HOST:PORT, NAME, {name:, serial:, protocol:}]` and optionally "
              "`models: [PATH, {name:, path:}]`, `protocol: {...}`, `eval: {...}`, `data:`, `targets_file:`")


class RegressUsageError(EdgeeasUsageError):
    """A bad farm or baseline file, or a farm that does not match its baseline (exit 2, one line)."""


# ---- farm.yaml ----------------------------------------------------------------------------------
@dataclass
class DeviceEntry:
    """One entry of ``devices:`` as written (resolved to a Target by :func:`build_targets`)."""

    name: str | None               # explicit name (dict form), else resolved from the target
    spec: str                      # host | serial | host:port | targets.yaml name
    serial: str | None = None
    protocol: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)  # python, benchmark_binary


@dataclass
class ModelEntry:
    """One model of the farm: its key in the baseline and reports, its file and its manifest (or None)."""

    key: str                       # stable id in the baseline and the reports
    path: Path                     # resolved
    written: str                   # path as written (relative to farm.yaml)
    manifest: dict | None = None

    @property
    def sha256(self) -> str:
        """The file's SHA-256, hex (read on every access)."""
        from ..utils import sha256_file

        return sha256_file(self.path)


@dataclass
class Farm:
    """A parsed ``farm.yaml``; paths in it are resolved against :attr:`root`, its folder."""

    path: Path
    devices: list[DeviceEntry]
    models: list[ModelEntry] | None    # None: take the baseline's models
    protocol: dict
    eval: dict
    data: str | None = None
    targets_file: str | None = None

    @property
    def root(self) -> Path:
        """The folder of ``farm.yaml``."""
        return self.path.parent


def load_farm(path: str | os.PathLike) -> Farm:
    """Parse ``farm.yaml`` (the format is in the module docstring).

    Model globs are expanded and each model's ``manifest.json`` (if any) is read; ``eval`` is
    completed with :data:`EVAL_DEFAULTS`.

    Returns:
        The :class:`Farm`; ``models`` is None when the file lists none (take the baseline's).

    Raises:
        RegressUsageError: a missing or malformed file, an unknown key or protocol field, a
            glob that matches nothing, a model listed twice, a manifest that is not JSON
            (one line each, with the expected form).
    """
    path = Path(path)
    if not path.is_file():
        raise RegressUsageError(f"farm file {path} does not exist; {_FARM_FORM}")
    from ..config import ConfigError, FarmConfig, FarmDevice, FarmModel, load_config

    # the whole file against its schema first (edgeeas.config.FarmConfig): one line with the line number
    try:
        cfg = load_config(FarmConfig, path, "farm file", _FARM_FORM)
    except ConfigError as e:
        raise RegressUsageError(f"{e}; {_FARM_FORM}") from None
    devices = []
    for d in cfg.devices:
        if isinstance(d, FarmDevice):
            extra = {k: getattr(d, k) for k in ("python", "benchmark_binary") if getattr(d, k) is not None}
            devices.append(DeviceEntry(d.name, str(d.name or d.serial), d.serial, dict(d.protocol or {}), extra))
        else:
            devices.append(DeviceEntry(None, d.strip()))
    data = {"models": None if cfg.models is None else
            [{"name": m.name, "path": m.path} if isinstance(m, FarmModel) else m for m in cfg.models],
            "protocol": cfg.protocol, "eval": cfg.eval.model_dump(), "data": cfg.data, "targets_file": cfg.targets_file}
    models = None
    if data.get("models") is not None:
        raw = data["models"]
        if not isinstance(raw, list) or not raw:
            raise RegressUsageError(f"farm file {path}: `models` must be a non-empty list of paths; {_FARM_FORM}")
        models = []
        for m in raw:
            name = None
            if isinstance(m, dict):
                name, m = m.get("name"), m["path"]
            if not isinstance(m, str) or not m.strip():
                raise RegressUsageError(f"farm file {path}: bad model entry {m!r}; {_FARM_FORM}")
            if any(c in m for c in "*?["):
                hits = sorted(glob.glob(str(path.parent / m)))
                if not hits:
                    raise RegressUsageError(f"farm file {path}: model pattern {m!r} matches no file")
                for h in hits:
                    rel = os.path.relpath(h, path.parent)
                    models.append(model_entry(path.parent, rel, None))
            else:
                models.append(model_entry(path.parent, m, name))
        keys = [m.key for m in models]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise RegressUsageError(f"farm file {path}: model(s) listed twice: {dup}")
    proto = dict(data.get("protocol") or {})
    ev = {**EVAL_DEFAULTS, **data["eval"]}
    data_path = data.get("data")
    if data_path is not None:
        data_path = str(path.parent / str(data_path))
    tf = data.get("targets_file")
    if tf is not None:
        tf = str(path.parent / str(tf))
    return Farm(path, devices, models, proto, ev, data_path, tf)


def model_entry(root: Path, written: str, name: str | None) -> ModelEntry:
    """The entry of model path ``written`` (relative to ``root`` unless absolute), keyed ``name`` or
    ``written``, with the manifest beside it.

    Raises:
        RegressUsageError: the manifest beside the model is not readable JSON.
    """
    p = Path(written)
    p = p if p.is_absolute() else root / p
    return ModelEntry(name or written, p, written, _read_manifest(p))


def _read_manifest(model: Path) -> dict | None:
    """The ``manifest.json`` beside ``model`` (:func:`edgeeas.manifest.read_manifest`, upgraded to
    the current format) as a dict, or None when there is none."""
    from ..manifest import read_manifest

    mf = model.with_name("manifest.json")
    if not mf.is_file():
        return None
    try:
        return read_manifest(mf).to_dict()
    except EdgeeasError as e:
        raise RegressUsageError(" ".join(str(e).split())) from None


def build_targets(farm: Farm, protocol_override: dict | None = None) -> list:
    """Resolve every device entry to a Target (no connection yet).

    Args:
        farm: the farm.
        protocol_override: Protocol fields that win over the farm's and the device's.

    Returns:
        One target per device entry, in the farm's order (``edgeeas.targets.resolve_target``).

    Raises:
        RegressUsageError: a device whose protocol fields do not make a Protocol.
        EdgeeasError: a device that cannot be resolved (an unknown name, adb unavailable).
    """
    from device_bench import Protocol

    from ..targets import resolve_target

    targets = []
    for d in farm.devices:
        fields = {**farm.protocol, **d.protocol, **(protocol_override or {})}
        try:
            proto = Protocol.from_dict(fields)
        except (ValueError, TypeError) as e:
            raise RegressUsageError(f"farm file {farm.path}: device {d.spec!r}: bad protocol ({e})") from None
        # the one device rule, without $ANDROID_SERIAL: a farm names each of its devices
        if d.spec == "host" and not d.serial:
            t = resolve_target("host", protocol=proto, use_env=False)
        else:
            t = resolve_target(d.name if d.name else (None if d.serial else d.spec),
                               adb_serial=d.serial, targets_file=farm.targets_file, protocol=proto, use_env=False,
                               **d.extra)
        targets.append(t)
    return targets


# ---- one job per device -------------------------------------------------------------------------
class FarmError(EdgeeasError):
    """Some devices failed (one line naming each of them)."""


@dataclass
class FarmResult:
    """What :func:`run_on_devices` gathered, by device name, in the callers' order."""

    results: dict[str, Any] = field(default_factory=dict)        # name -> fn's return value
    errors: dict[str, str] = field(default_factory=dict)         # name -> one-line error
    exceptions: dict[str, BaseException] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no device failed."""
        return not self.errors

    def summary(self) -> str:
        """``done: A, B; failed: C: why`` in one line."""
        done = ", ".join(self.results) or "none"
        failed = "; ".join(f"{n}: {e}" for n, e in self.errors.items()) or "none"
        return f"done: {done}; failed: {failed}"

    def raise_if_failed(self) -> None:
        """Raise :class:`FarmError` naming every failed device, if any failed."""
        if self.errors:
            raise FarmError(f"{len(self.errors)} of {len(self.errors) + len(self.results)} device(s) failed: "
                            + "; ".join(f"{n}: {e}" for n, e in self.errors.items()))


def _name(target) -> str:
    return str(getattr(target, "name", None) or getattr(target, "serial", None) or target)


def run_on_devices(targets: Sequence, fn: Callable[[Any], Any], *, retries: int = 1, retry_delay_s: float = 2.0,
                   on_done: Callable[[str, Any, BaseException | None], None] | None = None) -> FarmResult:
    """``fn(target)`` for every target in parallel (one thread each); never raises for a device's failure.

    Args:
        targets: the devices (named by ``.name``, else ``.serial``, else ``str()``).
        fn: the job; it runs again on the same target after an ``AdbConnectionError``, so it
            should resume rather than restart.
        retries: retries after an ``AdbConnectionError`` (other errors are not retried).
        retry_delay_s: the pause before each retry, in seconds.
        on_done: ``on_done(name, result, error)``, called from the device's thread when it finishes.

    Returns:
        The :class:`FarmResult`.  KeyboardInterrupt in the caller's thread stops waiting; the
        device threads end with their current command.

    Raises:
        FarmError: the same device is listed twice.
    """
    from android_runner import AdbConnectionError

    names = [_name(t) for t in targets]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise FarmError(f"the same device is listed twice: {', '.join(dup)} (one job per device at a time)")
    out = FarmResult()
    lock = threading.Lock()

    def job(target) -> None:
        name = _name(target)
        start = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                value = fn(target)
            except AdbConnectionError as e:
                if attempt <= retries:
                    log.warning("%s dropped (%s): retry %d of %d in %g s", name, e, attempt, retries, retry_delay_s)
                    time.sleep(retry_delay_s)
                    continue
                err: BaseException | None = e
            except Exception as e:  # noqa: BLE001 - one device's failure must not stop the others
                err = e
            else:
                err = None
            break
        with lock:
            out.attempts[name] = attempt
            out.seconds[name] = round(time.monotonic() - start, 3)
            if err is None:
                out.results[name] = value
            else:
                out.errors[name] = " ".join(str(err).split()) or type(err).__name__
                out.exceptions[name] = err
        if on_done:
            on_done(name, None if err else value, err)

    if not targets:
        return out
    with ThreadPoolExecutor(max_workers=len(targets), thread_name_prefix="farm") as pool:
        for f in [pool.submit(job, t) for t in targets]:
            f.result()
    # keep the callers' order
    out.results = {n: out.results[n] for n in names if n in out.results}
    out.errors = {n: out.errors[n] for n in names if n in out.errors}
    return out
