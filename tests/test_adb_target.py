"""edgeeas.adb_target against the device-side adb peer (real adb protocol, real LiteRT runner)."""
from __future__ import annotations

import dataclasses
import logging
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from android_runner import AdbConnectionError, Device, DeviceFull
from device_bench import Protocol
from edgeeas.adb_target import REMOTE_BINARY, REMOTE_DIR, AdbTarget
from edgeeas.targets import HostTarget, TargetError, resolve_target

FAST = Protocol(warmup_runs=1, num_runs=5, max_remeasure=0, passes=1)
HOSTILE = "a b;touch pwned.tflite"


@pytest.fixture(scope="session")
def tiny_models():
    """Three real int8 models (cached across sessions by testing.tiny_model)."""
    from testing.tiny_model import build_tiny_model

    return [build_tiny_model("int8", width=8, num_classes=5), build_tiny_model("int8", width=16, num_classes=5),
            build_tiny_model("int8", width=8, num_classes=10)]


@pytest.fixture
def models(tmp_path, tiny_models):
    d = tmp_path / "models"
    d.mkdir()
    out = []
    for i, m in enumerate(tiny_models):
        out.append(d / f"m{i}.tflite")
        shutil.copy(m, out[-1])
    return out


def adb_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "android_runner" and r.getMessage().startswith("adb -s")]


def no_pwned(*roots: Path) -> None:
    for root in roots:
        assert not list(Path(root).rglob("pwned*")), f"a 'pwned' file appeared under {root}"


def test_measure_many_pushes_once_and_logs_commands(peer, models, caplog):
    caplog.set_level(logging.INFO, logger="android_runner")
    t = resolve_target(adb_serial=peer.serial, protocol=FAST)
    assert isinstance(t, AdbTarget) and t.name == peer.serial
    seen = []
    res = t.measure_many(models, on_result=lambda p, m: seen.append(p))
    assert list(res) == [str(m) for m in models] == seen
    for p, m in res.items():
        assert m.graph == p and m.count == 5 and 0 < m.median_ms <= m.p90_ms < 1000
        assert m.protocol.interpreter == "ai_edge_litert" and m.protocol.runner == "edgeeas-runner"
        assert m.command.startswith(f"adb -s {peer.serial} shell ") and "--graphs=" in m.command
    lines = adb_lines(caplog)
    assert sum(" push " in ln for ln in lines) == 4  # runner + 3 models
    assert sum("runner.py --graphs=" in ln for ln in lines) == 1  # one chunk

    # A fresh target (new process, same device) finds everything in place: nothing is pushed.
    caplog.clear()
    t2 = AdbTarget("again", peer.serial, dataclasses.replace(FAST, passes=2), chunk=2)
    res2 = t2.measure_many(models)
    assert set(res2) == {str(m) for m in models}
    assert all(m.count == 10 and len(m.pass_medians_ms) == 2 for m in res2.values())
    lines = adb_lines(caplog)
    assert not [ln for ln in lines if " push " in ln]
    assert sum("runner.py --graphs=" in ln for ln in lines) == 4  # chunks of 2, two passes each

    # A runner.py that differs on the device is replaced; the models stay.
    (peer.sandbox / "edgeeas" / "runner.py").write_text("print('stale')\n")
    caplog.clear()
    AdbTarget("third", peer.serial, FAST).measure_many(models[:1])
    pushes = [ln for ln in adb_lines(caplog) if " push " in ln]
    assert len(pushes) == 1 and "runner.py" in pushes[0]


def test_evaluate_on_device_equals_host_bit_for_bit(peer, models):
    x = np.random.default_rng(1).integers(-128, 128, (40, 32, 32, 3)).astype(np.int8)
    t = AdbTarget("peer", peer.serial, FAST)
    y_dev = t.evaluate(models[2], x)
    y_host = HostTarget().evaluate(models[2], x)
    assert y_dev.dtype == np.int8 and y_dev.shape == (40, 10)
    assert np.array_equal(y_dev, y_host)
    assert not list((peer.sandbox / "edgeeas" / "eval").iterdir())  # tensors cleaned up on the device


