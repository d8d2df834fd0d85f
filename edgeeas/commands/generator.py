"""``edgeeas train generator``: one generator per (supernet, target) covering every budget."""
from __future__ import annotations

from pathlib import Path

import click

from ._options import data_option

__all__ = ["train_generator"]


@click.command("generator")
@click.option("--supernet", "supernet_arg", default=None, metavar="RUN_OR_PT",
              help="run directory or supernet checkpoint (default: runs/default)")
@click.option("--target", default=None,
              help="latency target whose table the budgets refer to (host, or a benched target's name); "
                   "give it or --madds [default: none]")
@click.option("--madds", is_flag=True, help="budgets in millions of MAdds instead of a target's latency (ms)")
@data_option
@click.option("--steps", default=2000, show_default=True, type=click.IntRange(1),
              help="generator training steps")
@click.option("--batch-size", default=48, show_default=True, type=click.IntRange(1),
              help="scenario images per step for the accuracy term")
@click.option("--cost-batch", default=64, show_default=True, type=click.IntRange(0),
              help="extra scenarios per step for the budget term only")
@click.option("--lr", default=2e-3, show_default=True, type=click.FloatRange(0, min_open=True),
              help="Adam learning rate of the generator")
@click.option("--accuracy", "accuracy", type=click.Choice(["predictor", "supernet"]), default="predictor",
              show_default=True,
              help="accuracy term: 'predictor' = an accuracy predictor (ridge regression on the architecture's "
                   "decisions with architecture x superclass interactions) fitted on subnets measured on every "
                   "superclass's held-out images (measured once, cached beside the supernet), applied to every "
                   "scenario of a step; 'supernet' = the frozen supernet's cross-entropy on one scenario's images "
                   "per step (the method of edgeeas 0.1, superclass-blind in practice)")
@click.option("--predictor-samples", default=200, show_default=True, type=click.IntRange(3),
              help="subnets measured on all superclasses for the predictor (one time, ~5 s each here)")
@click.option("--val-images", default=500, show_default=True, type=click.IntRange(1),
              help="held-out training images per superclass that accuracies are measured on (never trained on)")
@click.option("--acc-weight", default=1.0, show_default=True, type=click.FloatRange(0),
              help="weight of the accuracy term against the budget term (0: budget term alone)")
@click.option("--lat-weight", default=10.0, show_default=True, type=click.FloatRange(0),
              help="weight of the budget penalty (expected cost over the budget) in the loss")
@click.option("--seed", default=0, show_default=True, type=int,
              help="seed of the sampled scenarios and Gumbel noise")
@click.option("--threads", default=0, show_default=True, type=click.IntRange(0),
              help="torch threads (0: torch's default, one per core)")
@click.option("--checkpoint-every", default=100, show_default=True, type=click.IntRange(0),
              help="steps between resumable checkpoints (<out>.ckpt)")
@click.option("--out", default=None, help="output file [default: RUN/generator-<target>.pt, RUN/generator-madds.pt]")
@click.option("--resume", is_flag=True, help="continue an interrupted run from <out>.ckpt")
@click.option("--overwrite", is_flag=True, help="replace an existing generator file")
@click.option("--quiet", is_flag=True, help="no progress bar")
def train_generator(supernet_arg, target, madds, data, steps, batch_size, cost_batch, lr, accuracy, predictor_samples,
                    val_images, acc_weight, lat_weight, seed, threads, checkpoint_every, out, resume, overwrite, quiet):
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
    from ..utils import atomic_write_text, command_line, portable_path, portable_source, versions

    if bool(target) == bool(madds):
        raise EdgeeasUsageError("give exactly one of --target T (latency budgets) or --madds (MAdds budgets)")
    pt = resolve_supernet(supernet_arg)
    net, _ = load_supernet(pt, dataset=load_dataset(data))  # head rows matched to the classes by name
    cost, cost_name = load_cost(net.space, target=target, madds=madds)
    out_path = Path(out) if out else default_generator_path(pt, cost_name)
    ckpt = Path(f"{out_path}.ckpt")
    if out_path.exists() and not overwrite and not ckpt.exists():
        raise GeneratorError(f"{out_path} already exists; pass --overwrite to retrain it")
    ds = load_dataset(data)
    cfg = GeneratorConfig(steps=steps, batch_size=batch_size, cost_batch=cost_batch, lr=lr, acc_weight=acc_weight,
                          accuracy=accuracy, lat_weight=lat_weight, seed=seed, threads=threads, val_images=val_images,
                          checkpoint_every=checkpoint_every)
    args = {"supernet": portable_path(pt), "supernet_fingerprint": supernet_fingerprint(net), "cost": cost_name,
            "data": portable_source(ds.source), "out": portable_path(out_path), "resume": resume, "config": cfg.__dict__,
            "command": command_line(), "versions": versions()}
    atomic_write_text(Path(f"{out_path}.args.yaml"), yaml.safe_dump(args, sort_keys=False))
    log = lambda m: click.echo(m, err=True)  # noqa: E731
    acc_model = acc_ident = None
    if accuracy == "predictor" and acc_weight > 0:
        from ..search import SearchContext
        from ..search.cost import CostTable
        from ..search.generator import predictor_accuracy_model

        if threads:
            import torch
            torch.set_num_threads(threads)
        ctx = SearchContext(net, ds, cost, cost_name=cost_name, cache_dir=Path(pt).parent,
                            predictor_samples=predictor_samples, val_images=val_images, seed=seed, log=log)
        acc_model = predictor_accuracy_model(ctx.predictor(None, progress=not quiet), CostTable(cost, net.space))
        acc_ident = ctx.predictor_identity()
    g = train(net, ds, cost, cfg, cost_name=cost_name, out=out_path, resume=resume, progress=not quiet, log=log,
              accuracy_model=acc_model, accuracy_identity=acc_ident)
    last = g.meta.get("history_tail", [{}])[-1]
    term = (f"predicted accuracy {last.get('pred_acc', 0):.2f} %" if accuracy == "predictor"
            else f"last cross-entropy {last.get('ce', 0):.3f}")
    click.echo(f"generator written to {out_path} ({steps} steps, {term}, "
               f"expected cost / budget {last.get('ratio', 0):.3f})")
