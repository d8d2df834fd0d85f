"""Cost models: what a budget is spent on.

Every search strategy and the generator see a cost model through one small protocol, the
three methods of the target latency predictor (``edgeeas.latency.LatencyPredictor``)::

    cost.predict(arch, num_classes=5)  == cost.fixed_ms(num_classes)
                                          + sum(cost.block_ms(s) for s in space.block_specs(arch))
                                          (+ a term of the whole architecture, >= 0, for a
                                           latency predictor with crowding: see find_arch)

:class:`MaddsCost` implements it with exact MAdds counts (in millions, unit ``M``), so MAdds
budgets work without any latency table.

Because a cost is a sum over blocks, and a block's context depends only on its stage and on
whether it is the first block of that stage, :class:`CostTable` precomputes the cost of every
(stage, slot, expand, kernel) once: 5 x 4 x 3 x 3 numbers.  The generator's expected cost,
exact feasible ranges, fast arch costs and the repair step all run on that table.
"""
from __future__ import annotations

import dataclasses
import hashlib
import random
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import EdgeeasError, EdgeeasUsageError
from ..space import Arch, BlockSpec, SearchSpace

__all__ = ["CostModel", "MaddsCost", "CostTable", "Genome", "cost_identity", "cost_unit", "load_cost",
           "format_cost", "CostModelError"]


class CostModelError(EdgeeasError):
    """A cost model cannot be loaded or does not fit (one line)."""


@runtime_checkable
class CostModel(Protocol):
    """What a budget is measured in: latency in ms (a target's predictor) or MAdds in M."""

    def predict(self, arch: Arch, num_classes: int = 5) -> float:
        """Cost of the whole architecture with a ``num_classes``-way head (ms, or M for MAdds)."""
        ...

    def block_ms(self, spec: BlockSpec) -> float:
        """Cost of one inverted-residual block in context (ms, or M for MAdds)."""
        ...

    def fixed_ms(self, num_classes: int = 5) -> float:
        """Cost of what every architecture has: stem and a ``num_classes``-way head (plus, for a
        latency predictor, its fitted per-model overhead)."""
        ...


class MaddsCost:
    """Exact multiply-adds in millions: ``block_ms`` is a block's MAdds / 1e6, ``fixed_ms`` the
    stem's and the (restricted) head's.  The method names follow the protocol; the unit is M."""

    kind = "madds"
    name = "madds"
    unit = "M"

    def __init__(self, space: SearchSpace):
        self.space = space

    def block_ms(self, spec: BlockSpec) -> float:
        """The block's exact MAdds, in millions."""
        return spec.madds / 1e6

    def fixed_ms(self, num_classes: int = 5) -> float:
        """MAdds of the stem and of a ``num_classes``-way head, in millions."""
        rows = {n: m for n, m, _ in self.space.layer_costs(self.space.smallest(), num_classes)}
        return (rows["stem"] + rows["head"]) / 1e6

    def predict(self, arch: Arch, num_classes: int = 5) -> float:
        """Exact MAdds of ``arch`` with a ``num_classes``-way head, in millions.

        Raises:
            ArchError: ``arch`` does not fit the search space.
        """
        return sum(m for _, m, _ in self.space.layer_costs(arch, num_classes)) / 1e6

    def __repr__(self) -> str:
        return "MaddsCost()"


def cost_unit(cost) -> str:
    """The unit of a cost model's figures: its ``unit`` attribute, else ``"M"`` (millions of
    MAdds) for :class:`MaddsCost` and ``"ms"`` for anything else."""
    return getattr(cost, "unit", None) or ("M" if isinstance(cost, MaddsCost) else "ms")


def format_cost(value: float, unit: str, how: str = "nearest") -> str:
    """``12.345ms`` / ``8.12M``; ``how='up'``/``'down'`` rounds so the printed bound stays inside."""
    digits = 3 if unit == "ms" else 2
    q = 10 ** digits
    v = {"up": np.ceil, "down": np.floor}.get(how, np.round)(value * q) / q
    return f"{v:.{digits}f}{unit}"


