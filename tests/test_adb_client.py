"""Debian's real `adb` client (host + server) against the device-side peer."""

from __future__ import annotations

import os
import time

import pytest


TMP = "/data/local/tmp"


def authorize(cli, peer_keys):
    peer_keys.write_text(cli.public_key)


def connected(cli, serial: str) -> None:
    res = cli("connect", serial)
    # `adb connect` exits 0 even when it fails: read its text.
    assert f"connected to {serial}" in res.stdout, res.stdout + res.stderr


def devices(cli) -> dict[str, str]:
    lines = cli("devices").stdout.splitlines()[1:]
    return dict(line.split()[:2] for line in lines if line.strip())


@pytest.fixture
def authorized_peer(make_peer, adb_cli, tmp_path):
    keys = tmp_path / "cli_keys"
    authorize(adb_cli, keys)
    p = make_peer(authorized_keys=keys, model="Debian Client Target")
    connected(adb_cli, p.serial)
    return p


def test_auth_accepted_and_device_listed(authorized_peer, adb_cli):
    out = adb_cli("devices", "-l").stdout
    assert f"{authorized_peer.serial}" in out and "device product:edgeeas_peer" in out
    assert "model:Debian_Client_Target" in out  # adb replaces spaces in the banner's model


def test_shell_v2_exit_codes(authorized_peer, adb_cli):
    s = authorized_peer.serial
    assert adb_cli("-s", s, "shell", "exit 3").returncode == 3
    res = adb_cli("-s", s, "shell", "echo", "hi")
    assert (res.returncode, res.stdout) == (0, "hi\n")
    res = adb_cli("-s", s, "shell", "echo out; echo err >&2; exit 5")
    assert (res.returncode, res.stdout, res.stderr) == (5, "out\n", "err\n")
    res = adb_cli("-s", s, "shell", "getprop ro.product.model")
    assert res.stdout == "Debian Client Target\n"
    res = adb_cli("-s", s, "shell", "cat; echo done", input="abc\ndef\n")  # stdin packets + close-stdin
    assert (res.returncode, res.stdout) == (0, "abc\ndef\ndone\n")
    res = adb_cli("-s", s, "shell", input="echo interactive; exit 4\n")  # no command: an interactive sh
    assert (res.returncode, res.stdout) == (4, "interactive\n")
    res = adb_cli("-s", s, "shell", "-x", "echo v1; exit 6")  # -x forces shell v1: no exit code, as on a phone
    assert (res.returncode, res.stdout) == (0, "v1\n")


def test_push_pull_round_trip(authorized_peer, adb_cli, tmp_path):
    data = os.urandom(4 * 1024 * 1024 + 3)
    src, back = tmp_path / "src.bin", tmp_path / "back.bin"
    src.write_bytes(data)
    s = authorized_peer.serial
    res = adb_cli("-s", s, "push", str(src), f"{TMP}/dir/src.bin")
    assert res.returncode == 0, res.stderr
    assert (authorized_peer.sandbox / "dir/src.bin").read_bytes() == data
    res = adb_cli("-s", s, "pull", f"{TMP}/dir/src.bin", str(back))
    assert res.returncode == 0, res.stderr
    assert back.read_bytes() == data


def test_refusals(authorized_peer, adb_cli, tmp_path):
    s = authorized_peer.serial
    res = adb_cli("-s", s, "pull", "/etc/passwd", str(tmp_path / "passwd"))
    assert res.returncode != 0 and not (tmp_path / "passwd").exists()
    assert adb_cli("-s", s, "reboot").returncode != 0  # unknown service: CLSE
    assert adb_cli("-s", s, "shell", "echo", "still-here").stdout == "still-here\n"


def test_disk_full(make_peer, adb_cli, tmp_path):
    keys = tmp_path / "cli_keys"
    authorize(adb_cli, keys)
    p = make_peer(authorized_keys=keys, disk_quota_bytes=100_000)
    connected(adb_cli, p.serial)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(300_000))
    res = adb_cli("-s", p.serial, "push", str(big), f"{TMP}/big.bin")
    assert res.returncode != 0 and "No space left on device" in res.stdout + res.stderr
    assert not (p.sandbox / "big.bin").exists()


def test_auth_refused_shows_unauthorized(make_peer, adb_cli, tmp_path):
    keys = tmp_path / "nobody"
    keys.write_text("")  # the client's key is not authorized
    p = make_peer(authorized_keys=keys)
    adb_cli("connect", p.serial)
    deadline = time.monotonic() + 10
    while devices(adb_cli).get(p.serial) != "unauthorized" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert devices(adb_cli).get(p.serial) == "unauthorized"
    res = adb_cli("-s", p.serial, "shell", "echo", "x")
    assert res.returncode != 0 and "unauthorized" in res.stderr
