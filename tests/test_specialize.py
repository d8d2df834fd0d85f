"""specialize / validate / deploy / report end to end on the tiny supernet, with real int8 exports
(two of them), the real LiteRT interpreter and real CIFAR-100 test images.

Latency budgets use a toy host predictor (1 ms per GMAdd, written to a private EDGEEAS_TARGETS),
so the tests never depend on the real host table; it predicts far less than the host measures,
which is how a model that fails validation is made for the deploy test."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgeeas.cli import main

SC = "vehicles_1"
FAST = ["--recal-images", "200", "--calib-images", "32", "--quiet"]


def _sha(p: Path) -> str:
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in Path(root).rglob("*")) if Path(root).exists() else []


def _one_line_error(r, code: int) -> str:
    assert r.exit_code == code, r.output
    assert "Traceback" not in r.output
    errs = [ln for ln in r.output.splitlines() if ln.startswith("Error:")]
    assert len(errs) == 1, r.output
    return errs[0]


@pytest.fixture(scope="module")
def env(tiny_run, data_path, tmp_path_factory):
    """A private run directory (the tiny supernet + a budget-only MAdds generator), a toy host
    latency predictor with a short measurement protocol, and the CLI invoker."""
    import torch  # noqa: F401

    from device_bench import Protocol

    from edgeeas.checkpoint import load_supernet
    from edgeeas.data import load_dataset
    from edgeeas.latency import table_rows
    from edgeeas.search import GeneratorConfig, MaddsCost, save_generator, train_generator

    root = tmp_path_factory.mktemp("spec")
    run = root / "run"
    run.mkdir()
    shutil.copy(tiny_run / "supernet.pt", run / "supernet.pt")
    net, _ = load_supernet(run / "supernet.pt")
    ds = load_dataset(data_path)
    g = train_generator(net, ds, MaddsCost(net.space), GeneratorConfig(steps=30, acc_weight=0.0, cost_batch=16,
                                                                       checkpoint_every=0))
    save_generator(g, run / "generator-madds.pt")

    targets = root / "targets"
    (targets / "host").mkdir(parents=True)
    rows = {r.key: (r.block.madds / 1e9 if r.block else 0.001) for r in table_rows(net.space)}
    (targets / "host" / "predictor.json").write_text(json.dumps({
        "target": "host", "space": net.space.to_dict(), "rows": rows,
        "fit": {"intercept_ms": 0.0, "scale": 1.0, "per_block_ms": 0.0, "method": "toy", "n": 0},
        "protocol": Protocol(warmup_runs=2, num_runs=10).to_dict()}))
    mp = pytest.MonkeyPatch()
    mp.setenv("EDGEEAS_TARGETS", str(targets))
    mp.setenv("EDGEEAS_DATA", str(data_path))

    def cli(*args):
        return CliRunner().invoke(main, [str(a) for a in args])

    yield {"root": root, "run": run, "net": net, "ds": ds, "cli": cli, "data": data_path}
    mp.undo()


@pytest.fixture(scope="module")
def emitted(env):
    """The one MAdds-budget model every later test reads: out/host/vehicles_1/8M/."""
    out = env["root"] / "out"
    r = env["cli"]("specialize", "--budget", "8M", "--superclass", SC, "--strategy", "uniform",
                   "--supernet", env["run"], "--out", out, *FAST)
    assert r.exit_code == 0, r.output
    return out


# ---- bad input: one line, nothing written ------------------------------------------------------
@pytest.mark.parametrize("budget, hint", [("20", "ambiguous"), ("20 ms", "no space"), ("-5ms", "negative"),
                                          ("0.02s", "write 20ms"), ("abc", "not a number"),
                                          ("1e9ms", "exponent"), ("1M", "below the feasible range"),
                                          ("1us", "below the feasible range"), ("5ms,,8M", "empty entry")])
def test_bad_budgets_exit_2_one_line(env, budget, hint):
    out = env["root"] / "bad-out"
    flag = "--budgets" if "," in budget else "--budget"
    r = env["cli"]("specialize", flag, budget, "--superclass", SC, "--strategy", "uniform",
                   "--supernet", env["run"], "--out", out, "--quiet")
    line = _one_line_error(r, 2)
    assert hint in line, line
    if "feasible" in hint:
        assert "M.." in line or "ms.." in line  # names the range
    assert _files(out) == []


def test_infeasible_budget_in_a_batch_fails_before_any_work(env):
    out = env["root"] / "batch-out"
    r = env["cli"]("specialize", "--all-superclasses", "--budgets", "8M,1M", "--strategy", "uniform",
                   "--supernet", env["run"], "--out", out, "--quiet")
    assert "1M is below the feasible range" in _one_line_error(r, 2)
    assert _files(out) == []


def test_unknown_superclass_lists_the_valid_ones(env):
    r = env["cli"]("specialize", "--budget", "8M", "--superclass", "vehicles_9", "--strategy", "uniform",
                   "--supernet", env["run"], "--out", env["root"] / "x")
    line = _one_line_error(r, 2)
    assert "vehicles_9" in line and "vehicles_1" in line and "fish" in line and "people" in line


def test_target_without_a_table_says_to_bench(env):
    r = env["cli"]("specialize", "--budget", "20ms", "--superclass", SC, "--target", "nowhere", "--strategy",
                   "uniform", "--supernet", env["run"], "--out", env["root"] / "x")
    assert "edgeeas bench --target nowhere" in _one_line_error(r, 1)
    assert _files(env["root"] / "x") == []


def test_missing_or_foreign_generator(env, tmp_path):
    # no generator for the toy host table: say how to train one, or to use evolution
    r = env["cli"]("specialize", "--budget", "20us", "--superclass", SC, "--supernet", env["run"],
                   "--out", tmp_path / "o")
    line = _one_line_error(r, 1)
    assert "edgeeas train generator" in line and "--target host" in line and "--strategy evolution" in line
    # a generator trained for MAdds used for a latency budget of the host target
    r = env["cli"]("specialize", "--budget", "20us", "--superclass", SC, "--supernet", env["run"],
                   "--generator", env["run"] / "generator-madds.pt", "--out", tmp_path / "o")
    assert "trained for cost model 'madds'" in _one_line_error(r, 1)
    # ... and one trained against another supernet
    other = tmp_path / "run2"
    other.mkdir()
    import torch

    from edgeeas.checkpoint import save_supernet

    net2 = env["net"]
    with torch.no_grad():
        sd = {k: v.clone() for k, v in net2.state_dict().items()}
        net3 = type(net2)(net2.space)
        net3.load_state_dict(sd)
        next(net3.parameters()).add_(1.0)
    save_supernet(other / "supernet.pt", net3, {})
    shutil.copy(env["run"] / "generator-madds.pt", other / "generator-madds.pt")
    r = env["cli"]("specialize", "--budget", "8M", "--superclass", SC, "--supernet", other, "--out", tmp_path / "o")
    assert "trained against another supernet" in _one_line_error(r, 1)
    assert _files(tmp_path / "o") == []


# ---- the emitted model ---------------------------------------------------------------------------
def test_emitted_folder_manifest_and_model(env, emitted):
    from edgeeas.data import MEAN, STD
    from edgeeas.evaluate import to_float
    from edgeeas.export import quantize_input, tflite_info, tflite_run
    from edgeeas.manifest import model_inputs, read_manifest

    ds = env["ds"]
    folder = emitted / "host" / SC / "8M"
    assert sorted(p.name for p in folder.iterdir() if p.name != "validation.json") == [
        "manifest.json", "model.onnx", "model.tflite"]
    assert [p.name for p in folder.parent.iterdir() if p.name.startswith(".")] == []  # no temporary folder
    m = json.loads((folder / "manifest.json").read_text())
    classes = ds.classes_of(ds.superclass_id(SC))
    assert m["classes"] == classes == sorted(classes)
    assert m["labels"] == [ds.classes[c] for c in classes] == ["bicycle", "bus", "motorcycle", "pickup_truck", "train"]
    assert m["superclasses"] == [SC] and m["target"] == "host" and m["strategy"] == "uniform"
    assert m["format"] == "edgeeas-model/2"
    assert m["budget"] == {"text": "8M", "kind": "madds", "latency_ms": None, "madds": 8_000_000}
    assert m["input"]["mean_0_1"] == pytest.approx(MEAN) and m["input"]["std_0_1"] == pytest.approx(STD)
    arch = env["net"].space.parse(m["arch"])
    assert m["madds"] == m["madds_tflite"] <= 8e6 and m["madds"] == sum(x for _, x, _ in env["net"].space.layer_costs(arch, 5))
    assert m["params"] == env["net"].space.params(arch, 5)
    blocks = sum(spec.madds for spec in env["net"].space.block_specs(arch)) / 1e9
    assert m["predicted_latency_ms"] == pytest.approx(blocks + 0.002, abs=1e-5)  # the toy host predictor
    assert m["supernet"]["path"].endswith("supernet.pt") and len(m["supernet"]["fingerprint"]) == 16
    assert m["generator"] is None and m["dataset"]["fingerprint"] == ds.fingerprint
    assert {"torch", "litert-torch", "ai-edge-litert"} <= set(m["versions"])
    assert isinstance(m["command"], str) and m["command"] and m["created"]
    for name in ("model.tflite", "model.onnx"):
        assert m["files"][name]["sha256"] == _sha(folder / name)

    info = tflite_info(folder / "model.tflite")
    assert info.input_dtype == "int8" and list(info.input_shape) == [1, 32, 32, 3] == m["input"]["shape"]
    assert info.output_dtype == "int8" and list(info.output_shape) == [1, 5] == m["output"]["shape"]
    assert (m["input"]["scale"], m["input"]["zero_point"]) == (info.input_scale, info.input_zero_point)
    assert (m["output"]["scale"], m["output"]["zero_point"]) == (info.output_scale, info.output_zero_point)

    # the reported host int8 accuracy is what the interpreter gives on the scenario's test images
    idx = ds.indices("test", [ds.superclass_id(SC)])
    assert m["accuracy"]["test_images"] == len(idx) == 500
    y = tflite_run(folder / "model.tflite", quantize_input(to_float(ds.test.images[idx]), info))
    labels = np.searchsorted(classes, ds.test.labels[idx])
    assert m["accuracy"]["host_int8_pct"] == pytest.approx(100 * float((y.argmax(1) == labels).mean()), abs=1e-3)
    # ... and what the one manifest-to-inputs function gives is that very tensor
    mx = model_inputs(read_manifest(folder / "manifest.json"), ds, info)
    assert np.array_equal(mx.inputs, quantize_input(to_float(ds.test.images[idx]), info))
    assert np.array_equal(mx.labels, labels) and np.array_equal(mx.indices, idx)
    # and the head really is the 5 classes in that order: the ONNX twin agrees with the int8 file
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    logits = sess.run(None, {"input": to_float(ds.test.images[idx]).numpy()})[0]
    assert logits.shape == (500, 5)
    assert m["accuracy"]["host_float_pct"] == pytest.approx(100 * float((logits.argmax(1) == labels).mean()), abs=0.5)
    assert float((logits.argmax(1) == y.argmax(1)).mean()) > 0.7


def test_rerun_keeps_the_model_and_validates_it(env, emitted):
    folder = emitted / "host" / SC / "8M"
    before = _sha(folder / "model.tflite"), (folder / "manifest.json").stat().st_mtime_ns
    r = env["cli"]("specialize", "--budget", "8M", "--superclass", SC, "--strategy", "uniform",
                   "--supernet", env["run"], "--out", emitted, "--validate", *FAST[:-1])
    assert r.exit_code == 0, r.output
    assert "kept (same request)" in r.output and "PASS" in r.output
    assert (_sha(folder / "model.tflite"), (folder / "manifest.json").stat().st_mtime_ns) == before
    v = json.loads((folder / "validation.json").read_text())
    assert v["passed"] and v["target"] == "host" and v["accuracy_device_int8"] == v["accuracy_host_int8"]
    assert v["accuracy_host_int8"] == json.loads((folder / "manifest.json").read_text())["accuracy"]["host_int8_pct"]
    assert v["latency"]["protocol"]["num_runs"] == 10  # the target's protocol, from its predictor


def test_validate_cli_on_the_emitted_model(env, emitted):
    r = env["cli"]("validate", emitted / "host" / SC / "8M" / "model.tflite")
    assert r.exit_code == 0, r.output
    assert "PASS" in r.output and "bit-identical" in r.output


def _as_v1(m: dict) -> dict:
    """A manifest as format edgeeas-model/1 spelled it (before units were in the field names)."""
    b, inp = m["budget"], dict(m["input"])
    inp["mean"], inp["std"] = inp.pop("mean_0_1"), inp.pop("std_0_1")
    return {**m, "format": "edgeeas-model/1", "madds_m": round(m["madds"] / 1e6, 4), "input": inp,
            "budget": ({"kind": "latency_ms", "value": b["latency_ms"], "text": b["text"], "unit": "ms"}
                       if b["latency_ms"] is not None else
                       {"kind": "madds", "value": b["madds"] / 1e6, "text": b["text"], "unit": "M"}),
            "accuracy": {k.removesuffix("_pct").removesuffix("_pp"): v for k, v in m["accuracy"].items()},
            "request": {**m["request"], "format": "edgeeas-model/1"}}


def test_old_format_folder_is_kept_validated_and_reported(env, emitted, tmp_path):
    from edgeeas.manifest import ModelManifest

    out = tmp_path / "out"
    folder = out / "host" / SC / "8M"
    shutil.copytree(emitted / "host" / SC / "8M", folder, ignore=shutil.ignore_patterns("validation.json"))
    v2 = json.loads((folder / "manifest.json").read_text())
    assert ModelManifest.from_dict(_as_v1(v2)).to_dict() == v2  # the upgrade loses nothing
    (folder / "manifest.json").write_text(json.dumps(_as_v1(v2)))
    before = (folder / "manifest.json").read_bytes()
    r = env["cli"]("specialize", "--budget", "8M", "--superclass", SC, "--strategy", "uniform",
                   "--supernet", env["run"], "--out", out, *FAST[:-1])
    assert r.exit_code == 0 and "kept (same request)" in r.output, r.output
    assert (folder / "manifest.json").read_bytes() == before
    assert not (folder / "validation.json").exists()
    r = env["cli"]("validate", folder / "model.tflite", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["budget"]["madds"] == 8_000_000
    # the standalone validate writes validation.json beside the model: the report shows it validated
    assert json.loads((folder / "validation.json").read_text())["passed"] is True
    r = env["cli"]("report", "--target", "host", "--out", out)
    assert r.exit_code == 0 and "1 models" in r.output, r.output
    md = (out / "host" / "report.md").read_text()
    assert "not validated" not in md and "PASS" in md


def test_force_semantics(env, emitted, tmp_path, monkeypatch):
    """Another request on an existing folder is refused; --force with a failing build keeps the
    old model; --force that succeeds replaces it."""
    import edgeeas.export as E

    out = tmp_path / "out"
    shutil.copytree(emitted, out)
    folder = out / "host" / SC / "8M"
    old = _sha(folder / "model.tflite")
    other = ["specialize", "--budget", "8M", "--superclass", SC, "--strategy", "uniform", "--supernet", env["run"],
             "--out", out, "--recal-images", "100", "--calib-images", "16", "--test-images", "50", "--quiet"]
    r = env["cli"](*other)
    line = _one_line_error(r, 2)
    assert "already holds a model by strategy 'uniform'" in line and "calib_images 32 -> 16" in line
    assert "--force" in line
    assert _sha(folder / "model.tflite") == old

    def boom(*a, **k):
        raise E.ExportError("int8 TFLite conversion failed: simulated")
    monkeypatch.setattr(E, "export_tflite_int8", boom)
    r = env["cli"](*other, "--force")
    assert "simulated" in _one_line_error(r, 1)
    assert _sha(folder / "model.tflite") == old
    assert json.loads((folder / "manifest.json").read_text())["request"]["calib_images"] == 32
    assert [p for p in folder.parent.iterdir()] == [folder]  # no temporary folder left

    # a successful --force (the conversion is replaced by a copy of the real file: this test is
    # about the folder, the real conversion is tested above)
    def copy_export(module, calib, path, **k):
        shutil.copy(emitted / "host" / SC / "8M" / "model.tflite", path)
        return E.tflite_info(path)
    monkeypatch.setattr(E, "export_tflite_int8", copy_export)
    r = env["cli"](*other, "--force")
    assert r.exit_code == 0, r.output
    m = json.loads((folder / "manifest.json").read_text())
    assert m["request"]["calib_images"] == 16 and m["accuracy"]["test_images"] == 50
    assert sorted(p.name for p in folder.parent.iterdir()) == ["8M"]


@pytest.mark.parametrize("exc", ["error", "interrupt"])
def test_failure_midway_leaves_nothing(env, tmp_path, monkeypatch, exc):
    """The default strategy picks RUN/generator-madds.pt; the export dies after model.onnx is
    written: the scenario folder (and the folders made for it) are gone."""
    import edgeeas.export as E

    seen = {}

    def dying(module, calib, path, **k):
        seen["onnx"] = (Path(path).parent / "model.onnx").is_file()
        if exc == "interrupt":
            raise KeyboardInterrupt
        raise E.ExportError("int8 TFLite conversion failed: simulated")
    monkeypatch.setattr(E, "export_tflite_int8", dying)
    out = tmp_path / "out"
    out.mkdir()
    r = env["cli"]("specialize", "--budget", "8M", "--superclass", SC, "--supernet", env["run"], "--out", out,
                   *FAST)
    assert seen["onnx"]
    if exc == "interrupt":
        assert r.exit_code == 130 and "Traceback" not in r.output
    else:
        assert "simulated" in _one_line_error(r, 1)
    assert _files(out) == []


# ---- deploy and report ----------------------------------------------------------------------------
def test_deploy_to_host_copies_passing_models_only(env, emitted, tmp_path):
    cfg = tmp_path / "deploy.yaml"
    dest = tmp_path / "deploy"
    cfg.write_text(f"target: host\nstrategy: uniform\nsupernet: {env['run']}\nlocal_dir: {dest}\n"
                   f"recal_images: 200\ncalib_images: 32\n"
                   f"scenarios:\n  - superclass: {SC}\n    budget: 8M\n"
                   f"  - superclasses: [{SC}]\n    budget: 10us\n")
    r = env["cli"]("deploy", "--config", cfg, "--out", emitted, "--quiet")
    assert r.exit_code == 1, r.output
    assert f"deployed  {SC} @ 8M" in r.output
    assert f"REFUSED   {SC} @ 0.01ms: latency" in r.output and "exceeds the budget 0.01 ms" in r.output
    assert _files(dest) == ["vehicles_1", "vehicles_1/8M", "vehicles_1/8M/manifest.json",
                            "vehicles_1/8M/model.tflite", "vehicles_1/8M/validation.json"]
    assert _sha(dest / SC / "8M" / "model.tflite") == _sha(emitted / "host" / SC / "8M" / "model.tflite")
    failing = emitted / "host" / SC / "0.01ms"
    v = json.loads((failing / "validation.json").read_text())
    assert not v["passed"] and v["latency_ms"] > 0.01
    assert json.loads((failing / "manifest.json").read_text())["predicted_latency_ms"] <= 0.01


def test_deploy_over_adb_pushes_to_the_device(env, emitted, peer, tmp_path):
    """An adb target (the device-side peer: its /data/local/tmp is tmp_path/device0): the model
    built earlier for it is kept, validated over adb, and pushed with its manifest."""
    serial = peer.serial
    out = tmp_path / "out"
    folder = out / serial.replace(":", "_") / SC / "8M"
    shutil.copytree(emitted / "host" / SC / "8M", folder, ignore=shutil.ignore_patterns("validation.json"))
    m = json.loads((folder / "manifest.json").read_text())
    m["target"] = m["request"]["target"] = serial  # as `specialize --target SERIAL` would have written it
    (folder / "manifest.json").write_text(json.dumps(m))
    cfg = tmp_path / "deploy.yaml"
    cfg.write_text(f"target: '{serial}'\nadb_serial: '{serial}'\nstrategy: uniform\nsupernet: {env['run']}\n"
                   f"recal_images: 200\ncalib_images: 32\nscenarios:\n  - superclass: {SC}\n    budget: 8M\n")
    r = env["cli"]("deploy", "--config", cfg, "--out", out, "--quiet")
    assert r.exit_code == 0, r.output
    assert f"deployed  {SC} @ 8M" in r.output and f"{serial}:/data/local/tmp/edgeeas/{SC}/8M" in r.output
    on_device = tmp_path / "device0" / "edgeeas" / SC / "8M"
    assert sorted(p.name for p in on_device.iterdir()) == ["manifest.json", "model.tflite", "validation.json"]
    assert _sha(on_device / "model.tflite") == _sha(folder / "model.tflite")
    v = json.loads((on_device / "validation.json").read_text())
    assert v["passed"] and v["target_kind"] == "adb" and v["outputs_identical"]


def test_report_lists_every_model_and_plots(env, emitted):
    r = env["cli"]("report", "--target", "host", "--out", emitted)
    assert r.exit_code == 0, r.output
    md = (emitted / "host" / "report.md").read_text()
    assert md.count("| vehicles_1 |") == 2 and "[model](vehicles_1/8M/model.tflite)" in md
    assert "FAIL: latency" in md and "PASS" in md
    assert (emitted / "host" / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
