"""edgeeas.search.cost (the generator's budget handling: slot table, bounds, repair) on a tiny
space whose slot costs are written out, so every expected figure is computed by hand (fast: run
once per mutant by ``make mutate``)."""
from __future__ import annotations

import random

import numpy as np
import pytest

from edgeeas.search.cost import (CostModelError, CostTable, Genome, MaddsCost, cost_identity, cost_unit,
                                 format_cost)
from edgeeas.space import DEFAULT_SPACE, Arch, SearchSpace, Stage

# 2 stages, depth 1 or 2, expand 1 or 2, kernel 1 or 3
T = SearchSpace(name="t", resolution=4, stem_channels=4, stages=(Stage(4, 1), Stage(4, 1)), depths=(1, 2),
                expands=(1, 2), kernels=(1, 3), head_channels=4, num_classes=10)


class Toy:
    """slot (stage s, index b, expand e, kernel k) costs 1000 s + 100 b + 10 e + k; fixed = nc / 2."""

    def __init__(self):
        self.fixed_calls = 0

    def block_ms(self, spec):
        return 1000 * spec.stage + 100 * spec.index + 10 * spec.expand + spec.kernel

    def fixed_ms(self, num_classes=5):
        self.fixed_calls += 1
        return num_classes / 2

    def predict(self, arch, num_classes=5):
        raise AssertionError("not used")


MAX = Genome([1, 1], [[1, 1], [1, 1]], [[1, 1], [1, 1]])   # 23 + 123 + 1023 + 1123 + 2.5
MAX_COST = 2294.5
MIN_COST = 11 + 1011 + 2.5


def test_slot_table_and_genome_cost_by_hand():
    c = CostTable(Toy(), T)
    assert c.table.shape == (2, 2, 2, 2)
    assert c.table[1, 1, 1, 0] == 1000 + 100 + 20 + 1 and c.table[0, 0, 0, 1] == 13
    g = Genome([1, 0], [[1, 0], [1, 0]], [[1, 0], [0, 1]])   # d(2,1): (e2,k3) (e1,k1) | (e2,k1)
    assert g.to_arch(T) == Arch((2, 1), (3, 1, 1), (2, 1, 2))
    assert c.genome_cost(g) == 23 + 111 + 1021 + 2.5
    assert c.genome_cost(g, 10) == 23 + 111 + 1021 + 5
    assert c.arch_cost(Arch((2, 1), (3, 1, 1), (2, 1, 2))) == 23 + 111 + 1021 + 2.5
    assert c.active.tolist() == [[1.0, 0.0], [1.0, 1.0]]


def test_fixed_cost_is_memoized_per_head_size():
    toy = Toy()
    c = CostTable(toy, T)
    assert (c.fixed(5), c.fixed(5), c.fixed(10), c.fixed()) == (2.5, 2.5, 5.0, 2.5)
    assert toy.fixed_calls == 2


def test_bounds_and_extreme_genomes_by_hand():
    c = CostTable(Toy(), T)
    assert c.bounds() == (MIN_COST, MAX_COST)
    assert c.bounds(10) == (MIN_COST + 2.5, MAX_COST + 2.5)
    assert c.max_genome().to_arch(T) == Arch((2, 2), (3, 3, 3, 3), (2, 2, 2, 2))
    assert c.min_genome().to_arch(T) == Arch((1, 1), (1, 1), (1, 1))


class Cheap7:
    """A cost model where the larger kernel is the cheaper one and depth 2's second slot is dear."""

    def block_ms(self, spec):
        return {1: 5.0, 3: 1.0}[spec.kernel] + 50.0 * spec.index + spec.expand

    def fixed_ms(self, num_classes=5):
        return 0.0


def test_extremes_pick_the_cheapest_option_not_the_smallest():
    c = CostTable(Cheap7(), T)
    assert c.min_genome().to_arch(T) == Arch((1, 1), (3, 3), (1, 1))
    assert c.max_genome().to_arch(T) == Arch((2, 2), (1, 1, 1, 1), (2, 2, 2, 2))
    assert c.bounds() == (2 * (1 + 1), 2 * ((5 + 2) + (5 + 50 + 2)))


