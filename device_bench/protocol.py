"""The latency measurement protocol, and measuring on this host.

A figure is only meaningful with the protocol that produced it: which runner
and interpreter (and their versions), threads, CPU mask, warm-up and measured
runs, the statistic, and the re-measure rule. ``Protocol`` records that and
turns it into the runner's command line; ``measure_host`` runs the very
``runner.py`` that is pushed to devices, with ``sys.executable``, so a host
figure and a device figure come from the same code.

Re-measure rule: a measurement whose spread ``(p90 - median) / median``
exceeds ``max_spread`` is repeated up to ``max_remeasure`` more times and the
attempt with the lowest spread is kept (all spreads are recorded).

Passes: a shared machine (a VM's neighbours, a phone's background work) slows
everything down for a second or so at a time, and a run of 50 invocations that
falls into such a window is uniformly slow, so its spread looks fine. Measured
here on a shared 2-core VM, 100 subnets' medians moved by 4.8 % (median) and
30 % (p90) between two single sweeps. So a table is measured in ``passes``
sweeps over the model list, each in its own runner process, and a model's
figure is the median of its per-pass figures (:func:`combine_passes`): one
disturbed sweep cannot move it. With 3 passes, the same subnets measured
again minutes later moved by 2.3 % (median) and 10 % (p90).
"""

from __future__ import annotations

import dataclasses
import glob
import importlib.metadata
import importlib.util
import logging
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from device_bench.parse import BenchmarkParseError, BenchmarkResult, parse_benchmark_output, parse_many

__all__ = [
    "RUNNER_PATH",
    "Measurement",
    "Protocol",
    "RunnerError",
    "host_fingerprint",
    "measure_host",
    "measure_many_host",
    "combine_passes",
    "RUNNER_VERSION",
]

log = logging.getLogger(__name__)

RUNNER_PATH = Path(__file__).resolve().with_name("runner.py")
_INTERPRETERS = ("ai_edge_litert", "tflite_runtime", "tensorflow")
_DISTRIBUTIONS = {"ai_edge_litert": "ai-edge-litert", "tflite_runtime": "tflite-runtime",
                  "tensorflow": "tensorflow"}
_STATISTICS = ("median", "p90")


def _read_runner_version() -> str:
    """RUNNER_VERSION of runner.py, read from the file (runner.py is pushed alone, not imported)."""
    for line in RUNNER_PATH.read_text().splitlines():
        if line.startswith("RUNNER_VERSION"):
            return line.split("=", 1)[1].strip().strip("\"'")
    raise RuntimeError(f"{RUNNER_PATH} has no RUNNER_VERSION line")


RUNNER_VERSION = _read_runner_version()


class RunnerError(RuntimeError):
    """The runner exited with an error or printed no result."""

    def __init__(self, message: str, returncode: int | None = None, command: str | None = None):
        super().__init__(message)
        self.returncode = returncode
        self.command = command


_SHAPE_RE = re.compile(r"^\d+(,\d+)*(:\d+(,\d+)*)*$")

