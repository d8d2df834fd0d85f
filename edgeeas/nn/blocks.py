"""Inverted-residual blocks: the elastic one that lives in the supernet and its static twin.

One small interface, as once-for-all's ``DynamicMBConvLayer``: ``active_expand`` and
``active_kernel`` choose the subnet, ``get_active_subnet()`` returns a plain
:class:`InvertedResidual` holding copies of the active weights, and ``config()`` returns
the dict that rebuilds it.
"""
from __future__ import annotations

import torch
from torch import nn

from .ops import ElasticBatchNorm, ElasticDepthwiseConv, ElasticPointConv

__all__ = ["ElasticInvertedResidual", "InvertedResidual", "ConvBNReLU"]


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True):
        layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
        if act:
            layers.append(nn.ReLU6(inplace=True))
        super().__init__(*layers)


class InvertedResidual(nn.Module):
    """Static MobileNetV2 block: 1x1 expand -> kxk depthwise -> 1x1 project (+ residual)."""

    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int):
        super().__init__()
        mid = cin * expand
        self.cin, self.cout, self.expand, self.kernel, self.stride = cin, cout, expand, kernel, stride
        self.residual = stride == 1 and cin == cout
        self.expand_conv = ConvBNReLU(cin, mid, 1)
        self.dw = ConvBNReLU(mid, mid, kernel, stride, groups=mid)
        self.project = ConvBNReLU(mid, cout, 1, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.dw(self.expand_conv(x)))
        return x + y if self.residual else y

    def config(self) -> dict:
        return dict(cin=self.cin, cout=self.cout, expand=self.expand, kernel=self.kernel, stride=self.stride)


class ElasticInvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, expands: tuple[int, ...], kernels: tuple[int, ...], stride: int):
        super().__init__()
        self.cin, self.cout, self.stride = cin, cout, stride
        self.expands = tuple(sorted(expands))
        max_mid = cin * self.expands[-1]
        self.residual = stride == 1 and cin == cout
        self.expand_conv = ElasticPointConv(cin, max_mid)
        self.expand_bn = ElasticBatchNorm(max_mid)
        self.dw = ElasticDepthwiseConv(max_mid, kernels, stride)
        self.dw_bn = ElasticBatchNorm(max_mid)
        self.project = ElasticPointConv(max_mid, cout)
        self.project_bn = ElasticBatchNorm(cout)
        self.act = nn.ReLU6(inplace=True)
        self.set_active(self.expands[-1], self.dw.max_k)

    def set_active(self, expand: int, kernel: int) -> None:
        self.active_expand = expand
        self.expand_conv.active_out = self.cin * expand
        self.dw.active_kernel = kernel

    @property
    def active_kernel(self) -> int:
        return self.dw.active_kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.expand_bn(self.expand_conv(x)))
        y = self.act(self.dw_bn(self.dw(y)))
        y = self.project_bn(self.project(y))
        return x + y if self.residual else y

    def config(self) -> dict:
        return dict(cin=self.cin, cout=self.cout, expand=self.active_expand,
                    kernel=self.active_kernel, stride=self.stride)

    def get_active_subnet(self, preserve_weight: bool = True) -> InvertedResidual:
        block = InvertedResidual(**self.config())
        if not preserve_weight:
            return block
        mid = self.cin * self.active_expand
        block.expand_conv[0] = self.expand_conv.static(self.cin)
        block.expand_conv[1] = self.expand_bn.static(mid)
        block.dw[0] = self.dw.static(mid)
        block.dw[1] = self.dw_bn.static(mid)
        block.project[0] = self.project.static(mid)
        block.project[1] = self.project_bn.static(self.cout)
        return block

    @torch.no_grad()
    def sort_channels(self) -> None:
        """Reorder the hidden channels by importance (L1 norm of their projection weights),
        so that a smaller expand ratio keeps the most important ones.  The function the
        largest block computes is unchanged (a permutation of its hidden channels)."""
        importance = self.project.conv.weight.abs().sum(dim=(0, 2, 3))
        order = torch.argsort(importance, descending=True)
        self.project.conv.weight.copy_(self.project.conv.weight[:, order])
        self.expand_conv.conv.weight.copy_(self.expand_conv.conv.weight[order])
        self.dw.conv.weight.copy_(self.dw.conv.weight[order])
        for bn in (self.expand_bn, self.dw_bn):
            for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
                t.copy_(t[order])
