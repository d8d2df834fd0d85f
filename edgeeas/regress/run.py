"""The run: evaluation inputs, the per-device job, and the whole check over a farm.

    from edgeeas.regress import load_farm, run_regress, Tolerances, write_reports
    res = run_regress(load_farm("farm.yaml"), "baseline.json", tolerances=Tolerances(latency_rel=0.10))
    res.exit_code          # 0 all pass, 1 a regression, 2 an unreachable device / infrastructure error,
                           # 3 a latency verdict too noisy to tell (INCONCLUSIVE)
    write_reports(res, "regress-out")   # junit.xml, regress.json, report.html (+ PNGs)

Accuracy is one metric in two evaluation modes:

* ``labels``: the model has a ``manifest.json`` beside it (``edgeeas specialize``) with
  ``classes``: the CIFAR-100 test images of those fine classes, normalized with the
  manifest's mean/std and quantized with the model's input scale/zero point, run on the
  device; ``accuracy_pct`` = top-1 % against the true labels (output row i = classes[i]).
* ``agreement``: no manifest (any ``.tflite``): a fixed seeded tensor of inputs
  (``eval.seed``, ``eval.random_inputs`` rows); the baseline records the argmax of its
  outputs, and ``accuracy_pct`` = % of rows whose current argmax equals the baseline's.
  The baseline itself scores 100 by definition.

The baseline's evaluation settings (seed, rows, images) are reused when checking, so a check
always compares the same inputs.  In ``labels`` mode the agreement with the baseline's argmax
is reported too, as information.
"""
from __future__ import annotations

import dataclasses
import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import EdgeeasError, EdgeeasUsageError
from .baseline import load_baseline
from .checks import Case, Tolerances, device_cases, latency_check, protocol_warnings
from .farm import EVAL_DEFAULTS, Farm, ModelEntry, RegressUsageError, build_targets, model_entry, run_on_devices

__all__ = ["EvalSet", "DeviceRun", "RegressResult", "run_regress", "RESULT_FORMAT"]

RESULT_FORMAT = "edgeeas-regress-result"


# ---- evaluation inputs ------------------------------------------------------------------------
@dataclass
class EvalSet:
    """The inputs one model is evaluated on, the same for every device.

    ``inputs`` has shape ``[N, *row]``, where ``row`` is the model's input shape without its
    batch dimension of 1 (e.g. ``[N, 32, 32, 3]`` for an NHWC model) and the model's input
    dtype (int8 rows are already quantized).  ``labels`` (``[N]`` fine-class ids) and
    ``classes`` (the fine class of each output row) are set in ``labels`` mode only.
    """

    mode: str                       # "labels" | "agreement"
    inputs: np.ndarray              # rows of the model input (its dtype)
    labels: np.ndarray | None       # fine-class ids (labels mode)
    classes: list[int] | None
    desc: dict
    host_outputs: np.ndarray | None = None   # the host's outputs on ``inputs`` (labels mode, computed once)

    def score(self, outputs: np.ndarray, ref_top1: list[int] | None) -> dict:
        """The accuracy record of a device's ``outputs`` (``[N, classes]``, any dtype).

        Args:
            outputs: the model's outputs, one row per input row.
            ref_top1: the baseline's argmax per row (None when recording a baseline).

        Returns:
            ``{mode, metric, accuracy_pct, n, top1[, agreement_pct]}``; percentages in 0..100.

        Raises:
            EdgeeasError: in ``labels`` mode, the model has another number of outputs than
                its manifest has classes.
        """
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
    """The evaluation inputs of ``model`` under the settings ``ev`` (``seed``, ``random_inputs``,
    ``max_images``); the dataset is loaded once into ``dataset_cache``."""
    from ..export import tflite_info
    from ..manifest import ModelManifest, model_inputs

    info = tflite_info(model.path)
    row_shape = tuple(info.input_shape[1:]) if info.input_shape and info.input_shape[0] == 1 else tuple(info.input_shape)
    dtype = np.dtype(info.input_dtype)
    mf = model.manifest or {}
    if mf.get("classes"):
        if "ds" not in dataset_cache:
            from ..data import load_dataset

            dataset_cache["ds"] = load_dataset(data)
        ds = dataset_cache["ds"]
        # one path from manifest + dataset to the model's inputs (edgeeas.manifest.model_inputs)
        mx = model_inputs(ModelManifest.from_dict(mf), ds, info, sample=ev.get("max_images") or 0, seed=ev["seed"])
        x, idx, classes = mx.inputs, mx.indices, mx.classes
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


