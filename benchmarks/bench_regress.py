"""How reliable and how fast is ``edgeeas regress``, on two device peers of this machine.

1. False alarms: a baseline is recorded (the CLI default: 9 passes per model), then ``--runs``
   checks of the unchanged farm run with the CLI defaults (+10 % latency tolerance, the
   noise-aware verdict of edgeeas.verdict at 95 %, at most 15 passes).  An unchanged latency
   check that FAILs is a false alarm; INCONCLUSIVE ones (too noisy to tell) are counted apart.
2. Detection: the baseline records model M0 (int8, width 128, 64x64 input) under keys
   ``step_W``; the checks run those keys with models of width W > 128 (more work, same graph).
   A step's measured inflation is the median over its checks of now/baseline - 1 (both medians
   of pass values); its FAIL / INCONCLUSIVE / PASS rates at the default tolerance are recorded.
3. Wall time of one check of N models x 2 devices: both devices at once vs one at a time
   (``--jobs 1``), alternating, ``--walltime-reps`` times each.

The peers are in-process adb peers on this machine.  The load is measured, not asserted: the
load averages at start and end, and the other processes busy at the start (``ps``), are
recorded, and the ``note`` is computed from them.

    python benchmarks/bench_regress.py [--runs 20] [--walltime-reps 3]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from edgeeas.regress import Tolerances, load_farm, run_regress, write_baseline, write_reports  # noqa: E402
from testing.tiny_model import build_tiny_model  # noqa: E402

UNCHANGED = {"w8": dict(width=8), "w64": dict(width=64)}
BASE_WIDTH = 128
STEP_WIDTHS = [128, 132, 136, 140, 144, 152, 160, 176]   # 128 itself is one more unchanged check
PROTOCOL = "protocol: {threads: 1, num_runs: 100, warmup_runs: 5}\neval: {random_inputs: 16}\n"
TOLS = [0.10, 0.20, 0.30]


def loadavg() -> list[float]:
    """The 1, 5 and 15 minute load averages, rounded."""
    return [round(x, 2) for x in os.getloadavg()]


def busy_processes(min_cpu_pct: float = 20.0) -> list[str]:
    """Other processes using at least ``min_cpu_pct`` % CPU now (``ps``; command names, at most 60 chars)."""
    try:
        out = subprocess.run(["ps", "-eo", "pid=,pcpu=,args="], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    rows = []
    for line in out.splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3 and int(parts[0]) != os.getpid() and float(parts[1]) >= min_cpu_pct:
            rows.append(f"{parts[1]} % {parts[2][:60]}")
    return rows


def lat_cases(res) -> list:
    """(device, key, case) of every latency case of a run."""
    return [(c.device, c.model, c) for c in res.cases if c.metric == "latency"]


def write_farm(folder: Path, serials: list[str], models: list[tuple[str, str]]) -> Path:
    """``folder/farm.yaml`` with these devices and ``(key, path)`` models, and the benchmark's protocol."""
    f = folder / "farm.yaml"
    lines = [f"devices: [{', '.join(serials)}]", "models:"]
    lines += [f"  - {{name: {k}, path: {p}}}" for k, p in models]
    f.write_text("\n".join(lines) + "\n" + PROTOCOL)
    return f


