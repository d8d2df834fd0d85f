"""Supernet training: sandwich rule, in-place distillation, superclass dropout.

One loop that runs on one CPU and, unchanged, under torchrun::

    edgeeas train supernet --out runs/default                         # one process
    torchrun --nproc_per_node=2 -m edgeeas.cli train supernet ...     # DDP, gloo on CPU
    torchrun --nnodes=2 --nproc_per_node=8 ... -m edgeeas.cli train supernet ...  # NCCL on GPUs

Every step:

1. draws the kept superclasses (superclass dropout: each superclass is dropped with
   probability ``rate``, at least one kept) and a batch of images of those superclasses only,
   so no compute is spent on samples whose loss would be masked away;
2. runs the sandwich: the largest subnet on the hard labels, then the smallest and ``n``
   random subnets distilled from the largest's predictions (in-place distillation);
   the logits of every class outside the kept superclasses are removed before the softmax.

All randomness of a step (kept superclasses, subnets, batch, augmentation) comes from seeds
derived from (seed, epoch, step), so any step can be replayed and a resumed run continues
the same sequence.  Subnets are the same on every rank; data is offset by rank.
"""
from __future__ import annotations

import csv
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import CheckpointError, load_raw, save_supernet
from .data import Dataset
from .errors import EdgeeasError
from .evaluate import evaluate_arch, recal_images, to_float
from .nn.supernet import Supernet
from .space import DEFAULT_SPACE, Arch, SearchSpace
from .utils import atomic_torch_save, atomic_write_text, command_line, portable_source, versions

__all__ = ["TrainConfig", "train_supernet", "TrainError", "augment", "SandwichLoss"]


class TrainError(EdgeeasError):
    """A run cannot start or resume as asked."""


