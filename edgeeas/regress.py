"""Device-farm regression checks: latency and accuracy of shipped models against a baseline.

    from edgeeas.regress import load_farm, load_baseline, run_regress, Tolerances
    farm = load_farm("farm.yaml")
    res = run_regress(farm, "baseline.json", tolerances=Tolerances(latency_rel=0.10))
    res.exit_code          # 0 all pass, 1 a regression, 2 an unreachable device / infrastructure error
    write_reports(res, "regress-out")   # junit.xml, regress.json, report.html (+ PNGs)

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

Latency check (noise-aware).  ``v`` is the protocol's statistic (median by default) and
``s = (p90 - median) / median`` the measured spread of one measurement::

    ratio   = v_now / v_base - 1
    allowed = latency_rel + spread_weight * (min(s_base, spread_cap) + min(s_now, spread_cap))
    fail  if ratio > allowed, confirmed by ``confirm`` re-measurements (the lowest value is kept)

Defaults 0.10, 1.0, 0.10, confirm 2.  The spread terms widen the tolerance as much as the two
measurements are noisy: on a quiet phone (s ~ 1-2 %) the check stays near ``latency_rel``; on
a loaded machine bursts of stolen CPU both widen the run distribution and shift one
invocation's median, and the widening absorbs that shift instead of raising a false alarm.
The cap keeps one burst-ridden measurement (p90 at several times the median: seen on the
loaded 2-core CI machine) from widening the check into uselessness; such bursts mostly
inflate the tail, and the confirming re-measurements deal with the rest.  A suspected
regression is re-measured before it is reported (a real slowdown reproduces, a burst of
load rarely does twice).  Baselines are recorded as the middle of ``repeats`` measurements
so that one lucky (fast) baseline does not make every later run look slow.

Accuracy check (absolute, percentage points) — one metric, two evaluation modes:

* ``labels``: the model has a ``manifest.json`` beside it (``edgeeas specialize``) with
  ``classes``: the CIFAR-100 test images of those fine classes, normalized with the
  manifest's mean/std and quantized with the model's input scale/zero point, run on the
  device; ``accuracy_pct`` = top-1 % against the true labels (output row i = classes[i]).
* ``agreement``: no manifest (any ``.tflite``): a fixed seeded tensor of inputs
  (``eval.seed``, ``eval.random_inputs`` rows); the baseline records the argmax of its
  outputs, and ``accuracy_pct`` = % of rows whose current argmax equals the baseline's.
  The baseline itself scores 100 by definition.

Both fail when ``accuracy_pct_now < accuracy_pct_base - accuracy_pp``.  The baseline's
evaluation settings (seed, rows, images) are reused when checking, so a check always
compares the same inputs.  In ``labels`` mode the agreement with the baseline's argmax is
reported too, as information.
"""
from __future__ import annotations

import dataclasses
import glob
import json
import logging
import math
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import EdgeeasError, EdgeeasUsageError

__all__ = ["Farm", "DeviceEntry", "ModelEntry", "Tolerances", "RegressResult", "Case", "RegressUsageError",
           "load_farm", "load_baseline", "run_regress", "write_reports", "BASELINE_FORMAT", "BASELINE_VERSION"]

log = logging.getLogger(__name__)

BASELINE_FORMAT = "edgeeas-regress-baseline"
BASELINE_VERSION = 1
RESULT_FORMAT = "edgeeas-regress-result"
_FARM_KEYS = {"devices", "models", "protocol", "eval", "data", "targets_file"}
_DEVICE_KEYS = {"name", "serial", "protocol", "python", "benchmark_binary"}
_EVAL_DEFAULTS = {"seed": 0, "random_inputs": 64, "max_images": 0}
_FARM_FORM = ("expected `devices: [host, SERIAL, HOST:PORT, NAME, {name:, serial:, protocol:}]` and optionally "
              "`models: [PATH, {name:, path:}]`, `protocol: {...}`, `eval: {...}`, `data:`, `targets_file:`")
# Protocol fields whose difference changes figures outright: the warning is loud.
_LOUD = ("threads", "runner", "runner_version", "interpreter", "interpreter_version", "cpu_mask", "use_xnnpack")
_QUIET = ("num_runs", "warmup_runs", "min_secs", "warmup_min_secs", "statistic")


class RegressUsageError(EdgeeasUsageError):
    """A bad farm or baseline file, or a farm that does not match its baseline (exit 2, one line)."""


# ---- inputs -----------------------------------------------------------------------------------
@dataclass
class DeviceEntry:
    name: str | None               # explicit name (dict form), else resolved from the target
    spec: str                      # host | serial | host:port | targets.yaml name
    serial: str | None = None
    protocol: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)  # python, benchmark_binary


@dataclass
class ModelEntry:
    key: str                       # stable id in the baseline and the reports
    path: Path                     # resolved
    written: str                   # path as written (relative to farm.yaml)
    manifest: dict | None = None

    @property
    def sha256(self) -> str:
        from .utils import sha256_file

        return sha256_file(self.path)


@dataclass
class Farm:
    path: Path
    devices: list[DeviceEntry]
    models: list[ModelEntry] | None    # None: take the baseline's models
    protocol: dict
    eval: dict
    data: str | None = None
    targets_file: str | None = None

    @property
    def root(self) -> Path:
        return self.path.parent


@dataclass(frozen=True)
class Tolerances:
    latency_rel: float = 0.10      # relative, before widening
    spread_weight: float = 1.0     # k in allowed = latency_rel + k (min(s_base, cap) + min(s_now, cap))
    spread_cap: float = 0.10       # one measurement's spread counts at most this much
    accuracy_pp: float = 1.0       # absolute, percentage points
    confirm: int = 2               # re-measurements of a suspected latency regression

    def __post_init__(self):
        if not (self.latency_rel >= 0 and self.spread_weight >= 0 and self.spread_cap >= 0 and self.accuracy_pp >= 0
                and self.confirm >= 0):
            raise RegressUsageError(f"tolerances must be >= 0, got {self}")