def test_negative_or_infinite_slot_costs_are_refused():
    class Neg(Toy):
        def block_ms(self, spec):
            return -1.0 if spec.index == 1 else 1.0

    class Inf(Toy):
        def block_ms(self, spec):
            return float("inf") if spec.stage == 1 else 1.0

    for bad in (Neg(), Inf()):
        with pytest.raises(CostModelError, match="negative or non-finite"):
            CostTable(bad, T)
    CostTable(type("Zero", (Toy,), {"block_ms": lambda self, spec: 0.0})(), T)   # 0 is fine


def test_repair_keeps_a_genome_that_fits_and_never_changes_its_input():
    c = CostTable(Toy(), T)
    g = MAX.copy()
    assert c.repair(g, MAX_COST + 1e-3) == MAX
    r = c.repair(g, MAX_COST - 1)
    assert r != MAX and c.genome_cost(r) <= MAX_COST - 1
    assert g == MAX


def test_repair_takes_the_biggest_saving_first():
    c = CostTable(Toy(), T)
    r = c.repair(MAX, 2200)         # dropping stage 1's second block saves 1123: one move is enough
    assert r.to_arch(T) == Arch((2, 1), (3, 3, 3), (2, 2, 2)) and c.genome_cost(r) == MAX_COST - 1123
    r = c.repair(MAX, 1100)         # then stage 0's second block (123)
    assert r.to_arch(T) == Arch((1, 1), (3, 3), (2, 2)) and c.genome_cost(r) == 23 + 1023 + 2.5
    r = c.repair(MAX, 1040)         # then an expand (10 > a kernel's 2)
    assert c.genome_cost(r) == 23 + 1023 + 2.5 - 10
    assert MAX == Genome([1, 1], [[1, 1], [1, 1]], [[1, 1], [1, 1]])


def test_repair_below_the_feasible_range_returns_the_cheapest():
    c = CostTable(Toy(), T)
    assert c.repair(MAX, 0.0) == c.min_genome()
    assert c.repair(MAX, MIN_COST) == c.min_genome()


def _logp():
    return [np.zeros((2, 2)), np.zeros((2, 2, 2)), np.zeros((2, 2, 2))]


def test_repair_with_logp_shrinks_what_the_generator_cares_least_about():
    c = CostTable(Toy(), T)
    logp = _logp()
    logp[0][:, 1] = 100.0           # the generator wants depth 2 (loss 100)
    logp[2][:, :, 1] = 50.0         # and kernel 3 (loss 50 for a saving of 2: 25 per unit)
    # expand moves lose nothing: they go first
    r = c.repair(MAX, MAX_COST - 15, logp=logp)
    assert r.d == [1, 1] and r.k == [[1, 1], [1, 1]] and r.e == [[0, 0], [1, 1]]
    assert c.genome_cost(r) == MAX_COST - 20
    # all 4 expand moves save 40; then a depth: stage 1 saves 1113 for 100, stage 0 113 for 100
    r = c.repair(MAX, MAX_COST - 45, logp=logp)
    assert r.d == [1, 0] and r.e == [[0, 0], [0, 0]] and r.k == [[1, 1], [1, 1]]
    assert c.genome_cost(r) == MAX_COST - 40 - 1113
    logp[0][1, 1] = 1000.0          # now stage 1's depth loses 1000 / 1113 per unit > 100 / 113
    r = c.repair(MAX, MAX_COST - 45, logp=logp)
    assert r.d == [0, 1] and c.genome_cost(r) == MAX_COST - 40 - 113


