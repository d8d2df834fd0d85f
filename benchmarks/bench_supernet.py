"""Supernet figures -> benchmarks/results/supernet.json

    .venv/bin/python benchmarks/bench_supernet.py                 # everything
    .venv/bin/python benchmarks/bench_supernet.py --only cost     # one part: cost|accuracy|ablation|size

Parts (each merged into the JSON as it finishes, so parts can run at different times):
  cost      images/s of a supernet step (sandwich + in-place distillation) vs a plain step of the
            largest static subnet alone, same batch, alternating in one run.
  accuracy  the shipped checkpoint: mean 5-way within-superclass accuracy over the 20 superclasses
            for the smallest, middle and largest subnet, and 100-way accuracy (full test set).
  ablation  the same short training budget with superclass dropout on and off (same seed, same
            steps), both evaluated with single-superclass heads on all 20 superclasses.
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
    from edgeeas.utils import atomic_write_text, machine, versions

    doc = json.loads(OUT.read_text()) if OUT.exists() else {}
    doc[part] = {**figures, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
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
        "ratio_per_sampled_subnet": round(ms / n_sub / mst, 3),
        "elastic_overhead_vs_same_static_subnets": round(ms / meq, 3),
        "goal": "ratio_per_sampled_subnet <= 1.3",
        "note": "supernet step = largest (CE) + smallest + random subnets (CE + KD from the largest), one backward; "
                "ratio_per_sampled_subnet = supernet step time / subnets per step / plain step of the largest; "
                "elastic overhead compares with plain steps of the very same subnets as static networks",
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


def part_accuracy(args, ds) -> None:
    from edgeeas.checkpoint import load_supernet
    from edgeeas.evaluate import evaluate_arch, recal_images

    net, meta = load_supernet(args.supernet)
    S = net.space
    recal = recal_images(ds, n=2000)
    res = {}
    for name in ("smallest", "middle", "largest"):
        a = getattr(S, name)()
        acc = evaluate_arch(net, a, ds, recal=recal)
        res[name] = {"arch": str(a), "madds_m": round(S.madds(a) / 1e6, 3),
                     "mean_within_superclass_5way": round(acc.mean_within, 2), "top1_100way": round(acc.top1_all, 2),
                     "per_superclass": {k: round(v, 2) for k, v in acc.per_superclass.items()}}
    hist = meta.get("history", [])
    res["training"] = {"epochs": meta.get("epochs_done"), "seconds": round(sum(h.get("seconds", 0) for h in hist), 1),
                       "config": meta.get("config"), "world_size": meta.get("world_size")}
    res["goal"] = "largest >= 75, smallest >= 65 (mean within-superclass 5-way, %)"
    res["checkpoint"] = str(Path(args.supernet).resolve().relative_to(ROOT)) if args.supernet else "runs/default/supernet.pt"
    _merge("accuracy", res)


def part_ablation(args, ds) -> None:
    import tempfile

    from edgeeas.checkpoint import load_supernet
    from edgeeas.evaluate import evaluate_arch, recal_images
    from edgeeas.train import TrainConfig, train_supernet

    res = {"steps": args.ablation_steps, "batch": args.ablation_batch, "seed": 0}
    with tempfile.TemporaryDirectory() as tmp:
        for label, rate in (("dropout_on", 0.5), ("dropout_off", 0.0)):
            t0 = time.time()
            cfg = TrainConfig(out=f"{tmp}/{label}", epochs=1, batch_size=args.ablation_batch, num_random=1,
                              superclass_dropout=rate, threads=args.threads, max_steps=args.ablation_steps,
                              train_subset=args.ablation_batch * args.ablation_steps, eval_images=200,
                              recal_images=200, warmup_epochs=0.1)
            path = train_supernet(ds, cfg, progress=False, log=lambda m: None)
            secs = time.time() - t0
            net, _ = load_supernet(path)
            recal = recal_images(ds, n=2000)
            r = {"superclass_dropout": rate, "train_seconds": round(secs, 1)}
            for name in ("smallest", "largest"):
                acc = evaluate_arch(net, getattr(net.space, name)(), ds, recal=recal)
                r[name] = {"mean_within_superclass_5way": round(acc.mean_within, 2), "top1_100way": round(acc.top1_all, 2)}
            res[label] = r
            print(label, r, flush=True)
    res["note"] = ("same seed, same number of steps and images per step; dropout draws each step's batch from the "
                   "kept superclasses and masks the other classes' logits; evaluated with 5-way heads on all 20")
    _merge("ablation", res)


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
    ap.add_argument("--ablation-steps", type=int, default=300)
    ap.add_argument("--ablation-batch", type=int, default=64)
    args = ap.parse_args()
    if args.ddp_worker:
        return _ddp_worker(args)
    from edgeeas.data import load_dataset

    ds = load_dataset(args.data or (ROOT / "data" if (ROOT / "data").exists() else None))
    for part in args.only or ("size", "cost", "accuracy", "ablation"):
        globals()[f"part_{part}"](args, ds)


if __name__ == "__main__":
    main()