@dataclass
class Genome:
    """Every decision of the space by index, inactive slots included (as once-for-all's
    evolution keeps them): depth per stage, expand and kernel per stage and slot."""

    d: list[int]
    e: list[list[int]]
    k: list[list[int]]

    def copy(self) -> "Genome":
        """A deep copy (the lists are new; mutating it leaves ``self`` unchanged)."""
        return Genome(list(self.d), [list(r) for r in self.e], [list(r) for r in self.k])

    def to_arch(self, space: SearchSpace) -> Arch:
        """The architecture the genome encodes: indices mapped to ``space``'s choices, the slots
        beyond each stage's depth dropped."""
        depths = tuple(space.depths[i] for i in self.d)
        ks, es = [], []
        for s, depth in enumerate(depths):
            ks += [space.kernels[i] for i in self.k[s][:depth]]
            es += [space.expands[i] for i in self.e[s][:depth]]
        return Arch(depths, tuple(ks), tuple(es))

    @classmethod
    def from_arch(cls, arch: Arch, space: SearchSpace, fill: int = 0) -> "Genome":
        """The genome of ``arch``, inactive slots set to choice index ``fill``.

        Raises:
            ArchError: ``arch`` does not fit ``space``.
        """
        space.validate(arch)
        D = space.max_depth
        g = cls([space.depths.index(d) for d in arch.depths], [], [])
        for blocks in arch.blocks_per_stage():
            g.k.append([space.kernels.index(k) for k, _ in blocks] + [fill] * (D - len(blocks)))
            g.e.append([space.expands.index(e) for _, e in blocks] + [fill] * (D - len(blocks)))
        return g

    @classmethod
    def sample(cls, space: SearchSpace, rng: random.Random) -> "Genome":
        """A uniformly random genome (every slot drawn, active or not), reproducible from ``rng``."""
        S, D = space.num_stages, space.max_depth
        return cls([rng.randrange(len(space.depths)) for _ in range(S)],
                   [[rng.randrange(len(space.expands)) for _ in range(D)] for _ in range(S)],
                   [[rng.randrange(len(space.kernels)) for _ in range(D)] for _ in range(S)])


class CostTable:
    """``table[s, b, e, k]``: the cost of slot ``b`` of stage ``s`` with expand index ``e`` and
    kernel index ``k``, from ``cost.block_ms``; plus ``fixed(num_classes)``."""

    def __init__(self, cost: CostModel, space: SearchSpace):
        self.cost, self.space = cost, space
        self.unit = cost_unit(cost)
        S, D = space.num_stages, space.max_depth
        ne, nk = len(space.expands), len(space.kernels)
        specs = list(space.block_specs(space.largest()))  # every slot, in context
        t = np.zeros((S, D, ne, nk))
        for spec in specs:
            for ei, e in enumerate(space.expands):
                for ki, k in enumerate(space.kernels):
                    t[spec.stage, spec.index, ei, ki] = float(
                        cost.block_ms(dataclasses.replace(spec, expand=e, kernel=k)))
        if not np.all(np.isfinite(t)) or (t < 0).any():
            raise CostModelError(f"cost model {cost!r} gives negative or non-finite block costs")
        self.table = t
        self._rows = t.tolist()
        self._fixed: dict[int, float] = {}
        self._bounds: dict[int, tuple[float, float]] = {}
        # active[i, b] = 1 if depth index i keeps slot b
        self.active = np.array([[1.0 if d > b else 0.0 for b in range(D)] for d in space.depths])

    def fixed(self, num_classes: int = 5) -> float:
        """The cost model's ``fixed_ms(num_classes)`` (stem + head), memoized."""
        if num_classes not in self._fixed:
            self._fixed[num_classes] = float(self.cost.fixed_ms(num_classes))
        return self._fixed[num_classes]

    def genome_cost(self, g: Genome, num_classes: int = 5) -> float:
        """Cost of a genome's architecture (table lookups only, no architecture built): the
        fixed part plus the slot costs of its active blocks, in the cost model's unit.  Leaves
        out a predictor's whole-architecture term (crowding), which ``cost.predict`` adds."""
        total = self.fixed(num_classes)
        rows, depths = self._rows, self.space.depths
        for s, di in enumerate(g.d):
            rs, es, ks = rows[s], g.e[s], g.k[s]
            for b in range(depths[di]):
                total += rs[b][es[b]][ks[b]]
        return total

    def arch_cost(self, arch: Arch, num_classes: int = 5) -> float:
        """:meth:`genome_cost` of ``arch``.

        Raises:
            ArchError: ``arch`` does not fit the search space.
        """
        return self.genome_cost(Genome.from_arch(arch, self.space), num_classes)

    # ---- exact extremes (a cost is a sum over slots, so per-stage enumeration is exact) ----
    def _extreme_genome(self, agg, arg) -> Genome:
        """The cheapest (min/argmin) or dearest (max/argmax) genome, stage by stage."""
        S, D = self.space.num_stages, self.space.max_depth
        t = self.table
        g = Genome([0] * S, [[0] * D for _ in range(S)], [[0] * D for _ in range(S)])
        for s in range(S):
            costs = [sum(agg(t[s, b]) for b in range(d)) for d in self.space.depths]
            g.d[s] = int(arg(costs))
            for b in range(D):
                ei, ki = np.unravel_index(arg(t[s, b]), t[s, b].shape)
                g.e[s][b], g.k[s][b] = int(ei), int(ki)
        return g

    def min_genome(self) -> Genome:
        """The cheapest genome under the table (exact: the cost is a sum over slots)."""
        return self._extreme_genome(np.min, np.argmin)

    def max_genome(self) -> Genome:
        """The dearest genome under the table (exact, like :meth:`min_genome`)."""
        return self._extreme_genome(np.max, np.argmax)

    def bounds(self, num_classes: int = 5) -> tuple[float, float]:
        """(cheapest, dearest) cost of any architecture with a ``num_classes``-way head."""
        if num_classes not in self._bounds:
            self._bounds[num_classes] = (self.genome_cost(self.min_genome(), num_classes),
                                         self.genome_cost(self.max_genome(), num_classes))
        return self._bounds[num_classes]

    # ---- repair ------------------------------------------------------------------------
    def repair(self, g: Genome, budget: float, num_classes: int = 5, logp=None,
               rng: random.Random | None = None) -> Genome:
        """Shrink ``g`` until its cost is <= ``budget`` (a copy; ``g`` is not changed).

        Each round considers every one-step shrink (a stage one block shallower, a block's
        expand or kernel one option smaller) that saves cost, and takes the one that loses the
        least generator log-probability per unit of cost saved (``logp``: arrays shaped like
        the generator's logits), else a random one (``rng``), else the one saving the most.
        If no shrink saves anything the cheapest architecture is returned, so the result
        always fits a budget that is inside the feasible range."""
        g = g.copy()
        limit = budget - 1e-9 * abs(budget)
        cost = self.genome_cost(g, num_classes)
        t, depths = self._rows, self.space.depths
        while cost > limit:
            moves = []  # (saving, loss, kind, s, b)
            for s, di in enumerate(g.d):
                depth = depths[di]
                if di > 0:
                    new = depths[di - 1]
                    saving = sum(t[s][b][g.e[s][b]][g.k[s][b]] for b in range(new, depth))
                    loss = 0.0 if logp is None else float(logp[0][s][di] - logp[0][s][di - 1])
                    moves.append((saving, loss, "d", s, 0))
                for b in range(depth):
                    e, k = g.e[s][b], g.k[s][b]
                    if e > 0:
                        loss = 0.0 if logp is None else float(logp[1][s][b][e] - logp[1][s][b][e - 1])
                        moves.append((t[s][b][e][k] - t[s][b][e - 1][k], loss, "e", s, b))
                    if k > 0:
                        loss = 0.0 if logp is None else float(logp[2][s][b][k] - logp[2][s][b][k - 1])
                        moves.append((t[s][b][e][k] - t[s][b][e][k - 1], loss, "k", s, b))
            moves = [m for m in moves if m[0] > 0]
            if not moves:
                return self.min_genome()
            if logp is not None:
                mv = min(moves, key=lambda m: max(m[1], 0.0) / m[0] - 1e-12 * m[0])
            elif rng is not None:
                mv = moves[rng.randrange(len(moves))]
            else:
                mv = max(moves, key=lambda m: m[0])
            _, _, kind, s, b = mv
            if kind == "d":
                g.d[s] -= 1
            elif kind == "e":
                g.e[s][b] -= 1
            else:
                g.k[s][b] -= 1
            cost -= mv[0]
        return g

    def fingerprint(self) -> str:
        """What the generator depends on: every slot cost and the fixed costs, rounded."""
        h = hashlib.sha256()
        h.update(np.round(self.table, 9).tobytes())
        h.update(np.round(np.array([self.fixed(n) for n in (5, 10, 15)]), 9).tobytes())
        return h.hexdigest()[:16]


