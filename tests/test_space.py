"""Search space: architecture strings, validation, exact MAdds and parameter counts."""
import random

import pytest
import torch

from edgeeas.space import DEFAULT_SPACE as S, Arch, ArchError, SearchSpace


def _archs(n=30, seed=0):
    r = random.Random(seed)
    return [S.smallest(), S.middle(), S.largest()] + [S.sample(r) for _ in range(n)]


@pytest.mark.parametrize("arch", _archs(), ids=str)
def test_string_round_trip_and_hash(arch):
    text = str(arch)
    back = S.parse(text)
    assert back == arch and hash(back) == hash(arch) and str(back) == text
    assert all(c.isalnum() or c == "-" for c in text)  # usable as a file name and a table key


@pytest.mark.parametrize("text,msg", [
    ("", "malformed architecture"),
    ("d22222-k333-e333", "need 10 kernel digits (stage 1: 2, stage 2: 2, stage 3: 2, stage 4: 2, stage 5: 2) "
                         "but 3 are given (stage 2 lacks its block 2 onwards)"),
    ("d2222-k33333333-e33333333", "has 4 stages (depth digits d2222) but the search space edgeeas-c32-v1 has 5 stages"),
    ("d22229-k" + "3" * 17 + "-e" + "3" * 17, "depth digit 9 for stage 5 exceeds max 4"),
    # a fresh user's typo: one depth too big; the error names it, not a block count
    ("d23453-k3573557355735-e3463463463463", "depth digit 5 for stage 4 exceeds max 4"),
    ("d13423-k3573557355735-e3463463463463", "depth digit 1 for stage 1 is below min 2"),
    ("d23423-k3573557355735-e3463463463463", "need 14 kernel digits (stage 1: 2, stage 2: 3, stage 3: 4, "
                                             "stage 4: 2, stage 5: 3) but 13 are given (stage 5 lacks its block 3"),
    ("d22222-k3333333334-e3333333333", "kernel digit 4 for stage 5 block 2 (position 10)"),
    ("d22222-k3333333333-e3333333335", "expand ratio digit 5 for stage 5 block 2"),
    ("x", "malformed architecture 'x': expected d<5 depth digits, one per stage, each in [2, 3, 4]>"),
])
def test_bad_strings_name_the_problem(text, msg):
    with pytest.raises(ArchError) as ei:
        S.parse(text)
    assert msg in str(ei.value) and "\n" not in str(ei.value)
    assert "e.g. d22222-k3333333333-e3333333333" in str(ei.value)  # the expected form, with an example


def test_extremes_fit_the_cpu_budget():
    assert 15e6 <= S.madds(S.largest()) <= 30e6
    assert S.madds(S.smallest()) < 5e6
    assert S.madds(S.smallest()) < S.madds(S.middle()) < S.madds(S.largest())


def _hook_madds(model, x):
    total = 0

    def conv_hook(m, inp, out):
        nonlocal total
        k = m.kernel_size[0] * m.kernel_size[1]
        total += out.numel() // out.shape[0] * (m.in_channels // m.groups) * k

    def fc_hook(m, inp, out):
        nonlocal total
        total += m.in_features * m.out_features

    hs = [m.register_forward_hook(conv_hook) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    hs += [m.register_forward_hook(fc_hook) for m in model.modules() if isinstance(m, torch.nn.Linear)]
    model.eval()
    with torch.no_grad():
        model(x)
    for h in hs:
        h.remove()
    return total


@pytest.mark.parametrize("arch", _archs(8, seed=1), ids=str)
def test_counts_are_exact(arch):
    from edgeeas.nn.supernet import Supernet

    net = Supernet(S)
    sub = net.subnet(arch)
    assert S.params(arch) == sum(p.numel() for p in sub.parameters())
    assert S.madds(arch) == _hook_madds(sub, torch.zeros(1, 3, 32, 32))
    sub.restrict_head([4, 30, 55, 72, 95])
    assert S.params(arch, num_classes=5) == sum(p.numel() for p in sub.parameters())


def test_space_serializes_and_rejects_bad_tables():
    assert SearchSpace.from_dict(S.to_dict()) == S
    with pytest.raises(ValueError, match="stride 1 or 2"):
        SearchSpace.from_dict({**S.to_dict(), "stages": [[16, 3]] * 5})
    with pytest.raises(ValueError, match="kernels must be odd"):
        SearchSpace.from_dict({**S.to_dict(), "kernels": [3, 4]})


def test_block_specs_in_context():
    specs = list(S.block_specs(S.largest()))
    assert len(specs) == 20 and specs[0].h == 32 and specs[0].stride == 2 and not specs[0].residual
    assert specs[1].residual and specs[1].key.endswith("_r")
    assert len({s.key for s in specs}) < len(specs)  # blocks after the first of a stage share a context
