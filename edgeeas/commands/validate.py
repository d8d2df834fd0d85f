"""``edgeeas validate``: run an exported model on a target; latency vs budget, accuracy vs host.

The test images of the model's superclass are preprocessed exactly as for training
(``edgeeas.evaluate.to_float``: mean/std normalisation), quantized with the model's own input
scale and zero point into an int8 NHWC tensor file, pushed, run through the runner's evaluation
mode on the target, pulled back and scored.  The same tensor runs through the host's LiteRT
interpreter (``HostTarget().evaluate``): both should give the same int8 accuracy, which is the
check that the device runs the file faithfully.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import click
import numpy as np

from ..errors import EdgeeasError, EdgeeasUsageError
from .devices import enable_adb_log, verbose_option

__all__ = ["validate", "run_validation", "load_manifest"]


def load_manifest(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except OSError as e:
        raise EdgeeasUsageError(f"cannot read manifest {path}: {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise EdgeeasError(f"manifest {path} is not valid JSON (line {e.lineno}: {e.msg})") from None
    if not isinstance(data, dict):
        raise EdgeeasError(f"manifest {path}: expected a JSON object, got {type(data).__name__}")
    return data


def _classes(manifest: dict, superclass: str | None, ds) -> tuple[list[int], list[str]]:
    """Fine-class ids in head order, and the superclass names they come from."""
    if manifest.get("classes"):
        classes = [int(c) for c in manifest["classes"]]
        bad = [c for c in classes if not 0 <= c < ds.num_classes]
        if bad:
            raise EdgeeasError(f"manifest classes {bad} are not fine-class ids of {ds.name} (0..{ds.num_classes - 1})")
        supers = sorted({ds.superclasses[int(ds.class_to_super[c])] for c in classes},
                        key=ds.superclasses.index)
        if superclass and supers != [superclass]:
            raise EdgeeasUsageError(f"--superclass {superclass} contradicts the manifest, whose classes "
                                    f"belong to {', '.join(supers)}")
        return classes, supers
    names = manifest.get("superclasses") or ([superclass] if superclass else [])
    if not names:
        raise EdgeeasUsageError("no manifest next to the model: pass --superclass NAME (or --manifest manifest.json)")
    classes = sorted(c for n in names for c in ds.classes_of(ds.superclass_id(n)))
    return classes, list(names)


def _normalize(images: np.ndarray, mean, std) -> np.ndarray:
    from ..data import MEAN, STD
    from ..evaluate import to_float

    if mean is None or std is None or (np.allclose(mean, MEAN, atol=1e-6) and np.allclose(std, STD, atol=1e-6)):
        return to_float(images).numpy()
    m = np.asarray(mean, np.float32).reshape(1, 3, 1, 1) * 255
    s = np.asarray(std, np.float32).reshape(1, 3, 1, 1) * 255
    return ((images.astype(np.float32) - m) / s).astype(np.float32)


def run_validation(model: Path, *, target_name: str | None = "host", adb_serial: str | None = None,
                   targets_file=None, manifest_path: Path | None = None, superclass: str | None = None,
                   data=None, images: int = 0, threads: int = 1, max_accuracy_gap: float = 1.0,
                   protocol=None) -> dict:
    """Everything ``edgeeas validate`` prints, as a dict (``passed`` says whether it exits 0)."""
    from device_bench import Protocol

    from ..data import load_dataset
    from ..export import quantize_input, tflite_info, tflite_madds
    from ..targets import HostTarget, resolve_target

    model = Path(model)
    if not model.is_file():
        raise EdgeeasUsageError(f"no model file at {model}")
    if manifest_path is None and (model.parent / "manifest.json").is_file():
        manifest_path = model.parent / "manifest.json"
    manifest = load_manifest(manifest_path) if manifest_path else {}

    info = tflite_info(model)
    if info.input_dtype != "int8" or len(info.input_shape) != 4 or info.input_shape[-1] != 3:
        raise EdgeeasError(f"{model}: expected an int8 NHWC image model [1,H,W,3], got {info.input_dtype} "
                           f"{list(info.input_shape)}")
    notes = []
    mi = manifest.get("input") or {}
    for key, mine in (("scale", info.input_scale), ("zero_point", info.input_zero_point)):
        if key in mi and not math.isclose(float(mi[key]), float(mine), rel_tol=1e-6, abs_tol=1e-9):
            notes.append(f"manifest input {key} {mi[key]} differs from the model's {mine}: using the model's")

    ds = load_dataset(data)
    classes, supers = _classes(manifest, superclass, ds)
    k = int(info.output_shape[-1])
    if k != len(classes):
        raise EdgeeasError(f"{model} has {k} outputs but {', '.join(supers)} has {len(classes)} classes "
                           "(a specialized model's head keeps exactly its superclasses' classes)")
    idx = np.flatnonzero(np.isin(ds.test.labels, classes))
    if images:
        idx = idx[:images]
    if not len(idx):
        raise EdgeeasError(f"no test images for {', '.join(supers)} in {ds.source or ds.name}")
    lookup = {c: i for i, c in enumerate(classes)}
    labels = np.array([lookup[int(c)] for c in ds.test.labels[idx]])
    x = quantize_input(_normalize(ds.test.images[idx], mi.get("mean"), mi.get("std")), info)

    protocol = protocol or Protocol(threads=threads)
    target = resolve_target(target_name, adb_serial=adb_serial, targets_file=targets_file, protocol=protocol)
    meas = target.measure(model)
    y_dev = target.evaluate(model, x)
    y_host = y_dev if isinstance(target, HostTarget) else HostTarget(protocol=protocol).evaluate(model, x)
    if y_dev.shape != (len(idx), k):
        raise EdgeeasError(f"{target.describe()} returned outputs of shape {list(y_dev.shape)}, expected [{len(idx)}, {k}]")
    pred_dev, pred_host = y_dev.argmax(1), y_host.argmax(1)
    acc_dev = float((pred_dev == labels).mean() * 100)
    acc_host = float((pred_host == labels).mean() * 100)
    gap = acc_dev - acc_host

    result = {
        "model": str(model), "manifest": str(manifest_path) if manifest_path else None,
        "arch": manifest.get("arch"), "target": target.name, "target_kind": target.kind,
        "superclasses": supers, "classes": classes, "images": int(len(idx)),
        "latency_ms": round(meas.value_ms, 4), "statistic": protocol.statistic,
        "latency": meas.to_dict(),
        "predicted_latency_ms": manifest.get("predicted_latency_ms"),
        "accuracy_device_int8": round(acc_dev, 3), "accuracy_host_int8": round(acc_host, 3),
        "accuracy_gap": round(gap, 3), "max_accuracy_gap": max_accuracy_gap,
        "prediction_agreement": round(float((pred_dev == pred_host).mean() * 100), 3),
        "outputs_identical": bool(np.array_equal(y_dev, y_host)),
        "accuracy_manifest": manifest.get("accuracy") or {},
        "budget": manifest.get("budget"), "madds": None, "notes": notes, "failures": [],
    }
    budget = manifest.get("budget") or {}
    if budget.get("kind") == "latency_ms" and budget.get("value") is not None:
        if meas.value_ms > float(budget["value"]):
            result["failures"].append(f"latency {meas.value_ms:.3f} ms exceeds the budget {float(budget['value']):g} ms")
    elif budget.get("kind") == "madds" and budget.get("value") is not None:
        madds = tflite_madds(model)
        value = float(budget["value"])
        # specialize may write the budget as a count or in millions (madds_m): small values are millions
        limit = value * 1e6 if value < 1e5 else value
        result["madds"] = madds
        if madds > limit * 1.0001:
            result["failures"].append(f"{madds / 1e6:.3f} M MAdds exceed the budget {limit / 1e6:g} M")
    if abs(gap) > max_accuracy_gap:
        result["failures"].append(f"on-device accuracy {acc_dev:.2f}% differs from the host's int8 "
                                  f"{acc_host:.2f}% by {abs(gap):.2f} points (> {max_accuracy_gap:g})")
    result["passed"] = not result["failures"]
    return result


def _table(r: dict) -> str:
    def v(x, fmt="{:.2f}"):
        return "-" if x is None else fmt.format(x)

    acc = r["accuracy_manifest"]
    budget = r["budget"] or {}
    lines = [
        f"model      {r['model']}" + (f"  ({r['arch']})" if r.get("arch") else ""),
        f"target     {r['target']} ({r['target_kind']}); {', '.join(r['superclasses'])}: {r['images']} test images",
        "",
        f"{'':<22} {'device':>10} {'host':>10} {'manifest':>10}",
        f"{'latency ms (' + r['statistic'] + ')':<22} {v(r['latency_ms'], '{:.3f}'):>10} {'':>10} "
        f"{v(r['predicted_latency_ms'], '{:.3f}'):>10}   (manifest: predicted)",
        f"{'accuracy int8 %':<22} {v(r['accuracy_device_int8']):>10} {v(r['accuracy_host_int8']):>10} "
        f"{v(acc.get('host_int8')):>10}",
        f"{'accuracy float %':<22} {'':>10} {'':>10} {v(acc.get('host_float')):>10}",
        f"{'budget':<22} {(str(budget.get('value')) + ' ' + str(budget.get('kind'))) if budget else '-':>32}",
        "",
        f"predictions agree with the host on {r['prediction_agreement']:.1f}% of images; "
        f"outputs {'bit-identical' if r['outputs_identical'] else 'differ'}",
    ]
    lines += [f"note: {n}" for n in r["notes"]]
    lines += [f"FAIL: {f}" for f in r["failures"]] or ["PASS"]
    return "\n".join(lines)


@click.command("validate")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--target", "target_name", default=None,
              help="host (default), a name from targets.yaml, or an adb serial")
@click.option("--adb-serial", default=None, help="adb device serial (USB serial or host:port)")
@click.option("--targets-file", default=None, help="targets.yaml (default: $EDGEEAS_TARGETS_FILE, else ./targets.yaml)")
@click.option("--manifest", "manifest_path", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="manifest.json of the model (default: the one next to MODEL)")
@click.option("--superclass", default=None, help="superclass whose test images to use (needed without a manifest)")
@click.option("--data", default=None, help="CIFAR-100 archive or ImageFolder tree; default $EDGEEAS_DATA, else ./data")
@click.option("--images", default=0, type=click.IntRange(0), help="use the first N test images only (0: all)")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1), help="interpreter threads")
@click.option("--max-accuracy-gap", default=1.0, show_default=True, type=click.FloatRange(0),
              help="allowed difference between on-device and host int8 accuracy, in points")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
@verbose_option
def validate(model, target_name, adb_serial, targets_file, manifest_path, superclass, data, images, threads,
             max_accuracy_gap, as_json, verbose):
    """Run MODEL on a target: latency by the target's protocol, accuracy on the superclass's test images.

    \b
      edgeeas validate out/pixel/vehicles_1/20ms/model.tflite --target pixel
      edgeeas validate model.tflite --adb-serial 192.168.1.20:5555 --superclass fish --images 200
    Exit status 1 when the latency exceeds the manifest's budget or the on-device accuracy
    differs from the host's int8 accuracy by more than --max-accuracy-gap points.
    """
    enable_adb_log(verbose)
    r = run_validation(model, target_name=target_name or (None if adb_serial else "host"), adb_serial=adb_serial, targets_file=targets_file,
                       manifest_path=manifest_path, superclass=superclass, data=data, images=images,
                       threads=threads, max_accuracy_gap=max_accuracy_gap)
    click.echo(json.dumps(r, indent=2, default=str) if as_json else _table(r))
    if not r["passed"]:
        raise SystemExit(1)