def _check_protocol_fields(d: Any, where: str) -> dict:
    from device_bench import Protocol

    if d is None:
        return {}
    if not isinstance(d, dict):
        raise RegressUsageError(f"{where}: protocol must be a mapping of Protocol fields, got {d!r}")
    names = {f.name for f in dataclasses.fields(Protocol)}
    bad = sorted(set(d) - names)
    if bad:
        raise RegressUsageError(f"{where}: unknown protocol field(s) {bad}; expected some of {sorted(names)}")
    return dict(d)


def load_farm(path: str | os.PathLike) -> Farm:
    """Parse ``farm.yaml`` (see the module docstring); every mistake is a one-line usage error."""
    path = Path(path)
    if not path.is_file():
        raise RegressUsageError(f"farm file {path} does not exist; {_FARM_FORM}")
    from .utils import read_yaml

    data = read_yaml(path, "farm file", RegressUsageError, _FARM_FORM)
    if not isinstance(data, dict):
        raise RegressUsageError(f"farm file {path}: top level is a {type(data).__name__}; {_FARM_FORM}")
    unknown = sorted(set(data) - _FARM_KEYS)
    if unknown:
        raise RegressUsageError(f"farm file {path}: unknown key(s) {unknown}; {_FARM_FORM}")
    raw_devices = data.get("devices")
    if not isinstance(raw_devices, list) or not raw_devices:
        raise RegressUsageError(f"farm file {path}: `devices` must be a non-empty list; {_FARM_FORM}")
    devices = []
    for d in raw_devices:
        if isinstance(d, (str, int)) and str(d).strip():
            devices.append(DeviceEntry(None, str(d).strip()))
        elif isinstance(d, dict):
            bad = sorted(set(d) - _DEVICE_KEYS)
            if bad or not (d.get("name") or d.get("serial")):
                raise RegressUsageError(f"farm file {path}: device {d!r} needs `name` and/or `serial` "
                                        f"(allowed keys {sorted(_DEVICE_KEYS)}); {_FARM_FORM}")
            extra = {k: d[k] for k in ("python", "benchmark_binary") if d.get(k) is not None}
            devices.append(DeviceEntry(d.get("name"), str(d.get("name") or d.get("serial")), d.get("serial"),
                                       _check_protocol_fields(d.get("protocol"), f"farm file {path}: device {d!r}"),
                                       extra))
        else:
            raise RegressUsageError(f"farm file {path}: bad device entry {d!r}; {_FARM_FORM}")
    models = None
    if data.get("models") is not None:
        raw = data["models"]
        if not isinstance(raw, list) or not raw:
            raise RegressUsageError(f"farm file {path}: `models` must be a non-empty list of paths; {_FARM_FORM}")
        models = []
        for m in raw:
            name = None
            if isinstance(m, dict):
                if set(m) - {"name", "path"} or not isinstance(m.get("path"), str):
                    raise RegressUsageError(f"farm file {path}: bad model entry {m!r}; {_FARM_FORM}")
                name, m = m.get("name"), m["path"]
            if not isinstance(m, str) or not m.strip():
                raise RegressUsageError(f"farm file {path}: bad model entry {m!r}; {_FARM_FORM}")
            if any(c in m for c in "*?["):
                hits = sorted(glob.glob(str(path.parent / m)))
                if not hits:
                    raise RegressUsageError(f"farm file {path}: model pattern {m!r} matches no file")
                for h in hits:
                    rel = os.path.relpath(h, path.parent)
                    models.append(_model_entry(path.parent, rel, None))
            else:
                models.append(_model_entry(path.parent, m, name))
        keys = [m.key for m in models]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise RegressUsageError(f"farm file {path}: model(s) listed twice: {dup}")
    proto = _check_protocol_fields(data.get("protocol"), f"farm file {path}")
    ev = data.get("eval") or {}
    if not isinstance(ev, dict) or set(ev) - set(_EVAL_DEFAULTS) or \
            not all(isinstance(v, int) and v >= 0 for v in ev.values()):
        raise RegressUsageError(f"farm file {path}: `eval` takes non-negative integers {sorted(_EVAL_DEFAULTS)}, "
                                f"got {ev!r}")
    ev = {**_EVAL_DEFAULTS, **ev}
    if ev["random_inputs"] < 1:
        raise RegressUsageError(f"farm file {path}: eval.random_inputs must be >= 1")
    data_path = data.get("data")
    if data_path is not None:
        data_path = str(path.parent / str(data_path))
    tf = data.get("targets_file")
    if tf is not None:
        tf = str(path.parent / str(tf))
    return Farm(path, devices, models, proto, ev, data_path, tf)


def _model_entry(root: Path, written: str, name: str | None) -> ModelEntry:
    p = Path(written)
    p = p if p.is_absolute() else root / p
    return ModelEntry(name or written, p, written, _read_manifest(p))


def _read_manifest(model: Path) -> dict | None:
    mf = model.with_name("manifest.json")
    if not mf.is_file():
        return None
    try:
        d = json.loads(mf.read_text())
    except (OSError, ValueError) as e:
        raise RegressUsageError(f"manifest {mf}: not readable JSON ({' '.join(str(e).split())})") from None
    return d if isinstance(d, dict) else None


