"""`edgeeas validate` on the device-side adb peer, with real CIFAR-100 test images and real int8 models."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
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


# ---- accuracy checked against an independent computation (issue 15) -------------------------------
CIFAR100_MEAN = np.array([0.5073, 0.4867, 0.4412])  # the published CIFAR-100 training-set statistics
CIFAR100_STD = np.array([0.2674, 0.2565, 0.2762])
FISH = [1, 32, 67, 73, 91]  # aquarium_fish, flatfish, ray, shark, trout: CIFAR-100's "fish" superclass


@pytest.fixture(scope="session")
def cifar_test_split(data_path):
    """(uint8 images [N,3,32,32], fine labels [N]) of CIFAR-100's test split, read straight from
    the official pickle (not through edgeeas.data)."""
    import pickle
    import tarfile

    p = Path(data_path)
    if p.is_dir() and (p / "cifar-100-python.tar.gz").is_file():
        p = p / "cifar-100-python.tar.gz"
    if p.is_dir():
        f = next(iter(sorted(p.rglob("cifar-100-python/test"))), None)
        if f is None:
            pytest.skip(f"no cifar-100-python/test under {p}")
        raw = pickle.loads(f.read_bytes(), encoding="bytes")
    else:
        with tarfile.open(p) as tar:
            raw = pickle.loads(tar.extractfile("cifar-100-python/test").read(), encoding="bytes")
    return np.asarray(raw[b"data"], np.uint8).reshape(-1, 3, 32, 32), np.asarray(raw[b"fine_labels"])


def independent_accuracy(model, split, classes, n) -> float:
    """Top-1 % of ``model`` on the first ``n`` test images of ``classes`` (head order = ``classes``):
    (x/255 - mean)/std, NHWC, quantized with the model's own input scale and zero point, run image by
    image through a fresh LiteRT interpreter."""
    from ai_edge_litert.interpreter import Interpreter

    images, fine = split
    idx = [i for i, c in enumerate(fine) if int(c) in classes][:n]
    x = (images[idx] / 255.0 - CIFAR100_MEAN[None, :, None, None]) / CIFAR100_STD[None, :, None, None]
    interp = Interpreter(model_path=str(model))
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    scale, zp = inp["quantization"]
    q = np.clip(np.round(x.transpose(0, 2, 3, 1) / scale) + zp, -128, 127).astype(np.int8)
    right = 0
    for row, i in zip(q, idx):
        interp.set_tensor(inp["index"], row[None])
        interp.invoke()
        right += int(np.argmax(interp.get_tensor(out["index"])[0]) == classes.index(int(fine[i])))
    return 100.0 * right / len(idx)


@pytest.fixture(scope="session")
def specialized_fish(tmp_path_factory, data_path):
    """A real specialized model: the shipped supernet and host generator, fish at 3 ms (about 30 s)."""
    out = tmp_path_factory.mktemp("spec")
    r = CliRunner().invoke(main, ["specialize", "--target", "host", "--budget", "3ms", "--superclass", "fish",
                                  "--out", str(out), "--data", str(data_path)])
    assert r.exit_code == 0, r.output
    return out / "host" / "fish" / "3ms" / "model.tflite"


@pytest.mark.slow
def test_validate_accuracy_equals_an_independent_computation(peer, specialized_fish, data_path, cifar_test_split,
                                                             tmp_path):
    m = tmp_path / "model.tflite"
    shutil.copy(specialized_fish, m)  # without its manifest: --superclass gives the classes, ascending ids
    want = independent_accuracy(m, cifar_test_split, FISH, 200)
    assert want > 40  # a model that predicts, so a wrong label or image order cannot hide
    for where in (["--adb-serial", peer.serial], []):  # the x86 peer (adb), then the host
        r = run(m, *where, "--superclass", "fish", "--images", 200, "--data", data_path, "--json")
        assert r.exit_code == 0, r.output
        out = json.loads(r.output)
        assert out["images"] == 200
        assert out["accuracy_device_int8"] == pytest.approx(want, abs=1e-9)
        assert out["accuracy_host_int8"] == pytest.approx(want, abs=1e-9)


# ---- device vs host: agreement and accuracy difference, with tolerances -------------------------
def _outputs(pred, k=5):
    """One-hot-ish int8 outputs whose top-1 is ``pred``."""
    y = np.full((len(pred), k), -100, np.int8)
    y[np.arange(len(pred)), pred] = 100
    return y


def test_compare_with_host_hand_computed():
    from edgeeas.validation import compare_with_host

    labels = np.arange(100) % 5
    host = labels.copy()
    host[:20] = (labels[:20] + 1) % 5  # the host gets 80 of 100 right
    # kernels that round differently: 2 near-ties flip, both the device's way -> +2 points, p = 0.5
    dev = host.copy()
    dev[:2] = labels[:2]
    a = compare_with_host(_outputs(dev), _outputs(host), labels)
    assert (a.top1_agreement_pct, a.accuracy_device_pct, a.accuracy_host_pct, a.accuracy_diff_points) == (98, 82, 80, 2)
    assert (a.host_only_correct, a.device_only_correct, a.mcnemar_p) == (0, 2, 0.5)
    assert a.status == "PASS" and a.failures == () and a.identical_outputs_pct == 98
    # a real drop: the device loses 10 images the host gets right -> -10 points, p = 2/1024
    dev = host.copy()
    dev[20:30] = (labels[20:30] + 2) % 5
    a = compare_with_host(_outputs(dev), _outputs(host), labels, min_agreement=50)
    assert (a.accuracy_diff_points, a.host_only_correct, a.device_only_correct) == (-10, 10, 0)
    assert a.mcnemar_p == pytest.approx(2 / 1024) and a.status == "FAIL"
    assert len(a.failures) == 1 and "differs from the host's int8 80.00% by 10.00 points" in a.failures[0]
    # agreement: 18 of 20 agree is no proof of < 95 % (Wilson upper bound 97.2 %); 80 of 100 is
    few = compare_with_host(_outputs(np.r_[host[:18], (host[18:20] + 1) % 5]), _outputs(host[:20]), labels[:20],
                            max_accuracy_gap=100)
    assert few.top1_agreement_pct == 90 and few.agreement_upper95_pct == pytest.approx(97.21, abs=0.01)
    assert few.status == "PASS"
    many = compare_with_host(_outputs(np.r_[(host[:20] + 1) % 5, host[20:]]), _outputs(host), labels,
                             max_accuracy_gap=100)
    assert many.top1_agreement_pct == 80 and many.status == "FAIL" and "agrees with the host's on 80.0%" in many.failures[0]
    with pytest.raises(ValueError):
        compare_with_host(_outputs(dev)[:5], _outputs(host), labels)
    # the record round-trips through validation.json's form (what a regress baseline keeps)
    from edgeeas.validation import HostAgreement

    assert HostAgreement.from_dict(json.loads(json.dumps(a.to_dict()))) == a
    with pytest.raises(ValueError, match="lacks"):
        HostAgreement.from_dict({"images": 3})


def test_validate_fails_loudly_on_a_device_whose_outputs_are_corrupted(peer, model5, data_path, tmp_path):
    """The device holds a corrupted copy of the model (class rows rolled): every file the host sees is right."""
    from edgeeas.utils import sha256_file
    from testing.corrupt import roll_classes

    m = tmp_path / "model.tflite"
    shutil.copy(model5, m)
    on_device = Path(peer.sandbox) / "edgeeas" / "models" / sha256_file(m)[:16] / "model.tflite"
    on_device.parent.mkdir(parents=True)
    roll_classes(m, on_device)
    r = run(m, "--adb-serial", peer.serial, "--superclass", "fish", "--images", 100, "--data", data_path)
    assert r.exit_code == 1, r.output
    assert "FAIL: the device's top-1 agrees with the host's on" in r.output
    assert "does not run this model as the host does" in r.output and "\nPASS" not in r.output
    saved = json.loads((tmp_path / "validation.json").read_text())
    dvh = saved["device_vs_host"]
    assert dvh["status"] == "FAIL" and dvh["top1_agreement_pct"] < 20 and saved["verdict"] == "FAIL"
    assert dvh["min_top1_agreement_pct"] == 95 and dvh["max_accuracy_diff_points"] == 1


# ---- budgets, targets, kernels, noise (issue 13) --------------------------------------------------
def test_validate_without_budget_says_latency_was_not_checked(model5, data_path, tmp_path):
    m = tmp_path / "m.tflite"
    shutil.copy(model5, m)
    r = run(m, "--superclass", "trees", "--images", 20, "--data", data_path)
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert "note: latency not checked against a budget" in r.output
    assert "PASS" not in lines and "latency NOT checked" in r.output and "latency verdict" not in r.output
    saved = json.loads((tmp_path / "m.validation.json").read_text())
    assert saved["latency_checked"] is False and "budget_utilization" not in saved


def test_validate_budget_option(model5, data_path, tmp_path):
    m = tmp_path / "m.tflite"
    shutil.copy(model5, m)
    r = run(m, "--superclass", "trees", "--images", 20, "--data", data_path, "--budget", "20ms")
    assert r.exit_code == 0, r.output
    assert "latency verdict: PASS" in r.output and "\nPASS\n" in r.output
    saved = json.loads((tmp_path / "m.validation.json").read_text())
    assert saved["latency_checked"] and saved["budget"]["latency_ms"] == 20
    assert 0 < saved["budget_utilization"] == pytest.approx(saved["latency_ms"] / 20, abs=1e-4)
    r = run(m, "--superclass", "trees", "--images", 20, "--data", data_path, "--budget", "0.0001ms")
    assert r.exit_code == 1 and "FAIL: latency exceeds the budget 0.0001 ms" in r.output
    r = run(m, "--superclass", "trees", "--data", data_path, "--budget", "20")
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert r.exit_code == 2 and len(lines) == 1 and "bad budget '20'" in lines[0]


def test_validate_unknown_target_is_one_line_listing_known_targets(model5, data_path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EDGEEAS_TARGETS_FILE", raising=False)
    monkeypatch.delenv("ANDROID_SERIAL", raising=False)
    (tmp_path / "targets.yaml").write_text("pixel:\n  serial: 127.0.0.1:5999\n")
    m = tmp_path / "m.tflite"
    shutil.copy(model5, m)
    for bad, says in (("nosuch", "unknown target 'nosuch': known targets are host, pixel (targets.yaml);"),
                      ("a:b", "malformed host:port")):
        r = run(m, "--target", bad, "--superclass", "fish", "--data", data_path)
        lines = [ln for ln in r.output.splitlines() if ln.strip()]
        assert r.exit_code == 2 and len(lines) == 1, r.output
        assert repr(bad) in lines[0] and says in lines[0]
    assert "--adb-serial" in run(m, "--target", "nosuch", "--superclass", "fish", "--data", data_path).output


def test_validate_builtin_kernels_reach_the_interpreter(model5, data_path, tmp_path):
    m = tmp_path / "m.tflite"
    shutil.copy(model5, m)
    r = run(m, "--superclass", "fish", "--images", 100, "--data", data_path, "--use-xnnpack", "false", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["protocol"]["use_xnnpack"] is False
    dvh = out["device_vs_host"]
    assert (dvh["device_kernels"], dvh["host_kernels"]) == ("builtin", "xnnpack") and dvh["status"] == "PASS"
    # builtin and XNNPACK kernels round int8 differently: the host reference is not the device's run
    assert dvh["identical_outputs_pct"] < 100 and dvh["max_abs_output_diff"] >= 1


def test_validate_keeps_xnnpack_info_quiet_unless_verbose(model5, data_path, tmp_path):
    import os
    import subprocess
    import sys

    m = tmp_path / "m.tflite"
    shutil.copy(model5, m)
    exe = Path(sys.executable).with_name("edgeeas")
    env = {k: v for k, v in os.environ.items() if k not in ("EDGEEAS_VERBOSE", "TF_CPP_MIN_LOG_LEVEL")}
    args = [str(exe), "validate", str(m), "--superclass", "fish", "--images", "5", "--data", str(data_path)]
    quiet = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    loud = subprocess.run(args + ["-v"], capture_output=True, text=True, env=env, timeout=300)
    assert quiet.returncode == loud.returncode == 0, quiet.stderr + loud.stderr
    assert "XNNPACK" not in quiet.stderr and "XNNPACK delegate" in loud.stderr
