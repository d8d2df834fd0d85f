"""android_runner against the device-side adb peer, over the real adb wire protocol."""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from adb_helpers import free_port
from android_runner import (AdbAuthError, AdbCommandError, AdbConnectionError, AdbError, AdbTimeout, Device,
                            DeviceFull, connect, discover, fingerprint, load_keys)

TMP = "/data/local/tmp"


def one_line(err: BaseException) -> str:
    text = str(err)
    assert "\n" not in text and text.strip() == text and text
    return text


def test_shell_exit_codes_stdout_stderr(peer):
    dev = Device(peer.serial)
    res = dev.shell("echo hi; echo oops >&2; exit 3")
    assert (res.stdout, res.stderr, res.exit_code) == ("hi\n", "oops\n", 3)
    assert dev.shell("true").exit_code == 0
    assert dev.shell("printf 'no newline'").stdout == "no newline"
    assert dev.shell("exit 255").exit_code == 255
    assert dev.shell("echo x # trailing comment").stdout == "x\n"
    assert dev.shell(["printf", "%s|", "a b", "$HOME", "'q'"]).stdout == "a b|$HOME|'q'|"
    with pytest.raises(AdbCommandError) as ei:
        dev.shell("echo bad >&2; exit 4", check=True)
    assert ei.value.exit_code == 4 and "exited with 4: bad" in one_line(ei.value)
    dev.close()


def test_python_program_runs_with_host_interpreter(peer, tmp_path):
    script = tmp_path / "runner.py"
    script.write_text("import os, sys, ai_edge_litert\nprint(sys.argv[1], os.path.realpath(sys.argv[2]))\n"
                      "sys.exit(7)\n")
    with Device(peer.serial) as dev:
        dev.mkdir(f"{TMP}/edgeeas")
        dev.push(script, f"{TMP}/edgeeas/runner.py")
        res = dev.shell(["python3", f"{TMP}/edgeeas/runner.py", "--graph", f"{TMP}/edgeeas/m.tflite"], timeout_s=60)
    # Device paths reach the program rewritten to host paths that resolve into the sandbox.
    assert res.stdout == f"--graph {peer.sandbox}/edgeeas/m.tflite\n"
    assert res.exit_code == 7


def test_push_pull_round_trip(peer, tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 17)
    src = tmp_path / "blob.bin"
    src.write_bytes(data)
    with Device(peer.serial) as dev:
        dev.mkdir(f"{TMP}/a/b")
        dev.push(src, f"{TMP}/a/b/blob.bin")
        assert (peer.sandbox / "a/b/blob.bin").read_bytes() == data
        back = dev.pull(f"{TMP}/a/b/blob.bin", tmp_path / "back")
        assert back == (tmp_path / "back" / "blob.bin").resolve() and back.read_bytes() == data
        assert dev.exists(f"{TMP}/a/b/blob.bin") and not dev.exists(f"{TMP}/a/b/nope")
        tree = tmp_path / "tree"
        (tree / "sub").mkdir(parents=True)
        (tree / "sub" / "x.txt").write_text("x")
        dev.push(tree, f"{TMP}/tree")
        assert (peer.sandbox / "tree/sub/x.txt").read_text() == "x"
        dev.remove(f"{TMP}/tree", recursive=True)
        assert not (peer.sandbox / "tree").exists()
        with pytest.raises(AdbCommandError):
            dev.pull(f"{TMP}/missing.bin", tmp_path / "back")
        assert not (tmp_path / "back" / "missing.bin").exists()


def test_hostile_file_name_runs_nothing(peer, tmp_path):
    name = "a b;touch pwned.tflite"
    src = tmp_path / "model.tflite"
    src.write_bytes(b"tflite")
    remote = f"{TMP}/q/{name}"
    with Device(peer.serial) as dev:
        dev.mkdir(f"{TMP}/q")
        dev.push(src, remote)
        assert dev.exists(remote)
        assert dev.shell(["cat", remote], check=True).stdout == "tflite"
        assert dev.shell(["ls", f"{TMP}/q"], check=True).stdout == name + "\n"
        back = dev.pull(remote, tmp_path / "back")
        assert back.name == name and back.read_bytes() == b"tflite"
        dev.remove(remote)
        assert not dev.exists(remote)
    pwned = [*peer.sandbox.rglob("pwned*"), *tmp_path.rglob("pwned*"), *Path.cwd().glob("pwned*"),
             *Path(peer.python).parent.glob("pwned*")]
    assert pwned == []


