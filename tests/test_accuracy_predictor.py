"""The accuracy predictor (ridge with architecture x superclass interactions) on landscapes with
a known answer: it recovers a per-superclass preference, predicts a multi-superclass scenario as
the mean of its superclasses, chooses its strengths by cross-validation, and cannot be driven
far past what it was fitted on (the MLP's failure that the generator exploited)."""
from __future__ import annotations

import random

import pytest
import torch

from edgeeas.search.fitness import AccuracyPredictor, encode, soft_encode
from edgeeas.space import DEFAULT_SPACE

SPACE = DEFAULT_SPACE
N_SUP = 4


def _landscape(arch, sc: int) -> float:
    """Accuracy fraction: bigger is better for everyone; superclass 0 prefers kernel 7 in
    stage 0 and superclass 1 prefers expand 3 there (a known per-superclass answer)."""
    blocks = arch.blocks_per_stage()
    acc = 0.70 + 0.004 * sum(arch.depths) + 0.002 * sum(e for st in blocks for _, e in st)
    k0 = blocks[0][0][0]
    e0 = blocks[0][0][1]
    if sc == 0:
        acc += 0.03 * (k0 == 7)
    if sc == 1:
        acc += 0.03 * (e0 == 3)
    return acc


def _data(n_archs: int, seed: int):
    rng = random.Random(seed)
    archs = [SPACE.sample(rng) for _ in range(n_archs)]
    rows = [(a, s) for a in archs for s in range(N_SUP)]
    x = encode([a for a, _ in rows], [[s] for _, s in rows], SPACE, N_SUP)
    y = torch.tensor([_landscape(a, s) for a, s in rows], dtype=torch.float32)
    g = torch.Generator().manual_seed(seed)
    return archs, x, y + 0.002 * torch.randn(len(y), generator=g)


@pytest.fixture(scope="module")
def fitted():
    archs, x, y = _data(120, 0)
    p = AccuracyPredictor(x.shape[1], N_SUP)
    rmse = p.fit(x, y, seed=0)
    return p, rmse


def test_it_fits_and_generalizes_to_new_architectures(fitted):
    p, rmse = fitted
    _, xt, yt = _data(40, 1)
    with torch.no_grad():
        held = 100 * float(((p(xt) - yt) ** 2).mean().sqrt())
    assert rmse < 0.6 and held < 0.8, (rmse, held)
    assert p.cv_rmse is not None and p.strengths in AccuracyPredictor.GRID


def test_it_ranks_the_per_superclass_preference(fitted):
    p, _ = fitted
    base = SPACE.parse("d33333-k333333333333333-e444444444444444")
    k7 = SPACE.parse("d33333-k733333333333333-e444444444444444")
    e3 = SPACE.parse("d33333-k333333333333333-e344444444444444")
    with torch.no_grad():
        f = lambda a, s: float(p(encode([a], [[s]], SPACE, N_SUP))[0])  # noqa: E731
        assert f(k7, 0) - f(base, 0) > 0.015 > abs(f(k7, 2) - f(base, 2))
        assert f(e3, 1) - f(base, 1) > 0.01 and f(e3, 3) < f(base, 3)


def test_a_multi_superclass_scenario_is_the_mean_of_its_superclasses(fitted):
    p, _ = fitted
    a = SPACE.sample(random.Random(5))
    with torch.no_grad():
        singles = [float(p(encode([a], [[s]], SPACE, N_SUP))[0]) for s in (0, 2, 3)]
        multi = float(p(encode([a], [[0, 2, 3]], SPACE, N_SUP))[0])
    assert multi == pytest.approx(sum(singles) / 3, abs=1e-6)


def test_gradient_ascent_cannot_drive_it_far_past_its_data(fitted):
    """What the generator does to it: maximize the prediction over soft decisions.  The MLP
    this replaces went ~8 points past anything measured; this model's maximum is bounded by the
    best one-hot choice per decision, which is near the best architecture in the data."""
    p, _ = fitted
    nd, ne, nk = len(SPACE.depths), len(SPACE.expands), len(SPACE.kernels)
    S, D = SPACE.num_stages, SPACE.max_depth
    active = torch.tensor([[1.0 if b < d else 0.0 for b in range(D)] for d in SPACE.depths])
    ld = torch.zeros(1, S, nd, requires_grad=True)
    le = torch.zeros(1, S, D, ne, requires_grad=True)
    lk = torch.zeros(1, S, D, nk, requires_grad=True)
    opt = torch.optim.Adam([ld, le, lk], lr=0.1)
    mh = torch.zeros(1, N_SUP)
    mh[0, 0] = 1
    for _ in range(300):
        opt.zero_grad()
        loss = -p(soft_encode(ld.softmax(-1), le.softmax(-1), lk.softmax(-1), mh, active)).sum()
        loss.backward()
        opt.step()
    best_true = max(_landscape(SPACE.sample(random.Random(i)), 0) for i in range(2000))
    largest = _landscape(SPACE.largest(), 0)
    assert -loss.item() < max(best_true, largest) + 0.02, (-loss.item(), best_true, largest)