# ---- one device ---------------------------------------------------------------------------------
def _lat_record(passes: list) -> dict:
    """Per-pass ``device_bench`` measurements as a latency record: the combined figure
    (:func:`device_bench.combine_passes`, milliseconds), every pass's value and runs (us)."""
    from device_bench import combine_passes

    m = combine_passes(passes)
    return {"value_ms": m.value_ms, "median_ms": m.median_ms, "p90_ms": m.p90_ms, "std_ms": m.std_ms,
            "spread": m.spread if math.isfinite(m.spread) else 1.0, "runs_us": list(m.runs_us),
            "count": m.count, "statistic": m.protocol.statistic, "command": passes[-1].command,
            "passes": len(passes), "pass_values_ms": [p.value_ms for p in passes],
            "pass_runs_us": [list(p.runs_us) for p in passes]}


def _measure_latency(target, by_path: dict, baseline_models: dict | None, tol: Tolerances,
                     base_passes: int, log_fn: Callable[[str], None], name: str) -> dict:
    """Per-pass measurements of every path (one runner process per pass for all pending models).

    Recording a baseline (``baseline_models`` None): ``base_passes`` passes of each.  Checking:
    passes until every model's noise-aware verdict (:func:`~edgeeas.regress.checks.latency_check`)
    is clear of its budget at one of the rule's looks, or ``tol.max_passes`` are spent.

    Returns:
        ``{path: latency record}`` with ``verdict`` (a dict) when checking.
    """
    rule = tol.rule()
    looks, _ = rule.looks()
    cap = base_passes if baseline_models is None else rule.max_passes
    passes: dict[str, list] = {p: [] for p in by_path}
    pending = set(by_path)
    verdicts: dict[str, dict] = {}
    saved = target.protocol
    target.protocol = dataclasses.replace(saved, passes=1)   # a pass = one runner process
    try:
        for n in range(1, cap + 1):
            got = target.measure_many([Path(p) for p in sorted(pending)])
            for p, meas in got.items():
                passes[p].append(meas)
            if baseline_models is None or (n not in looks and n < cap):
                continue
            for p in sorted(pending):
                rec = _lat_record(passes[p])
                vs = [latency_check(baseline_models[m.key]["latency"], rec, tol, final=n >= cap)
                      for m in by_path[p]]
                if n >= cap or all(v.status != "INCONCLUSIVE" for v in vs):
                    verdicts[p] = vs[0].to_dict()
                    pending.discard(p)
            if not pending:
                break
            if n >= looks[0]:
                log_fn(f"{name}: {len(pending)} model(s) still too close to their budget after {n} passes")
    finally:
        target.protocol = saved
    out = {}
    for p in by_path:
        rec = _lat_record(passes[p])
        rec["protocol"] = passes[p][-1].protocol.to_dict()  # as the runner reported it (versions filled in)
        if p in verdicts:
            rec["verdict"] = verdicts[p]
        out[p] = rec
    return out


def _validation_agreement(model: ModelEntry, sha: str, warnings: list[str]) -> dict | None:
    """The device-vs-host record of the model's ``validation.json`` (``edgeeas validate``), when
    one lies beside it for this very file: ``{target, validated, device_vs_host}``
    (:class:`edgeeas.validation.HostAgreement`); a record of another file or an older format is
    left out with a warning."""
    import json

    from ..validation import HostAgreement, validation_path

    vp = validation_path(model.path)
    if not vp.is_file():
        return None
    try:
        doc = json.loads(vp.read_text())
        if doc.get("model_sha256") and doc["model_sha256"] != sha:
            warnings.append(f"model {model.key}: {vp.name} validated another file (sha256 "
                            f"{doc['model_sha256'][:12]}): its device-vs-host agreement is left out")
            return None
        agree = HostAgreement.from_dict(doc["device_vs_host"]).to_dict()
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        warnings.append(f"model {model.key}: {vp.name} has no usable device_vs_host record ({e})")
        return None
    return {"target": doc.get("target"), "validated": doc.get("validated"), "device_vs_host": agree}


_HOST_LOCK = threading.Lock()


