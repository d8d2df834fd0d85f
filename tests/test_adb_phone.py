"""Opt-in checks on a physical phone: EDGEEAS_PHONE_SERIAL=SERIAL pytest -m phone tests/test_adb_phone.py

The phone must have USB debugging (or wireless debugging) enabled and this host's
~/.android/adbkey accepted; over USB, no other adb server may hold it (`adb kill-server`).
"""

from __future__ import annotations

import os

import pytest

from android_runner import Device, fingerprint

SERIAL = os.environ.get("EDGEEAS_PHONE_SERIAL", "")

pytestmark = [pytest.mark.phone,
              pytest.mark.skipif(not SERIAL, reason="needs a phone: set EDGEEAS_PHONE_SERIAL=SERIAL")]


def test_phone_shell_push_pull_fingerprint(tmp_path):
    data = os.urandom(256 * 1024)
    (tmp_path / "blob").write_bytes(data)
    remote_dir = "/data/local/tmp/edgeeas-phone-test"
    with Device(SERIAL, auth_timeout_s=30) as dev:
        assert dev.shell("exit 3").exit_code == 3
        dev.mkdir(remote_dir)
        dev.push(tmp_path / "blob", f"{remote_dir}/blob")
        assert dev.pull(f"{remote_dir}/blob", tmp_path / "back").read_bytes() == data
        fp = fingerprint(dev)
        dev.remove(remote_dir, recursive=True)
    assert fp["model"] and fp["abi"] and fp["cores"]
