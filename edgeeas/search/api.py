"""One search interface: ``find_arch(strategy, ctx, superclasses, budget, **opts)``.

Strategies register by decorator (:mod:`edgeeas.search.registry`, timm's ``register_model``
habit) and all see the same :class:`SearchContext`: one supernet, one cost model (and its
slot-cost table), one fitness protocol (held-out accuracy, measured or predicted).  A strategy
is a function::

    @register_strategy("name", help="a few words", settings=lambda s: {"opt": s.evaluations})
    def name(ctx, superclasses: list[int], budget: float, num_classes: int, *, opt=...) -> Proposal

returning the architecture (which must fit ``budget``), its fitness score if it computed one,
and how many architectures it scored.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import EdgeeasError, EdgeeasUsageError
from ..space import Arch
from .budget import Budget, check_feasible, parse_budget, parse_margin
from .cost import CostTable, cost_identity, cost_unit
from .fitness import AccuracyData, AccuracyPredictor, Evaluator, encode, sample_archs, supernet_fingerprint
from .registry import (STRATEGIES, Proposal, SearchSettings, StrategyInfo, get_strategy, list_strategies,
                       register_strategy, strategy_options)

__all__ = ["STRATEGIES", "register_strategy", "get_strategy", "list_strategies", "strategy_options",
           "StrategyInfo", "SearchSettings", "SearchContext", "SearchResult", "Proposal", "find_arch"]


@dataclass
class SearchResult:
    """What :func:`find_arch` returns; ``to_dict`` is what ``edgeeas search --json`` prints and
    what a model manifest records under ``search``."""

    arch: Arch
    predicted_cost: float           # in the cost model's unit (ms or M)
    score: float | None             # the strategy's fitness estimate (accuracy %), None if it used none
    seconds: float                  # wall time of the whole search, one-time predictor data included
    evaluations: int
    strategy: str = ""
    budget: float = 0.0
    unit: str = "ms"
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready: ``arch`` as its string, costs rounded, ``extra`` merged in."""
        return {"strategy": self.strategy, "arch": str(self.arch), "predicted_cost": round(self.predicted_cost, 5),
                "budget": self.budget, "unit": self.unit,
                "score": None if self.score is None else round(self.score, 3),
                "seconds": round(self.seconds, 6), "evaluations": self.evaluations, **self.extra}


