"""Inverted-residual blocks: the elastic one that lives in the supernet and its static twin.

One small interface, as once-for-all's ``DynamicMBConvLayer``: ``active_expand`` and
``active_kernel`` choose the subnet, ``get_active_subnet()`` returns a plain
:class:`InvertedResidual` holding copies of the active weights, and ``config()`` returns
the dict that rebuilds it.  The elastic block and its channel sorting follow once-for-all
(Cai et al., ICLR 2020; ``ofa/imagenet_classification/elastic_nn/modules/dynamic_layers.py``).
Tensors are NCHW.
"""
from __future__ import annotations

import torch
from torch import nn

from .ops import ElasticBatchNorm, ElasticDepthwiseConv, ElasticPointConv

__all__ = ["ElasticInvertedResidual", "InvertedResidual", "ConvBNReLU"]


class ConvBNReLU(nn.Sequential):
    """``k x k`` convolution (no bias, ``k // 2`` padding) -> BatchNorm -> ReLU6 (left out when
    ``act`` is false): the stem, the head's 1x1 conv and the three layers of a static block.

    Maps ``[N, cin, H, W]`` to ``[N, cout, ceil(H/stride), ceil(W/stride)]``; ``groups=cin``
    makes it depthwise.
    """

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
        """``[N, cin, H, W]`` -> ``[N, cout, ceil(H/stride), ceil(W/stride)]``; adds the input
        back when the block is residual (stride 1 and ``cin == cout``)."""
        y = self.project(self.dw(self.expand_conv(x)))
        return x + y if self.residual else y

    def config(self) -> dict:
        """``{cin, cout, expand, kernel, stride}``: ``InvertedResidual(**config())`` rebuilds the
        block's structure (not its weights)."""
        return dict(cin=self.cin, cout=self.cout, expand=self.expand, kernel=self.kernel, stride=self.stride)


class ElasticInvertedResidual(nn.Module):
    """Elastic inverted-residual block: the largest weights for every expand ratio and kernel.

    Built from :class:`~edgeeas.nn.ops.ElasticPointConv` (expand), ElasticDepthwiseConv and
    ElasticPointConv (project), each followed by an ElasticBatchNorm (ReLU6 after the first
    two).  :meth:`set_active` picks the expand ratio (hidden width ``cin * expand``) and the
    depthwise kernel; input and output widths (``cin``, ``cout``) and the stride are fixed by
    the stage table.  once-for-all's ``DynamicMBConvLayer`` (Cai et al., ICLR 2020), without
    squeeze-and-excitation.  Starts at the largest expand ratio and kernel.
    """

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
        """Choose the expand ratio and the depthwise kernel of the next forward passes.

        Values are not checked here: :meth:`Supernet.set_active` validates a whole architecture
        against the search space first (``expand`` in ``expands``, ``kernel`` in ``kernels``).
        """
        self.active_expand = expand
        self.expand_conv.active_out = self.cin * expand
        self.dw.active_kernel = kernel

    @property
    def active_kernel(self) -> int:
        """The depthwise kernel size in use (held by the depthwise op)."""
        return self.dw.active_kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, cin, H, W]`` -> ``[N, cout, ceil(H/stride), ceil(W/stride)]`` through the active
        expand ratio and kernel (+ the input when residual)."""
        y = self.act(self.expand_bn(self.expand_conv(x)))
        y = self.act(self.dw_bn(self.dw(y)))
        y = self.project_bn(self.project(y))
        return x + y if self.residual else y

    def config(self) -> dict:
        """The active block as ``{cin, cout, expand, kernel, stride}``:
        ``InvertedResidual(**config())`` is the static twin's structure."""
        return dict(cin=self.cin, cout=self.cout, expand=self.active_expand,
                    kernel=self.active_kernel, stride=self.stride)

    def get_active_subnet(self, preserve_weight: bool = True) -> InvertedResidual:
        """The active block as a plain :class:`InvertedResidual`.

        With ``preserve_weight`` (the default) its layers hold copies of the active slices (the
        elastic kernel's transforms baked in, BN statistics copied), so it computes what this
        block computes; without it the block is freshly initialised.  The copies share no
        storage with the supernet.
        """
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
