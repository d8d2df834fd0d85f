"""The ``edgeeas`` command line.

Heavy modules (torch, LiteRT, litert-torch) are imported inside the commands that need them,
so ``edgeeas --help`` is instant.  Every expected failure is a one-line error: exit 2 for a
usage error, 1 for anything else.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


# Commands that live in their own modules, imported only when run (or when --help lists them).
_LAZY = {
    "bench": "edgeeas.commands.bench:bench",
    "latency": "edgeeas.commands.bench:latency",
    "devices": "edgeeas.commands.devices:devices",
    "validate": "edgeeas.commands.validate:validate",
    "search": "edgeeas.commands.search:search",
    "specialize": "edgeeas.commands.specialize:specialize",
    "report": "edgeeas.commands.specialize:report",
    "deploy": "edgeeas.commands.specialize:deploy",
    "regress": "edgeeas.commands.regress:regress",
}
_LAZY_TRAIN = {"generator": "edgeeas.commands.generator:train_generator"}


class _Group(click.Group):
    """Lazily loaded subcommands, and the project's errors as one line instead of a traceback."""

    lazy: dict[str, str] = {}

    def _lazy_available(self) -> list[str]:
        import importlib.util

        return [n for n, target in self.lazy.items()
                if importlib.util.find_spec(target.split(":")[0]) is not None]

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self._lazy_available()))

    def get_command(self, ctx, name):
        cmd = super().get_command(ctx, name)
        if cmd is None and name in self._lazy_available():
            import importlib

            mod, attr = self.lazy[name].split(":")
            cmd = getattr(importlib.import_module(mod), attr)
        return cmd

    def invoke(self, ctx):
        from .errors import EdgeeasUsageError, one_line_errors

        try:
            return super().invoke(ctx)
        except EdgeeasUsageError as e:
            raise click.UsageError(str(e), ctx) from None
        except one_line_errors() as e:
            raise click.ClickException(str(e)) from None
        except KeyboardInterrupt:
            click.echo("interrupted: everything written so far is kept; rerun the same command to resume",
                       err=True)
            sys.exit(130)


class _MainGroup(_Group):
    lazy = _LAZY


class _TrainGroup(_Group):
    lazy = _LAZY_TRAIN


DATA_HELP = "CIFAR-100 archive (.tar.gz or folder) or ImageFolder tree; default $EDGEEAS_DATA, else ./data"


@click.group(cls=_MainGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="edgeeas")
def main():
    """edgeeas: Elastic Architecture Search for phones.

    \b
    Train one elastic supernet, measure devices, then specialize a subnet for any
    (superclass, latency budget) and export it as an int8 TFLite model.

    \b
      edgeeas train supernet --out runs/mine        train the supernet (superclass dropout)
      edgeeas eval                                  within-superclass accuracy of subnets
      edgeeas bench --target host                   latency table + predictor for a target
      edgeeas bench --adb-serial SERIAL --name pixel  the same on a phone over adb
      edgeeas train generator --supernet runs/default --target host
      edgeeas specialize --target host --budget 3ms --superclass vehicles_1
      edgeeas validate out/host/vehicles_1/3ms/model.tflite
      edgeeas regress --farm farm.yaml --baseline baseline.json
    """


