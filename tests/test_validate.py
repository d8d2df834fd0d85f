"""`edgeeas validate` on the device-side adb peer, with real CIFAR-100 test images and real int8 models."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from adb_helpers import free_port
from edgeeas.cli import main

HOSTILE = "a b;touch pwned.tflite"


@pytest.fixture(scope="session")
def model5():
    from testing.tiny_model import build_tiny_model

    return build_tiny_model("int8", width=8, num_classes=5)


def run(*args):
    return CliRunner().invoke(main, ["validate", *map(str, args)])


def test_validate_over_adb_matches_host(peer, model5, data_path, tmp_path):
    m = tmp_path / "model.tflite"
    shutil.copy(model5, m)
    r = run(m, "--adb-serial", peer.serial, "--superclass", "fish", "--images", 100, "--data", data_path, "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["target"] == peer.serial and out["target_kind"] == "adb" and out["images"] == 100
    assert out["superclasses"] == ["fish"] and out["classes"] == [1, 32, 67, 73, 91]
    assert out["outputs_identical"] and out["prediction_agreement"] == 100.0
    assert out["accuracy_device_int8"] == out["accuracy_host_int8"] and out["accuracy_gap"] == 0
    assert out["latency_ms"] > 0 and out["latency"]["command"].startswith(f"adb -s {peer.serial} shell")
    assert out["passed"] and out["failures"] == []


def test_validate_manifest_budget_named_target_hostile_name(make_peer, model5, data_path, tmp_path, monkeypatch):
    peer = make_peer(model="Pixel Test")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "targets.yaml").write_text(f"pixel:\n  serial: {peer.serial}\n")
    folder = tmp_path / "out" / "pixel" / "fish" / "1us"
    folder.mkdir(parents=True)
    m = folder / HOSTILE
    shutil.copy(model5, m)
    (folder / "manifest.json").write_text(json.dumps({
        "arch": "tiny", "classes": [1, 32, 67, 73, 91], "superclasses": ["fish"],
        "budget": {"kind": "latency_ms", "value": 0.000001}, "target": "pixel", "predicted_latency_ms": 0.5,
        "input": {"layout": "NHWC", "shape": [1, 32, 32, 3], "dtype": "int8"},
        "accuracy": {"host_float": 55.5, "host_int8": 54.0}}))
    r = run(m, "--target", "pixel", "--images", 50, "--data", data_path)
    assert r.exit_code == 1, r.output
    assert "target     pixel (adb)" in r.output and "55.50" in r.output and "54.00" in r.output
    assert "FAIL: latency exceeds the budget 1e-06 ms" in r.output and "latency verdict: FAIL" in r.output
    assert "bit-identical" in r.output
    for root in (tmp_path, peer.sandbox):
        assert not list(Path(root).rglob("pwned*"))


def test_validate_needs_a_superclass_without_manifest(model5, data_path, tmp_path):
    m = tmp_path / "m.tflite"
    shutil.copy(model5, m)
    r = run(m, "--data", data_path)
    assert r.exit_code == 2 and "--superclass" in r.output


def test_validate_head_must_match_superclass(data_path, tmp_path):
    from testing.tiny_model import build_tiny_model

    r = run(build_tiny_model("int8", width=8, num_classes=10), "--superclass", "fish", "--data", data_path)
    assert r.exit_code == 1 and "has 10 outputs but fish has 5 classes" in r.output


def test_validate_on_host(model5, data_path, tmp_path):
    m = tmp_path / "m.tflite"
    shutil.copy(model5, m)
    r = run(m, "--superclass", "trees", "--images", 30, "--data", data_path, "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["target_kind"] == "host" and out["images"] == 30 and out["passed"]
    # the result is kept beside the model (NAME.validation.json for a model not named model.tflite)
    saved = json.loads((tmp_path / "m.validation.json").read_text())
    assert saved["passed"] and saved["images"] == 30 and len(saved["model_sha256"]) == 64


def test_validate_keeps_the_measurement_when_the_result_cannot_be_written(model5, data_path, tmp_path,
                                                                         monkeypatch):
    import edgeeas.utils

    def full_disk(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(edgeeas.utils, "atomic_write_text", full_disk)
    m = tmp_path / "model.tflite"
    shutil.copy(model5, m)
    r = run(m, "--superclass", "trees", "--images", 10, "--data", data_path)
    assert r.exit_code == 0, r.output
    assert "PASS" in r.output and "could not write" in r.output and "No space left" in r.output


def test_unreachable_device_is_one_line(adb_home, model5, data_path, tmp_path):
    m = tmp_path / "m.tflite"
    shutil.copy(model5, m)
    serial = f"127.0.0.1:{free_port()}"
    r = run(m, "--adb-serial", serial, "--superclass", "fish", "--images", 5, "--data", data_path)
    assert r.exit_code == 1
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "connection refused" in lines[0] and serial in lines[0]
