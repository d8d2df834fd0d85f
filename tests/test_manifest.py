"""The model manifest: one typed, versioned reader and writer; old manifests still load."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgeeas.data import MEAN, STD
from edgeeas.manifest import (MANIFEST_FORMAT, BudgetSpec, InputSpec, ManifestError, ModelManifest, model_inputs,
                              read_manifest, write_manifest)

# What `edgeeas specialize` wrote before units were in the field names (format edgeeas-model/1).
V1 = {
    "format": "edgeeas-model/1", "scenario": "vehicles_1", "superclasses": ["vehicles_1"],
    "classes": [8, 13, 48, 58, 90], "labels": ["bicycle", "bus", "motorcycle", "pickup_truck", "train"],
    "budget": {"kind": "madds", "value": 8.0, "text": "8M", "unit": "M"}, "target": "host", "strategy": "uniform",
    "arch": "d22222-k3333333333-e3333333333", "predicted_latency_ms": 0.0123, "predicted_cost": 7.9,
    "cost_unit": "M", "cost_model": "madds", "madds": 7_900_000, "madds_m": 7.9, "madds_tflite": 7_900_000,
    "params": 123456,
    "accuracy": {"host_float": 61.2, "host_int8": 60.4, "int8_float_drop": 0.8, "int8_float_agreement": 97.0,
                 "test_images": 500, "split": "test"},
    "input": {"layout": "NHWC", "shape": [1, 32, 32, 3], "dtype": "int8", "scale": 0.0187, "zero_point": -4,
              "mean": list(MEAN), "std": list(STD), "preprocess": "x = (uint8_rgb / 255 - mean) / std; ..."},
    "output": {"shape": [1, 5], "dtype": "int8", "scale": 0.1, "zero_point": 3, "meaning": "logits"},
    "search": {"strategy": "uniform", "seconds": 0.01}, "files": {"model.tflite": {"sha256": "ab", "bytes": 9}},
    "supernet": {"fingerprint": "f"}, "generator": None, "dataset": {"name": "cifar100"}, "versions": {"torch": "2"},
    "command": "edgeeas specialize ...", "created": "2026-11-30T20:00:00+0000",
    "request": {"budget": "8M", "strategy": "uniform", "format": "edgeeas-model/1"},
}


def test_old_format_upgrades_with_units_in_the_names():
    m = ModelManifest.from_dict(V1)
    assert m.format == MANIFEST_FORMAT
    assert m.budget == BudgetSpec("8M", madds=8_000_000) and m.budget.kind == "madds"
    assert m.accuracy.host_int8_pct == 60.4 and m.accuracy.int8_float_drop_pp == 0.8
    assert m.input.mean_0_1 == pytest.approx(MEAN) and m.input.scale == 0.0187 and m.input.zero_point == -4
    assert m.madds_m == 7.9 and "madds_m" not in m.to_dict()
    # the same request made it: a rerun keeps the folder
    assert m.request["format"] == MANIFEST_FORMAT
    d = m.to_dict()
    assert d["budget"] == {"text": "8M", "kind": "madds", "latency_ms": None, "madds": 8_000_000}
    assert d["accuracy"]["host_float_pct"] == 61.2 and d["input"]["std_0_1"] == pytest.approx(STD)


def test_round_trip_through_a_file(tmp_path):
    m = ModelManifest.from_dict(V1)
    write_manifest(tmp_path / "manifest.json", m)
    back = read_manifest(tmp_path / "manifest.json")
    assert back == m and back.to_dict() == m.to_dict()
    assert json.loads((tmp_path / "manifest.json").read_text())["format"] == "edgeeas-model/2"
    # unknown keys survive a round trip
    m2 = ModelManifest.from_dict({**m.to_dict(), "note": "hand-added"})
    assert m2.extra == {"note": "hand-added"} and m2.to_dict()["note"] == "hand-added"


def test_hand_written_manifests_load():
    """No format (read as /1), a latency budget in ms, no normalization (the training one)."""
    m = ModelManifest.from_dict({"classes": [1, 32], "budget": {"kind": "latency_ms", "value": 0.000001},
                                 "input": {"layout": "NHWC", "shape": [1, 32, 32, 3], "dtype": "int8"}})
    assert m.budget.latency_ms == 1e-6 and m.budget.text == "1e-06ms" and m.budget.madds is None
    assert m.input.mean_0_1 == pytest.approx(MEAN) and m.input.scale is None
    assert ModelManifest.from_dict({}).input_spec() == InputSpec()
    with pytest.raises(ManifestError, match="no 'format'"):  # how the report tells a model folder
        ModelManifest.from_dict({"classes": [1]}, strict=True)


@pytest.mark.parametrize("bad, why", [
    ({"format": "edgeeas-model/9"}, "unknown manifest format"),
    ({"input": {"mean": [125.3, 123.0, 113.9], "std": [63.0, 62.1, 66.7]}}, "0..1 pixel scale"),
    ({"budget": {"kind": "madds", "value": 8e6, "unit": "count"}}, "millions"),
    ({"format": MANIFEST_FORMAT, "budget": {"text": "8M", "latency_ms": 1.0, "madds": 8}}, "exactly one"),
    ({"classes": ["a"]}, "'classes'"),
])
def test_bad_manifests_are_one_line_errors(bad, why):
    with pytest.raises(ManifestError, match=why):
        ModelManifest.from_dict(bad)


def test_read_manifest_errors_name_the_file(tmp_path):
    p = tmp_path / "manifest.json"
    p.write_text("{not json")
    with pytest.raises(ManifestError, match="manifest .*manifest.json is not valid JSON"):
        read_manifest(p)
    p.write_text("[1]")
    with pytest.raises(ManifestError, match="expected a JSON object"):
        read_manifest(p)


def test_model_inputs_normalize_and_quantize_once(cifar):
    """The one manifest + dataset -> input tensor path equals the training normalization followed
    by the int8 export's own quantization."""
    from edgeeas.evaluate import to_float
    from edgeeas.export import quantize_input

    m = ModelManifest.from_dict(V1)
    mx = model_inputs(m, cifar, limit=40)
    idx = np.flatnonzero(np.isin(cifar.test.labels, V1["classes"]))[:40]
    assert np.array_equal(mx.indices, idx) and mx.inputs.shape == (40, 32, 32, 3) and mx.inputs.dtype == np.int8

    class Info:  # the model file's own quantization wins over the manifest's
        input_shape, input_dtype, input_scale, input_zero_point = (1, 32, 32, 3), "int8", 0.02, 1

    x = model_inputs(m, cifar, Info, limit=40).inputs
    assert np.array_equal(x, quantize_input(to_float(cifar.test.images[idx]), Info))
    assert np.array_equal(np.asarray(V1["classes"])[mx.labels], cifar.test.labels[idx])
    s = model_inputs(m, cifar, sample=7, seed=3)
    assert len(s.indices) == 7 and np.all(np.diff(s.indices) > 0)