def test_repair_with_logp_counts_a_gain_as_no_loss():
    c = CostTable(Toy(), T)
    logp = _logp()
    logp[1][:, :, 1] = -100.0       # the generator prefers expand 1: a gain, counted as 0 loss, so
    logp[2][:, :, 1] = 1.0          # the zero-loss move saving the most goes: stage 1's depth
    r = c.repair(MAX, MAX_COST - 5, logp=logp)
    assert r.d == [1, 0] and r.e == [[1, 1], [1, 1]] and c.genome_cost(r) == MAX_COST - 1123


def test_repair_with_rng_is_reproducible_and_random():
    c = CostTable(Toy(), T)
    a = c.repair(MAX, 1500, rng=random.Random(3))
    b = c.repair(MAX, 1500, rng=random.Random(3))
    assert a == b and c.genome_cost(a) <= 1500
    runs = {str(c.repair(MAX, 2290, rng=random.Random(s)).to_arch(T)) for s in range(12)}
    assert len(runs) > 1            # random moves, not always the biggest saving


def test_genome_from_arch_to_arch_and_copy():
    a = Arch((2, 1), (3, 1, 3), (1, 2, 2))
    g = Genome.from_arch(a, T, fill=1)
    assert g == Genome([1, 0], [[0, 1], [1, 1]], [[1, 0], [1, 1]])
    assert Genome.from_arch(a, T).e[1] == [1, 0] and g.to_arch(T) == a
    h = g.copy()
    h.e[0][0] = 1
    h.d[0] = 0
    assert g.e[0][0] == 0 and g.d[0] == 1
    rng = random.Random(0)
    seen = set()
    for _ in range(50):
        s = Genome.sample(T, rng)
        assert len(s.d) == 2 and all(len(r) == 2 for r in s.e + s.k)
        T.validate(s.to_arch(T))
        seen |= {("d", v) for v in s.d} | {("e", v) for r in s.e for v in r} | {("k", v) for r in s.k for v in r}
    assert seen == {(x, v) for x in "dek" for v in (0, 1)}


def test_units_and_formatting():
    assert cost_unit(MaddsCost(DEFAULT_SPACE)) == "M" and cost_unit(Toy()) == "ms"
    assert cost_unit(type("U", (), {"unit": "x"})()) == "x"
    assert format_cost(1.2341, "ms") == "1.234ms"
    assert format_cost(1.2341, "ms", "up") == "1.235ms"
    assert format_cost(1.2349, "ms", "down") == "1.234ms"
    assert format_cost(8.121, "M", "up") == "8.13M" and format_cost(8.129, "M", "down") == "8.12M"
    assert format_cost(8.126, "M") == "8.13M"


def test_madds_cost_by_hand():
    m = MaddsCost(DEFAULT_SPACE)
    stem, head_body = 32 * 32 * 16 * 3 * 9, 4 * 4 * 256 * 80
    assert m.fixed_ms(5) == pytest.approx((stem + head_body + 256 * 5) / 1e6)
    assert m.fixed_ms(10) == pytest.approx((stem + head_body + 256 * 10) / 1e6)
    spec = next(iter(DEFAULT_SPACE.block_specs(DEFAULT_SPACE.largest())))   # h32 i16 o16 e6 k7 s2
    assert m.block_ms(spec) == pytest.approx((32 * 32 * 16 * 96 + 16 * 16 * 96 * 49 + 16 * 16 * 96 * 16) / 1e6)
    assert m.predict(DEFAULT_SPACE.smallest(), 100) == pytest.approx(DEFAULT_SPACE.madds(DEFAULT_SPACE.smallest()) / 1e6)


