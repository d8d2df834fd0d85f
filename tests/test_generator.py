"""The generator: a few real training steps on the tiny supernet, budgets it follows, files,
resume, and the two CLI commands end to end."""
from __future__ import annotations

import json
import copy
import random

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from edgeeas.cli import main
from edgeeas.search import (GeneratorConfig, GeneratorError, MaddsCost, load_generator, save_generator,
                            train_generator)
from edgeeas.search.fitness import supernet_fingerprint
from edgeeas.space import DEFAULT_SPACE as SPACE

from test_search import ToyLatency


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: on a small loaded machine two threads per process thrash (20x slower)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

@pytest.fixture(scope="module")
def net(tiny_run):
    from edgeeas.checkpoint import load_supernet

    return load_supernet(tiny_run / "supernet.pt")[0]


@pytest.fixture(scope="module")
def budget_gen(net, cifar):
    """Trained on the budget term alone (accuracy weight 0): cheap, and it must learn to follow budgets."""
    return train_generator(net, cifar, MaddsCost(net.space),
                           GeneratorConfig(steps=250, acc_weight=0.0, cost_batch=32, checkpoint_every=0))


def test_a_few_real_steps_with_the_supernet_accuracy_term(net, cifar):
    before = supernet_fingerprint(net)
    g = train_generator(net, cifar, MaddsCost(net.space),
                        GeneratorConfig(steps=3, batch_size=12, cost_batch=4, checkpoint_every=0, accuracy="supernet"))
    hist = g.meta["history_tail"]
    assert len(hist) == 3
    assert all(np.isfinite(h["loss"]) and 0 < h["ce"] < 20 for h in hist)
    assert any(float(p.detach().abs().sum()) > 0 for p in g.model.net[-1].parameters())  # it moved off uniform
    assert supernet_fingerprint(net) == before  # the frozen supernet is untouched (BN stats too)


def test_the_accuracy_term_reaches_the_architecture_logits(net, cifar):
    """The GDAS-style scaling must carry a gradient from the supernet's loss to the choices."""
    from edgeeas.search.generator import _st_forward, _st_gumbel

    sn = copy.deepcopy(net).train().requires_grad_(False)
    gen = torch.Generator().manual_seed(0)
    S, D = SPACE.num_stages, SPACE.max_depth
    ld = torch.zeros(S, 3, requires_grad=True)
    le = torch.zeros(S, D, 3, requires_grad=True)
    lk = torch.zeros(S, D, 3, requires_grad=True)
    from edgeeas.evaluate import to_float

    x = to_float(cifar.train.images[:8])
    feats = _st_forward(sn, x, _st_gumbel(ld, 1.0, gen), _st_gumbel(le, 1.0, gen), _st_gumbel(lk, 1.0, gen), SPACE)
    torch.nn.functional.cross_entropy(sn.head(feats), torch.as_tensor(cifar.train.labels[:8])).backward()
    for t in (ld, le, lk):
        assert t.grad is not None and float(t.grad.abs().sum()) > 0


def test_higher_budget_gives_higher_cost(budget_gen):
    table = budget_gen.table
    lo, hi = table.bounds(5)
    fracs = [0.1, 0.5, 0.9]
    archs = budget_gen.generate([[2]] * 3, [lo + f * (hi - lo) for f in fracs], repair=False)
    costs = [table.arch_cost(a, 5) for a in archs]
    assert costs[0] < costs[1] < costs[2], costs
    # and it uses its budgets: mean utilization after repair over a grid
    bs = list(np.linspace(lo, hi, 21)[1:-1])
    util = [table.arch_cost(a, 5) / b for a, b in zip(budget_gen.generate([[7]] * len(bs), bs), bs)]
    assert max(util) <= 1 and np.mean(util) > 0.75, util


