"""Budgets, cost models, repair, and every search strategy on the tiny supernet and real data."""
from __future__ import annotations

import json
import random

import pytest

from edgeeas.search import (STRATEGIES, BudgetError, CostTable, Genome, InfeasibleBudget, MaddsCost,
                            SearchContext, find_arch, parse_budget, train_generator, GeneratorConfig)
from edgeeas.space import DEFAULT_SPACE as SPACE


class ToyLatency:
    """A latency-like cost model with the LatencyPredictor protocol (not proportional to MAdds)."""

    name = "toy"

    def block_ms(self, spec):
        return 0.02 + spec.madds / 2e7 + 0.01 * spec.kernel * (spec.stride == 2) + 0.004 * spec.expand

    def fixed_ms(self, num_classes=5):
        return 0.3 + 0.001 * num_classes

    def predict(self, arch, num_classes=5):
        return self.fixed_ms(num_classes) + sum(self.block_ms(s) for s in SPACE.block_specs(arch))


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: on a small loaded machine two threads per process thrash (20x slower)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

# ---- budgets ------------------------------------------------------------------------------
@pytest.mark.parametrize("text,kind,value", [("20ms", "latency_ms", 20.0), ("500us", "latency_ms", 0.5),
                                             ("12.5ms", "latency_ms", 12.5), ("8M", "madds", 8.0),
                                             ("0.5M", "madds", 0.5), (" 7ms ", "latency_ms", 7.0)])
def test_parse_budget(text, kind, value):
    b = parse_budget(text)
    assert (b.kind, b.value) == (kind, pytest.approx(value))
    assert parse_budget(str(b)) == b


@pytest.mark.parametrize("text,hint", [("20", "ambiguous"), ("20 ms", "no space"), ("-5ms", "negative"),
                                       ("0.02s", "20ms"), ("abc", "not a number"), ("1e9ms", "exponent"),
                                       ("0ms", "greater than zero"), ("8m", "unknown unit"), ("", "empty"),
                                       ("20msec", "not a number"), ("nanms", "not a number")])
def test_bad_budgets_are_one_line(text, hint):
    with pytest.raises(BudgetError) as e:
        parse_budget(text)
    msg = str(e.value)
    assert "\n" not in msg and hint in msg and "20ms, 500us" in msg


def test_feasibility_names_the_range():
    table = CostTable(MaddsCost(SPACE), SPACE)
    lo, hi = table.bounds(5)
    assert lo == pytest.approx(MaddsCost(SPACE).predict(SPACE.smallest()))
    assert hi == pytest.approx(MaddsCost(SPACE).predict(SPACE.largest()))
    from edgeeas.search import check_feasible

    with pytest.raises(InfeasibleBudget, match=r"below the feasible range 4\.84M\.\.24\.31M for MAdds, x \(5 classes\)"):
        check_feasible(parse_budget("1M"), table, 5, "MAdds, x")
    # above every architecture: met by all of them, so not an error (find_arch returns the largest)
    assert check_feasible(parse_budget("300M"), table, 5, "MAdds, x") == 300.0
    with pytest.raises(InfeasibleBudget, match="is a latency but this cost model counts MAdds"):
        check_feasible(parse_budget("20ms"), table, 5, "MAdds")
    toy = CostTable(ToyLatency(), SPACE)
    with pytest.raises(InfeasibleBudget, match="counts MAdds but this cost model measures latency"):
        check_feasible(parse_budget("8M"), toy, 5, "target toy")
    lo, hi = toy.bounds(10)
    assert check_feasible(parse_budget(f"{(lo + hi) / 2:.4f}ms"), toy, 10) == pytest.approx((lo + hi) / 2, abs=1e-4)


# ---- cost models ----------------------------------------------------------------------------
@pytest.mark.parametrize("cost", [MaddsCost(SPACE), ToyLatency()], ids=["madds", "toy"])
def test_cost_table_matches_the_protocol(cost):
    table = CostTable(cost, SPACE)
    rng = random.Random(0)
    for _ in range(100):
        a = SPACE.sample(rng)
        nc = rng.choice((5, 10, 15))
        assert table.arch_cost(a, nc) == pytest.approx(cost.predict(a, nc), rel=1e-9)
    lo, hi = table.bounds(5)
    costs = [cost.predict(SPACE.sample(rng)) for _ in range(300)]
    assert lo <= min(costs) and max(costs) <= hi