def main() -> None:
    """Run the three parts (see the module docstring) and write ``--out`` (JSON)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--walltime-reps", type=int, default=3)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "regress.json"))
    args = ap.parse_args()

    from android_runner import ensure_user_key
    from device_bench import host_fingerprint
    from edgeeas.utils import atomic_write_text, machine, portable_path, versions
    from testing.adb_peer import AdbPeer

    ensure_user_key()
    pub = Path.home() / ".android" / "adbkey.pub"
    work = Path(tempfile.mkdtemp(prefix="bench-regress-"))
    print(f"building models in the cache, work dir {work}", flush=True)
    files = {k: build_tiny_model("int8", **kw) for k, kw in UNCHANGED.items()}
    for w in STEP_WIDTHS:
        files[f"w{w}"] = build_tiny_model("int8", width=w, input_size=64)
    for k, p in files.items():
        shutil.copy(p, work / f"{k}.tflite")
    peers = [AdbPeer(sandbox=work / f"dev{i}", authorized_keys=pub, model=f"Peer {i}").start() for i in range(2)]
    serials = [p.serial for p in peers]
    busy = busy_processes()
    la0 = loadavg()
    out = {"what": "edgeeas regress on two adb device peers of this machine: false alarms, detected latency "
                   "regressions, wall time parallel vs one device at a time",
           "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "flags": {**vars(args), "out": portable_path(args.out)},
           "machine": machine(), "fingerprint": host_fingerprint(), "versions": versions(),
           "loadavg_start": la0, "busy_processes_start": busy, "protocol": PROTOCOL.strip(),
           "defaults": dataclasses.asdict(Tolerances()),
           "note": (f"{machine().get('cores')} cores, load average {la0[0]} at start; "
                    f"{len(busy)} other process(es) above 20 % CPU at start"
                    + (" (an `edgeeas train` among them)" if any("edgeeas" in b and " train" in b for b in busy) else ""))}
    t_all = time.monotonic()
    try:
        # ---- 1 + 2: one baseline, --runs checks -------------------------------------------------
        base_models = [(k, f"{k}.tflite") for k in UNCHANGED] + [(f"step_{w}", f"w{BASE_WIDTH}.tflite")
                                                               for w in STEP_WIDTHS]
        check_models = [(k, f"{k}.tflite") for k in UNCHANGED] + [(f"step_{w}", f"w{w}.tflite") for w in STEP_WIDTHS]
        for sub in ("b", "c", "w"):
            (work / sub).mkdir()
        bfarm = load_farm(write_farm(work / "b", serials, [(k, f"../{p}") for k, p in base_models]))
        cfarm = load_farm(write_farm(work / "c", serials, [(k, f"../{p}") for k, p in check_models]))
        baseline = work / "baseline.json"
        rec = run_regress(bfarm, baseline, update=True)
        write_baseline(rec, baseline)
        base_doc = json.loads(baseline.read_text())
        checks = []   # (device, key, case) of every latency check
        run_seconds = []
        res = None
        for i in range(args.runs):
            t = time.monotonic()
            res = run_regress(cfarm, baseline)
            run_seconds.append(time.monotonic() - t)
            if any(d.error for d in res.devices.values()):
                raise SystemExit(f"run {i}: device error: {[d.error for d in res.devices.values()]}")
            checks += lat_cases(res)
            fails = [c.model for c in res.cases if c.metric == "latency" and c.status == "fail"]
            print(f"run {i + 1}/{args.runs}: {run_seconds[-1]:.1f} s, latency failures: {fails}", flush=True)
        report_dir = work / "report"
        write_reports(res, report_dir)
        unchanged_keys = list(UNCHANGED) + [f"step_{BASE_WIDTH}"]

        def rates(cases: list) -> dict:
            n = len(cases)
            cnt = {s: sum(c.status == s for c in cases) for s in ("pass", "fail", "inconclusive")}
            return {"checks": n, **cnt, **{f"{s}_rate": round(v / n, 4) if n else None for s, v in cnt.items()},
                    "passes_median": statistics.median(c.details["passes"] for c in cases) if n else None}

        un = [c for _, k, c in checks if k in unchanged_keys]
        ratios = sorted(c.details["ratio"] for c in un)
        out["false_alarms"] = {
            "unchanged_models": {k: ("int8 tiny w%d, 32x32" % UNCHANGED[k]["width"]) if k in UNCHANGED else
                                 f"int8 tiny w{BASE_WIDTH}, 64x64" for k in unchanged_keys},
            **rates(un),
            "runs_with_a_false_alarm": len({i // (len(unchanged_keys) * 2) for i, c in enumerate(un)
                                            if c.status == "fail"}),
            "which": [f"{c.device} {c.model}: {c.message}" for c in un if c.status == "fail"],
            "ratio_pct": {"p50": round(100 * ratios[len(ratios) // 2], 2),
                          "p95": round(100 * ratios[int(0.95 * (len(ratios) - 1))], 2),
                          "max": round(100 * ratios[-1], 2), "min": round(100 * ratios[0], 2)},
        }
        steps = []
        for w in STEP_WIDTHS[1:]:
            mine = [c for _, k, c in checks if k == f"step_{w}"]
            steps.append({"width": w, "nominal_madds_ratio_pct": round(100 * ((w / BASE_WIDTH) ** 2 - 1), 1),
                          "measured_inflation_pct": round(100 * statistics.median(c.details["ratio"] for c in mine), 1),
                          **rates(mine)})
        out["detection"] = {"baseline_model": f"int8 tiny w{BASE_WIDTH}, 64x64 input", "steps": steps}
        # reliable = this step and every larger one FAIL in >= 95 % of checks
        rel = None
        for s in sorted(steps, key=lambda s: -s["measured_inflation_pct"]):
            if s["fail_rate"] >= 0.95:
                rel = s
            else:
                break
        out["smallest_reliably_detected_regression_pct"] = None if rel is None else rel["measured_inflation_pct"]
        out["check_run_seconds"] = {"median": round(statistics.median(run_seconds), 2),
                                    "models": len(check_models), "devices": 2}
        # ---- 3: wall time, parallel vs one device at a time ---------------------------------------
        wmodels = [(k, f"../{k}.tflite") for k in ("w8", "w64", "w128", "w136", "w144", "w152")]
        wfarm = load_farm(write_farm(work / "w", serials, wmodels))
        wbase = work / "wbaseline.json"
        write_baseline(run_regress(wfarm, wbase, update=True, base_passes=3), wbase)
        times = {"parallel": [], "one_at_a_time": []}
        for r in range(args.walltime_reps):
            for mode, jobs in (("parallel", 0), ("one_at_a_time", 1)) if r % 2 == 0 else \
                    (("one_at_a_time", 1), ("parallel", 0)):
                t = time.monotonic()
                # a wide tolerance: every verdict is clear at the first look, so both modes do the same work
                wres = run_regress(wfarm, wbase, jobs=jobs, tolerances=Tolerances(latency_rel=10.0))
                times[mode].append(round(time.monotonic() - t, 2))
                assert wres.exit_code == 0, [c.message for c in wres.cases if c.status != "pass"]
        out["wall_time"] = {"models": len(wmodels), "devices": 2, "reps": args.walltime_reps,
                            "seconds": times,
                            "median_parallel_s": statistics.median(times["parallel"]),
                            "median_one_at_a_time_s": statistics.median(times["one_at_a_time"]),
                            "speedup": round(statistics.median(times["one_at_a_time"])
                                             / statistics.median(times["parallel"]), 2)}
        # ---- the HTML report in a real browser -----------------------------------------------------
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        if chromium:
            shot = work / "report.png"
            subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                            "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,1800",
                            f"--screenshot={shot}", (report_dir / "report.html").as_uri()],
                           capture_output=True, timeout=120)
            out["html_screenshot"] = {"chromium": True, "png": shot.name,
                                      "bytes": shot.stat().st_size if shot.exists() else 0}
        out["loadavg_end"] = loadavg()
        out["total_seconds"] = round(time.monotonic() - t_all, 1)
    finally:
        for p in peers:
            p.stop()
    atomic_write_text(args.out, json.dumps(out, indent=1) + "\n")
    print(json.dumps({k: out[k] for k in ("false_alarms", "smallest_reliably_detected_regression_pct",
                                          "wall_time")}, indent=1))
    print(f"written {args.out}; report {report_dir / 'report.html'}")


if __name__ == "__main__":
    main()
