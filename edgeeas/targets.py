"""Targets: a device plus a measurement protocol, and the directory that holds its figures.

``host`` runs ``device_bench/runner.py`` on this machine with the LiteRT interpreter (the
embedded default: no phone needed).  Other kinds register themselves with
:func:`register_target_kind` (the adb kind lives in ``edgeeas.adb_target``) and are chosen by
:func:`resolve_target` from ``--target NAME`` / ``--adb-serial SERIAL``.

Every kind offers the same few operations, so latency tables, the predictor, validation and
regression checks run unchanged on any of them::

    t = resolve_target("host")
    t.measure_many([a.tflite, b.tflite])        -> {path: Measurement}
    t.evaluate(model.tflite, inputs)            -> outputs (the runner's evaluation mode)
    t.fingerprint()                             -> dict (CPU, cores, governor, interpreter ...)
    t.push(folder, "vehicles_1/3ms", files=[...]) -> where it went (deploy/..., or SERIAL:/data/local/tmp/...)
    t.store                                     -> TargetStore: targets/<name>/ and its files
    t.directory                                 -> targets/<name>/ (table, predictor, plots)

A target's folder and every file in it are addressed by :class:`TargetStore` only::

    targets/<name with ':' as '_'>/
        latency.sqlite               the table (edgeeas.latency.LatencyTable)
        predictor.json               the fitted predictor (edgeeas.latency.fit_predictor)
        predicted_vs_measured.png    its error plot
        fingerprint.json             what the last bench measured on
        protocol.json                how it measured
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from .errors import EdgeeasError, EdgeeasUsageError

__all__ = ["Target", "HostTarget", "TargetError", "TargetStore", "register_target_kind", "resolve_target",
           "targets_root", "TARGET_KINDS", "DeviceChoice", "choose_device", "check_store_kind", "env_serial",
           "same_device", "describe_fingerprint", "IDENTITY_FIELDS", "warn_if_other_host"]


class TargetError(EdgeeasError):
    """A target cannot be reached, or its measurements cannot be made (one line)."""


def targets_root() -> Path:
    """Where targets keep their tables: ``$EDGEEAS_TARGETS``, else ``./targets``."""
    return Path(os.environ.get("EDGEEAS_TARGETS") or "targets")


class TargetStore:
    """A target's folder and the files in it: the one place that spells them.

    Args:
        directory: the folder (need not exist yet).
        name: the target's name (default: the folder's name), for messages.

    Example::

        store = TargetStore.named("192.168.1.20:5555")      # targets/192.168.1.20_5555/
        store.table_path                                     # .../latency.sqlite
        store.protocol()                                     # how its figures were measured
    """

    TABLE = "latency.sqlite"
    PREDICTOR = "predictor.json"
    PLOT = "predicted_vs_measured.png"
    FINGERPRINT = "fingerprint.json"
    PROTOCOL = "protocol.json"

    def __init__(self, directory: str | os.PathLike, name: str | None = None):
        self.directory = Path(directory)
        self.name = name or self.directory.name

    def __repr__(self) -> str:
        return f"TargetStore({str(self.directory)!r}, name={self.name!r})"

    @staticmethod
    def folder_name(name: str) -> str:
        """The file-system name of target ``name``: ``':'`` (``host:port`` serials) becomes ``'_'``,
        since it is not welcome in file names everywhere.  Also names ``out/<target>/`` folders."""
        return name.replace(":", "_")

    @classmethod
    def named(cls, name: str, root: str | os.PathLike | None = None) -> "TargetStore":
        """The store of target ``name`` under ``root`` (default :func:`targets_root`)."""
        return cls(Path(root or targets_root()) / cls.folder_name(name), name)

    @classmethod
    def find(cls, name_or_directory: str | os.PathLike, root: str | os.PathLike | None = None) -> "TargetStore":
        """``name_or_directory`` itself when it is a folder holding a predictor or a table, else
        the store of the target of that name (which may not exist: see :meth:`exists`)."""
        d = Path(name_or_directory)
        here = cls(d)
        if d.is_dir() and (here.predictor_path.exists() or here.table_path.exists()):
            return here
        return cls.named(str(name_or_directory), root)

    def _file(name: str, doc: str) -> property:  # noqa: N805 - a helper of the class body
        return property(lambda self: self.directory / name, doc=doc)

    table_path = _file(TABLE, "The latency table, SQLite (:class:`edgeeas.latency.LatencyTable`).")
    predictor_path = _file(PREDICTOR, "The fitted predictor, JSON (:func:`edgeeas.latency.fit_predictor`).")
    plot_path = _file(PLOT, "The predictor's predicted-vs-measured PNG.")
    fingerprint_path = _file(FINGERPRINT, "The last bench's device fingerprint, JSON.")
    protocol_path = _file(PROTOCOL, "The last bench's measurement protocol, JSON.")
    del _file

    def exists(self) -> bool:
        """Whether the folder exists (a target never benched has none)."""
        return self.directory.is_dir()

    def write_setup(self, fingerprint: dict, protocol) -> None:
        """Write ``fingerprint.json`` and ``protocol.json`` (a :class:`device_bench.Protocol`), atomically."""
        write_json(self.fingerprint_path, fingerprint)
        write_json(self.protocol_path, protocol.to_dict())

    def stored_fingerprint(self) -> dict | None:
        """The device fingerprint the target's figures were measured on: ``fingerprint.json``,
        else the predictor's, else the table's first; ``None`` when nothing records one."""
        for path in (self.fingerprint_path, self.predictor_path):
            try:
                d = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if path == self.predictor_path:
                d = d.get("fingerprint") if isinstance(d, dict) else None
            if isinstance(d, dict) and d.get("kind"):
                return d
        if self.table_path.is_file():
            try:
                from .latency import LatencyTable

                fp = LatencyTable(self.table_path).meta().get("fingerprint")
            except Exception:  # noqa: BLE001 - an unreadable table records nothing
                fp = None
            if isinstance(fp, dict) and fp.get("kind"):
                return fp
        return None

    def protocol(self):
        """The measurement protocol of the target's figures: its ``predictor.json``'s, else its
        table's, so validation measures the way the table was measured; the default
        :class:`device_bench.Protocol` when the target has neither or they are unreadable."""
        from device_bench import Protocol

        proto = None
        try:
            pj = json.loads(self.predictor_path.read_text())
        except (OSError, ValueError):
            pj = None
        if isinstance(pj, dict) and isinstance(pj.get("protocol"), dict):
            proto = pj["protocol"]
        elif self.table_path.is_file():
            try:
                from .latency import LatencyTable

                proto = LatencyTable(self.table_path).meta().get("protocol")
            except Exception:  # noqa: BLE001 - an unreadable table just means the default protocol
                proto = None
        if isinstance(proto, dict):
            try:
                return Protocol.from_dict(proto)
            except (TypeError, ValueError):
                pass
        return Protocol()


_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")


class Target(ABC):
    """A device plus a measurement protocol (:class:`device_bench.Protocol`).

    Args:
        name: letters, digits, ``_ - . :``; names the target's folder (:attr:`store`).
        protocol: how to measure (default ``Protocol()``: median of the runner's runs).
        root: where target folders live (default :func:`targets_root`).

    Raises:
        EdgeeasUsageError: a malformed name.
    """

    kind: str = "?"
    #: whether the target runs models on this machine with the host interpreter, so its
    #: outputs are the host's reference outputs (validation skips the second run).
    is_local: bool = False

    def __init__(self, name: str, protocol=None, root: Path | None = None):
        from device_bench import Protocol

        if not _NAME_RE.match(name):
            raise EdgeeasUsageError(f"bad target name {name!r}: use letters, digits, '_', '-', '.', ':'")
        self.name = name
        self.protocol = protocol or Protocol()
        self._root = root

    @property
    def store(self) -> TargetStore:
        """The target's folder and files (table, predictor, plot, fingerprint, protocol)."""
        return TargetStore.named(self.name, self._root)

    @property
    def directory(self) -> Path:
        """``<root>/<name>`` with ':' as '_' (:meth:`TargetStore.folder_name`)."""
        return self.store.directory

    @abstractmethod
    def fingerprint(self) -> dict:
        """What the figures were measured on (stored with every table)."""

    @abstractmethod
    def measure_many(self, paths: Iterable[Path], on_result: Callable | None = None) -> dict:
        """Measure ``.tflite`` files under ``self.protocol``: ``{str(path): Measurement}``.
        ``on_result(path, measurement)`` is called as each result arrives (to commit it)."""

    def measure(self, path: Path):
        """One ``.tflite`` file's :class:`device_bench.Measurement` (ms) under ``self.protocol``."""
        return self.measure_many([path])[str(path)]

    @abstractmethod
    def evaluate(self, model: Path, inputs: np.ndarray) -> np.ndarray:
        """Run ``model`` over every row of ``inputs`` (its input dtype), return the raw outputs."""

    @abstractmethod
    def push(self, local_path: str | os.PathLike, remote_rel: str, *, root: str | os.PathLike | None = None,
             files: Iterable[str] | None = None) -> str:
        """Deliver a file, or a folder's ``files``, to ``<root>/<remote_rel>`` where the target
        runs models, replacing what was there; a reader never sees a half-copied file.

        Args:
            local_path: a file, or a folder (then ``files``, default every file in it).
            remote_rel: the relative POSIX path under ``root``.
            root: the host's local folder (default ``./deploy``) or the device's folder
                (default ``/data/local/tmp/edgeeas``).

        Returns:
            Where it went: a local path, or ``SERIAL:/remote/path``.
        """

    def describe(self) -> str:
        """``"<kind> target '<name>'"`` for messages."""
        return f"{self.kind} target {self.name!r}"


def _push_sources(local_path, files) -> tuple[Path, list[str] | None]:
    """(path, the folder's file names or ``None`` for a single file) of a push."""
    local = Path(local_path)
    if not local.exists():
        raise TargetError(f"cannot push {local}: it does not exist")
    if local.is_dir():
        names = list(files) if files is not None else sorted(p.name for p in local.iterdir() if p.is_file())
        return local, names
    if files is not None:
        raise EdgeeasUsageError(f"files= applies to a folder, and {local} is a file")
    return local, None


def measure_in_passes(keys: list[str], chunk: int, passes: int, measure_chunk: Callable[[list[str]], dict],
                      on_result: Callable | None = None) -> dict:
    """Measure ``keys`` chunk by chunk, each chunk in ``passes`` sweeps (``measure_chunk(part)``
    -> ``{key: Measurement}``, one runner process per sweep), combined by their median
    (:func:`device_bench.combine_passes`). ``on_result`` gets each combined figure as its chunk
    ends, so a kill loses at most one chunk."""
    from device_bench import combine_passes

    order = list(dict.fromkeys(keys))
    out: dict = {}
    for i in range(0, len(order), chunk):
        part = order[i:i + chunk]
        sweeps = [measure_chunk(part) for _ in range(passes)]
        for k in part:
            out[k] = combine_passes([s[k] for s in sweeps])
            if on_result:
                on_result(k, out[k])
    return out


TARGET_KINDS: dict[str, type[Target]] = {}


def register_target_kind(kind: str):
    """Class decorator: register a :class:`Target` subclass as ``kind`` (sets ``cls.kind``), so
    :func:`resolve_target` can build it."""
    def deco(cls):
        cls.kind = kind
        TARGET_KINDS[kind] = cls
        return cls
    return deco


@register_target_kind("host")
class HostTarget(Target):
    """This machine, through the very runner that is pushed to devices.

    Measures with ``device_bench/runner.py`` and the LiteRT interpreter in a subprocess
    (:func:`device_bench.measure_many_host`); ``push`` copies into a local folder (``./deploy``).
    """

    is_local = True
    DEPLOY_DIR = "deploy"

    def __init__(self, name: str = "host", protocol=None, root: Path | None = None):
        super().__init__(name, protocol, root)

    def push(self, local_path, remote_rel: str, *, root=None, files=None) -> str:
        """Copy into ``<root or ./deploy>/<remote_rel>``: a folder's ``files`` into a fresh folder
        renamed into place (replacing the old one), a file through a temporary beside it.
        Returns the local path."""
        from .utils import mkdtemp_beside

        local, names = _push_sources(local_path, files)
        dest = Path(root or self.DEPLOY_DIR) / remote_rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if names is None:
            tmp = dest.with_name(f".{dest.name}.part")
            try:
                shutil.copy2(local, tmp)
                os.replace(tmp, dest)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            return str(dest)
        tmp = mkdtemp_beside(dest)
        try:
            for f in names:
                shutil.copy2(local / f, tmp / f)
            if dest.exists():
                shutil.rmtree(dest)
            os.rename(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return str(dest)

    def fingerprint(self) -> dict:
        """``{"kind": "host", CPU, cores, governor, interpreter and its version, ...}``."""
        from device_bench import host_fingerprint

        return {"kind": "host", **host_fingerprint()}

    def measure_many(self, paths: Iterable[Path], on_result: Callable | None = None, chunk: int = 8) -> dict:
        """``{str(path): Measurement}`` (ms) under ``self.protocol``: ``chunk`` models per runner
        process, ``protocol.passes`` sweeps combined by their median; :class:`TargetError` when
        the runner fails."""
        from device_bench import RunnerError, measure_many_host

        def sweep(part: list[str]) -> dict:
            # One runner process per sweep of a chunk: the interpreter import is amortised over the
            # chunk, and a process start (~0.5 s) plus the chunk's runs separate its sweeps in time
            # (see device_bench.protocol on passes).
            try:
                return measure_many_host(part, self.protocol)
            except RunnerError as e:
                raise TargetError(f"host measurement failed: {e}") from None

        return measure_in_passes([str(p) for p in paths], chunk, self.protocol.passes, sweep, on_result)

    def evaluate(self, model: Path, inputs: np.ndarray) -> np.ndarray:
        """Raw outputs ``[N, ...]`` of ``model`` over ``inputs`` ``[N, ...]`` (its input dtype), by
        the runner's evaluation mode in a subprocess; :class:`TargetError` when it fails."""
        from device_bench import RUNNER_PATH

        with tempfile.TemporaryDirectory(prefix="edgeeas-eval-") as tmp:
            inp, outp = Path(tmp) / "inputs.npy", Path(tmp) / "outputs.npy"
            np.save(inp, inputs)
            cmd = [sys.executable, str(RUNNER_PATH), f"--graph={model}", f"--eval_input={inp}",
                   f"--eval_output={outp}", f"--num_threads={self.protocol.threads}",
                   f"--use_xnnpack={'true' if self.protocol.use_xnnpack else 'false'}"]
            proc = subprocess.run(cmd, capture_output=True, text=True,
                                  env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
            if proc.returncode != 0:
                err = [ln for ln in proc.stderr.splitlines() if ln.strip()]
                raise TargetError(f"evaluating {model} on the host failed: {err[-1] if err else 'no output'}")
            return np.load(outp)


def env_serial() -> str | None:
    """``$ANDROID_SERIAL`` (stripped), or ``None`` when unset or blank: adb's default device."""
    return os.environ.get("ANDROID_SERIAL", "").strip() or None


#: The fingerprint fields that say *which* device measured a figure (not how it was set up):
#: two fingerprints of one kind that differ in one of these come from different devices.  An
#: adb device is known by its hardware serial (``ro.serialno``, the same over USB and TCP), else
#: by its adb serial.
IDENTITY_FIELDS = {"host": ("cpu_model", "cpu_isa", "machine", "cores"),
                   "adb": ("serialno", "manufacturer", "model", "device", "abi")}


def describe_fingerprint(fp: dict | None) -> str:
    """A device fingerprint in a few words: ``host 'Intel Xeon ...' (2 cores)``,
    ``adb device 192.168.1.20:5555 (Google Pixel 7, serialno 1A2B)``."""
    if not fp:
        return "an unrecorded device"
    if fp.get("kind") == "host":
        return f"host {fp.get('cpu_model')!r} ({fp.get('cores')} cores, {fp.get('machine')})"
    if fp.get("kind") == "adb":
        what = " ".join(str(fp[k]) for k in ("manufacturer", "model") if fp.get(k)) or "unknown model"
        sn = f", serialno {fp['serialno']}" if fp.get("serialno") else ""
        return f"adb device {fp.get('serial')} ({what}{sn})"
    return f"a {fp.get('kind') or 'unknown'} device"


def same_device(a: dict | None, b: dict | None) -> bool:
    """Whether two fingerprints come from one device: same ``kind`` and no differing
    :data:`IDENTITY_FIELDS` (a field missing on either side is not compared; adb devices without a
    ``serialno`` on both sides are compared by adb serial).  An empty fingerprint matches anything."""
    if not a or not b:
        return True
    if a.get("kind") != b.get("kind"):
        return False
    fields = list(IDENTITY_FIELDS.get(a.get("kind"), ()))
    if a.get("kind") == "adb" and not (a.get("serialno") and b.get("serialno")):
        fields.append("serial")
    return all(a.get(k) is None or b.get(k) is None or a.get(k) == b.get(k) for k in fields)


class DeviceChoice:
    """Which device a command will use, decided without connecting (:func:`choose_device`).

    Attributes:
        kind: ``"host"`` or ``"adb"``.
        name: the target's name (its folder ``targets/<name>/``).
        serial: the adb serial (``None`` for the host, or for a ``targets.yaml`` model-string entry
            until :func:`resolve_target` finds the device).
        source: what chose the device, for messages: ``--adb-serial``, ``ANDROID_SERIAL``,
            ``targets.yaml``, ``targets/<name>/fingerprint.json``, ``--target``, ``default``.
        spec: the ``targets.yaml`` entry (:class:`android_runner.TargetSpec`) when one was used.
        note: appended to the first connection error (a name taken as a serial).
    """

    def __init__(self, kind: str, name: str, serial: str | None = None, source: str = "default",
                 spec=None, note: str = ""):
        self.kind, self.name, self.serial, self.source, self.spec, self.note = kind, name, serial, source, spec, note

    def __repr__(self) -> str:
        return f"DeviceChoice({self.kind!r}, {self.name!r}, serial={self.serial!r}, source={self.source!r})"

    def describe(self) -> str:
        """``the host`` or ``adb device SERIAL (from SOURCE)``."""
        if self.kind == "host":
            return "the host"
        return f"adb device {self.serial or self.spec.model!r} (from {self.source})"


def choose_device(name: str | None = None, *, adb_serial: str | None = None, targets_file=None,
                  root: str | os.PathLike | None = None, use_env: bool = True, want_adb: bool = False) -> DeviceChoice:
    """The one rule that turns ``--target`` / ``--adb-serial`` / ``$ANDROID_SERIAL`` into a device.

    adb's convention, with the host as the embedded default:

    1. ``--adb-serial SERIAL``: that adb device (named ``name``, else its ``targets.yaml`` name,
       else the serial).  ``--target host --adb-serial S`` is device S, named after itself.
    2. ``--target host``: the host.
    3. ``--target NAME`` in ``targets.yaml``: its device (by serial, or by model string).
    4. ``--target NAME`` whose folder ``targets/NAME/`` records its device: an adb table runs on
       ``$ANDROID_SERIAL`` when set (``use_env``), else on its recorded serial; a host table on
       the host, unless ``$ANDROID_SERIAL`` is set: then it is that device, exactly as
       ``--adb-serial`` would be, and :func:`check_store_kind` refuses the mix.
    5. any other ``--target NAME``: an adb serial (explicit wins over ``$ANDROID_SERIAL``).
    6. no name: ``$ANDROID_SERIAL`` (``use_env``), named after its ``targets.yaml`` name or itself;
       else the host; or, with ``want_adb``, the only device of ``targets.yaml``
       (:func:`android_runner.select_serial`).

    Raises:
        EdgeeasUsageError: a malformed ``targets.yaml``.
        AdbConnectionError: ``want_adb`` and no or several candidate devices.
    """
    env = env_serial() if use_env else None
    if name == "host" and adb_serial:
        name = None
    if name == "host":
        return DeviceChoice("host", "host", source="--target")
    specs: dict = {}
    path = None
    if adb_serial or name or env or want_adb:
        from .adb_target import load_target_specs

        path, specs = load_target_specs(targets_file)

    def named(serial: str) -> str:
        return name or next((n for n, s in specs.items() if s.serial == serial), serial)

    if adb_serial:
        return DeviceChoice("adb", named(adb_serial), adb_serial, "--adb-serial")
    if name and name in specs:
        spec = specs[name]
        return DeviceChoice("adb", name, spec.serial, "targets.yaml", spec=spec)
    if name:
        store = TargetStore.named(name, root)
        fp = store.stored_fingerprint()
        if fp and fp.get("kind") == "host":
            if env:  # the adb convention picks device `env`: refused by check_store_kind
                return DeviceChoice("adb", name, env, "ANDROID_SERIAL")
            return DeviceChoice("host", name, source=str(store.fingerprint_path))
        if fp and fp.get("kind") == "adb" and (env or fp.get("serial")):
            return (DeviceChoice("adb", name, env, "ANDROID_SERIAL") if env
                    else DeviceChoice("adb", name, str(fp["serial"]), str(store.fingerprint_path)))
        from android_runner import parse_serial

        note = ""
        if parse_serial(name)[0] == "usb":
            known = ", ".join(specs) or "none"
            note = (f"{name!r} is not a name in {path or 'targets.yaml (none found)'} (names: {known}) nor a "
                    f"benched target, so it was taken as a USB serial"
                    + (f"; ANDROID_SERIAL={env} does not apply when --target names a device (use --name "
                       f"{name} to name its table)" if env else ""))
        return DeviceChoice("adb", name, name, "--target", note=note)
    if env:
        return DeviceChoice("adb", named(env), env, "ANDROID_SERIAL")
    if want_adb:
        from android_runner import select_serial

        serial = select_serial(None, [s.serial for s in specs.values() if s.serial])
        return DeviceChoice("adb", named(serial), serial, "targets.yaml")
    return DeviceChoice("host", "host")


_WARNED_OTHER_HOST: set[str] = set()  # target folders already checked by warn_if_other_host


def warn_if_other_host(store: "TargetStore") -> bool:
    """Warn (stderr, one line, once per process and target) when a host target's figures were
    measured on another host (:data:`IDENTITY_FIELDS`: CPU model, SIMD features, cores): its
    latency predictions are then that host's, not this one's (two ``AMD EPYC`` hosts with other
    SIMD features measured 2.1-2.3x apart here).  Called where predictions are used
    (:func:`edgeeas.search.load_cost`).  Returns whether it warned."""
    if str(store.directory) in _WARNED_OTHER_HOST:
        return False
    _WARNED_OTHER_HOST.add(str(store.directory))  # checked once per process and target
    fp = store.stored_fingerprint()
    if not fp or fp.get("kind") != "host":
        return False
    from device_bench.protocol import host_fingerprint

    here = dict(host_fingerprint(), kind="host")
    if same_device(fp, here):
        return False
    differ = [k for k in IDENTITY_FIELDS["host"] if fp.get(k) is not None and fp.get(k) != here.get(k)]
    print(f"warning: target {store.name!r} was measured on another host ({', '.join(differ)} differ: "
          f"{describe_fingerprint(fp)}); its latencies predict that host, not this one: "
          f"`edgeeas bench --target {store.name} --force` measures this host", file=sys.stderr)
    return True


def check_store_kind(store: "TargetStore", kind: str, used: str) -> None:
    """Refuse to use a target's figures on a device of another kind.

    Args:
        store: the target's folder; its recorded fingerprint (:meth:`TargetStore.stored_fingerprint`)
            says which kind of device measured it (nothing is checked when it records none).
        kind: ``"host"`` or ``"adb"``, the device about to be used.
        used: that device in words (``DeviceChoice.describe()``).

    Raises:
        TargetError: the kinds differ (one line naming both and what to do).
    """
    fp = store.stored_fingerprint()
    if not fp or not fp.get("kind") or fp.get("kind") == kind:
        return
    raise TargetError(f"target {store.name!r} ({store.directory}) holds figures measured on "
                      f"{describe_fingerprint(fp)}, but this would run on {used}: its table and budgets do not "
                      f"apply there; name another target (--target/--name) or select the device it was measured on"
                      + (" (unset ANDROID_SERIAL for the host)" if "ANDROID_SERIAL" in used else ""))


def resolve_target(name: str | None = None, *, adb_serial: str | None = None, targets_file: str | None = None,
                   protocol=None, use_env: bool = True, check_store: bool = True, **kwargs) -> Target:
    """The :class:`Target` of ``--target NAME`` / ``--adb-serial SERIAL`` / ``$ANDROID_SERIAL``
    (the rule is :func:`choose_device`), checked against what its folder records
    (:func:`check_store_kind`).

    Args:
        name, adb_serial, targets_file: as on the command line.
        protocol: the measurement protocol (default ``Protocol()``).
        use_env: honour ``$ANDROID_SERIAL`` (a farm lists its devices explicitly: ``False``).
        check_store: refuse a device of another kind than the target's recorded figures.
        kwargs: ``root`` (targets root) for every kind; the rest (``benchmark_binary``, ``chunk``,
            ``python``, ``keys``, ``command_timeout_s``) for adb targets; ``None`` values are dropped.

    Raises:
        EdgeeasUsageError: adb-only options on the host, a malformed name or ``targets.yaml``.
        TargetError: adb unavailable here, or a device of the wrong kind for the target's figures.
    """
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    root = kwargs.pop("root", None)
    choice = choose_device(name, adb_serial=adb_serial, targets_file=targets_file, root=root, use_env=use_env)
    if choice.kind == "host":
        if kwargs:
            raise EdgeeasUsageError(f"{', '.join('--' + k.replace('_', '-') for k in sorted(kwargs))} "
                                    f"applies to adb targets only, not to the host target")
        t: Target = HostTarget(choice.name, protocol=protocol, root=root)
    else:
        if "adb" not in TARGET_KINDS:
            try:
                import edgeeas.adb_target  # noqa: F401  (registers the adb kind)
            except ImportError as e:
                raise TargetError(f"adb targets are unavailable here ({e})") from None
        t = TARGET_KINDS["adb"].from_choice(choice, protocol=protocol, targets_file=targets_file, root=root,
                                            **kwargs)
    if check_store:
        check_store_kind(t.store, t.kind, choice.describe())
    return t


def write_json(path: Path, obj) -> None:
    """``obj`` as indented, key-sorted JSON (``str`` for what JSON cannot hold), written atomically."""
    from .utils import atomic_write_text

    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