@dataclass(frozen=True)
class Protocol:
    """How a latency figure is measured. Frozen, hashable, round-trips through a dict.

    ``interpreter=None`` / ``interpreter_version=None`` mean "whatever the
    runner finds"; measurements fill them in from the runner's report, and a
    pinned value that differs from the report is an error.
    """

    runner: str = "edgeeas-runner"
    runner_version: str = RUNNER_VERSION
    interpreter: str | None = None
    interpreter_version: str | None = None
    threads: int = 1
    cpu_mask: str | None = None
    warmup_runs: int = 5
    num_runs: int = 50
    min_secs: float = 0.0
    warmup_min_secs: float = 0.0
    statistic: str = "median"
    max_spread: float = 0.15
    max_remeasure: int = 2
    use_xnnpack: bool = True
    seed: int = 0
    passes: int = 3
    input_layer_shape: str | None = None  # benchmark_model's --input_layer_shape (dynamic inputs)

    def __post_init__(self):
        if not isinstance(self.threads, int) or self.threads <= 0:
            raise ValueError(f"threads must be a positive int, got {self.threads!r}")
        if not isinstance(self.num_runs, int) or self.num_runs <= 0:
            raise ValueError(f"num_runs must be a positive int, got {self.num_runs!r}")
        if not isinstance(self.warmup_runs, int) or self.warmup_runs < 0:
            raise ValueError(f"warmup_runs must be an int >= 0, got {self.warmup_runs!r}")
        if self.min_secs < 0 or self.warmup_min_secs < 0:
            raise ValueError(f"min_secs and warmup_min_secs must be >= 0, got "
                             f"{self.min_secs!r}, {self.warmup_min_secs!r}")
        if self.statistic not in _STATISTICS:
            raise ValueError(f"statistic must be one of {_STATISTICS}, got {self.statistic!r}")
        if not isinstance(self.passes, int) or self.passes <= 0:
            raise ValueError(f"passes must be a positive int (sweeps over the models), got {self.passes!r}")
        if not self.max_spread > 0:
            raise ValueError(f"max_spread must be > 0 (e.g. 0.15), got {self.max_spread!r}")
        if not isinstance(self.max_remeasure, int) or self.max_remeasure < 0:
            raise ValueError(f"max_remeasure must be an int >= 0, got {self.max_remeasure!r}")
        if self.interpreter is not None and self.interpreter not in _INTERPRETERS:
            raise ValueError(f"interpreter must be one of {_INTERPRETERS} or None, got {self.interpreter!r}")
        if self.input_layer_shape is not None and not _SHAPE_RE.match(str(self.input_layer_shape)):
            raise ValueError(f"input_layer_shape must be comma-separated sizes, ':' between inputs, e.g. "
                             f"1,224,224,3:1,20 (benchmark_model's --input_layer_shape), got {self.input_layer_shape!r}")
        if self.cpu_mask is not None:
            raw = self.cpu_mask.lower().removeprefix("0x")
            try:
                ok = int(raw, 16) > 0
            except ValueError:
                ok = False
            if not ok:
                raise ValueError(f"cpu_mask must be a non-zero hex mask such as 'f0', got {self.cpu_mask!r}")

    def to_dict(self) -> dict:
        """Every field as a JSON-ready dict, as a latency table and a manifest record it
        (``input_layer_shape`` only when set, so records made before it existed compare equal)."""
        d = dataclasses.asdict(self)
        if d.get("input_layer_shape") is None:
            d.pop("input_layer_shape", None)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Protocol":
        """Inverse of :meth:`to_dict`; missing fields take their defaults.

        Raises:
            ValueError: an unknown field (listing the known ones) or an invalid value.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown Protocol field(s) {unknown}; expected some of {sorted(names)}")
        return cls(**d)

    def runner_args(self, graph: str | os.PathLike | None = None) -> list[str]:
        """benchmark_model-style flags; ``--graph=`` first when ``graph`` is given."""
        args = [f"--graph={os.fspath(graph)}"] if graph is not None else []
        args += [
            f"--num_threads={self.threads}",
            f"--warmup_runs={self.warmup_runs}",
            f"--num_runs={self.num_runs}",
            f"--min_secs={self.min_secs:g}",
            f"--warmup_min_secs={self.warmup_min_secs:g}",
            f"--use_xnnpack={'true' if self.use_xnnpack else 'false'}",
        ]
        if self.cpu_mask is not None:
            args.append(f"--cpu_mask={self.cpu_mask}")
        if self.interpreter is not None:
            args.append(f"--interpreter={self.interpreter}")
        if self.seed:
            args.append(f"--seed={self.seed}")
        if self.input_layer_shape:
            args.append(f"--input_layer_shape={self.input_layer_shape}")
        return args


@dataclass(frozen=True)
class Measurement:
    """One graph measured under one protocol (times in ms, runs in us)."""

    graph: str
    median_ms: float
    p90_ms: float
    std_ms: float
    count: int
    runs_us: tuple[float, ...]
    protocol: Protocol
    spread: float
    attempts: int = 1
    spreads: tuple[float, ...] = ()
    init_ms: float | None = None
    command: str | None = None  # shell command that reproduces the (last) attempt
    pass_medians_ms: tuple[float, ...] = ()  # one per pass when measured in several passes

    @property
    def value_ms(self) -> float:
        """The protocol's statistic."""
        return self.p90_ms if self.protocol.statistic == "p90" else self.median_ms

    def to_dict(self) -> dict:
        """JSON-ready form (tuples as lists, the protocol nested); :meth:`from_dict` reads it."""
        d = dataclasses.asdict(self)
        d["runs_us"] = list(self.runs_us)
        d["spreads"] = list(self.spreads)
        d["pass_medians_ms"] = list(self.pass_medians_ms)
        d["protocol"] = self.protocol.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Measurement":
        """Inverse of :meth:`to_dict` (``spreads`` and ``pass_medians_ms`` may be missing, as in
        older files).

        Raises:
            KeyError, TypeError: a required field is missing or a field is unknown.
            ValueError: the nested protocol is invalid.
        """
        d = dict(d)
        d["protocol"] = Protocol.from_dict(d["protocol"])
        d["runs_us"] = tuple(d["runs_us"])
        d["spreads"] = tuple(d.get("spreads", ()))
        d["pass_medians_ms"] = tuple(d.get("pass_medians_ms", ()))
        return cls(**d)


