"""BN recalibration and superclass accuracy, checked against independently computed numbers."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edgeeas.evaluate import recalibrate_bn, superclass_accuracy, to_float


def _tiny_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1),
                         nn.BatchNorm2d(2))


@pytest.mark.parametrize("n,batch", [(7, 3), (251, 250), (5, 5), (1, 4)])
def test_recalibration_gives_the_exact_statistics_of_the_whole_set(n, batch):
    """The first BN's input does not depend on batching: its running stats must be the exact
    mean and unbiased variance over all N*H*W positions, however N splits into batches."""
    net = _tiny_net()
    images = np.random.default_rng(n).integers(0, 256, (n, 3, 8, 8), dtype=np.uint8)
    recalibrate_bn(net, images, batch_size=batch)
    with torch.no_grad():
        feat = net[0](to_float(images)).double()           # N x 4 x 8 x 8, computed independently
    per_channel = feat.transpose(0, 1).reshape(4, -1)
    assert not net.training
    torch.testing.assert_close(net[1].running_mean.double(), per_channel.mean(1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(net[1].running_var.double(), per_channel.var(1, unbiased=True), rtol=1e-5, atol=1e-6)


def test_recalibration_does_not_depend_on_the_batch_split():
    """N and N+1 images, or one batch vs. many: statistics of the second BN agree closely."""
    images = np.random.default_rng(1).integers(0, 256, (64, 3, 8, 8), dtype=np.uint8)
    a, b = _tiny_net(), _tiny_net()
    recalibrate_bn(a, images, batch_size=64)
    recalibrate_bn(b, images, batch_size=63)   # 63 + a batch of 1
    torch.testing.assert_close(a[4].running_mean, b[4].running_mean, rtol=0.05, atol=0.05)
    torch.testing.assert_close(a[4].running_var, b[4].running_var, rtol=0.1, atol=0.05)


def test_n_and_n_plus_one_recalibration_images_agree_on_the_shipped_supernet(cifar):
    """The reported fault: 250 vs 251 recalibration images gave 64.3 % vs 51.6 %."""
    from edgeeas.checkpoint import load_supernet
    from edgeeas.evaluate import evaluate_arch, recal_images

    net, _ = load_supernet()
    arch = net.space.largest()
    idx = np.arange(0, 10000, 10)
    accs = [evaluate_arch(net, arch, cifar, recal=recal_images(cifar, n=n, seed=0), test_idx=idx).mean_within
            for n in (250, 251)]
    assert abs(accs[0] - accs[1]) < 3.0, accs


def test_superclass_accuracy_against_hand_counted_predictions(cifar):
    """Two superclasses' images with hand-chosen logits: 5-way and 100-way accuracy counted by hand."""
    s0, s1 = cifar.classes_of(0), cifar.classes_of(1)
    labels = np.array([s0[0], s0[1], s0[2], s1[0]])
    logits = torch.zeros(4, cifar.num_classes)
    logits[0, s0[0]] = 5                      # right, 5-way and 100-way
    logits[1, s0[2]] = 5                      # wrong within its superclass
    logits[2, s0[2]] = 1; logits[2, s1[3]] = 9  # right within (5-way), wrong 100-way
    logits[3, s1[0]] = 2; logits[3, s0[0]] = 3  # right within, wrong 100-way
    r = superclass_accuracy(logits, labels, cifar)
    assert r.per_superclass[cifar.superclasses[0]] == pytest.approx(200 / 3)
    assert r.per_superclass[cifar.superclasses[1]] == pytest.approx(100.0)
    assert r.mean_within == pytest.approx((200 / 3 + 100) / 2)
    assert r.top1_all == pytest.approx(25.0)
