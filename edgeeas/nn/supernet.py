"""The elastic supernet and the static subnets it hands out.

``Supernet(space)`` holds the largest weights of every stage.  ``set_active(arch)``
chooses a subnet in place (depth per stage, expand and kernel per block);
``get_active_subnet()`` returns a static :class:`Subnet` with copies of those weights,
whose outputs equal the supernet's for that architecture (tests check 1e-5).

The supernet-with-inherited-weights method is once-for-all's (Cai et al., "Once-for-All:
Train One Network and Specialize it for Efficient Deployment", ICLR 2020;
``ofa/imagenet_classification/elastic_nn/networks/ofa_mbv3.py``); the training rules around
it (sandwich rule and in-place distillation, from Yu & Huang's universally slimmable networks,
ICCV 2019, as BigNAS uses them) live in ``edgeeas/train.py``.
Input ``[N, 3, R, R]`` float (R = ``space.resolution``, 32), output ``[N, classes]`` logits.
"""
from __future__ import annotations

import torch
from torch import nn

from ..space import Arch, SearchSpace
from .blocks import ConvBNReLU, ElasticInvertedResidual, InvertedResidual

__all__ = ["Supernet", "Subnet"]


class _Head(nn.Module):
    """1x1 conv -> BN -> ReLU6 -> global average pool -> linear over the fine classes."""

    def __init__(self, cin: int, ch: int, num_classes: int):
        super().__init__()
        self.conv = ConvBNReLU(cin, ch, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.conv(x)), 1))


class Subnet(nn.Module):
    """A plain static network (what gets exported); ``classes`` lists the fine-class ids of its
    head rows (all of them, or only a scenario's superclasses after :meth:`restrict_head`)."""

    def __init__(self, stem: nn.Module, blocks: list[InvertedResidual], head: _Head, arch: Arch,
                 classes: list[int]):
        super().__init__()
        self.stem = stem
        self.blocks = nn.Sequential(*blocks)
        self.head = head
        self.arch = arch
        self.classes = list(classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, 3, R, R]`` normalized images -> ``[N, len(classes)]`` logits (head rows in the
        order of ``classes``)."""
        return self.head(self.blocks(self.stem(x)))

    @torch.no_grad()
    def restrict_head(self, classes: list[int]) -> "Subnet":
        """Keep only the head rows of ``classes`` (fine-class ids), in that order."""
        rows = [self.classes.index(c) for c in classes]
        fc = nn.Linear(self.head.fc.in_features, len(rows))
        fc.weight.copy_(self.head.fc.weight[rows])
        fc.bias.copy_(self.head.fc.bias[rows])
        self.head.fc = fc
        self.classes = list(classes)
        return self


class Supernet(nn.Module):
    """The elastic network of a :class:`~edgeeas.space.SearchSpace`.

    Stem (3x3 conv), ``space.max_depth`` :class:`ElasticInvertedResidual` blocks per stage
    (the first with the stage's stride), then the head (1x1 conv, global pool, linear over all
    ``space.num_classes`` fine classes).  One subnet is active at a time (the largest after
    construction); :meth:`set_active` changes it in place and :meth:`forward` runs it.
    once-for-all's ``OFAMobileNetV3`` interface (Cai et al., ICLR 2020).
    """

    def __init__(self, space: SearchSpace):
        super().__init__()
        self.space = space
        self.stem = ConvBNReLU(space.in_channels, space.stem_channels, 3, space.stem_stride)
        stages, cin = [], space.stem_channels
        for st in space.stages:
            blocks = []
            for b in range(space.max_depth):
                blocks.append(ElasticInvertedResidual(cin, st.channels, space.expands, space.kernels,
                                                      st.stride if b == 0 else 1))
                cin = st.channels
            stages.append(nn.ModuleList(blocks))
        self.stages = nn.ModuleList(stages)
        self.head = _Head(cin, space.head_channels, space.num_classes)
        self._init_weights()
        self.set_largest()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)
        # Zero-init the last BN of every residual block: a block starts as the identity, which
        # keeps deep and shallow subnets close early in training (BigNAS does the same).
        for stage in self.stages:
            for blk in stage:
                if blk.residual:
                    nn.init.zeros_(blk.project_bn.weight)

    # ---- choosing a subnet -----------------------------------------------------------
    def set_active(self, arch: Arch) -> None:
        """Make ``arch`` the active subnet: the first ``depth`` blocks of each stage, each with
        its kernel and expand ratio.

        Raises:
            ArchError: ``arch`` does not fit the search space (the message names the bad value).
        """
        self.space.validate(arch)
        self.active_depths = list(arch.depths)
        for stage, blocks in zip(self.stages, arch.blocks_per_stage()):
            for blk, (k, e) in zip(stage, blocks):
                blk.set_active(e, k)
        self.active_arch = arch

    def set_largest(self) -> None:
        """Activate the largest subnet (deepest, widest, largest kernels): the distillation
        teacher of the sandwich rule."""
        self.set_active(self.space.largest())

    def active_blocks(self):
        """Yield the active :class:`ElasticInvertedResidual` blocks in forward order."""
        for stage, d in zip(self.stages, self.active_depths):
            yield from stage[:d]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, 3, R, R]`` normalized images -> ``[N, num_classes]`` logits of the active subnet."""
        x = self.stem(x)
        for blk in self.active_blocks():
            x = blk(x)
        return self.head(x)

    def get_active_subnet(self, preserve_weight: bool = True) -> Subnet:
        """The active subnet as a static :class:`Subnet` with copies of its weights.

        It computes the supernet's output for that architecture (within 1e-5), has the head over
        all fine classes (``classes = 0..num_classes-1``) and the supernet's train/eval mode.
        ``preserve_weight=False`` gives freshly initialised blocks (stem and head still copied).
        """
        import copy
        blocks = [b.get_active_subnet(preserve_weight) for b in self.active_blocks()]
        sub = Subnet(copy.deepcopy(self.stem), blocks, copy.deepcopy(self.head),
                     self.active_arch, list(range(self.space.num_classes)))
        sub.train(self.training)
        return sub

    def subnet(self, arch: Arch) -> Subnet:
        """``set_active(arch)`` then :meth:`get_active_subnet`; leaves ``arch`` active.

        Raises:
            ArchError: ``arch`` does not fit the search space.
        """
        self.set_active(arch)
        return self.get_active_subnet()

    def sort_channels(self) -> None:
        """Reorder every block's hidden channels by importance (see
        :meth:`ElasticInvertedResidual.sort_channels`), once-for-all's ``re_organize_middle_weights``
        before shrinking the expand ratio.  The largest subnet's function is unchanged."""
        for blk in (b for stage in self.stages for b in stage):
            blk.sort_channels()