def combine_passes(passes: list[Measurement]) -> Measurement:
    """One figure from the same graph measured in several passes (see the module doc).

    Median and p90 are the medians of the per-pass medians and p90s; ``runs_us`` pools every
    run (so the per-run distribution stays available), ``std_ms`` is over the pooled runs, and
    ``attempts``/``spreads`` add up. ``spread`` is the larger of ``(p90 - median) / median`` and
    the pass medians' range over the median, so it is never smaller than what the passes show.
    A single pass is returned unchanged.
    """
    if not passes:
        raise ValueError("combine_passes needs at least one measurement")
    if len(passes) == 1:
        return passes[0]
    if len({m.graph for m in passes}) != 1:
        raise ValueError(f"combine_passes got different graphs: {sorted({m.graph for m in passes})}")
    runs = tuple(r for m in passes for r in m.runs_us)
    median = statistics.median(m.median_ms for m in passes)
    p90 = statistics.median(m.p90_ms for m in passes)
    mean = sum(runs) / len(runs) if runs else 0.0
    std = (sum((r - mean) ** 2 for r in runs) / len(runs)) ** 0.5 / 1e3 if runs else 0.0
    last = passes[-1]
    return dataclasses.replace(
        last, median_ms=median, p90_ms=p90, std_ms=std, count=sum(m.count for m in passes), runs_us=runs,
        # never less than what repeated passes show: the range of the pass medians counts too
        spread=max((p90 - median), max(m.median_ms for m in passes) - min(m.median_ms for m in passes)) / median
        if median else float("inf"),
        attempts=sum(m.attempts for m in passes), spreads=tuple(x for m in passes for x in m.spreads),
        pass_medians_ms=tuple(m.median_ms for m in passes))


def _spread(res: BenchmarkResult) -> float:
    if not res.median_us:
        return float("inf")
    return (res.p90_us - res.median_us) / res.median_us


def _measurement(res: BenchmarkResult, graph: str, protocol: Protocol, spreads: list[float],
                 command: str | None = None) -> Measurement:
    if protocol.interpreter is not None and res.interpreter != protocol.interpreter:
        raise RunnerError(f"protocol pins interpreter {protocol.interpreter} but the runner used {res.interpreter}")
    if protocol.interpreter_version is not None and res.version != protocol.interpreter_version:
        raise RunnerError(f"protocol pins {res.interpreter} {protocol.interpreter_version} "
                          f"but the runner used version {res.version}")
    actual = dataclasses.replace(protocol, interpreter=res.interpreter, interpreter_version=res.version)
    return Measurement(
        graph=graph,
        median_ms=res.median_us / 1e3,
        p90_ms=res.p90_us / 1e3,
        std_ms=res.std_us / 1e3,
        count=res.count,
        runs_us=tuple(res.runs_us),
        protocol=actual,
        spread=_spread(res),
        attempts=len(spreads),
        spreads=tuple(spreads),
        init_ms=None if res.init_us is None else res.init_us / 1e3,
        command=command,
    )


