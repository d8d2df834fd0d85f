"""Opt-in checks on the emulated ARM64 device: EDGEEAS_ARM64=1 pytest -m arm64 tests/test_arm64.py
(or `make test-arm64`, which builds the device first with `make arm-device`).

The device is :class:`testing.arm64.Arm64Peer`: a real adb peer whose shell runs inside an arm64
Debian rootfs under qemu-user, with Debian's arm64 Python and the real aarch64 wheel of
ai-edge-litert.  Asked for (EDGEEAS_ARM64=1) and unavailable, the tests fail with the reason;
not asked for, they are skipped.  Latency is never judged here: emulation is 40-90x slower.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgeeas.cli import main
from testing.arm64 import Arm64Peer, arm64_unavailable, rootfs_dir

pytestmark = [pytest.mark.arm64,
              pytest.mark.skipif(os.environ.get("EDGEEAS_ARM64", "") in ("", "0"),
                                 reason="opt-in: EDGEEAS_ARM64=1 (make test-arm64) runs the emulated arm64 device")]

IMAGES = 200  # about 0.1 s an image under emulation with XNNPACK
ROOTFS = rootfs_dir()  # read before the adb fixtures give each test a private HOME


@pytest.fixture(scope="module")
def arm_ready():
    why = arm64_unavailable(ROOTFS)
    if why is not None:
        pytest.fail(f"EDGEEAS_ARM64=1 but the arm64 device cannot run: {why}")


@pytest.fixture
def arm_peer(arm_ready, tmp_path, adb_home):
    keys = tmp_path / "adb_keys"
    keys.write_text((adb_home / ".android" / "adbkey.pub").read_text() + "\n")
    with Arm64Peer(sandbox=tmp_path / "device", authorized_keys=keys, rootfs=ROOTFS) as peer:
        yield peer


@pytest.fixture(scope="module")
def specialized(tmp_path_factory, data_path):
    """The README's main job: vehicles_1 at 3 ms from the shipped supernet and host generator."""
    out = tmp_path_factory.mktemp("spec")
    r = CliRunner().invoke(main, ["specialize", "--target", "host", "--budget", "3ms", "--superclass", "vehicles_1",
                                  "--out", str(out), "--data", str(data_path)])
    assert r.exit_code == 0, r.output
    return out / "host" / "vehicles_1" / "3ms"


def _validate(folder: Path, peer, data_path, *extra) -> tuple[int, dict, str]:
    r = CliRunner().invoke(main, ["validate", str(folder / "model.tflite"), "--adb-serial", peer.serial,
                                  "--skip-latency", "--images", str(IMAGES), "--data", str(data_path), *extra])
    saved = json.loads((folder / "validation.json").read_text())
    return r.exit_code, saved, r.output


def test_arm64_device_identity(arm_peer):
    from android_runner import Device

    from edgeeas.adb_target import AdbTarget

    with Device(arm_peer.serial) as dev:
        assert dev.shell("getprop ro.product.cpu.abi").stdout.strip() == "arm64-v8a"
        # the whole userland is ARM: the shell, uname and Python
        out = dev.shell("uname -m; python3 -c 'import platform; print(platform.machine())'; pwd").stdout.split()
        assert out == ["aarch64", "aarch64", "/data/local/tmp"]
        assert dev.shell("exit 3").exit_code == 3
    fp = AdbTarget("arm", arm_peer.serial).fingerprint()
    assert fp["abi"] == "arm64-v8a" and fp["interpreter"] == "ai_edge_litert" and fp["interpreter_version"] == "2.3.0"
    assert fp["python"].startswith("3.11.")
    # the emulation is on record wherever a fingerprint looks: no table built here passes for a phone
    for key in ("platform", "soc_model", "build_fingerprint"):
        assert "qemu" in fp[key], (key, fp[key])


def test_arm64_runner_benchmarks_and_parses(arm_peer, specialized):
    """Push the runner, run a model on ARM kernels, parse benchmark_model's output."""
    from android_runner import Device
    from device_bench import Protocol

    from edgeeas.adb_target import AdbTarget

    model = specialized / "model.tflite"
    t = AdbTarget("arm", arm_peer.serial, protocol=Protocol(warmup_runs=1, num_runs=5, passes=1, max_remeasure=0))
    meas = t.measure_many([model])[str(model)]
    assert meas.count == 5 and meas.median_ms > 0 and len(meas.runs_us) == 5
    assert meas.protocol.interpreter == "ai_edge_litert" and meas.protocol.interpreter_version == "2.3.0"
    # trap 1 avoided: XNNPACK's CPU detection reads the rootfs' ARM cpuinfo and the delegate loads
    with Device(arm_peer.serial) as dev:
        for flag, delegate in (("true", True), ("false", False)):
            res = dev.shell(f"python3 /data/local/tmp/edgeeas/runner.py --graph={t.push_models([model])[str(model)]} "
                            f"--num_runs=1 --warmup_runs=0 --use_xnnpack={flag}")
            assert res.exit_code == 0, res.stderr
            assert ("XNNPACK delegate" in res.stderr + res.stdout) is delegate, res.stderr


