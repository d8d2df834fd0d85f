"""The arm64 peer's guards, without the emulated device (part of `make test`): trap 2 refused, a
missing rootfs said in one line, and the shell command it builds."""
from __future__ import annotations

import pytest

from testing.arm64 import Arm64Peer, arm64_unavailable


def test_qemu_cpu_max_is_refused(tmp_path):
    for cpu in ("max", "max,pauth-impdef=on"):
        with pytest.raises(ValueError, match="SME"):
            Arm64Peer(sandbox=tmp_path / "d", qemu_cpu=cpu, rootfs=tmp_path / "none").start()


def test_missing_rootfs_says_make_arm_device(tmp_path):
    why = arm64_unavailable(tmp_path / "none")
    assert why is not None and "make arm-device" in why and "\n" not in why
    with pytest.raises(RuntimeError, match="make arm-device"):
        Arm64Peer(sandbox=tmp_path / "d", qemu_cpu="max,sme=off", rootfs=tmp_path / "none").start()


def test_arm64_identity_and_shell_command(tmp_path):
    peer = Arm64Peer(sandbox=tmp_path / "d", rootfs=tmp_path / "rootfs")
    props = peer.properties()
    assert props["ro.product.cpu.abi"] == "arm64-v8a" and props["ro.kernel.qemu"] == "1"
    assert all("qemu" in props[k] for k in ("ro.board.platform", "ro.soc.model", "ro.build.fingerprint"))
    peer._tools = {"unshare": "/usr/bin/unshare", "mount": "/bin/mount", "chroot": "/usr/sbin/chroot"}
    peer._bindir, peer.sdcard = tmp_path / "bin", tmp_path / "sd"
    argv = peer.shell_argv("echo hi; ls /data")
    assert argv[:5] == ["/usr/bin/unshare", "--mount", "--propagation", "private", "--"]
    assert argv[-5:] == [str(tmp_path / "rootfs"), str(tmp_path / "d"), str(tmp_path / "sd"), str(tmp_path / "bin"),
                         "echo hi; ls /data"]  # the command travels as an argument, never pasted into the script
    assert "chroot" in argv[7] and "cd /data/local/tmp" in argv[7]
    assert peer.shell_env()["QEMU_CPU"] == "cortex-a76" and peer.rewrite_command("ls /data") == "ls /data"