def test_argmax_and_repair_always_meet_the_budget(budget_gen):
    rng = random.Random(3)
    cost, table = MaddsCost(SPACE), budget_gen.table
    scen, budgets = [], []
    for _ in range(300):
        sc = sorted(rng.sample(range(20), rng.choice((1, 1, 2, 3))))
        lo, hi = table.bounds(5 * len(sc))
        scen.append(sc)
        budgets.append(rng.choice((lo, hi, rng.uniform(lo, hi), rng.uniform(lo, lo + 0.05 * (hi - lo)))))
    for sc, b, a in zip(scen, budgets, budget_gen.generate(scen, budgets)):
        assert cost.predict(a, 5 * len(sc)) <= b + 1e-12


def test_works_with_a_latency_cost_model(net, cifar):
    toy = ToyLatency()
    g = train_generator(net, cifar, toy, GeneratorConfig(steps=30, acc_weight=0.0, cost_batch=16, checkpoint_every=0),
                        cost_name="toy")
    assert g.meta["cost"]["kind"] == "latency" and g.meta["cost"]["name"] == "toy"
    lo, hi = g.table.bounds(5)
    for b in np.linspace(lo, hi, 7):
        assert toy.predict(g.generate([[0]], [b])[0]) <= b + 1e-12


def test_works_with_the_real_latency_predictor(net, cifar):
    """edgeeas.latency.LatencyPredictor on a synthetic table (no device needed)."""
    from edgeeas.latency import Fit, LatencyPredictor, table_rows
    from edgeeas.search import CostTable, load_cost

    rows = {r.key: 0.05 + 1e-4 * r.input_chw[0] * r.input_chw[1] ** 2 / 100 + (0.002 * r.block.kernel * r.block.expand
            if r.block else 0.0) for r in table_rows(SPACE)}
    pred = LatencyPredictor(SPACE, rows, Fit(0.2, 1.1, 0.01), target="synthetic")
    table = CostTable(pred, SPACE)
    rng = random.Random(0)
    for _ in range(50):
        a = SPACE.sample(rng)
        assert table.arch_cost(a, 5) == pytest.approx(pred.predict(a, 5))
    g = train_generator(net, cifar, pred, GeneratorConfig(steps=20, acc_weight=0.0, cost_batch=8, checkpoint_every=0))
    assert g.meta["cost"]["name"] == "synthetic"
    lo, hi = table.bounds(5)
    for b in np.linspace(lo, hi, 5):
        assert pred.predict(g.generate([[4]], [b])[0], 5) <= b + 1e-12


def test_save_load_and_refusals(budget_gen, net, cifar, tmp_path):
    path = tmp_path / "generator-madds.pt"
    save_generator(budget_gen, path)
    g = load_generator(path, net, MaddsCost(net.space), cifar)
    lo, hi = g.table.bounds(5)
    bs = list(np.linspace(lo, hi, 9))
    assert g.generate([[1]] * 9, bs) == budget_gen.generate([[1]] * 9, bs)
    with pytest.raises(GeneratorError, match="trained for cost model 'madds'.*not 'toy'") as e:
        load_generator(path, net, ToyLatency(), cifar, cost_name="toy")
    assert "\n" not in str(e.value)
    other = copy.deepcopy(net)
    with torch.no_grad():
        other.head.fc.bias.add_(0.01)
    with pytest.raises(GeneratorError, match="trained against another supernet") as e:
        load_generator(path, other, MaddsCost(net.space), cifar)
    assert "\n" not in str(e.value)
    # the same names and grouping, other content (an image replaced): refused, not reused
    import dataclasses

    changed = dataclasses.replace(cifar, fingerprint=cifar.fingerprint[::-1])
    with pytest.raises(GeneratorError, match="another content of dataset") as e:
        load_generator(path, net, MaddsCost(net.space), changed)
    assert "\n" not in str(e.value)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(GeneratorError, match="not a readable generator"):
        load_generator(tmp_path / "junk.pt", net, MaddsCost(net.space))
    with pytest.raises(GeneratorError, match="no generator at"):
        load_generator(tmp_path / "missing.pt", net, MaddsCost(net.space))


