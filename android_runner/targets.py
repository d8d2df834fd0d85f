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


def _yaml_lines(path: Path, text: str):
    """``(data, {(name, key, ...): line})`` of a YAML text; a key given twice in one mapping, or
    text that is not YAML, is a one-line ``ValueError`` with its line."""
    import yaml

    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        pos = f", line {where.line + 1}" if where is not None else ""
        raise ValueError(f"{path}{pos}: not valid YAML; {_EXPECTED}") from None
    lines: dict[tuple, int] = {}

    def walk(node, loc):
        lines.setdefault(loc, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for k, v in node.value:
                if k.value in seen:
                    raise ValueError(f"{path}, line {k.start_mark.line + 1}: key {k.value!r} given twice "
                                     f"(first on line {seen[k.value]}); {_EXPECTED}")
                seen[k.value] = k.start_mark.line + 1
                lines[loc + (k.value,)] = k.start_mark.line + 1
                walk(v, loc + (k.value,))
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                walk(v, loc + (i,))

    if root is not None:
        walk(root, ())
    try:
        return yaml.safe_load(text), lines
    except yaml.YAMLError as exc:  # e.g. a python/object tag: safe_load constructs no objects
        where = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        pos = f", line {where.line + 1}" if where is not None else ""
        raise ValueError(f"{path}{pos}: not plain YAML data ({getattr(exc, 'problem', None) or 'bad tag'}); "
                         f"{_EXPECTED}") from None


def _schema():
    """The pydantic schema of one ``targets.yaml`` entry (built on first use: pydantic loads lazily)."""
    from typing import Optional

    from pydantic import BaseModel, ConfigDict, field_validator, model_validator

    class TargetEntry(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)

        serial: Optional[str] = None
        model: Optional[str] = None
        candidates: list[str] = []

        @field_validator("serial", "model")
        @classmethod
        def _nonempty(cls, v):
            if v is not None and not v.strip():
                raise ValueError("must be a non-empty string")
            return v

        @model_validator(mode="after")
        def _one(self):
            if (self.serial is None) == (self.model is None):
                raise ValueError("needs exactly one of serial/model")
            return self

    return TargetEntry


def load_targets(path: str | Path) -> dict[str, TargetSpec]:
    """Parse ``targets.yaml`` and validate every entry against its schema up front (pydantic).

    Returns:
        ``{name: TargetSpec}`` ({} for an empty file).

    Raises:
        ValueError: one line naming the file, the line, the field and the expected form, e.g.
            ``targets.yaml, line 3: target 'pixel': serial: Input should be a valid string (got 5555)``;
            also for a key given twice, text that is not YAML, or an unreadable file.
    """
    from pydantic import ValidationError

    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc}); {_EXPECTED}") from None
    data, lines = _yaml_lines(path, text)
    if data is None:
        return {}
    prefix: tuple = ()
    if isinstance(data, dict) and set(data) == {"targets"}:
        data, prefix = data["targets"], ("targets",)
    if not isinstance(data, dict):
        raise ValueError(f"{path}, line {lines.get(prefix, 1)}: top level is a {type(data).__name__}; {_EXPECTED}")
    entry = _schema()
    targets: dict[str, TargetSpec] = {}
    for name, body in data.items():
        at = lines.get(prefix + (name,))
        where = f"{path}, line {at}" if at else str(path)
        if not isinstance(body, dict):
            raise ValueError(f"{where}: target {name!r} is {body!r}; {_EXPECTED}")
        try:
            e = entry.model_validate(body)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = tuple(err["loc"])
            line = next((lines[prefix + (name,) + loc[:n]] for n in range(len(loc), -1, -1)
                         if prefix + (name,) + loc[:n] in lines), at)
            field = ".".join(str(x) for x in loc)
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key; expected some of: candidates, model, serial"
            got = "" if err["type"] == "extra_forbidden" else f" (got {err.get('input')!r})"
            raise ValueError(f"{path}, line {line}: target {name!r}: {field + ': ' if field else ''}{msg}{got}; "
                             f"{_EXPECTED}") from None
        targets[str(name)] = TargetSpec(str(name), serial=e.serial, model=e.model, candidates=tuple(e.candidates))
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
