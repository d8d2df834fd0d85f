"""``edgeeas search``: one scenario, one strategy, the architecture it finds."""
from __future__ import annotations

from pathlib import Path

import click

from ._options import data_option, search_options, strategy_option

__all__ = ["search"]


@click.command("search")
@strategy_option("--strategy", "-s", required=True)
@click.option("--superclass", "superclasses", required=True, multiple=True,
              help="superclass of the scenario; a+b for a scenario of two, as in specialize (repeating "
                   "--superclass also adds to the one scenario: search finds one architecture)")
@click.option("--budget", required=True, help="20ms, 500us (latency on --target) or 8M (millions of MAdds)")
@click.option("--target", default="host", show_default=True, help="latency target for ms/us budgets")
@click.option("--supernet", "supernet_arg", default=None, metavar="RUN_OR_PT",
              help="run directory or supernet checkpoint (default: runs/default)")
@click.option("--generator", "generator_path", default=None,
              help="generator file (default: the supernet's run directory/generator-<target>.pt)")
@data_option
@search_options
@click.option("--recal-images", default=500, show_default=True, type=click.IntRange(1),
              help="training images used to recalibrate BN statistics per subnet")
@click.option("--val-images", default=500, show_default=True, type=click.IntRange(1),
              help="held-out training images per superclass for measured accuracy")
@click.option("--seed", default=0, show_default=True, type=int,
              help="seed of the search, the held-out split and the recalibration images")
@click.option("--threads", default=0, type=click.IntRange(0), help="torch threads (0: torch's default)")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def search(strategy, superclasses, budget, target, supernet_arg, generator_path, data, fitness, evaluations,
           population, predictor_samples, latency_margin, recal_images, val_images, seed, threads, as_json):
    """Find an architecture for one scenario (superclasses + budget) with one strategy.

    \b
      edgeeas search -s generator --superclass vehicles_1 --budget 20ms
      edgeeas search -s evolution --superclass vehicles_1 --budget 8M --fitness direct
    Prints the architecture, its predicted cost, its estimated accuracy (the strategy's
    fitness, or measured on held-out training images) and the time the search took.
    """
    import json

    import torch

    from ..checkpoint import default_generator_path, load_supernet, resolve_supernet
    from ..data import load_dataset
    from ..search import (SearchContext, SearchSettings, find_arch, get_strategy, load_cost, load_generator,
                          parse_budget, strategy_options)

    if threads:
        torch.set_num_threads(threads)
    from ..search.budget import parse_margin
    from ..specialize import parse_scenarios

    # the strategy's option ranges (e.g. evolution's evaluations >= 2) fail before any loading
    opts = strategy_options(strategy, SearchSettings(fitness=fitness, evaluations=evaluations, population=population))
    b = parse_budget(budget)
    parse_margin(latency_margin)  # a bad margin fails before any loading
    # one scenario, in specialize's syntax: `a+b` (and repeated --superclass) joins superclasses
    superclasses = parse_scenarios(load_dataset(data), ["+".join(superclasses)], False, [b])[0].superclasses
    pt = resolve_supernet(supernet_arg)
    net, _ = load_supernet(pt, dataset=load_dataset(data))  # head rows matched to the classes by name
    cost, cost_name = load_cost(net.space, target=None if b.unit == "M" else target, madds=b.unit == "M")
    ds = load_dataset(data)
    log = lambda m: click.echo(m, err=True)  # noqa: E731
    ctx = SearchContext(net, ds, cost, cost_name=cost_name, cache_dir=pt.parent, recal_images=recal_images,
                        val_images=val_images, predictor_samples=predictor_samples, fitness=fitness, seed=seed,
                        latency_margin=latency_margin, log=log)
    if get_strategy(strategy).needs_generator:
        gp = Path(generator_path) if generator_path else default_generator_path(pt, cost_name)
        ctx.generator = load_generator(gp, net, cost, ds, cost_name)
    res = find_arch(strategy, ctx, list(superclasses), b, **opts)
    sc = ctx.superclass_ids(list(superclasses))
    measured = ctx.evaluator.accuracy(res.arch, sc)
    out = {**res.to_dict(), "budget": str(b), "cost_model": cost_name, "superclasses": list(superclasses),
           "heldout_accuracy": round(measured, 2)}
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
    unit = res.unit
    est = f"{res.score:.2f}% (fitness: {res.extra.get('fitness', '?')})" if res.score is not None else "n/a"
    click.echo(f"architecture:       {res.arch}")
    click.echo(f"predicted cost:     {res.predicted_cost:.3f}{unit} (budget {b}, {cost_name}, "
               f"{100 * res.predicted_cost / res.budget:.1f}% used)")
    click.echo(f"estimated accuracy: {est}")
    click.echo(f"held-out accuracy:  {measured:.2f}% (BN recalibrated; {'+'.join(superclasses)} held-out "
               f"training images, {val_images} per superclass)")
    click.echo(f"search time:        {res.seconds:.4f} s, {res.evaluations} evaluations")
