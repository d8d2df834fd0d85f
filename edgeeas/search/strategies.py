"""The search strategies: the generator and the baselines it is measured against.

* ``generator`` -- one forward pass of a trained generator (+ repair), no evaluation;
* ``evolution`` -- once-for-all's ``EvolutionFinder`` scaled to this space: population 100,
  the best 25% are parents, 50% of each new generation are mutants (each gene resampled with
  probability 0.1) and the rest crossovers (each gene from either parent); a child over budget
  is resampled (as OFA does; after 100 tries it is shrunk to fit); 500 fitness evaluations;
* ``random``    -- the best of N random architectures that fit, by the same fitness;
* ``uniform``   -- uniform shrinking: the dearest architecture with the same depth, expand and
  kernel everywhere that fits (``family`` restricts it to depth-only, width-only or
  kernel-only shrinking of the largest network).
"""
from __future__ import annotations

import random

from ..errors import EdgeeasUsageError
from .registry import Proposal, register_strategy
from .cost import Genome

__all__ = ["sample_feasible"]


def sample_feasible(ctx, rng: random.Random, budget: float, nc: int, tries: int = 100) -> Genome:
    """A uniformly random genome that fits (rejection sampling), else a random one shrunk by
    random steps until it fits (for budgets near the cheapest network)."""
    g = None
    for _ in range(tries):
        g = Genome.sample(ctx.space, rng)
        if ctx.table.genome_cost(g, nc) <= budget:
            return g
    return ctx.table.repair(g, budget, nc, rng=rng)


def _scorer(ctx, sc, fitness):
    """Fitness with a memo (a duplicate architecture costs no second measurement)."""
    fn = ctx.fitness_fn(sc, fitness)
    memo: dict[str, float] = {}

    def score(archs):
        new = [a for a in dict.fromkeys(archs, None) if str(a) not in memo]
        new = list({str(a): a for a in new}.values())
        for a, s in zip(new, fn(new) if new else []):
            memo[str(a)] = float(s)
        return [memo[str(a)] for a in archs]
    return score


@register_strategy("generator", help="one forward pass", style=("tab:red", "o"), needs_generator=True)
def generator_strategy(ctx, sc, budget, nc, *, generator=None):
    """One forward pass of ``generator`` (default ``ctx.generator``), trained for ``ctx``'s cost
    model; raises :class:`GeneratorError` for another cost model."""
    g = generator or ctx.generator
    if g is None:
        raise EdgeeasUsageError("the generator strategy needs a trained generator (--generator PATH; "
                                "make one with `edgeeas train generator`)")
    if g.table.fingerprint() != ctx.table.fingerprint():
        from .generator import GeneratorError

        raise GeneratorError(f"the generator was trained for cost model {g.meta.get('cost', {}).get('name')!r}, "
                             f"the search uses {ctx.cost_name!r}")
    return Proposal(g.generate([sc], [budget])[0])


def _check_evolution(o: dict) -> None:
    """Evolution's option ranges, one line naming the first bad one (:class:`EdgeeasUsageError`)."""
    if o["evaluations"] < 2:
        raise EdgeeasUsageError(f"evolution needs evaluations >= 2 (a population of at least 2, each evaluated "
                                f"once), got {o['evaluations']}")
    if o["population"] < 2:
        raise EdgeeasUsageError(f"evolution needs population >= 2, got {o['population']}")
    if o["evaluations"] < o["population"]:
        raise EdgeeasUsageError(f"evolution needs evaluations >= population (each member evaluated once), got "
                                f"evaluations {o['evaluations']} and population {o['population']}")
    if not 0 < o["parent_ratio"] < 1:
        raise EdgeeasUsageError(f"evolution needs 0 < parent_ratio < 1, got {o['parent_ratio']}")
    if not 0 <= o["mutation_ratio"] <= 1:
        raise EdgeeasUsageError(f"evolution needs 0 <= mutation_ratio <= 1, got {o['mutation_ratio']}")
    if not 0 <= o["mutate_prob"] <= 1:
        raise EdgeeasUsageError(f"evolution needs 0 <= mutate_prob <= 1, got {o['mutate_prob']}")


@register_strategy("evolution", help="once-for-all style", style=("tab:blue", "s"),
                   settings=lambda s: {"evaluations": s.evaluations, "population": min(s.population, s.evaluations),
                                       "fitness": s.fitness},
                   check=_check_evolution)
