"""What the device side sees and keeps: no stderr temp files left by a dropped connection, and
the test peer's shell showing device paths (never the host folders behind them)."""
from __future__ import annotations

import threading
import time

import pytest

from android_runner import AdbError, Device

TMP = "/data/local/tmp"


def _leftovers(peer) -> list[str]:
    return sorted(p.name for p in peer.sandbox.iterdir() if p.name.startswith(".edgeeas-stderr-"))


def test_stderr_is_captured_and_no_file_is_left(peer):
    with Device(peer.serial) as dev:
        res = dev.shell("echo out; echo err >&2; exit 3")
        assert (res.stdout, res.stderr, res.exit_code) == ("out\n", "err\n", 3)
        res = dev.shell("ls -a /data/local/tmp; echo late >&2")   # the file is gone while the command runs
        assert ".edgeeas-stderr" not in res.stdout and res.stderr == "late\n"
    assert _leftovers(peer) == []


def test_dropped_connection_leaves_no_stderr_file_on_the_device(make_peer):
    """The shell is killed mid-command when the connection drops (as adbd does): before the fix its
    `rm -f` of the stderr file never ran and `.edgeeas-stderr-*` files piled up on the device."""
    peer = make_peer(model="Drops")
    errors: list[BaseException] = []
    dev = Device(peer.serial)
    dev.connect()

    def run():
        try:
            dev.shell("echo started >&2; sleep 30", timeout_s=60)
        except AdbError as e:
            errors.append(e)

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 20
    while not _shell_running(peer) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    peer.stop()                      # pull the plug mid-command
    t.join(30)
    assert not t.is_alive() and errors, "the dropped connection must surface as an AdbError"
    time.sleep(0.5)
    assert _leftovers(peer) == []


def _shell_running(peer) -> bool:
    return any(getattr(c, "procs", None) for c in list(peer._conns))


@pytest.mark.parametrize("cmd, expect", [
    ("pwd", "/data/local/tmp\n"),
    ("cd /data/local/tmp && pwd", "/data/local/tmp\n"),
    ("mkdir -p /data/local/tmp/sub && cd /data/local/tmp/sub && pwd", "/data/local/tmp/sub\n"),
])
def test_peer_pwd_prints_device_paths(peer, cmd, expect):
    with Device(peer.serial) as dev:
        assert dev.shell(cmd).stdout == expect


def test_peer_ls_l_prints_device_paths(peer):
    with Device(peer.serial) as dev:
        dev.shell("echo x > /data/local/tmp/f; ln -s /data/local/tmp/f /data/local/tmp/link", check=True)
        out = dev.shell("ls -l /data/local/tmp; ls -l /data/local; ls -ld /sdcard; ls -la").stdout
    host = [str(peer.sandbox), str(peer.sdcard), str(peer.sandbox.parent)]
    assert not any(h in out for h in host), out
    assert "link -> /data/local/tmp/f" in out and "tmp -> /data/local/tmp" in out
