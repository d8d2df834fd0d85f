"""A device that drops off the network: a peer in its own network namespace behind a veth pair.

Needs root and `ip netns`; skipped with the reason otherwise.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from android_runner import AdbConnectionError, Device

REPO = Path(__file__).resolve().parents[1]


def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)


@pytest.fixture
def netns_link():
    """(namespace, host-side veth, device address) on a private /30; deleted afterwards."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2's `ip`")
    tag = secrets.token_hex(3)
    ns, host_if, dev_if = f"edgeeas-{tag}", f"ee{tag}h", f"ee{tag}d"
    res = _ip("netns", "add", ns)
    if res.returncode != 0:
        pytest.skip(f"`ip netns add` does not work here: {res.stderr.strip()}")
    octet = 1 + int(tag, 16) % 250
    host_addr, dev_addr = f"10.213.{octet}.1", f"10.213.{octet}.2"
    try:
        steps = [
            ("link", "add", host_if, "type", "veth", "peer", "name", dev_if),
            ("link", "set", dev_if, "netns", ns),
            ("addr", "add", f"{host_addr}/30", "dev", host_if),
            ("link", "set", host_if, "up"),
            ("-n", ns, "addr", "add", f"{dev_addr}/30", "dev", dev_if),
            ("-n", ns, "link", "set", dev_if, "up"),
            ("-n", ns, "link", "set", "lo", "up"),
        ]
        for step in steps:
            res = _ip(*step)
            if res.returncode != 0:
                pytest.skip(f"cannot build a veth link (`ip {' '.join(step)}`): {res.stderr.strip()}")
        yield ns, host_if, dev_addr
    finally:
        _ip("link", "del", host_if)
        _ip("netns", "del", ns)


def test_link_cut_is_a_connection_error(netns_link, adb_home, tmp_path):
    ns, host_if, dev_addr = netns_link
    keys = tmp_path / "adb_keys"
    keys.write_text((adb_home / ".android/adbkey.pub").read_text())
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m", "testing.adb_peer",
                             "--host", dev_addr, "--port", "5800", "--sandbox", str(tmp_path / "device"),
                             "--authorized-keys", str(keys)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        line = proc.stdout.readline()
        assert "listening on" in line, line + proc.stderr.read()
        dev = Device(f"{dev_addr}:5800", connect_timeout_s=2.0)
        assert dev.shell("echo up", timeout_s=5).stdout == "up\n"
        assert _ip("link", "set", host_if, "down").returncode == 0  # the phone walks out of Wi-Fi range
        start = time.monotonic()
        with pytest.raises(AdbConnectionError) as ei:
            dev.shell("echo again", timeout_s=1.5)
        assert time.monotonic() - start < 8
        text = str(ei.value)
        assert "\n" not in text and "cannot be reached" in text and "offline" in text
    finally:  # only the process this test started; SIGTERM lets it clean up its temp folder
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
