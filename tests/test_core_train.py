"""edgeeas.train's method on tiny hand-made inputs, against independently computed numbers (no
CIFAR-100, no training run: fast enough to run once per mutant in ``make mutate``): the sandwich
rule with in-place distillation and superclass dropout (:class:`SandwichLoss`), which steps keep
which superclasses and which images (:class:`_Batches`), the learning-rate schedule, weight-decay
groups and the augmentation."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from edgeeas.data import Dataset, Split
from edgeeas.evaluate import to_float
from edgeeas.train import SandwichLoss, TrainConfig, _Batches, _lr_at, _param_groups, augment


def _dataset(n_super: int = 4, per_class: int = 6) -> Dataset:
    """``n_super`` superclasses of 2 classes each; class c has ``per_class`` train images."""
    classes = [f"c{i}" for i in range(2 * n_super)]
    labels = np.repeat(np.arange(len(classes)), per_class).astype(np.int64)
    imgs = np.zeros((len(labels), 3, 8, 8), dtype=np.uint8)
    split = Split(imgs, labels)
    return Dataset("tiny", classes, [f"s{i}" for i in range(n_super)],
                   np.arange(len(classes), dtype=np.int64) // 2, split, split)


class _Toy(nn.Module):
    """A 'supernet' whose active architecture is a fixed logit table per arch name (B, C)."""

    def __init__(self, tables: dict[str, torch.Tensor]):
        super().__init__()
        self.tables, self.active = tables, None

    def set_active(self, arch):
        self.active = arch

    def forward(self, x):
        return self.tables[self.active][: len(x)]


def _ce(logits, y, eps):
    """Label-smoothed cross-entropy written out: (1-eps) * NLL + eps * mean over classes of -log p."""
    logp = logits - logits.exp().sum(1, keepdim=True).log()
    nll = -logp[torch.arange(len(y)), y]
    return ((1 - eps) * nll + eps * (-logp).mean(1)).mean()


def _kl(student, teacher):
    """KL(teacher || student) summed over classes, averaged over the batch."""
    pt = teacher.softmax(1)
    return (pt * (pt.log() - student.log_softmax(1))).sum(1).mean()


@pytest.mark.parametrize("eps,kd", [(0.0, 1.0), (0.1, 0.5), (0.2, 0.0)])
def test_sandwich_loss_against_the_formula(eps, kd):
    g = torch.Generator().manual_seed(0)
    B, C = 5, 10
    tables = {a: torch.randn(B, C, generator=g) * 3 for a in ("largest", "small", "mid")}
    kept = torch.tensor([1, 4, 5, 8])
    y = torch.tensor([0, 3, 2, 1, 3])
    cfg = TrainConfig(label_smoothing=eps, kd_ratio=kd)
    loss, correct = SandwichLoss(_Toy(tables), cfg)(torch.zeros(B, 3, 4, 4), y, kept, ["largest", "small", "mid"])
    t = tables["largest"][:, kept]
    want = _ce(t, y, eps)
    for a in ("small", "mid"):
        s = tables[a][:, kept]
        want = want + _ce(s, y, eps) + kd * _kl(s, t)
    assert float(loss) == pytest.approx(float(want), rel=1e-5)
    assert float(correct) == float((t.argmax(1) == y).sum())


def test_sandwich_loss_ignores_dropped_logits_and_teaches_with_a_detached_teacher():
    g = torch.Generator().manual_seed(1)
    B, C = 4, 8
    big = torch.randn(B, C, generator=g).requires_grad_()
    small = torch.randn(B, C, generator=g).requires_grad_()
    kept = torch.tensor([0, 2, 3])
    y = torch.tensor([2, 0, 1, 1])
    cfg = TrainConfig(label_smoothing=0.1, kd_ratio=1.0)
    loss, _ = SandwichLoss(_Toy({"L": big, "S": small}), cfg)(torch.zeros(B, 1), y, kept, ["L", "S"])
    loss.backward()
    dropped = [c for c in range(C) if c not in kept.tolist()]
    assert big.grad[:, dropped].abs().max() == 0 and small.grad[:, dropped].abs().max() == 0
    # the largest's gradient is its own cross-entropy's alone: the KL term does not reach the teacher
    b2 = big.detach().clone().requires_grad_()
    _ce(b2[:, kept], y, 0.1).backward()
    torch.testing.assert_close(big.grad, b2.grad)


def test_steps_per_epoch_and_the_schedule_by_hand():
    cfg = TrainConfig(batch_size=128, lr=0.1, warmup_epochs=1.0)
    assert cfg.steps_per_epoch(1000, 1) == 7 and cfg.steps_per_epoch(1000, 2) == 3
    assert cfg.steps_per_epoch(10, 2) == 1
    spe, total = 10, 50
    assert _lr_at(cfg, 0, total, spe) == pytest.approx(0.01)
    assert _lr_at(cfg, 4, total, spe) == pytest.approx(0.05)
    assert _lr_at(cfg, 9, total, spe) == pytest.approx(0.1)
    assert _lr_at(cfg, 10, total, spe) == pytest.approx(0.1)            # cosine starts at the peak
    assert _lr_at(cfg, 30, total, spe) == pytest.approx(0.05)           # half-way through the cosine
    assert _lr_at(cfg, 40, total, spe) == pytest.approx(0.05 * (1 + math.cos(math.pi * 0.75)))
    no_warm = TrainConfig(lr=0.2, warmup_epochs=0.0)
    assert _lr_at(no_warm, 0, 20, 10) == pytest.approx(0.2)
    assert _lr_at(no_warm, 10, 20, 10) == pytest.approx(0.1)


def test_weight_decay_applies_to_weights_only():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 2))
    decay, no_decay = _param_groups(net, 3e-4)
    assert decay["weight_decay"] == 3e-4 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(net[0].weight), id(net[2].weight)}
    assert len(no_decay["params"]) == 4  # conv bias, BN weight and bias, linear bias


def test_superclass_dropout_keeps_each_superclass_with_the_configured_probability():
    ds = _dataset(n_super=10)
    b = _Batches(ds, TrainConfig(superclass_dropout=0.3, batch_size=4, seed=5), 0, 1)
    kept = [b.kept(e, s) for e in range(3) for s in range(400)]
    share = sum(len(k) for k in kept) / (10 * len(kept))
    assert share == pytest.approx(0.7, abs=0.02)
    assert all(k == sorted(set(k)) and set(k) <= set(range(10)) for k in kept)
    # every rank draws the same superclasses at a step (seeded by epoch and step only)
    other = _Batches(ds, TrainConfig(superclass_dropout=0.3, batch_size=4, seed=5), 1, 2)
    assert [other.kept(e, s) for e in range(3) for s in range(400)] == kept
    assert b.kept(0, 1) != b.kept(0, 2) or b.kept(0, 3) != b.kept(0, 4)
    # never nothing: at a dropout near 1 exactly one superclass is kept
    nearly_all = _Batches(ds, TrainConfig(superclass_dropout=0.999, seed=5), 0, 1)
    assert all(len(nearly_all.kept(0, s)) >= 1 for s in range(200))
    assert _Batches(ds, TrainConfig(superclass_dropout=0.0), 0, 1).kept(0, 0) == list(range(10))


def test_batches_of_kept_superclasses_and_of_plain_epochs():
    ds = _dataset(n_super=4, per_class=6)  # 48 images, 12 per superclass
    cfg = TrainConfig(batch_size=8, seed=3)
    r0, r1 = _Batches(ds, cfg, 0, 2), _Batches(ds, cfg, 1, 2)
    assert r0.steps == 3
    # a plain epoch: the ranks take disjoint slices of one permutation, together every image once
    seen = []
    for step in range(r0.steps):
        a, _ = r0.batch(0, step, [0, 1, 2, 3])
        b, _ = r1.batch(0, step, [0, 1, 2, 3])
        assert len(a) == len(b) == 8 and not set(a) & set(b)
        seen += list(a) + list(b)
    assert sorted(seen) == list(range(48))
    # superclass dropout: only the kept superclasses' images, no repeats, capped by what there is
    for kept in ([1], [0, 3]):
        idx, _ = r0.batch(1, 0, kept)
        assert len(idx) == min(8, 12 * len(kept)) == len(set(idx))
        assert set(ds.class_to_super[ds.train.labels[idx]]) <= set(kept)
    small = _Batches(ds, TrainConfig(batch_size=20, seed=3), 0, 1)
    idx, _ = small.batch(0, 0, [2])
    assert sorted(idx) == list(range(24, 36))
    # a subset for tests: a fixed sample of the training images
    sub = _Batches(ds, TrainConfig(batch_size=4, train_subset=10, seed=3), 0, 1)
    assert len(sub.pool) == 10 and sub.steps == 2 and sum(len(s) for s in sub.by_super) == 10


def test_augment_crops_within_the_padding_and_flips_about_half():
    imgs = np.random.default_rng(0).integers(0, 256, (64, 3, 8, 8), dtype=np.uint8)
    out = augment(imgs, np.random.default_rng(1), pad=2)
    assert out.shape == (64, 3, 8, 8) and out.dtype == torch.float32
    ref = to_float(np.pad(imgs, ((0, 0), (0, 0), (2, 2), (2, 2))))  # zero padding, then normalized
    found = []
    for i in range(64):
        hits = [(dy, dx, f) for dy in range(5) for dx in range(5) for f in (False, True)
                if torch.equal(out[i], ref[i, :, dy:dy + 8, dx:dx + 8].flip(-1) if f
                               else ref[i, :, dy:dy + 8, dx:dx + 8])]
        assert hits, f"image {i} is not a crop of its zero-padded input, flipped or not"
        found.append(hits[0])
    assert 16 <= sum(f for _, _, f in found) <= 48                  # about half flipped
    assert {dy for dy, _, _ in found} == {dx for _, dx, _ in found} == set(range(5))  # every offset 0..2*pad