def test_madds_cost_counts_exactly():
    cost = MaddsCost(SPACE)
    for a in (SPACE.smallest(), SPACE.middle(), SPACE.largest()):
        assert cost.predict(a, SPACE.num_classes) * 1e6 == pytest.approx(SPACE.madds(a))


@pytest.mark.parametrize("cost", [MaddsCost(SPACE), ToyLatency()], ids=["madds", "toy"])
def test_repair_always_fits(cost):
    table = CostTable(cost, SPACE)
    rng = random.Random(1)
    for i in range(300):
        g = Genome.sample(SPACE, rng)
        nc = rng.choice((5, 10))
        lo, hi = table.bounds(nc)
        budget = rng.uniform(lo, hi) if i % 10 else lo
        fixed = table.repair(g, budget, nc, rng=rng if i % 2 else None)
        assert cost.predict(fixed.to_arch(SPACE), nc) <= budget + 1e-12
        if table.genome_cost(g, nc) <= budget:
            assert fixed.to_arch(SPACE) == g.to_arch(SPACE)


# ---- strategies -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def net(tiny_run):
    from edgeeas.checkpoint import load_supernet

    return load_supernet(tiny_run / "supernet.pt")[0]


@pytest.fixture(scope="module")
def ctx(net, cifar, tmp_path_factory):
    return SearchContext(net, cifar, MaddsCost(net.space), cache_dir=tmp_path_factory.mktemp("cache"),
                         recal_images=64, val_images=40, predictor_samples=6)


@pytest.fixture(scope="module")
def budget_only_generator(net, cifar):
    return train_generator(net, cifar, MaddsCost(net.space),
                           GeneratorConfig(steps=40, acc_weight=0.0, cost_batch=16, checkpoint_every=0))


TINY_OPTS = {"evolution": {"population": 6, "evaluations": 14}, "random": {"samples": 5},
             "uniform": {}, "generator": {}}


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_returns_a_feasible_arch(name, ctx, budget_only_generator):
    assert set(STRATEGIES) == set(TINY_OPTS), "give a new strategy tiny options here"
    opts = dict(TINY_OPTS[name])
    if name == "generator":
        opts["generator"] = budget_only_generator
    lo, hi = ctx.table.bounds(5)
    res = find_arch(name, ctx, ["vehicles_1"], f"{(lo + hi) / 2:.3f}M", **opts)
    SPACE.validate(res.arch)
    assert res.predicted_cost <= res.budget
    assert res.predicted_cost == pytest.approx(MaddsCost(SPACE).predict(res.arch, 5))
    assert res.seconds >= 0 and res.strategy == name
    if name in ("evolution", "random"):
        assert res.evaluations == (14 if name == "evolution" else 5)
        assert 0 <= res.score <= 100


def test_uniform_is_the_dearest_uniform_arch_that_fits(ctx):
    res = find_arch("uniform", ctx, "vehicles_1", "12M")
    a = res.arch
    assert len(set(a.kernels)) == len(set(a.expands)) == len(set(a.depths)) == 1
    fitting = [ctx.table.arch_cost(SPACE.uniform(d, e, k), 5) for d in SPACE.depths for e in SPACE.expands
               for k in SPACE.kernels]
    assert res.predicted_cost == pytest.approx(max(c for c in fitting if c <= 12.0))
    depth_only = find_arch("uniform", ctx, "vehicles_1", "20M", family="depth").arch
    assert set(depth_only.kernels) == {7} and set(depth_only.expands) == {6}


def test_direct_fitness_reports_a_real_measurement(ctx, cifar):
    res = find_arch("random", ctx, ["fish", "flowers"], "9M", samples=3, fitness="direct")
    acc = ctx.evaluator.accuracy(res.arch, [cifar.superclass_id("fish"), cifar.superclass_id("flowers")])
    assert res.score == pytest.approx(acc)
    assert 0 <= acc <= 100