def test_leftovers_of_a_dropped_connection_are_swept_on_next_use(peer, models, caplog):
    """A .part and an eval/<nonce>/ folder that a dropped connection left behind are removed on
    the next process's first use of the device; younger ones (a live push or evaluation of
    another process) stay, and so do complete models."""
    import os
    import time

    from edgeeas.adb_target import STALE_MINUTES

    root = peer.sandbox / "edgeeas"
    old = time.time() - (STALE_MINUTES + 5) * 60
    stale_eval = root / "eval" / "0123456789ab"
    stale_part = root / "models" / "00aa11bb22cc33dd" / "m.tflite.part"
    live_eval = root / "eval" / "ffffffffffff"
    live_part = root / "models" / "00aa11bb22cc33dd" / "n.tflite.part"
    kept = root / "models" / "00aa11bb22cc33dd" / "done.tflite"
    for d in (stale_eval, live_eval, stale_part.parent):
        d.mkdir(parents=True, exist_ok=True)
    for f in (stale_eval / "inputs.npy", stale_part, live_eval / "inputs.npy", live_part, kept):
        f.write_bytes(b"x")
    for f in (stale_eval / "inputs.npy", stale_eval, stale_part, kept):
        os.utime(f, (old, old))
    caplog.set_level(logging.INFO, logger="edgeeas.adb_target")
    t = AdbTarget("sweep", peer.serial, FAST)
    t.measure_many(models[:1])
    assert not stale_eval.exists() and not stale_part.exists()
    assert live_eval.exists() and live_part.exists() and kept.exists()
    assert any("removed 2 stale" in r.getMessage() for r in caplog.records), caplog.text
    assert t.sweep_stale() == []  # once per target object
    for p in (live_eval, live_part, kept):
        shutil.rmtree(p) if p.is_dir() else p.unlink()