def _epoch_list(text: str) -> tuple[int, ...]:
    try:
        eps = tuple(int(e) for e in text.split(",") if e.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of epoch numbers (e.g. 30 or 10,30)") from None
    if any(e < 1 for e in eps):
        raise click.BadParameter(f"{text!r}: epoch numbers start at 1")
    return eps


# ---- train ------------------------------------------------------------------------------------
@main.group(cls=_TrainGroup)
def train():
    """Train the supernet (or, later, the architecture generator)."""


@train.command("supernet")
@click.option("--data", default=None, help=DATA_HELP)
@click.option("--out", default="runs/default", show_default=True, help="run directory (args.yaml, summary.csv, checkpoints)")
@click.option("--epochs", default=12, show_default=True, type=click.IntRange(1))
@click.option("--batch-size", default=128, show_default=True, type=click.IntRange(1))
@click.option("--lr", default=0.1, show_default=True, type=click.FloatRange(0, min_open=True))
@click.option("--weight-decay", default=5e-5, show_default=True, type=click.FloatRange(0))
@click.option("--superclass-dropout", default=0.5, show_default=True, type=click.FloatRange(0, 1, max_open=True),
              help="probability of dropping each superclass at a step (0 turns superclass dropout off)")
@click.option("--num-random", default=1, show_default=True, type=click.IntRange(0),
              help="random subnets per step, besides the largest and the smallest (sandwich rule)")
@click.option("--kd-ratio", default=1.0, show_default=True, type=click.FloatRange(0),
              help="weight of in-place distillation from the largest subnet")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--threads", default=0, type=click.IntRange(0), help="torch threads per process (0: torch's default)")
@click.option("--max-steps", default=0, type=click.IntRange(0), help="stop after this many steps (for smoke tests)")
@click.option("--train-subset", default=0, type=click.IntRange(0), help="train on this many images only (for smoke tests)")
@click.option("--eval-images", default=2000, show_default=True, type=click.IntRange(1),
              help="test images for the per-epoch accuracy in summary.csv")
@click.option("--checkpoint-minutes", default=5.0, show_default=True, type=click.FloatRange(0),
              help="also checkpoint mid-epoch this often")
@click.option("--keep-epochs", default="", metavar="N,M", callback=lambda c, p, v: _epoch_list(v),
              help="after these epochs also keep a resumable copy epochNN.pt (a fork point for --init-from)")
@click.option("--init-from", default="", metavar="CKPT",
              help="start this new run from another run's end-of-epoch checkpoint (epochNN.pt or last.pt): "
                   "weights, optimizer, schedule position and history; the other options may differ (a fork)")
@click.option("--resume", is_flag=True, help="continue the run in --out from its last checkpoint")
@click.option("--quiet", is_flag=True, help="no progress bar")
def train_supernet_cmd(data, out, epochs, batch_size, lr, weight_decay, superclass_dropout, num_random, kd_ratio,
                       seed, threads, max_steps, train_subset, eval_images, checkpoint_minutes, keep_epochs, init_from,
                       resume, quiet):
    """Train the elastic supernet with the sandwich rule, in-place distillation and superclass dropout.

    \b
    Runs on one CPU, or under torchrun with DistributedDataParallel (gloo on CPUs, NCCL on GPUs):
      torchrun --nproc_per_node=4 -m edgeeas.cli train supernet --out runs/big --epochs 120
    Checkpoints are atomic; kill it at any time and rerun with --resume.
    """
    from .data import load_dataset
    from .train import TrainConfig, train_supernet

    ds = load_dataset(data)
    cfg = TrainConfig(out=out, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                      superclass_dropout=superclass_dropout, num_random=num_random, kd_ratio=kd_ratio, seed=seed,
                      threads=threads, max_steps=max_steps, train_subset=train_subset, eval_images=eval_images,
                      checkpoint_minutes=checkpoint_minutes, init_from=init_from,
                      keep_epochs=keep_epochs)
    path = train_supernet(ds, cfg, resume=resume, progress=not quiet,
                          log=lambda m: click.echo(m, err=True))
    if int(os.environ.get("RANK", "0")) == 0:
        click.echo(f"supernet written to {path}")


# ---- eval -------------------------------------------------------------------------------------
@main.command("eval")
@click.argument("archs", nargs=-1)
@click.option("--supernet", "supernet_path", default=None, help="supernet checkpoint (default: the shipped runs/default/supernet.pt)")
@click.option("--data", default=None, help=DATA_HELP)
@click.option("--recal-images", default=2000, show_default=True, type=click.IntRange(1),
              help="training images used to recalibrate BN statistics per subnet")
@click.option("--test-images", default=0, type=click.IntRange(0), help="evaluate on a random subset of this many test images (0: all)")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
def eval_cmd(archs, supernet_path, data, recal_images, test_images, as_json):
    """Within-superclass accuracy of ARCHS (default: smallest, middle, largest).

    Each subnet gets BN statistics recalibrated on training images; its accuracy on each
    superclass's test images uses a head restricted to that superclass's fine classes
    (5-way on CIFAR-100), as a deployed model does.  Also prints the all-class top-1.
    """
    import json

    import numpy as np

    from .checkpoint import load_supernet
    from .data import load_dataset
    from .evaluate import evaluate_arch, recal_images as pick_recal

    net, _ = load_supernet(supernet_path)
    space = net.space
    arch_list = [space.parse(a) for a in archs] or [space.smallest(), space.middle(), space.largest()]
    ds = load_dataset(data)
    recal = pick_recal(ds, n=recal_images)
    idx = None
    if test_images:
        idx = np.sort(np.random.default_rng(0).choice(len(ds.test.labels), min(test_images, len(ds.test.labels)), replace=False))
    results = []
    for a in arch_list:
        acc = evaluate_arch(net, a, ds, recal=recal, test_idx=idx)
        results.append({"arch": str(a), "madds_m": round(space.madds(a) / 1e6, 3),
                        "params_m": round(space.params(a) / 1e6, 4), **acc.to_dict()})
    if as_json:
        click.echo(json.dumps(results, indent=2))
        return
    click.echo(f"{'architecture':<60} {'MAdds(M)':>9} {'within-sc %':>12} {'top-1 %':>8}")
    for r in results:
        click.echo(f"{r['arch']:<60} {r['madds_m']:>9.2f} {r['mean_within_superclass']:>12.2f} {r['top1_all']:>8.2f}")


@main.command("arch")
@click.argument("arch")
def arch_cmd(arch):
    """MAdds and parameters of ARCH (an architecture string, or 'smallest', 'middle', 'largest')."""
    from .space import DEFAULT_SPACE as space

    a = getattr(space, arch)() if arch in ("smallest", "middle", "largest") else space.parse(arch)
    click.echo(f"{a}\nMAdds: {space.madds(a) / 1e6:.3f} M\nparameters: {space.params(a) / 1e6:.4f} M")


if __name__ == "__main__":  # torchrun -m edgeeas.cli ...
    main()
