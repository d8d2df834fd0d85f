"""The adb target: a phone (or any adb device with Python + LiteRT) measured over adb.

    from edgeeas.targets import resolve_target
    t = resolve_target("pixel")                      # targets.yaml name, or a serial
    t = resolve_target(adb_serial="192.168.1.20:5555", benchmark_binary="benchmark_model")
    t.measure_many([a, b], on_result=commit_row)     -> {str(path): Measurement}
    t.evaluate(model, int8_inputs)                   -> raw outputs, bit-identical to the host's
    t.fingerprint()                                  -> model, SoC, ABI, cores, governor, temperature, runner

What lands on the device (every path below is passed through ``shlex.quote``)::

    /data/local/tmp/edgeeas/runner.py              device_bench/runner.py, re-pushed only when its sha256 differs
    /data/local/tmp/edgeeas/runner.py.sha256       its hash, for devices without `sha256sum`
    /data/local/tmp/edgeeas/models/<sha256:16>/NAME  each model once per content (pushed as .part, then `mv`)
    /data/local/tmp/edgeeas/eval/<nonce>/          evaluation tensors (removed afterwards)
    /data/local/tmp/benchmark_model                the official binary, with --benchmark-binary

A connection that drops mid-push or mid-evaluation leaves a ``.part`` file or an
``eval/<nonce>/`` folder behind; the first use of a device by a process removes those older
than :data:`STALE_MINUTES` (a live push or evaluation of another process is younger).

Measuring runs ``python3 runner.py --graphs=a,b,... <protocol flags>`` in chunks (one
interpreter start per chunk) and reads it with :func:`device_bench.parse_many`; with a
benchmark binary, the binary runs once per graph with the same flags and is read by
:func:`device_bench.parse_benchmark_output`.  The protocol's re-measure rule applies
as on the host.  Every remote command is logged (logger ``android_runner``, level INFO)
as the ``adb -s SERIAL shell ...`` line that repeats it by hand, and stored in
``Measurement.command``.

Faults: a device that vanishes raises :class:`android_runner.AdbConnectionError` (one
line; results already handed to ``on_result`` stay with the caller, and
:func:`edgeeas.regress.run_on_devices` retries it); a full disk raises
:class:`android_runner.DeviceFull`; a runner failure raises :class:`TargetError` with
the command that reproduces it.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import posixpath
import re
import secrets
import shlex
import tempfile
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from .errors import EdgeeasUsageError
from .targets import Target, TargetError, _push_sources, measure_in_passes, register_target_kind
from .utils import sha256_file

__all__ = ["AdbTarget", "REMOTE_DIR", "REMOTE_BINARY", "STALE_MINUTES", "find_targets_file"]

log = logging.getLogger(__name__)

REMOTE_DIR = "/data/local/tmp/edgeeas"
REMOTE_BINARY = "/data/local/tmp/benchmark_model"
# Leftovers of a dropped connection (``*.part`` under REMOTE_DIR, ``eval/<nonce>/``) older than
# this are removed on a process's first use of the device.  A push times out after
# max(60 s, 1 s/MB) and an evaluation after 300 s + 0.1 s/image, so no live one is this old.
STALE_MINUTES = 120
_NO_SPACE = re.compile(r"no space left on device|ENOSPC", re.I)
# A remote model keeps its file name (so logs and `ls` stay readable) unless the name cannot
# travel inside the runner's comma-separated --graphs list or one output line.
_UNSAFE_NAME = re.compile(r"[,\n\r\0/]")




def find_targets_file(targets_file: str | os.PathLike | None = None) -> Path | None:
    """``targets_file``, else ``$EDGEEAS_TARGETS_FILE``, else ``./targets.yaml`` if it exists."""
    if targets_file:
        p = Path(targets_file)
        if not p.exists():
            raise EdgeeasUsageError(f"targets file {p} does not exist")
        return p
    env = os.environ.get("EDGEEAS_TARGETS_FILE")
    if env:
        p = Path(env)
        if not p.exists():
            raise EdgeeasUsageError(f"EDGEEAS_TARGETS_FILE={env} does not exist")
        return p
    p = Path("targets.yaml")
    return p if p.exists() else None


def load_target_specs(targets_file=None) -> tuple[Path | None, dict]:
    """(file, {name: android_runner.TargetSpec}); a malformed file is a one-line usage error."""
    from android_runner import load_targets

    path = find_targets_file(targets_file)
    if path is None:
        return None, {}
    try:
        return path, load_targets(path)
    except ValueError as e:
        raise EdgeeasUsageError(str(e)) from None


@register_target_kind("adb")
class AdbTarget(Target):
    """One adb device (USB serial or ``host:port``) plus a measurement protocol.

    Args:
        name: the target's name (its folder, :attr:`store`); serial: the adb serial.
        benchmark_binary: measure with the official ``benchmark_model`` (pushed once) instead
            of ``runner.py`` under the device's Python.
        chunk: models per runner process (one interpreter start per chunk).
        python: the device's Python; keys: adb keys (default ``~/.android/adbkey``).
        command_timeout_s: a fixed timeout per remote command (default: from the protocol).
        device: an :class:`android_runner.Device` already connected (tests).
        note: appended to the first connection error (e.g. "not in targets.yaml").

    Raises:
        EdgeeasUsageError: ``chunk < 1``, or a benchmark binary that does not exist.
    """

    def __init__(self, name: str, serial: str, protocol=None, root: Path | None = None, *,
                 benchmark_binary: str | os.PathLike | None = None, chunk: int = 8, python: str = "python3",
                 keys=None, command_timeout_s: float | None = None, device=None, note: str = ""):
        super().__init__(name, protocol, root)
        from android_runner import Device

        if chunk < 1:
            raise EdgeeasUsageError(f"chunk must be >= 1, got {chunk!r}")
        self.serial = serial
        self.chunk = chunk
        self.python = python
        self.command_timeout_s = command_timeout_s
        self.benchmark_binary = Path(benchmark_binary) if benchmark_binary else None
        if self.benchmark_binary is not None and not self.benchmark_binary.is_file():
            raise EdgeeasUsageError(f"benchmark binary {self.benchmark_binary} does not exist "
                                    "(give the Android build of TFLite's benchmark_model)")
        self.device = device or Device(serial, keys=keys)
        self._note = note                # appended to the first connection error (e.g. "not in targets.yaml")
        self._runner_ready = False
        self._binary_hash: str | None = None
        self._pushed: set[tuple[str, str]] = set()  # (sha, remote) known to be on the device
        self._swept = False

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def resolve(cls, name: str | None = None, adb_serial: str | None = None, targets_file=None, protocol=None,
                benchmark_binary=None, **kw) -> "AdbTarget":
        """``--target NAME`` and/or ``--adb-serial SERIAL``, by the one device rule
        (:func:`edgeeas.targets.choose_device`: ``--adb-serial``, a ``targets.yaml`` name, a
        benched target's recorded device, ``$ANDROID_SERIAL``, else the only known device).

        The target's name (its table directory) is the explicit name, else the
        ``targets.yaml`` name of that serial, else the serial.  Extra keywords go to
        the constructor (``chunk``, ``python``, ``keys``, ``command_timeout_s``, ``root``).

        Raises:
            EdgeeasUsageError: the rule picks the host (``name`` is a host table).
        """
        from .targets import choose_device

        choice = choose_device(name, adb_serial=adb_serial, targets_file=targets_file, root=kw.get("root"),
                               want_adb=True)
        if choice.kind != "adb":
            raise EdgeeasUsageError(f"target {choice.name!r} is the host's, not an adb device's")
        return cls.from_choice(choice, protocol=protocol, benchmark_binary=benchmark_binary, **kw)

    @classmethod
    def from_choice(cls, choice, protocol=None, targets_file=None, benchmark_binary=None, **kw) -> "AdbTarget":
        """The target of an adb :class:`edgeeas.targets.DeviceChoice`; a ``targets.yaml`` entry
        given by model string is looked up among reachable devices here."""
        from android_runner import resolve_target as resolve_spec

        serial = choice.serial
        if serial is None and choice.spec is not None:
            serial = resolve_spec(choice.spec)
        return cls(choice.name, serial, protocol, benchmark_binary=benchmark_binary, note=choice.note, **kw)

    def describe(self) -> str:
        """``"adb target '<name>' (<serial>)"`` for messages."""
        return f"adb target {self.name!r} ({self.serial})"

    def push(self, local_path, remote_rel: str, *, root=None, files=None) -> str:
        """Push to ``<root or /data/local/tmp/edgeeas>/<remote_rel>`` on the device: a file, or
        a folder's ``files`` into that remote folder (``mkdir -p``), each as ``.part`` then ``mv``.

        Returns:
            ``SERIAL:/remote/path``.

        Raises:
            DeviceFull: no space left (the ``.part`` is removed); AdbConnectionError: the device went away.
        """
        local, names = _push_sources(local_path, files)
        remote = f"{root or REMOTE_DIR}/{remote_rel}"
        self.sweep_stale()
        if names is None:
            self._check_space(self._shell(["mkdir", "-p", posixpath.dirname(remote)], check=False)).check()
            self._push_atomic(local, remote)
        else:
            self._check_space(self._shell(["mkdir", "-p", remote], check=False)).check()
            for f in names:
                self._push_atomic(local / f, f"{remote}/{f}")
        return f"{self.serial}:{remote}"

    # -- device plumbing ------------------------------------------------------------------------
    def _shell(self, cmd, timeout_s: float = 60.0, *, check: bool = True):
        from android_runner import AdbConnectionError

        try:
            return self.device.shell(cmd, timeout_s, check=check)
        except AdbConnectionError as e:
            if self._note:
                note, self._note = self._note, ""
                raise type(e)(f"{e.detail} ({note})", serial=self.serial, advice=e.advice) from None
            raise

    def sweep_stale(self) -> list[str]:
        """Remove what dropped connections left under ``/data/local/tmp/edgeeas`` (``*.part``
        files and ``eval/<nonce>/`` folders older than :data:`STALE_MINUTES`); once per target
        object, from :meth:`push` and :meth:`push_models` (which measuring and evaluation start with).  Returns the removed device paths (also logged).  Uses
        ``find -mmin`` and ``rm``, which toybox (Android), busybox and GNU all have."""
        if self._swept:
            return []
        self._swept = True
        q = shlex.quote(REMOTE_DIR)
        m = f"+{STALE_MINUTES}"
        res = self._shell(f"[ -d {q} ] || exit 0; cd {q} || exit 0; "
                          f"{{ find . -type f -name '*.part' -mmin {m}; "
                          f"[ -d eval ] && find eval -mindepth 1 -maxdepth 1 -type d -mmin {m}; }} 2>/dev/null "
                          f"| while IFS= read -r f; do rm -rf -- \"$f\" && echo \"$f\"; done; true", check=False)
        gone = [posixpath.normpath(posixpath.join(REMOTE_DIR, ln)) for ln in res.stdout.splitlines() if ln.strip()]
        if gone:
            log.info("%s: removed %d stale file(s) of a dropped connection: %s", self.serial, len(gone),
                     ", ".join(gone[:5]) + (" ..." if len(gone) > 5 else ""))
        return gone

    def _remote_hash(self, remote: str) -> str | None:
        """sha256 of a remote file: ``sha256sum`` where the device has it, else our stamp file."""
        q, stamp = shlex.quote(remote), shlex.quote(remote + ".sha256")
        res = self._shell(f"if [ -f {q} ]; then if command -v sha256sum >/dev/null 2>&1; then sha256sum {q}; "
                          f"else cat {stamp}; fi; fi", check=False)
        token = res.stdout.split()[0] if res.stdout.split() else ""
        return token if re.fullmatch(r"[0-9a-f]{64}", token) else None

    def _push_atomic(self, local: Path, remote: str, *, mode_x: bool = False, stamp: str | None = None) -> None:
        """Push to ``remote.part`` then ``mv`` it into place, so a present file is always complete."""
        from android_runner import DeviceFull

        part = remote + ".part"
        try:
            self.device.push(local, part, timeout_s=max(60.0, local.stat().st_size / 1e6))
        except DeviceFull:
            self._shell(["rm", "-f", "--", part], check=False)
            raise
        cmd = f"mv -f {shlex.quote(part)} {shlex.quote(remote)}"
        if mode_x:
            cmd += f" && chmod 755 {shlex.quote(remote)}"
        if stamp:
            cmd += f" && printf '%s\\n' {shlex.quote(stamp)} > {shlex.quote(remote + '.sha256')}"
        self._check_space(self._shell(cmd, check=False)).check()

    def _check_space(self, res):
        from android_runner import DeviceFull

        if res.exit_code != 0 and _NO_SPACE.search(res.stderr + res.stdout):
            raise DeviceFull(f"`{res.command[:120]}` failed: {res.stderr_tail()}", serial=self.serial,
                             advice="free space on the device, e.g. remove old files under /data/local/tmp/edgeeas")
        return res

    def ensure_runner(self) -> str:
        """Push runner.py unless the device already holds this exact version; return its remote path."""
        from device_bench import RUNNER_PATH

        remote = f"{REMOTE_DIR}/runner.py"
        if not self._runner_ready:
            want = sha256_file(RUNNER_PATH)
            if self._remote_hash(remote) != want:
                self._shell(["mkdir", "-p", REMOTE_DIR])
                self._push_atomic(RUNNER_PATH, remote, stamp=want)
            self._runner_ready = True
        return remote

    def ensure_binary(self) -> str:
        """Push the official benchmark_model binary (once per content) and make it executable."""
        if self._binary_hash is None:
            want = sha256_file(self.benchmark_binary)
            if self._remote_hash(REMOTE_BINARY) != want:
                self._push_atomic(self.benchmark_binary, REMOTE_BINARY, mode_x=True, stamp=want)
            self._binary_hash = want
        return REMOTE_BINARY

    def remote_model_path(self, local: Path, sha: str) -> str:
        """``/data/local/tmp/edgeeas/models/<sha[:16]>/<name>`` (``model.tflite`` for a name that
        cannot travel in a ``--graphs`` list)."""
        name = local.name if not _UNSAFE_NAME.search(local.name) and local.name not in (".", "..") else "model.tflite"
        return posixpath.join(REMOTE_DIR, "models", sha[:16], name)

    def push_models(self, paths: list[Path]) -> dict[str, str]:
        """{str(local): remote}; pushes only what the device does not hold yet (one check per batch)."""
        self.sweep_stale()
        wanted: dict[str, tuple[str, str]] = {}
        for p in paths:
            if not p.is_file():
                raise TargetError(f"model {p} does not exist")
            sha = sha256_file(p)
            wanted[str(p)] = (sha, self.remote_model_path(p, sha))
        todo = [(l, r) for l, (sha, r) in wanted.items() if (sha, r) not in self._pushed]
        if todo:
            listing = " ".join(shlex.quote(r) for _, r in todo)
            # answer with indexes, not paths: a device may spell the paths differently (symlinks)
            res = self._shell(f"i=0; for f in {listing}; do [ -f \"$f\" ] && echo $i; i=$((i+1)); done; true")
            present = {int(t) for t in res.stdout.split() if t.isdigit()}
            missing = [lr for i, lr in enumerate(todo) if i not in present]
            if missing:
                dirs = sorted({posixpath.dirname(r) for _, r in missing})
                self._check_space(self._shell(["mkdir", "-p", *dirs], check=False)).check()
                for l, r in missing:
                    self._push_atomic(Path(l), r)
            for l, r in todo:
                self._pushed.add((wanted[l][0], r))
        return {l: r for l, (_, r) in wanted.items()}

    def _timeout(self, n_graphs: int) -> float:
        if self.command_timeout_s:
            return self.command_timeout_s
        p = self.protocol
        return 120.0 + n_graphs * (60.0 + p.min_secs + p.warmup_min_secs + 0.2 * (p.num_runs + p.warmup_runs))

    def _adb_line(self, command: str) -> str:
        return f"adb -s {self.serial} shell {shlex.quote(command)}"

    # -- measuring ------------------------------------------------------------------------------
    def measure_many(self, paths: Iterable[Path], on_result: Callable | None = None) -> dict:
        """Push what the device lacks, then measure in chunks and ``protocol.passes`` sweeps:
        ``{str(path): Measurement}`` (ms), each handed to ``on_result`` as its chunk ends.
        Raises :class:`TargetError` (with the ``adb -s ... shell`` line that reproduces it),
        ``DeviceFull`` or ``AdbConnectionError``."""
        given = list(paths)
        locals_ = [Path(p) for p in given]
        keys = [str(p) for p in given]
        if not locals_:
            return {}
        remote = self.push_models(locals_)
        if self.benchmark_binary is None:
            self.ensure_runner()
        else:
            self.ensure_binary()

        def sweep(part: list[str]) -> dict:
            if self.benchmark_binary is None:
                return self._measure_chunk_runner(part, remote)
            return self._measure_chunk_binary(part, remote)

        return measure_in_passes(keys, self.chunk, self.protocol.passes, sweep, on_result)

    def _runner_command(self, graphs: list[str]) -> str:
        argv = [self.python, f"{REMOTE_DIR}/runner.py", f"--graphs={','.join(graphs)}", *self.protocol.runner_args()]
        return shlex.join(argv)

    def _fail_run(self, res, what: str):
        self._check_space(res)
        tail = res.stderr_tail() or (res.stdout.strip().splitlines() or ["no output"])[-1]
        raise TargetError(f"{self.serial}: {what} failed (exit {res.exit_code}): {tail} "
                          f"(reproduce with: {self._adb_line(res.command)})")

    def _measure_chunk_runner(self, keys: list[str], remote: dict[str, str]) -> dict:
        from device_bench import BenchmarkParseError, parse_many
        from device_bench.protocol import _measurement, _spread

        protocol = self.protocol
        best: dict = {}
        spreads: dict[str, list[float]] = {k: [] for k in keys}
        todo = list(keys)
        commands: dict[str, str] = {}
        for _ in range(1 + protocol.max_remeasure):
            if not todo:
                break
            graphs = list(dict.fromkeys(remote[k] for k in todo))
            command = self._runner_command(graphs)
            res = self._shell(command, self._timeout(len(graphs)), check=False)
            try:
                parsed = parse_many(res.stdout)
            except BenchmarkParseError as e:
                if res.exit_code != 0:
                    self._fail_run(res, "runner")
                raise TargetError(f"{self.serial}: {e} (reproduce with: {self._adb_line(command)})") from None
            if res.exit_code != 0:
                self._fail_run(res, "runner")
            by_remote = _match_graphs(graphs, parsed)
            missing = [g for g in graphs if g not in by_remote]
            if missing:
                raise TargetError(f"{self.serial}: runner printed no result for {missing} "
                                  f"(reproduce with: {self._adb_line(command)})")
            next_todo = []
            for k in todo:
                r = by_remote[remote[k]]
                spreads[k].append(_spread(r))
                if k not in best or spreads[k][-1] < _spread(best[k]):
                    best[k] = r
                    commands[k] = self._adb_line(command)
                if spreads[k][-1] > protocol.max_spread:
                    next_todo.append(k)
            todo = next_todo
        try:
            return {k: _measurement(best[k], k, protocol, spreads[k], commands[k]) for k in keys}
        except Exception as e:  # RunnerError: the protocol pins another interpreter
            raise TargetError(f"{self.serial}: {e}") from None

    def _binary_command(self, graph: str) -> str:
        p = self.protocol
        argv = [REMOTE_BINARY, f"--graph={graph}", f"--num_threads={p.threads}", f"--warmup_runs={p.warmup_runs}",
                f"--num_runs={p.num_runs}", f"--min_secs={p.min_secs:g}", f"--warmup_min_secs={p.warmup_min_secs:g}",
                f"--use_xnnpack={'true' if p.use_xnnpack else 'false'}"]
        if p.cpu_mask is not None:  # the binary has no affinity flag: toybox taskset does it
            argv = ["taskset", p.cpu_mask.lower().removeprefix("0x"), *argv]
        return shlex.join(argv)

    def _measure_chunk_binary(self, keys: list[str], remote: dict[str, str]) -> dict:
        """The official binary prints no per-run times: the median is its ``median=`` field (newer
        builds) or else the average, and p90 is estimated as median + 1.2816 std (normal
        approximation).  Both choices are recorded in ``protocol.runner_version``."""
        from device_bench import BenchmarkParseError, Measurement, parse_benchmark_output

        protocol = self.protocol
        out = {}
        for k in keys:
            command = self._binary_command(remote[k])
            attempts = []
            for _ in range(1 + protocol.max_remeasure):
                res = self._shell(command, self._timeout(1), check=False)
                if res.exit_code != 0:
                    self._fail_run(res, "benchmark_model")
                try:
                    r = parse_benchmark_output(res.stdout)
                except BenchmarkParseError as e:
                    raise TargetError(f"{self.serial}: {e} (reproduce with: {self._adb_line(command)})") from None
                median_src = "median" if r.median_us is not None else "avg"
                median = r.median_us if r.median_us is not None else r.avg_us
                std = r.std_us or 0.0
                p90 = median + 1.2816 * std
                spread = (p90 - median) / median if median else float("inf")
                attempts.append((spread, r, median, p90, std, median_src))
                if spread <= protocol.max_spread:
                    break
            spread, r, median, p90, std, median_src = min(attempts, key=lambda a: a[0])
            used = dataclasses.replace(
                protocol, runner="benchmark_model",
                runner_version=f"sha256:{self._binary_hash[:12]};median_from={median_src};p90_from=normal_approx",
                interpreter=None, interpreter_version=None)
            out[k] = Measurement(graph=k, median_ms=median / 1e3, p90_ms=p90 / 1e3, std_ms=std / 1e3,
                                 count=int(r.count or 0), runs_us=(), protocol=used, spread=spread,
                                 attempts=len(attempts), spreads=tuple(a[0] for a in attempts),
                                 init_ms=None if r.init_us is None else r.init_us / 1e3,
                                 command=self._adb_line(command))
        return out

    # -- evaluation -----------------------------------------------------------------------------
    def evaluate(self, model: Path, inputs: np.ndarray) -> np.ndarray:
        """Run ``model`` on the device over ``inputs`` (``[N, ...]`` in the model's input dtype) by
        the runner's evaluation mode; returns the raw outputs ``[N, ...]`` (bit-identical to the
        host's for the same interpreter).  The remote work folder is removed afterwards."""
        model = Path(model)
        remote_model = self.push_models([model])[str(model)]
        runner = self.ensure_runner()
        work = f"{REMOTE_DIR}/eval/{secrets.token_hex(6)}"
        with tempfile.TemporaryDirectory(prefix="edgeeas-adb-eval-") as tmp:
            inp = Path(tmp) / "inputs.npy"
            np.save(inp, np.ascontiguousarray(inputs))
            self._check_space(self._shell(["mkdir", "-p", work], check=False)).check()
            try:
                self.device.push(inp, f"{work}/inputs.npy", timeout_s=max(60.0, inp.stat().st_size / 1e6))
                command = shlex.join([self.python, runner, f"--graph={remote_model}",
                                      f"--eval_input={work}/inputs.npy", f"--eval_output={work}/outputs.npy",
                                      f"--num_threads={self.protocol.threads}",
                                      f"--use_xnnpack={'true' if self.protocol.use_xnnpack else 'false'}"])
                res = self._shell(command, 300.0 + 0.1 * len(inputs), check=False)
                if res.exit_code != 0:
                    self._fail_run(res, f"evaluating {model.name}")
                local = self.device.pull(f"{work}/outputs.npy", Path(tmp) / "out", name="outputs.npy")
                try:
                    return np.load(local, allow_pickle=False)
                except ValueError as e:
                    raise TargetError(f"{self.serial}: pulled outputs are not a .npy array ({e})") from None
            finally:
                from android_runner import AdbConnectionError

                try:
                    self._shell(["rm", "-rf", "--", work], check=False)
                except AdbConnectionError:
                    pass

    # -- fingerprint ----------------------------------------------------------------------------
    # One line, double quotes only: it reads back from the log as a clean `adb shell` command.
    _PROBE = ("import importlib.metadata as m, importlib.util as u, json, platform; "
              "d = {\"ai_edge_litert\": \"ai-edge-litert\", \"tflite_runtime\": \"tflite-runtime\", "
              "\"tensorflow\": \"tensorflow\"}; "
              "n = next((x for x in d if u.find_spec(x)), None); "
              "print(json.dumps({\"python\": platform.python_version(), \"interpreter\": n, "
              "\"interpreter_version\": m.version(d[n]) if n else None}))")

    def fingerprint(self) -> dict:
        """``{"kind": "adb", model, SoC, ABI, cores, governor, temperature, ..., runner,
        runner_version, python, interpreter, interpreter_version}`` (``None`` where unknown)."""
        from android_runner import AdbCommandError, fingerprint
        from device_bench import RUNNER_VERSION

        fp = {"kind": "adb", **fingerprint(self.device)}
        if self.benchmark_binary is not None:
            fp.update(runner="benchmark_model", runner_sha256=self._binary_hash or sha256_file(self.benchmark_binary),
                      runner_version=None)
        else:
            fp.update(runner="edgeeas-runner", runner_version=RUNNER_VERSION)
        info = {"python": None, "interpreter": None, "interpreter_version": None}
        try:
            res = self._shell([self.python, "-c", self._PROBE], check=False)
            if res.exit_code == 0:
                info.update(json.loads(res.stdout.strip().splitlines()[-1]))
        except (AdbCommandError, ValueError, IndexError):
            pass
        fp.update(info)
        return fp


def _match_graphs(graphs: list[str], parsed: dict) -> dict:
    """{remote path we passed: result}.  A device that rewrites paths (a board mapping /data
    elsewhere, the test peer) prints a path that ends with ours: match those too."""
    out = {}
    for g in graphs:
        if g in parsed:
            out[g] = parsed[g]
            continue
        hits = [k for k in parsed if k.endswith(g)]
        if len(hits) == 1:
            out[g] = parsed[hits[0]]
    return out
