"""edgeeas.space against hand-computed values (fast: run once per mutant by ``make mutate``)."""
from __future__ import annotations

import random

import pytest

from edgeeas.space import DEFAULT_SPACE, Arch, ArchError, BlockSpec, SearchSpace, Stage

S = DEFAULT_SPACE


@pytest.mark.parametrize("kw", [
    dict(stages=(Stage(0, 1),)), dict(stages=(Stage(8, 3),)), dict(stages=(Stage(8, 0),)),
    dict(depths=()), dict(depths=(3, 2)), dict(depths=(2, 2)), dict(depths=(0, 2)), dict(depths=(2, 10)),
    dict(expands=(4, 3)), dict(kernels=(3, 4)), dict(kernels=(2,)),
])
def test_bad_tables_are_refused(kw):
    with pytest.raises(ValueError):
        SearchSpace(**kw)


def test_boundary_tables_are_accepted():
    sp = SearchSpace(stages=(Stage(1, 1), Stage(2, 2)), depths=(1, 9), expands=(1,), kernels=(1, 9))
    assert sp.num_stages == 2 and sp.max_depth == 9


def test_head_size_and_same_body():
    assert S.with_num_classes(100) is S
    ten = S.with_num_classes(10)
    assert ten.num_classes == 10 and S.num_classes == 100 and ten.stages == S.stages
    assert S.with_num_classes(2).num_classes == 2
    with pytest.raises(ValueError):
        S.with_num_classes(1)
    assert S.same_body(ten) and ten.same_body(S) and S.same_body(S)
    assert not S.same_body(SearchSpace(head_channels=128))
    assert not S.same_body("edgeeas-c32-v1")


def test_to_dict_by_hand_and_back():
    d = S.to_dict()
    assert d == {"name": "edgeeas-c32-v1", "resolution": 32, "in_channels": 3, "stem_channels": 16, "stem_stride": 1,
                 "stages": [[16, 2], [24, 2], [40, 2], [56, 1], [80, 1]], "head_channels": 256, "num_classes": 100,
                 "depths": [2, 3, 4], "expands": [3, 4, 6], "kernels": [3, 5, 7]}
    before = dict(d)
    assert SearchSpace.from_dict(d) == S and d == before


def test_named_architectures():
    assert str(S.smallest()) == "d22222-k3333333333-e3333333333"
    assert str(S.middle()) == "d33333-k" + "5" * 15 + "-e" + "4" * 15
    assert str(S.largest()) == "d44444-k" + "7" * 20 + "-e" + "6" * 20
    assert S.uniform(3, 6, 7) == Arch((3,) * 5, (7,) * 15, (6,) * 15)


def test_sample_draws_every_choice_and_is_seeded():
    rng = random.Random(0)
    archs = [S.sample(rng) for _ in range(200)]
    for a in archs:
        S.validate(a)
    assert {d for a in archs for d in a.depths} == {2, 3, 4}
    assert {k for a in archs for k in a.kernels} == {3, 5, 7}
    assert {e for a in archs for e in a.expands} == {3, 4, 6}
    assert [S.sample(random.Random(5)) for _ in range(2)] == [S.sample(random.Random(5))] * 2


@pytest.mark.parametrize("arch,msg", [
    (Arch((2, 2, 2, 2), (3,) * 8, (3,) * 8), "has 4 stages .* the search space edgeeas-c32-v1 has 5 stages"),
    (Arch((2, 2, 2, 2, 5), (3,) * 13, (3,) * 13), "depth digit 5 for stage 5 exceeds max 4"),
    (Arch((2,) * 5, (3,) * 9, (3,) * 10), r"need 10 kernel digits .* but 9 are given \(stage 5 lacks its block 2"),
    (Arch((2,) * 5, (3,) * 10, (3,) * 9), "need 10 expand digits .* but 9 are given"),
    (Arch((2,) * 5, (3,) * 9 + (9,), (3,) * 10), r"kernel digit 9 for stage 5 block 2 \(position 10\) .* not one of \[3, 5, 7\]"),
    (Arch((2,) * 5, (3,) * 10, (5,) + (3,) * 9), r"expand ratio digit 5 for stage 1 block 1 .* not one of \[3, 4, 6\]"),
])
def test_validate_names_the_first_bad_value(arch, msg):
    with pytest.raises(ArchError, match=msg):
        S.validate(arch)


