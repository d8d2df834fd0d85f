"""Parse the output of TFLite ``benchmark_model`` and of the edgeeas runner.

Standalone (standard library only). Reads:

* the edgeeas runner (``device_bench/runner.py``), including its
  ``EDGEEAS_RUNNER`` / ``EDGEEAS_RUNS_US`` lines;
* the official binary's current output (``Inference timings in us: Init: ...,
  First inference: ..., Warmup (avg): ..., Inference (avg): ...``), whatever its
  last line (``Memory footprint delta ...`` / ``Peak memory footprint ...``);
* the TF <= 2.2 format ``Average inference timings in us: Warmup: W, Init: I,
  Inference: X`` (older still: ``..., no stats: X``, and ``count=1 curr=X``
  warm-up lines);
* ``count=`` lines with or without ``p5= median= p95=``, numbers such as
  ``1.63488e+06``;
* lines prefixed with ``INFO: `` or a logcat tag (``I tflite  : ``,
  ``04-12 10:11:12.123  1234  1234 I tflite  : ``): every pattern is searched
  anywhere in a line, so prefixes need no stripping.

All times are microseconds.
"""

from __future__ import annotations

import dataclasses
import math
import re
import statistics
from dataclasses import dataclass, field

__all__ = [
    "BenchmarkParseError",
    "BenchmarkResult",
    "parse_benchmark_output",
    "parse_many",
    "percentile",
]


class BenchmarkParseError(ValueError):
    """The text holds no benchmark result; the message ends with its last line."""


_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?nan|[-+]?inf"
_COUNT_RE = re.compile(r"(?:^|[\s:])count=(\d+)((?:\s+\w+=(?:" + _NUM + r"))*)")
_KV_RE = re.compile(r"(\w+)=(" + _NUM + r")")
_INIT_SESSION_RE = re.compile(r"Initialized session in\s*(" + _NUM + r")\s*ms")
_TIMINGS_RE = re.compile(r"(?<!Average )Inference timings in us:(.*)")
_OLD_TIMINGS_RE = re.compile(r"Average inference timings in us:(.*)")
_RUNS_RE = re.compile(r"EDGEEAS_RUNS_US:\s*([^\s]*)(?:\s+graph=(.*))?$")
_FAILED_RE = re.compile(r"EDGEEAS_FAILED:\s*(.*?)\s+graph=(.*)$")
_RUNNER_RE = re.compile(r"EDGEEAS_RUNNER:\s*(.*)$")
_GRAPH_RE = re.compile(r"Graph: \[(.*)\]")
_PROFILE_TAGS = ("Timings (microseconds)", "Memory (bytes)")
_RAW_TAIL_LINES = 20


def _num(text: str) -> float | None:
    v = float(text)
    return None if math.isnan(v) else v


def percentile(values, q: float) -> float:
    """Percentile with linear interpolation (numpy's default method)."""
    s = sorted(values)
    if not s:
        raise ValueError("percentile of no values")
    k = (len(s) - 1) * q / 100.0
    f = math.floor(k)
    c = min(f + 1, len(s) - 1)
    return s[f] + (k - f) * (s[c] - s[f])


@dataclass
class BenchmarkResult:
    """One benchmark block. Times in microseconds; None when the output lacks them.

    When the edgeeas runner's per-run times (``runs_us``) are present, count,
    avg, min, max, std (population, as benchmark_model), median and p90 are
    exact values computed from them; otherwise they come from the measured
    ``count=`` line (p90 is then None).
    """

    runs_us: list[float] | None = None
    count: int | None = None
    avg_us: float | None = None
    min_us: float | None = None
    max_us: float | None = None
    std_us: float | None = None
    median_us: float | None = None
    p90_us: float | None = None
    init_us: float | None = None
    first_us: float | None = None
    warmup_avg_us: float | None = None
    inference_avg_us: float | None = None
    runner: str | None = None
    runner_version: str | None = None
    interpreter: str | None = None
    version: str | None = None
    graph: str | None = None
    runner_info: dict = field(default_factory=dict)
    raw_tail: str = ""

    def to_dict(self) -> dict:
        """Every field as a JSON-ready dict (times stay in microseconds, ``None`` where the
        output did not say)."""
        return dataclasses.asdict(self)


