"""Transfer (issue 12): fine-tuning the shipped supernet on a dataset it never saw vs training
from scratch at equal steps, measured on specialized int8 models.

    python benchmarks/bench_transfer.py                    # ~15-20 min on 1 thread
    python benchmarks/bench_transfer.py --steps 100        # a quicker look

Data: scikit-learn's 8x8 handwritten digits (1,797 real images, shipped in its wheel), upscaled
to 32x32 RGB (bilinear) and written as an ImageFolder tree (``train/digit_K/*.png``,
``test/digit_K/*.png``, a stratified 70/30 split, seeded) with a user grouping: digits with
loops {0, 6, 8, 9} vs without {1, 2, 3, 4, 5, 7}.

Two runs of ``edgeeas train supernet`` with identical settings, seed, data order and subnets
(sandwich rule, in-place distillation, superclass dropout over the two user superclasses):
``--init runs/default`` (transfer: body and BN from the shipped CIFAR-100 supernet, new 10-way
head since no digit is a CIFAR class) and from scratch.  Then, per run, ``edgeeas specialize``'s
own code path (``Specializer``) with MAdds budgets (no latency table needed) and the ``uniform``
strategy (the dearest uniform subnet that fits: the same architecture for both runs, so the
comparison is of weights only): BN recalibration, int8 TFLite export calibrated on the
superclass, and within-superclass int8 accuracy on all of the superclass's test images.

Writes ``benchmarks/results/transfer.json``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

GROUPS = {"loops": [0, 6, 8, 9], "no_loops": [1, 2, 3, 4, 5, 7]}


def make_digits_tree(root: Path, seed: int = 0, test_frac: float = 0.3) -> dict:
    """The digits set as a 32x32 RGB PNG tree with ``superclasses.yaml``; returns its counts."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    rng = np.random.default_rng(seed)
    counts = {"train": 0, "test": 0}
    if root.exists():
        shutil.rmtree(root)
    for k in range(10):
        idx = rng.permutation(np.flatnonzero(d.target == k))
        n_test = int(round(test_frac * len(idx)))
        for split, part in (("test", idx[:n_test]), ("train", idx[n_test:])):
            folder = root / split / f"digit_{k}"
            folder.mkdir(parents=True)
            for i in part:
                a = np.clip(np.round(d.images[i] * 255 / 16), 0, 255).astype(np.uint8)
                Image.fromarray(a, "L").resize((32, 32), Image.BILINEAR).convert("RGB").save(folder / f"{i:04d}.png")
                counts[split] += 1
    (root / "superclasses.yaml").write_text(
        "".join(f"{g}: [{', '.join(f'digit_{k}' for k in ks)}]\n" for g, ks in GROUPS.items()))
    return {"images": int(len(d.target)), **counts}