def test_identity_and_fingerprint_follow_the_slot_costs():
    a, b = cost_identity(Toy(), T), cost_identity(Toy(), T, name="x")
    assert a["kind"] == "latency" and a["unit"] == "ms" and b["name"] == "x"
    assert a["fingerprint"] == b["fingerprint"] and len(a["fingerprint"]) == 16
    other = type("T2", (Toy,), {"block_ms": lambda self, spec: Toy.block_ms(self, spec) + (spec.kernel == 3)})()
    assert cost_identity(other, T)["fingerprint"] != a["fingerprint"]
    fixed = type("T3", (Toy,), {"fixed_ms": lambda self, nc=5: nc})()
    assert cost_identity(fixed, T)["fingerprint"] != a["fingerprint"]
    m = cost_identity(MaddsCost(T), T)
    assert (m["kind"], m["name"], m["unit"]) == ("madds", "madds", "M")
    named = type("N", (Toy,), {"target": type("Tg", (), {"name": "pixel"})()})()
    assert cost_identity(named, T)["name"] == "pixel"


def test_fingerprint_covers_the_fixed_cost_of_5_10_and_15_classes():
    base = CostTable(Toy(), T).fingerprint()
    for k in (5, 10, 15):
        other = type("F", (Toy,), {"fixed_ms": lambda self, nc=5, k=k: nc / 2 + (nc == k)})()
        assert CostTable(other, T).fingerprint() != base, k


def test_load_cost_madds_and_a_target_of_another_space(tmp_path, monkeypatch):
    import json

    from edgeeas.errors import EdgeeasUsageError
    from edgeeas.latency.fit import Fit
    from edgeeas.search.cost import load_cost
    from edgeeas.targets import TargetStore

    assert load_cost(T, madds=True)[1] == "madds" and isinstance(load_cost(T, "madds")[0], MaddsCost)
    with pytest.raises(EdgeeasUsageError, match="give a latency target"):
        load_cost(T)
    monkeypatch.setenv("EDGEEAS_TARGETS", str(tmp_path))
    with pytest.raises(CostModelError, match="has no latency table"):
        load_cost(T, "nowhere")
    rows = {"stem": 0.1, "head_k5": 0.2, "head_k10": 0.3}
    for spec in T.block_specs(T.largest()):
        for e in T.expands:
            for k in T.kernels:
                rows[f"ir_h{spec.h}_i{spec.cin}_o{spec.cout}_e{e}_k{k}_s{spec.stride}" + ("_r" if spec.residual else "")] = 1.0
    store = TargetStore.named("tiny", tmp_path)
    store.directory.mkdir(parents=True)
    for space, ok in ((T.with_num_classes(5), True), (SearchSpace(name="t", resolution=8, stem_channels=4,
                                                                  stages=T.stages, depths=T.depths, expands=T.expands,
                                                                  kernels=T.kernels, head_channels=4), False)):
        store.predictor_path.write_text(json.dumps({"space": space.to_dict(), "rows": rows, "fit": Fit().to_dict()}))
        if ok:
            pred, name = load_cost(T, "tiny")
            assert name == "tiny" and pred.predict(T.smallest()) == pytest.approx(0.1 + 0.2 + 2.0)
        else:
            with pytest.raises(CostModelError, match="is for search space 't', the supernet uses 't'"):
                load_cost(T, "tiny")


def test_repair_shrinks_a_kernel_when_nothing_else_is_left():
    c = CostTable(Toy(), T)
    g = Genome([0, 0], [[0, 0], [0, 0]], [[1, 1], [1, 1]])   # d(1,1), expand 1, kernel 3: 13 + 1013 + 2.5
    r = c.repair(g, 1027.0)                                   # a kernel 3 -> 1 saves 2
    assert r == Genome([0, 0], [[0, 0], [0, 0]], [[0, 1], [1, 1]]) and c.genome_cost(r) == 1026.5


def test_repair_with_logp_weighs_the_expand_loss():
    c = CostTable(Toy(), T)
    logp = _logp()
    logp[0][:, 1] = 100.0
    logp[1][:, :, 1] = 100.0        # the generator wants expand 2: an expand move loses 100 for 10 saved
    r = c.repair(MAX, MAX_COST - 1, logp=logp)   # kernel moves lose nothing: one of them (2 saved) goes
    assert r.e == MAX.e and r.d == MAX.d and c.genome_cost(r) == MAX_COST - 2
