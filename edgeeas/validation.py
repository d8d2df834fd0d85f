"""Validation: run an exported model on a target; latency vs its budget, accuracy vs the host.

The test images of the model's classes become the model's int8 input tensor through the
manifest (:func:`edgeeas.manifest.model_inputs`: the training normalization, then the model's
own input scale and zero point), are run through the runner's evaluation mode on the target,
and scored.  The same tensor runs through the host's LiteRT interpreter: both should give the
same int8 accuracy, which is the check that the device runs the file faithfully.

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
           "MANIFEST", "VALIDATION"]

MODEL, MANIFEST, VALIDATION = "model.tflite", "manifest.json", "validation.json"


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
                   data=None, images: int = 0, threads: int | None = None, max_accuracy_gap: float = 1.0,
                   protocol=None, rule=None) -> dict:
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
        protocol: a :class:`device_bench.Protocol` (default: the target's recorded protocol,
            :meth:`edgeeas.targets.TargetStore.protocol`, as the table was measured).
        rule: the latency verdict's :class:`edgeeas.verdict.VerdictRule` (default: 95 %, at
            least the protocol's passes, at most 15).

    Returns:
        What ``edgeeas validate --json`` prints: ``latency_ms`` (the protocol's statistic),
        ``accuracy_device_int8`` / ``accuracy_host_int8`` (%), ``accuracy_gap`` (points),
        ``budget`` (the manifest's, :meth:`BudgetSpec.to_dict`), ``madds`` (count, MAdds budgets),
        ``latency_verdict`` (:class:`edgeeas.verdict.LatencyVerdict` as a dict, latency budgets),
        ``failures`` and ``inconclusive`` (one line each), ``verdict`` (``PASS``, ``FAIL``: some
        failure, ``INCONCLUSIVE``: none, but the latency could not be told apart from the budget
        within the cap of passes) and ``passed`` (``verdict == "PASS"``).

    Raises:
        EdgeeasUsageError: no model file, no classes to score, a contradicting ``--superclass``.
        EdgeeasError: a model that is not int8 NHWC, a head that does not match the classes, an
            unreadable manifest, or a target that fails (one line).
    """
    from .data import load_dataset
    from .export import tflite_info, tflite_madds
    from .targets import HostTarget, resolve_target

    model = Path(model)
    if not model.is_file():
        raise EdgeeasUsageError(f"no model file at {model}")
    if manifest_path is None and (model.parent / MANIFEST).is_file():
        manifest_path = model.parent / MANIFEST
    manifest = read_manifest(manifest_path) if manifest_path else ModelManifest()

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
    if manifest.target and manifest.target != target.name:
        # the model's budget was judged with its target's figures: only a device of that kind can test it
        from .targets import TargetStore, check_store_kind

        check_store_kind(TargetStore.named(manifest.target), target.kind, target.describe())
    if protocol is None:  # the target's recorded protocol: the budget was judged with its figures
        protocol = target.store.protocol()
    if threads is not None and threads != protocol.threads:
        protocol = dataclasses.replace(protocol, threads=threads)
    target.protocol = protocol
    budget = manifest.budget
    verdict = None
    if budget is not None and budget.latency_ms is not None:
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
    else:
        meas = target.measure(model)
    y_dev = target.evaluate(model, x)
    y_host = y_dev if target.is_local else HostTarget(protocol=protocol).evaluate(model, x)
    if y_dev.shape != (n, k):
        raise EdgeeasError(f"{target.describe()} returned outputs of shape {list(y_dev.shape)}, expected [{n}, {k}]")
    pred_dev, pred_host = y_dev.argmax(1), y_host.argmax(1)
    acc_dev = float((pred_dev == labels).mean() * 100)
    acc_host = float((pred_host == labels).mean() * 100)
    gap = acc_dev - acc_host

    result = {
        "model": str(model), "manifest": str(manifest_path) if manifest_path else None,
        "arch": manifest.arch, "target": target.name, "target_kind": target.kind,
        "superclasses": supers, "classes": classes, "images": int(n),
        "latency_ms": round(verdict.value_ms if verdict else meas.value_ms, 4), "statistic": protocol.statistic,
        "latency": meas.to_dict(), "protocol": protocol.to_dict(),
        "latency_verdict": verdict.to_dict() if verdict else None,
        "predicted_latency_ms": manifest.predicted_latency_ms,
        "accuracy_device_int8": round(acc_dev, 3), "accuracy_host_int8": round(acc_host, 3),
        "accuracy_gap": round(gap, 3), "max_accuracy_gap": max_accuracy_gap,
        "prediction_agreement": round(float((pred_dev == pred_host).mean() * 100), 3),
        "outputs_identical": bool(np.array_equal(y_dev, y_host)),
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
        madds = tflite_madds(model)
        result["madds"] = madds
        if madds > budget.madds * 1.0001:
            result["failures"].append(f"{madds / 1e6:.3f} M MAdds exceed the budget {budget.madds / 1e6:g} M")
    if abs(gap) > max_accuracy_gap:
        result["failures"].append(f"on-device accuracy {acc_dev:.2f}% differs from the host's int8 "
                                  f"{acc_host:.2f}% by {abs(gap):.2f} points (> {max_accuracy_gap:g})")
    result["verdict"] = "FAIL" if result["failures"] else "INCONCLUSIVE" if result["inconclusive"] else "PASS"
    result["passed"] = result["verdict"] == "PASS"
    return result


def validate_folder(folder: Path, target: str | None = None, *, data=None, images: int = 0,
                    adb_serial: str | None = None, targets_file=None, max_accuracy_gap: float = 1.0) -> dict:
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
                       max_accuracy_gap=max_accuracy_gap)
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
    if manifest is not None and manifest.budget is not None and manifest.budget.latency_ms and r.get("latency_ms"):
        r["budget_utilization"] = round(r["latency_ms"] / manifest.budget.latency_ms, 4)
    path = validation_path(model)
    atomic_write_text(path, json.dumps(r, indent=2, default=str) + "\n")
    return path
