"""The rows of a latency table: one per distinct layer configuration of a search space.

A row is one layer in context (its input size and channels follow from the stage table)::

    stem                              3x32x32 -> 16x32x32
    ir_h16_i16_o24_e6_k5_s2           16x16x16 -> 24x8x8    (one block, NHWC int8 I/O)
    head_k5                           80x4x4 -> 5 logits

Whole subnets (:func:`subnet_archs`) are measured beside the rows to fit the predictor.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

from ..errors import EdgeeasUsageError
from ..space import DEFAULT_SPACE, Arch, BlockSpec, SearchSpace
from .errors import MissingRowError

__all__ = ["HEAD_CLASSES", "SUBNET_CLASSES", "RowSpec", "head_key", "table_rows", "subnet_archs"]

HEAD_CLASSES = (5, 100)   # head rows measured; other class counts are interpolated
SUBNET_CLASSES = 5        # whole subnets are checked with a one-superclass (5-way) head


@dataclass(frozen=True)
class RowSpec:
    """One table row: what to export (a single layer, in context) and its key."""

    key: str
    kind: str                          # "stem" | "block" | "head"
    input_chw: tuple[int, int, int]
    block: BlockSpec | None = None
    num_classes: int | None = None


def head_key(num_classes: int) -> str:
    """The row key of the head with ``num_classes`` logits: ``head_k5``."""
    return f"head_k{int(num_classes)}"


def table_rows(space: SearchSpace = DEFAULT_SPACE, head_classes: Sequence[int] = HEAD_CLASSES) -> list[RowSpec]:
    """Every distinct row of ``space``: stem, each block configuration in context, heads.

    A block's context depends only on its stage and on whether it is the stage's first
    block (its input size and channels follow from the stage table, not from the depths),
    so the rows are: per stage, first block and later blocks, times expand times kernel.
    """
    r = space.resolution // space.stem_stride
    rows = [RowSpec("stem", "stem", (space.in_channels, space.resolution, space.resolution))]
    seen = set()
    h, cin = r, space.stem_channels
    for s, st in enumerate(space.stages):
        positions = [(0, h, cin, st.stride)]
        hout = (h + st.stride - 1) // st.stride
        if space.max_depth > 1:
            positions.append((1, hout, st.channels, 1))
        for index, hh, ci, stride in positions:
            for e in space.expands:
                for k in space.kernels:
                    spec = BlockSpec(stage=s, index=index, h=hh, cin=ci, cout=st.channels,
                                     expand=e, kernel=k, stride=stride)
                    if spec.key not in seen:
                        seen.add(spec.key)
                        rows.append(RowSpec(spec.key, "block", (ci, hh, hh), block=spec))
        h, cin = hout, st.channels
    hf = space.final_resolution
    for k in sorted(set(int(c) for c in head_classes)):
        if k < 1:
            raise EdgeeasUsageError(f"head class counts must be >= 1, got {k}")
        rows.append(RowSpec(head_key(k), "head", (space.stages[-1].channels, hf, hf), num_classes=k))
    return rows


def subnet_archs(space: SearchSpace, n: int, seed: int = 0) -> list[Arch]:
    """The subnets a bench measures end to end: smallest, largest, then seeded random ones
    (the same list every time, so a rerun measures only the missing ones)."""
    if n <= 0:
        return []
    out = [space.smallest(), space.largest()][:n]
    seen = set(out)
    rng = random.Random(seed)
    tries = 0
    while len(out) < n and tries < 100 * n:
        a = space.sample(rng)
        tries += 1
        if a not in seen:
            seen.add(a)
            out.append(a)
    return out


def _head_ms(heads: dict[int, float], k: int) -> float:
    """Head latency for ``k`` classes: the measured row, else linear in ``k`` through the two
    nearest measured class counts (a head is a 1x1 conv plus a K-row linear layer)."""
    if not heads:
        raise MissingRowError("the table has no head row (head_k<K>): the table is incomplete, rerun `edgeeas bench`")
    if k in heads:
        return heads[k]
    ks = sorted(heads)
    if len(ks) == 1:
        return heads[ks[0]]
    lo, hi = (ks[0], ks[1]) if k < ks[0] else (ks[-2], ks[-1]) if k > ks[-1] else \
        max((a, b) for a, b in zip(ks, ks[1:]) if a < k < b)
    return heads[lo] + (heads[hi] - heads[lo]) * (k - lo) / (hi - lo)