def _env() -> dict:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


from device_bench.lifetime import die_with_parent  # noqa: E402


def _run_runner(args: list[str], timeout: float | None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(RUNNER_PATH), *args]
    shown = shlex.join(["python3", str(RUNNER_PATH), *args])
    log.debug("running: %s", shown)
    try:
        # the runner dies with this process (a kill -9 of bench leaves no runner behind)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=timeout,
                              preexec_fn=die_with_parent if sys.platform.startswith("linux") else None)
    except subprocess.TimeoutExpired:
        raise RunnerError(f"runner timed out after {timeout:g} s: {shown}", None, shown) from None
    proc.shown = shown  # type: ignore[attr-defined]
    return proc


def _error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [l.strip() for l in (proc.stderr or "").splitlines() if l.strip()]
    errors = [l for l in lines if l.startswith("ERROR:")]
    if errors:
        return "; ".join(errors)
    if lines:
        return lines[-1]
    out = [l.strip() for l in (proc.stdout or "").splitlines() if l.strip()]
    return out[-1] if out else "<no output>"


def measure_host(graph_path: str | os.PathLike, protocol: Protocol | None = None,
                 timeout: float | None = 600.0) -> Measurement:
    """Measure one ``.tflite`` on this host with runner.py under ``protocol``."""
    protocol = protocol or Protocol()
    graph = os.fspath(graph_path)
    best: BenchmarkResult | None = None
    spreads: list[float] = []
    for _ in range(1 + protocol.max_remeasure):
        proc = _run_runner(protocol.runner_args(graph), timeout)
        if proc.returncode != 0:
            raise RunnerError(f"runner failed (exit {proc.returncode}): {_error_line(proc)}",
                              proc.returncode, proc.shown)
        try:
            res = parse_benchmark_output(proc.stdout)
        except BenchmarkParseError as e:
            raise RunnerError(f"{e} (command: {proc.shown})", proc.returncode, proc.shown) from None
        if res.runs_us is None:
            raise RunnerError(f"runner printed no EDGEEAS_RUNS_US line (command: {proc.shown})")
        spreads.append(_spread(res))
        if best is None or spreads[-1] < _spread(best):
            best = res
        if spreads[-1] <= protocol.max_spread:
            break
    return _measurement(best, graph, protocol, spreads, proc.shown)


def measure_many_host(paths: Iterable[str | os.PathLike], protocol: Protocol | None = None,
                      timeout: float | None = 3600.0) -> dict[str, Measurement]:
    """Measure several graphs, all in ONE runner process per round (``--graphs``).

    Amortises the interpreter import over a whole latency table. Graphs over
    the spread limit are re-measured together in a further process, up to
    ``max_remeasure`` rounds. Returns ``{path as given: Measurement}`` in input
    order; a graph the runner cannot run raises RunnerError naming it.
    """
    protocol = protocol or Protocol()
    graphs = [os.fspath(p) for p in paths]
    if not graphs:
        return {}
    # --graphs is comma-separated: a path with a comma is measured alone, with --graph
    commas = {g: measure_host(g, protocol, timeout) for g in dict.fromkeys(graphs) if "," in g}
    if commas:
        rest = measure_many_host([g for g in graphs if g not in commas], protocol, timeout)
        return {g: commas.get(g) or rest[g] for g in graphs}
    best: dict[str, BenchmarkResult] = {}
    spreads: dict[str, list[float]] = {g: [] for g in graphs}
    todo = list(dict.fromkeys(graphs))
    for _ in range(1 + protocol.max_remeasure):
        if not todo:
            break
        proc = _run_runner([f"--graphs={','.join(todo)}", *protocol.runner_args()], timeout)
        try:
            results = parse_many(proc.stdout)
        except BenchmarkParseError as e:
            raise RunnerError(f"{e} ({_error_line(proc)}; command: {proc.shown})",
                              proc.returncode, proc.shown) from None
        if proc.returncode != 0:
            raise RunnerError(f"runner failed (exit {proc.returncode}): {_error_line(proc)}",
                              proc.returncode, proc.shown)
        missing = [g for g in todo if g not in results]
        if missing:
            raise RunnerError(f"runner printed no result for {missing} (command: {proc.shown})")
        next_todo = []
        for g in todo:
            res = results[g]
            spreads[g].append(_spread(res))
            if g not in best or spreads[g][-1] < _spread(best[g]):
                best[g] = res
            if spreads[g][-1] > protocol.max_spread:
                next_todo.append(g)
        todo = next_todo
    return {g: _measurement(best[g], g, protocol, spreads[g], proc.shown) for g in graphs}


