"""What a latency figure was measured on: one shell round trip of getprop and /sys reads.

Every field is optional (``None`` when the device does not expose it): boards,
emulators and locked-down phones all lack some of these files.
"""

from __future__ import annotations

import re
import secrets
from typing import TYPE_CHECKING, Any

from .device import parse_getprop

if TYPE_CHECKING:
    from .device import Device

__all__ = ["fingerprint", "is_emulated", "PROPS"]

# fingerprint key -> getprop keys tried in order
PROPS: dict[str, tuple[str, ...]] = {
    "model": ("ro.product.model",),
    "manufacturer": ("ro.product.manufacturer",),
    "device": ("ro.product.device",),
    "platform": ("ro.board.platform",),
    "soc_model": ("ro.soc.model",),
    "abi": ("ro.product.cpu.abi",),
    "build_fingerprint": ("ro.build.fingerprint",),
    "serialno": ("ro.serialno", "ro.boot.serialno"),  # the hardware serial: one device over USB and TCP
    "android_release": ("ro.build.version.release",),
    "sdk": ("ro.build.version.sdk",),
    "hardware": ("ro.hardware",),
}

# Android's own marks of an emulated device: the emulator (goldfish, ranchu) sets ro.kernel.qemu=1
# (ro.boot.qemu=1 on newer images) and ro.hardware to its board; edgeeas's arm64 test device
# (qemu-user) says the same.  A latency measured there means nothing on a phone.
_EMULATED_HARDWARE = {"goldfish", "ranchu", "qemu", "cutf_cvm", "vsoc_x86_64", "vsoc_arm64"}


def is_emulated(props: dict[str, str]) -> bool:
    """Whether getprop ``props`` describe an emulated device (Android emulator, Cuttlefish,
    qemu): ``ro.kernel.qemu`` or ``ro.boot.qemu`` is 1, or ``ro.hardware`` names an emulator board."""
    return (props.get("ro.kernel.qemu") == "1" or props.get("ro.boot.qemu") == "1"
            or props.get("ro.hardware", "").strip().lower() in _EMULATED_HARDWARE)

_SECTIONS = (
    ("props", "getprop"),
    ("possible", "cat /sys/devices/system/cpu/possible"),
    ("nproc", "nproc"),
    ("governor", "cat /sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
    ("temps", "cat /sys/class/thermal/thermal_zone*/temp"),
)


def count_cpus(possible: str) -> int | None:
    """``0-7`` / ``0-3,6`` / ``0`` → number of CPUs."""
    total = 0
    for part in possible.strip().split(","):
        m = re.fullmatch(r"\s*(\d+)(?:-(\d+))?\s*", part)
        if not m:
            return None
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        total += hi - lo + 1
    return total or None


def max_temp_c(text: str) -> float | None:
    """Thermal zone readings (millidegrees, or degrees on some kernels) → the hottest in °C."""
    temps = []
    for tok in text.split():
        try:
            v = float(tok)
        except ValueError:
            continue
        c = v / 1000.0 if abs(v) >= 200 else v
        if -40.0 <= c <= 150.0:  # drop sentinel values of disabled sensors
            temps.append(c)
    return round(max(temps), 1) if temps else None


def fingerprint(device: "Device", timeout_s: float = 30.0) -> dict[str, Any]:
    """Model, SoC, ABI, build, cores, governor, the hottest thermal zone of ``device``, and
    ``emulated`` (:func:`is_emulated`: an emulator or qemu, whose latency means nothing)."""
    sep = f"__EDGEEAS_FP_{secrets.token_hex(4)}__"
    script = "; ".join(f"echo {sep}{name}; {cmd} 2>/dev/null" for name, cmd in _SECTIONS)
    out = device.shell(script, timeout_s).stdout
    parts: dict[str, str] = {}
    for chunk in out.split(sep)[1:]:
        name, _, body = chunk.partition("\n")
        parts[name.strip()] = body
    props = parse_getprop(parts.get("props", ""))
    result: dict[str, Any] = {"serial": device.serial}
    for key, names in PROPS.items():
        result[key] = next((props[n] for n in names if props.get(n)), None)
    result["emulated"] = is_emulated(props)
    cores = count_cpus(parts.get("possible", "")) if parts.get("possible", "").strip() else None
    if cores is None and parts.get("nproc", "").strip().isdigit():
        cores = int(parts["nproc"].strip())
    result["cores"] = cores
    result["governor"] = parts.get("governor", "").strip() or None
    result["max_temp_c"] = max_temp_c(parts.get("temps", ""))
    return result
