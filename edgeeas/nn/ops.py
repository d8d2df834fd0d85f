"""Elastic operators: layers that hold the largest weights and run a slice of them.

Reading order: ops (this file) -> blocks.py -> supernet.py.  Each op has ``active_*``
attributes set by its block, a ``forward`` that uses only the active slice, and
``static()`` that returns a plain ``nn`` layer holding a copy of that slice.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ElasticPointConv", "ElasticDepthwiseConv", "ElasticBatchNorm"]


class ElasticPointConv(nn.Module):
    """1x1 convolution whose input and output channels shrink from the front."""

    def __init__(self, max_in: int, max_out: int):
        super().__init__()
        self.conv = nn.Conv2d(max_in, max_out, 1, bias=False)
        self.active_out = max_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.conv.weight[: self.active_out, : x.shape[1]]
        return F.conv2d(x, w)

    def static(self, cin: int) -> nn.Conv2d:
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
        c, k = x.shape[1], self.active_kernel
        return F.conv2d(x, self.kernel_weight(c, k), None, self.stride, k // 2, 1, c)

    def static(self, channels: int) -> nn.Conv2d:
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
        bn = nn.BatchNorm2d(channels, eps=self.eps, momentum=self.momentum)
        with torch.no_grad():
            bn.weight.copy_(self.weight[:channels])
            bn.bias.copy_(self.bias[:channels])
            bn.running_mean.copy_(self.running_mean[:channels])
            bn.running_var.copy_(self.running_var[:channels])
            bn.num_batches_tracked.copy_(self.num_batches_tracked)
        return bn