class SearchContext:
    """Everything the strategies share.

    ``fitness`` is ``"predictor"`` (default; the accuracy predictor trained on
    ``predictor_samples`` measured subnets per scenario, cached in ``cache_dir``) or
    ``"direct"`` (every candidate measured on the held-out images)."""

    def __init__(self, supernet, ds, cost, *, cost_name: str | None = None, generator=None,
                 cache_dir: str | Path | None = None, recal_images: int = 500, val_images: int = 500,
                 predictor_samples: int = 200, fitness: str = "predictor",
                 seed: int = 0, latency_margin="auto", log=None):
        self.supernet, self.ds, self.cost = supernet, ds, cost
        self.space = supernet.space
        self.table = CostTable(cost, self.space)
        self.unit = cost_unit(cost)
        self.cost_name = cost_name or cost_identity(cost, self.space)["name"]
        self.generator = generator
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.evaluator = Evaluator(supernet, ds, recal_images=recal_images, val_images=val_images, seed=seed)
        self.predictor_samples = predictor_samples
        self.fitness = fitness
        self.seed = seed
        self.log = log or (lambda m: None)
        # Latency budgets are searched for budget / (1 + margin): the predictor's held-out
        # under-prediction ("auto"), or a given fraction; MAdds are exact (no margin).
        m = parse_margin(latency_margin)
        if self.unit == "M":
            m = 0.0
        elif m == "auto":
            m = float(cost.safety_margin()) if hasattr(cost, "safety_margin") else 0.0
        self.latency_margin = m
        self._data: AccuracyData | None = None
        self._predictor: tuple[int, AccuracyPredictor] | None = None

    # ---- scenarios ---------------------------------------------------------------------
    def superclass_ids(self, superclasses) -> list[int]:
        """Names or ids (one or several) -> sorted superclass ids; :class:`EdgeeasUsageError` for
        none, an unknown name or an id out of range."""
        if isinstance(superclasses, (str, int)):
            superclasses = [superclasses]
        ids = sorted({s if isinstance(s, int) else self.ds.superclass_id(s) for s in superclasses})
        if not ids:
            raise EdgeeasUsageError("a scenario needs at least one superclass")
        bad = [s for s in ids if not 0 <= s < self.ds.num_superclasses]
        if bad:
            raise EdgeeasUsageError(f"superclass id {bad[0]} out of range 0..{self.ds.num_superclasses - 1}")
        return ids

    def num_classes(self, superclasses: list[int]) -> int:
        """Fine classes of the scenario: the rows of its head."""
        return sum(len(self.ds.classes_of(s)) for s in superclasses)

    def describe(self, superclasses: list[int]) -> str:
        """``"target host, fish"`` or ``"MAdds, fish+flowers"`` for messages."""
        what = "MAdds" if self.unit == "M" else f"target {self.cost_name}"
        return f"{what}, {'+'.join(self.ds.superclasses[s] for s in superclasses)}"

    # ---- fitness -----------------------------------------------------------------------
    def fitness_fn(self, superclasses: list[int], mode: str | None = None) -> Callable[[list[Arch]], list[float]]:
        """A function scoring architectures by accuracy on the scenario, in %: ``"direct"``
        (measured on held-out images) or ``"predictor"`` (default ``self.fitness``)."""
        mode = mode or self.fitness
        if mode == "direct":
            return lambda archs: [self.evaluator.accuracy(a, superclasses) for a in archs]
        if mode == "predictor":
            pred = self.predictor(superclasses)
            n_sup = self.ds.num_superclasses

            def score(archs):
                import torch

                with torch.no_grad():
                    x = encode(archs, [superclasses] * len(archs), self.space, n_sup)
                    return (100.0 * pred(x)).tolist()
            return score
        raise EdgeeasUsageError(f"unknown fitness {mode!r}; expected 'predictor' or 'direct'")

    def accuracy_data(self) -> AccuracyData:
        """The measured (architecture, scenario, accuracy) records, cached in ``cache_dir`` under
        a key of the supernet and the evaluation protocol."""
        if self._data is None:
            import hashlib
            import json

            key = {"supernet": supernet_fingerprint(self.supernet), **self.evaluator.protocol()}
            h = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
            path = self.cache_dir / f"accuracy-{h}.jsonl" if self.cache_dir else None
            self._data = AccuracyData(path, key)
        return self._data

    def predictor(self, superclasses: list[int] | None = None, *, progress: bool = False) -> AccuracyPredictor:
        """Measure what is missing of the ``predictor_samples`` subnets (cached on disk), then
        (re)train the predictor on every record measured so far.

        ``superclasses=None`` (the generator) measures every superclass at once
        (:meth:`Evaluator.accuracy_all`: one BN recalibration and one forward pass per subnet over
        all superclasses' held-out images); a search for one scenario measures only that scenario's
        images (about 20x less per subnet on CIFAR-100: a single search's first use stays minutes,
        not an hour), and reuses any record the generator's data already holds.  A one-time cost:
        the records are cached in ``cache_dir`` (``accuracy-<key>.jsonl``, keyed by the supernet
        and the evaluation protocol) and reused by every later search."""
        from .fitness import measure_all_superclasses

        data = self.accuracy_data()
        archs = sample_archs(self.space, self.predictor_samples, self.seed)
        where = str(data.path) if data.path is not None else "memory only (no cache directory)"
        if superclasses is None:  # the generator: every superclass, one forward pass per subnet
            todo = [a for a in archs if not all(data.has(a, (n,)) for n in self.ds.superclasses)]
            if todo:
                self.log(f"accuracy predictor: measuring {len(todo)} subnets on all {self.ds.num_superclasses} "
                         f"superclasses' held-out images (one time; cached in {where})")
            measure_all_superclasses(self.evaluator, data, todo, progress=progress,
                                     desc="accuracy predictor data (one time)")
        else:
            names = tuple(self.ds.superclasses[s] for s in superclasses)
            todo = [a for a in archs if not data.has(a, names)]
            if todo:
                self.log(f"accuracy predictor: measuring {len(todo)} subnets on {'+'.join(names)} "
                         f"(one time; cached in {where})")
            bar = None
            if progress and todo:
                from tqdm import tqdm
                bar = tqdm(total=len(todo), desc="accuracy predictor data (one time)", unit="subnet")
            for i, a in enumerate(todo):
                data.add(a, names, self.evaluator.accuracy(a, superclasses))
                if (i + 1) % 10 == 0:
                    data.save()
                if bar is not None:
                    bar.update(1)
            if bar is not None:
                bar.close()
            if todo:
                data.save()
        if self._predictor is None or self._predictor[0] != len(data.records):
            import torch

            recs = data.records
            archs = [self.space.parse(r["arch"]) for r in recs]
            scen = [[self.ds.superclass_id(n) for n in r["superclasses"]] for r in recs]
            x = encode(archs, scen, self.space, self.ds.num_superclasses)
            y = torch.tensor([r["acc"] / 100.0 for r in recs], dtype=torch.float32)
            model = AccuracyPredictor(x.shape[1], self.ds.num_superclasses)
            rmse = model.fit(x, y, seed=self.seed)
            cv = f", cross-validated {model.cv_rmse:.2f}" if model.cv_rmse is not None else ""
            self.log(f"accuracy predictor: {len(recs)} measured (subnet, scenario) pairs, training RMSE "
                     f"{rmse:.2f} points{cv}")
            self._predictor = (len(recs), model)
        return self._predictor[1]

    def predictor_identity(self) -> dict:
        """What the predictor was fitted on: the accuracy cache's key and its record count."""
        data = self.accuracy_data()
        return {"predictor_samples": self.predictor_samples, "records": len(data.records),
                "data_key": data.meta, "model": "ridge-interactions-v1"}