def evolution(ctx, sc, budget, nc, *, population: int = 100, parent_ratio: float = 0.25,
              mutation_ratio: float = 0.5, mutate_prob: float = 0.1, evaluations: int = 500,
              fitness: str | None = None, seed: int | None = None):
    """Once-for-all's evolution (see the module); ``evaluations`` fitness evaluations in all."""
    _check_evolution(dict(population=population, parent_ratio=parent_ratio, mutation_ratio=mutation_ratio,
                          mutate_prob=mutate_prob, evaluations=evaluations))
    space, table = ctx.space, ctx.table
    rng = random.Random(f"{ctx.seed if seed is None else seed}:evolution:{sc}:{budget!r}")
    score = _scorer(ctx, sc, fitness)
    S, D = space.num_stages, space.max_depth
    nd, ne, nk = len(space.depths), len(space.expands), len(space.kernels)
    n_parents = max(1, int(round(parent_ratio * population)))
    n_mut = int(round(mutation_ratio * population))

    def fits(g):
        return table.genome_cost(g, nc) <= budget

    def mutate(p: Genome) -> Genome:
        for _ in range(100):
            c = p.copy()
            for s in range(S):
                if rng.random() < mutate_prob:
                    c.d[s] = rng.randrange(nd)
                for b in range(D):
                    if rng.random() < mutate_prob:
                        c.e[s][b] = rng.randrange(ne)
                    if rng.random() < mutate_prob:
                        c.k[s][b] = rng.randrange(nk)
            if fits(c):
                return c
        return table.repair(c, budget, nc, rng=rng)

    def crossover(p1: Genome, p2: Genome) -> Genome:
        for _ in range(100):
            pick = lambda a, b: a if rng.random() < 0.5 else b  # noqa: E731
            c = Genome([pick(x, y) for x, y in zip(p1.d, p2.d)],
                       [[pick(x, y) for x, y in zip(r1, r2)] for r1, r2 in zip(p1.e, p2.e)],
                       [[pick(x, y) for x, y in zip(r1, r2)] for r1, r2 in zip(p1.k, p2.k)])
            if fits(c):
                return c
        return table.repair(c, budget, nc, rng=rng)

    pop = [sample_feasible(ctx, rng, budget, nc) for _ in range(population)]
    scores = score([g.to_arch(space) for g in pop])
    used = population
    best_s, best = max(zip(scores, range(len(pop))))
    best = pop[best]
    generations = 0
    while used < evaluations:
        order = sorted(range(len(pop)), key=lambda i: -scores[i])[:n_parents]
        parents, pscores = [pop[i] for i in order], [scores[i] for i in order]
        room = evaluations - used
        kids = [mutate(rng.choice(parents)) for _ in range(min(n_mut, room))]
        kids += [crossover(rng.choice(parents), rng.choice(parents))
                 for _ in range(min(population - n_parents - n_mut, room - len(kids)))]
        if not kids:
            break
        kscores = score([g.to_arch(space) for g in kids])
        used += len(kids)
        generations += 1
        pop, scores = parents + kids, pscores + kscores
        i = max(range(len(pop)), key=lambda j: scores[j])
        if scores[i] > best_s:
            best_s, best = scores[i], pop[i]
    return Proposal(best.to_arch(space), best_s, used,
                    {"generations": generations, "fitness": fitness or ctx.fitness})


def _check_random(o: dict) -> None:
    if o["samples"] < 1:
        raise EdgeeasUsageError(f"random search needs samples >= 1, got {o['samples']}")


@register_strategy("random", style=("tab:gray", "^"),
                   settings=lambda s: {"samples": s.evaluations, "fitness": s.fitness}, check=_check_random)
def random_search(ctx, sc, budget, nc, *, samples: int = 500, fitness: str | None = None, seed: int | None = None):
    """The fittest of ``samples`` random architectures that fit."""
    _check_random({"samples": samples})
    rng = random.Random(f"{ctx.seed if seed is None else seed}:random:{sc}:{budget!r}")
    score = _scorer(ctx, sc, fitness)
    archs = [sample_feasible(ctx, rng, budget, nc).to_arch(ctx.space) for _ in range(samples)]
    scores = score(archs)
    i = max(range(len(archs)), key=lambda j: scores[j])
    return Proposal(archs[i], scores[i], samples, {"fitness": fitness or ctx.fitness})


UNIFORM_FAMILIES = ("all", "depth", "width", "kernel")


@register_strategy("uniform", help="shrinking", style=("tab:green", "D"))
def uniform(ctx, sc, budget, nc, *, family: str = "all", select: str = "cost", fitness: str | None = None):
    """``select='cost'``: the dearest uniform architecture that fits (no evaluation);
    ``select='fitness'``: the fittest of those that fit."""
    space = ctx.space
    D, E, K = space.depths, space.expands, space.kernels
    fams = {"all": [(d, e, k) for d in D for e in E for k in K],
            "depth": [(d, E[-1], K[-1]) for d in D],
            "width": [(D[-1], e, K[-1]) for e in E],
            "kernel": [(D[-1], E[-1], k) for k in K]}
    if family not in fams:
        raise EdgeeasUsageError(f"unknown uniform family {family!r}; expected one of: {', '.join(UNIFORM_FAMILIES)}")
    if select not in ("cost", "fitness"):
        raise EdgeeasUsageError(f"unknown uniform selection {select!r}; expected 'cost' or 'fitness'")
    cands = [space.uniform(*c) for c in fams[family]]
    ok = [(ctx.table.arch_cost(a, nc), a) for a in cands]
    ok = [(c, a) for c, a in ok if c <= budget]
    if not ok:
        cheapest = min(ctx.table.arch_cost(a, nc) for a in cands)
        raise EdgeeasUsageError(f"no {family!r} uniform architecture fits {budget:g}{ctx.unit} "
                                f"(the cheapest costs {cheapest:.3f}{ctx.unit}); use family 'all'")
    if select == "cost":
        c, a = max(ok, key=lambda t: t[0])
        return Proposal(a, None, 0, {"family": family})
    archs = [a for _, a in ok]
    scores = _scorer(ctx, sc, fitness)(archs)
    i = max(range(len(archs)), key=lambda j: scores[j])
    return Proposal(archs[i], scores[i], len(archs), {"family": family})
