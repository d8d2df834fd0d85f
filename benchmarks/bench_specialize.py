"""Generator vs baselines on the host target, side by side in one run.

    python benchmarks/bench_specialize.py                       # the full benchmark (hours; resumable)
    python benchmarks/bench_specialize.py --superclasses 2 --budgets 2ms,3ms --timing-scenarios 10

(a) time to produce architectures for 50 scenarios (superclass x budget): the generator (one
    batched forward pass, and one call per scenario) vs once-for-all-style evolution (population
    100, 500 evaluations, accuracy predictor trained on measured subnets).  The predictor's
    one-time measurements are reported apart from the search time (once-for-all counts them
    apart too), and both speed-ups are given.
(b) accuracy at budget: superclasses x budgets, every strategy's architecture exported through
    ``edgeeas specialize``'s own code path (BN recalibration, int8 calibration on the scenario,
    head restricted to it, the same latency safety margin for every strategy), then measured on
    the host under the target's own protocol (the one ``edgeeas validate`` uses: 3 passes),
    all models in one sweep; within-superclass int8 accuracy on the scenario's 500 test images,
    at the measured latency.
(c) budget compliance: share of models whose measured latency <= budget; mean utilization.
(d) int8 vs float accuracy drop per scenario.

Everything is cached per (strategy, superclass, budget) in ``--cache`` (a directory, one
JSON file per model, written atomically) as it goes, so an interrupted run resumes and several
build processes can share it; the cache is keyed by the supernet, generator and latency-table
fingerprints, so stale entries are never reused.  ``--superclasses N`` / ``--budgets`` run a
subset; the JSON says which subset was run.

Phases (``--phase``): ``build`` exports the models and their host accuracies (CPU-bound, not
timed: two build processes with disjoint ``--strategies`` may run side by side on 2 cores);
``measure`` then measures every built model's latency in one sweep under the target's
protocol (3 passes) with nothing else running, and writes the JSON; ``all`` (default) does
both in one process::

    python benchmarks/bench_specialize.py --phase build --strategies generator,uniform &
    python benchmarks/bench_specialize.py --phase build --strategies evolution,random &
    wait; python benchmarks/bench_specialize.py --phase measure
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")



# ---- the oracle: a reference for what the best architecture per scenario is (benchmark only) -----
#: the oracle's effort (--oracle-pool/--oracle-top/--oracle-children), recorded in the JSON
ORACLE = {"pool": 150, "top": 4, "children": 5}


def register_oracle() -> None:
    """Register strategy ``oracle`` for this benchmark only (never offered by the CLI).

    Per scenario, as good as this project can make it regardless of cost: *direct* fitness
    (held-out accuracy of BN-recalibrated subnets, :meth:`Evaluator.accuracy_all`), the same
    latency table and margin as every strategy.  A pool of ``pool`` feasible architectures near
    the budget (full predicted cost, crowding included, 80-100 % of it: random ones, topped up by
    random ones grown into the band; the pool depends on the budget only, so the 20 superclasses
    at one budget share its measurements: each subnet is measured on every superclass at once),
    then ``top`` x ``children`` single-decision mutations of the scenario's best.  Measurements
    are cached in ``<run>/oracle-<key>.jsonl`` (apart from the predictor's data, so running the
    oracle never changes the other strategies' fitness)."""
    from edgeeas.search import register_strategy
    from edgeeas.search.registry import STRATEGIES, Proposal

    if "oracle" in STRATEGIES:
        return

    @register_strategy("oracle", help="direct fitness, exhaustive (benchmark only)", style=("black", "*"))
    def oracle(ctx, sc, budget, nc, *, pool: int | None = None, top: int | None = None, children: int | None = None,
               seed: int | None = None):
        from edgeeas.search.cost import Genome
        from edgeeas.search.fitness import AccuracyData, measure_all_superclasses
        from edgeeas.search.strategies import sample_feasible

        pool = ORACLE["pool"] if pool is None else pool
        top = ORACLE["top"] if top is None else top
        children = ORACLE["children"] if children is None else children
        data = _oracle_data(ctx, AccuracyData)
        names = [(n,) for n in ctx.ds.superclasses]
        key = "+".join(ctx.ds.superclasses[s] for s in sc)
        rng = random.Random(f"{ctx.seed if seed is None else seed}:oracle-pool:{budget:.6f}")
        cands, seen = [], set()
        for _ in range(pool * 20):
            if len(cands) >= pool:
                break
            g = sample_feasible(ctx, rng, budget, nc)
            a = g.to_arch(ctx.space)
            # the full prediction (crowding term included), so find_arch's recheck accepts the
            # winner at once and the pool stays one per budget
            full = float(ctx.cost.predict(a, nc))
            if str(a) not in seen and 0.8 * budget <= full <= budget:
                seen.add(str(a))
                cands.append(a)
        # Near the top of the range few random subnets land in the band: grow the ones below it
        # (random single-decision increases that stay under the budget) until the pool is full.
        # A separate seeded rng, so the in-band samples above (and their cached measurements) stay.
        grow_rng = random.Random(f"{ctx.seed if seed is None else seed}:oracle-grow:{budget:.6f}")
        for _ in range(pool * 20):
            if len(cands) >= pool:
                break
            g = sample_feasible(ctx, grow_rng, budget, nc)
            for _step in range(400):
                a = g.to_arch(ctx.space)
                if float(ctx.cost.predict(a, nc)) >= 0.8 * budget:
                    break
                h = g.copy()
                what, st = grow_rng.choice(("d", "e", "k")), grow_rng.randrange(ctx.space.num_stages)
                n_opts = len({"d": ctx.space.depths, "e": ctx.space.expands, "k": ctx.space.kernels}[what])
                if what == "d":
                    h.d[st] = min(h.d[st] + 1, n_opts - 1)
                else:
                    row = (h.e if what == "e" else h.k)[st]
                    b = grow_rng.randrange(len(row))
                    row[b] = min(row[b] + 1, n_opts - 1)
                if float(ctx.cost.predict(h.to_arch(ctx.space), nc)) <= budget:
                    g = h
            a = g.to_arch(ctx.space)
            full = float(ctx.cost.predict(a, nc))
            if str(a) not in seen and 0.8 * budget <= full <= budget:
                seen.add(str(a))
                cands.append(a)
        if not cands:
            raise RuntimeError(f"oracle: no architecture predicted within 80-100 % of {budget:.3f}")
        measure_all_superclasses(ctx.evaluator, data, cands, progress=True, desc=f"oracle pool {budget:.3f}")
        acc = {(r["arch"], tuple(r["superclasses"])): r["acc"] for r in data.records}

        def score(a):
            return sum(acc[(str(a), names[s])] for s in sc) / len(sc)

        best = sorted(cands, key=score, reverse=True)[:top]
        mrng = random.Random(f"{ctx.seed if seed is None else seed}:oracle-mutate:{key}:{budget:.6f}")
        kids = []
        for parent in best:
            made = 0
            for _ in range(200):
                if made >= children:
                    break
                g = Genome.from_arch(parent, ctx.space).copy()
                what, st = mrng.choice(("d", "e", "k")), mrng.randrange(ctx.space.num_stages)
                if what == "d":
                    g.d[st] = mrng.randrange(len(ctx.space.depths))
                else:
                    row = (g.e if what == "e" else g.k)[st]
                    row[mrng.randrange(len(row))] = mrng.randrange(len(ctx.space.expands if what == "e"
                                                                       else ctx.space.kernels))
                a = g.to_arch(ctx.space)
                if str(a) not in seen and float(ctx.cost.predict(a, nc)) <= budget:
                    seen.add(str(a))
                    kids.append(a)
                    made += 1
        measure_all_superclasses(ctx.evaluator, data, kids, progress=False)
        acc = {(r["arch"], tuple(r["superclasses"])): r["acc"] for r in data.records}
        pool_all = cands + kids
        winner = max(pool_all, key=score)
        return Proposal(winner, score(winner), len(pool_all), {"fitness": "direct", "pool": len(cands),
                                                               "children": len(kids)})


def _oracle_data(ctx, AccuracyData):
    import hashlib

    if getattr(ctx, "_oracle_data", None) is None:
        from edgeeas.search.fitness import supernet_fingerprint

        key = {"supernet": supernet_fingerprint(ctx.supernet), **ctx.evaluator.protocol(), "what": "oracle"}
        h = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
        path = ctx.cache_dir / f"oracle-{h}.jsonl" if ctx.cache_dir else None
        ctx._oracle_data = AccuracyData(path, key)
    return ctx._oracle_data


def oracle_cross_superclass_loss(recs, budgets, names, supernet_path, data, recal_images: int, np) -> dict:
    """How much superclass A loses with superclass B's oracle architecture at the same budget:
    float accuracy on A's 500 test images (BN recalibrated as specialize does), mean over A != B,
    per budget and overall, in points.  Evaluated on the test split, not the held-out images the
    oracle chose on, so the winner's curse does not inflate it."""
    from edgeeas.checkpoint import load_supernet, resolve_supernet
    from edgeeas.data import load_dataset
    from edgeeas.evaluate import predict, recal_images as recal_set, recalibrate_bn

    net, _ = load_supernet(resolve_supernet(supernet_path))
    ds = load_dataset(data)
    recal = recal_set(ds, n=recal_images)
    sup = ds.class_to_super[ds.test.labels]
    out, cache = {"per_budget": {}}, {}
    losses = []
    for b in budgets:
        best = {x["superclass"]: x["arch"] for x in recs if x["strategy"] == "oracle" and x["budget"] == b}
        if len(best) < 2:
            continue
        accs = {}
        for a in set(best.values()):
            if a not in cache:
                sub = net.subnet(net.space.parse(a))
                recalibrate_bn(sub, recal)
                logits = predict(sub, ds.test.images)
                per = {}
                for n in names:
                    s = ds.superclass_id(n)
                    rows = np.flatnonzero(sup == s)
                    cols = np.array(ds.classes_of(s))
                    per[n] = 100.0 * float((cols[logits[rows][:, cols].argmax(1).numpy()] == ds.test.labels[rows]).mean())
                cache[a] = per
            accs[a] = cache[a]
        lb = [accs[best[A]][A] - accs[best[B]][A] for A in best for B in best if A != B]
        losses += lb
        out["per_budget"][b] = {"mean_points_lost": round(float(np.mean(lb)), 3),
                                "distinct_oracle_archs": len(set(best.values())), "superclasses": len(best)}
    out["mean_points_lost"] = round(float(np.mean(losses)), 3) if losses else None
    out["note"] = ("acc_A(oracle arch of A) - acc_A(oracle arch of B), same budget, float, test split, mean over "
                   "ordered pairs A != B; positive = the architectures are superclass-specific")
    return out


def _rel(path) -> str:
    """A path as results record it: relative to the project (never this machine's prefix)."""
    from edgeeas.utils import portable_path

    return portable_path(Path(path).resolve())


def registered_strategies() -> list[str]:
    """Every registered search strategy (edgeeas.search.list_strategies): a new one is benchmarked too."""
    from edgeeas.search import list_strategies

    return list_strategies()


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--supernet", default=str(ROOT / "runs" / "default"), help="run directory or supernet .pt")
    p.add_argument("--generator", default=None, help="default: <run>/generator-<target>.pt")
    p.add_argument("--target", default="host")
    p.add_argument("--data", default=None)
    p.add_argument("--superclasses", type=int, default=20, help="first N superclasses for (b)-(d)")
    p.add_argument("--budgets", default="auto",
                   help="comma-separated latency budgets for (b)-(d); auto: 25/50/75%% of the feasible range")
    p.add_argument("--timing-scenarios", type=int, default=50, help="scenarios for (a)")
    p.add_argument("--evolution-evaluations", type=int, default=500,
                   help="fitness evaluations per scenario for evolution, and samples for random search")
    p.add_argument("--population", type=int, default=100)
    p.add_argument("--predictor-samples", type=int, default=200, help="measured subnets per superclass")
    p.add_argument("--strategies", default=",".join(dict.fromkeys(registered_strategies() + ["oracle"])),
                   help="comma-separated; default: every registered strategy and the benchmark's oracle")
    p.add_argument("--recal-images", type=int, default=1000)
    p.add_argument("--calib-images", type=int, default=256)
    p.add_argument("--skip-accuracy", action="store_true", help="only (a)")
    p.add_argument("--models-dir", default=str(ROOT / "out" / "bench"), help="exported models (not committed)")
    p.add_argument("--cache", default=str(ROOT / "benchmarks" / "results" / "specialize_cache"),
                   help="directory of cached per-model results")
    p.add_argument("--phase", choices=("all", "build", "measure"), default="all",
                   help="build: export models only; measure: measure every built model, write the JSON")
    p.add_argument("--reverse", action="store_true",
                   help="build phase: build the models in reverse order (a second build process over the same "
                        "strategies then meets the first in the middle; each skips what the other cached)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "specialize.json"))
    p.add_argument("--plot", default=str(ROOT / "benchmarks" / "results" / "pareto_host.png"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--oracle-pool", type=int, default=ORACLE["pool"],
                   help="oracle: feasible architectures near each budget, measured on every superclass")
    p.add_argument("--oracle-top", type=int, default=ORACLE["top"], help="oracle: best of the pool mutated, per scenario")
    p.add_argument("--oracle-children", type=int, default=ORACLE["children"],
                   help="oracle: single-decision mutations of each of the top, per scenario")
    return p.parse_args(argv)


# ---- cache ---------------------------------------------------------------------------------------
class Cache:
    """One JSON file per entry under ``<dir>/<hash of key>/``: concurrent processes never
    overwrite each other's entries, and a key change (another supernet, generator or table)
    starts a new subdirectory instead of reusing stale results."""

    def __init__(self, path: Path, key: dict):
        import hashlib

        self.key = key
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
        self.dir = Path(path) / digest
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "key.json").write_text(json.dumps(key, indent=1, sort_keys=True) + "\n")

    def _file(self, k: str) -> Path:
        return self.dir / (k.replace("/", "__") + ".json")

    def get(self, k: str):
        try:
            return json.loads(self._file(k).read_text())
        except (OSError, ValueError):
            return None

    def put(self, k: str, v: dict) -> None:
        from edgeeas.utils import atomic_write_text

        atomic_write_text(self._file(k), json.dumps(v, indent=1) + "\n")


def fmt_budget(ms: float) -> str:
    return f"{round(ms, 2):g}ms"


def main(argv=None) -> int:
    register_oracle()  # here, not at import: importing the benchmark must not change the CLI's choices
    args = parse_args(argv)
    ORACLE.update(pool=args.oracle_pool, top=args.oracle_top, children=args.oracle_children)
    import numpy as np
    import torch

    from edgeeas.search import find_arch, parse_budget
    from edgeeas.specialize import SpecializeConfig, Specializer, Scenario
    from edgeeas.utils import atomic_write_text, command_line, machine, sha256_file, versions

    t_start = time.time()
    torch.manual_seed(args.seed)
    strategies = [s for s in args.strategies.split(",") if s]
    base = dict(target=args.target, supernet=args.supernet, generator=args.generator, data=args.data,
                recal_images=args.recal_images, calib_images=args.calib_images, seed=args.seed,
                evaluations=args.evolution_evaluations, population=args.population,
                predictor_samples=args.predictor_samples, fitness="predictor", force=True)
    # One Specializer per strategy: the same supernet, dataset, cost table and fitness protocol.
    gen_sp = Specializer(SpecializeConfig(strategy="generator", **base), log=log)
    budget_probe = parse_budget("1ms")
    gk = gen_sp.kind(budget_probe)            # latency cost model of the target + the generator
    ctx, gen = gk.ctx, gk.generator
    ds, space = gen_sp.ds, gen_sp.space
    lo, hi = ctx.table.bounds(5)
    log(f"target {args.target}: feasible range {lo:.3f}..{hi:.3f} ms (5 classes)")

    key = {"supernet": gen_sp.net_fp, "generator": gk.generator_info["sha256"], "cost": gk.fingerprint,
           "dataset": ds.fingerprint, "recal_images": args.recal_images, "calib_images": args.calib_images,
           "predictor_samples": args.predictor_samples, "evolution_evaluations": args.evolution_evaluations,
           "seed": args.seed}
    cache = Cache(Path(args.cache), key)

    # ---- (a) time to produce architectures ------------------------------------------------------
    # Timed, so only in the measure/all phase (the build phase may share the machine).
    result = {"what": "generator vs evolution, random search and uniform shrinking on the host target",
              "target": args.target, "supernet": gen_sp.supernet_identity(), "generator": gk.generator_info,
              "latency_table": {"source": getattr(gk.cost, "source", ""), "fingerprint": gk.fingerprint,
                                "feasible_range_ms_5_classes": [round(lo, 4), round(hi, 4)]},
              "dataset": gen_sp.dataset_identity(),
              "latency_margin_pct": round(100 * ctx.latency_margin, 2),
              "latency_margin_note": "every strategy aims at budget / (1 + margin); margin = the predictor's "
                                     "95th-percentile held-out under-prediction (--latency-margin auto)"}
    n_sc = min(args.superclasses, ds.num_superclasses)
    if args.phase != "build":
        # The timing scenarios cycle over the superclasses of (b) (all 20 in the full run): evolution's
        # accuracy predictor needs measured subnets of every superclass it searches for.
        rng = random.Random(f"{args.seed}:timing")
        timing_sc = [(i % n_sc, lo + rng.uniform(0.1, 0.9) * (hi - lo)) for i in range(args.timing_scenarios)]
        scen_ids = [[s] for s, _ in timing_sc]
        budgets = [b for _, b in timing_sc]
        # Both sides of (a) run their torch parts (generator MLP, accuracy-predictor MLP) on one
        # thread: on a busy 2-core machine, intra-op threads spin against each other for tiny matmuls.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        gen.generate(scen_ids[:2], budgets[:2])  # warm-up (first-call allocation)

        def best_of(fn, n=20):
            ts = []
            for _ in range(n):
                t0 = time.perf_counter()
                out = fn()
                ts.append(time.perf_counter() - t0)
            return statistics.median(ts), out

        gen_batch_s, archs_g = best_of(lambda: gen.generate(scen_ids, budgets))
        gen_norepair_s, raw = best_of(lambda: gen.generate(scen_ids, budgets, repair=False))
        over_before_repair = sum(ctx.table.arch_cost(a, 5) > b for a, b in zip(raw, budgets))
        gen_each_s = sum(best_of(lambda: gen.generate([sc], [b]), 3)[0] for sc, b in zip(scen_ids, budgets))
        # The same entry point as evolution below: find_arch, with the margin and the full-prediction recheck.
        t0 = time.perf_counter()
        for s_, b_ in timing_sc:
            find_arch("generator", ctx, [s_], parse_budget(f"{b_:.6f}ms"))
        gen_find_arch_s = time.perf_counter() - t0
        assert all(ctx.table.arch_cost(a, 5) <= b * (1 + 1e-9) for a, b in zip(archs_g, budgets))

        evo = cache.get("timing/evolution")
        if evo is None or evo.get("n") != len(timing_sc):
            torch.set_num_threads(threads)  # measuring subnets: full conv work, use every thread
            measure_s = 0.0
            for s in sorted({s for s, _ in timing_sc}):
                t0 = time.perf_counter()
                ctx.predictor([s])  # one-time: measure predictor_samples subnets of this superclass (disk-cached)
                measure_s += time.perf_counter() - t0
                log(f"(a) accuracy predictor data for {ds.superclasses[s]}: {measure_s:.0f} s so far")
            ctx.predictor([0])  # the predictor trained on every record, before timing searches
            torch.set_num_threads(1)
            t0 = time.perf_counter()
            search_s, evals = [], []
            for s, b in timing_sc:
                r = find_arch("evolution", ctx, [s], parse_budget(f"{b:.6f}ms"), evaluations=args.evolution_evaluations,
                              population=min(args.population, args.evolution_evaluations), fitness="predictor")
                search_s.append(r.seconds)
                evals.append(r.evaluations)
            evo = {"n": len(timing_sc), "search_seconds_total": sum(search_s),
                   "search_seconds_per_scenario_median": statistics.median(search_s),
                   "evaluations_per_scenario": statistics.median(evals),
                   "predictor_measurement_seconds": round(measure_s, 2),
                   "predictor_measurements": ctx.evaluator.measurements,
                   "wall_seconds": round(time.perf_counter() - t0, 3)}
            cache.put("timing/evolution", evo)
        timing = {
            "scenarios": len(timing_sc),
            "budgets_ms": [round(b, 4) for b in budgets],
            "torch_threads": 1,
            "generator": {"batched_seconds_all": gen_batch_s, "batched_ms_all": round(gen_batch_s * 1e3, 3),
                          "batched_ms_all_without_repair": round(gen_norepair_s * 1e3, 3),
                          "over_budget_before_repair": int(over_before_repair),
                          "one_call_per_scenario_seconds_all": gen_each_s, "repeats": 20,
                          "find_arch_seconds_all": round(gen_find_arch_s, 4),
                          "goal_ms": 10.0, "meets_goal": gen_batch_s * 1e3 <= 10.0},
            "evolution": evo,
            "speedup_search_only": evo["search_seconds_total"] / gen_batch_s,
            "speedup_find_arch_vs_find_arch": evo["search_seconds_total"] / gen_find_arch_s,
            "speedup_including_predictor_data": (evo["search_seconds_total"] + evo["predictor_measurement_seconds"])
            / gen_batch_s,
            "speedup_goal": 1e4,
        }
        timing["meets_speedup_goal"] = timing["speedup_search_only"] >= 1e4
        torch.set_num_threads(threads)
        log(f"(a) generator {gen_batch_s * 1e3:.2f} ms for {len(timing_sc)} scenarios; evolution "
            f"{evo['search_seconds_total']:.1f} s search (+{evo['predictor_measurement_seconds']:.0f} s predictor data); "
            f"speed-up {timing['speedup_search_only']:.3g}x")

        result["timing"] = timing

    # ---- (b)-(d) accuracy at budget, measured latency ---------------------------------------------
    if not args.skip_accuracy:
        if args.budgets == "auto":
            budget_list = [parse_budget(fmt_budget(lo + f * (hi - lo))) for f in (0.25, 0.5, 0.75)]
        else:
            budget_list = [parse_budget(b) for b in args.budgets.split(",")]
        names = ds.superclasses[:args.superclasses]
        sps = {"generator": gen_sp}
        for s in strategies:
            if s not in sps:
                sps[s] = Specializer(SpecializeConfig(strategy=s, **base), log=lambda m: None)
        jobs = [(s, n, b) for n in names for b in budget_list for s in strategies]
        def cached(k: str):
            """A built model's record; an oracle record of another effort counts as not built."""
            r = cache.get(k)
            if r is not None and r.get("strategy") == "oracle" and r.get("oracle_effort") != ORACLE:
                return None
            return r

        done = sum(1 for s, n, b in jobs if cached(f"model/{s}/{n}/{b}"))
        log(f"(b) {len(jobs)} models ({len(names)} superclasses x {len(budget_list)} budgets x "
            f"{len(strategies)} strategies), {done} cached")
        for i, (s, n, b) in (reversed(list(enumerate(jobs))) if args.reverse else enumerate(jobs)):
            k = f"model/{s}/{n}/{b}"
            if cached(k):
                continue
            t0 = time.time()
            sp = sps[s]
            sp.out = Path(args.models_dir) / s / args.target
            plan = sp.plan([Scenario((n,), b)])[0]
            m = sp.build(plan)
            rec = {"strategy": s, "superclass": n, "budget": str(b), "budget_ms": b.value, "arch": m.arch,
                   "predicted_ms": m.predicted_latency_ms, "model": _rel(plan.dest / "model.tflite"),
                   "aimed_budget_ms": m.search.get("aimed_budget"),
                   "acc_float": m.accuracy.host_float_pct, "acc_int8": m.accuracy.host_int8_pct,
                   "int8_drop": m.accuracy.host_float_pct - m.accuracy.host_int8_pct,
                   "madds_m": m.madds_m, "search_seconds": m.search["seconds"],
                   "model_sha256": sha256_file(plan.dest / "model.tflite"), "seconds": round(time.time() - t0, 1)}
            if s == "oracle":
                rec["oracle_effort"] = dict(ORACLE)
            cache.put(k, rec)
            log(f"(b) [{i + 1}/{len(jobs)}] {s:<9} {n:<30} {b}: predicted {rec['predicted_ms']:.3f} ms, "
                f"int8 {rec['acc_int8']:.1f}% ({rec['seconds']:.0f} s)")
        if args.phase == "build":
            log("build phase done; run --phase measure (with nothing else running) to measure and report")
            return 0
        recs = [cached(f"model/{s}/{n}/{b}") for s, n, b in jobs]
        unbuilt = [f"{s}/{n}/{b}" for (s, n, b), r in zip(jobs, recs) if r is None]
        if unbuilt:
            raise SystemExit(f"{len(unbuilt)} models are not built yet (e.g. {unbuilt[0]}): run --phase build")
        stale = [r["model"] for r in recs if not (ROOT / r["model"]).is_file() or
                 sha256_file(ROOT / r["model"]) != r["model_sha256"]]
        if stale:
            raise SystemExit(f"{stale[0]} is missing or changed since it was built: delete {cache.dir} and rebuild")
        # One sweep over every model, under the target's own protocol (what validate uses): the
        # target's passes spread each model's runs over the whole sweep.
        from edgeeas.validation import target_protocol
        from edgeeas.targets import resolve_target

        target = resolve_target(args.target, protocol=target_protocol(args.target))
        todo = {str(ROOT / r["model"]): (s, n, b) for (s, n, b), r in zip(jobs, recs) if "measured_ms" not in r}
        log(f"(c) measuring {len(todo)} models on {args.target} ({target.protocol.passes} passes); "
            f"{len(recs) - len(todo)} already measured")

        def on_result(path, meas):
            s, n, b = todo[str(path)]
            k = f"model/{s}/{n}/{b}"
            rec = cache.get(k)
            rec.update(measured_ms=meas.median_ms, measured_p90_ms=meas.p90_ms,
                       pass_medians_ms=list(meas.pass_medians_ms), within_budget=meas.median_ms <= b.value,
                       utilization=meas.median_ms / b.value, measured_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
            cache.put(k, rec)

        t_meas = time.perf_counter()
        target.measure_many([Path(p) for p in todo], on_result=on_result)
        log(f"(c) measured in {time.perf_counter() - t_meas:.0f} s")
        recs = [cache.get(f"model/{s}/{n}/{b}") for s, n, b in jobs]
        result["accuracy"] = summarize(recs, strategies, [str(b) for b in budget_list], names, np)
        if "oracle" in strategies:
            result["oracle_effort"] = dict(ORACLE)
            result["oracle_cross_superclass_loss"] = oracle_cross_superclass_loss(
                recs, [str(b) for b in budget_list], names, args.supernet, args.data, args.recal_images, np)
        result["subset"] = {"superclasses": list(names), "budgets": [str(b) for b in budget_list],
                            "full": len(names) == 20 and len(budget_list) == 3,
                            "note": "" if len(names) == 20 and len(budget_list) == 3 else
                            "a subset of the 20 superclasses x 3 budgets grid was run"}
        result["models"] = recs
        plot(recs, strategies, Path(args.plot), args.target)
        result["plot"] = os.path.relpath(args.plot, Path(args.out).parent)

    result.update({"cache": os.path.relpath(cache.dir, ROOT),  # this run's entries (older keys are stale)
                   "command": command_line(), "versions": versions(), "machine": machine(),
                   "seconds": round(time.time() - t_start, 1), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    atomic_write_text(Path(args.out), json.dumps(result, indent=1) + "\n")
    log(f"wrote {args.out}")
    return 0


def summarize(recs, strategies, budgets, names, np) -> dict:
    out = {"per_strategy": {}, "per_budget": {}, "goals": {}}
    for s in strategies:
        r = [x for x in recs if x["strategy"] == s]
        if not r:
            continue
        out["per_strategy"][s] = {
            "models": len(r),
            "mean_acc_int8": round(float(np.mean([x["acc_int8"] for x in r])), 3),
            "mean_acc_float": round(float(np.mean([x["acc_float"] for x in r])), 3),
            "mean_measured_ms": round(float(np.mean([x["measured_ms"] for x in r])), 4),
            "budget_compliance": round(float(np.mean([x["within_budget"] for x in r])), 4),
            "mean_utilization": round(float(np.mean([x["utilization"] for x in r])), 4),
            "mean_int8_drop": round(float(np.mean([x["int8_drop"] for x in r])), 3),
            "max_int8_drop": round(float(np.max([x["int8_drop"] for x in r])), 3),
            "mean_predicted_error_pct": round(float(np.mean([100 * (x["predicted_ms"] - x["measured_ms"])
                                                              / x["measured_ms"] for x in r])), 2),
        }
        out["per_budget"][s] = {b: round(float(np.mean([x["acc_int8"] for x in r if x["budget"] == b])), 3)
                                for b in budgets if any(x["budget"] == b for x in r)}
    ps = out["per_strategy"]
    if "generator" in ps:
        g = ps["generator"]["mean_acc_int8"]
        if "evolution" in ps:
            out["goals"]["generator_ge_evolution"] = {"generator": g, "evolution": ps["evolution"]["mean_acc_int8"],
                                                      "met": g >= ps["evolution"]["mean_acc_int8"]}
        if "uniform" in ps:
            out["goals"]["generator_ge_uniform_plus_2"] = {"generator": g, "uniform": ps["uniform"]["mean_acc_int8"],
                                                           "met": g >= ps["uniform"]["mean_acc_int8"] + 2}
        out["goals"]["compliance_100pct"] = {s: ps[s]["budget_compliance"] for s in ps}
        out["goals"]["int8_drop_le_0.5"] = {s: {"mean": ps[s]["mean_int8_drop"], "met": ps[s]["mean_int8_drop"] <= 0.5}
                                            for s in ps}
    out["distinct_archs_per_budget"] = {
        st: {b: len({x["arch"] for x in recs if x["strategy"] == st and x["budget"] == b}) for b in budgets}
        for st in ("generator", "oracle") if any(x["strategy"] == st for x in recs)}
    if "generator" in ps and "oracle" in ps:
        out["goals"]["generator_within_1_of_oracle"] = {"generator": ps["generator"]["mean_acc_int8"],
                                                        "oracle": ps["oracle"]["mean_acc_int8"],
                                                        "met": ps["generator"]["mean_acc_int8"]
                                                        >= ps["oracle"]["mean_acc_int8"] - 1}
    # Paired by scenario (superclass, budget): generator minus each other strategy, with a 95 %
    # bootstrap interval over scenarios (2,000 resamples, seed 0): the differences are small next to
    # one model's noise on 500 test images (~2 points), so a mean alone would overstate them.
    if "generator" in ps:
        by = {(x["strategy"], x["superclass"], x["budget"]): x["acc_int8"] for x in recs}
        keys = sorted({(x["superclass"], x["budget"]) for x in recs if x["strategy"] == "generator"})
        rng = np.random.default_rng(0)
        out["paired_generator_minus"] = {}
        for s in ps:
            if s == "generator" or not all((s, *k) in by for k in keys):
                continue
            d = np.array([by[("generator", *k)] - by[(s, *k)] for k in keys])
            boot = d[rng.integers(0, len(d), (2000, len(d)))].mean(1)
            out["paired_generator_minus"][s] = {"mean_points": round(float(d.mean()), 3),
                                                "ci95": [round(float(np.percentile(boot, 2.5)), 3),
                                                         round(float(np.percentile(boot, 97.5)), 3)],
                                                "scenarios": len(d)}
    out["int8_drop_per_scenario"] = {f"{x['strategy']}/{x['superclass']}/{x['budget']}": round(x["int8_drop"], 3)
                                     for x in recs}
    return out


def plot(recs, strategies, path: Path, target: str) -> None:
    """Every model (faint) and each strategy's mean per budget (bold, joined): int8 accuracy vs
    measured latency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from edgeeas.report import strategy_style
    from edgeeas.utils import save_figure

    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=110)
    for s in strategies:
        r = [x for x in recs if x["strategy"] == s]
        if not r:
            continue
        color, marker = strategy_style(s)
        ax.scatter([x["measured_ms"] for x in r], [x["acc_int8"] for x in r], s=10, alpha=0.25, color=color,
                   marker=marker)
        bs = sorted({x["budget_ms"] for x in r})
        mx = [np.mean([x["measured_ms"] for x in r if x["budget_ms"] == b]) for b in bs]
        my = [np.mean([x["acc_int8"] for x in r if x["budget_ms"] == b]) for b in bs]
        ax.plot(mx, my, color=color, marker=marker, lw=2, ms=7,
                label=f"{s}: mean {np.mean([x['acc_int8'] for x in r]):.1f}%")
    for b in sorted({x["budget_ms"] for x in recs}):
        ax.axvline(b, color="k", lw=0.6, ls=":", alpha=0.6)
    n_sc = len({x["superclass"] for x in recs})
    ax.set_xlabel(f"measured latency on {target} (ms); dotted: budgets")
    ax.set_ylabel("within-superclass int8 accuracy (%)")
    ax.set_title(f"{n_sc} superclasses x {len({x['budget'] for x in recs})} budgets: each model (faint), "
                 f"mean per budget (bold)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    save_figure(fig, path)


if __name__ == "__main__":
    sys.exit(main())
