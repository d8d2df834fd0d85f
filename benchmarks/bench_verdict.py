"""How often a latency verdict flips: 20 validations of one model right at its budget, old rule vs new.

The model is the main job's (``edgeeas specialize --target host --budget 3ms --superclass
vehicles_1``).  Each validation runs the latency part of ``edgeeas validate`` on the host
target under the host table's recorded protocol: passes (one runner process each) until the
noise-aware verdict decides or 15 passes are spent (:func:`edgeeas.verdict.measure_verdict`,
exactly as :func:`edgeeas.validation.run_validation` calls it).  The old rule, which
``validate`` used before, is read from the same validation's first ``protocol.passes`` passes:
their median against the budget, PASS or FAIL (paired: both rules see the same machine load).
Accuracy is not re-measured: it is deterministic and cannot flip.

The budget is put where a verdict is hardest: at the model's own latency, the median of a
calibration of ``--calibration-passes`` passes measured first (``--budget-ms`` fixes it
instead).  A *contradiction* is a pair of validations of which one says PASS and the other
FAIL; INCONCLUSIVE contradicts nothing.  Writes ``benchmarks/results/verdict.json`` after every
validation (a kill keeps what was done) with the machine, versions and command.

Usage::

    python benchmarks/bench_verdict.py --model out/host/vehicles_1/3ms/model.tflite [--validations 20]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgeeas.utils import command_line, machine, sha256_file, versions  # noqa: E402


def contradictions(statuses: list[str]) -> int:
    """Pairs of validations where one says PASS and the other FAIL."""
    return statuses.count("PASS") * statuses.count("FAIL")


def changes(statuses: list[str]) -> int:
    """Consecutive validations whose decisive verdicts differ (PASS after FAIL or back)."""
    dec = [s for s in statuses if s in ("PASS", "FAIL")]
    return sum(a != b for a, b in zip(dec, dec[1:]))


def _portable(path) -> str:
    """Relative to the project, else the file name (a model under /tmp is not this project's)."""
    from edgeeas.utils import portable_path

    p = portable_path(Path(path).resolve())
    return p if not Path(p).is_absolute() else Path(p).name


def main() -> None:
    import dataclasses

    from device_bench import combine_passes

    from edgeeas.targets import HostTarget, TargetStore
    from edgeeas.verdict import VerdictRule, measure_verdict, old_rule

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="out/host/vehicles_1/3ms/model.tflite")
    ap.add_argument("--validations", type=int, default=20)
    ap.add_argument("--budget-ms", type=float, default=None, help="default: the calibration's median")
    ap.add_argument("--calibration-passes", type=int, default=5)
    ap.add_argument("--max-passes", type=int, default=15)
    ap.add_argument("--time-limit-s", type=float, default=13 * 60, help="stop starting validations after this")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "verdict.json"))
    args = ap.parse_args()

    model = Path(args.model)
    manifest = json.loads((model.parent / "manifest.json").read_text()) if (model.parent / "manifest.json").is_file() else {}
    protocol = TargetStore.named("host").protocol()
    one = dataclasses.replace(protocol, passes=1)
    t = HostTarget(protocol=one)
    t0 = time.monotonic()
    cal = [t.measure(model) for _ in range(args.calibration_passes)]
    cal_ms = [m.value_ms for m in cal]
    budget = args.budget_ms if args.budget_ms is not None else statistics.median(cal_ms)
    rule = VerdictRule(min_passes=max(3, protocol.passes), max_passes=max(args.max_passes, protocol.passes))
    print(f"model {model} ({manifest.get('arch')}), protocol {protocol.threads} thread(s) {protocol.warmup_runs}+"
          f"{protocol.num_runs} runs x {protocol.passes} passes; calibration {', '.join(f'{v:.3f}' for v in cal_ms)} "
          f"ms -> budget {budget:.4f} ms", flush=True)

    rows = []

    def write(done: bool) -> None:
        old = [r["old"] for r in rows]
        new = [r["new"] for r in rows]
        n = len(rows)
        pairs = n * (n - 1) // 2
        doc = {
            "benchmark": "verdict", "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": command_line(),
            "machine": machine(), "versions": versions(), "complete": done,
            "model": {"path": _portable(args.model), "sha256": sha256_file(model), "arch": manifest.get("arch"),
                      "manifest_budget": (manifest.get("budget") or {}).get("text") or manifest.get("budget"),
                      "predicted_latency_ms": manifest.get("predicted_latency_ms")},
            "protocol": protocol.to_dict(),
            "rule": {**dataclasses.asdict(rule), "looks": rule.looks()[0], "alpha_per_look": rule.looks()[1]},
            "budget_ms": budget, "budget_source": "--budget-ms" if args.budget_ms is not None else
            f"median of {args.calibration_passes} calibration passes", "calibration_pass_medians_ms": cal_ms,
            "validations": n,
            "old_rule": {"description": f"median of the first {protocol.passes} passes <= budget: PASS, else FAIL",
                         "counts": {s: old.count(s) for s in ("PASS", "FAIL")},
                         "contradicting_pairs": contradictions(old), "pairs": pairs,
                         "contradiction_rate": contradictions(old) / pairs if pairs else None,
                         "consecutive_changes": changes(old)},
            "new_rule": {"description": "noise-aware: order-statistic CI of the median of pass medians, sequential "
                                        "passes up to the cap (edgeeas.verdict)",
                         "counts": {s: new.count(s) for s in ("PASS", "FAIL", "INCONCLUSIVE")},
                         "contradicting_pairs": contradictions(new), "pairs": pairs,
                         "contradiction_rate": contradictions(new) / pairs if pairs else None,
                         "consecutive_changes": changes(new),
                         "mean_passes": statistics.fmean(r["passes"] for r in rows) if rows else None},
            "seconds": round(time.monotonic() - t0, 1),
            "runs": rows,
        }
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")

    for i in range(args.validations):
        if time.monotonic() - t0 > args.time_limit_s:
            print(f"time limit reached after {i} validations", flush=True)
            break
        tv = time.monotonic()
        v, ms = measure_verdict(lambda: t.measure(model), budget, rule, statistic=protocol.statistic)
        first = ms[:protocol.passes]
        old = old_rule([m.value_ms for m in first], budget)
        rows.append({"i": i, "old": old, "old_value_ms": combine_passes(first).value_ms, "new": v.status,
                     "value_ms": v.value_ms, "ci_ms": [v.ci_low_ms, v.ci_high_ms], "passes": v.passes,
                     "spread": v.spread, "between_spread": v.between_spread, "within_spread": v.within_spread,
                     "pass_medians_ms": v.pass_values_ms, "seconds": round(time.monotonic() - tv, 1)})
        print(f"{i + 1:2d}: old {old:<4} ({rows[-1]['old_value_ms']:.3f} ms)  new {v.describe()}", flush=True)
        write(False)
    write(len(rows) == args.validations)
    doc = json.loads(Path(args.out).read_text())
    print(json.dumps({k: doc[k] for k in ("budget_ms", "validations", "old_rule", "new_rule", "seconds")}, indent=2))


if __name__ == "__main__":
    main()
