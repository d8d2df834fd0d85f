"""``edgeeas train supernet`` (and the ``train`` group, whose ``generator`` lives in
:mod:`edgeeas.commands.generator`)."""
from __future__ import annotations

import os

import click

from ._click import LazyGroup
from ._options import data_option

__all__ = ["train", "train_supernet_cmd"]


def _epoch_list(text: str) -> tuple[int, ...]:
    try:
        eps = tuple(int(e) for e in text.split(",") if e.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of epoch numbers (e.g. 30 or 10,30)") from None
    if any(e < 1 for e in eps):
        raise click.BadParameter(f"{text!r}: epoch numbers start at 1")
    return eps


@click.group(cls=LazyGroup, lazy={"generator": "edgeeas.commands.generator:train_generator"})
def train():
    """Train the supernet (``supernet``) or the architecture generator (``generator``)."""


@train.command("supernet")
@data_option
@click.option("--out", default="runs/default", show_default=True,
              help="run directory (args.yaml, summary.csv, steps.jsonl, last.pt, supernet.pt)")
@click.option("--epochs", default=12, show_default=True, type=click.IntRange(1),
              help="passes over the training split (the warm-up and cosine schedule span them)")
@click.option("--batch-size", default=128, show_default=True, type=click.IntRange(1),
              help="images per step (per process under torchrun)")
@click.option("--lr", default=0.1, show_default=True, type=click.FloatRange(0, min_open=True),
              help="peak SGD learning rate (Nesterov momentum 0.9), reached after 1 epoch of linear warm-up, then "
                   "cosine decay to 0 over the remaining epochs")
@click.option("--weight-decay", default=5e-5, show_default=True, type=click.FloatRange(0),
              help="SGD weight decay (L2 coefficient) on conv and linear weights, not on BN or biases")
@click.option("--superclass-dropout", default=0.0, show_default=True, type=click.FloatRange(0, 1, max_open=True),
              help="probability of dropping each superclass, independently, at a step; the logits of dropped "
                   "superclasses' classes are masked and their images skipped (0 turns it off; if all drop, "
                   "one is kept).  Off by default: 10 epochs at 0.5 vs 0 from one checkpoint changed "
                   "within-superclass accuracy by +0.0 to +0.3 points (95 % CI includes 0) and cost 0.4-0.5 "
                   "points of 100-way top-1 (benchmarks/results/supernet.json, ablation)")
@click.option("--num-random", default=1, show_default=True, type=click.IntRange(0),
              help="random subnets per step, besides the largest and the smallest (sandwich rule; each "
                   "subnet is one forward/backward pass)")
@click.option("--kd-ratio", default=1.0, show_default=True, type=click.FloatRange(0),
              help="weight of in-place distillation: KL divergence of every other subnet to the largest "
                   "subnet's soft predictions, added to its loss (0 turns it off)")
@click.option("--seed", default=0, show_default=True, type=int,
              help="seed of the sampled subnets, dropped superclasses and data order (offset by rank)")
@click.option("--threads", default=0, show_default=True, type=click.IntRange(0),
              help="torch threads per process (0: torch's default)")
@click.option("--max-steps", default=0, show_default=True, type=click.IntRange(0),
              help="stop after this many SGD steps in total, counted over epochs (0: no limit; for smoke tests)")
@click.option("--train-subset", default=0, show_default=True, type=click.IntRange(0),
              help="train on a seeded sample of this many training images (0: all; for smoke tests)")
@click.option("--eval-images", default=2000, show_default=True, type=click.IntRange(1),
              help="test images (a seeded sample) on which summary.csv reports each epoch's top-1 of the "
                   "smallest and largest subnets, after BN recalibration on 1,000 training images")
@click.option("--checkpoint-minutes", default=5.0, show_default=True, type=click.FloatRange(0),
              help="minutes between mid-epoch checkpoints (last.pt), besides the one at every epoch's end "
                   "(0: after every step)")
@click.option("--keep-epochs", default="", metavar="N,M", callback=lambda c, p, v: _epoch_list(v),
              help="after these epochs (1-based) also keep a resumable copy epochNN.pt (a fork point for "
                   "--init-from)  [default: none]")
@click.option("--init-from", default="", metavar="CKPT",
              help="start this new run from another run's end-of-epoch checkpoint (epochNN.pt or last.pt): "
                   "weights, optimizer, schedule position and history; the other options may differ (a fork)")
@click.option("--init", "init", default="", metavar="RUN_OR_PT",
              help="transfer: start from a trained supernet's weights (a run directory such as runs/default, or a "
                   ".pt); the head is rebuilt for this dataset's classes, keeping the rows of classes with the same "
                   "names; fresh optimizer and schedule (unlike --init-from)")
@click.option("--resume", is_flag=True, help="continue the run in --out from its last checkpoint")
@click.option("--quiet", is_flag=True, help="no progress bar")
def train_supernet_cmd(data, out, epochs, batch_size, lr, weight_decay, superclass_dropout, num_random, kd_ratio,
                       seed, threads, max_steps, train_subset, eval_images, checkpoint_minutes, keep_epochs, init_from,
                       init, resume, quiet):
    """Train the elastic supernet with the sandwich rule, in-place distillation and superclass dropout.

    \b
    Runs on one CPU, or under torchrun with DistributedDataParallel (gloo on CPUs, NCCL on GPUs):
      torchrun --nproc_per_node=4 -m edgeeas.cli train supernet --out runs/big --epochs 120
    Checkpoints are atomic; kill it at any time and rerun with --resume.
    The head is sized from the dataset (--data TREE, --superclasses FILE); to fine-tune the
    shipped supernet on your classes (transfer): --init runs/default.
    """
    from ..data import load_dataset
    from ..train import TrainConfig, train_supernet

    ds = load_dataset(data)
    cfg = TrainConfig(out=out, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                      superclass_dropout=superclass_dropout, num_random=num_random, kd_ratio=kd_ratio, seed=seed,
                      threads=threads, max_steps=max_steps, train_subset=train_subset, eval_images=eval_images,
                      checkpoint_minutes=checkpoint_minutes, init_from=init_from, init=init,
                      keep_epochs=keep_epochs)
    path = train_supernet(ds, cfg, resume=resume, progress=not quiet,
                          log=lambda m: click.echo(m, err=True))
    if int(os.environ.get("RANK", "0")) == 0:
        click.echo(f"supernet written to {path}")
