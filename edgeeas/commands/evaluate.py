"""``edgeeas eval`` (within-superclass accuracy of subnets) and ``edgeeas arch`` (MAdds and
parameters of an architecture)."""
from __future__ import annotations

import click

from ._options import data_option

__all__ = ["eval_cmd", "arch_cmd"]


@click.command("eval")
@click.argument("archs", nargs=-1)
@click.option("--supernet", "supernet_path", default=None, help="supernet checkpoint (default: the shipped runs/default/supernet.pt)")
@data_option
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

    from ..checkpoint import load_supernet
    from ..data import load_dataset
    from ..evaluate import evaluate_arch, recal_images as pick_recal

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


@click.command("arch")
@click.argument("arch")
def arch_cmd(arch):
    """MAdds and parameters of ARCH (an architecture string, or 'smallest', 'middle', 'largest')."""
    from ..space import DEFAULT_SPACE as space

    a = getattr(space, arch)() if arch in ("smallest", "middle", "largest") else space.parse(arch)
    click.echo(f"{a}\nMAdds: {space.madds(a) / 1e6:.3f} M\nparameters: {space.params(a) / 1e6:.4f} M")