def load_baseline(path: str | os.PathLike) -> dict:
    """Read and validate a baseline; a corrupt or foreign file is a one-line usage error."""
    path = Path(path)
    form = (f"expected a JSON baseline written by `edgeeas regress --update-baseline` "
            f"(format {BASELINE_FORMAT!r}, version {BASELINE_VERSION})")
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise RegressUsageError(f"baseline {path} does not exist: record one with --update-baseline") from None
    except OSError as e:
        raise RegressUsageError(f"baseline {path}: cannot read ({e.strerror or e})") from None
    try:
        b = json.loads(text)
    except ValueError as e:
        raise RegressUsageError(f"baseline {path}: corrupt JSON ({e}); {form}") from None
    if not isinstance(b, dict) or b.get("format") != BASELINE_FORMAT:
        got = b.get("format") if isinstance(b, dict) else type(b).__name__
        raise RegressUsageError(f"baseline {path}: not a regress baseline (format {got!r}); {form}")
    if b.get("version") != BASELINE_VERSION:
        raise RegressUsageError(f"baseline {path}: version {b.get('version')!r} is not supported; {form}")
    try:
        for dname, dev in b["devices"].items():
            dev["protocol"], dev["fingerprint"]
            for mkey, rec in dev["models"].items():
                float(rec["latency"]["value_ms"]), float(rec["latency"]["spread"])
                float(rec["accuracy"]["accuracy_pct"]), list(rec["accuracy"]["top1"])
        for mkey, m in b["models"].items():
            m["path"], m["eval"]["mode"]
        b["eval"]["seed"], b["eval"]["random_inputs"]
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise RegressUsageError(f"baseline {path}: malformed (missing or bad {e}); {form}") from None
    return b


# ---- evaluation inputs ------------------------------------------------------------------------
@dataclass
class EvalSet:
    mode: str                       # "labels" | "agreement"
    inputs: np.ndarray              # rows of the model input (its dtype)
    labels: np.ndarray | None       # fine-class ids (labels mode)
    classes: list[int] | None
    desc: dict

    def score(self, outputs: np.ndarray, ref_top1: list[int] | None) -> dict:
        out = np.asarray(outputs).reshape(len(self.inputs), -1)
        top = out.argmax(axis=1)
        res = {"mode": self.mode, "n": int(len(top)), "top1": [int(t) for t in top]}
        agree = None
        if ref_top1 is not None and len(ref_top1) == len(top):
            agree = float(np.mean(top == np.asarray(ref_top1)) * 100.0)
        if self.mode == "labels":
            if out.shape[1] != len(self.classes):
                raise EdgeeasError(f"model outputs {out.shape[1]} scores but its manifest lists "
                                   f"{len(self.classes)} classes")
            pred = np.asarray(self.classes)[top]
            res["accuracy_pct"] = float(np.mean(pred == self.labels) * 100.0)
            res["metric"] = "top1_pct"
            res["agreement_pct"] = agree
        else:
            res["metric"] = "agreement_pct"
            res["accuracy_pct"] = 100.0 if ref_top1 is None else agree if agree is not None else 0.0
        return res


def _eval_set(model: ModelEntry, ev: dict, data: str | None, dataset_cache: dict) -> EvalSet:
    from .export import tflite_info

    info = tflite_info(model.path)
    row_shape = tuple(info.input_shape[1:]) if info.input_shape and info.input_shape[0] == 1 else tuple(info.input_shape)
    dtype = np.dtype(info.input_dtype)
    mf = model.manifest or {}
    if mf.get("classes"):
        if "ds" not in dataset_cache:
            from .data import load_dataset

            dataset_cache["ds"] = load_dataset(data)
        ds = dataset_cache["ds"]
        classes = [int(c) for c in mf["classes"]]
        idx = np.flatnonzero(np.isin(ds.test.labels, classes))
        if ev.get("max_images") and len(idx) > ev["max_images"]:
            idx = np.sort(np.random.default_rng(ev["seed"]).choice(idx, ev["max_images"], replace=False))
        imgs = ds.test.images[idx].astype(np.float32) / 255.0          # NCHW in [0, 1]
        inp = mf.get("input") or {}
        mean = np.asarray(inp.get("mean") or (0.0, 0.0, 0.0), np.float32)
        std = np.asarray(inp.get("std") or (1.0, 1.0, 1.0), np.float32)
        if mean.max() > 1.0 or std.max() > 1.0:  # given in 0..255 units
            mean, std = mean / 255.0, std / 255.0
        x = (imgs - mean.reshape(1, 3, 1, 1)) / std.reshape(1, 3, 1, 1)
        if row_shape[-1] == 3 and x.shape[1:] != row_shape:     # NHWC model
            x = x.transpose(0, 2, 3, 1)
        if dtype.kind in "iu":
            lim = np.iinfo(dtype)
            x = np.clip(np.round(x / info.input_scale) + info.input_zero_point, lim.min, lim.max).astype(dtype)
        else:
            x = x.astype(dtype)
        if x.shape[1:] != row_shape:
            raise EdgeeasError(f"{model.key}: manifest images give rows {list(x.shape[1:])} but the model takes "
                               f"{list(row_shape)}")
        return EvalSet("labels", np.ascontiguousarray(x), ds.test.labels[idx], classes,
                       {"images": int(len(idx)), "classes": classes, "dataset": getattr(ds, "fingerprint", "")})
    rng = np.random.default_rng(ev["seed"])
    n = ev["random_inputs"]
    if dtype.kind in "iu":
        lim = np.iinfo(dtype)
        x = rng.integers(lim.min, int(lim.max) + 1, size=(n, *row_shape)).astype(dtype)
    else:
        x = rng.standard_normal((n, *row_shape)).astype(dtype)
    return EvalSet("agreement", x, None, None, {"rows": n, "seed": ev["seed"]})


