"""``edgeeas eval`` (within-superclass accuracy of subnets) and ``edgeeas arch`` (MAdds and
parameters of an architecture)."""
from __future__ import annotations

import click

from ._options import data_option

__all__ = ["eval_cmd", "arch_cmd"]


@click.command("eval")
@click.argument("archs", nargs=-1)
@click.option("--supernet", "supernet_path", default=None, metavar="RUN_OR_PT",
              help="run directory or supernet checkpoint (default: the shipped runs/default)")
@data_option
@click.option("--recal-images", default=2000, show_default=True, type=click.IntRange(1),
              help="training images used to recalibrate BN statistics per subnet")
@click.option("--test-images", default=0, type=click.IntRange(0), help="evaluate on a random subset of this many test images (0: all)")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
def eval_cmd(archs, supernet_path, data, recal_images, test_images, as_json):
    """Within-superclass accuracy of ARCHS (architecture strings, or smallest, middle, largest;
    default: those three).

    Each subnet gets BN statistics recalibrated on training images; its accuracy on each
    superclass's test images uses a head restricted to that superclass's fine classes
    (5-way on CIFAR-100), as a deployed model does.  Also prints the all-class top-1.
    """
    import json

    import numpy as np

    from ..checkpoint import load_supernet
    from ..data import load_dataset
    from ..evaluate import evaluate_arch, recal_images as pick_recal

    ds = load_dataset(data)
    net, _ = load_supernet(supernet_path, dataset=ds)  # head rows matched to the dataset's classes by name
    space = net.space
    arch_list = [space.resolve(a) for a in archs] or [space.smallest(), space.middle(), space.largest()]
    recal = pick_recal(ds, n=recal_images)
    idx = None
    if test_images:
        idx = np.sort(np.random.default_rng(0).choice(len(ds.test.labels), min(test_images, len(ds.test.labels)), replace=False))
    from tqdm import tqdm

    results = []
    # about a minute per subnet on a CPU (BN recalibration + the whole test split): a bar on a terminal
    for a in tqdm(arch_list, desc="eval (recalibrate + test)", unit="subnet", disable=None, leave=False):
        acc = evaluate_arch(net, a, ds, recal=recal, test_idx=idx)
        results.append({"arch": str(a), "madds_m": round(space.madds(a) / 1e6, 3),
                        "params_m": round(space.params(a) / 1e6, 4), **acc.to_dict()})
    if as_json:
        click.echo(json.dumps(results, indent=2))
        return
    click.echo(_per_superclass_table(results))


def _per_superclass_table(results: list[dict]) -> str:
    """Within-superclass accuracy per superclass (rows) and subnet (columns #1, #2, ...), then
    their mean and the all-class top-1, then which architecture each column is."""
    names = list(results[0]["per_superclass"]) if results else []
    width = max([len("within-superclass mean %")] + [len(n) for n in names])
    cols = "".join(f"{'#' + str(i + 1):>9}" for i in range(len(results)))
    lines = [f"{'superclass (within, %)':<{width}}{cols}"]
    for n in names:
        lines.append(f"{n:<{width}}" + "".join(f"{r['per_superclass'][n]:>9.2f}" for r in results))
    lines.append(f"{'within-superclass mean %':<{width}}"
                 + "".join(f"{r['mean_within_superclass']:>9.2f}" for r in results))
    lines.append(f"{'top-1 all classes %':<{width}}" + "".join(f"{r['top1_all']:>9.2f}" for r in results))
    lines.append(f"{'MAdds (M)':<{width}}" + "".join(f"{r['madds_m']:>9.2f}" for r in results))
    lines.append("")
    lines += [f"#{i + 1}  {r['arch']}" for i, r in enumerate(results)]
    return "\n".join(lines)


@click.command("arch")
@click.argument("arch")
def arch_cmd(arch):
    """MAdds and parameters of ARCH (an architecture string, or 'smallest', 'middle', 'largest')."""
    from ..space import DEFAULT_SPACE as space

    a = space.resolve(arch)
    click.echo(f"{a}\nMAdds: {space.madds(a) / 1e6:.3f} M\nparameters: {space.params(a) / 1e6:.4f} M")
