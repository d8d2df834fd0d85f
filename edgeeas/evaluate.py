"""Evaluation: BN recalibration and within-superclass accuracy.

A supernet's BN running statistics belong to no subnet in particular, so every accuracy
here is measured after re-estimating them for the subnet at hand on training images
(once-for-all's ``set_running_statistics``).  Within-superclass accuracy keeps only the head
rows of one superclass's fine classes (5-way for CIFAR-100), as a deployed model does.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .data import MEAN, STD, Dataset

__all__ = ["to_float", "recalibrate_bn", "predict", "SuperclassAccuracy", "superclass_accuracy",
           "evaluate_arch"]

_MEAN = torch.tensor(MEAN).view(1, 3, 1, 1) * 255
_STD = torch.tensor(STD).view(1, 3, 1, 1) * 255


def to_float(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 NCHW -> normalized float32 NCHW."""
    x = torch.as_tensor(images)
    return (x.float() - _MEAN) / _STD


@torch.no_grad()
def recalibrate_bn(model: nn.Module, images: np.ndarray, batch_size: int = 250) -> None:
    """Re-estimate every BatchNorm's running mean and variance on ``images`` (uint8 NCHW, any N),
    then leave the model in eval mode.

    The model runs in train mode over the images in batches (each BN normalizes with its batch's
    statistics, as in training: once-for-all's ``set_running_statistics``), while a hook sums
    every BN's input per channel in float64.  The running statistics become the exact mean and
    unbiased variance over all ``N x H x W`` positions of all images, so the result does not
    depend on how ``N`` splits into batches: a short last batch weighs by its size, not as a
    full batch (a per-batch average gave 51.6 % instead of 64.3 % for N=251).  A BN that sees
    no input (an inactive part of an elastic layer) keeps its statistics.  An
    :class:`ElasticBatchNorm` that sees ``C`` of its channels updates those ``C``.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    sums: dict[nn.Module, list] = {}

    def accumulate(m, inputs):
        x = inputs[0].detach().double()
        c = x.shape[1]
        dims = [d for d in range(x.dim()) if d != 1]
        s = sums.setdefault(m, [torch.zeros(c, dtype=torch.float64), torch.zeros(c, dtype=torch.float64), 0])
        s[0] += x.sum(dims)
        s[1] += (x * x).sum(dims)
        s[2] += x.numel() // c

    handles = [m.register_forward_pre_hook(accumulate) for m in bns]
    model.train()
    try:
        for i in range(0, len(images), batch_size):
            model(to_float(images[i:i + batch_size]))
    finally:
        for h in handles:
            h.remove()
    for m, (s1, s2, n) in sums.items():
        mean = s1 / n
        var = (s2 / n - mean * mean).clamp_min(0) * (n / max(n - 1, 1))
        c = mean.numel()
        m.running_mean[:c] = mean.to(m.running_mean.dtype)
        m.running_var[:c] = var.to(m.running_var.dtype)
    model.eval()


@torch.no_grad()
def predict(model: nn.Module, images: np.ndarray, batch_size: int = 500) -> torch.Tensor:
    """Logits ``[N, classes]`` (float32) of ``model`` in eval mode on uint8 NCHW ``images``
    ``[N, 3, H, W]``, normalized by :func:`to_float`, in batches of ``batch_size``.  Leaves the
    model in eval mode; no gradients."""
    model.eval()
    return torch.cat([model(to_float(images[i:i + batch_size])) for i in range(0, len(images), batch_size)])


@dataclass
class SuperclassAccuracy:
    """Accuracies of one model, all in % (0-100): top-1 within each superclass (the head
    restricted to its fine classes, 5-way for CIFAR-100), their mean over the superclasses
    evaluated, and top-1 over all fine classes."""

    per_superclass: dict[str, float]  # 5-way (within-superclass) top-1, in %
    mean_within: float
    top1_all: float                   # over all fine classes, in %

    def to_dict(self) -> dict:
        """JSON-ready form, percentages rounded to 2 decimals: ``mean_within_superclass``,
        ``top1_all`` and ``per_superclass`` (superclass name -> %)."""
        return {"mean_within_superclass": round(self.mean_within, 2), "top1_all": round(self.top1_all, 2),
                "per_superclass": {k: round(v, 2) for k, v in self.per_superclass.items()}}


def superclass_accuracy(logits: torch.Tensor, labels: np.ndarray, ds: Dataset,
                        superclasses: list[int] | None = None) -> SuperclassAccuracy:
    """Accuracy of full-head ``logits`` (N x num_classes) restricted to each superclass's rows."""
    labels_t = torch.as_tensor(labels)
    sup_of = torch.as_tensor(ds.class_to_super)[labels_t]
    per = {}
    for s in superclasses if superclasses is not None else range(ds.num_superclasses):
        rows = sup_of == s
        if not rows.any():
            continue
        cols = torch.tensor(ds.classes_of(s))
        pred = cols[logits[rows][:, cols].argmax(1)]
        per[ds.superclasses[s]] = 100.0 * (pred == labels_t[rows]).float().mean().item()
    top1 = 100.0 * (logits.argmax(1) == labels_t).float().mean().item()
    return SuperclassAccuracy(per, float(np.mean(list(per.values()))), top1)


def recal_images(ds: Dataset, n: int = 2000, seed: int = 0, superclasses: list[int] | None = None) -> np.ndarray:
    """A fixed random sample of training images (of ``superclasses`` if given) for BN recalibration."""
    idx = ds.indices("train", superclasses) if superclasses is not None else np.arange(len(ds.train.labels))
    rng = np.random.default_rng(seed)
    return ds.train.images[np.sort(rng.choice(idx, size=min(n, len(idx)), replace=False))]


def evaluate_arch(supernet, arch, ds: Dataset, *, recal: np.ndarray, test_idx: np.ndarray | None = None
                  ) -> SuperclassAccuracy:
    """BN-recalibrated accuracy of one architecture of ``supernet`` (which is left unchanged)."""
    sub = supernet.subnet(arch)
    recalibrate_bn(sub, recal)
    images = ds.test.images if test_idx is None else ds.test.images[test_idx]
    labels = ds.test.labels if test_idx is None else ds.test.labels[test_idx]
    return superclass_accuracy(predict(sub, images), labels, ds)