def test_parse_strips_and_checks_counts():
    a = S.parse("  d22234-k3333333333355-e3333333333366 \n")
    assert a.depths == (2, 2, 2, 3, 4) and a.kernels[-2:] == (5, 5) and a.expands[-1] == 6
    assert a.blocks_per_stage()[3] == [(3, 3), (3, 3), (3, 3)]
    assert a.blocks_per_stage()[4] == [(3, 3), (5, 6), (5, 6), (3, 3)][:0] + [(3, 3), (3, 3), (5, 6), (5, 6)]
    with pytest.raises(ArchError, match="need 10 kernel and 10 expand digits .* gives 9 kernels and 10 expand"):
        Arch.parse("d22222-k333333333-e3333333333")
    with pytest.raises(ArchError, match="gives 10 kernels and 11 expand"):
        Arch.parse("d22222-k3333333333-e33333333333")
    with pytest.raises(ArchError, match="malformed"):
        Arch.parse("x22222-k3333333333-e3333333333")


def test_block_specs_of_the_smallest_arch_by_hand():
    got = [(b.stage, b.index, b.h, b.cin, b.cout, b.stride) for b in S.block_specs(S.smallest())]
    assert got == [(0, 0, 32, 16, 16, 2), (0, 1, 16, 16, 16, 1),
                   (1, 0, 16, 16, 24, 2), (1, 1, 8, 24, 24, 1),
                   (2, 0, 8, 24, 40, 2), (2, 1, 4, 40, 40, 1),
                   (3, 0, 4, 40, 56, 1), (3, 1, 4, 56, 56, 1),
                   (4, 0, 4, 56, 80, 1), (4, 1, 4, 80, 80, 1)]
    mixed = S.parse("d22222-k3573333333-e6433333333")
    specs = list(S.block_specs(mixed))
    assert [(b.kernel, b.expand) for b in specs[:3]] == [(3, 6), (5, 4), (7, 3)]


def test_final_resolution_rounds_up():
    assert S.final_resolution == 4
    odd = SearchSpace(resolution=7, stem_stride=2)        # 7 // 2 = 3 -> 2 -> 1 -> 1
    assert odd.final_resolution == 1
    assert SearchSpace(resolution=28).final_resolution == 4  # 28 -> 14 -> 7 -> 4
    assert [b.h for b in SearchSpace(resolution=28).block_specs(S.smallest())][:6] == [28, 14, 14, 7, 7, 4]


def test_one_block_counted_by_hand():
    b = BlockSpec(stage=1, index=0, h=16, cin=16, cout=24, expand=6, kernel=5, stride=2)
    assert b.mid == 96 and b.hout == 8 and not b.residual
    assert b.key == "ir_h16_i16_o24_e6_k5_s2"
    assert b.madds == 16 * 16 * 16 * 96 + 8 * 8 * 96 * 25 + 8 * 8 * 96 * 24 == 694272
    assert b.params == 16 * 96 + 2 * 96 + 96 * 25 + 2 * 96 + 96 * 24 + 2 * 24 == 6672
    r = BlockSpec(stage=3, index=1, h=4, cin=56, cout=56, expand=3, kernel=7, stride=1)
    assert r.residual and r.key == "ir_h4_i56_o56_e3_k7_s1_r" and r.hout == 4
    assert not BlockSpec(stage=3, index=0, h=4, cin=40, cout=56, expand=3, kernel=7, stride=1).residual
    assert not BlockSpec(stage=0, index=0, h=4, cin=16, cout=16, expand=3, kernel=3, stride=2).residual
    assert BlockSpec(stage=0, index=0, h=5, cin=16, cout=16, expand=3, kernel=3, stride=2).hout == 3


def test_stem_and_head_counted_by_hand():
    costs = list(S.layer_costs(S.smallest()))
    assert costs[0] == ("stem", 32 * 32 * 16 * 3 * 9, 16 * 3 * 9 + 2 * 16)
    assert costs[-1] == ("head", 4 * 4 * 256 * 80 + 256 * 100, 256 * 80 + 2 * 256 + 256 * 100 + 100)
    ten = list(S.layer_costs(S.smallest(), num_classes=10))[-1]
    assert ten == ("head", 4 * 4 * 256 * 80 + 256 * 10, 256 * 80 + 2 * 256 + 256 * 10 + 10)
    assert len(costs) == 12
    assert S.madds(S.smallest()) == sum(m for _, m, _ in costs)
    assert S.params(S.smallest(), 10) == sum(p for _, _, p in S.layer_costs(S.smallest(), 10))
    assert S.params(S.smallest()) - S.params(S.smallest(), 10) == 256 * 90 + 90
    with pytest.raises(ArchError):
        S.madds(Arch((2,) * 4, (3,) * 8, (3,) * 8))