def find_arch(strategy: str, ctx: SearchContext, superclasses, budget, **opts) -> SearchResult:
    """The best architecture ``strategy`` finds for (``superclasses``, ``budget``).

    Args:
        strategy: a registered name (:func:`list_strategies`).
        ctx: the shared :class:`SearchContext` (supernet, dataset, cost model, fitness).
        superclasses: names or ids (one or several).
        budget: a :class:`Budget` or its string (``20ms``, ``500us``, ``8M`` = millions of MAdds).
        **opts: the strategy's options (fields of its ``StrategyInfo.options``).

    Returns:
        A :class:`SearchResult`; ``predicted_cost`` and ``budget`` in the cost model's unit (ms or
        M), ``seconds`` of wall time.  Latency searches aim at ``budget / (1 + ctx.latency_margin)``.

    Raises:
        EdgeeasUsageError: an unknown strategy or option, an unknown superclass, a budget of the
            wrong kind or outside the feasible range (one line).
        EdgeeasError: the strategy found nothing under the budget."""
    info = get_strategy(strategy)
    info.check_options(opts)
    fn = info.fn
    b = budget if isinstance(budget, Budget) else parse_budget(budget)
    sc = ctx.superclass_ids(superclasses)
    nc = ctx.num_classes(sc)
    value = check_feasible(b, ctx.table, nc, ctx.describe(sc))
    # The safety margin: aim below the budget by what the predictor under-predicts; never below
    # the cheapest architecture (the budget itself is feasible).
    lo, hi = ctx.table.bounds(nc)
    aim = max(value / (1.0 + ctx.latency_margin), lo)
    # A budget the largest subnet meets (even after the margin) needs no search: the largest
    # subnet is the answer, said in a note.  The full prediction is what counts (a cost model's
    # whole-architecture term can put the largest subnet above the table's own maximum).
    largest = ctx.space.largest()
    pred_largest = float(ctx.cost.predict(largest, nc))
    if pred_largest <= aim * (1 + 1e-9):
        note = (f"budget {b} is above the largest subnet's predicted {pred_largest:.4g}{ctx.unit} "
                f"({ctx.describe(sc)}): the largest subnet meets it")
        ctx.log(f"note: {note}")
        extra = {"note": note}
        if ctx.unit != "M":
            extra.update(latency_margin_pct=round(100 * ctx.latency_margin, 2), aimed_budget=round(aim, 5))
        return SearchResult(largest, pred_largest, None, 0.0, 0, strategy, value, ctx.unit, extra)
    # Strategies search the additive table: a budget above its maximum (but under the largest
    # subnet's full prediction) is searched at the table's maximum, then checked as below.
    aim_table_start = min(aim, hi)
    # Strategies search the additive cost table; a cost model may add a term of the whole
    # architecture (the latency predictor's crowding), so the full prediction is checked and,
    # while it is over the aim, the table budget is shrunk by the overshoot and the search rerun.
    table_aim, rounds, evaluations = aim_table_start, 0, 0
    t0 = time.perf_counter()
    while True:
        prop = fn(ctx, sc, table_aim, nc, **opts)
        rounds += 1
        evaluations += prop.evaluations
        ctx.space.validate(prop.arch)
        pred = float(ctx.cost.predict(prop.arch, nc))
        if pred <= aim * (1 + 1e-9) or table_aim <= lo or rounds >= _MAX_ROUNDS:
            break
        table_aim = max(lo, table_aim * aim / pred * (1 - 1e-3))
    seconds = time.perf_counter() - t0
    if pred > aim * (1 + 1e-9) and pred > value * (1 + 1e-9):
        raise EdgeeasError(f"strategy {strategy!r} found nothing under the budget {b} for {ctx.describe(sc)} "
                           f"(best: {prop.arch} at {pred:.4f}{ctx.unit} predicted)")
    extra = dict(prop.extra)
    if ctx.unit != "M":
        extra.update(latency_margin_pct=round(100 * ctx.latency_margin, 2), aimed_budget=round(aim, 5))
        if rounds > 1:
            extra.update(search_rounds=rounds, table_budget=round(table_aim, 5))
    return SearchResult(prop.arch, pred, prop.score, seconds, evaluations, strategy, value, ctx.unit, extra)


# Searches rerun with a tighter table budget at most this many times (the first overshoot is
# typically 5-20 %, and one rerun lands under the aim).
_MAX_ROUNDS = 6