def test_resume_continues_bit_exactly(net, cifar, tmp_path, monkeypatch):
    import edgeeas.search.generator as G

    cfg = GeneratorConfig(steps=6, acc_weight=0.0, cost_batch=8, checkpoint_every=2)
    ref = train_generator(net, cifar, MaddsCost(net.space), cfg, out=tmp_path / "ref.pt")
    real, calls = G.expected_cost, {"n": 0}

    def dying(*a, **k):  # two calls per step: die inside step 5, after the checkpoint at step 4
        calls["n"] += 1
        if calls["n"] == 9:
            raise KeyboardInterrupt
        return real(*a, **k)

    out = tmp_path / "gen.pt"
    monkeypatch.setattr(G, "expected_cost", dying)
    with pytest.raises(KeyboardInterrupt):
        train_generator(net, cifar, MaddsCost(net.space), cfg, out=out)
    monkeypatch.setattr(G, "expected_cost", real)
    assert (tmp_path / "gen.pt.ckpt").exists() and not out.exists()
    with pytest.raises(GeneratorError, match="rerun with --resume"):
        train_generator(net, cifar, MaddsCost(net.space), cfg, out=out)
    g = train_generator(net, cifar, MaddsCost(net.space), cfg, out=out, resume=True)
    for a, b in zip(ref.model.state_dict().values(), g.model.state_dict().values()):
        assert torch.equal(a, b)
    assert out.exists() and not (tmp_path / "gen.pt.ckpt").exists()


def cifar_superclasses(data_path):
    from edgeeas.data import load_dataset
    return load_dataset(data_path).superclasses


# ---- CLI --------------------------------------------------------------------------------------
def test_cli_train_generator_and_search(tiny_run, data_path, tmp_path):
    run = CliRunner()
    out = tmp_path / "generator-madds.pt"
    args = ["train", "generator", "--supernet", str(tiny_run), "--madds", "--data", str(data_path), "--steps", "3",
            "--batch-size", "8", "--cost-batch", "4", "--out", str(out), "--quiet",
            "--predictor-samples", "4", "--val-images", "20"]
    r = run.invoke(main, args)
    assert r.exit_code == 0, r.output
    assert out.exists() and "generator written to" in r.output
    logged = yaml.safe_load((tmp_path / "generator-madds.pt.args.yaml").read_text())
    assert logged["config"]["steps"] == 3 and logged["cost"] == "madds"
    assert logged["config"]["accuracy"] == "predictor"
    recs = [json.loads(x) for x in next(tiny_run.glob("accuracy-*.jsonl")).read_text().splitlines()]
    assert len(recs) == 4 * 20 and {tuple(r["superclasses"]) for r in recs} == {(n,) for n in cifar_superclasses(data_path)}
    r = run.invoke(main, args)
    assert r.exit_code == 1 and "already exists; pass --overwrite" in r.output
    for bad, code, msg in ((["--target", "host", "--madds"], 2, "exactly one of"), ([], 2, "exactly one of"),
                           (["--target", "nosuch"], 1, "no latency table")):
        a = [x for x in args if x != "--madds"] + bad
        r = run.invoke(main, a)
        assert r.exit_code == code and msg in r.output, r.output

    base = ["search", "--supernet", str(tiny_run), "--data", str(data_path), "--superclass", "vehicles_1",
            "--recal-images", "32", "--val-images", "20"]
    r = run.invoke(main, base + ["-s", "generator", "--budget", "9M", "--generator", str(out), "--json"])
    assert r.exit_code == 0, r.output


    res = json.loads(r.output[r.output.index("{"):])
    assert res["predicted_cost"] <= 9.0 and res["strategy"] == "generator" and 0 <= res["heldout_accuracy"] <= 100
    r = run.invoke(main, base + ["-s", "uniform", "--budget", "9M"])
    assert r.exit_code == 0, r.output
    assert "architecture:" in r.output and "search time:" in r.output and "held-out accuracy:" in r.output
    for budget, code, msg in (("20", 2, "ambiguous"), ("1M", 2, "feasible range 4.84M..24.31M"),
                              ("0.02s", 2, "write 20ms")):
        r = run.invoke(main, base + ["-s", "uniform", "--budget", budget])
        assert r.exit_code == code and msg in r.output, r.output
        assert "Traceback" not in r.output