def _device_vs_host(model: ModelEntry, ev: EvalSet, outputs: np.ndarray, target) -> dict:
    """:func:`edgeeas.validation.compare_with_host` of a device's ``outputs`` with the host's on the
    same inputs (the host's computed once per model): top-1 agreement with its Wilson bound,
    device - host accuracy with McNemar's p, and the default tolerances' status."""
    from ..targets import HostTarget
    from ..validation import compare_with_host

    with _HOST_LOCK:
        if ev.host_outputs is None:
            ev.host_outputs = outputs if getattr(target, "is_local", False) else \
                HostTarget(protocol=target.protocol).evaluate(model.path, ev.inputs)
    pos = {c: i for i, c in enumerate(ev.classes)}
    labels = np.asarray([pos[int(y)] for y in ev.labels])
    n = len(labels)
    return compare_with_host(np.asarray(outputs).reshape(n, -1), np.asarray(ev.host_outputs).reshape(n, -1),
                             labels).to_dict()


@dataclass
class DeviceRun:
    """What one device delivered: latency and accuracy records by model key, or its error."""

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
                tol: Tolerances, base_passes: int, run: DeviceRun, log_fn: Callable[[str], None]) -> DeviceRun:
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
        bmodels = None if baseline is None else baseline["devices"].get(run.name, {}).get("models", {})
        recs = _measure_latency(target, by_path, bmodels, tol, base_passes, log_fn, run.name)
        for p, ms in by_path.items():
            for m in ms:
                run.latency[m.key] = recs[p]
        run.protocol = next(iter(recs.values())).pop("protocol")
        for r in recs.values():
            r.pop("protocol", None)
    for m in models:
        if m.key in run.accuracy:
            continue
        ev = evals[m.key]
        ref = None
        if baseline is not None:
            ref = baseline["devices"].get(run.name, {}).get("models", {}).get(m.key, {}).get("accuracy", {}).get("top1")
        out = target.evaluate(m.path, ev.inputs)
        run.accuracy[m.key] = ev.score(out, ref)
        if ev.mode == "labels":  # the device against the host on the same int8 tensor (edgeeas.validation)
            run.accuracy[m.key]["device_vs_host"] = _device_vs_host(m, ev, out, target)
    if run.protocol is None:
        run.protocol = next(iter(recs.values())).pop("protocol")
        for r in recs.values():
            r.pop("protocol", None)
    return run


# ---- the run ------------------------------------------------------------------------------------
@dataclass
class RegressResult:
    """The outcome of :func:`run_regress`: every device's records and every check's case."""

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
        """2 when a device or a case errored (2 wins), 1 when a check failed, 3 when a latency
        verdict is INCONCLUSIVE (too noisy to tell: neither a pass nor a regression), else 0."""
        if any(c.status == "error" for c in self.cases) or any(d.error for d in self.devices.values()):
            return 2
        if any(c.status == "fail" for c in self.cases):
            return 1
        if any(c.status == "inconclusive" for c in self.cases):
            return 3
        return 0

    def counts(self) -> dict:
        """``{"pass": n, "fail": n, "inconclusive": n, "error": n, "recorded": n}`` over the cases."""
        out = {"pass": 0, "fail": 0, "inconclusive": 0, "error": 0, "recorded": 0}
        for c in self.cases:
            out[c.status] += 1
        return out

    def to_dict(self) -> dict:
        """The ``regress.json`` document (format ``edgeeas-regress-result`` v1)."""
        from ..utils import versions

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