def train(tree: Path, out: Path, init: str, steps: int, args) -> dict:
    from edgeeas.data import load_dataset
    from edgeeas.train import TrainConfig, train_supernet

    ds = load_dataset(tree)
    if out.exists():
        shutil.rmtree(out)
    spe = max(1, len(ds.train.labels) // args.batch_size)
    cfg = TrainConfig(out=str(out), epochs=math.ceil(steps / spe), batch_size=args.batch_size, lr=args.lr,
                      weight_decay=5e-5, superclass_dropout=0.5, num_random=1, seed=0, max_steps=steps,
                      eval_images=len(ds.test.labels), recal_images=500, checkpoint_minutes=60, threads=1, init=init)
    t = time.time()
    train_supernet(ds, cfg, progress=False, log=lambda m: print(f"  [{out.name}] {m}", flush=True))
    secs = time.time() - t
    import csv
    rows = list(csv.DictReader((out / "summary.csv").open()))
    from edgeeas.utils import portable_path

    return {"init": portable_path(init) if init else None, "steps": steps, "epochs": cfg.epochs, "batch_size": args.batch_size, "lr": args.lr,
            "seconds": round(secs, 1), "last_epoch": rows[-1] if rows else {}}


def specialize(run: Path, tree: Path, out: Path, budgets: list[str]) -> list[dict]:
    from edgeeas.specialize import SpecializeConfig, Specializer, parse_budget_list, parse_scenarios

    if out.exists():
        shutil.rmtree(out)
    cfg = SpecializeConfig(target="host", strategy="uniform", supernet=str(run), data=str(tree), out=str(out),
                           recal_images=500, calib_images=128, test_images=0)
    sp = Specializer(cfg, log=lambda m: print(f"  [{run.name}] {m}", flush=True))
    scen = parse_scenarios(sp.ds, list(GROUPS), False, parse_budget_list(budgets))
    res = []
    for plan in sp.plan(scen):
        m = sp.build(plan)
        res.append({"superclass": plan.scenario.name, "budget": str(plan.scenario.budget), "arch": m.arch,
                    "madds_m": round(m.madds / 1e6, 3), "labels": m.labels,
                    "host_float_pct": m.accuracy.host_float_pct, "host_int8_pct": m.accuracy.host_int8_pct,
                    "test_images": m.accuracy.test_images, "chance_pct": round(100 / len(m.labels), 1)})
    return res


def _write(path, obj) -> None:
    from edgeeas.utils import atomic_write_text

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300, help="training steps of each run (equal for both)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--budgets", default="6M,12M", help="MAdds budgets of the specialized models")
    ap.add_argument("--init", default=str(ROOT / "runs" / "default"), help="the supernet to transfer from")
    ap.add_argument("--work", default="/tmp/edgeeas_bench_transfer", help="tree, runs and models (scratch)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "transfer.json"))
    args = ap.parse_args()

    import sklearn
    import torch

    torch.set_num_threads(1)
    work = Path(args.work)
    tree = work / "digits"
    t0 = time.time()
    counts = make_digits_tree(tree)
    print(f"digits tree: {counts}", flush=True)
    result = {"benchmark": "transfer", "dataset": {"name": "sklearn digits (8x8, upscaled to 32x32 RGB, bilinear)",
                                                   "sklearn": sklearn.__version__, "split": "stratified 70/30, seed 0",
                                                   **counts, "superclasses": {g: [f"digit_{k}" for k in ks]
                                                                              for g, ks in GROUPS.items()}},
              "threads": 1, "runs": {}}
    budgets = [b.strip() for b in args.budgets.split(",") if b.strip()]
    for name, init in (("transfer", args.init), ("scratch", "")):
        run = work / f"run_{name}"
        print(f"== {name}: training {args.steps} steps", flush=True)
        tr = train(tree, run, init, args.steps, args)
        print(f"== {name}: specializing {budgets}", flush=True)
        tr["models"] = spec = specialize(run, tree, work / f"out_{name}", budgets)
        tr["mean_int8_pct"] = round(sum(m["host_int8_pct"] for m in spec) / len(spec), 2)
        result["runs"][name] = tr
        _write(args.out, {**result, "seconds": round(time.time() - t0, 1)})
    r = result["runs"]
    result["int8_gain_pp_transfer_minus_scratch"] = {
        f"{a['superclass']}@{a['budget']}": round(a["host_int8_pct"] - b["host_int8_pct"], 2)
        for a, b in zip(r["transfer"]["models"], r["scratch"]["models"])}
    result["mean_gain_pp"] = round(r["transfer"]["mean_int8_pct"] - r["scratch"]["mean_int8_pct"], 2)
    result["seconds"] = round(time.time() - t0, 1)
    result["command"] = " ".join(sys.argv)
    _write(args.out, result)
    print(json.dumps({k: result[k] for k in ("mean_gain_pp", "int8_gain_pp_transfer_minus_scratch", "seconds")}))


if __name__ == "__main__":
    main()