def test_predictor_measurements_are_cached_and_reused(net, cifar, ctx, tmp_path):
    find_arch("evolution", ctx, ["people"], "10M", population=4, evaluations=8)
    files = list(ctx.cache_dir.glob("accuracy-*.jsonl"))
    assert len(files) == 1
    recs = [json.loads(line) for line in files[0].read_text().splitlines()]
    assert sum(r["superclasses"] == ["people"] for r in recs) == 6
    again = SearchContext(net, cifar, MaddsCost(net.space), cache_dir=ctx.cache_dir, recal_images=64,
                          val_images=40, predictor_samples=6)
    find_arch("evolution", again, ["people"], "10M", population=4, evaluations=8)
    assert again.evaluator.measurements == 0


def test_search_errors_are_one_line(ctx):
    from edgeeas.errors import EdgeeasError, EdgeeasUsageError

    cases = [(("annealing", ctx, "fish", "8M"), {}, "expected one of: evolution, generator, random, uniform"),
             (("random", ctx, "fish", "8M"), {"population": 3}, "has no option 'population'"),
             (("random", ctx, "spaceships", "8M"), {}, "unknown superclass 'spaceships'; expected one of: aquatic_mammals"),
             (("uniform", ctx, "fish", "1M"), {}, "below the feasible range"),
             (("generator", ctx, "fish", "8M"), {}, "needs a trained generator")]
    for args, kw, msg in cases:
        with pytest.raises(EdgeeasError) as e:
            find_arch(*args, **kw)
        assert msg in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(EdgeeasUsageError):
        find_arch("uniform", ctx, "fish", "20ms")
    # an unknown superclass is a usage error (exit 2) in every command, as a bad budget is
    with pytest.raises(EdgeeasUsageError, match="unknown superclass 'spaceships'"):
        find_arch("random", ctx, "spaceships", "8M")


# ---- the latency safety margin -----------------------------------------------------------------
@pytest.mark.parametrize("text,value", [("auto", "auto"), ("5%", 0.05), ("5", 0.05), ("0", 0.0), (" 12.5% ", 0.125)])
def test_parse_margin(text, value):
    from edgeeas.search.budget import parse_margin

    assert parse_margin(text) == (value if value == "auto" else pytest.approx(value))


@pytest.mark.parametrize("text", ["-5%", "100%", "lots", "5ms", ""])
def test_bad_margins_are_one_line(text):
    from edgeeas.search.budget import parse_margin

    with pytest.raises(BudgetError) as e:
        parse_margin(text)
    assert "expected 'auto' or a percentage" in str(e.value) and "\n" not in str(e.value)


def test_margin_aims_latency_budgets_lower_but_not_madds(net, cifar, ctx):
    """A 10 % margin: the architecture fits budget / 1.1 (and the result still reports the
    budget asked for); below the cheapest architecture it aims at the cheapest; MAdds budgets
    are exact and take no margin."""
    toy = SearchContext(net, cifar, ToyLatency(), cache_dir=ctx.cache_dir, recal_images=64, val_images=40,
                        predictor_samples=6, latency_margin="10%")
    lo, hi = toy.table.bounds(5)
    b = (lo + hi) / 2
    res = find_arch("uniform", toy, "fish", f"{b:.4f}ms")
    assert res.budget == pytest.approx(float(f"{b:.4f}")) and res.extra["latency_margin_pct"] == 10.0
    assert res.predicted_cost <= res.extra["aimed_budget"] * (1 + 1e-9)
    assert res.extra["aimed_budget"] == pytest.approx(res.budget / 1.1, abs=1e-5)
    none = SearchContext(net, cifar, ToyLatency(), cache_dir=ctx.cache_dir, latency_margin="0")
    assert find_arch("uniform", none, "fish", f"{b:.4f}ms").predicted_cost >= res.predicted_cost
    tight = find_arch("uniform", toy, "fish", f"{lo * 1.01:.4f}ms")
    assert tight.extra["aimed_budget"] == pytest.approx(lo, abs=1e-5)
    # ToyLatency has no held-out errors: 'auto' means no margin; MAdds never take one
    assert SearchContext(net, cifar, ToyLatency(), cache_dir=ctx.cache_dir).latency_margin == 0.0
    assert SearchContext(net, cifar, MaddsCost(SPACE), cache_dir=ctx.cache_dir, latency_margin="20%").latency_margin == 0
    assert "latency_margin_pct" not in find_arch("uniform", ctx, "fish", "12M").extra


