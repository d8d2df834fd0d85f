"""The generator recovers superclass-specific optima on a synthetic accuracy landscape with a
known answer, and a superclass-blind generator cannot."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from edgeeas.nn.supernet import Supernet
from edgeeas.search.cost import CostTable, MaddsCost
from edgeeas.search.fitness import encode, soft_encode
from edgeeas.search.generator import GeneratorConfig, train_generator
from edgeeas.space import DEFAULT_SPACE as S


def _landscape(n_sup: int) -> torch.Tensor:
    """Weights (n_sup, arch encoding width): even superclasses gain from 7x7 kernels, odd ones
    from expand 6 and lose from 7x7 kernels; every active block gains a little (so both want depth)."""
    nd, ne, nk, D = len(S.depths), len(S.expands), len(S.kernels), S.max_depth
    width = S.num_stages * nd + S.num_stages * D * (ne + nk)
    W = torch.zeros(n_sup, width)
    for s in range(n_sup):
        for st in range(S.num_stages):
            for b in range(D):
                base = S.num_stages * nd + (st * D + b) * (ne + nk)
                W[s, base:base + ne] += 0.004                    # any active block: +0.4 points
                if s % 2 == 0:
                    W[s, base + ne + S.kernels.index(7)] += 0.02
                else:
                    W[s, base + S.expands.index(6)] += 0.02
                    W[s, base + ne + S.kernels.index(7)] -= 0.01       # ... and lose from 7x7 kernels
    return W


def _acc(W, enc, mh):
    n = mh.shape[1]
    return 0.5 + (enc[:, :-n] * (mh @ W)).sum(1) / mh.sum(1)


def _train(cifar, blind: bool):
    table = CostTable(MaddsCost(S), S)
    W = _landscape(cifar.num_superclasses)
    active = torch.as_tensor(table.active, dtype=torch.float32)

    def model(mh, wd, we, wk):
        return _acc(W, soft_encode(wd, we, wk, mh, active), mh)

    cfg = GeneratorConfig(steps=400, cost_batch=64, multi_prob=0.0, blind=blind, seed=0, threads=1)
    torch.manual_seed(0)
    g = train_generator(Supernet(S), cifar, MaddsCost(S), cfg, accuracy_model=model,
                        accuracy_identity={"landscape": "k7-even-e6-odd"})
    return g, table, W


def _stats(g, table, W, n_sup):
    scen = [[s] for s in range(n_sup)]
    budgets = [sum(table.bounds(5)) / 2] * n_sup
    archs = g.generate(scen, budgets)
    mh = torch.eye(n_sup)
    acc = _acc(W, encode(archs, scen, S, n_sup), mh)
    k7 = [np.mean([k == 7 for blocks in a.blocks_per_stage() for k, _ in blocks]) for a in archs]
    e6 = [np.mean([e == 6 for blocks in a.blocks_per_stage() for _, e in blocks]) for a in archs]
    even, odd = slice(0, None, 2), slice(1, None, 2)
    return {"acc": acc.mean().item(), "k7_even": np.mean(k7[even]), "k7_odd": np.mean(k7[odd]),
            "e6_even": np.mean(e6[even]), "e6_odd": np.mean(e6[odd]),
            "distinct": len({str(a) for a in archs}),
            "over": sum(S.madds(a) / 1e6 > b + 1e-9 for a, b in zip(archs, budgets))}


@pytest.mark.slow
def test_generator_recovers_superclass_specific_optima_and_blind_one_does_not(cifar):
    n = cifar.num_superclasses
    g, table, W = _train(cifar, blind=False)
    cond = _stats(g, table, W, n)
    gb, _, _ = _train(cifar, blind=True)
    blind = _stats(gb, table, W, n)
    print("conditioned", cond, "blind", blind)
    assert cond["over"] == 0 and blind["over"] == 0               # every output meets its budget
    assert cond["k7_even"] >= cond["k7_odd"] + 0.4, cond           # 7x7 kernels where they pay
    assert cond["e6_odd"] >= cond["e6_even"] + 0.3, cond           # expand 6 where it pays
    assert cond["distinct"] >= 2
    assert blind["distinct"] == 1                                  # one answer for every superclass
    assert cond["acc"] >= blind["acc"] + 0.02, (cond, blind)       # and it costs the blind one accuracy