def _last_line(text: str) -> str:
    for line in reversed(text.splitlines()):
        if line.strip():
            return line.strip()
    return "<empty output>"


def _fail(text: str, why: str) -> BenchmarkParseError:
    return BenchmarkParseError(f"{why}; last line of output: {_last_line(text)[:300]!r}")


def _timings(line_rest: str, old: bool) -> dict:
    out = {}
    pats = {
        "init_us": r"Init:\s*(" + _NUM + ")",
        "first_us": r"First inference:\s*(" + _NUM + ")",
        "warmup_avg_us": (r"Warmup:\s*(" + _NUM + ")") if old else (r"Warmup \(avg\):\s*(" + _NUM + ")"),
        "inference_avg_us": (r"(?:^|,)\s*(?:Inference|no stats):\s*(" + _NUM + ")") if old
        else (r"Inference \(avg\):\s*(" + _NUM + ")"),
    }
    for key, pat in pats.items():
        m = re.search(pat, line_rest)
        if m:
            out[key] = _num(m.group(1))
    return out


_SUMMARY_RE = re.compile(r"(?:Average )?[Ii]nference timings in us:")
_START_RE = re.compile(r"STARTING!")


def _last_run(lines: list[str]) -> list[str]:
    """The lines of the last run in ``lines``: a paste of two runs (two summary lines, or a run
    that died and a rerun, each starting with ``STARTING!``) is never read as one; figures
    come from one run only.  A run ends at its summary line (lines after it, such as the
    memory footprint, still belong to it)."""
    summaries = [i for i, ln in enumerate(lines) if _SUMMARY_RE.search(ln)]
    end = summaries[-1] if summaries else len(lines) - 1
    start = summaries[-2] + 1 if len(summaries) >= 2 else 0
    starts = [i for i, ln in enumerate(lines[:end + 1]) if _START_RE.search(ln) and i >= start]
    if starts:
        start = starts[-1]
    return lines[start:]


