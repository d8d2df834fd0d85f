"""The search space: a stage table, the elastic choices, and architectures as frozen values.

An architecture is written as a short string that parses back, hashes and names files and
table rows::

    d23423-k35735573557357-e34634634634634

``d`` gives the depth of each of the 5 stages (one digit each); ``k`` and ``e`` give the
depthwise kernel and the expand ratio of every *active* block, in order (as many digits as
the depths add up to).  Inactive blocks are not part of the value, so two spellings of the
same network cannot exist.

MAdds and parameters are counted exactly from the same stage table the networks are built
from (a test checks both against the static PyTorch module).
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Iterator

from .errors import EdgeeasUsageError

__all__ = ["Stage", "SearchSpace", "Arch", "DEFAULT_SPACE", "ArchError"]


class ArchError(EdgeeasUsageError):
    """An architecture string or value does not fit the search space."""


@dataclass(frozen=True)
class Stage:
    """One row of the stage table (torchvision's ``t, c, n, s`` with elastic ``t`` and ``n``)."""

    channels: int
    stride: int


@dataclass(frozen=True)
class SearchSpace:
    """MobileNet-style space sized for 32x32 input on a CPU."""

    name: str = "edgeeas-c32-v1"
    resolution: int = 32
    in_channels: int = 3
    stem_channels: int = 16
    stem_stride: int = 1
    stages: tuple[Stage, ...] = (
        Stage(16, 2),  # 32 -> 16
        Stage(24, 2),  # 16 -> 8
        Stage(40, 2),  # 8 -> 4
        Stage(56, 1),
        Stage(80, 1),
    )
    head_channels: int = 256
    num_classes: int = 100
    depths: tuple[int, ...] = (2, 3, 4)
    expands: tuple[int, ...] = (3, 4, 6)
    kernels: tuple[int, ...] = (3, 5, 7)

    def __post_init__(self):
        for i, st in enumerate(self.stages):
            if st.channels <= 0 or st.stride not in (1, 2):
                raise ValueError(f"stage {i}: channels must be > 0 and stride 1 or 2, got {st}")
        for name in ("depths", "expands", "kernels"):
            vals = getattr(self, name)
            if not vals or any(not (0 < v < 10) for v in vals) or tuple(sorted(set(vals))) != vals:
                raise ValueError(f"{name} must be sorted distinct single digits, got {vals}")
        if any(k % 2 == 0 for k in self.kernels):
            raise ValueError(f"kernels must be odd, got {self.kernels}")

    # ---- structure -------------------------------------------------------------------
    def with_num_classes(self, n: int) -> "SearchSpace":
        """The same space with an ``n``-way head (a supernet for a dataset of ``n`` classes).  Its
        ``to_dict`` (and so every fingerprint made from it: supernets, generators) differs from
        this space's unless ``n`` is the same; latency tables, whose head rows are measured per
        head size, serve both (:meth:`same_body`)."""
        from dataclasses import replace

        if n < 2:
            raise ValueError(f"a head needs at least 2 classes, got {n}")
        return self if n == self.num_classes else replace(self, num_classes=int(n))

    def same_body(self, other: "SearchSpace") -> bool:
        """True when the two spaces differ at most in their head size (``num_classes``): every
        block, stem and head layer then has the same latency-table row."""
        return isinstance(other, SearchSpace) and self.with_num_classes(other.num_classes) == other

    @property
    def num_stages(self) -> int:
        """Number of rows in the stage table (5 by default): the length of ``Arch.depths``."""
        return len(self.stages)

    @property
    def max_depth(self) -> int:
        """Largest depth choice: the number of blocks the supernet holds per stage."""
        return self.depths[-1]

    def to_dict(self) -> dict:
        """JSON-ready form (stages as ``[channels, stride]`` pairs) that :meth:`from_dict` reads
        back; checkpoints and manifests store the space this way."""
        return {
            "name": self.name,
            "resolution": self.resolution,
            "in_channels": self.in_channels,
            "stem_channels": self.stem_channels,
            "stem_stride": self.stem_stride,
            "stages": [[s.channels, s.stride] for s in self.stages],
            "head_channels": self.head_channels,
            "num_classes": self.num_classes,
            "depths": list(self.depths),
            "expands": list(self.expands),
            "kernels": list(self.kernels),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "SearchSpace":
        """Inverse of :meth:`to_dict` (lists become tuples; ``d`` is not modified).

        Raises:
            KeyError, TypeError: a field is missing or unknown.
            ValueError: a stage or a choice list is invalid (see the class's checks).
        """
        d = dict(d)
        d["stages"] = tuple(Stage(int(c), int(s)) for c, s in d["stages"])
        for k in ("depths", "expands", "kernels"):
            d[k] = tuple(int(v) for v in d[k])
        return cls(**d)

    def block_specs(self, arch: "Arch") -> Iterator["BlockSpec"]:
        """Every active block in order, in context (input size and channels, stride...)."""
        h = self.resolution // self.stem_stride
        cin = self.stem_channels
        i = 0
        for s, st in enumerate(self.stages):
            for b in range(arch.depths[s]):
                stride = st.stride if b == 0 else 1
                yield BlockSpec(
                    stage=s, index=b, h=h, cin=cin, cout=st.channels,
                    expand=arch.expands[i], kernel=arch.kernels[i], stride=stride,
                )
                h = (h + stride - 1) // stride
                cin = st.channels
                i += 1

    @property
    def final_resolution(self) -> int:
        """Side of the feature map entering the head, in pixels (4 for 32x32 input and three
        stride-2 stages); independent of the architecture."""
        h = self.resolution // self.stem_stride
        for st in self.stages:
            h = (h + st.stride - 1) // st.stride
        return h

    # ---- architectures ---------------------------------------------------------------
    def largest(self) -> "Arch":
        """Deepest subnet with the largest expand ratio and kernel everywhere."""
        return self.uniform(self.depths[-1], self.expands[-1], self.kernels[-1])

    def smallest(self) -> "Arch":
        """Shallowest subnet with the smallest expand ratio and kernel everywhere."""
        return self.uniform(self.depths[0], self.expands[0], self.kernels[0])

    def middle(self) -> "Arch":
        """Uniform subnet with the middle choice of each list (index ``len // 2``): depth 3,
        expand 4, kernel 5 by default."""
        pick = lambda v: v[len(v) // 2]  # noqa: E731
        return self.uniform(pick(self.depths), pick(self.expands), pick(self.kernels))

    def uniform(self, depth: int, expand: int, kernel: int) -> "Arch":
        """The architecture with ``depth`` blocks in every stage, all of them with ``expand`` and
        ``kernel``.  Not validated: pass it to :meth:`validate` if the values come from a user."""
        n = depth * self.num_stages
        return Arch((depth,) * self.num_stages, (kernel,) * n, (expand,) * n)

    def sample(self, rng: random.Random) -> "Arch":
        """A uniformly random architecture (each depth, kernel and expand ratio drawn
        independently from ``rng``): the same seed gives the same architecture."""
        depths = tuple(rng.choice(self.depths) for _ in self.stages)
        n = sum(depths)
        return Arch(depths, tuple(rng.choice(self.kernels) for _ in range(n)),
                    tuple(rng.choice(self.expands) for _ in range(n)))

    def validate(self, arch: "Arch") -> "Arch":
        """Return ``arch`` unchanged if it belongs to this space.

        Raises:
            ArchError: wrong number of stages, a depth, kernel or expand ratio outside the
                choices, or a kernel/expand count that is not the sum of the depths; the message
                names the first bad value and the allowed ones.
        """
        self._check_depths(arch.depths, str(arch))
        self._check_counts(arch.depths, arch.kernels, arch.expands, str(arch))
        for name, vals, allowed in (("kernel", arch.kernels, self.kernels), ("expand ratio", arch.expands, self.expands)):
            for i, v in enumerate(vals):
                if v not in allowed:
                    stage, block = _position(arch.depths, i)
                    raise ArchError(f"{name} digit {v} for stage {stage} block {block} (position {i + 1}) of "
                                    f"{arch} is not one of {list(allowed)}; {self.form()}")
        return arch

    NAMED = ("smallest", "middle", "largest")

    def resolve(self, text: str) -> "Arch":
        """What every command taking an architecture accepts: ``smallest``, ``middle`` or
        ``largest`` (:meth:`smallest`, ...), else an architecture string (:meth:`parse`)."""
        name = text.strip().lower() if isinstance(text, str) else text
        if name in self.NAMED:
            return getattr(self, name)()
        return self.parse(text)

    def form(self) -> str:
        """The expected form of an architecture string of this space, with an example."""
        eg = self.smallest()
        return (f"expected d<{self.num_stages} depth digits, one per stage, each in {list(self.depths)}>-"
                f"k<one kernel digit per block, in {list(self.kernels)}>-e<one expand digit per block, in "
                f"{list(self.expands)}>, e.g. {eg}")

    def _check_depths(self, depths, text: str) -> None:
        if len(depths) != self.num_stages:
            raise ArchError(f"architecture {text!r} has {len(depths)} stages (depth digits d{''.join(map(str, depths))}) "
                            f"but the search space {self.name} has {self.num_stages} stages; {self.form()}")
        for i, d in enumerate(depths):
            if d not in self.depths:
                why = (f"exceeds max {max(self.depths)}" if d > max(self.depths) else
                       f"is below min {min(self.depths)}" if d < min(self.depths) else f"is not one of {list(self.depths)}")
                raise ArchError(f"architecture {text!r}: depth digit {d} for stage {i + 1} {why}; {self.form()}")

    def _check_counts(self, depths, kernels, expands, text: str) -> None:
        n = sum(depths)
        for name, vals in (("kernel", kernels), ("expand", expands)):
            if len(vals) != n:
                per = ", ".join(f"stage {i + 1}: {d}" for i, d in enumerate(depths))
                if len(vals) < n:
                    stage, block = _position(depths, len(vals))
                    where = f"stage {stage} lacks its block {block} onwards"
                else:
                    where = f"{len(vals) - n} too many"
                raise ArchError(f"architecture {text!r}: depths d{''.join(map(str, depths))} need {n} {name} digits "
                                f"({per}) but {len(vals)} are given ({where}); {self.form()}")

    def parse(self, text: str) -> "Arch":
        """A string such as ``d23423-k35735573557357-e34634634634634`` to an :class:`Arch` of this
        space: the form, then the stage count and each stage's depth, then the kernel and expand
        counts, then each value (the first error wins, naming the stage and block).

        Raises:
            ArchError: one line naming the wrong digit, its stage (and block), the allowed
                values and the expected form.
        """
        try:
            depths, kernels, expands = _split(text)
        except ArchError:
            raise ArchError(f"malformed architecture {text!r}: {self.form()}") from None
        self._check_depths(depths, text.strip())
        self._check_counts(depths, kernels, expands, text.strip())
        return self.validate(Arch(depths, kernels, expands))

    # ---- exact counts ----------------------------------------------------------------
    def madds(self, arch: "Arch") -> int:
        """Multiply-adds of one 1x3xRxR inference (convolutions and the linear head)."""
        return sum(m for _, m, _ in self.layer_costs(arch))

    def params(self, arch: "Arch", num_classes: int | None = None) -> int:
        """Parameters of the static subnet (conv weights, BN affine, linear weight and bias)."""
        return sum(p for _, _, p in self.layer_costs(arch, num_classes))

    def layer_costs(self, arch: "Arch", num_classes: int | None = None):
        """(name, madds, params) of every layer of ``arch``: the one place counting lives."""
        self.validate(arch)
        nc = self.num_classes if num_classes is None else num_classes
        r, c0 = self.resolution // self.stem_stride, self.stem_channels
        yield "stem", r * r * c0 * self.in_channels * 9, c0 * self.in_channels * 9 + 2 * c0
        for spec in self.block_specs(arch):
            yield spec.key, spec.madds, spec.params
        hf, ch, cl = self.final_resolution, self.head_channels, self.stages[-1].channels
        yield "head", hf * hf * ch * cl + ch * nc, ch * cl + 2 * ch + ch * nc + nc


@dataclass(frozen=True)
class BlockSpec:
    """One inverted-residual block in context: the key of a latency table row."""

    stage: int
    index: int
    h: int
    cin: int
    cout: int
    expand: int
    kernel: int
    stride: int

    @property
    def mid(self) -> int:
        """Hidden (expanded) channels: ``cin * expand``."""
        return self.cin * self.expand

    @property
    def residual(self) -> bool:
        """True when the block adds its input back (stride 1 and ``cin == cout``)."""
        return self.stride == 1 and self.cin == self.cout

    @property
    def hout(self) -> int:
        """Output side in pixels: ``ceil(h / stride)`` ("same" padding)."""
        return (self.h + self.stride - 1) // self.stride

    @property
    def key(self) -> str:
        """``ir_h16_i16_o24_e6_k5_s2`` (+ ``_r`` for a residual block)."""
        return (f"ir_h{self.h}_i{self.cin}_o{self.cout}_e{self.expand}_k{self.kernel}_s{self.stride}"
                + ("_r" if self.residual else ""))

    @property
    def madds(self) -> int:
        """Multiply-adds of the block for one image (expand, depthwise, project convolutions;
        BN, ReLU6 and the residual add are not counted)."""
        m, ho = self.mid, self.hout
        return (self.h * self.h * self.cin * m          # 1x1 expand at input resolution
                + ho * ho * m * self.kernel ** 2        # depthwise
                + ho * ho * m * self.cout)              # 1x1 project

    @property
    def params(self) -> int:
        """Parameters of the static block: three conv weights plus BN weight and bias of each."""
        m = self.mid
        return (self.cin * m + 2 * m + m * self.kernel ** 2 + 2 * m + m * self.cout + 2 * self.cout)


_ARCH_RE = re.compile(r"^d(\d+)-k(\d+)-e(\d+)$")


def _split(text: str) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """The depth, kernel and expand digits of ``d...-k...-e...`` (form only, no counts)."""
    m = _ARCH_RE.match(text.strip()) if isinstance(text, str) else None
    if not m:
        raise ArchError(f"malformed architecture {text!r}: expected 'd<depth digit per stage>-"
                        f"k<kernel digit per block>-e<expand digit per block>', e.g. d22222-k3333333333-e3333333333")
    return tuple(tuple(int(c) for c in g) for g in m.groups())  # type: ignore[return-value]


def _position(depths, index: int) -> tuple[int, int]:
    """(stage, block), both 1-based, of block ``index`` (0-based over all blocks) under ``depths``."""
    for s, d in enumerate(depths):
        if index < d:
            return s + 1, index + 1
        index -= d
    return len(depths), index + 1


@dataclass(frozen=True)
class Arch:
    """A subnet of the search space: depth per stage, kernel and expand ratio per active block."""

    depths: tuple[int, ...]
    kernels: tuple[int, ...]
    expands: tuple[int, ...]

    def __str__(self) -> str:
        j = lambda v: "".join(str(x) for x in v)  # noqa: E731
        return f"d{j(self.depths)}-k{j(self.kernels)}-e{j(self.expands)}"

    @classmethod
    def parse(cls, text: str) -> "Arch":
        """Parse ``d<depth per stage>-k<kernel per block>-e<expand per block>`` (one digit each;
        surrounding whitespace ignored); ``str(arch)`` gives the text back.

        Checks only the form and that kernel and expand counts equal the sum of the depths; use
        :meth:`SearchSpace.parse` to check the values against a space.

        Raises:
            ArchError: malformed text, with the expected form and an example.
        """
        depths, kernels, expands = _split(text)
        n = sum(depths)
        if len(kernels) != n or len(expands) != n:
            per = ", ".join(f"stage {i + 1}: {d}" for i, d in enumerate(depths))
            raise ArchError(f"malformed architecture {text!r}: depths d{''.join(map(str, depths))} need {n} "
                            f"kernel and {n} expand digits ({per}) but it gives {len(kernels)} kernels and "
                            f"{len(expands)} expand ratios")
        return cls(depths, kernels, expands)

    def blocks_per_stage(self) -> list[list[tuple[int, int]]]:
        """[(kernel, expand), ...] for each stage."""
        out, i = [], 0
        for d in self.depths:
            out.append(list(zip(self.kernels[i:i + d], self.expands[i:i + d])))
            i += d
        return out


DEFAULT_SPACE = SearchSpace()