class ToyCrowded(ToyLatency):
    """ToyLatency plus a term of the whole architecture (as the latency predictor's crowding):
    every block costs 2 % more per block in the net, which no per-slot table can express."""

    name = "toy-crowded"

    def predict(self, arch, num_classes=5):
        blocks = list(SPACE.block_specs(arch))
        return self.fixed_ms(num_classes) + sum(self.block_ms(s) for s in blocks) * (1 + 0.02 * len(blocks))


@pytest.mark.parametrize("name", ["uniform", "random", "evolution"])
def test_search_checks_the_full_prediction(name, net, cifar, ctx):
    """The table under-counts a crowded cost by up to 40 %; the search reruns with a tighter
    table budget until the full prediction fits the aim."""
    toy = SearchContext(net, cifar, ToyCrowded(), cache_dir=ctx.cache_dir, recal_images=64, val_images=40,
                        predictor_samples=6, latency_margin="0")
    lo, hi = toy.table.bounds(5)
    b = lo + 0.6 * (hi - lo)
    res = find_arch(name, toy, "fish", f"{b:.4f}ms", **TINY_OPTS[name])
    assert res.predicted_cost == pytest.approx(ToyCrowded().predict(res.arch, 5))
    assert res.predicted_cost <= res.budget * (1 + 1e-9)
    assert toy.table.arch_cost(res.arch, 5) < res.predicted_cost  # the table alone would have been fooled
    if name == "uniform":  # the dearest uniform arch under the table budget overshoots: a rerun
        assert res.extra["search_rounds"] >= 2 and res.extra["table_budget"] < res.budget


def test_registry_options_are_a_dataclass_of_the_keyword_options():
    import dataclasses

    from edgeeas.search import SearchSettings, get_strategy, list_strategies, register_strategy, strategy_options

    assert list_strategies()[:4] == ["generator", "evolution", "random", "uniform"]
    evo = get_strategy("evolution")
    assert dataclasses.is_dataclass(evo.options) and evo.option_names()[:2] == ["population", "parent_ratio"]
    assert evo.options().evaluations == 500
    assert strategy_options("evolution", SearchSettings(evaluations=50, population=100)) == {
        "evaluations": 50, "population": 50, "fitness": "predictor"}
    assert strategy_options("uniform", SearchSettings()) == {} and get_strategy("generator").needs_generator
    with pytest.raises(ValueError, match="registered twice"):
        register_strategy("random")(lambda ctx, sc, b, nc: None)

    @dataclasses.dataclass
    class Wrong:
        other: int = 1
    with pytest.raises(ValueError, match="keyword-only"):
        register_strategy("wrong", options=Wrong)(lambda ctx, sc, b, nc, *, mine=1: None)
    assert "wrong" not in list_strategies()


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_a_budget_above_the_largest_subnet_yields_the_largest_with_a_note(name, ctx):
    """300M and 1000M are above the largest subnet's 24.31M: every strategy returns the largest
    subnet (it meets the budget) and says so, instead of refusing the budget."""
    for budget in ("300M", "24.4M"):
        res = find_arch(name, ctx, ["fish"], budget)
        assert res.arch == SPACE.largest()
        assert res.predicted_cost == pytest.approx(MaddsCost(SPACE).predict(SPACE.largest()))
        assert "above the largest subnet" in res.extra["note"] and "meets it" in res.extra["note"]
        assert res.to_dict()["note"] == res.extra["note"]
    # at the largest subnet's own cost minus a little, a real search runs (no note)
    res = find_arch("uniform", ctx, ["fish"], "24M")
    assert "note" not in res.extra and res.predicted_cost <= 24.0
