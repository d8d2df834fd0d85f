"""Why a generator does or does not specialize -> benchmarks/results/generator.json

    .venv/bin/python benchmarks/bench_generator.py                          # every part
    .venv/bin/python benchmarks/bench_generator.py --only signal --archs 40 # one part

Parts (each merged into the JSON as it finishes; the supernet's fingerprint is recorded):
  distinct   how many distinct architectures a generator file gives the 20 superclasses at
             each of 5 budgets (1 = superclass-blind in practice).
  gradient   the old "supernet" accuracy term (one scenario's cross-entropy per step, GDAS-style
             straight-through): over repeated draws for one fixed (superclass, budget), the
             signal-to-noise ratio of its gradient on the generator's logits, and the size of
             its gradient on the superclass input weights against the budget term's gradient on
             the shared weights.  Low SNR and a small superclass share mean the superclass input
             gets almost nothing to learn from.
  signal     is there anything superclass-specific to learn?  ``--archs`` random subnets measured
             on every superclass's held-out images (one recalibration and one forward pass per
             subnet): each accuracy splits into a subnet effect (its mean over superclasses), a
             superclass effect (mean over subnets) and a residual, the superclass-specific part.
             The residual's variance is compared with the binomial measurement noise of
             ``--val-images`` images; a residual no larger than the noise means per-superclass
             architecture preferences cannot be told from chance on this supernet.
  landscape  the synthetic test (tests/test_generator_landscape.py) with figures: a conditioned
             and a superclass-blind generator on a landscape whose best architecture differs by
             superclass, with their mean landscape accuracy.
  predictor  the shipped accuracy predictor (ridge with architecture x superclass interactions,
             AccuracyPredictor) against once-for-all's MLP (2 x 256 ReLU, full-batch Adam), both
             fitted on the same measured records of runs/default (the generator's cached data):
             RMSE on held-out architectures, on the oracle's measured architectures (chosen near
             budgets, not at random), and over-prediction where a search exploits the predictor:
             each predictor's best of ``--pool`` random subnets under 3 MAdds budgets for
             ``--exploit-superclasses`` superclasses, measured on the held-out images; predicted
             minus measured is the error a search would act on.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "results" / "generator.json"


def _merge(part: str, figures: dict, args) -> None:
    from edgeeas.utils import atomic_write_text, command_line, machine, versions

    doc = json.loads(OUT.read_text()) if OUT.exists() else {}
    doc[part] = {**figures, "command": command_line(), "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    doc["machine"], doc["versions"] = machine(), versions()
    atomic_write_text(OUT, json.dumps(doc, indent=2) + "\n")
    print(json.dumps({part: figures}, indent=2), flush=True)


def _rel(p: Path) -> str:
    p = Path(p).resolve()
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else p.name


def _load(args):
    from edgeeas.checkpoint import load_supernet
    from edgeeas.data import load_dataset
    from edgeeas.search.fitness import supernet_fingerprint

    ds = load_dataset(args.data or (ROOT / "data" if (ROOT / "data").exists() else None))
    net, _ = load_supernet(args.supernet)
    return ds, net, {"supernet": _rel(args.supernet), "supernet_fingerprint": supernet_fingerprint(net)}


def part_distinct(args) -> None:
    from edgeeas.search import load_cost
    from edgeeas.search.generator import load_generator

    ds, net, ident = _load(args)
    cost, name = load_cost(net.space, target=args.target)
    g = load_generator(args.generator, net, cost, ds, cost_name=name)
    lo, hi = g.table.bounds(5)
    res = {}
    for frac in (0.1, 0.3, 0.5, 0.7, 0.9):
        b = lo + frac * (hi - lo)
        archs = g.generate([[s] for s in range(ds.num_superclasses)], [b] * ds.num_superclasses)
        res[f"{b:.3f}"] = len({str(a) for a in archs})
    _merge("distinct", {**ident, "generator": _rel(args.generator), "target": name,
                        "accuracy_term": g.meta.get("accuracy_identity", {}).get("accuracy", "supernet"),
                        "distinct_archs_over_20_superclasses_per_budget": res}, args)


def part_gradient(args) -> None:
    import copy

    import numpy as np
    import torch
    import torch.nn.functional as F

    from edgeeas.search import load_cost
    from edgeeas.search.cost import CostTable
    from edgeeas.search.fitness import Evaluator
    from edgeeas.search.generator import ArchGenerator, _st_forward, _st_gumbel, expected_cost
    from edgeeas.train import augment

    torch.set_num_threads(args.threads)
    ds, supernet, ident = _load(args)
    cost, name = load_cost(supernet.space, target=args.target)
    space = supernet.space
    table = CostTable(cost, space)
    n_sup = ds.num_superclasses
    net = copy.deepcopy(supernet).train()
    net.requires_grad_(False)
    from edgeeas.search.generator import load_generator

    model = load_generator(args.generator, supernet, cost, ds, cost_name=name).model.train()
    ev = Evaluator(supernet, ds)
    lo, hi = table.bounds(5)
    table_t = torch.as_tensor(table.table, dtype=torch.float32)
    active = torch.as_tensor(table.active, dtype=torch.float32)
    sc = [args.superclass]
    pool, pool_all = ev.fit_indices(sc), ev.fit_indices(list(range(n_sup)))
    grads, sup_grads, lat_grads = [], [], []
    rng = np.random.default_rng(0)
    for i in range(args.draws):
        mh = torch.zeros(1, n_sup)
        mh[0, sc] = 1
        b01 = torch.tensor([0.5])
        ld, le, lk = model(mh, b01)
        gen = torch.Generator().manual_seed(i)
        wd, we, wk = (_st_gumbel(t, 1.0, gen) for t in (ld, le, lk))
        idx_sc = rng.choice(pool, 24, replace=False)
        idx = np.concatenate([idx_sc, rng.choice(pool_all, 24, replace=False)])
        x = augment(ds.train.images[idx], rng)
        classes = ev.classes(sc)
        y = torch.as_tensor(np.searchsorted(classes, ds.train.labels[idx_sc]))
        ce = F.cross_entropy(net.head(_st_forward(net, x, wd[0], we[0], wk[0], space))[:24, classes], y)
        model.zero_grad()
        g_out = torch.autograd.grad(ce, [ld, le, lk], retain_graph=True)
        grads.append(torch.cat([t.reshape(-1) for t in g_out]))
        g_sup = torch.autograd.grad(ce, model.net[0].weight, retain_graph=True)[0][:, args.superclass]
        sup_grads.append(g_sup)
        budget = torch.tensor([lo + 0.5 * (hi - lo)])
        r = expected_cost(table_t, active, torch.tensor([table.fixed(5)]), ld.softmax(-1), le.softmax(-1),
                          lk.softmax(-1)) / budget
        lat = (10 * F.relu(r - 1) + F.relu(1 - r)).mean()
        g_lat = torch.autograd.grad(lat, model.net[0].weight)[0][:, args.superclass]
        lat_grads.append(float(g_lat.norm()))
        print(f"draw {i + 1}/{args.draws}: ce {ce.item():.3f}", flush=True)
    G = torch.stack(grads)
    mean, std = G.mean(0), G.std(0)
    snr = float(mean.norm() / (std.norm() / args.draws ** 0.5 + 1e-12))
    GS = torch.stack(sup_grads)
    ce_sup = [float(g.norm()) for g in GS]
    _merge("gradient", {
        **ident, "target": name, "superclass": ds.superclasses[args.superclass], "draws": args.draws,
        "ce_gradient_snr_of_the_mean_over_draws": round(snr, 3),
        "ce_gradient_snr_single_draw": round(float(mean.norm() / (std.norm() + 1e-12)), 4),
        "ce_grad_norm_on_the_superclass_input_median": statistics.median(ce_sup),
        "ce_grad_on_the_superclass_input_snr_single_draw": round(float(GS.mean(0).norm() / (GS.std(0).norm() + 1e-12)), 4),
        "budget_grad_norm_on_the_superclass_input_median": statistics.median(lat_grads),
        "budget_term_scenarios_per_step": 65, "accuracy_term_scenarios_per_step": 1,
        "note": "one draw = one step of the old accuracy term: a straight-through Gumbel sample (tau 1) and 24 "
                "scenario images; SNR = |mean gradient| / |std| over draws on the generator's output logits "
                "(single draw) and of the mean of all draws; the budget term's gradient is from the "
                "shipped generator at half the feasible range; 'superclass input' = the first layer's weights "
                "of that superclass's multi-hot entry",
    }, args)


def part_signal(args) -> None:
    import numpy as np

    from edgeeas.search.fitness import Evaluator

    ds, net, ident = _load(args)
    ev = Evaluator(net, ds, val_images=args.val_images, recal_images=500, seed=0)
    rng = random.Random(f"signal:{args.archs}")
    archs = [net.space.smallest(), net.space.largest()] + [net.space.sample(rng) for _ in range(args.archs - 2)]
    from tqdm import tqdm

    A = np.zeros((len(archs), ds.num_superclasses))
    for i, a in enumerate(tqdm(archs, desc="subnets x 20 superclasses", unit="subnet")):
        for s, v in ev.accuracy_all(a).items():
            A[i, s] = v
    grand = A.mean()
    arch_eff = A.mean(1, keepdims=True) - grand
    sup_eff = A.mean(0, keepdims=True) - grand
    resid = A - grand - arch_eff - sup_eff
    dof = (A.shape[0] - 1) * (A.shape[1] - 1)
    resid_var = float((resid ** 2).sum() / dof)
    p = A / 100.0
    noise_var = float((100 ** 2 * p * (1 - p) / args.val_images).mean())
    # best subnet per superclass among those of similar MAdds (the middle third)
    madds = np.array([net.space.madds(a) for a in archs])
    mid = np.argsort(madds)[len(archs) // 3: 2 * len(archs) // 3]
    best = [int(mid[np.argmax(A[mid, s])]) for s in range(ds.num_superclasses)]
    _merge("signal", {
        **ident, "subnets": len(archs), "val_images_per_superclass": args.val_images,
        "accuracy_mean": round(float(grand), 2),
        "subnet_effect_sd_points": round(float(arch_eff.std()), 3),
        "superclass_effect_sd_points": round(float(sup_eff.std()), 3),
        "superclass_specific_residual_sd_points": round(resid_var ** 0.5, 3),
        "measurement_noise_sd_points": round(noise_var ** 0.5, 3),
        "residual_to_noise_variance_ratio": round(resid_var / noise_var, 3),
        "distinct_best_subnets_in_middle_third_by_madds": len(set(best)),
        "largest_minus_smallest_points": round(float(A[1].mean() - A[0].mean()), 2),
        "note": "two-way decomposition of held-out accuracy (subnet x superclass). The binomial noise is that of "
                "independent samples; every subnet is measured on the same images, so the noise between subnets is "
                "smaller and the ratio is not a signal-to-noise test (a split-half estimate is still to do). What it "
                "does show: the subnet effect (how much the subnet matters at all) against the superclass-specific "
                "residual",
    }, args)


def part_landscape(args) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    import test_generator_landscape as T

    from edgeeas.data import load_dataset

    ds = load_dataset(args.data or (ROOT / "data" if (ROOT / "data").exists() else None))
    res = {}
    for blind in (False, True):
        t0 = time.time()
        g, table, W = T._train(ds, blind=blind)
        st = T._stats(g, table, W, ds.num_superclasses)
        res["blind" if blind else "conditioned"] = {**{k: round(float(v), 4) for k, v in st.items()},
                                                     "train_seconds": round(time.time() - t0, 1)}
    _merge("landscape", {**res, "note": "even superclasses gain from 7x7 kernels, odd ones from expand 6 "
                                        "(tests/test_generator_landscape.py); acc = mean landscape accuracy of the "
                                        "generated archs at half the feasible MAdds range; k7/e6 = share of active "
                                        "blocks"}, args)


class MLPPredictor:
    """The accuracy predictor edgeeas used before the ridge model (once-for-all's, sized down):
    MLP(one-hot architecture + superclass multi-hot) -> accuracy fraction, 2 hidden layers of 256
    ReLU units, full-batch Adam on MSE (lr 1e-3, weight decay 1e-4, 300 epochs), output offset
    by the mean.  Kept here only as the baseline of the ``predictor`` part."""

    def __init__(self, in_features: int, hidden: int = 256, seed: int = 0):
        import torch
        from torch import nn

        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 1))
        self.offset = 0.0

    def __call__(self, x):
        return self.net(x).squeeze(-1) + self.offset

    def fit(self, x, y, epochs: int = 300, lr: float = 1e-3, weight_decay: float = 1e-4) -> None:
        import torch

        self.offset = float(y.mean())
        opt = torch.optim.Adam(self.net.parameters(), lr=lr, weight_decay=weight_decay)
        for _ in range(epochs):
            opt.zero_grad()
            loss = ((self(x) - y) ** 2).mean()
            loss.backward()
            opt.step()


def part_predictor(args) -> None:
    import hashlib

    import numpy as np
    import torch
    from tqdm import tqdm

    from edgeeas.search.fitness import AccuracyData, AccuracyPredictor, Evaluator, encode, supernet_fingerprint

    torch.set_num_threads(args.threads)
    ds, net, ident = _load(args)
    space, S = net.space, ds.num_superclasses
    ev = Evaluator(net, ds, recal_images=500, val_images=500, seed=0)  # the generator's (GeneratorConfig)
    run = Path(args.supernet).parent

    def data(what: str | None) -> AccuracyData:
        key = {"supernet": supernet_fingerprint(net), **ev.protocol(), **({"what": what} if what else {})}
        h = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
        path = run / f"{what or 'accuracy'}-{h}.jsonl"
        if not path.is_file():
            raise SystemExit(f"{_rel(path)} is missing: `make generators` measures the predictor's data "
                             f"(and bench_specialize.py the oracle's) for this supernet")
        return AccuracyData(path, key)

    def xy(recs):
        archs = [space.parse(r["arch"]) for r in recs]
        x = encode(archs, [[ds.superclass_id(n) for n in r["superclasses"]] for r in recs], space, S)
        return x, torch.tensor([r["acc"] / 100.0 for r in recs], dtype=torch.float32)

    train_all = data(None).records
    oracle = data("oracle").records
    archs = sorted({r["arch"] for r in train_all})
    rng = random.Random(f"predictor:{args.heldout_archs}")
    held = set(rng.sample(archs, args.heldout_archs))
    fit_recs = [r for r in train_all if r["arch"] not in held]
    seen = {r["arch"] for r in train_all}
    tests = {"heldout_random_archs": [r for r in train_all if r["arch"] in held],
             "oracle_archs_near_budgets": [r for r in oracle if r["arch"] not in seen]}
    x, y = xy(fit_recs)
    t0 = time.time()
    ridge = AccuracyPredictor(x.shape[1], S)
    ridge.fit(x, y, seed=0)
    t_ridge = time.time() - t0
    t0 = time.time()
    mlp = MLPPredictor(x.shape[1], seed=0)
    mlp.fit(x, y)
    t_mlp = time.time() - t0
    models = {"ridge": ridge, "mlp": mlp}

    def rmse(model, recs):
        xt, yt = xy(recs)
        with torch.no_grad():
            return round(100 * float(((model(xt) - yt) ** 2).mean().sqrt()), 3)

    errors = {name: {t: rmse(m, recs) for t, recs in tests.items() if recs} for name, m in models.items()}
    print(json.dumps({"rmse_points": errors}), flush=True)

    # exploitation: each predictor's best of a random pool under each budget, then measured
    rng = random.Random("predictor-pool")
    pool = [space.sample(rng) for _ in range(args.pool)]
    madds = np.array([space.madds(a) for a in pool], dtype=float)
    lo, hi = space.madds(space.smallest()), space.madds(space.largest())
    budgets = [lo + f * (hi - lo) for f in (0.25, 0.5, 0.75)]
    sups = [round(i * S / args.exploit_superclasses) for i in range(args.exploit_superclasses)]
    picks = []  # (predictor, superclass, budget, arch, predicted %)
    with torch.no_grad():
        for name, m in models.items():
            for s in sups:
                pred = 100 * m(encode(pool, [[s]] * len(pool), space, S)).numpy()
                for b in budgets:
                    i = int(np.argmax(np.where(madds <= b, pred, -np.inf)))
                    picks.append((name, s, b, pool[i], float(pred[i])))
    measured: dict[str, dict[int, float]] = {}
    todo = list(dict.fromkeys(str(p[3]) for p in picks))
    for a in tqdm(todo, desc="picked subnets x 20 superclasses", unit="subnet"):
        measured[a] = ev.accuracy_all(space.parse(a))
    exploit = {}
    for name in models:
        rows = [(p[4], measured[str(p[3])][p[1]]) for p in picks if p[0] == name]
        over = [pr - me for pr, me in rows]
        exploit[name] = {"picks": len(rows), "distinct_archs": len({str(p[3]) for p in picks if p[0] == name}),
                         "mean_predicted_pct": round(statistics.mean(pr for pr, _ in rows), 2),
                         "mean_measured_pct": round(statistics.mean(me for _, me in rows), 2),
                         "mean_over_prediction_points": round(statistics.mean(over), 2),
                         "max_over_prediction_points": round(max(over), 2)}
    _merge("predictor", {
        **ident, "fit_records": len(fit_recs), "fit_archs": len(archs) - len(held),
        "test_records": {t: len(r) for t, r in tests.items()},
        "rmse_points": errors, "ridge_strengths": list(ridge.strengths or ()),
        "ridge_cv_rmse_points": round(ridge.cv_rmse, 3) if ridge.cv_rmse is not None else None,
        "fit_seconds": {"ridge_with_cv": round(t_ridge, 1), "mlp": round(t_mlp, 1)},
        "exploitation": {"pool": args.pool, "superclasses": [ds.superclasses[s] for s in sups],
                         "madds_budgets_m": [round(b / 1e6, 2) for b in budgets], **exploit},
        "note": "accuracies are % on each superclass's 500 held-out training images (BN recalibrated on 500 "
                "images), the generator's protocol; over-prediction = predicted - measured of each predictor's "
                "argmax, averaged over superclasses x budgets",
    }, args)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=("distinct", "gradient", "signal", "landscape", "predictor"), action="append")
    ap.add_argument("--data", default=None)
    ap.add_argument("--supernet", default=str(ROOT / "runs" / "default" / "supernet.pt"))
    ap.add_argument("--generator", default=str(ROOT / "runs" / "default" / "generator-host.pt"))
    ap.add_argument("--target", default="host")
    ap.add_argument("--superclass", type=int, default=18, help="gradient: superclass id (18 = vehicles_1)")
    ap.add_argument("--draws", type=int, default=16, help="gradient: repeated draws")
    ap.add_argument("--archs", type=int, default=40, help="signal: subnets measured on every superclass")
    ap.add_argument("--val-images", type=int, default=500, help="signal: held-out images per superclass")
    ap.add_argument("--heldout-archs", type=int, default=40, help="predictor: architectures held out of the fit")
    ap.add_argument("--pool", type=int, default=3000, help="predictor: random subnets each predictor picks from")
    ap.add_argument("--exploit-superclasses", type=int, default=4,
                    help="predictor: superclasses (spread over the ids) whose picks are measured")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    for part in args.only or ("distinct", "landscape", "gradient", "signal", "predictor"):
        globals()[f"part_{part}"](args)


if __name__ == "__main__":
    main()