def cost_identity(cost: CostModel, space: SearchSpace, name: str | None = None) -> dict:
    """Kind, name, unit and a behavioural fingerprint of a cost model (its slot costs), stored
    with a generator so it is never used with another target or table."""
    kind = "madds" if isinstance(cost, MaddsCost) else "latency"
    name = name or getattr(cost, "target", None) or getattr(cost, "name", None) or kind
    if not isinstance(name, str):
        name = getattr(name, "name", str(name))
    return {"kind": kind, "name": name, "unit": cost_unit(cost),
            "fingerprint": CostTable(cost, space).fingerprint()}


def load_cost(space: SearchSpace, target: str | None = None, madds: bool = False):
    """(cost model, name): MAdds counts, or the latency predictor of ``targets/TARGET``."""
    if madds or target in (None, "madds"):
        if not madds and target is None:
            raise EdgeeasUsageError("give a latency target (--target host) or --madds")
        return MaddsCost(space), "madds"
    try:
        from ..latency import LatencyPredictor
    except ImportError as e:
        raise CostModelError(f"latency predictors are not available in this checkout ({e}); "
                             f"use a MAdds budget (--madds, or a budget like 8M)") from None
    from ..targets import TargetStore, warn_if_other_host

    store = TargetStore.named(target)
    directory = store.directory
    if not directory.is_dir():
        raise CostModelError(f"target {target!r} has no latency table in {directory}: run "
                             f"`edgeeas bench --target {target}` first, or use a MAdds budget")
    try:
        pred = LatencyPredictor.load(directory)
    except EdgeeasError:
        raise
    except (OSError, ValueError, KeyError) as e:
        raise CostModelError(f"cannot load the latency predictor of target {target!r} from "
                             f"{directory}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if not space.same_body(getattr(pred, "space", space)):  # head rows are per head size: any num_classes
        raise CostModelError(f"the latency table of target {target!r} is for search space "
                             f"{pred.space.name!r}, the supernet uses {space.name!r}: rerun `edgeeas bench --target {target}`")
    warn_if_other_host(store)
    return pred, target
