"""Elastic operators: layers that hold the largest weights and run a slice of them.

Reading order: ops (this file) -> blocks.py -> supernet.py.  Each op has ``active_*``
attributes set by its block, a ``forward`` that uses only the active slice, and
``static()`` that returns a plain ``nn`` layer holding a copy of that slice.

The method is once-for-all's (Cai et al., "Once-for-All: Train One Network and Specialize it
for Efficient Deployment", ICLR 2020; ``ofa/imagenet_classification/elastic_nn/modules/
dynamic_op.py``): elastic width keeps the first channels, elastic kernels take the centre of
the largest kernel through a learned transform.  Tensors are NCHW, as everywhere in PyTorch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ElasticPointConv", "ElasticDepthwiseConv", "ElasticBatchNorm"]


class ElasticPointConv(nn.Module):
    """1x1 convolution whose input and output channels shrink from the front.

    Holds a ``[max_out, max_in, 1, 1]`` weight (no bias).  The input channel count is read
    from the input; ``active_out`` (set by the block) chooses the output channels.  From
    once-for-all's ``DynamicConv2d`` with kernel size 1 (Cai et al., ICLR 2020).
    """

    def __init__(self, max_in: int, max_out: int):
        super().__init__()
        self.conv = nn.Conv2d(max_in, max_out, 1, bias=False)
        self.active_out = max_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, C, H, W]`` -> ``[N, active_out, H, W]`` with the first ``C`` input and the first
        ``active_out`` output channels of the weight (``C <= max_in``)."""
        w = self.conv.weight[: self.active_out, : x.shape[1]]
        return F.conv2d(x, w)

    def static(self, cin: int) -> nn.Conv2d:
        """A plain ``nn.Conv2d(cin, active_out, 1, bias=False)`` holding a copy of the active
        slice ``weight[:active_out, :cin]``: same output as :meth:`forward` on ``cin`` channels."""
        layer = nn.Conv2d(cin, self.active_out, 1, bias=False)
        layer.weight.data.copy_(self.conv.weight.data[: self.active_out, :cin])
        return layer


class ElasticDepthwiseConv(nn.Module):
    """Depthwise convolution with elastic channels and an elastic kernel.

    Smaller kernels take the centre of the next larger one through a learned linear
    transform shared by all channels (once-for-all's kernel transformation matrices),
    initialised to the identity so a fresh supernet starts from plain centre crops.
    """

    def __init__(self, max_channels: int, kernels: tuple[int, ...], stride: int):
        super().__init__()
        self.kernels = tuple(sorted(kernels))
        self.max_k = self.kernels[-1]
        self.stride = stride
        self.conv = nn.Conv2d(max_channels, max_channels, self.max_k, stride, self.max_k // 2,
                              groups=max_channels, bias=False)
        self.transforms = nn.ParameterDict({
            f"{big}to{small}": nn.Parameter(torch.eye(small * small))
            for big, small in zip(self.kernels[::-1], self.kernels[-2::-1])
        })
        self.active_kernel = self.max_k

    def kernel_weight(self, channels: int, k: int) -> torch.Tensor:
        """The ``[channels, 1, k, k]`` depthwise weight of kernel ``k``.

        Starting from the largest kernel, each step down crops the centre ``small x small`` of
        the current weight and multiplies it (flattened to ``small*small``) by the learned
        ``{big}to{small}`` transform, until size ``k`` is reached (once-for-all's
        ``DynamicSeparableConv2d.get_active_filter``).  ``k`` must be one of ``kernels``.
        Differentiable: training updates both the shared weight and the transforms.
        """
        w = self.conv.weight[:channels]
        for big, small in zip(self.kernels[::-1], self.kernels[-2::-1]):
            if big == k:
                break
            lo = (big - small) // 2
            centre = w[:, :, lo:lo + small, lo:lo + small]
            flat = centre.reshape(channels, small * small)
            w = (flat @ self.transforms[f"{big}to{small}"]).reshape(channels, 1, small, small)
        return w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, C, H, W]`` -> ``[N, C, ceil(H/stride), ceil(W/stride)]``: depthwise convolution of
        the first ``C`` channels with kernel ``active_kernel`` and ``k // 2`` ("same") padding."""
        c, k = x.shape[1], self.active_kernel
        return F.conv2d(x, self.kernel_weight(c, k), None, self.stride, k // 2, 1, c)

    def static(self, channels: int) -> nn.Conv2d:
        """A plain depthwise ``nn.Conv2d`` (``groups=channels``, kernel ``active_kernel``) holding a
        copy of :meth:`kernel_weight`: the transforms are baked in, so it needs none of them."""
        k = self.active_kernel
        layer = nn.Conv2d(channels, channels, k, self.stride, k // 2, groups=channels, bias=False)
        with torch.no_grad():
            layer.weight.copy_(self.kernel_weight(channels, k))
        return layer


class ElasticBatchNorm(nn.BatchNorm2d):
    """BatchNorm over the first C channels of its input (running stats sliced alike).

    Running statistics of a supernet mean little for any one subnet: evaluation
    recalibrates them per subnet (``edgeeas.evaluate.recalibrate_bn``).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, C, H, W]`` -> same shape, normalized with the first ``C`` entries of the affine
        parameters and running statistics (``C <= num_features``).  In training mode it updates
        only those ``C`` running entries, like ``nn.BatchNorm2d`` does for all of them."""
        c = x.shape[1]
        if c == self.num_features:
            return super().forward(x)
        training = self.training or not self.track_running_stats
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average, as nn.BatchNorm does
                momentum = 1.0 / float(self.num_batches_tracked)
        return F.batch_norm(
            x, self.running_mean[:c], self.running_var[:c], self.weight[:c], self.bias[:c],
            training, momentum, self.eps)

    def static(self, channels: int) -> nn.BatchNorm2d:
        """A plain ``nn.BatchNorm2d(channels)`` with copies of the first ``channels`` affine
        parameters and running statistics (and the same ``eps``, ``momentum``)."""
        bn = nn.BatchNorm2d(channels, eps=self.eps, momentum=self.momentum)
        with torch.no_grad():
            bn.weight.copy_(self.weight[:channels])
            bn.bias.copy_(self.bias[:channels])
            bn.running_mean.copy_(self.running_mean[:channels])
            bn.running_var.copy_(self.running_var[:channels])
            bn.num_batches_tracked.copy_(self.num_batches_tracked)
        return bn
