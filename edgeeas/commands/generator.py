"""``edgeeas train generator``: one generator per (supernet, target) covering every budget."""
from __future__ import annotations

from pathlib import Path

import click

from ._options import data_option

__all__ = ["train_generator"]


@click.command("generator")
@click.option("--supernet", "supernet_arg", default=None, metavar="RUN_OR_PT",
              help="run directory or supernet checkpoint (default: runs/default)")
@click.option("--target", default=None, help="latency target whose table the budgets refer to (e.g. host)")
@click.option("--madds", is_flag=True, help="budgets in MAdds instead of a target's latency")
@data_option
@click.option("--steps", default=2000, show_default=True, type=click.IntRange(1))
@click.option("--batch-size", default=48, show_default=True, type=click.IntRange(1),
              help="scenario images per step for the accuracy term")
@click.option("--cost-batch", default=64, show_default=True, type=click.IntRange(0),
              help="extra scenarios per step for the budget term only")
@click.option("--lr", default=2e-3, show_default=True, type=click.FloatRange(0, min_open=True))
@click.option("--acc-weight", default=1.0, show_default=True, type=click.FloatRange(0))
@click.option("--lat-weight", default=10.0, show_default=True, type=click.FloatRange(0))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--threads", default=0, type=click.IntRange(0), help="torch threads (0: torch's default)")
@click.option("--checkpoint-every", default=100, show_default=True, type=click.IntRange(0),
              help="steps between resumable checkpoints (<out>.ckpt)")
@click.option("--out", default=None, help="output file (default: RUN/generator-<target>.pt)")
@click.option("--resume", is_flag=True, help="continue an interrupted run from <out>.ckpt")
@click.option("--overwrite", is_flag=True, help="replace an existing generator file")
@click.option("--quiet", is_flag=True, help="no progress bar")
def train_generator(supernet_arg, target, madds, data, steps, batch_size, cost_batch, lr, acc_weight, lat_weight,
                    seed, threads, checkpoint_every, out, resume, overwrite, quiet):
    """Train the architecture generator against a frozen supernet.

    \b
    One generator covers every budget of one cost model:
      edgeeas train generator --supernet runs/default --target host
      edgeeas train generator --supernet runs/default --madds --steps 500
    Checkpoints are atomic; interrupt it and rerun with --resume.
    """
    import yaml

    from ..checkpoint import default_generator_path, load_supernet, resolve_supernet
    from ..data import load_dataset
    from ..errors import EdgeeasUsageError
    from ..search import GeneratorConfig, GeneratorError, load_cost, train_generator as train
    from ..search.fitness import supernet_fingerprint
    from ..utils import atomic_write_text, command_line, versions

    if bool(target) == bool(madds):
        raise EdgeeasUsageError("give exactly one of --target T (latency budgets) or --madds (MAdds budgets)")
    pt = resolve_supernet(supernet_arg)
    net, _ = load_supernet(pt)
    cost, cost_name = load_cost(net.space, target=target, madds=madds)
    out_path = Path(out) if out else default_generator_path(pt, cost_name)
    ckpt = Path(f"{out_path}.ckpt")
    if out_path.exists() and not overwrite and not ckpt.exists():
        raise GeneratorError(f"{out_path} already exists; pass --overwrite to retrain it")
    ds = load_dataset(data)
    cfg = GeneratorConfig(steps=steps, batch_size=batch_size, cost_batch=cost_batch, lr=lr, acc_weight=acc_weight,
                          lat_weight=lat_weight, seed=seed, threads=threads, checkpoint_every=checkpoint_every)
    args = {"supernet": str(pt), "supernet_fingerprint": supernet_fingerprint(net), "cost": cost_name,
            "data": ds.source, "out": str(out_path), "resume": resume, "config": cfg.__dict__,
            "command": command_line(), "versions": versions()}
    atomic_write_text(Path(f"{out_path}.args.yaml"), yaml.safe_dump(args, sort_keys=False))
    log = lambda m: click.echo(m, err=True)  # noqa: E731
    g = train(net, ds, cost, cfg, cost_name=cost_name, out=out_path, resume=resume, progress=not quiet, log=log)
    last = g.meta.get("history_tail", [{}])[-1]
    click.echo(f"generator written to {out_path} ({steps} steps, last cross-entropy {last.get('ce', 0):.3f}, "
               f"expected cost / budget {last.get('ratio', 0):.3f})")