def parse_benchmark_output(text: str) -> BenchmarkResult:
    """Parse ONE benchmark block (official binary or edgeeas runner).

    Raises BenchmarkParseError when no measured timing is found, with the last
    non-empty line of the output (usually the device's error) in the message.
    """
    if not isinstance(text, str):
        raise TypeError(f"expected the benchmark output as str, got {type(text).__name__}")
    lines = text.splitlines()
    res = BenchmarkResult()
    res.raw_tail = "\n".join(l for l in lines[-_RAW_TAIL_LINES:])
    lines = _last_run(lines)
    count_lines: list[tuple[int, dict]] = []
    timings_idx = None
    for i, line in enumerate(lines):
        if "EDGEEAS_" in line:
            m = _RUNS_RE.search(line)
            if m:
                csv = m.group(1).strip().rstrip(",")
                try:
                    res.runs_us = [float(v) for v in csv.split(",")] if csv else []
                except ValueError:
                    raise _fail(text, f"bad EDGEEAS_RUNS_US value list {csv[:80]!r}") from None
                if m.group(2):
                    res.graph = m.group(2).strip()
                continue
            m = _RUNNER_RE.search(line)
            if m:
                info = dict(tok.split("=", 1) for tok in m.group(1).split() if "=" in tok)
                res.runner_info = info
                res.runner = info.get("runner")
                res.runner_version = info.get("runner_version")
                res.interpreter = info.get("interpreter")
                res.version = info.get("version")
                continue
            m = _FAILED_RE.search(line)
            if m:
                raise BenchmarkParseError(
                    f"runner failed on {m.group(2).strip()}: {m.group(1)}")
        if res.graph is None:
            m = _GRAPH_RE.search(line)
            if m:
                res.graph = m.group(1)
        m = _INIT_SESSION_RE.search(line)
        if m:
            res.init_us = _num(m.group(1)) * 1e3
            continue
        m = _OLD_TIMINGS_RE.search(line)
        if m:
            res.__dict__.update({k: v for k, v in _timings(m.group(1), old=True).items()})
            timings_idx = i
            continue
        m = _TIMINGS_RE.search(line)
        if m:
            res.__dict__.update({k: v for k, v in _timings(m.group(1), old=False).items()})
            timings_idx = i
            continue
        if "count=" in line and not any(tag in line for tag in _PROFILE_TAGS):
            m = _COUNT_RE.search(line)
            if m:
                kv = {k: _num(v) for k, v in _KV_RE.findall(m.group(2))}
                kv["count"] = int(m.group(1))
                count_lines.append((i, kv))

    # Stage statistics are the count= lines before the summary line (op
    # profiling prints more after it): the last is the measured stage, the
    # one before it the warm-up.
    if timings_idx is not None:
        count_lines = [c for c in count_lines if c[0] < timings_idx] or count_lines
    measured = count_lines[-1][1] if count_lines else None
    if measured is not None and measured.get("count") == 0:
        measured = None
    if measured is not None:
        res.count = int(measured["count"])
        res.avg_us = measured.get("avg")
        res.min_us = measured.get("min")
        res.max_us = measured.get("max")
        res.std_us = measured.get("std")
        res.median_us = measured.get("median")
        if res.first_us is None and len(count_lines) >= 2:
            warm = count_lines[-2][1]
            res.first_us = warm.get("first")
            if res.first_us is None and warm.get("count") == 1:
                # old format: the single warm-up run prints ``count=1 curr=X`` (or avg=X)
                res.first_us = warm.get("curr", warm.get("avg"))

    if res.runs_us is not None:
        runs = res.runs_us
        if not runs:
            raise _fail(text, "EDGEEAS_RUNS_US holds no runs")
        n = len(runs)
        avg = sum(runs) / n
        res.count = n
        res.avg_us = avg
        res.min_us = min(runs)
        res.max_us = max(runs)
        res.std_us = math.sqrt(max(sum(r * r for r in runs) / n - avg * avg, 0.0))
        res.median_us = float(statistics.median(runs))
        res.p90_us = float(percentile(runs, 90))

    if res.avg_us is None and res.inference_avg_us is not None:
        res.avg_us = res.inference_avg_us
    if res.inference_avg_us is None and res.avg_us is not None and res.runs_us is None:
        res.inference_avg_us = res.avg_us
    if res.avg_us is None:
        raise _fail(text, "no benchmark result found (no count= line, no 'Inference timings in us' line)")
    if res.runner is None and res.runs_us is None:
        res.runner = "benchmark_model"
    return res


def parse_many(text: str, on_error: str = "raise") -> dict[str, BenchmarkResult]:
    """Parse the runner's ``--graphs`` output: ``{graph path: BenchmarkResult}``.

    Blocks end with ``EDGEEAS_RUNS_US: ... graph=PATH`` (or, for a graph that
    failed, ``EDGEEAS_FAILED: message graph=PATH``). ``on_error="raise"``
    raises BenchmarkParseError naming every failed graph; ``"skip"`` leaves
    them out.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    results: dict[str, BenchmarkResult] = {}
    failures: list[str] = []
    block: list[str] = []
    for line in text.splitlines():
        block.append(line)
        if "EDGEEAS_FAILED:" in line:
            m = _FAILED_RE.search(line)
            failures.append(f"{m.group(2).strip()}: {m.group(1)}" if m else line.strip())
            block = []
        elif "EDGEEAS_RUNS_US:" in line:
            res = parse_benchmark_output("\n".join(block))
            if res.graph is None:
                raise _fail(text, "EDGEEAS_RUNS_US line without graph=PATH in multi-graph output")
            results[res.graph] = res
            block = []
    if failures and on_error == "raise":
        raise BenchmarkParseError(f"{len(failures)} graph(s) failed: " + "; ".join(failures))
    if not results and not failures:
        raise _fail(text, "no EDGEEAS_RUNS_US block found")
    return results