def run_regress(farm: Farm, baseline_path: str | os.PathLike, *, update: bool = False,
                tolerances: Tolerances = Tolerances(), jobs: int = 0, base_passes: int | None = None,
                data: str | None = None, retries: int = 1, retry_delay_s: float = 2.0,
                log_fn: Callable[[str], None] = lambda m: None, command: str = "") -> RegressResult:
    """Measure every device x model, compare with (or record) the baseline.

    Args:
        farm: the farm (:func:`~edgeeas.regress.farm.load_farm`).
        baseline_path: the baseline to compare with (read unless ``update``).
        update: record instead of checking: every case is ``recorded``; write the result with
            :func:`~edgeeas.regress.baseline.write_baseline`.
        tolerances: the checks' tolerances.
        jobs: devices measured at once (0: all).
        base_passes: passes per model when recording a baseline (default: the latency verdict's
            first look, 9 at 95 % and 15 passes); checking measures until the verdict is clear.
        data: CIFAR-100 for models with a manifest (default: the farm's ``data``).
        retries, retry_delay_s: retries of a device that drops out, and the pause before each (s).
        log_fn: progress lines.
        command: the command line, recorded in the reports.

    Returns:
        The :class:`RegressResult`; its ``exit_code`` is 0, 1 (a regression), 2 (a device failed)
        or 3 (a latency verdict INCONCLUSIVE).
        One device's failure never raises: its cases are errors.

    Raises:
        RegressUsageError: a bad farm or baseline, a missing model file, or a farm that does not
            match its baseline (a device, a model or an evaluation mode it has no record of).
        EdgeeasError: a device entry that cannot be resolved to a target (see :func:`build_targets`).
    """
    t0 = time.monotonic()
    baseline_path = Path(baseline_path)
    baseline = None if update else load_baseline(baseline_path)
    warnings: list[str] = []
    # the models: the farm's list, else the baseline's (paths relative to farm.yaml)
    if farm.models is not None:
        models = farm.models
    elif baseline is not None:
        models = [model_entry(farm.root, m["path"], k) for k, m in baseline["models"].items()]
    else:
        raise RegressUsageError(f"farm file {farm.path} lists no `models`: recording a baseline needs them")
    missing = [str(m.path) for m in models if not m.path.is_file()]
    if missing:
        raise RegressUsageError(f"model file(s) not found: {', '.join(missing)} (paths are relative to {farm.path})")
    ev_settings = dict(farm.eval) if baseline is None else {**EVAL_DEFAULTS, **baseline["eval"]}
    if baseline is not None:
        unknown = [m.key for m in models if m.key not in baseline["models"]]
        if unknown:
            raise RegressUsageError(f"baseline {baseline_path} has no record of model(s) {unknown}: "
                                    f"record them with --update-baseline")
    targets = build_targets(farm)
    names = [t.name for t in targets]
    if baseline is not None:
        for t in targets:  # a baseline recorded on the host never judges a phone, nor the reverse
            bkind = (baseline["devices"].get(t.name) or {}).get("kind")
            if bkind and bkind != t.kind:
                raise RegressUsageError(f"baseline {baseline_path}: device {t.name!r} was recorded as a {bkind} "
                                        f"device and the farm resolves it to {t.describe()}: record it again "
                                        f"with --update-baseline, or name the device it was recorded on")
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
        vdoc = _validation_agreement(m, sha, warnings)
        if vdoc is not None:
            model_info[m.key]["validation"] = vdoc
        if baseline is not None:
            b = baseline["models"][m.key]
            if b.get("sha256") and b["sha256"] != sha:
                warnings.append(f"model {m.key}: file content changed since the baseline "
                                f"(sha256 {b['sha256'][:12]} -> {sha[:12]})")
            if b["eval"]["mode"] != evals[m.key].mode:
                raise RegressUsageError(f"baseline {baseline_path}: model {m.key} was evaluated in "
                                        f"{b['eval']['mode']!r} mode, now {evals[m.key].mode!r} "
                                        f"(a manifest.json appeared or vanished): record it again with --update-baseline")
    base_passes = base_passes if base_passes is not None else tolerances.rule().looks()[0][0]
    runs = {n: DeviceRun(n) for n in names}
    sem = threading.Semaphore(jobs) if jobs and jobs < len(targets) else None

    def fn(target):
        run = runs[target.name]
        run.attempts = getattr(run, "_tries", 0) + 1
        run._tries = run.attempts  # type: ignore[attr-defined]
        if sem is None:
            return _device_job(target, models, evals, baseline, tolerances, base_passes, run, log_fn)
        with sem:
            return _device_job(target, models, evals, baseline, tolerances, base_passes, run, log_fn)

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
            warnings += protocol_warnings(n, bdev["protocol"], run.protocol, bdev.get("fingerprint") or {},
                                          run.fingerprint or {})
        cases += device_cases(n, run, bdev, [m.key for m in models], tolerances)
    return RegressResult(str(farm.path), str(baseline_path), "update" if update else "check", tolerances, runs,
                         model_info, cases, list(dict.fromkeys(warnings)), baseline,
                         time.monotonic() - t0, jobs or len(targets), ev_settings, command)