# --------------------------------------------------------------------------- #
def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _cpu_model() -> str | None:
    text = _read("/proc/cpuinfo") or ""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if ":" in line:
            k, v = (s.strip() for s in line.split(":", 1))
            fields.setdefault(k, v)
    for key in ("model name", "Hardware", "Processor", "cpu model"):
        if fields.get(key):
            return fields[key]
    if "CPU part" in fields:  # ARM without a name: implementer/part ids
        return f"ARM implementer {fields.get('CPU implementer')} part {fields['CPU part']}"
    return platform.processor() or None


# SIMD features that change which kernels the interpreter's CPU backends (XNNPACK, ruy) run, and so
# a model's latency: int8 dot products (VNNI, ARM dotprod / i8mm), wide vectors, bf16 / fp16.
_ISA_FLAGS = frozenset({
    "sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
    "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_int8", "amx_bf16",  # x86 /proc/cpuinfo "flags"
    "asimd", "asimdhp", "asimddp", "i8mm", "bf16", "sve", "sve2", "sme",  # ARM /proc/cpuinfo "Features"
})


def _cpu_isa(cpuinfo: str | None = None) -> str | None:
    """The SIMD features of the first CPU that matter to int8 / float kernels, as a sorted comma list
    (``"avx,avx2,avx512_vnni,..."``), from ``/proc/cpuinfo``'s ``flags`` (x86) or ``Features`` (ARM)
    line; ``None`` when unreadable.  Two hosts sharing a model name (``AMD EPYC``) with different
    features run int8 at very different speeds (measured here: 2.1-2.3x between two such hosts)."""
    text = _read("/proc/cpuinfo") if cpuinfo is None else cpuinfo
    for line in (text or "").splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return ",".join(sorted(set(value.split()) & _ISA_FLAGS)) or "none"
    return None


def _dist_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def host_fingerprint() -> dict:
    """What this host is, as far as a latency figure cares. Unreadable items are None.

    Does not import the interpreter: it finds the module runner.py would pick
    and reads its installed version.
    """
    governors = sorted({g for p in glob.glob("/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor")
                        if (g := _read(p))})
    temps = {}
    for zone in sorted(glob.glob("/sys/class/thermal/thermal_zone*")):
        t = _read(os.path.join(zone, "temp"))
        if t is not None and t.lstrip("-").isdigit():
            name = _read(os.path.join(zone, "type")) or os.path.basename(zone)
            temps[f"{os.path.basename(zone)}:{name}"] = int(t) / 1000.0
    interp = next((m for m in _INTERPRETERS if importlib.util.find_spec(m) is not None), None)
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = None
    return {
        "cpu_model": _cpu_model(),
        "cpu_isa": _cpu_isa(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "governor": ",".join(governors) if governors else None,
        "temperature_c": temps or None,
        "machine": platform.machine(),
        "kernel": platform.release(),
        "os": platform.system(),
        "python": platform.python_version(),
        "interpreter": interp,
        "interpreter_version": _dist_version(_DISTRIBUTIONS[interp]) if interp else None,
        "numpy": _dist_version("numpy"),
    }