def test_hostile_model_name_runs_nothing_else(peer, models, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    hostile = tmp_path / HOSTILE
    shutil.copy(models[0], hostile)
    t = AdbTarget("peer", peer.serial, FAST)
    res = t.measure_many([hostile, models[1]])
    assert res[str(hostile)].median_ms > 0
    assert HOSTILE in res[str(hostile)].command
    x = np.random.default_rng(2).integers(-128, 128, (8, 32, 32, 3)).astype(np.int8)
    assert np.array_equal(t.evaluate(hostile, x), HostTarget().evaluate(hostile, x))
    remote = [p.name for p in (peer.sandbox / "edgeeas" / "models").rglob("*.tflite")]
    assert HOSTILE in remote  # the file kept its name on the device: quoting, not renaming, made it safe
    no_pwned(tmp_path, peer.sandbox, Path.cwd())


def test_device_killed_mid_measure_keeps_reported_results(make_peer, models):
    peer = make_peer(model="Doomed")
    # ~1.5 s per graph, one graph per runner process: the kill lands inside the second command.
    proto = Protocol(warmup_runs=1, num_runs=5, min_secs=1.5, max_remeasure=0)
    t = AdbTarget("doomed", peer.serial, proto, chunk=1)
    t.push_models(models)
    t.ensure_runner()
    kept = {}

    def on_result(p, m):
        kept[p] = m
        if len(kept) == 1:
            threading.Timer(0.7, peer.stop).start()

    with pytest.raises(AdbConnectionError) as ei:
        t.measure_many(models, on_result=on_result)
    msg = str(ei.value)
    assert "\n" not in msg and peer.serial in msg
    assert list(kept) == [str(models[0])] and kept[str(models[0])].median_ms > 0


def test_full_disk_is_a_clear_error(make_peer, models):
    peer = make_peer(disk_quota_bytes=3000)  # the smallest model is 5.7 kB
    t = AdbTarget("small", peer.serial, FAST)
    with pytest.raises(DeviceFull) as ei:
        t.measure_many(models[:1])
    msg = str(ei.value)
    assert "\n" not in msg and "No space left on device" in msg and "free space" in msg
    assert not list(peer.sandbox.rglob("*.part"))


def test_targets_yaml_names_and_model_strings(make_peer, models, tmp_path, monkeypatch):
    a, b = make_peer(model="Pixel A"), make_peer(model="Board B")
    f = tmp_path / "targets.yaml"
    f.write_text(f"pixel:\n  serial: {a.serial}\nboard:\n  model: Board B\n  candidates: [{a.serial}, {b.serial}]\n")
    t = resolve_target("pixel", targets_file=str(f), protocol=FAST)
    assert (t.name, t.serial) == ("pixel", a.serial)
    monkeypatch.setenv("EDGEEAS_TARGETS_FILE", str(f))
    t = resolve_target("board")
    assert (t.name, t.serial) == ("board", b.serial)
    assert t.fingerprint()["model"] == "Board B"
    # --adb-serial of a named device takes its name (its table directory)
    assert resolve_target(adb_serial=a.serial).name == "pixel"
    # an unknown name is tried as a USB serial and the error says it was not in targets.yaml
    t = resolve_target("pixle")
    with pytest.raises(AdbConnectionError) as ei:
        t.measure_many(models[:1])
    assert "not a name in" in str(ei.value) and "pixel, board" in str(ei.value)


def test_fingerprint_has_device_and_runner_fields(peer):
    fp = AdbTarget("peer", peer.serial, FAST).fingerprint()
    assert fp["kind"] == "adb" and fp["model"] == "Peer One" and fp["cores"] >= 1 and fp["abi"]
    assert fp["runner"] == "edgeeas-runner" and fp["interpreter"] == "ai_edge_litert" and fp["python"]


def test_benchmark_binary_mode(peer, models, tmp_path, caplog):
    """The official Android binary cannot run on this x86 host, so the 'binary' here is a stand-in
    shell script: it takes benchmark_model's flags, runs the edgeeas runner and strips every
    EDGEEAS_ line, leaving exactly benchmark_model's output format (no per-run times)."""
    caplog.set_level(logging.INFO, logger="android_runner")
    with Device(peer.serial) as dev:
        dev.mkdir(REMOTE_DIR)
        dev.push(Path(__import__("device_bench").RUNNER_PATH), f"{REMOTE_DIR}/runner.py")
    binary = tmp_path / "benchmark_model"
    binary.write_text("#!/bin/sh\nout=$(python3 edgeeas/runner.py \"$@\"); rc=$?\n"
                      "printf '%s\\n' \"$out\" | grep -v '^EDGEEAS_'; exit $rc\n")
    binary.chmod(0o644)  # the target must make it executable on the device
    t = AdbTarget.resolve(adb_serial=peer.serial, protocol=FAST, benchmark_binary=str(binary))
    res = t.measure_many(models[:2])
    for m in res.values():
        assert m.runs_us == () and m.count == 5 and m.median_ms > 0 and m.p90_ms >= m.median_ms
        assert m.protocol.runner == "benchmark_model" and "median_from=median" in m.protocol.runner_version
        assert m.command.startswith(f"adb -s {peer.serial} shell ") and REMOTE_BINARY in m.command
    assert (peer.sandbox / "benchmark_model").stat().st_mode & 0o111
    lines = adb_lines(caplog)
    assert sum(REMOTE_BINARY + " --graph=" in ln for ln in lines) == 2
    # pushed once: a second target finds the same binary
    caplog.clear()
    AdbTarget.resolve(adb_serial=peer.serial, protocol=FAST, benchmark_binary=str(binary)).measure_many(models[:1])
    assert not [ln for ln in adb_lines(caplog) if " push " in ln]


def test_runner_failure_is_one_line_with_the_command(peer, tmp_path):
    bad = tmp_path / "broken.tflite"
    bad.write_bytes(b"not a flatbuffer" * 10)
    with pytest.raises(TargetError) as ei:
        AdbTarget("peer", peer.serial, FAST).measure_many([bad])
    msg = str(ei.value)
    assert "\n" not in msg and "broken.tflite" in msg and f"adb -s {peer.serial} shell" in msg
