"""edgeeas.evaluate against hand-computed numbers, without CIFAR-100 (fast: run once per mutant by
``make mutate``).  A tiny hand-built Dataset of 3 superclasses stands in for the real one."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edgeeas.data import Dataset, Split
from edgeeas.evaluate import (SuperclassAccuracy, evaluate_arch, predict, recal_images, recalibrate_bn,
                              superclass_accuracy, to_float)
from edgeeas.nn.ops import ElasticBatchNorm


def _toy_dataset(train_labels=(), test_labels=()) -> Dataset:
    # 6 classes: superclass 0 = {0, 3}, 1 = {1, 4}, 2 = {2, 5}
    tr = np.asarray(train_labels, dtype=np.int64)
    te = np.asarray(test_labels, dtype=np.int64)
    img = lambda n: np.arange(n, dtype=np.uint8).repeat(3 * 2 * 2).reshape(n, 3, 2, 2)  # noqa: E731
    return Dataset("toy", [f"c{i}" for i in range(6)], ["s0", "s1", "s2"], np.array([0, 1, 2, 0, 1, 2]),
                   Split(img(len(tr)), tr), Split(img(len(te)), te))


# ---- to_float -----------------------------------------------------------------------------------

def test_to_float_uses_the_cifar_mean_and_std_per_channel():
    x = np.zeros((1, 3, 1, 2), dtype=np.uint8)
    x[0, :, 0, 1] = 255
    y = to_float(x)
    assert y.dtype == torch.float32 and y.shape == (1, 3, 1, 2)
    mean, std = (0.5073, 0.4867, 0.4412), (0.2674, 0.2565, 0.2762)   # CIFAR-100's, written out here
    for c in range(3):
        assert y[0, c, 0, 0].item() == pytest.approx(-mean[c] / std[c], rel=1e-5)
        assert y[0, c, 0, 1].item() == pytest.approx((1 - mean[c]) / std[c], rel=1e-5)


# ---- recalibrate_bn -----------------------------------------------------------------------------

class _PassBN(nn.BatchNorm2d):
    """A BatchNorm (so recalibration hooks it) that passes its input through: torch's own refuses
    one value per channel in train mode."""
    def forward(self, x):
        return x


class _Slice(nn.Module):
    def forward(self, x):
        return x[:, :2]


def test_elastic_bn_seeing_two_of_four_channels_updates_only_those_two():
    bn = ElasticBatchNorm(4)
    bn.running_mean.fill_(7.0)
    bn.running_var.fill_(3.0)
    net = nn.Sequential(_Slice(), bn)
    images = np.random.default_rng(0).integers(0, 256, (5, 3, 4, 4), dtype=np.uint8)
    recalibrate_bn(net, images, batch_size=2)
    x = to_float(images)[:, :2].double().transpose(0, 1).reshape(2, -1)
    torch.testing.assert_close(bn.running_mean[:2].double(), x.mean(1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bn.running_var[:2].double(), x.var(1, unbiased=True), rtol=1e-5, atol=1e-6)
    assert bn.running_mean[2:].tolist() == [7.0, 7.0] and bn.running_var[2:].tolist() == [3.0, 3.0]


def test_a_bn_that_sees_no_input_keeps_its_statistics_and_the_model_ends_in_eval_mode():
    class Skip(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.unused = nn.BatchNorm2d(3), nn.BatchNorm2d(3)

        def forward(self, x):
            return self.used(x)

    net = Skip()
    net.unused.running_mean.fill_(2.0)
    net.unused.running_var.fill_(5.0)
    recalibrate_bn(net, np.full((3, 3, 2, 2), 9, dtype=np.uint8))
    assert net.unused.running_mean.tolist() == [2.0] * 3 and net.unused.running_var.tolist() == [5.0] * 3
    assert not net.training and not net.used.training


def test_recalibration_of_constant_images_gives_zero_variance_and_their_value():
    """Every position equal: mean = the normalized value, variance exactly 0 (never negative)."""
    bn = nn.BatchNorm2d(3)
    net = nn.Sequential(bn)
    recalibrate_bn(net, np.full((4, 3, 3, 3), 128, dtype=np.uint8), batch_size=3)
    mean, std = (0.5073, 0.4867, 0.4412), (0.2674, 0.2565, 0.2762)
    for c in range(3):
        assert bn.running_mean[c].item() == pytest.approx((128 / 255 - mean[c]) / std[c], rel=1e-5)
    assert bn.running_var.tolist() == [0.0, 0.0, 0.0]


def test_recalibration_of_one_pixel_uses_a_divisor_of_at_least_one():
    """N*H*W = 1: the unbiased divisor n-1 would be 0; the variance is 0, not nan or inf."""
    bn = _PassBN(3)
    recalibrate_bn(nn.Sequential(bn), np.full((1, 3, 1, 1), 200, dtype=np.uint8))
    assert bn.running_var.tolist() == [0.0, 0.0, 0.0]


def test_recalibration_variance_of_two_values_by_hand():
    """Pixel values 0 and 255 (one per image, one image per batch): mean and variance written out."""
    bn = _PassBN(3)
    images = np.zeros((2, 3, 1, 1), dtype=np.uint8)
    images[1] = 255
    recalibrate_bn(nn.Sequential(bn), images, batch_size=1)
    mean, std = (0.5073, 0.4867, 0.4412), (0.2674, 0.2565, 0.2762)
    for c in range(3):
        lo, hi = -mean[c] / std[c], (1 - mean[c]) / std[c]
        assert bn.running_mean[c].item() == pytest.approx((lo + hi) / 2, rel=1e-5)
        # unbiased variance of two values a, b: (a - b)^2 / 2
        assert bn.running_var[c].item() == pytest.approx((hi - lo) ** 2 / 2, rel=1e-5)


def test_recalibration_runs_in_batches_of_batch_size_in_train_mode():
    seen = []

    class Spy(nn.Module):
        def __init__(self):
            super().__init__()
            self.bn = nn.BatchNorm2d(3)

        def forward(self, x):
            seen.append((len(x), self.training))
            return self.bn(x)

    recalibrate_bn(Spy(), np.zeros((601, 3, 1, 1), dtype=np.uint8))
    assert seen == [(250, True), (250, True), (101, True)]


# ---- predict ------------------------------------------------------------------------------------

def test_predict_concatenates_batches_of_500_in_eval_mode():
    seen = []

    class Spy(nn.Module):
        def forward(self, x):
            seen.append((len(x), self.training))
            return x.mean((2, 3))

    m = Spy().train()
    images = np.random.default_rng(0).integers(0, 256, (1001, 3, 2, 2), dtype=np.uint8)
    out = predict(m, images)
    assert seen == [(500, False), (500, False), (1, False)]
    torch.testing.assert_close(out, to_float(images).mean((2, 3)))


# ---- superclass_accuracy ------------------------------------------------------------------------

def test_superclass_accuracy_by_hand_on_a_toy_dataset():
    ds = _toy_dataset()
    labels = np.array([0, 3, 1, 4, 4])   # s0: 0, 3; s1: 1, 4, 4; nothing of s2
    logits = torch.zeros(5, 6)
    logits[0, 0] = 1                    # s0 right (and 6-way right)
    logits[1, 0] = 2; logits[1, 5] = 9  # s0 wrong (0 beats 3 within), 6-way wrong
    logits[2, 1] = 1; logits[2, 2] = 4  # s1 right within (1 > 4), 6-way wrong
    logits[3, 4] = 3                    # s1 right, 6-way right
    logits[4, 1] = 3                    # s1 wrong
    r = superclass_accuracy(logits, labels, ds)
    assert r.per_superclass == pytest.approx({"s0": 50.0, "s1": 200 / 3})   # s2 has no image: left out
    assert list(r.per_superclass) == ["s0", "s1"]
    assert r.mean_within == pytest.approx((50 + 200 / 3) / 2)
    assert r.top1_all == pytest.approx(40.0)
    only = superclass_accuracy(logits, labels, ds, superclasses=[1])
    assert only.per_superclass == pytest.approx({"s1": 200 / 3}) and only.mean_within == pytest.approx(200 / 3)
    assert only.top1_all == pytest.approx(40.0)


def test_accuracy_to_dict_rounds_to_two_digits():
    a = SuperclassAccuracy({"s0": 66.66666, "s1": 12.3449}, 39.505555, 40.0049)
    assert a.to_dict() == {"mean_within_superclass": 39.51, "top1_all": 40.0,
                           "per_superclass": {"s0": 66.67, "s1": 12.34}}


# ---- recal_images and evaluate_arch -------------------------------------------------------------

def test_recal_images_are_a_sorted_sample_without_repeats_of_the_chosen_superclasses():
    ds = _toy_dataset(train_labels=[0, 1, 2, 3, 4, 5, 0, 1, 2, 3])   # image i is filled with the value i
    pick = recal_images(ds, n=3, seed=1, superclasses=[0])            # superclass 0: images 0, 3, 6, 9
    idx = [int(v) for v in pick[:, 0, 0, 0]]
    assert len(idx) == 3 and idx == sorted(idx) and len(set(idx)) == 3 and set(idx) <= {0, 3, 6, 9}
    every = recal_images(ds, n=50, seed=0, superclasses=[0])          # more asked than there are
    assert [int(v) for v in every[:, 0, 0, 0]] == [0, 3, 6, 9]
    all_ = recal_images(ds, n=50, seed=0)
    assert [int(v) for v in all_[:, 0, 0, 0]] == list(range(10))
    a, b = recal_images(ds, n=5, seed=3), recal_images(ds, n=5, seed=3)
    assert np.array_equal(a, b)
    seeds = {tuple(recal_images(ds, n=5, seed=s)[:, 0, 0, 0]) for s in range(6)}
    assert len(seeds) > 1


def test_evaluate_arch_recalibrates_the_subnet_and_scores_the_chosen_test_images():
    ds = _toy_dataset(test_labels=[0, 1, 2, 3, 4, 5])

    class Sub(nn.Module):
        """Predicts the class whose index is the image's value mod 6, after a BN."""
        def __init__(self):
            super().__init__()
            self.bn = nn.BatchNorm2d(3)

        def forward(self, x):
            v = torch.round(x[:, 0, 0, 0] * (0.2674 * 255) + 0.5073 * 255).long()   # back to the pixel
            self.bn(x)
            return nn.functional.one_hot(v % 6, 6).float()

    class Supernet:
        def __init__(self):
            self.asked = []
            self.sub = Sub()

        def subnet(self, arch):
            self.asked.append(arch)
            return self.sub

    net = Supernet()
    recal = np.full((2, 3, 1, 1), 51, dtype=np.uint8)
    r = evaluate_arch(net, "A", ds, recal=recal)
    assert net.asked == ["A"] and not net.sub.training
    assert net.sub.bn.running_mean[0].item() == pytest.approx((51 / 255 - 0.5073) / 0.2674, rel=1e-5)
    assert r.top1_all == 100.0 and r.mean_within == 100.0
    ds.test.labels[:] = [0, 1, 2, 0, 1, 5]   # images 3 and 4 now wrong
    r = evaluate_arch(net, "A", ds, recal=recal, test_idx=np.array([0, 3, 5]))
    assert r.per_superclass == pytest.approx({"s0": 50.0, "s2": 100.0})
    assert r.top1_all == pytest.approx(200 / 3)