def test_arm64_validate_default_kernels(arm_peer, specialized, data_path):
    code, v, out = _validate(specialized, arm_peer, data_path)
    assert code == 0, out
    dvh = v["device_vs_host"]
    assert v["target_kind"] == "adb" and v["latency_checked"] is False and v["latency_ms"] is None
    assert (dvh["device_kernels"], dvh["host_kernels"], dvh["images"]) == ("xnnpack", "xnnpack", IMAGES)
    assert dvh["status"] == "PASS" and dvh["top1_agreement_pct"] >= 95 and abs(dvh["accuracy_diff_points"]) <= 1
    assert "latency NOT checked" in out
    print(f"\narm64 xnnpack vs host xnnpack: {json.dumps(dvh)}")


def test_arm64_validate_builtin_kernels(arm_peer, specialized, data_path):
    code, v, out = _validate(specialized, arm_peer, data_path, "--use-xnnpack", "false")
    assert code == 0, out
    dvh = v["device_vs_host"]
    assert (dvh["device_kernels"], dvh["host_kernels"]) == ("builtin", "xnnpack") and v["protocol"]["use_xnnpack"] is False
    assert dvh["status"] == "PASS" and dvh["top1_agreement_pct"] >= 95
    # the builtin kernels do not match the host bit for bit, and validation passes all the same
    assert dvh["identical_outputs_pct"] < 50 and not v["outputs_identical"]
    print(f"\narm64 builtin vs host xnnpack: {json.dumps(dvh)}")


def test_arm64_validate_fails_loudly_on_corrupted_outputs(arm_peer, specialized, data_path, tmp_path):
    from edgeeas.utils import sha256_file
    from testing.corrupt import roll_classes

    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("model.tflite", "manifest.json"):
        shutil.copy(specialized / name, folder / name)
    on_device = Path(arm_peer.sandbox) / "edgeeas" / "models" / sha256_file(folder / "model.tflite")[:16] / "model.tflite"
    on_device.parent.mkdir(parents=True)
    roll_classes(folder / "model.tflite", on_device)
    code, v, out = _validate(folder, arm_peer, data_path, "--use-xnnpack", "false")
    assert code == 1, out
    dvh = v["device_vs_host"]
    assert dvh["status"] == "FAIL" and v["verdict"] == "FAIL" and len(dvh["failures"]) == 2
    assert dvh["top1_agreement_pct"] < 20 and dvh["accuracy_diff_points"] < -30 and dvh["mcnemar_p"] < 1e-6
    assert "FAIL: the device's top-1 agrees with the host's" in out and "McNemar" in out
    assert not np.isclose(dvh["accuracy_device_pct"], dvh["accuracy_host_pct"])


def test_arm64_debian_adb_client(arm_ready, adb_cli, tmp_path):
    """Debian's own adb client drives the arm64 device: exit codes, push, an ARM process, pull."""
    keys = tmp_path / "cli_keys"
    keys.write_text(adb_cli.public_key)
    with Arm64Peer(sandbox=tmp_path / "device", authorized_keys=keys, rootfs=ROOTFS) as peer:
        s = peer.serial
        res = adb_cli("connect", s)
        assert f"connected to {s}" in res.stdout, res.stdout + res.stderr  # `adb connect` exits 0 on failure too
        assert adb_cli("-s", s, "shell", "getprop ro.product.cpu.abi").stdout.strip() == "arm64-v8a"
        assert adb_cli("-s", s, "shell", "exit 3").returncode == 3
        data = np.arange(1000, dtype=np.int32)
        np.save(tmp_path / "x.npy", data)
        assert adb_cli("-s", s, "push", str(tmp_path / "x.npy"), "/data/local/tmp/x.npy").returncode == 0
        # numpy on ARM doubles it, then the host pulls the result back
        res = adb_cli("-s", s, "shell", "python3 -c \"import numpy, platform; numpy.save('/data/local/tmp/y.npy', "
                      "numpy.load('/data/local/tmp/x.npy') * 2); print(platform.machine())\"")
        assert res.returncode == 0 and res.stdout.strip() == "aarch64", res.stderr
        assert adb_cli("-s", s, "pull", "/data/local/tmp/y.npy", str(tmp_path / "y.npy")).returncode == 0
        assert np.array_equal(np.load(tmp_path / "y.npy"), data * 2)
