"""Validation: run an exported model on a target; latency vs its budget, accuracy vs the host.

The test images of the model's classes become the model's int8 input tensor through the
manifest (:func:`edgeeas.manifest.model_inputs`: the training normalization, then the model's
own input scale and zero point), are run through the runner's evaluation mode on the target,
and scored.  The same tensor runs through the host's LiteRT interpreter with its default
(XNNPACK) kernels, the reference the manifest's host int8 accuracy was measured with.

Device and host are **not** expected to agree bit for bit: another ISA, another delegate or
the interpreter's builtin kernels (``--use_xnnpack=false``) round int8 arithmetic differently
(measured on the emulated arm64 device: builtin vs XNNPACK kernels, 0-3 of 64 output rows
bit-identical, at most 2 int8 units apart, top-1 63-64/64).  :func:`compare_with_host` reports
what survives that: the top-1 agreement with the host (``min_agreement``, %) and the accuracy
difference (``max_accuracy_gap``, points), each with its tolerance, as the
``device_vs_host`` record of ``validation.json`` (:class:`HostAgreement`).

:func:`run_validation` is what ``edgeeas validate`` prints; :func:`validate_folder` runs it on
an emitted model folder under the target's own measurement protocol and stores the result as
``validation.json`` beside the model, where deploy and the report read it.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np

from .errors import EdgeeasError, EdgeeasUsageError
from .manifest import ModelManifest, manifest_classes, model_inputs, read_manifest

__all__ = ["run_validation", "validate_folder", "save_validation", "validation_path", "target_protocol", "MODEL",
           "MANIFEST", "VALIDATION", "HostAgreement", "compare_with_host", "check_target_name",
           "DEFAULT_MAX_ACCURACY_GAP", "DEFAULT_MIN_AGREEMENT"]

MODEL, MANIFEST, VALIDATION = "model.tflite", "manifest.json", "validation.json"

#: Allowed |device - host| int8 accuracy, percentage points.
DEFAULT_MAX_ACCURACY_GAP = 1.0
#: Least top-1 agreement with the host, % of images.  Kernels that round differently move only
#: near-ties (63-64 of 64 agreed on the emulated arm64 device with builtin kernels); a device that
#: runs the file wrongly disagrees on most images.
DEFAULT_MIN_AGREEMENT = 95.0


@dataclasses.dataclass(frozen=True)
class HostAgreement:
    """How a device's outputs compare with the host's on the same int8 input tensor.

    Attributes:
        images: rows compared.
        top1_agreement_pct: % of images whose top-1 class is the host's.
        accuracy_device_pct, accuracy_host_pct: top-1 accuracy on the labels, %.
        accuracy_diff_points: device - host, percentage points (negative: the device is worse).
        host_only_correct, device_only_correct: images only the host (only the device) classifies
            right: the discordant pairs the accuracy difference is made of.
        mcnemar_p: exact two-sided McNemar p-value of those pairs (1.0: no evidence the
            accuracies differ; small: a real difference, not a few near-ties flipping).
        agreement_upper95_pct: the 95 % Wilson upper bound of the top-1 agreement.
        identical_outputs_pct: % of rows whose whole output vector is bit-identical to the host's
            (information only: never a pass condition).
        max_abs_output_diff: the largest |device - host| output difference, in the output's own
            units (int8 steps for an int8 model).
        min_top1_agreement_pct, max_accuracy_diff_points: the tolerances applied.
        device_kernels, host_kernels: ``"xnnpack"`` (the interpreter's default delegate) or
            ``"builtin"`` (``--use_xnnpack=false``).
        failures: one line per broken tolerance; ``status`` is ``"FAIL"`` when there is one, else ``"PASS"``.
    """

    images: int
    top1_agreement_pct: float
    accuracy_device_pct: float
    accuracy_host_pct: float
    accuracy_diff_points: float
    host_only_correct: int
    device_only_correct: int
    mcnemar_p: float
    agreement_upper95_pct: float
    identical_outputs_pct: float
    max_abs_output_diff: float
    min_top1_agreement_pct: float
    max_accuracy_diff_points: float
    device_kernels: str = "xnnpack"
    host_kernels: str = "xnnpack"
    failures: tuple = ()

    @property
    def status(self) -> str:
        """``"PASS"`` or ``"FAIL"``."""
        return "FAIL" if self.failures else "PASS"

    def to_dict(self) -> dict:
        """JSON-ready, with ``status`` (the ``device_vs_host`` record of ``validation.json``)."""
        d = dataclasses.asdict(self)
        d["failures"] = list(self.failures)
        d["status"] = self.status
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "HostAgreement":
        """Inverse of :meth:`to_dict` (``status`` is derived, so ignored).

        Raises:
            ValueError: a missing field (a ``validation.json`` written before this record existed)."""
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if n not in d]
        if missing:
            raise ValueError(f"device_vs_host record lacks {', '.join(missing)}")
        return cls(**{n: (tuple(d[n]) if n == "failures" else d[n]) for n in names})


def compare_with_host(y_device: np.ndarray, y_host: np.ndarray, labels: np.ndarray, *,
                      max_accuracy_gap: float = DEFAULT_MAX_ACCURACY_GAP,
                      min_agreement: float = DEFAULT_MIN_AGREEMENT, device_kernels: str = "xnnpack",
                      host_kernels: str = "xnnpack") -> HostAgreement:
    """Compare a device's raw outputs with the host's: top-1 agreement and accuracy difference,
    each against its tolerance, telling a real difference from sampling noise.

    The rule (each broken one is a line of ``failures``):

    * agreement: FAIL when even the 95 % Wilson upper bound of the top-1 agreement is below
      ``min_agreement`` (20 images of which 18 agree do not prove a device below 95 %);
    * accuracy: FAIL when |device - host| exceeds ``max_accuracy_gap`` points *and* the
      discordant images say it is real (exact McNemar p < 0.05): two near-ties that flip the
      device's way on 100 images (+2 points, p = 0.5) are rounding, not a broken device.

    Args:
        y_device, y_host: raw outputs ``[N, K]`` of one model over one input tensor.
        labels: ``[N]`` class indices into the K outputs.
        max_accuracy_gap: allowed |device - host| accuracy, percentage points.
        min_agreement: least % of images whose device top-1 is the host's.
        device_kernels, host_kernels: recorded as given (``"xnnpack"`` or ``"builtin"``).

    Returns:
        A :class:`HostAgreement`; its ``failures`` say which tolerance broke, with the figures.

    Raises:
        ValueError: shapes that differ, or no rows.
    """
    y_device, y_host, labels = np.asarray(y_device), np.asarray(y_host), np.asarray(labels)
    if y_device.shape != y_host.shape or y_device.ndim != 2 or len(labels) != len(y_device) or not len(labels):
        raise ValueError(f"cannot compare device outputs {list(y_device.shape)} with host outputs "
                         f"{list(y_host.shape)} over {len(labels)} labels")
    pd, ph = y_device.argmax(1), y_host.argmax(1)
    acc_d, acc_h = float((pd == labels).mean() * 100), float((ph == labels).mean() * 100)
    agree = float((pd == ph).mean() * 100)
    diff = acc_d - acc_h
    n = len(labels)
    b = int(((ph == labels) & (pd != labels)).sum())  # host right, device wrong
    c = int(((pd == labels) & (ph != labels)).sum())  # device right, host wrong
    p_value = _mcnemar_exact(b, c)
    upper = _wilson_upper(int((pd == ph).sum()), n) * 100
    same = float(np.all(y_device == y_host, axis=1).mean() * 100)
    maxdiff = float(np.abs(y_device.astype(np.float64) - y_host.astype(np.float64)).max())
    failures = []
    if upper < min_agreement:
        failures.append(f"the device's top-1 agrees with the host's on {agree:.1f}% of {n} images "
                        f"(< {min_agreement:g}%, 95 % upper bound {upper:.1f}%): it does not run this model "
                        f"as the host does")
    if abs(diff) > max_accuracy_gap and p_value < 0.05:
        failures.append(f"on-device accuracy {acc_d:.2f}% differs from the host's int8 {acc_h:.2f}% by "
                        f"{abs(diff):.2f} points (> {max_accuracy_gap:g}; {b} images only the host gets right, "
                        f"{c} only the device, McNemar p={p_value:.2g})")
    return HostAgreement(images=int(len(labels)), top1_agreement_pct=round(agree, 3),
                         accuracy_device_pct=round(acc_d, 3), accuracy_host_pct=round(acc_h, 3),
                         accuracy_diff_points=round(diff, 3), host_only_correct=b, device_only_correct=c,
                         mcnemar_p=float(p_value), agreement_upper95_pct=round(upper, 3),
                         identical_outputs_pct=round(same, 3),
                         max_abs_output_diff=maxdiff, min_top1_agreement_pct=float(min_agreement),
                         max_accuracy_diff_points=float(max_accuracy_gap), device_kernels=device_kernels,
                         host_kernels=host_kernels, failures=tuple(failures))


def _mcnemar_exact(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value of ``b`` vs ``c`` discordant pairs (binomial, p = 1/2)."""
    m = b + c
    if m == 0:
        return 1.0
    tail = sum(math.comb(m, i) for i in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2 ** m)


def _wilson_upper(k: int, n: int, z: float = 1.959964) -> float:
    """Upper end of the 95 % Wilson score interval of ``k`` successes in ``n`` trials (a fraction)."""
    if n == 0:
        return 1.0
    p = k / n
    centre = p + z * z / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return min(1.0, (centre + half) / (1 + z * z / n))


def check_target_name(name: str | None, targets_file=None) -> None:
    """Refuse a ``--target`` that names nothing: not ``host``, not a ``targets.yaml`` name, not a
    benched target (a ``targets/NAME/`` folder that records its device), and not an adb
    ``host:port`` (or ``emulator-N``) serial.  A USB serial goes in ``--adb-serial``.

    Raises:
        EdgeeasUsageError: one line listing the known targets.
    """
    if name is None or name == "host":
        return
    from .adb_target import load_target_specs
    from .targets import TargetStore, targets_root

    path, specs = load_target_specs(targets_file)
    if name in specs or TargetStore.named(name).stored_fingerprint():
        return
    from android_runner import AdbError, parse_serial

    try:
        if parse_serial(name)[0] == "tcp":
            return
    except AdbError as e:
        raise EdgeeasUsageError(f"--target {name!r}: {e}") from None
    root = targets_root()
    benched = sorted(p.name for p in root.iterdir()
                     if p.is_dir() and TargetStore.named(p.name, root).stored_fingerprint()) if root.is_dir() else []
    known = ["host"] + [f"{n} ({path})" for n in specs] + [f"{n} ({root}/{n})" for n in benched if n != "host"]
    raise EdgeeasUsageError(f"unknown target {name!r}: known targets are {', '.join(known)}; give an adb "
                            f"device's serial with --adb-serial SERIAL")


def now() -> str:
    """Local time, ISO 8601 with the UTC offset (``2026-11-30T21:06:00+0000``)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def target_protocol(target: str):
    """The measurement protocol of ``targets/TARGET`` (its predictor's, else its table's), so
    validation measures the way the table was measured; the default
    :class:`device_bench.Protocol` if the target has none (:meth:`edgeeas.targets.TargetStore.protocol`)."""
    from .targets import TargetStore

    return TargetStore.named(target).protocol()


def _classes(manifest: ModelManifest, superclass: str | None, ds) -> tuple[list[int], list[str]]:
    """Fine-class ids in head order, and the superclass names they come from."""
    if manifest.classes:
        classes = manifest_classes(manifest, ds)
        supers = sorted({ds.superclasses[int(ds.class_to_super[c])] for c in classes}, key=ds.superclasses.index)
        if superclass and supers != [superclass]:
            raise EdgeeasUsageError(f"--superclass {superclass} contradicts the manifest, whose classes "
                                    f"belong to {', '.join(supers)}")
        return classes, supers
    names = manifest.superclasses or ([superclass] if superclass else [])
    if not names:
        raise EdgeeasUsageError("no manifest next to the model: pass --superclass NAME (or --manifest manifest.json)")
    return manifest_classes(ModelManifest(superclasses=list(names)), ds), list(names)


def run_validation(model: Path, *, target_name: str | None = None, adb_serial: str | None = None,
                   targets_file=None, manifest_path: Path | None = None, superclass: str | None = None,
                   data=None, images: int = 0, threads: int | None = None,
                   max_accuracy_gap: float = DEFAULT_MAX_ACCURACY_GAP, min_agreement: float = DEFAULT_MIN_AGREEMENT,
                   budget: str | None = None, check_latency: bool = True, use_xnnpack: bool | None = None,
                   protocol=None, rule=None, verbose: bool | None = None) -> dict:
    """Run ``model`` on a target: latency by the target's protocol until a noise-aware verdict
    (:mod:`edgeeas.verdict`), int8 accuracy on its classes' test images.

    Args:
        model: an int8 NHWC image model ``[1,H,W,3]`` (``.tflite``).
        target_name, adb_serial, targets_file: the target (:func:`edgeeas.targets.resolve_target`:
            ``--adb-serial``, else ``$ANDROID_SERIAL``, ...); ``target_name`` defaults to the
            manifest's target.  A device of another kind than the target's figures is refused.
        manifest_path: its manifest (default ``manifest.json`` beside ``model``, if any); without
            one, ``superclass`` names the classes (all of its fine classes, ascending id).
        data: the dataset (:func:`edgeeas.data.load_dataset`).
        images: the first N test images only (0: all).
        threads: interpreter threads, overriding the protocol's (``None``: the protocol's).
        max_accuracy_gap: allowed |device - host| int8 accuracy, percentage points.
        min_agreement: least top-1 agreement with the host, % of images (:func:`compare_with_host`).
        budget: a budget (``20ms``, ``500us``, ``8M``) that replaces the manifest's; without either
            the latency is measured but not checked, and the result says so (``latency_checked``).
        check_latency: ``False`` measures no latency at all (an emulated device, where timings mean
            nothing): accuracy and device-vs-host only.  The target's kind is then not checked
            against the manifest's target, since none of its figures are used.
        use_xnnpack: the device's kernels: ``True`` the interpreter's default XNNPACK delegate,
            ``False`` its builtin kernels (``--use_xnnpack=false``), ``None`` the protocol's.  The host
            reference always runs its default (XNNPACK) kernels.
        protocol: a :class:`device_bench.Protocol` (default: the target's recorded protocol,
            :meth:`edgeeas.targets.TargetStore.protocol`, as the table was measured).
        verbose: show the interpreter's own stderr lines ("INFO: Created TensorFlow Lite XNNPACK
            delegate for CPU."), held back by default (:func:`edgeeas.quiet.quiet_stderr`).
        rule: the latency verdict's :class:`edgeeas.verdict.VerdictRule` (default: 95 %, at
            least the protocol's passes, at most 15).

    Returns:
        What ``edgeeas validate --json`` prints: ``latency_ms`` (the protocol's statistic),
        ``accuracy_device_int8`` / ``accuracy_host_int8`` (%), ``accuracy_gap`` (points),
        ``device_vs_host`` (:meth:`HostAgreement.to_dict`: top-1 agreement, accuracy difference,
        their tolerances, kernels, status), ``latency_checked`` (bool) with ``latency_note``,
        ``budget`` (``--budget``'s, else the manifest's, :meth:`BudgetSpec.to_dict`), ``madds`` (count, MAdds budgets),
        ``latency_verdict`` (:class:`edgeeas.verdict.LatencyVerdict` as a dict, latency budgets),
        ``failures`` and ``inconclusive`` (one line each), ``verdict`` (``PASS``, ``FAIL``: some
        failure, ``INCONCLUSIVE``: none, but the latency could not be told apart from the budget
        within the cap of passes) and ``passed`` (``verdict == "PASS"``).

    Raises:
        EdgeeasUsageError: no model file, no classes to score, a contradicting ``--superclass``, a
            malformed ``budget``, an unknown ``target_name`` (:func:`check_target_name`).
        EdgeeasError: a model that is not int8 NHWC, a head that does not match the classes, an
            unreadable manifest, or a target that fails (one line).
    """
    from .data import load_dataset
    from .export import tflite_info, tflite_madds
    from .targets import HostTarget, resolve_target

    model = Path(model)
    if not model.is_file():
        raise EdgeeasUsageError(f"no model file at {model}")
    check_target_name(target_name, targets_file)
    given_budget = None
    if budget is not None:
        from .manifest import BudgetSpec
        from .search.budget import parse_budget

        given_budget = BudgetSpec.from_budget(parse_budget(budget))
    if manifest_path is None and (model.parent / MANIFEST).is_file():
        manifest_path = model.parent / MANIFEST
    manifest = read_manifest(manifest_path) if manifest_path else ModelManifest()

    from .quiet import quiet_stderr

    with quiet_stderr(verbose):  # the in-process interpreter announces its XNNPACK delegate
        info = tflite_info(model)
    if info.input_dtype != "int8" or len(info.input_shape) != 4 or info.input_shape[-1] != 3:
        raise EdgeeasError(f"{model}: expected an int8 NHWC image model [1,H,W,3], got {info.input_dtype} "
                           f"{list(info.input_shape)}")
    notes = []
    mi = manifest.input
    for key, mine in (("scale", info.input_scale), ("zero_point", info.input_zero_point)):
        theirs = getattr(mi, key) if mi is not None else None
        if theirs is not None and not math.isclose(float(theirs), float(mine), rel_tol=1e-6, abs_tol=1e-9):
            notes.append(f"manifest input {key} {theirs} differs from the model's {mine}: using the model's")

    ds = load_dataset(data)
    classes, supers = _classes(manifest, superclass, ds)
    k = int(info.output_shape[-1])
    if k != len(classes):
        raise EdgeeasError(f"{model} has {k} outputs but {', '.join(supers)} has {len(classes)} classes "
                           "(a specialized model's head keeps exactly its superclasses' classes)")
    if not np.isin(ds.test.labels, classes).any():
        raise EdgeeasError(f"no test images for {', '.join(supers)} in {ds.source or ds.name}")
    mx = model_inputs(ModelManifest(classes=classes, input=mi), ds, info, limit=images)
    x, labels, n = mx.inputs, mx.labels, len(mx.labels)

    target = resolve_target(target_name or manifest.target, adb_serial=adb_serial, targets_file=targets_file,
                            protocol=protocol)
    if check_latency and manifest.target and manifest.target != target.name:
        # the model's budget was judged with its target's figures: only a device of that kind can test it
        from .targets import TargetStore, check_store_kind

        check_store_kind(TargetStore.named(manifest.target), target.kind, target.describe())
    if protocol is None:  # the target's recorded protocol: the budget was judged with its figures
        protocol = target.store.protocol()
    if threads is not None and threads != protocol.threads:
        protocol = dataclasses.replace(protocol, threads=threads)
    if use_xnnpack is not None and use_xnnpack != protocol.use_xnnpack:
        protocol = dataclasses.replace(protocol, use_xnnpack=use_xnnpack)
    target.protocol = protocol
    if given_budget is not None and manifest.budget is not None and given_budget != manifest.budget:
        notes.append(f"--budget {given_budget.text} replaces the manifest's budget {manifest.budget.text}")
    budget = given_budget or manifest.budget
    verdict = meas = None
    if not check_latency:
        latency_note = "latency not checked (--skip-latency)"
    elif budget is None:
        latency_note = ("latency not checked against a budget: no manifest budget and no --budget "
                        "(measured only)")
    else:
        latency_note = None
    if check_latency and budget is not None and budget.latency_ms is not None:
        from device_bench import combine_passes

        from .verdict import VerdictRule, measure_verdict

        rule = rule or VerdictRule(min_passes=max(3, protocol.passes), max_passes=max(15, protocol.passes))
        one_pass = dataclasses.replace(protocol, passes=1)
        target.protocol = one_pass
        try:
            verdict, passes = measure_verdict(lambda: target.measure(model), budget.latency_ms, rule,
                                              statistic=protocol.statistic)
        finally:
            target.protocol = protocol
        meas = combine_passes(passes)
    elif check_latency:
        meas = target.measure(model)
    y_dev = target.evaluate(model, x)
    # the reference: the host's default (XNNPACK) kernels, as the manifest's host int8 accuracy
    ref = dataclasses.replace(protocol, use_xnnpack=True)
    y_host = (y_dev if target.is_local and protocol.use_xnnpack
              else HostTarget(protocol=ref).evaluate(model, x))
    if y_dev.shape != (n, k):
        raise EdgeeasError(f"{target.describe()} returned outputs of shape {list(y_dev.shape)}, expected [{n}, {k}]")
    agreement = compare_with_host(y_dev, y_host, labels, max_accuracy_gap=max_accuracy_gap,
                                  min_agreement=min_agreement,
                                  device_kernels="xnnpack" if protocol.use_xnnpack else "builtin")
    acc_dev, acc_host = agreement.accuracy_device_pct, agreement.accuracy_host_pct
    gap = agreement.accuracy_diff_points

    result = {
        "model": str(model), "manifest": str(manifest_path) if manifest_path else None,
        "arch": manifest.arch, "target": target.name, "target_kind": target.kind,
        "superclasses": supers, "classes": classes, "images": int(n),
        "latency_ms": (round(verdict.value_ms, 4) if verdict else round(meas.value_ms, 4) if meas else None),
        "statistic": protocol.statistic, "latency": meas.to_dict() if meas else None, "protocol": protocol.to_dict(),
        "latency_checked": latency_note is None, "latency_note": latency_note,
        "latency_verdict": verdict.to_dict() if verdict else None,
        "predicted_latency_ms": manifest.predicted_latency_ms,
        "accuracy_device_int8": round(acc_dev, 3), "accuracy_host_int8": round(acc_host, 3),
        "accuracy_gap": round(gap, 3), "max_accuracy_gap": max_accuracy_gap,
        "prediction_agreement": agreement.top1_agreement_pct,
        "outputs_identical": bool(np.array_equal(y_dev, y_host)),
        "device_vs_host": agreement.to_dict(),
        "accuracy_manifest": manifest.accuracy.to_dict() if manifest.accuracy else {},
        "budget": budget.to_dict() if budget else None, "madds": None, "notes": notes, "failures": [], "inconclusive": [],
    }
    if verdict is not None:
        if verdict.status == "FAIL":
            result["failures"].append(f"latency exceeds the budget {budget.latency_ms:g} ms: "
                                      f"{verdict.describe(status=False)}")
        elif verdict.status == "INCONCLUSIVE":
            result["inconclusive"].append(f"latency cannot be told apart from the budget within {verdict.passes} "
                                          f"passes (too noisy here): {verdict.describe(status=False)}")
    elif budget is not None and budget.madds is not None:
        with quiet_stderr(verbose):
            madds = tflite_madds(model)
        result["madds"] = madds
        if madds > budget.madds * 1.0001:
            result["failures"].append(f"{madds / 1e6:.3f} M MAdds exceed the budget {budget.madds / 1e6:g} M")
    result["failures"] += list(agreement.failures)
    result["verdict"] = "FAIL" if result["failures"] else "INCONCLUSIVE" if result["inconclusive"] else "PASS"
    result["passed"] = result["verdict"] == "PASS"
    return result


def validate_folder(folder: Path, target: str | None = None, *, data=None, images: int = 0,
                    adb_serial: str | None = None, targets_file=None, max_accuracy_gap: float = DEFAULT_MAX_ACCURACY_GAP,
                    min_agreement: float = DEFAULT_MIN_AGREEMENT) -> dict:
    """:func:`run_validation` on ``folder/model.tflite`` with its manifest, under the target's own
    measurement protocol (:func:`target_protocol` of the resolved target); the result, plus ``model_sha256``,
    ``validated`` (time) and for latency budgets ``budget_utilization`` (measured / budget), is
    stored as ``folder/validation.json`` and returned.

    ``target`` defaults to the manifest's.  Raises what :func:`run_validation` raises."""
    folder = Path(folder)
    manifest = read_manifest(folder / MANIFEST) if (folder / MANIFEST).is_file() else ModelManifest()
    target = target or manifest.target or "host"
    r = run_validation(folder / MODEL, target_name=target, adb_serial=adb_serial, targets_file=targets_file,
                       manifest_path=folder / MANIFEST, data=data, images=images,
                       max_accuracy_gap=max_accuracy_gap, min_agreement=min_agreement)
    save_validation(folder / MODEL, r, manifest)
    return r


def validation_path(model: Path) -> Path:
    """Where a model's validation result lives: ``validation.json`` beside ``model.tflite`` (the
    folder layout ``specialize`` writes and ``report``/``deploy`` read), ``NAME.validation.json``
    beside any other ``NAME.tflite``."""
    model = Path(model)
    return model.parent / (VALIDATION if model.name == MODEL else f"{model.stem}.validation.json")


def save_validation(model: Path, r: dict, manifest: ModelManifest | None = None) -> Path:
    """Add ``model_sha256``, ``validated`` (time) and, for latency budgets, ``budget_utilization``
    (measured / budget) to ``r`` and write it atomically to :func:`validation_path`; the path."""
    from .utils import atomic_write_text, sha256_file

    r["model_sha256"] = sha256_file(model)
    r["validated"] = now()
    budget_ms = (r.get("budget") or {}).get("latency_ms")
    if budget_ms is None and manifest is not None and manifest.budget is not None:
        budget_ms = manifest.budget.latency_ms
    if budget_ms and r.get("latency_ms") and r.get("latency_checked", True):
        r["budget_utilization"] = round(r["latency_ms"] / budget_ms, 4)
    path = validation_path(model)
    atomic_write_text(path, json.dumps(r, indent=2, default=str) + "\n")
    return path