@dataclass
class TrainConfig:
    """Everything that defines a supernet run (written to ``args.yaml``); ``lr`` is the peak of a
    cosine schedule after ``warmup_epochs`` of linear warm-up, per SGD step of ``batch_size`` images
    per process; ``superclass_dropout`` is the probability of dropping each superclass at a step."""

    out: str = "runs/default"
    epochs: int = 12
    batch_size: int = 128
    lr: float = 0.1
    weight_decay: float = 5e-5
    momentum: float = 0.9
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    superclass_dropout: float = 0.0  # off by default: the ablation found no within-superclass gain (supernet.json)
    num_random: int = 1
    kd_ratio: float = 1.0
    seed: int = 0
    max_steps: int = 0              # stop after this many steps in total (0: no limit); for tests
    train_subset: int = 0           # use only this many training images (0: all); for tests
    eval_images: int = 2000         # test images for the per-epoch summary
    recal_images: int = 1000        # training images that recalibrate BN for the per-epoch summary
    checkpoint_minutes: float = 5.0
    threads: int = 0                # torch threads per process (0: leave torch's default)
    channels_last: bool = True
    keep_epochs: tuple = ()         # after these epochs, also keep a resumable copy ``epochNN.pt`` (fork points)
    init_from: str = ""             # start a new run from another run's resumable checkpoint (fork)
    init: str = ""                  # transfer: start from a trained supernet's weights (run dir or .pt), new head

    def steps_per_epoch(self, n_train: int, world: int) -> int:
        """Steps in one pass over ``n_train`` images with ``world`` processes (at least 1)."""
        return max(1, n_train // (self.batch_size * world))


# ---- data on tensors ------------------------------------------------------------------------
def augment(images: np.ndarray, rng: np.random.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop with zero padding + horizontal flip, on a uint8 NCHW batch -> normalized float."""
    x = torch.as_tensor(images)
    b, c, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad))
    oy = torch.as_tensor(rng.integers(0, 2 * pad + 1, b))
    ox = torch.as_tensor(rng.integers(0, 2 * pad + 1, b))
    flip = torch.as_tensor(rng.random(b) < 0.5)
    ar_h, ar_w = torch.arange(h), torch.arange(w)
    rows = oy[:, None] + ar_h                                   # B x H
    cols = ox[:, None] + torch.where(flip[:, None], w - 1 - ar_w, ar_w)  # B x W
    out = xp[torch.arange(b)[:, None, None, None], torch.arange(c)[None, :, None, None],
             rows[:, None, :, None], cols[:, None, None, :]]
    return to_float(out)


class _Batches:
    """Which images a step trains on, and which superclasses it keeps."""

    def __init__(self, ds: Dataset, cfg: TrainConfig, rank: int, world: int):
        self.ds, self.cfg, self.rank, self.world = ds, cfg, rank, world
        n = len(ds.train.labels)
        self.pool = np.arange(n)
        if cfg.train_subset:
            self.pool = np.sort(np.random.default_rng(cfg.seed).choice(n, min(cfg.train_subset, n), replace=False))
        sup = ds.class_to_super[ds.train.labels[self.pool]]
        self.by_super = [self.pool[sup == s] for s in range(ds.num_superclasses)]
        self.steps = cfg.steps_per_epoch(len(self.pool), world)

    def kept(self, epoch: int, step: int) -> list[int]:
        """Superclasses kept at this step: the same on every rank (seeded by epoch and step)."""
        n = self.ds.num_superclasses
        if self.cfg.superclass_dropout <= 0:
            return list(range(n))
        r = random.Random(f"{self.cfg.seed}:kept:{epoch}:{step}")
        kept = [s for s in range(n) if r.random() >= self.cfg.superclass_dropout]
        return kept or [r.randrange(n)]

    def batch(self, epoch: int, step: int, kept: list[int]) -> tuple[np.ndarray, np.random.Generator]:
        bs = self.cfg.batch_size
        if len(kept) == self.ds.num_superclasses:
            # A plain epoch: a permutation shared by all ranks, each rank taking its own slice.
            perm = np.random.default_rng([self.cfg.seed, epoch]).permutation(self.pool)
            start = (step * self.world + self.rank) * bs
            idx = perm[start:start + bs]
        else:
            # Only the kept superclasses' images: uniform over them, without replacement in the batch.
            rng = np.random.default_rng([self.cfg.seed, epoch, step, self.rank])
            cand = np.concatenate([self.by_super[s] for s in kept])
            idx = rng.choice(cand, size=min(bs, len(cand)), replace=False)
        return idx, np.random.default_rng([self.cfg.seed, epoch, step, self.rank, 1])


# ---- the sandwich as one module, so DistributedDataParallel sees one forward per step -----
class SandwichLoss(nn.Module):
    """One step's loss of the sandwich rule with in-place distillation (Yu & Huang, "Universally
    slimmable networks", ICCV 2019; once-for-all / BigNAS): the largest subnet on the hard labels,
    every other subnet on the labels plus KL to the largest's detached softmax.  Logits of classes
    outside the kept superclasses are removed before every softmax (superclass dropout)."""

    def __init__(self, supernet: Supernet, cfg: TrainConfig):
        super().__init__()
        self.supernet, self.cfg = supernet, cfg

    def forward(self, x: torch.Tensor, y: torch.Tensor, kept_cols: torch.Tensor, archs: list[Arch]):
        """``x`` (B,3,H,W) normalized images, ``y`` (B,) labels as indices into ``kept_cols`` (K,)
        head rows, ``archs`` = [largest, others...].  Returns (summed loss, the largest's correct count)."""
        net, cfg = self.supernet, self.cfg
        net.set_active(archs[0])  # the largest: trained on the hard labels
        t = net(x)[:, kept_cols]
        loss = F.cross_entropy(t, y, label_smoothing=cfg.label_smoothing)
        soft = F.softmax(t.detach(), dim=1)
        correct = (t.argmax(1) == y).float().sum()
        for arch in archs[1:]:   # the others learn from the labels and from the largest
            net.set_active(arch)
            s = net(x)[:, kept_cols]
            loss = loss + F.cross_entropy(s, y, label_smoothing=cfg.label_smoothing)
            if cfg.kd_ratio:
                loss = loss + cfg.kd_ratio * F.kl_div(F.log_softmax(s, 1), soft, reduction="batchmean")
        return loss, correct


def _param_groups(net: nn.Module, wd: float):
    decay, no_decay = [], []
    for name, p in net.named_parameters():
        (decay if p.ndim >= 2 and "transforms" not in name else no_decay).append(p)
    return [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]


def _lr_at(cfg: TrainConfig, it: int, total: int, steps_per_epoch: int) -> float:
    warm = int(cfg.warmup_epochs * steps_per_epoch)
    if it < warm:
        return cfg.lr * (it + 1) / warm
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * (it - warm) / max(1, total - warm)))


def _dist_setup():
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, None
    import torch.distributed as dist

    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    rank = dist.get_rank()
    device = None
    if backend == "nccl":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    return rank, world, device


def _transfer_init(net: Supernet, ds: Dataset, source: str) -> dict:
    """Copy a trained supernet's weights into ``net`` (transfer, NAT): every tensor but the
    classifier, and the classifier rows of the classes whose names the two heads share; the
    other rows keep their fresh initialization.  Returns what to record (``meta["init"]``).

    Raises:
        TrainError: an unreadable checkpoint, or one of another search space (besides the head size).
    """
    from .checkpoint import head_classes, load_supernet, resolve_supernet
    from .utils import sha256_file

    try:
        path = resolve_supernet(source)
        src, src_meta = load_supernet(path)
        head = head_classes(src_meta, src.space, str(path))
    except CheckpointError as e:
        raise TrainError(f"--init: {e}") from None
    if not src.space.same_body(net.space):
        raise TrainError(f"--init {path}: its search space {src.space.name!r} differs from this run's beyond the head "
                         f"size; --init takes a supernet of the same space")
    sd = {k: v for k, v in src.state_dict().items() if not k.startswith("head.fc.")}
    sd["head.fc.weight"] = net.head.fc.weight.detach().clone()
    sd["head.fc.bias"] = net.head.fc.bias.detach().clone()
    index = {c: i for i, c in enumerate(head)}
    kept = [(i, index[c]) for i, c in enumerate(ds.classes) if c in index]
    if kept:
        dst, srows = (torch.tensor(v) for v in zip(*kept))
        sd["head.fc.weight"][dst] = src.head.fc.weight.detach()[srows]
        sd["head.fc.bias"][dst] = src.head.fc.bias.detach()[srows]
    net.load_state_dict(sd)
    return {"from": str(path), "sha256": sha256_file(path), "epochs_done": src_meta.get("epochs_done"),
            "head_rows_kept": len(kept), "classes_kept": [ds.classes[i] for i, _ in kept],
            "dataset": src_meta.get("dataset")}


def _check_classes(ck: dict, ds: Dataset, what: str) -> None:
    """A resumed or forked run must train the classes it was started on, in the same order."""
    from .checkpoint import head_classes

    try:
        head = head_classes(ck.get("meta", {}), SearchSpace.from_dict(ck["space"]), what)
    except (CheckpointError, KeyError, TypeError, ValueError) as e:
        raise TrainError(str(e)) from None
    if head != list(ds.classes):
        missing = [c for c in ds.classes if c not in head]
        extra = [c for c in head if c not in ds.classes]
        detail = (f"the dataset adds {', '.join(missing[:5]) or 'nothing'} and lacks {', '.join(extra[:5]) or 'nothing'}"
                  if missing or extra else "the same classes in another order")
        raise TrainError(f"{what} was trained on other classes than dataset {ds.name} ({detail}); pass the --data "
                         f"(and --superclasses) it was started with, or start a new run with --init")


def train_supernet(ds: Dataset, cfg: TrainConfig, *, resume: bool = False, space: SearchSpace | None = None,
                   progress: bool = True, log=print) -> Path:
    """Train (or resume) a supernet into ``cfg.out``; returns the path of ``supernet.pt``.

    The head is sized from the dataset (``space``: the default space with a
    ``ds.num_classes``-way head, unless given); a resumed or forked run keeps its checkpoint's
    space and must see the same classes.  ``cfg.init`` starts from a trained supernet's weights
    (transfer): the classifier rows of classes with matching names are kept, the others are
    fresh; optimizer and schedule start afresh."""
    out = Path(cfg.out)
    last = out / "last.pt"
    if resume and not last.exists():
        raise TrainError(f"nothing to resume: {last} does not exist (start a new run without --resume)")
    if not resume and (last.exists() or (out / "supernet.pt").exists()):
        raise TrainError(f"{out} already holds a run (supernet.pt or last.pt); pass --resume to continue it, "
                         f"or choose a fresh --out")
    if resume and cfg.init_from:
        # A resumed fork may repeat its --init-from (make pretrain-ablation does): it must be the
        # checkpoint the run was forked from; the run continues from its own last.pt.
        started = (load_raw(last)["meta"].get("config") or {}).get("init_from", "")
        if str(Path(started)) != str(Path(cfg.init_from)):
            raise TrainError(f"{out} was started from {started or 'scratch'}, not --init-from {cfg.init_from}; "
                             f"to continue it use --resume alone")
    if cfg.init and cfg.init_from:
        raise TrainError("give --init (a trained supernet's weights, new optimizer and schedule) or --init-from "
                         "(fork a resumable checkpoint), not both")
    ck = None
    if resume or cfg.init_from:
        try:
            ck = load_raw(last if resume else cfg.init_from)
        except CheckpointError as e:
            raise TrainError(str(e)) from None
        _check_classes(ck, ds, str(last if resume else cfg.init_from))
        if space is None:
            try:
                space = SearchSpace.from_dict(ck["space"])
            except (KeyError, TypeError, ValueError) as e:
                raise TrainError(f"{last if resume else cfg.init_from}: unreadable search space ({e})") from None
    if space is None:
        space = DEFAULT_SPACE.with_num_classes(ds.num_classes) if ds.num_classes >= 2 else DEFAULT_SPACE
    if ds.num_classes != space.num_classes:
        raise TrainError(f"dataset {ds.name} has {ds.num_classes} classes but search space {space.name} "
                         f"has a {space.num_classes}-way head")

    rank, world, device = _dist_setup()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed + rank)
    device = device or torch.device("cpu")
    mf = torch.channels_last if cfg.channels_last else torch.contiguous_format

    net = Supernet(space).to(device, memory_format=mf)
    opt = torch.optim.SGD(_param_groups(net, cfg.weight_decay), lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    batches = _Batches(ds, cfg, rank, world)
    spe = batches.steps
    total = cfg.epochs * spe
    epoch, step_in_epoch, history, partial = 0, 0, [], {}
    init_info = None
    if ck is not None:
        init_info = ck.get("meta", {}).get("init")  # a resumed transfer run keeps its record
        if "optimizer" not in ck:
            raise TrainError(f"{cfg.init_from} is a final supernet.pt without optimizer state; "
                             f"--init-from takes a resumable checkpoint (last.pt or epochNN.pt)")
        net.load_state_dict(ck["state_dict"])
        opt.load_state_dict(ck["optimizer"])
        epoch, step_in_epoch = int(ck["epoch"]), int(ck["step"])
        history = json.loads(ck.get("history", "[]"))
        partial = json.loads(ck.get("partial_epoch", "{}"))  # the interrupted epoch's running totals
        if cfg.init_from and not resume and step_in_epoch:
            raise TrainError(f"{cfg.init_from} was saved mid-epoch; --init-from takes an end-of-epoch checkpoint "
                             f"(epochNN.pt)")
        if ck["meta"].get("config", {}).get("epochs") != cfg.epochs:
            log(f"note: resuming with --epochs {cfg.epochs} (the run started with "
                f"{ck['meta'].get('config', {}).get('epochs')}); the cosine schedule is re-spread")
    elif cfg.init:
        init_info = _transfer_init(net, ds, cfg.init)
        log(f"init: weights of {init_info['from']}; head rows of {init_info['head_rows_kept']} of "
            f"{ds.num_classes} classes kept by name, the others fresh")
    model = SandwichLoss(net, cfg)
    if world > 1:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True)

    meta = {"config": asdict(cfg), "dataset": ds.name, "dataset_fingerprint": ds.fingerprint,
            "superclasses": ds.superclasses, "classes": ds.classes, "versions": versions(),
            "command": command_line(), "world_size": world}
    if init_info:
        meta["init"] = init_info
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        import yaml
        atomic_write_text(out / "args.yaml", yaml.safe_dump(
            {**asdict(cfg), "world_size": world, "command": command_line(), "search_space": space.to_dict(),
             "dataset": portable_source(ds.source),
             **({"init_record": init_info} if init_info else {}),
             "versions": versions()}, sort_keys=False))

    # Running totals of the current epoch.  Each rank counts its own images, correct predictions
    # and losses; rank 0 also carries the totals of the epoch's earlier segments (before a resume),
    # so a sum over ranks gives the epoch's global totals.  "seconds" is training time only.
    _KEYS = ("seen", "loss_sum", "loss_count", "correct_sum")
    acc: dict = {}

    def global_totals() -> dict:
        """The epoch's totals summed over ranks (a collective: every rank must call it)."""
        vals = _all_reduce_sum([float(acc.get(k, 0)) for k in _KEYS], world, device)
        return {**dict(zip(_KEYS, vals)), "n_steps": acc.get("n_steps", 0),
                "seconds": acc.get("seconds", 0.0) + (time.time() - acc["t0"] if "t0" in acc else 0.0)}

    def save(ep: int, st: int, totals: dict | None = None) -> None:
        if rank != 0:
            return
        atomic_torch_save({"format": "edgeeas-supernet/1", "space": space.to_dict(), "state_dict": net.state_dict(),
                           "optimizer": opt.state_dict(), "epoch": ep, "step": st, "meta": meta,
                           "history": json.dumps(history),
                           "partial_epoch": json.dumps(totals if st and totals else {})}, last)

    eval_idx = np.sort(np.random.default_rng(123).choice(len(ds.test.labels),
                                                        min(cfg.eval_images, len(ds.test.labels)), replace=False))
    recal = recal_images(ds, n=cfg.recal_images, seed=cfg.seed)
    it = epoch * spe + step_in_epoch
    last_save = time.time()
    arch_rng_base = f"{cfg.seed}:arch"
    if rank == 0 and resume:
        _cut_steps_log(out / "steps.jsonl", epoch, step_in_epoch)
    steps_log = open(out / "steps.jsonl", "a") if rank == 0 else None
    try:
        while epoch < cfg.epochs:
            bar = None
            if rank == 0 and progress:
                from tqdm import tqdm
                bar = tqdm(total=spe, initial=step_in_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                           unit="step", mininterval=1.0 if os.isatty(2) else 60.0, dynamic_ncols=True)
            net.train()
            acc.clear()
            if step_in_epoch and partial and rank == 0:
                acc.update(partial)
                acc.setdefault("loss_count", partial.get("n_steps", 0))  # checkpoints before loss_count: 1 rank
            partial = {}
            for k in _KEYS:
                acc.setdefault(k, 0)
            acc["n_steps"] = step_in_epoch
            acc.setdefault("seconds", 0.0)
            acc["t0"] = time.time()
            if cfg.max_steps and it >= cfg.max_steps:
                if bar:
                    bar.close()
                break
            for step in range(step_in_epoch, spe):
                if cfg.max_steps and it >= cfg.max_steps:
                    break
                kept = batches.kept(epoch, step)
                idx, aug_rng = batches.batch(epoch, step, kept)
                x = augment(ds.train.images[idx], aug_rng).to(device, memory_format=mf)
                labels = torch.as_tensor(ds.train.labels[idx])
                kept_cols = torch.tensor(sorted(c for s in kept for c in ds.classes_of(s)))
                remap = torch.full((ds.num_classes,), -1, dtype=torch.long)
                remap[kept_cols] = torch.arange(len(kept_cols))
                y = remap[labels].to(device)
                r = random.Random(f"{arch_rng_base}:{epoch}:{step}")
                archs = [space.largest(), space.smallest()] + [space.sample(r) for _ in range(cfg.num_random)]
                for g in opt.param_groups:
                    g["lr"] = _lr_at(cfg, it, total, spe)
                opt.zero_grad(set_to_none=True)
                loss, correct = model(x, y, kept_cols.to(device), archs)
                loss.backward()
                opt.step()
                it += 1
                acc["seen"] += len(idx)
                acc["loss_sum"] += loss.item()
                acc["loss_count"] += 1
                acc["correct_sum"] += correct.item()
                acc["n_steps"] += 1
                if steps_log:
                    steps_log.write(json.dumps({"epoch": epoch, "step": step, "kept": kept,
                                                "archs": [str(a) for a in archs[2:]],
                                                "loss": round(loss.item(), 4)}) + "\n")
                if bar:
                    bar.update(1)
                    bar.set_postfix(loss=f"{acc['loss_sum'] / max(1, acc['loss_count']):.3f}",
                                    lr=f"{opt.param_groups[0]['lr']:.4f}")
                due = time.time() - last_save > cfg.checkpoint_minutes * 60
                if world > 1:  # rank 0's clock decides, so every rank joins the collective below
                    due = _all_reduce_sum([float(due and rank == 0)], world, device)[0] > 0
                if due:
                    if steps_log:
                        steps_log.flush()
                    save(epoch, step + 1, global_totals())
                    last_save = time.time()
            if bar:
                bar.close()
            finished_epoch = acc["n_steps"] >= spe
            acc["seconds"] += time.time() - acc.pop("t0")  # before evaluation: images/s counts training only
            tot = global_totals()
            if rank == 0:
                secs = tot["seconds"]
                row = {"epoch": epoch + 1, "steps": tot["n_steps"], "images": int(tot["seen"]),
                       "lr": round(opt.param_groups[0]["lr"], 6),
                       "train_loss": round(tot["loss_sum"] / max(1, tot["loss_count"]), 4),
                       "train_acc_largest_kept": round(100 * tot["correct_sum"] / max(1, tot["seen"]), 2),
                       "images_per_s": round(tot["seen"] / max(secs, 1e-9), 1), "seconds": round(secs, 1)}
                net.eval()
                for name, arch in (("smallest", space.smallest()), ("largest", space.largest())):
                    res = evaluate_arch(net, arch, ds, recal=recal, test_idx=eval_idx)
                    row[f"{name}_within_acc"] = round(res.mean_within, 2)
                    row[f"{name}_top1"] = round(res.top1_all, 2)
                net.set_largest()
                history[:] = [h for h in history if h["epoch"] != row["epoch"]] + [row]  # one row per epoch
                _write_summary(out / "summary.csv", history)
                log("  ".join(f"{k}={v}" for k, v in row.items()))
            if not finished_epoch:
                save(epoch, acc["n_steps"], tot)
                if rank == 0:  # supernet.pt always holds the weights the run stopped with
                    save_supernet(out / "supernet.pt", net, {**meta, "epochs_done": epoch,
                                                             "steps_done": it, "history": history})
                break
            epoch, step_in_epoch = epoch + 1, 0
            save(epoch, 0)
            last_save = time.time()
            if rank == 0:
                save_supernet(out / "supernet.pt", net, {**meta, "epochs_done": epoch, "steps_done": it,
                                                         "history": history})
                if epoch in cfg.keep_epochs:
                    import shutil
                    shutil.copyfile(last, out / f"epoch{epoch:02d}.pt.tmp")
                    os.replace(out / f"epoch{epoch:02d}.pt.tmp", out / f"epoch{epoch:02d}.pt")
        if rank == 0 and not (out / "supernet.pt").exists():
            save_supernet(out / "supernet.pt", net, {**meta, "epochs_done": epoch, "steps_done": it,
                                                     "history": history})
    finally:
        if steps_log:
            steps_log.close()
        if world > 1:
            import torch.distributed as dist
            dist.destroy_process_group()
    return out / "supernet.pt"


def _cut_steps_log(path: Path, epoch: int, step: int) -> None:
    """Drop the records of steps at or after (epoch, step), the checkpoint a resume starts from:
    a killed run may have logged steps its checkpoint does not hold, which the resume repeats.
    A torn last line (killed mid-write) is dropped too.  Rewritten atomically."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if (int(rec["epoch"]), int(rec["step"])) < (epoch, step):
            keep.append(line + "\n")
    atomic_write_text(path, "".join(keep))


def _all_reduce_sum(values: list[float], world: int, device=None) -> list[float]:
    """``values`` summed over the ranks of the process group (returned as is for one process)."""
    if world <= 1:
        return list(values)
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def _write_summary(path: Path, rows: list[dict]) -> None:
    import io
    keys = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())