def test_pull_cannot_escape_destination(peer, tmp_path):
    (peer.sandbox / "ok.txt").write_text("ok")
    dest = tmp_path / "dest"
    with Device(peer.serial) as dev:
        for remote in (f"{TMP}/../../etc/passwd", f"{TMP}/sub/../../x", "/data/local/tmp/.."):
            with pytest.raises(AdbError) as ei:
                dev.pull(remote, dest)
            assert ".." in one_line(ei.value)
        for name in ("../evil", "/abs/evil", "a/b", "..", "."):
            with pytest.raises(AdbError):
                dev.pull(f"{TMP}/ok.txt", dest, name=name)
        # The device refuses paths outside /data/local/tmp and /sdcard with a sync FAIL.
        with pytest.raises(AdbCommandError) as ei:
            dev.pull("/etc/passwd", dest)
        assert "outside" in one_line(ei.value) and "/etc/passwd: permission denied" in one_line(ei.value)
        assert "remote remote" not in one_line(ei.value)
        with pytest.raises(AdbCommandError):
            dev.push(peer.sandbox / "ok.txt", "/etc/edgeeas-should-not-exist")
        assert dev.pull(f"{TMP}/ok.txt", dest, name="renamed.txt").read_text() == "ok"
    assert not (tmp_path / "evil").exists() and not Path("/abs/evil").exists()
    assert not Path("/etc/edgeeas-should-not-exist").exists()
    assert sorted(p.name for p in dest.iterdir()) == ["renamed.txt"]


def test_auth_refused_is_one_line_with_advice(make_peer, other_keypair, tmp_path):
    keys = tmp_path / "only_other"
    keys.write_text(Path(str(other_keypair) + ".pub").read_text())
    p = make_peer(authorized_keys=keys)
    start = time.monotonic()
    with pytest.raises(AdbAuthError) as ei:
        Device(p.serial, auth_timeout_s=1.0).connect()
    assert time.monotonic() - start < 5
    text = one_line(ei.value)
    assert "unauthorized" in text and "accept the USB debugging prompt on the phone" in text


def test_accept_new_keys_remembers_key(make_peer, adb_home, tmp_path):
    keys = tmp_path / "adb_keys_empty"
    keys.write_text("")
    p = make_peer(authorized_keys=keys, accept_new_keys=True)
    with Device(p.serial, auth_timeout_s=2.0) as dev:
        assert dev.shell("echo in").stdout == "in\n"
    assert keys.read_text().split()[0] == (adb_home / ".android/adbkey.pub").read_text().split()[0]


def test_vendor_keys_and_key_creation(make_peer, other_keypair, tmp_path, monkeypatch):
    home = tmp_path / "fresh-home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    vendor_dir = tmp_path / "vendor"
    vendor_dir.mkdir()
    (vendor_dir / "team.adb_key").write_bytes(Path(other_keypair).read_bytes())  # private key only, no .pub
    (vendor_dir / "ignored.txt").write_text("not a key")
    monkeypatch.setenv("ADB_VENDOR_KEYS", f"{vendor_dir}:{tmp_path / 'does-not-exist'}")
    keys = load_keys()
    assert (home / ".android/adbkey").stat().st_mode & 0o777 == 0o600
    assert [k.path.name for k in keys] == ["adbkey", "team.adb_key"]
    assert "BEGIN" not in repr(keys) and keys[1].GetPublicKey().split()[0] == \
        Path(str(other_keypair) + ".pub").read_text().split()[0]
    authorized = tmp_path / "vendor_only"
    authorized.write_text(Path(str(other_keypair) + ".pub").read_text())
    p = make_peer(authorized_keys=authorized)
    with Device(p.serial, auth_timeout_s=1.0) as dev:  # the user key fails, the vendor key passes
        assert dev.shell("echo v").stdout == "v\n"


def test_peer_killed_mid_command(peer):
    dev = Device(peer.serial).connect()
    kill = threading.Timer(0.5, peer.stop)
    kill.start()
    start = time.monotonic()
    with pytest.raises(AdbConnectionError) as ei:
        dev.shell("sleep 20; echo never", timeout_s=30)
    assert time.monotonic() - start < 5
    kill.join()
    assert "closed the connection" in one_line(ei.value)
    with pytest.raises(AdbConnectionError) as ei:  # and it stays gone
        dev.shell("echo again", timeout_s=5)
    assert "refused" in one_line(ei.value)


def test_command_timeout_kills_command_and_recovers(peer):
    dev = Device(peer.serial)
    start = time.monotonic()
    with pytest.raises(AdbTimeout) as ei:
        dev.shell("sleep 1.5; touch late", timeout_s=0.5)
    assert time.monotonic() - start < 4
    assert "did not finish within 0.5 s" in one_line(ei.value)
    assert dev.shell("echo next").stdout == "next\n"  # reconnected
    time.sleep(1.5)
    assert not (peer.sandbox / "late").exists()  # the timed-out command was killed with its stream


def test_disk_quota_is_device_full(make_peer, tmp_path):
    p = make_peer(disk_quota_bytes=200_000)
    small, big = tmp_path / "small", tmp_path / "big"
    small.write_bytes(b"s" * 50_000)
    big.write_bytes(os.urandom(400_000))
    with Device(p.serial) as dev:
        dev.push(small, f"{TMP}/small")
        with pytest.raises(DeviceFull) as ei:
            dev.push(big, f"{TMP}/big")
        assert "No space left on device" in one_line(ei.value)
        assert not (p.sandbox / "big").exists()
        assert dev.shell("echo still-alive").stdout == "still-alive\n"


