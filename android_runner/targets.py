"""Named devices (``targets.yaml``) and parallel reachability checks.

``targets.yaml``::

    pixel:
      serial: 192.168.1.20:5555     # USB serial or host:port
    board:
      model: "Pixel 7"              # matched against ro.product.model of reachable devices
      candidates: [10.0.0.5:5555]   # optional: serials to look at for a model match

(The same mapping may sit under a top-level ``targets:`` key.)
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .device import Device
from .errors import AdbAuthError, AdbConnectionError, AdbError
from .keys import AdbKey, load_keys

__all__ = ["TargetSpec", "DeviceInfo", "load_targets", "discover", "resolve_target", "list_usb_serials"]

log = logging.getLogger("android_runner")

_EXPECTED = ("expected a mapping of target names to {serial: SERIAL} or {model: MODEL}, "
             "e.g. `pixel: {serial: 192.168.1.20:5555}`")


@dataclass(frozen=True)
class TargetSpec:
    """A named device: by ``serial`` (USB or ``host:port``) or by ``model`` (ro.product.model)."""

    name: str
    serial: str | None = None
    model: str | None = None
    candidates: tuple[str, ...] = ()


@dataclass(frozen=True)
class DeviceInfo:
    """Result of probing one serial."""

    serial: str
    reachable: bool
    reason: str = ""                 # why not reachable (one line), or "" when reachable
    state: str = "offline"           # "device" | "unauthorized" | "offline", as in `adb devices`
    model: str | None = None
    props: dict[str, str] = field(default_factory=dict)
    latency_ms: float | None = None  # connect + handshake + getprop


def load_targets(path: str | Path) -> dict[str, TargetSpec]:
    """Parse ``targets.yaml``; a malformed file raises a one-line ``ValueError`` naming it."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror or exc}); {_EXPECTED}") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        pos = f" at line {where.line + 1}" if where is not None else ""
        raise ValueError(f"{path}: not valid YAML{pos}; {_EXPECTED}") from None
    if data is None:
        return {}
    if isinstance(data, dict) and set(data) == {"targets"}:
        data = data["targets"]
    if not isinstance(data, dict):
        raise ValueError(f"{path}: top level is a {type(data).__name__}; {_EXPECTED}")
    targets: dict[str, TargetSpec] = {}
    for name, body in data.items():
        if not isinstance(body, dict):
            raise ValueError(f"{path}: target {name!r} is {body!r}; {_EXPECTED}")
        unknown = set(body) - {"serial", "model", "candidates"}
        if unknown:
            raise ValueError(f"{path}: target {name!r} has unknown keys {sorted(unknown)}; {_EXPECTED}")
        serial, model = body.get("serial"), body.get("model")
        if (serial is None) == (model is None):
            raise ValueError(f"{path}: target {name!r} needs exactly one of serial/model; {_EXPECTED}")
        if not isinstance(serial or model, str) or not str(serial or model).strip():
            raise ValueError(f"{path}: target {name!r}: serial/model must be a non-empty string; {_EXPECTED}")
        cands = body.get("candidates") or []
        if not isinstance(cands, list) or not all(isinstance(c, str) for c in cands):
            raise ValueError(f"{path}: target {name!r}: candidates must be a list of serials; {_EXPECTED}")
        targets[str(name)] = TargetSpec(str(name), serial=serial, model=model, candidates=tuple(cands))
    return targets


def list_usb_serials() -> list[str]:
    """Serials of adb-capable USB devices, or [] when USB/libusb is unavailable."""
    try:
        from adb_shell.transport.usb_transport import UsbTransport
    except ImportError:
        return []
    if UsbTransport is None:
        return []
    try:
        return [t.serial_number for t in UsbTransport.find_all_adb_devices()]
    except Exception as exc:  # noqa: BLE001 - no libusb, no permission: just none found
        log.debug("USB enumeration failed: %s", exc)
        return []


def _probe(serial: str, keys: Sequence[AdbKey], timeout_s: float) -> DeviceInfo:
    start = time.monotonic()
    dev = Device(serial, keys=keys, connect_timeout_s=timeout_s, auth_timeout_s=timeout_s)
    try:
        props = dev.getprop(timeout_s=timeout_s)
    except AdbAuthError as exc:
        return DeviceInfo(serial, False, str(exc), state="unauthorized")
    except AdbError as exc:
        return DeviceInfo(serial, False, str(exc))
    finally:
        dev.close()
    return DeviceInfo(serial, True, "", state="device", model=props.get("ro.product.model") or None, props=props,
                      latency_ms=round((time.monotonic() - start) * 1000, 1))


def discover(candidates: Sequence[str], timeout_s: float = 3.0, *, keys: Sequence[AdbKey] | None = None,
             max_workers: int = 16) -> list[DeviceInfo]:
    """Probe every candidate serial in parallel (one thread each); results in input order."""
    unique = list(dict.fromkeys(c for c in candidates if c))
    if not unique:
        return []
    keys = list(keys) if keys is not None else load_keys()
    with ThreadPoolExecutor(max_workers=min(max_workers, len(unique)), thread_name_prefix="adb-discover") as pool:
        return list(pool.map(lambda s: _probe(s, keys, timeout_s), unique))


def resolve_target(target: TargetSpec, candidates: Sequence[str] = (), *, timeout_s: float = 3.0,
                   keys: Sequence[AdbKey] | None = None) -> str:
    """The serial of a target: its ``serial``, or the one reachable device whose model matches."""
    if target.serial:
        return target.serial
    pool = list(dict.fromkeys([*target.candidates, *candidates, *list_usb_serials()]))
    infos = discover(pool, timeout_s, keys=keys)
    matches = [i.serial for i in infos if i.reachable and i.model == target.model]
    if len(matches) == 1:
        return matches[0]
    seen = ", ".join(f"{i.serial}={i.model or i.state}" for i in infos) or "none"
    if not matches:
        raise AdbConnectionError(f"target {target.name!r}: no reachable device with model {target.model!r} (seen: {seen})",
                                 advice="connect the device, or give the target a serial in targets.yaml")
    raise AdbConnectionError(f"target {target.name!r}: several devices with model {target.model!r}: {', '.join(matches)}",
                             advice="give the target a serial in targets.yaml, or pass --adb-serial")
