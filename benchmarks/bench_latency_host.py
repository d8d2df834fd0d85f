"""Host latency table, predictor accuracy, float vs int8: ``benchmarks/results/latency_host.json``.

What it measures (1 thread, the default protocol: 5 warm-up runs, 50 measured runs, median):

* wall time to build the full host latency table of DEFAULT_SPACE (single-layer int8 exports
  into the shared model cache + measuring every row); goal <= 10 minutes on 2 cores;
* the predictor on >= 200 random whole subnets: share within +-10 % of measured and MAPE,
  held-out (5-fold: each subnet predicted by the overhead fitted on the other folds);
  goal >= 99 % within +-10 %; and on the models bench_specialize.py's searches emitted (which
  random sampling rarely draws: many 7x7 blocks, expand 6), by strategy;
* float32 vs int8 TFLite latency and accuracy of the smallest and largest subnet of the
  trained supernet (``runs/default/supernet.pt``), BN recalibrated, int8 calibrated on real
  training images, reported as measured (int8 was slower than float on the host of TOOLCHAIN).

It is long (hundreds of conversions) and resumable: the table and the subnets are committed
to ``targets/host/latency.sqlite`` row by row and the models stay in ``targets/_models/``,
so a rerun continues where a kill left it (the wall-time figures are then those of the
rerun, and the JSON says so).  Run it in the background::

    nohup .venv/bin/python benchmarks/bench_latency_host.py > benchmarks/results/latency_host.log 2>&1 &

and, when the machine is quieter, time a table build from an empty cache (added to the JSON)::

    .venv/bin/python benchmarks/bench_latency_host.py --fresh-table-timing >> benchmarks/results/latency_host.log 2>&1
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def load_snapshot() -> str:
    """What else is running (the machine is shared): the load average and busy python jobs."""
    import subprocess

    la = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    try:
        ps = subprocess.run(["ps", "-eo", "pcpu,args", "--sort=-pcpu"], capture_output=True, text=True).stdout
        top = [ln.strip()[:110] for ln in ps.splitlines()[1:4] if ln.strip()]
    except OSError:
        top = []
    return f"loadavg {la}; top: {' | '.join(top)}"


def float_vs_int8(target, space, cache: Path, n_test: int, n_calib: int) -> dict:
    import numpy as np
    import torch

    from edgeeas.checkpoint import DEFAULT_SUPERNET, load_supernet
    from edgeeas.data import load_dataset
    from edgeeas.evaluate import predict, recal_images, recalibrate_bn, to_float
    from edgeeas.export import export_tflite_float, export_tflite_int8, tflite_run

    if not DEFAULT_SUPERNET.is_file():
        return {"skipped": f"no trained supernet at {DEFAULT_SUPERNET}"}
    net, meta = load_supernet(DEFAULT_SUPERNET)
    ds = load_dataset(os.environ.get("EDGEEAS_DATA") or (REPO / "data"))
    recal = recal_images(ds, n=2000)
    calib = to_float(recal_images(ds, n=n_calib, seed=1))
    idx = np.sort(np.random.default_rng(0).choice(len(ds.test.labels), n_test, replace=False))
    x, y = ds.test.images[idx], ds.test.labels[idx]
    out = {"supernet": str(DEFAULT_SUPERNET.relative_to(REPO)), "supernet_meta": {k: meta.get(k) for k in
                                                                                  ("epoch", "step") if k in meta},
           "test_images": n_test, "calib_images": n_calib, "head": f"all {space.num_classes} classes (top-1)"}
    xf = to_float(x)
    for which in ("smallest", "largest"):
        arch = getattr(space, which)()
        sub = net.subnet(arch)
        recalibrate_bn(sub, recal)
        with torch.no_grad():
            ref = predict(sub, x).numpy()
        p8 = cache / f"acc_{arch}_int8.tflite"
        pf = cache / f"acc_{arch}_float.tflite"
        t0 = time.perf_counter()
        export_tflite_int8(sub, calib, p8)
        export_tflite_float(sub, pf)
        log(f"{which}: exported float and int8 in {time.perf_counter() - t0:.0f} s")
        nhwc = xf.permute(0, 2, 3, 1).numpy()
        l8 = tflite_run(p8, nhwc)
        lf = tflite_run(pf, nhwc)
        m = target.measure_many([p8, pf])
        acc = lambda logits: round(100.0 * float((logits.argmax(1) == y).mean()), 2)  # noqa: E731
        out[which] = {
            "arch": str(arch), "madds_m": round(space.madds(arch) / 1e6, 3),
            "torch_float_top1_pct": acc(ref), "tflite_float_top1_pct": acc(lf), "tflite_int8_top1_pct": acc(l8),
            "int8_vs_float_top1_agreement_pct": round(100.0 * float((l8.argmax(1) == ref.argmax(1)).mean()), 2),
            "tflite_float_median_ms": round(m[str(pf)].median_ms, 4), "tflite_float_p90_ms": round(m[str(pf)].p90_ms, 4),
            "tflite_int8_median_ms": round(m[str(p8)].median_ms, 4), "tflite_int8_p90_ms": round(m[str(p8)].p90_ms, 4),
            "int8_over_float_latency": round(m[str(p8)].median_ms / m[str(pf)].median_ms, 3),
        }
        log(f"{which}: {json.dumps(out[which])}")
    return out


def check_specialized(target, cache_dir: Path) -> dict | None:
    """The predictor (fitted on random subnets) on the models bench_specialize.py emitted and
    measured: architectures the searches chose, which random sampling rarely draws (e.g. 14
    of 20 blocks 7x7), with trained weights."""
    import numpy as np

    from edgeeas import latency as L

    recs = []
    try:  # only the entries of the run specialize.json reports (older cache keys hold stale models)
        sub = json.loads((REPO / "benchmarks" / "results" / "specialize.json").read_text()).get("cache")
    except (OSError, ValueError):
        sub = None
    pattern = f"{Path(sub).name}/model__*.json" if sub else "*/model__*.json"
    for f in sorted(Path(cache_dir).glob(pattern)):
        r = json.loads(f.read_text())
        if r.get("measured_ms"):
            recs.append(r)
    if not recs:
        return None
    pred = L.LatencyPredictor.load(target)

    def stats(rs):
        e = np.array([100 * (pred.predict(r["arch"], 5) - r["measured_ms"]) / r["measured_ms"] for r in rs])
        return {"n": len(rs), "mape_pct": round(float(np.abs(e).mean()), 2), "mean_error_pct": round(float(e.mean()), 2),
                "within_10_pct": round(float((np.abs(e) <= 10).mean()), 3), "max_ape_pct": round(float(np.abs(e).max()), 1)}

    src = Path(cache_dir) / Path(sub).name if sub else Path(cache_dir)
    out = {"models": len(recs), "source": str(src.relative_to(REPO)) if src.is_relative_to(REPO) else str(src),
           "all": stats(recs)}
    for s in sorted({r["strategy"] for r in recs}):
        out[s] = stats([r for r in recs if r["strategy"] == s])
    return out


def test_retest(target, table, space, cache, archs) -> dict:
    """The same subnets measured again, minutes after the table's figures: how far a
    measurement moves by itself (a predictor cannot be more accurate than this)."""
    import numpy as np

    from edgeeas import latency as L

    first = {(s["arch"], s["num_classes"]): s["median_ms"] for s in table.subnets()}
    paths = {str(L.subnet_model_path(cache, a, L.SUBNET_CLASSES)): str(a) for a in archs}
    t0 = time.perf_counter()
    again = target.measure_many(list(paths))
    d = np.array([100 * (again[p].median_ms - first[(a, L.SUBNET_CLASSES)]) / first[(a, L.SUBNET_CLASSES)]
                  for p, a in paths.items()])
    ad = np.abs(d)
    return {"subnets": len(d), "seconds": round(time.perf_counter() - t0, 1),
            "abs_diff_pct": {"median": round(float(np.median(ad)), 2), "p90": round(float(np.percentile(ad, 90)), 2),
                             "max": round(float(ad.max()), 2), "within_5_pct": round(float((ad <= 5).mean()), 3),
                             "within_10_pct": round(float((ad <= 10).mean()), 3)},
            "mean_diff_pct": round(float(d.mean()), 2),
            "what": "second measurement of the first N predictor subnets vs the table's, same protocol"}


def fresh_table_timing(out_path: Path, threads: int, jobs: int) -> None:
    """Time a full table build from nothing (empty model cache, empty table) in a scratch
    targets root, and record it in the JSON written by the main run."""
    import shutil
    import tempfile

    from device_bench import Protocol

    from edgeeas import latency as L
    from edgeeas.space import DEFAULT_SPACE as space
    from edgeeas.targets import HostTarget, write_json
    from edgeeas.utils import command_line

    jobs = jobs or L.default_export_jobs()
    root = Path(tempfile.mkdtemp(prefix="edgeeas-fresh-table-"))
    try:
        target = HostTarget(protocol=Protocol(threads=threads), root=root)
        before = load_snapshot()
        log(f"fresh table build in {root}; {before}")
        t0 = time.perf_counter()
        reports = L.bench_targets([target], space, subnets=0, progress=True, log=log, export_jobs=jobs)
        wall = time.perf_counter() - t0
        after = load_snapshot()
        r = reports[target.name]
        if r.error:
            raise SystemExit(f"fresh table build failed: {r.error}")
        log(f"fresh table: {r.rows_measured} rows in {wall:.0f} s (measuring {r.extra.get('rows_seconds')} s); {after}")
        result = json.loads(out_path.read_text()) if out_path.exists() else {}
        result.setdefault("table", {})["fresh_build"] = {
            "rows": r.rows_measured, "wall_seconds": round(wall, 1), "measure_seconds": r.extra.get("rows_seconds"),
            "goal_seconds": 600, "export_jobs": jobs, "protocol": target.protocol.to_dict(),
            "load_before": before, "load_after": after,
            "what": "bench_targets from an empty model cache and table (export every row model, measure, no subnets)",
            "command": command_line(), "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        write_json(out_path, result)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subnets", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--test-images", type=int, default=2000)
    ap.add_argument("--calib-images", type=int, default=256)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "latency_host.json"))
    ap.add_argument("--retest", type=int, default=50,
                    help="measure this many of the subnets again after the fit: the measurement's own "
                         "repeatability, the floor under any predictor's error (0: skip)")
    ap.add_argument("--check-models", default=str(REPO / "benchmarks" / "results" / "specialize_cache"),
                    help="bench_specialize.py's cache: the predictor is also checked on those measured models, "
                         "which the searches chose (not random subnets) ('' to skip)")
    ap.add_argument("--export-jobs", type=int, default=None, help="export processes (default: one per CPU, <= 4)")
    ap.add_argument("--fresh-table-timing", action="store_true",
                    help="only time a full table build from an empty cache (scratch dir) and add it to --out")
    args = ap.parse_args()
    if args.fresh_table_timing:
        fresh_table_timing(Path(args.out), args.threads, args.export_jobs)
        return

    from device_bench import Protocol

    from edgeeas import latency as L
    from edgeeas.space import DEFAULT_SPACE as space
    from edgeeas.targets import HostTarget, write_json
    from edgeeas.utils import command_line, machine, versions

    root = REPO / "targets"
    target = HostTarget(protocol=Protocol(threads=args.threads), root=root)
    cache = L.model_cache_dir(space, root)
    rows = L.table_rows(space)
    table = L.LatencyTable.open(target.directory, space, target.protocol, None, target_name=target.name)
    fp = target.fingerprint()
    if not table.meta().get("fingerprint"):
        table.set_meta(fingerprint=fp)
    table.set_meta(fingerprint_last=fp)
    target.store.write_setup(fp, target.protocol)
    resumed = bool(table.rows()) or any(L.row_model_path(cache, r).is_file() for r in rows)
    loads = [load_snapshot()]
    log(f"{len(rows)} rows, {args.subnets} subnets; cache {cache}; resumed={resumed}; {loads[-1]}")

    t0 = time.perf_counter()
    n_exp = L.export_row_models(space, rows, cache, progress=True, workers=args.export_jobs)
    t_export = time.perf_counter() - t0
    log(f"exported {n_exp} row models in {t_export:.0f} s; {load_snapshot()}")
    t1 = time.perf_counter()
    n_meas = L.measure_rows(target, table, rows, cache, progress=True)
    t_measure = time.perf_counter() - t1
    loads.append(load_snapshot())
    log(f"measured {n_meas} rows in {t_measure:.0f} s; table wall {t_export + t_measure:.0f} s; {loads[-1]}")

    table_figures = {
        "rows": len(rows), "rows_measured_this_run": n_meas, "row_models_exported_this_run": n_exp,
        "resumed": resumed,
        "export_seconds": round(t_export, 1), "measure_seconds": round(t_measure, 1),
        "wall_seconds": round(t_export + t_measure, 1), "goal_seconds": 600,
        "path": str(target.store.table_path.relative_to(REPO)),
    }
    # the fresh table-build timing is its own run (--fresh-table-timing): every write keeps it
    try:
        fresh = json.loads(Path(args.out).read_text()).get("table", {}).get("fresh_build")
    except (OSError, ValueError):
        fresh = None
    write_json(Path(args.out), {"status": "partial: table done, subnets pending", "machine": machine(),
                                "versions": versions(), "protocol": target.protocol.to_dict(),
                                "table": {**table_figures, **({"fresh_build": fresh} if fresh else {})},
                                "load": loads})

    archs = L.subnet_archs(space, args.subnets, seed=0)
    t2 = time.perf_counter()
    n_sexp = L.export_subnet_models(space, archs, cache, progress=True, workers=args.export_jobs)
    t_sexport = time.perf_counter() - t2
    log(f"exported {n_sexp} subnet models in {t_sexport:.0f} s")
    t3 = time.perf_counter()
    n_smeas = L.measure_subnets(target, table, archs, cache, progress=True)
    t_smeasure = time.perf_counter() - t3
    loads.append(load_snapshot())
    log(f"measured {n_smeas} subnets in {t_smeasure:.0f} s; {loads[-1]}")
    pred = L.fit_predictor(table, target_name=target.name, fingerprint=fp)
    log(f"predictor: fit {pred['fit']}; held-out {pred['errors']['heldout']}; raw sum {pred['errors']['raw_sum']}")

    retest = test_retest(target, table, space, cache, archs[:args.retest]) if args.retest else None
    specialized = check_specialized(target, Path(args.check_models)) if args.check_models else None
    if specialized:
        log(f"predictor on {specialized['models']} specialized models: {json.dumps(specialized['all'])}")
    if retest:
        log(f"test-retest on {retest['subnets']} subnets: {json.dumps(retest['abs_diff_pct'])}")

    try:
        fvi = float_vs_int8(target, space, cache, args.test_images, args.calib_images)
    except Exception as e:  # noqa: BLE001 - keep the other figures
        log(f"float vs int8 failed: {type(e).__name__}: {e}")
        fvi = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
    loads.append(load_snapshot())

    sizes = sum(p.stat().st_size for p in cache.glob("*.tflite"))
    row_ms = [r["median_ms"] for r in table.rows().values()]
    result = {
        "what": "host latency table of DEFAULT_SPACE, predictor vs whole-subnet measurements, float vs int8",
        "machine": machine(),
        "fingerprint": fp,
        "versions": versions(),
        "protocol": target.protocol.to_dict(),
        "space": space.name,
        "table": {**table_figures, "row_median_ms_range": [round(min(row_ms), 4), round(max(row_ms), 4)]},
        "predictor": {
            "subnets": len(archs), "subnets_measured_this_run": n_smeas,
            "subnet_export_seconds": round(t_sexport, 1), "subnet_measure_seconds": round(t_smeasure, 1),
            "fit": pred["fit"], "heldout": pred["errors"]["heldout"], "in_sample": pred["errors"]["in_sample"],
            "raw_sum_of_rows": pred["errors"]["raw_sum"], "goal_within_10_pct": 0.99,
            "model_selection_heldout_mape_pct": pred.get("model_selection_heldout_mape_pct"),
            "safety_margin_pct_q95": round(100 * L.LatencyPredictor.load(target).safety_margin(), 2),
            "test_retest": retest,
            "specialized_models": specialized,
            "measured_ms_range": [min(p["measured_ms"] for p in pred["errors"]["per_subnet"]),
                                  max(p["measured_ms"] for p in pred["errors"]["per_subnet"])],
            "path": str(target.store.predictor_path.relative_to(REPO)),
        },
        "float_vs_int8": fvi,
        "model_cache_mb": round(sizes / 1e6, 1),
        "load": loads,
        "method": ("latencies: per model, the median over the protocol's passes (each its own runner process) of "
                   "the median of 50 runs at 1 thread; 'load' holds the load average measured at each stage"),
        "command": command_line(),
    }
    if fresh:
        result["table"]["fresh_build"] = fresh
    write_json(Path(args.out), result)
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