def test_connect_selects_device(peer, monkeypatch):
    dev = connect(candidates=[peer.serial])
    assert dev.shell("getprop ro.product.model").stdout == "Peer One\n"
    dev.close()
    monkeypatch.setenv("ANDROID_SERIAL", peer.serial)
    with connect(candidates=["10.255.255.1:9", "10.255.255.2:9"]) as dev:
        assert dev.getprop("ro.product.model") == "Peer One"


def test_fingerprint(make_peer):
    p = make_peer(model="Pixel Test", props={"ro.build.version.release": "14", "ro.soc.model": "SM8550"})
    with Device(p.serial) as dev:
        fp = fingerprint(dev)
    assert fp["model"] == "Pixel Test" and fp["manufacturer"] == "edgeeas" and fp["device"] == "edgeeas_peer"
    assert fp["abi"] == "x86_64" and fp["android_release"] == "14" and fp["soc_model"] == "SM8550"
    assert fp["build_fingerprint"].startswith("edgeeas/adb-peer/") and fp["platform"].startswith("linux-")
    assert isinstance(fp["cores"], int) and fp["cores"] >= 1
    assert fp["max_temp_c"] is None or -40 <= fp["max_temp_c"] <= 150
    assert fp["serial"] == p.serial and set(fp) >= {"governor", "sdk"}


def test_two_peers_in_parallel(make_peer, tmp_path):
    peers = [make_peer(model=f"Phone {i}") for i in range(2)]
    payload = os.urandom(500_000)
    (tmp_path / "m.bin").write_bytes(payload)

    def job(p):
        with Device(p.serial) as dev:
            dev.push(tmp_path / "m.bin", f"{TMP}/m.bin")
            res = dev.shell(f"sleep 0.5; getprop ro.product.model; cmp {TMP}/m.bin {TMP}/m.bin && echo same")
            return res.stdout

    start = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        outs = list(pool.map(job, peers))
    assert outs == ["Phone 0\nsame\n", "Phone 1\nsame\n"]
    assert time.monotonic() - start < 4
    assert all((p.sandbox / "m.bin").read_bytes() == payload for p in peers)


def test_discover_reports_each_candidate(make_peer, other_keypair, tmp_path):
    good = make_peer(model="Good")
    keys = tmp_path / "nobody"
    keys.write_text(Path(str(other_keypair) + ".pub").read_text())
    locked = make_peer(authorized_keys=keys)
    closed = f"127.0.0.1:{free_port()}"
    start = time.monotonic()
    infos = discover([good.serial, locked.serial, closed], timeout_s=1.0)
    assert time.monotonic() - start < 4  # in parallel
    by = {i.serial: i for i in infos}
    assert [i.serial for i in infos] == [good.serial, locked.serial, closed]
    assert by[good.serial].reachable and by[good.serial].model == "Good" and by[good.serial].state == "device"
    assert not by[locked.serial].reachable and by[locked.serial].state == "unauthorized"
    assert not by[closed].reachable and "refused" in by[closed].reason


def test_logs_equivalent_commands_and_no_keys(peer, adb_home, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    (tmp_path / "f").write_text("f")
    with Device(peer.serial) as dev:
        dev.shell("echo 'it''s'")
        dev.push(tmp_path / "f", f"{TMP}/f")
        dev.pull(f"{TMP}/f", tmp_path / "out")
    text = caplog.text
    assert f"adb -s {peer.serial} shell 'echo '\"'\"'it'\"'\"''\"'\"'s'\"'\"''" in text
    assert f"adb -s {peer.serial} push {tmp_path / 'f'} /data/local/tmp/f" in text
    assert f"adb -s {peer.serial} pull /data/local/tmp/f {(tmp_path / 'out' / 'f').resolve()}" in text
    pub = (adb_home / ".android/adbkey.pub").read_text().split()[0]
    private = (adb_home / ".android/adbkey").read_text().splitlines()[1]
    for secret in (pub[:40], pub[-40:], private[:40]):
        assert secret not in text


def test_usb_serial_without_device_is_a_clean_error():
    with pytest.raises(AdbConnectionError) as ei:
        Device("0123456789ABCDEF", connect_timeout_s=1.0).connect()
    one_line(ei.value)


def test_peer_command_line(adb_home, tmp_path):
    import signal
    import subprocess
    import sys

    keys = tmp_path / "adb_keys"
    keys.write_text((adb_home / ".android/adbkey.pub").read_text())
    proc = subprocess.Popen([sys.executable, "-m", "testing.adb_peer", "--port", "0", "--sandbox",
                             str(tmp_path / "dev"), "--authorized-keys", str(keys), "--model", "Cli Phone",
                             "--prop", "ro.build.version.release=15"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1])))
    try:
        line = proc.stdout.readline()
        assert line.startswith("adb peer listening on 127.0.0.1:"), line + proc.stderr.read()
        serial = line.split()[4]
        with Device(serial) as dev:
            assert dev.getprop("ro.product.model") == "Cli Phone"
            assert dev.getprop("ro.build.version.release") == "15"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
