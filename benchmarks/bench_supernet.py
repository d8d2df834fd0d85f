"""Supernet figures -> benchmarks/results/supernet.json

    .venv/bin/python benchmarks/bench_supernet.py                 # everything
    .venv/bin/python benchmarks/bench_supernet.py --only cost     # one part: cost|accuracy|ablation|size

Parts (each merged into the JSON as it finishes, so parts can run at different times):
  cost      images/s of a supernet step (sandwich + in-place distillation) vs a plain step of the
            largest static subnet alone, same batch, alternating in one run.
  throughput images/s of the real sandwich step per configuration (threads, processes, layout,
            bf16), interleaved round by round in one run; the data pipeline's share of a step.
  accuracy  the shipped checkpoint on the full test split: 100-way top-1, mean 5-way within-
            superclass, mean over 2-3-superclass heads, for the smallest, middle and largest
            subnet; the learning curve and the issue's goals (met or not).
  ablation  superclass dropout 0.5 vs 0: two runs forked from one checkpoint (--arm-on, --arm-off),
            compared on the same test images with a paired bootstrap CI.
  size      MAdds and parameters of the smallest and largest subnet.
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
OUT = ROOT / "benchmarks" / "results" / "supernet.json"


def _merge(part: str, figures: dict) -> None:
    from edgeeas.utils import atomic_write_text, command_line, machine, versions

    doc = json.loads(OUT.read_text()) if OUT.exists() else {}
    doc[part] = {**figures, "command": command_line(), "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    doc["machine"], doc["versions"] = machine(), versions()
    atomic_write_text(OUT, json.dumps(doc, indent=2) + "\n")
    print(json.dumps({part: figures}, indent=2))


def part_cost(args, ds) -> None:
    import numpy as np
    import torch
    import torch.nn.functional as F

    from edgeeas.nn.supernet import Supernet
    from edgeeas.space import DEFAULT_SPACE as S
    from edgeeas.train import SandwichLoss, TrainConfig, augment

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    mf = torch.channels_last
    rng = np.random.default_rng(0)
    x = augment(ds.train.images[:args.batch], rng).to(memory_format=mf)
    y = torch.as_tensor(ds.train.labels[:args.batch])
    cfg = TrainConfig(num_random=args.num_random)
    net = Supernet(S).to(memory_format=mf).train()
    sand = SandwichLoss(net, cfg)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    static = net.subnet(S.largest()).to(memory_format=mf).train()
    opt2 = torch.optim.SGD(static.parameters(), lr=0.01, momentum=0.9)
    kept = torch.arange(100)
    r = random.Random(0)
    t_sand, t_static, t_equiv = [], [], []
    for i in range(args.cost_steps + 1):
        archs = [S.largest(), S.smallest()] + [S.sample(r) for _ in range(cfg.num_random)]
        t0 = time.perf_counter()
        opt.zero_grad()
        loss, _ = sand(x, y, kept, archs)
        loss.backward()
        opt.step()
        t1 = time.perf_counter()
        opt2.zero_grad()
        F.cross_entropy(static(x), y).backward()
        opt2.step()
        t2 = time.perf_counter()
        # the same subnets as static networks, one plain step each (no elastic slicing)
        equiv = 0.0
        for a in archs:
            m = net.subnet(a).to(memory_format=mf).train()
            o = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
            t3 = time.perf_counter()
            o.zero_grad()
            F.cross_entropy(m(x), y).backward()
            o.step()
            equiv += time.perf_counter() - t3
        if i:  # the first round warms up the kernels
            t_sand.append(t1 - t0)
            t_static.append(t2 - t1)
            t_equiv.append(equiv)
    n_sub = 2 + cfg.num_random
    ms, mst, meq = statistics.median(t_sand), statistics.median(t_static), statistics.median(t_equiv)
    _merge("cost", {
        "batch": args.batch, "threads": args.threads, "steps": args.cost_steps, "subnets_per_step": n_sub,
        "supernet_step_s_median": round(ms, 4), "largest_static_step_s_median": round(mst, 4),
        "same_subnets_static_steps_s_median": round(meq, 4),
        "supernet_images_per_s": round(args.batch / ms, 1), "largest_static_images_per_s": round(args.batch / mst, 1),
        "elastic_overhead_vs_same_static_subnets": round(ms / meq, 3),
        "goal": "elastic_overhead_vs_same_static_subnets <= 1.3",
        "meets_goal": ms / meq <= 1.3,
        "note": "supernet step = largest (CE) + smallest + random subnets (CE + KD from the largest), one backward; "
                "elastic overhead = its median time / the median time of plain steps of the very same subnets as "
                "static networks (what slicing the elastic weights costs; 1.0 = free)",
    })


def _sandwich_setup(ds, threads, channels_last, batch, num_random, seed=0):
    import numpy as np
    import torch

    from edgeeas.nn.supernet import Supernet
    from edgeeas.space import DEFAULT_SPACE as S
    from edgeeas.train import SandwichLoss, TrainConfig

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    mf = torch.channels_last if channels_last else torch.contiguous_format
    cfg = TrainConfig(num_random=num_random)
    net = Supernet(S).to(memory_format=mf).train()
    return net, SandwichLoss(net, cfg), torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True), mf, cfg


def _sandwich_steps(ds, sand, opt, mf, cfg, steps, batch, bf16=False, rank=0, world=1, model=None):
    """Run ``steps`` real sandwich steps (data pipeline included); returns (step seconds, data seconds) lists."""
    import random

    import numpy as np
    import torch

    from edgeeas.space import DEFAULT_SPACE as S
    from edgeeas.train import augment

    model = model or sand
    kept = torch.arange(100)
    r = random.Random(0)
    t_step, t_data = [], []
    for i in range(steps):
        t0 = time.perf_counter()
        rng = np.random.default_rng([i, rank])
        idx = rng.choice(len(ds.train.labels), batch, replace=False)
        x = augment(ds.train.images[idx], rng).to(memory_format=mf)
        y = torch.as_tensor(ds.train.labels[idx])
        t1 = time.perf_counter()
        archs = [S.largest(), S.smallest()] + [S.sample(r) for _ in range(cfg.num_random)]
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss, _ = model(x, y, kept, archs)
        loss.backward()
        opt.step()
        t2 = time.perf_counter()
        t_step.append(t2 - t0)
        t_data.append(t1 - t0)
    return t_step, t_data


def _ddp_worker(args) -> None:
    """One rank of the torchrun configuration (run by part_throughput through torchrun)."""
    import torch
    import torch.distributed as dist
    from torch import nn

    from edgeeas.data import load_dataset

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    ds = load_dataset(args.data or (ROOT / "data" if (ROOT / "data").exists() else None))
    net, sand, opt, mf, cfg = _sandwich_setup(ds, 1, True, args.batch, args.num_random)
    ddp = nn.parallel.DistributedDataParallel(sand, find_unused_parameters=True)
    _sandwich_steps(ds, sand, opt, mf, cfg, 1, args.batch, rank=rank, world=world, model=ddp)  # warm-up
    dist.barrier()
    t0 = time.perf_counter()
    ts, td = _sandwich_steps(ds, sand, opt, mf, cfg, args.tp_steps, args.batch, rank=rank, world=world, model=ddp)
    dist.barrier()
    wall = time.perf_counter() - t0
    if rank == 0:
        print("DDP_RESULT " + json.dumps({"step_s": statistics.median(ts), "data_s": statistics.median(td),
                                          "wall_s": wall, "images": args.tp_steps * args.batch * world}), flush=True)
    dist.destroy_process_group()


def part_throughput(args, ds) -> None:
    """images/s of the real sandwich step under each configuration, interleaved round by round."""
    import os
    import subprocess

    import torch

    configs = {
        "1proc_2threads_channels_last_fp32": dict(threads=2, channels_last=True, bf16=False),
        "1proc_2threads_nchw_fp32": dict(threads=2, channels_last=False, bf16=False),
        "1proc_2threads_channels_last_bf16_autocast": dict(threads=2, channels_last=True, bf16=True),
        "1proc_1thread_channels_last_fp32": dict(threads=1, channels_last=True, bf16=False),
    }
    per = {k: {"step_s": [], "data_s": []} for k in configs}
    per["torchrun_2proc_1thread_gloo"] = {"step_s": [], "data_s": [], "wall_images_per_s": []}
    for rnd in range(args.tp_rounds):
        for name, c in configs.items():
            net, sand, opt, mf, cfg = _sandwich_setup(ds, c["threads"], c["channels_last"], args.batch, args.num_random)
            _sandwich_steps(ds, sand, opt, mf, cfg, 1, args.batch, bf16=c["bf16"])  # warm-up
            ts, td = _sandwich_steps(ds, sand, opt, mf, cfg, args.tp_steps, args.batch, bf16=c["bf16"])
            per[name]["step_s"] += ts
            per[name]["data_s"] += td
            print(f"round {rnd + 1} {name}: {args.batch / statistics.median(ts):.1f} images/s", flush=True)
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29531",
               str(Path(__file__).resolve()), "--ddp-worker", "--tp-steps", str(args.tp_steps),
               "--batch", str(args.batch), "--num-random", str(args.num_random)]
        if args.data:
            cmd += ["--data", args.data]
        outp = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
        r = json.loads(next(l for l in outp.splitlines() if l.startswith("DDP_RESULT "))[len("DDP_RESULT "):])
        d = per["torchrun_2proc_1thread_gloo"]
        d["step_s"].append(r["step_s"])
        d["data_s"].append(r["data_s"])
        d["wall_images_per_s"].append(r["images"] / r["wall_s"])
        print(f"round {rnd + 1} torchrun_2proc_1thread_gloo: {r['images'] / r['wall_s']:.1f} images/s", flush=True)
    res = {}
    for name, d in per.items():
        ms = statistics.median(d["step_s"])
        imgs = args.batch * (2 if name.startswith("torchrun") else 1)  # 2 ranks each take a batch per step
        res[name] = {"images_per_s_median": round(imgs / ms, 1), "step_s_median": round(ms, 3),
                     "data_share_of_step": round(statistics.median(d["data_s"]) / ms, 3)}
    best = max(res, key=lambda k: res[k]["images_per_s_median"])
    ref = res["1proc_2threads_channels_last_fp32"]["images_per_s_median"]
    for v in res.values():
        v["ratio_vs_1proc_2threads_channels_last_fp32"] = round(v["images_per_s_median"] / ref, 3)
    _merge("throughput", {
        "configs": res, "fastest": best, "batch_per_process": args.batch, "num_random": args.num_random,
        "steps_per_round": args.tp_steps, "rounds": args.tp_rounds,
        "torch_compile": "not used: every step activates a different subnet (elastic depth, kernel and expand "
                         "change the graph), so a compiled graph would be re-traced per architecture",
        "note": "the real sandwich step (largest + smallest + random subnets, in-place distillation) with its data "
                "pipeline (indexing + random crop/flip on uint8); configurations interleaved round by round in "
                "one run; torchrun: 2 ranks x 1 thread, gloo, DistributedDataParallel, each rank a batch per step "
                "(global batch 2x); images/s = images per step / median step time",
    })


def _head_figures(logits, labels, ds, groups) -> dict:
    """Per-image correctness under each head: 100-way, the image's own superclass (5-way), and
    every multi-superclass group holding the image (arrays, for the bootstrap)."""
    import numpy as np

    logits = logits.numpy() if hasattr(logits, "numpy") else logits
    sup = ds.class_to_super[labels]
    top1 = (logits.argmax(1) == labels).astype(np.float64)
    within = np.zeros(len(labels))
    for s in range(ds.num_superclasses):
        rows = np.flatnonzero(sup == s)
        cols = np.array(ds.classes_of(s))
        within[rows] = cols[logits[np.ix_(rows, cols)].argmax(1)] == labels[rows]
    multi = []
    for g in groups:
        rows = np.flatnonzero(np.isin(sup, g))
        cols = np.array(sorted(c for s in g for c in ds.classes_of(s)))
        multi.append((rows, (cols[logits[np.ix_(rows, cols)].argmax(1)] == labels[rows]).astype(np.float64)))
    return {"top1": top1, "within": within, "multi": multi}


def _metrics(fig, w=None) -> dict:
    """Mean within-superclass (5-way), mean over 2-3-superclass groups, and 100-way top-1, in %,
    with optional bootstrap weights ``w`` per test image."""
    import numpy as np

    n = len(fig["top1"])
    w = np.ones(n) if w is None else w
    out = {"within_5way": 100 * float((w * fig["within"]).sum() / w.sum()),
           "top1_100way": 100 * float((w * fig["top1"]).sum() / w.sum())}
    accs = [float((w[r] * c).sum() / max(w[r].sum(), 1e-12)) for r, c in fig["multi"]]
    out["multi_2_3_superclasses"] = 100 * float(np.mean(accs)) if accs else float("nan")
    return out


def _multi_groups(ds, n: int = 40, seed: int = 0) -> list[list[int]]:
    rng = random.Random(f"{seed}:groups")
    return [sorted(rng.sample(range(ds.num_superclasses), rng.choice((2, 3)))) for _ in range(n)]


def _evaluate_supernet(path, ds, names=("smallest", "middle", "largest"), recal_n: int = 2000):
    import numpy as np

    from edgeeas.checkpoint import load_supernet
    from edgeeas.evaluate import predict, recal_images, recalibrate_bn

    net, meta = load_supernet(path)
    recal = recal_images(ds, n=recal_n)
    groups = _multi_groups(ds)
    out = {}
    for name in names:
        a = getattr(net.space, name)()
        sub = net.subnet(a)
        recalibrate_bn(sub, recal)
        fig = _head_figures(predict(sub, ds.test.images), np.asarray(ds.test.labels), ds, groups)
        out[name] = (a, fig)
    return net, meta, out


def part_accuracy(args, ds) -> None:
    """The shipped checkpoint on the full CIFAR-100 test split, BN recalibrated on 2,000 training
    images: 100-way top-1, mean 5-way within-superclass, mean over 40 fixed 2-3-superclass heads."""
    import numpy as np

    path = args.supernet or str(ROOT / "runs" / "default" / "supernet.pt")
    net, meta, ev = _evaluate_supernet(path, ds)
    S = net.space
    res = {}
    for name, (a, fig) in ev.items():
        m = _metrics(fig)
        per = {ds.superclasses[s]: round(100 * float(fig["within"][ds.class_to_super[ds.test.labels] == s].mean()), 2)
               for s in range(ds.num_superclasses)}
        res[name] = {"arch": str(a), "madds_m": round(S.madds(a) / 1e6, 3),
                     **{k: round(v, 2) for k, v in m.items()}, "per_superclass_within_5way": per}
    hist = meta.get("history", [])
    res["training"] = {"epochs": meta.get("epochs_done"), "steps": meta.get("steps_done"),
                       "train_seconds": round(sum(h.get("seconds", 0) for h in hist), 1),
                       "config": meta.get("config"), "world_size": meta.get("world_size"),
                       "learning_curve": [{k: h.get(k) for k in ("epoch", "lr", "train_loss", "smallest_top1",
                                                                  "largest_top1", "largest_within_acc")}
                                          for h in hist]}
    L, Sm = res["largest"], res["smallest"]
    goals = {"largest_top1_100way >= 60": L["top1_100way"] >= 60, "smallest_top1_100way >= 52": Sm["top1_100way"] >= 52,
             "largest - smallest top1 >= 5 points": L["top1_100way"] - Sm["top1_100way"] >= 5,
             "largest_within_5way >= 82": L["within_5way"] >= 82}
    res["goals_met"] = goals
    res["checkpoint"] = str(Path(path).resolve().relative_to(ROOT)) if Path(path).resolve().is_relative_to(ROOT) else Path(path).name
    res["protocol"] = "full test split (10,000 images); BN recalibrated on 2,000 training images (seed 0); 2-3-superclass heads: 40 fixed random groups (seed 0)"
    _merge("accuracy", res)


def part_ablation(args, ds) -> None:
    """Superclass dropout on vs off: two supernets forked from the same checkpoint (same seed,
    same steps), compared on the same test images with a paired bootstrap (95 % CI of the
    difference, 2,000 resamples of the 10,000 test images)."""
    import numpy as np

    if not (args.arm_on and args.arm_off):
        raise SystemExit("ablation needs --arm-on RUN/supernet.pt (dropout 0.5) and --arm-off RUN/supernet.pt (dropout 0)")
    arms = {}
    for label, path in (("dropout_on", args.arm_on), ("dropout_off", args.arm_off)):
        net, meta, ev = _evaluate_supernet(path, ds)
        arms[label] = (meta, ev)
    rng = np.random.default_rng(0)
    n = len(ds.test.labels)
    W = rng.multinomial(n, np.ones(n) / n, size=args.bootstrap).astype(np.float64)
    res = {"bootstrap_resamples": args.bootstrap, "arms": {}}
    for label, (meta, _) in arms.items():
        cfg = meta.get("config", {})
        res["arms"][label] = {"checkpoint": _rel_path(args.arm_on if label == "dropout_on" else args.arm_off),
                              "superclass_dropout": cfg.get("superclass_dropout"), "seed": cfg.get("seed"),
                              "init_from": cfg.get("init_from"), "epochs": meta.get("epochs_done"),
                              "steps": meta.get("steps_done")}
    for name in ("smallest", "middle", "largest"):
        on, off = arms["dropout_on"][1][name][1], arms["dropout_off"][1][name][1]
        m_on, m_off = _metrics(on), _metrics(off)
        diffs = {k: [] for k in m_on}
        for w in W:
            a, b = _metrics(on, w), _metrics(off, w)
            for k in diffs:
                diffs[k].append(a[k] - b[k])
        res[name] = {k: {"dropout_on": round(m_on[k], 2), "dropout_off": round(m_off[k], 2),
                         "on_minus_off": round(m_on[k] - m_off[k], 2),
                         "ci95": [round(float(np.percentile(diffs[k], 2.5)), 2),
                                  round(float(np.percentile(diffs[k], 97.5)), 2)]}
                     for k in m_on}
    res["note"] = ("both arms forked from the same end-of-epoch checkpoint with --init-from (same seed, same "
                   "steps and schedule), one with superclass dropout 0.5, one with 0; evaluated on the full test "
                   "split with BN recalibrated on 2,000 training images; heads: single superclass (5-way), 40 "
                   "fixed 2-3-superclass groups, 100-way; the CI is over test images only (not over training seeds)")
    _merge("ablation", res)


def _rel_path(p) -> str:
    p = Path(p).resolve()
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else p.name


def part_size(args, ds) -> None:
    from edgeeas.space import DEFAULT_SPACE as S

    _merge("size", {name: {"arch": str(getattr(S, name)()), "madds": S.madds(getattr(S, name)()),
                           "params": S.params(getattr(S, name)()),
                           "params_5way_head": S.params(getattr(S, name)(), num_classes=5)}
                    for name in ("smallest", "middle", "largest")})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=("cost", "throughput", "accuracy", "ablation", "size"), action="append")
    ap.add_argument("--data", default=None)
    ap.add_argument("--supernet", default=None, help="default: runs/default/supernet.pt")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--num-random", type=int, default=1)
    ap.add_argument("--cost-steps", type=int, default=5)
    ap.add_argument("--tp-steps", type=int, default=4, help="throughput: measured steps per configuration per round")
    ap.add_argument("--tp-rounds", type=int, default=2, help="throughput: rounds over the configurations")
    ap.add_argument("--ddp-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--arm-on", default=None, help="ablation: supernet.pt trained with superclass dropout 0.5")
    ap.add_argument("--arm-off", default=None, help="ablation: supernet.pt trained with superclass dropout 0")
    ap.add_argument("--bootstrap", type=int, default=2000, help="ablation: paired bootstrap resamples")
    args = ap.parse_args()
    if args.ddp_worker:
        return _ddp_worker(args)
    from edgeeas.data import load_dataset

    ds = load_dataset(args.data or (ROOT / "data" if (ROOT / "data").exists() else None))
    for part in args.only or ("size", "throughput", "accuracy"):
        globals()[f"part_{part}"](args, ds)


if __name__ == "__main__":
    main()