# ---- checks -----------------------------------------------------------------------------------
@dataclass
class Case:
    device: str
    model: str
    metric: str                     # "latency" | "accuracy"
    status: str                     # "pass" | "fail" | "error" | "recorded"
    message: str = ""
    base: float | None = None
    now: float | None = None
    details: dict = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def latency_check(base: dict, now: dict, tol: Tolerances) -> tuple[bool, dict]:
    ratio = now["value_ms"] / base["value_ms"] - 1.0 if base["value_ms"] > 0 else math.inf
    allowed = tol.latency_rel + tol.spread_weight * (min(base["spread"], tol.spread_cap)
                                                     + min(now["spread"], tol.spread_cap))
    return ratio <= allowed, {"ratio": ratio, "allowed": allowed}


def accuracy_check(base: dict, now: dict, tol: Tolerances) -> tuple[bool, float]:
    delta = now["accuracy_pct"] - base["accuracy_pct"]
    return delta >= -tol.accuracy_pp - 1e-9, delta


def _lat_record(m) -> dict:
    return {"value_ms": m.value_ms, "median_ms": m.median_ms, "p90_ms": m.p90_ms, "std_ms": m.std_ms,
            "spread": m.spread if math.isfinite(m.spread) else 1.0, "runs_us": list(m.runs_us),
            "count": m.count, "statistic": m.protocol.statistic, "command": m.command}


# ---- one device ---------------------------------------------------------------------------------
@dataclass
class DeviceRun:
    name: str
    kind: str = "?"
    serial: str | None = None
    protocol: dict | None = None
    fingerprint: dict | None = None
    latency: dict = field(default_factory=dict)       # key -> record (+ attempts_ms)
    accuracy: dict = field(default_factory=dict)      # key -> record
    error: str | None = None
    attempts: int = 1
    seconds: float = 0.0


