"""Several devices at once: `edgeeas devices` and edgeeas.regress.run_on_devices over two adb peers."""
from __future__ import annotations

import json
import shutil
import threading
import time

import pytest
from click.testing import CliRunner

from adb_helpers import free_port
from android_runner import AdbConnectionError
from device_bench import Protocol
from edgeeas.adb_target import AdbTarget
from edgeeas.cli import main
from edgeeas.regress import FarmError, run_on_devices
from testing.adb_peer import AdbPeer


@pytest.fixture(scope="session")
def tiny3():
    """Three tiny int8 models (5, 5 and 10 outputs), built once per session."""
    from testing.tiny_model import build_tiny_model

    return [build_tiny_model("int8", width=8, num_classes=5), build_tiny_model("int8", width=16, num_classes=5),
            build_tiny_model("int8", width=8, num_classes=10)]


@pytest.fixture
def models(tmp_path, tiny3):
    """Copies of the three models in this test's folder (m0.tflite, m1.tflite, m2.tflite)."""
    out = []
    for i, m in enumerate(tiny3):
        out.append(tmp_path / f"m{i}.tflite")
        shutil.copy(m, out[-1])
    return out


def test_devices_lists_two_peers_with_fingerprints(make_peer, tmp_path, monkeypatch):
    a, b = make_peer(model="Pixel A"), make_peer(model="Board B")
    dead = f"127.0.0.1:{free_port()}"
    f = tmp_path / "targets.yaml"
    f.write_text(f"pixel:\n  serial: {a.serial}\nboard:\n  model: Board B\n  candidates: [{b.serial}]\n")
    monkeypatch.setenv("ANDROID_SERIAL", a.serial)  # already listed: not twice
    r = CliRunner().invoke(main, ["devices", "--targets-file", str(f), dead, "--json"])
    assert r.exit_code == 1, r.output  # one listed device is unreachable
    rows = json.loads(r.output)
    assert [(x["name"], x["serial"], x["state"]) for x in rows] == [
        ("pixel", a.serial, "device"), ("board", b.serial, "device"), (None, dead, "offline")]
    assert rows[0]["model"] == "Pixel A" and rows[1]["model"] == "Board B"
    for x in rows[:2]:
        assert x["abi"] and x["cores"] >= 1 and "governor" in x and "max_temp_c" in x
    assert "connection refused" in rows[2]["reason"]

    r = CliRunner().invoke(main, ["devices", "--targets-file", str(f)])
    assert r.exit_code == 0, r.output
    assert "Pixel A" in r.output and "Board B" in r.output and r.output.startswith("NAME")


@pytest.mark.slow
def test_farm_one_device_dies_the_other_completes(make_peer, models):
    a, b = make_peer(model="Stays"), make_peer(model="Dies")
    proto = Protocol(warmup_runs=1, num_runs=5, min_secs=0.8, max_remeasure=0)
    targets = [AdbTarget("stays", a.serial, proto, chunk=1), AdbTarget("dies", b.serial, proto, chunk=1)]
    rows: dict[str, list] = {"stays": [], "dies": []}
    started = {}

    def job(t):
        started.setdefault(t.name, time.monotonic())

        def on_result(p, m):
            rows[t.name].append(p)
            if t.name == "dies" and len(rows["dies"]) == 1:
                threading.Timer(0.4, b.stop).start()

        return t.measure_many(models, on_result=on_result)

    res = run_on_devices(targets, job, retries=1, retry_delay_s=0.2)
    assert list(res.results) == ["stays"] and set(res.results["stays"]) == {str(m) for m in models}
    assert rows["stays"] == [str(m) for m in models]
    assert list(res.errors) == ["dies"] and isinstance(res.exceptions["dies"], AdbConnectionError)
    assert b.serial in res.errors["dies"] and "\n" not in res.errors["dies"]
    assert res.attempts == {"stays": 1, "dies": 2}  # retried once, still gone
    assert rows["dies"] == [str(models[0])]  # what it measured before vanishing was reported
    # both ran at the same time, not one after the other
    assert abs(started["stays"] - started["dies"]) < 1.0
    with pytest.raises(FarmError) as ei:
        res.raise_if_failed()
    assert "1 of 2 device(s) failed: dies:" in str(ei.value)


@pytest.mark.slow
def test_farm_retry_resumes_on_a_device_that_comes_back(make_peer, models, tmp_path):
    port = free_port()
    keys = tmp_path / "adb_keys0"
    p1 = make_peer(port=port, model="Flaky")
    proto = Protocol(warmup_runs=1, num_runs=5, min_secs=0.8, max_remeasure=0)
    t = AdbTarget("flaky", p1.serial, proto, chunk=1)
    done: dict[str, object] = {}
    revived: list[AdbPeer] = []

    def job(target):
        def on_result(p, m):
            done[p] = m
            if len(done) == 1 and not revived:
                def bounce():
                    p1.stop()
                    time.sleep(0.3)
                    revived.append(AdbPeer(sandbox=p1.sandbox, port=port, authorized_keys=keys, model="Flaky").start())
                threading.Timer(0.3, bounce).start()
        # resumable, as the table builder is: skip what was committed already
        return target.measure_many([m for m in models if str(m) not in done], on_result=on_result)

    try:
        res = run_on_devices([t], job, retries=1, retry_delay_s=1.5)
    finally:
        for p in revived:
            p.stop()
    assert res.ok and res.attempts == {"flaky": 2}, res.summary()
    assert set(done) == {str(m) for m in models}


def test_farm_rejects_the_same_device_twice(peer):
    t = AdbTarget("x", peer.serial)
    with pytest.raises(FarmError):
        run_on_devices([t, t], lambda t: None)