def test_recal_images_defaults_are_2000_images_drawn_with_seed_0():
    """The shipped accuracy figures use the defaults: 2000 images, numpy's generator seeded 0."""
    labels = np.arange(2100) % 6
    ds = Dataset("toy", [f"c{i}" for i in range(6)], ["s0", "s1", "s2"], np.array([0, 1, 2, 0, 1, 2]),
                 Split(np.arange(2100, dtype=np.int64).reshape(2100, 1, 1, 1), labels), Split(np.zeros((0, 1, 1, 1)), labels[:0]))
    got = recal_images(ds)[:, 0, 0, 0]
    want = np.sort(np.random.default_rng(0).choice(2100, size=2000, replace=False))
    assert len(got) == 2000 and np.array_equal(got, want)


def test_recalibration_and_prediction_build_no_autograd_graph():
    grad_modes = []

    class Spy(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)

        def forward(self, x):
            grad_modes.append(torch.is_grad_enabled())
            return self.bn(self.conv(x)).mean((2, 3))

    m = Spy()
    images = np.random.default_rng(0).integers(0, 256, (4, 3, 2, 2), dtype=np.uint8)
    recalibrate_bn(m, images)
    out = predict(m, images)
    assert grad_modes == [False, False] and not out.requires_grad
    assert not m.bn.running_mean.requires_grad