def _device_job(target, models: list[ModelEntry], evals: dict[str, EvalSet], baseline: dict | None,
                tol: Tolerances, repeats: int, run: DeviceRun, log_fn: Callable[[str], None]) -> DeviceRun:
    """Measure every model, then evaluate every model, on one device.  Resumable: what is in
    ``run`` already (from an attempt before the device dropped) is not measured again."""
    run.kind = target.kind
    run.serial = getattr(target, "serial", None)
    if run.fingerprint is None:
        run.fingerprint = target.fingerprint()
    todo = [m for m in models if m.key not in run.latency]
    if todo:
        by_path: dict[str, list[ModelEntry]] = {}
        for m in todo:
            by_path.setdefault(str(m.path), []).append(m)
        rounds: dict[str, list] = {k: [] for k in by_path}
        for _ in range(max(1, repeats)):
            got = target.measure_many([Path(p) for p in by_path])
            for p, meas in got.items():
                rounds[p].append(meas)
        chosen = {}
        for p, ms in rounds.items():
            ms = sorted(ms, key=lambda m: m.value_ms)
            chosen[p] = ms[(len(ms) - 1) // 2]      # the middle (lower-middle) of the repeats
        # confirm suspected regressions by re-measuring them; keep the lowest value
        suspects = {}
        if baseline is not None:
            bdev = baseline["devices"].get(run.name, {}).get("models", {})
            for p, ms in by_path.items():
                for m in ms:
                    if m.key in bdev and not latency_check(bdev[m.key]["latency"], _lat_record(chosen[p]), tol)[0]:
                        suspects[p] = True
        extra: dict[str, list] = {p: [] for p in suspects}
        for i in range(tol.confirm):
            if not suspects:
                break
            log_fn(f"{run.name}: re-measuring {len(suspects)} suspected latency regression(s) ({i + 1}/{tol.confirm})")
            got = target.measure_many([Path(p) for p in suspects])
            for p, meas in got.items():
                extra[p].append(meas)
                if meas.value_ms < chosen[p].value_ms:
                    chosen[p] = meas
            still = {}
            for p in suspects:
                for m in by_path[p]:
                    if not latency_check(bdev[m.key]["latency"], _lat_record(chosen[p]), tol)[0]:
                        still[p] = True
            suspects = still
        for p, ms in by_path.items():
            rec = _lat_record(chosen[p])
            rec["attempts_ms"] = [x.value_ms for x in rounds[p]] + [x.value_ms for x in extra.get(p, [])]
            rec["attempts_spread"] = [x.spread for x in rounds[p]] + [x.spread for x in extra.get(p, [])]
            for m in ms:
                run.latency[m.key] = rec
            run.protocol = chosen[p].protocol.to_dict()
    for m in models:
        if m.key in run.accuracy:
            continue
        ev = evals[m.key]
        ref = None
        if baseline is not None:
            ref = baseline["devices"].get(run.name, {}).get("models", {}).get(m.key, {}).get("accuracy", {}).get("top1")
        out = target.evaluate(m.path, ev.inputs)
        run.accuracy[m.key] = ev.score(out, ref)
    if run.protocol is None:
        run.protocol = target.protocol.to_dict()
    return run


# ---- the run ------------------------------------------------------------------------------------
@dataclass
class RegressResult:
    farm: str
    baseline_path: str
    mode: str                                       # "check" | "update"
    tolerances: Tolerances
    devices: dict[str, DeviceRun]
    models: dict[str, dict]                         # key -> {path, sha256, manifest subset, eval}
    cases: list[Case]
    warnings: list[str]
    baseline: dict | None
    seconds: float
    jobs: int
    eval: dict = field(default_factory=dict)
    command: str = ""

    @property
    def exit_code(self) -> int:
        if any(c.status == "error" for c in self.cases) or any(d.error for d in self.devices.values()):
            return 2
        if any(c.status == "fail" for c in self.cases):
            return 1
        return 0

    def counts(self) -> dict:
        out = {"pass": 0, "fail": 0, "error": 0, "recorded": 0}
        for c in self.cases:
            out[c.status] += 1
        return out

    def to_dict(self) -> dict:
        from .utils import versions

        return {
            "format": RESULT_FORMAT, "version": 1, "mode": self.mode,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": self.command,
            "farm": self.farm, "baseline": self.baseline_path, "exit_code": self.exit_code,
            "counts": self.counts(), "seconds": round(self.seconds, 3), "jobs": self.jobs,
            "tolerances": dataclasses.asdict(self.tolerances), "warnings": self.warnings,
            "versions": versions(), "models": self.models,
            "devices": {n: dataclasses.asdict(d) for n, d in self.devices.items()},
            "cases": [c.to_dict() for c in self.cases],
        }


def _manifest_subset(mf: dict | None) -> dict | None:
    if not mf:
        return None
    return {k: mf[k] for k in ("arch", "target", "predicted_latency_ms", "budget", "superclasses", "classes",
                               "accuracy") if k in mf}


def build_targets(farm: Farm, protocol_override: dict | None = None) -> list:
    """Resolve every device entry to a Target (no connection yet); a bad entry is a usage error."""
    from device_bench import Protocol

    from .targets import resolve_target

    targets = []
    for d in farm.devices:
        fields = {**farm.protocol, **d.protocol, **(protocol_override or {})}
        try:
            proto = Protocol.from_dict(fields)
        except (ValueError, TypeError) as e:
            raise RegressUsageError(f"farm file {farm.path}: device {d.spec!r}: bad protocol ({e})") from None
        if d.spec == "host" and not d.serial:
            t = resolve_target("host", protocol=proto)
        else:
            t = resolve_target(d.name if d.name else (None if d.serial else d.spec),
                               adb_serial=d.serial, targets_file=farm.targets_file, protocol=proto, **d.extra)
        targets.append(t)
    return targets


def _protocol_warnings(name: str, base: dict, now: dict, bfp: dict, nfp: dict) -> list[str]:
    out = []
    loud = [f"{k} {base.get(k)!r} -> {now.get(k)!r}" for k in _LOUD if base.get(k) != now.get(k)]
    if loud:
        out.append(f"LOUD: {name}: measured with a different protocol than the baseline ({'; '.join(loud)}): "
                   f"latency differences may come from the setup, not the model")
    quiet = [f"{k} {base.get(k)!r} -> {now.get(k)!r}" for k in _QUIET if base.get(k) != now.get(k)]
    if quiet:
        out.append(f"{name}: protocol differs from the baseline's ({'; '.join(quiet)})")
    for k in ("interpreter_version", "cpu_model", "model", "soc", "abi", "cores"):
        if k in bfp and k in nfp and bfp[k] != nfp[k] and not (k == "interpreter_version" and loud):
            out.append(f"LOUD: {name}: device fingerprint {k} changed since the baseline "
                       f"({bfp[k]!r} -> {nfp[k]!r})")
    return out


def run_regress(farm: Farm, baseline_path: str | os.PathLike, *, update: bool = False,
                tolerances: Tolerances = Tolerances(), jobs: int = 0, repeats: int | None = None,
                data: str | None = None, retries: int = 1, retry_delay_s: float = 2.0,
                log_fn: Callable[[str], None] = lambda m: None, command: str = "") -> RegressResult:
    """Measure every device x model, compare with (or record) the baseline.  Never raises for
    one device's failure (that device's cases are errors); raises RegressUsageError for bad files."""
    from .farm import run_on_devices

    t0 = time.monotonic()
    baseline_path = Path(baseline_path)
    baseline = None if update else load_baseline(baseline_path)
    warnings: list[str] = []
    # the models: the farm's list, else the baseline's (paths relative to farm.yaml)
    if farm.models is not None:
        models = farm.models
    elif baseline is not None:
        models = [_model_entry(farm.root, m["path"], k) for k, m in baseline["models"].items()]
    else:
        raise RegressUsageError(f"farm file {farm.path} lists no `models`: recording a baseline needs them")
    missing = [str(m.path) for m in models if not m.path.is_file()]
    if missing:
        raise RegressUsageError(f"model file(s) not found: {', '.join(missing)} (paths are relative to {farm.path})")
    ev_settings = dict(farm.eval) if baseline is None else {**_EVAL_DEFAULTS, **baseline["eval"]}
    if baseline is not None:
        unknown = [m.key for m in models if m.key not in baseline["models"]]
        if unknown:
            raise RegressUsageError(f"baseline {baseline_path} has no record of model(s) {unknown}: "
                                    f"record them with --update-baseline")
    targets = build_targets(farm)
    names = [t.name for t in targets]
    if baseline is not None:
        unknown = [n for n in names if n not in baseline["devices"]]
        if unknown:
            raise RegressUsageError(f"baseline {baseline_path} does not match the farm: no record of device(s) "
                                    f"{unknown} (baseline has {sorted(baseline['devices'])}); "
                                    f"record them with --update-baseline")
        for n in names:
            lacking = [m.key for m in models if m.key not in baseline["devices"][n]["models"]]
            if lacking:
                raise RegressUsageError(f"baseline {baseline_path} has no record of model(s) {lacking} "
                                        f"on device {n!r}: record them with --update-baseline")
    # evaluation inputs, once for all devices
    cache: dict = {}
    evals = {}
    model_info = {}
    for m in models:
        try:
            evals[m.key] = _eval_set(m, ev_settings, data or farm.data, cache)
        except EdgeeasUsageError:
            raise
        except EdgeeasError as e:
            raise RegressUsageError(f"model {m.key}: {e}") from None
        sha = m.sha256
        model_info[m.key] = {"path": m.written, "sha256": sha, "bytes": m.path.stat().st_size,
                             "manifest": _manifest_subset(m.manifest), "eval": {"mode": evals[m.key].mode,
                                                                               **evals[m.key].desc}}
        if baseline is not None:
            b = baseline["models"][m.key]
            if b.get("sha256") and b["sha256"] != sha:
                warnings.append(f"model {m.key}: file content changed since the baseline "
                                f"(sha256 {b['sha256'][:12]} -> {sha[:12]})")
            if b["eval"]["mode"] != evals[m.key].mode:
                raise RegressUsageError(f"baseline {baseline_path}: model {m.key} was evaluated in "
                                        f"{b['eval']['mode']!r} mode, now {evals[m.key].mode!r} "
                                        f"(a manifest.json appeared or vanished): record it again with --update-baseline")
    repeats = repeats if repeats is not None else (3 if update else 1)
    runs = {n: DeviceRun(n) for n in names}
    sem = threading.Semaphore(jobs) if jobs and jobs < len(targets) else None

    def fn(target):
        run = runs[target.name]
        run.attempts = getattr(run, "_tries", 0) + 1
        run._tries = run.attempts  # type: ignore[attr-defined]
        if sem is None:
            return _device_job(target, models, evals, baseline, tolerances, repeats, run, log_fn)
        with sem:
            return _device_job(target, models, evals, baseline, tolerances, repeats, run, log_fn)

    def done(name, _res, err):
        log_fn(f"{name}: {'done' if err is None else 'FAILED: ' + ' '.join(str(err).split())}")

    farm_res = run_on_devices(targets, fn, retries=retries, retry_delay_s=retry_delay_s, on_done=done)
    for n, err in farm_res.errors.items():
        runs[n].error = err
    for n in names:
        runs[n].seconds = farm_res.seconds.get(n, 0.0)
        runs[n].attempts = farm_res.attempts.get(n, 1)
        runs[n].__dict__.pop("_tries", None)
    # compare
    cases: list[Case] = []
    for n in names:
        run = runs[n]
        bdev = baseline["devices"][n] if baseline is not None else None
        if bdev is not None and run.protocol is not None:
            for w in _protocol_warnings(n, bdev["protocol"], run.protocol, bdev.get("fingerprint") or {},
                                        run.fingerprint or {}):
                warnings.append(w)
        for m in models:
            for metric in ("latency", "accuracy"):
                rec = (run.latency if metric == "latency" else run.accuracy).get(m.key)
                if rec is None:
                    why = run.error or "not measured"
                    cases.append(Case(n, m.key, metric, "error", f"device {n} failed: {why}"))
                    continue
                if bdev is None:
                    now = rec["value_ms"] if metric == "latency" else rec["accuracy_pct"]
                    cases.append(Case(n, m.key, metric, "recorded", "", None, now))
                    continue
                brec = bdev["models"][m.key][metric]
                if metric == "latency":
                    ok, det = latency_check(brec, rec, tolerances)
                    msg = (f"{n} {m.key}: latency {rec['value_ms']:.4g} ms vs baseline {brec['value_ms']:.4g} ms "
                           f"({det['ratio'] * 100:+.1f} %, allowed +{det['allowed'] * 100:.1f} % = "
                           f"{tolerances.latency_rel * 100:g} % + {tolerances.spread_weight:g} x spread "
                           f"({brec['spread'] * 100:.1f} % + {rec['spread'] * 100:.1f} %, each capped at "
                           f"{tolerances.spread_cap * 100:g} %))")
                    det.update(base_p90_ms=brec.get("p90_ms"), now_p90_ms=rec.get("p90_ms"),
                               base_spread=brec["spread"], now_spread=rec["spread"],
                               attempts_ms=rec.get("attempts_ms"))
                    cases.append(Case(n, m.key, metric, "pass" if ok else "fail", msg, brec["value_ms"],
                                      rec["value_ms"], det))
                else:
                    ok, delta = accuracy_check(brec, rec, tolerances)
                    msg = (f"{n} {m.key}: {rec['metric']} {rec['accuracy_pct']:.2f} % vs baseline "
                           f"{brec['accuracy_pct']:.2f} % ({delta:+.2f} pp, allowed -{tolerances.accuracy_pp:g} pp)")
                    det = {"delta_pp": delta, "mode": rec["mode"], "n": rec["n"],
                           "agreement_pct": rec.get("agreement_pct")}
                    cases.append(Case(n, m.key, metric, "pass" if ok else "fail", msg, brec["accuracy_pct"],
                                      rec["accuracy_pct"], det))
    return RegressResult(str(farm.path), str(baseline_path), "update" if update else "check", tolerances, runs,
                         model_info, cases, list(dict.fromkeys(warnings)), baseline,
                         time.monotonic() - t0, jobs or len(targets), ev_settings, command)


def baseline_from(res: RegressResult) -> dict:
    """The baseline document of an --update-baseline run (every device must have succeeded)."""
    from .utils import versions

    failed = {n: d.error for n, d in res.devices.items() if d.error}
    if failed:
        raise EdgeeasError("baseline not written: " + "; ".join(f"{n}: {e}" for n, e in failed.items()))
    devices = {}
    for n, d in res.devices.items():
        devices[n] = {"kind": d.kind, "serial": d.serial, "protocol": d.protocol, "fingerprint": d.fingerprint,
                      "models": {k: {"latency": d.latency[k], "accuracy": d.accuracy[k]} for k in res.models}}
    return {"format": BASELINE_FORMAT, "version": BASELINE_VERSION,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": res.command, "farm": res.farm,
            "versions": versions(), "eval": dict(res.eval), "models": res.models, "devices": devices}


def write_baseline(res: RegressResult, path: str | os.PathLike) -> Path:
    """Write the baseline of an --update-baseline run atomically (temp file, then rename)."""
    from .utils import atomic_write_text

    doc = baseline_from(res)
    atomic_write_text(path, json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return Path(path)


# ---- reports ------------------------------------------------------------------------------------
def write_reports(res: RegressResult, out_dir: str | os.PathLike) -> dict[str, Path]:
    """``junit.xml``, ``regress.json`` and ``report.html`` (plots embedded) in ``out_dir``, atomically."""
    from .utils import atomic_write_text

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"junit": out / "junit.xml", "json": out / "regress.json", "html": out / "report.html"}
    atomic_write_text(paths["junit"], render_junit(res))
    atomic_write_text(paths["json"], json.dumps(res.to_dict(), indent=1, sort_keys=True, default=str) + "\n")
    atomic_write_text(paths["html"], render_html(res, out))
    return paths


def render_junit(res: RegressResult) -> str:
    """One <testsuite> per device, one <testcase> per device x model x metric."""
    import xml.etree.ElementTree as ET

    c = res.counts()
    root = ET.Element("testsuites", name="edgeeas regress", tests=str(len(res.cases)), failures=str(c["fail"]),
                      errors=str(c["error"]), time=f"{res.seconds:.3f}")
    for name, run in res.devices.items():
        cases = [x for x in res.cases if x.device == name]
        suite = ET.SubElement(root, "testsuite", name=f"regress.{name}", tests=str(len(cases)),
                              failures=str(sum(x.status == "fail" for x in cases)),
                              errors=str(sum(x.status == "error" for x in cases)),
                              skipped="0", time=f"{run.seconds:.3f}")
        props = ET.SubElement(suite, "properties")
        for k, v in (("kind", run.kind), ("serial", run.serial), ("attempts", run.attempts),
                     ("protocol", json.dumps(run.protocol, sort_keys=True)),
                     ("interpreter_version", (run.fingerprint or {}).get("interpreter_version"))):
            ET.SubElement(props, "property", name=k, value=str(v))
        for x in cases:
            tc = ET.SubElement(suite, "testcase", classname=f"regress.{name}", name=f"{x.model} [{x.metric}]",
                               time=f"{x.seconds:.3f}")
            if x.status == "fail":
                ET.SubElement(tc, "failure", message=x.message, type=f"{x.metric}-regression").text = x.message
            elif x.status == "error":
                ET.SubElement(tc, "error", message=x.message, type="infrastructure").text = x.message
            elif x.message:
                ET.SubElement(tc, "system-out").text = x.message
        mine = [w for w in res.warnings if name in w] or []
        if mine:
            ET.SubElement(suite, "system-err").text = "\n".join("WARNING: " + w for w in mine)
    if res.warnings:
        ET.SubElement(root, "system-err").text = "\n".join("WARNING: " + w for w in res.warnings)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _short(key: str, n: int = 28) -> str:
    key = key.removesuffix("/model.tflite").removesuffix(".tflite")
    return key if len(key) <= n else "…" + key[-(n - 1):]


def _png(fig) -> str:
    import base64
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _plots(res: RegressResult) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    devs = list(res.devices)
    models = list(res.models)
    if not devs or not models:
        return out
    by = {(c.device, c.model, c.metric): c for c in res.cases}
    # 1. latency per device: baseline vs now, bar = statistic, error bar up to p90, tick = allowed
    fig, axes = plt.subplots(1, len(devs), figsize=(max(4.5, 0.9 * len(models) + 2) * len(devs), 3.6), squeeze=False)
    fig.subplots_adjust(wspace=0.25)
    for ax, d in zip(axes[0], devs):
        run = res.devices[d]
        bdev = (res.baseline or {}).get("devices", {}).get(d, {}).get("models", {})
        x = np.arange(len(models))
        w = 0.38
        for i, m in enumerate(models):
            b = bdev.get(m, {}).get("latency")
            now = run.latency.get(m)
            if b:
                ax.bar(i - w / 2, b["value_ms"], w, color="#9aa5b1", yerr=[[0], [max(0, b["p90_ms"] - b["median_ms"])]],
                       capsize=3, label="baseline" if i == 0 else None)
            if now:
                case = by.get((d, m, "latency"))
                col = "#d64545" if case and case.status == "fail" else "#2f80ed"
                ax.bar(i + w / 2 if b else i, now["value_ms"], w, color=col,
                       yerr=[[0], [max(0, now["p90_ms"] - now["median_ms"])]], capsize=3,
                       label="now" if i == 0 else None)
                if case and case.base is not None:
                    ax.plot([i - w, i + w], [case.base * (1 + case.details["allowed"])] * 2, color="k", lw=1,
                            ls="--", label="allowed" if i == 0 else None)
            elif res.devices[d].error:
                ax.text(i, 0, "error", ha="center", va="bottom", color="#d64545", fontsize=8, rotation=90)
        ax.set_xticks(x, [_short(m) for m in models], rotation=30, ha="right", fontsize=7)
        tops = [r["value_ms"] for r in list(run.latency.values()) + [v.get("latency") or {} for v in bdev.values()]
                if r.get("value_ms")]
        if tops:  # p90 bars of a burst-ridden run may reach 10x the median: keep the medians readable
            ax.set_ylim(0, 1.8 * max(tops))
        if ax is axes[0][0]:
            ax.set_ylabel(f"latency ms ({(run.protocol or {}).get('statistic', 'median')}; bar to p90)")
        ax.set_title(f"{d}" + ("  [DEVICE ERROR]" if run.error else ""), fontsize=9,
                     color="#d64545" if run.error else "k")
        ax.legend(fontsize=7, loc="upper left")
    out.append(("Latency against the baseline (error bars: median to p90; dashed: allowed)", _png(fig)))
    # 2. accuracy deltas
    if res.baseline is not None:
        fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(models) * len(devs) + 2), 3.2))
        w = 0.8 / len(devs)
        for j, d in enumerate(devs):
            vals, edges = [], []
            for m in models:
                c = by.get((d, m, "accuracy"))
                vals.append(c.details.get("delta_pp", 0.0) if c and c.status in ("pass", "fail") else np.nan)
                edges.append("#d64545" if c and c.status == "fail" else "none")
            bars = ax.bar(np.arange(len(models)) + (j - (len(devs) - 1) / 2) * w, vals, w, color="C%d" % j,
                          label=d, edgecolor=edges, linewidth=2)
            for bar, v, edge in zip(bars, vals, edges):
                if edge != "none":
                    bar.set_hatch("//")
        ax.axhline(-res.tolerances.accuracy_pp, color="k", ls="--", lw=1, label="tolerance")
        ax.axhline(0, color="#555", lw=0.6)
        ax.set_xticks(np.arange(len(models)), [_short(m) for m in models], rotation=30, ha="right", fontsize=7)
        ax.set_ylabel("accuracy delta (pp)")
        ax.legend(fontsize=7)
        out.append(("Accuracy now minus baseline (percentage points; agreement with the baseline's top-1 for "
                    "models without a manifest)", _png(fig)))
    # 3. predicted vs measured
    pts = [(d, m, mi["manifest"]["predicted_latency_ms"], res.devices[d].latency[m]["value_ms"])
           for m, mi in res.models.items() if (mi.get("manifest") or {}).get("predicted_latency_ms")
           for d in devs if m in res.devices[d].latency]
    if pts:
        fig, ax = plt.subplots(figsize=(4.6, 4.2))
        for j, d in enumerate(devs):
            p = [(a, b) for dd, _, a, b in pts if dd == d]
            if p:
                ax.scatter(*zip(*p), label=d, s=22)
        hi = max(max(a, b) for _, _, a, b in pts) * 1.1
        ax.plot([0, hi], [0, hi], "k--", lw=0.8)
        ax.set_xlabel("predicted latency (ms, manifest)")
        ax.set_ylabel("measured latency (ms)")
        ax.legend(fontsize=7)
        out.append(("Predicted (manifest) vs measured latency", _png(fig)))
    return out


