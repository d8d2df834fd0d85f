"""Elastic supernet: static subnets compute exactly what the supernet computes."""
import random

import pytest
import torch

from edgeeas.nn.supernet import Supernet
from edgeeas.space import DEFAULT_SPACE as S


@pytest.fixture(scope="module")
def net():
    """A supernet whose BN statistics and kernel transforms are not at their initial values."""
    torch.manual_seed(0)
    net = Supernet(S)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "transforms" in name:
                p.add_(0.05 * torch.randn_like(p))
            elif "bn" in name and name.endswith("weight"):
                p.uniform_(0.5, 1.5)
    net.train()
    r = random.Random(0)
    with torch.no_grad():
        for _ in range(6):
            net.set_active(S.sample(r))
            net(torch.randn(16, 3, 32, 32))
        net.set_largest()
        net(torch.randn(16, 3, 32, 32))
    return net.eval()


def _archs():
    r = random.Random(42)
    return [S.smallest(), S.middle(), S.largest()] + [S.sample(r) for _ in range(25)]


@pytest.mark.parametrize("arch", _archs(), ids=str)
def test_static_subnet_matches_supernet(net, arch):
    x = torch.randn(4, 3, 32, 32)
    net.set_active(arch)
    with torch.no_grad():
        want = net(x)
        sub = net.get_active_subnet().eval()
        got = sub(x)
    assert sub.arch == arch
    assert not any("transforms" in n for n, _ in sub.named_parameters())
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_subnet_is_independent_of_supernet(net):
    sub = net.subnet(S.middle())
    before = [p.clone() for p in sub.parameters()]
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    try:
        assert all(torch.equal(a, b) for a, b in zip(before, sub.parameters()))
    finally:
        with torch.no_grad():
            for p in net.parameters():
                p.sub_(1.0)


def test_sort_channels_keeps_the_largest_function():
    torch.manual_seed(1)
    net = Supernet(S).eval()
    with torch.no_grad():
        for blk in (b for st in net.stages for b in st):
            blk.project_bn.weight.uniform_(0.5, 1.5)
            blk.expand_bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 3, 32, 32)
    net.set_largest()
    with torch.no_grad():
        before = net(x)
        net.sort_channels()
        after = net(x)
        imp = net.stages[0][1].project.conv.weight.abs().sum(dim=(0, 2, 3))
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)
    assert torch.all(imp[:-1] >= imp[1:])


def test_restricted_head_keeps_rows(net):
    sub = net.subnet(S.smallest()).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        full = sub(x)
        cls = [95, 4, 30]
        sub.restrict_head(cls)
        part = sub(x)
    torch.testing.assert_close(part, full[:, cls])
    assert sub.classes == cls
