"""An emulated ARM64 test device: the adb peer whose shell runs inside an arm64 Debian rootfs.

The plain peer (:mod:`testing.adb_peer`) runs device commands with the host's own Python and
interpreter on x86, so "device outputs equal the host's" holds there by construction.  This
variant runs every shell command inside an arm64 userland under qemu-user: the device's
``/bin/sh``, ``python3`` (Debian bookworm's 3.11) and the aarch64 wheel of ai-edge-litert are
ARM binaries, and LiteRT picks its ARM kernels (XNNPACK's NEON/dot-product paths, or its
builtin kernels with ``--use_xnnpack=false``).  It proves function, numerics and ABI on a
foreign ISA; it measures no latency worth keeping (emulation is 40-90x slower than native).

Set-up, once per machine (root; about 5 minutes; cached): ``make arm-device``, which runs
``testing/arm64/make_rootfs.sh`` into :func:`rootfs_dir`.  Each shell command then runs as::

    unshare --mount --propagation private -- sh -c \\
        'mount --bind SANDBOX ROOTFS/data/local/tmp; mount --bind SDCARD ROOTFS/sdcard;
         mount --bind TOOLS ROOTFS/system/bin; exec chroot ROOTFS /bin/sh -c "cd /data/local/tmp && CMD"'

in a private mount namespace (the bind mounts vanish with the command, so peers do not see each
other's folders), with ``QEMU_CPU=cortex-a76`` (never ``max``: SME under qemu 7.2 makes XNNPACK
compute wrong outputs) and binfmt_misc running the arm64 binaries through qemu-aarch64-static.
Device paths are real paths inside the rootfs: nothing is rewritten.

    from testing.arm64 import Arm64Peer, arm64_unavailable
    if (why := arm64_unavailable()) is None:
        with Arm64Peer(sandbox=tmp / "dev", authorized_keys=home / ".android/adbkey.pub") as peer:
            Device(peer.serial).shell("getprop ro.product.cpu.abi")    # arm64-v8a

Its ``getprop`` says ``ro.product.cpu.abi=arm64-v8a`` and records the emulation where a
fingerprint reads it (``ro.product.model``, ``ro.board.platform``, ``ro.soc.model``,
``ro.build.fingerprint`` all name qemu-user; ``ro.kernel.qemu=1`` as on Android's emulator), so
no latency table built on it can pass for a phone's.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from testing.adb_peer import AdbPeer
from testing.adb_peer.peer import getprop_script

__all__ = ["Arm64Peer", "arm64_unavailable", "rootfs_dir", "QEMU_CPU", "SETUP_SCRIPT"]

#: The emulated core: a real one (Cortex-A76: NEON, fp16, dot product), never ``max`` (trap 2).
QEMU_CPU = "cortex-a76"
SETUP_SCRIPT = Path(__file__).resolve().parent / "make_rootfs.sh"
_BINFMT = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")


def rootfs_dir() -> Path:
    """Where ``make arm-device`` keeps the rootfs: ``$EDGEEAS_ARM64_ROOTFS``, else
    ``~/.cache/edgeeas/arm64-rootfs`` (outside the repository; never committed)."""
    env = os.environ.get("EDGEEAS_ARM64_ROOTFS")
    return Path(env) if env else Path.home() / ".cache" / "edgeeas" / "arm64-rootfs"


def arm64_unavailable(rootfs: Path | None = None) -> str | None:
    """``None`` when an :class:`Arm64Peer` can run here, else one line saying why not (what
    the arm64 tests print when they skip): no rootfs (run ``make arm-device``), not root, no
    binfmt_misc entry for qemu-aarch64, or no ``unshare``/``chroot``/``mount``."""
    rootfs = Path(rootfs or rootfs_dir())
    if not (rootfs / ".edgeeas-ready").is_file():
        return f"no arm64 rootfs at {rootfs}: run `make arm-device` (root, about 5 minutes, cached)"
    if os.geteuid() != 0:
        return "the arm64 peer needs root (chroot and bind mounts in a private mount namespace)"
    try:
        if not _BINFMT.read_text().startswith("enabled"):
            return f"{_BINFMT} is disabled: run `make arm-device` (it enables it)"
    except OSError:
        return f"no binfmt_misc entry {_BINFMT} (lost at reboot?): run `make arm-device`"
    missing = [t for t in ("unshare", "chroot", "mount") if _which(t) is None]
    if missing:
        return f"missing host tools: {', '.join(missing)} (util-linux, coreutils)"
    return None


def _which(tool: str) -> str | None:
    return shutil.which(tool, path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")


@dataclass
class Arm64Peer(AdbPeer):
    """An :class:`testing.adb_peer.AdbPeer` whose shell runs in the emulated arm64 rootfs.

    Extra fields: ``rootfs`` (default :func:`rootfs_dir`) and ``qemu_cpu`` (default
    :data:`QEMU_CPU`).  Everything else (wire protocol, keys, sync, the sandbox folders, disk
    quota) is the plain peer's.

    Raises (from ``start()``):
        ValueError: ``qemu_cpu`` is ``max`` without ``sme=off`` (trap 2).
        RuntimeError: the rootfs or the host cannot run it (:func:`arm64_unavailable`'s line).
    """

    rootfs: Path | None = None
    qemu_cpu: str = QEMU_CPU
    model: str = "edgeeas-arm64-qemu"

    def start(self) -> "Arm64Peer":
        if self.qemu_cpu.split(",")[0] == "max" and "sme=off" not in self.qemu_cpu:
            raise ValueError("QEMU_CPU=max offers SME, with which XNNPACK computes wrong outputs under "
                             "qemu 7.2: use a real core (cortex-a76) or 'max,sme=off'")
        self.rootfs = Path(self.rootfs or rootfs_dir()).resolve()
        why = arm64_unavailable(self.rootfs)
        if why is not None:
            raise RuntimeError(why)
        self._tools = {t: _which(t) for t in ("unshare", "mount", "chroot")}
        return super().start()

    def properties(self) -> dict[str, str]:
        """An arm64 device that says it is emulated wherever a fingerprint looks."""
        cpu = self.qemu_cpu
        props = {
            "ro.product.name": "edgeeas_arm64_qemu",
            "ro.product.model": self.model,
            "ro.product.manufacturer": "edgeeas",
            "ro.product.device": "edgeeas_arm64_qemu",
            "ro.product.cpu.abi": "arm64-v8a",
            "ro.product.cpu.abilist": "arm64-v8a",
            "ro.board.platform": f"qemu-user-{cpu}",
            "ro.soc.model": f"emulated {cpu} (qemu-user, not a phone: latency is meaningless)",
            "ro.hardware": "qemu",
            "ro.kernel.qemu": "1",
            "ro.build.fingerprint": f"edgeeas/arm64-qemu-user/{cpu}:debian-bookworm/emulated",
            "ro.serialno": self.serial,
        }
        props.update(self.props)
        return props

    def rewrite_command(self, command: str) -> str:
        """Nothing to rewrite: inside the rootfs ``/data/local/tmp`` and ``/sdcard`` are real."""
        return command

    def _write_tools(self) -> None:
        # /system/bin inside the rootfs (bind-mounted per command): getprop, an arm64 dash script
        bindir = self._private_dir / "system-bin"
        bindir.mkdir()
        (bindir / "build.prop").write_text("".join(f"{k}={v}\n" for k, v in sorted(self.properties().items())))
        (bindir / "getprop").write_text(getprop_script("/system/bin/build.prop"))
        (bindir / "getprop").chmod(0o755)
        self._bindir = bindir

    def shell_argv(self, command: str) -> list[str]:
        """``unshare`` → bind mounts → ``chroot ROOTFS /bin/sh -c 'cd /data/local/tmp && ...'``."""
        inner = 'cd /data/local/tmp && exec /bin/sh -c "$1"' if command else "cd /data/local/tmp && exec /bin/sh"
        t = self._tools
        script = (f'{t["mount"]} --bind "$2" "$1/data/local/tmp" && {t["mount"]} --bind "$3" "$1/sdcard" '
                  f'&& {t["mount"]} --bind "$4" "$1/system/bin" && exec {t["chroot"]} "$1" /bin/sh -c \'{inner}\' sh "$5"')
        return [t["unshare"], "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script, "sh",
                str(self.rootfs), str(self.sandbox), str(self.sdcard), str(self._bindir), command]

    def shell_env(self) -> dict[str, str]:
        """The device's environment (inside the rootfs), plus ``QEMU_CPU`` for qemu-user."""
        return {
            "PATH": "/system/bin:/usr/local/bin:/usr/bin:/bin",
            "HOME": "/data/local/tmp",
            "TMPDIR": "/data/local/tmp",
            "LANG": "C.UTF-8",
            "EXTERNAL_STORAGE": "/sdcard",
            "QEMU_CPU": self.qemu_cpu,
        }