def render_html(res: RegressResult, out_dir: Path | None = None) -> str:
    import html

    e = html.escape
    c = res.counts()
    code = res.exit_code
    verdict = {0: ("PASS", "#1e8e3e"), 1: ("REGRESSION", "#d64545"), 2: ("ERROR", "#b7791f")}[code]
    if res.mode == "update":
        verdict = ("BASELINE RECORDED" if code == 0 else "BASELINE NOT RECORDED", verdict[1])
    rows = []
    for x in res.cases:
        col = {"pass": "#1e8e3e", "fail": "#d64545", "error": "#b7791f", "recorded": "#555"}[x.status]
        base = "" if x.base is None else f"{x.base:.4g}"
        now = "" if x.now is None else f"{x.now:.4g}"
        rows.append(f"<tr><td>{e(x.device)}</td><td>{e(x.model)}</td><td>{x.metric}</td>"
                    f"<td style='color:{col};font-weight:bold'>{x.status.upper()}</td><td>{base}</td><td>{now}</td>"
                    f"<td>{e(x.message)}</td></tr>")
    warn = "".join(f"<li>{e(w)}</li>" for w in res.warnings)
    devs = []
    for n, d in res.devices.items():
        fp = d.fingerprint or {}
        devs.append(f"<tr><td>{e(n)}</td><td>{e(d.kind)}</td><td>{e(str(d.serial or ''))}</td>"
                    f"<td>{e(str((d.protocol or {}).get('threads')))}</td>"
                    f"<td>{e(str(fp.get('interpreter')))} {e(str(fp.get('interpreter_version')))}</td>"
                    f"<td>{e(str(fp.get('cpu_model') or fp.get('model') or ''))}</td><td>{d.seconds:.1f}</td>"
                    f"<td style='color:#d64545'>{e(d.error or '')}</td></tr>")
    plots = "".join(f"<figure><img alt='{e(t)}' src='data:image/png;base64,{b}'><figcaption>{e(t)}</figcaption>"
                    f"</figure>" for t, b in _plots(res))
    tol = res.tolerances
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>edgeeas regress: {verdict[0]}</title>
<style>body{{font-family:sans-serif;margin:1.5em;color:#222}} table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 7px;text-align:left}} th{{background:#f3f3f3}}
.verdict{{font-size:1.6em;font-weight:bold;color:{verdict[1]}}} .warn{{background:#fff4e5;border:2px solid #b7791f;
padding:.5em 1em}} figure{{display:inline-block;margin:1em 1em 0 0}} img{{max-width:100%}}
figcaption{{font-size:12px;color:#555}}</style></head><body>
<h1>edgeeas regress</h1>
<p class="verdict">{verdict[0]} <small>(exit {code}: {c['pass']} passed, {c['fail']} failed, {c['error']} errors)</small></p>
<p>farm <code>{e(res.farm)}</code>, baseline <code>{e(res.baseline_path)}</code>, {len(res.devices)} device(s) x
{len(res.models)} model(s), {res.seconds:.1f} s. Latency allowed: {tol.latency_rel * 100:g} % +
{tol.spread_weight:g} x (spread<sub>base</sub> + spread<sub>now</sub>), spread = (p90 - median) / median capped at
{tol.spread_cap * 100:g} %,
{tol.confirm} confirming re-measurement(s); accuracy allowed: -{tol.accuracy_pp:g} pp.</p>
{f'<div class="warn"><b>Warnings</b><ul>{warn}</ul></div>' if warn else ''}
<h2>Plots</h2>{plots}
<h2>Checks</h2><table><tr><th>device</th><th>model</th><th>metric</th><th>status</th><th>baseline</th><th>now</th>
<th>detail</th></tr>{''.join(rows)}</table>
<h2>Devices</h2><table><tr><th>name</th><th>kind</th><th>serial</th><th>threads</th><th>interpreter</th><th>CPU / model</th>
<th>seconds</th><th>error</th></tr>{''.join(devs)}</table>
<p><small>command: <code>{e(res.command)}</code></small></p>
</body></html>
"""
