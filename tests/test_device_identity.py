"""Device identity is enforced: one device rule (--adb-serial, a name, $ANDROID_SERIAL, the host)
for every command, a table is resumed only on the device it was started on, a target's figures
are used only on a device of their kind, and validation measures by the target's protocol.

The adb cases run against the device-side peer (real adb protocol, real LiteRT runner)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from device_bench import Protocol
from edgeeas.cli import main
from edgeeas.targets import (HostTarget, TargetError, TargetStore, choose_device, describe_fingerprint,
                             resolve_target, same_device)


def write_store(root: Path, name: str, fp: dict, protocol: dict | None = None) -> TargetStore:
    store = TargetStore.named(name, root)
    store.directory.mkdir(parents=True, exist_ok=True)
    store.fingerprint_path.write_text(json.dumps(fp))
    if protocol is not None:
        store.predictor_path.write_text(json.dumps({"protocol": protocol}))
    return store


@pytest.fixture
def root(tmp_path, monkeypatch):
    r = tmp_path / "targets"
    r.mkdir()
    monkeypatch.setenv("EDGEEAS_TARGETS", str(r))
    monkeypatch.delenv("ANDROID_SERIAL", raising=False)
    monkeypatch.chdir(tmp_path)  # no targets.yaml
    return r


def test_the_device_rule(root, monkeypatch):
    assert (choose_device().kind, choose_device().name) == ("host", "host")
    monkeypatch.setenv("ANDROID_SERIAL", "SER1")
    c = choose_device()
    assert (c.kind, c.name, c.serial, c.source) == ("adb", "SER1", "SER1", "ANDROID_SERIAL")
    c = choose_device(adb_serial="SER2")  # --adb-serial wins over the environment
    assert (c.serial, c.source) == ("SER2", "--adb-serial")
    assert choose_device("host").kind == "host"  # an explicit --target host
    c = choose_device("SER3")  # an explicit serial wins over the environment
    assert (c.serial, c.name) == ("SER3", "SER3")
    # a benched adb target runs on $ANDROID_SERIAL, else on its recorded serial
    write_store(root, "pixel", {"kind": "adb", "serial": "REC", "model": "Pixel"})
    assert choose_device("pixel").serial == "SER1"
    monkeypatch.delenv("ANDROID_SERIAL")
    assert (choose_device("pixel").serial, choose_device("pixel").name) == ("REC", "pixel")
    # a benched host table under another name is the host's
    write_store(root, "host4", {"kind": "host", "cpu_model": "X"})
    assert (choose_device("host4").kind, choose_device("host4").name) == ("host", "host4")
    # a farm lists its devices: no environment
    monkeypatch.setenv("ANDROID_SERIAL", "SER1")
    assert choose_device("board", use_env=False).serial == "board"
    assert choose_device(None, use_env=False).kind == "host"


def test_figures_of_one_kind_are_refused_on_the_other(root, monkeypatch):
    """The issue's case: targets/pixel holds host figures (an old `ANDROID_SERIAL=S bench --name
    pixel`), and a phone is selected: a one-line error naming both, at every use."""
    write_store(root, "pixel", {"kind": "host", "cpu_model": "AMD EPYC", "cores": 2, "machine": "x86_64"})
    monkeypatch.setenv("ANDROID_SERIAL", "R58M")
    with pytest.raises(TargetError) as ei:
        resolve_target("pixel")
    msg = str(ei.value)
    assert "\n" not in msg and "host 'AMD EPYC'" in msg and "R58M" in msg and "ANDROID_SERIAL" in msg
    with pytest.raises(TargetError):
        resolve_target("pixel", adb_serial="R58M")
    # an adb table is refused on the host
    write_store(root, "phone", {"kind": "adb", "serial": "R58M", "manufacturer": "Google", "model": "Pixel 7"})
    monkeypatch.delenv("ANDROID_SERIAL")
    with pytest.raises(TargetError, match="adb device R58M .Google Pixel 7.* on the host"):
        from edgeeas.targets import check_store_kind

        check_store_kind(TargetStore.named("phone", root), "host", "the host")


def test_host_figures_from_another_host_warn(root, capsys, monkeypatch):
    """A host table measured on another CPU (here: same model name, other SIMD features) is used
    for predictions with one warning line naming what differs and the command that measures this
    host, once per process."""
    from device_bench.protocol import host_fingerprint

    from edgeeas import targets
    from edgeeas.targets import warn_if_other_host

    monkeypatch.setattr(targets, "_WARNED_OTHER_HOST", set())
    here = dict(host_fingerprint(), kind="host")
    write_store(root, "host", here)
    assert not warn_if_other_host(TargetStore.named("host", root)) and capsys.readouterr().err == ""
    write_store(root, "host", dict(here, cpu_isa="avx,avx2"))
    monkeypatch.setattr(targets, "_WARNED_OTHER_HOST", set())  # a new process
    assert warn_if_other_host(TargetStore.named("host", root))
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cpu_isa differ" in err and "edgeeas bench --target host --force" in err
    assert not warn_if_other_host(TargetStore.named("host", root)) and capsys.readouterr().err == ""
    write_store(root, "phone", {"kind": "adb", "serial": "R58M"})
    assert not warn_if_other_host(TargetStore.named("phone", root))


def test_specialize_refuses_before_any_work(root, monkeypatch):
    """specialize checks the device before loading anything (the error comes first)."""
    write_store(root, "pixel", {"kind": "host", "cpu_model": "AMD EPYC", "cores": 2, "machine": "x86_64"})
    monkeypatch.setenv("ANDROID_SERIAL", "R58M")
    r = CliRunner().invoke(main, ["specialize", "--target", "pixel", "--budget", "3ms", "--superclass", "fish"])
    assert r.exit_code == 1 and "holds figures measured on host" in r.output and "R58M" in r.output, r.output
    monkeypatch.delenv("ANDROID_SERIAL")
    r = CliRunner().invoke(main, ["specialize", "--target", "pixel", "--adb-serial", "R58M", "--budget", "3ms",
                                  "--superclass", "fish"])
    assert r.exit_code == 1 and "holds figures measured on host" in r.output, r.output


def test_same_device_compares_identity_not_setup():
    a = {"kind": "adb", "serial": "1.2.3.4:5555", "serialno": "HW1", "model": "P", "max_temp_c": 30, "governor": "x"}
    assert same_device(a, {**a, "serial": "USBSERIAL", "max_temp_c": 45, "governor": "y"})  # USB vs TCP, warmer
    assert not same_device(a, {**a, "serialno": "HW2"})
    assert not same_device({k: v for k, v in a.items() if k != "serialno"}, {**a, "serial": "other", "serialno": None})
    h = HostTarget().fingerprint()
    assert same_device(h, dict(h, temperature_c=None)) and not same_device(h, a)
    assert not same_device(h, dict(h, cpu_model="another CPU"))
    assert not same_device(h, dict(h, cpu_isa="avx,avx2"))  # same model name, other SIMD features
    assert describe_fingerprint(a) == "adb device 1.2.3.4:5555 (P, serialno HW1)"


@pytest.fixture
def tiny_root(tiny_bench, tmp_path, monkeypatch):
    """A fresh targets root that shares the tiny space's exported models (nothing is exported)."""
    src, *_ = tiny_bench
    r = tmp_path / "targets"
    r.mkdir()
    os.symlink(src / "_models", r / "_models")
    shutil.copy(src / "tiny.json", r / "tiny.json")
    monkeypatch.setenv("EDGEEAS_TARGETS", str(r))
    monkeypatch.chdir(tmp_path)
    return r


def bench(root, *extra, env=None):
    args = ["bench", "--name", "pixel", "--space", str(root / "tiny.json"), "--subnets", "0", "--warmup-runs", "1",
            "--num-runs", "5", "--passes", "1", "--quiet", *extra]
    return CliRunner().invoke(main, args, env=env)


def test_android_serial_benches_the_phone_and_a_resume_elsewhere_is_refused(tiny_root, make_peer):
    a, b = make_peer(model="Peer One"), make_peer(model="Peer Two")
    r = bench(tiny_root, env={"ANDROID_SERIAL": a.serial})
    assert r.exit_code == 0, r.output
    store = TargetStore.named("pixel", tiny_root)
    fp = json.loads(store.fingerprint_path.read_text())
    assert fp["kind"] == "adb" and fp["serial"] == a.serial and fp["model"] == "Peer One"
    from edgeeas.latency import LatencyTable

    meta = LatencyTable(store.table_path).meta()
    assert meta["fingerprint"]["kind"] == "adb" and meta["fingerprint"]["serialno"] == a.serial
    rows = len(LatencyTable(store.table_path).rows())
    # resumed with another device's serial (by environment or by flag): one line naming both, nothing measured
    for env, extra in (({"ANDROID_SERIAL": b.serial}, ()), ({"ANDROID_SERIAL": ""}, ("--adb-serial", b.serial))):
        r = bench(tiny_root, *extra, env=env)
        assert r.exit_code == 2, r.output
        lines = [ln for ln in r.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and a.serial in lines[0] and b.serial in lines[0], r.output
        assert "Peer One" in lines[0] and "Peer Two" in lines[0]
    # and on the host
    r = bench(tiny_root, env={"ANDROID_SERIAL": ""})
    assert r.exit_code == 2 and "this run is on host" in r.output, r.output
    assert len(LatencyTable(store.table_path).rows()) == rows
    # the same device resumes (nothing left to measure)
    r = bench(tiny_root, env={"ANDROID_SERIAL": a.serial})
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("props", [{"ro.kernel.qemu": "1"}, {"ro.boot.qemu": "1"}, {"ro.hardware": "ranchu"}])
def test_an_emulated_device_gets_no_table_unless_asked(tiny_root, make_peer, props):
    """The Android emulator's marks (and the arm64 test device's) make ``emulated`` true in the
    fingerprint; bench refuses a table there in one line, before any table exists, and builds
    one (recording the emulation) with --allow-emulated."""
    from android_runner import Device, fingerprint

    emu, phone = make_peer(model="Emu", props=props), make_peer(model="Phone")
    assert fingerprint(Device(emu.serial))["emulated"] is True
    assert fingerprint(Device(phone.serial))["emulated"] is False
    store = TargetStore.named("pixel", tiny_root)
    r = bench(tiny_root, "--adb-serial", emu.serial, env={"ANDROID_SERIAL": ""})
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "is emulated" in lines[0] and "--allow-emulated" in lines[0], r.output
    assert not store.table_path.exists()
    if props == {"ro.kernel.qemu": "1"}:  # once is enough for the slow path
        r = bench(tiny_root, "--adb-serial", emu.serial, "--allow-emulated", env={"ANDROID_SERIAL": ""})
        assert r.exit_code == 0, r.output
        assert json.loads(store.fingerprint_path.read_text())["emulated"] is True


def test_validate_measures_by_the_targets_protocol(root, tmp_path, data_path):
    """Standalone `validate` uses the protocol the target's table was measured with (threads, runs,
    passes), as `specialize --validate` does; --threads overrides the threads only."""
    from testing.tiny_model import build_tiny_model

    proto = Protocol(threads=2, warmup_runs=1, num_runs=7, passes=2).to_dict()
    write_store(root, "host", HostTarget().fingerprint(), proto)
    m = tmp_path / "m.tflite"
    shutil.copy(build_tiny_model("int8", width=8, num_classes=5), m)
    r = CliRunner().invoke(main, ["validate", str(m), "--superclass", "fish", "--images", "10", "--data",
                                  str(data_path), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["protocol"]["threads"] == 2 and out["protocol"]["num_runs"] == 7 and out["protocol"]["passes"] == 2
    assert out["latency"]["count"] == 14 and len(out["latency"]["pass_medians_ms"]) == 2
    r = CliRunner().invoke(main, ["validate", str(m), "--superclass", "fish", "--images", "10", "--data",
                                  str(data_path), "--json", "--threads", "1"])
    out = json.loads(r.output)
    assert out["protocol"]["threads"] == 1 and out["protocol"]["num_runs"] == 7


def test_validate_with_a_budget_reports_a_noise_aware_verdict(root, tmp_path, data_path):
    from testing.tiny_model import build_tiny_model

    write_store(root, "host", HostTarget().fingerprint(), Protocol(warmup_runs=1, num_runs=5, passes=1).to_dict())
    folder = tmp_path / "out"
    folder.mkdir()
    shutil.copy(build_tiny_model("int8", width=8, num_classes=5), folder / "model.tflite")
    (folder / "manifest.json").write_text(json.dumps({
        "arch": "tiny", "classes": [1, 32, 67, 73, 91], "superclasses": ["fish"], "target": "host",
        "budget": {"kind": "latency_ms", "value": 10000}, "input": {"layout": "NHWC", "shape": [1, 32, 32, 3]}}))
    r = CliRunner().invoke(main, ["validate", str(folder / "model.tflite"), "--images", "10", "--data",
                                  str(data_path), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    lv = out["latency_verdict"]
    assert out["verdict"] == "PASS" and lv["status"] == "PASS" and lv["passes"] == 9 and lv["runs"] == 45
    assert lv["ci_high_ms"] < 10000 and lv["spread"] >= lv["between_spread"]
    assert out["latency_ms"] == pytest.approx(lv["value_ms"], abs=1e-4)


def test_a_model_is_validated_only_on_a_device_of_its_targets_kind(root, tmp_path, data_path):
    """A model specialized against host figures is not judged on a phone, whichever way the phone
    is selected (here --adb-serial, refused before connecting)."""
    from testing.tiny_model import build_tiny_model

    write_store(root, "host", HostTarget().fingerprint())
    folder = tmp_path / "out"
    folder.mkdir()
    shutil.copy(build_tiny_model("int8", width=8, num_classes=5), folder / "model.tflite")
    (folder / "manifest.json").write_text(json.dumps({
        "arch": "tiny", "classes": [1, 32, 67, 73, 91], "superclasses": ["fish"], "target": "host",
        "budget": {"kind": "latency_ms", "value": 3}, "input": {"layout": "NHWC", "shape": [1, 32, 32, 3]}}))
    r = CliRunner().invoke(main, ["validate", str(folder / "model.tflite"), "--adb-serial", "127.0.0.1:9",
                                  "--images", "5", "--data", str(data_path)])
    assert r.exit_code == 1 and "holds figures measured on host" in r.output and "127.0.0.1:9" in r.output, r.output


def test_latency_predictions_check_the_host(monkeypatch):
    """load_cost (every search, specialize and generator training) runs the other-host check."""
    from edgeeas import targets
    from edgeeas.search import load_cost
    from edgeeas.space import DEFAULT_SPACE

    seen = []
    monkeypatch.setattr(targets, "warn_if_other_host", lambda store: seen.append(store.name))
    load_cost(DEFAULT_SPACE, "host")
    assert seen == ["host"]
    load_cost(DEFAULT_SPACE, madds=True)
    assert seen == ["host"]
