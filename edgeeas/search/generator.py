"""The architecture generator: (superclasses, budget) -> architecture in one forward pass.

**Model.** An MLP maps a multi-hot superclass vector and the budget, normalized to [0, 1]
over the feasible range of the cost model for that scenario's head, to logits for every
decision: depth per stage (3 options), expand and kernel per slot (3 options each, 5 stages x 4
slots; slots beyond a stage's depth are ignored).

**Training** (:func:`train_generator`), one readable loop, every step seeded by (seed, step):

1. Draw a scenario (one superclass, sometimes 2-3) and a budget uniform in its feasible range,
   plus ``cost_batch`` more scenarios for the budget term only (they cost no network forward).
2. Sample a straight-through Gumbel-softmax one-hot per decision: forward value exactly one-hot
   (the sampled architecture), backward the softmax's gradient.
3. Accuracy term: cross-entropy of the frozen supernet on a batch of the scenario's training
   images (its held-out part excluded), head restricted to the scenario's classes.  It is made
   differentiable in the architecture GDAS-style: only the sampled path is computed, and each
   block's contribution is scaled by its straight-through weights, which are 1.0 forward::

       residual block:      x <- x + a_b * w_e * w_k * (block(x) - x)
       first block of stage: x <- w_e * w_k * block(x)

   ``w_e``/``w_k`` are the sampled options' one-hot entries, ``a_b`` = sum of the depth one-hot
   over depths that keep slot ``b`` (1 or 0 forward).  Slots beyond the sampled depth are still
   computed (with ``a_b`` = 0 they leave ``x`` unchanged) so that dL/da_b, the linearised gain
   of making the stage deeper, reaches the deeper depth options; their expand and kernel get no
   gradient (multiplied by a_b = 0).  The supernet's BN layers run in train mode on the batch's
   statistics (half the scenario's images, half any superclass's, as BN saw in training; the
   loss is on the scenario's half), with no stale running statistics; it works on a private copy, so the caller's
   supernet is never modified.
4. Budget term, differentiable and exact in expectation: with the softmax probabilities
   ``p``, E[cost] = fixed + sum_{s,b} P(slot b active) * p_e^T C[s,b] p_k, where C is the cost
   table (:class:`~edgeeas.search.cost.CostTable`).  With r = E[cost] / budget the penalty is
   ``lat_weight * relu(r - 1) + util_weight * relu(1 - r)``: steep above the budget, gentle
   below (so the generator spends its budget rather than undershooting).
5. Adam on the generator only; Gumbel temperature annealed from ``tau_start`` to ``tau_end``.

**Inference** (:meth:`Generator.generate`): one batched forward pass, argmax per decision, and a
repair step (:meth:`CostTable.repair`) that shrinks the choice losing the least
log-probability per unit of cost saved until the predicted cost fits, so every output meets
its budget.

A saved generator (``generator-<target>.pt``) records the supernet's fingerprint, the space,
the cost model's identity (name and table fingerprint) and the superclass names; loading it
against anything else is a one-line error.
"""
from __future__ import annotations

import copy
import csv
import math
import os
import random
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import EdgeeasError
from ..space import Arch, SearchSpace
from ..utils import atomic_torch_save, atomic_write_text, command_line, versions
from .cost import CostTable, Genome, cost_identity
from .fitness import Evaluator, supernet_fingerprint

__all__ = ["GeneratorConfig", "ArchGenerator", "Generator", "GeneratorError", "train_generator",
           "predictor_accuracy_model",
           "load_generator", "save_generator", "FORMAT"]

FORMAT = "edgeeas-generator/1"
PRED_SCALE = 20.0  # predictor term: accuracy fraction -> loss units (see train_generator)


class GeneratorError(EdgeeasError):
    """A generator file is missing, unreadable, or made for another supernet / target."""


@dataclass
class GeneratorConfig:
    """Options of :func:`train_generator` (``edgeeas train generator`` sets them): steps and
    batch sizes, Adam learning rate, MLP width, the accuracy term (``predictor`` or
    ``supernet``) and the weights of the loss terms, the Gumbel-softmax temperature schedule
    (``tau_start`` -> ``tau_end``), the ablation switch ``blind``, seed, checkpoint period (steps)
    and torch threads (0: torch's default)."""

    steps: int = 2000
    batch_size: int = 48           # images per step for the accuracy term
    cost_batch: int = 64           # extra scenarios per step for the budget term only
    lr: float = 2e-3
    hidden: int = 256
    accuracy: str = "predictor"    # "predictor" (every scenario of a step) or "supernet" (one scenario's CE)
    acc_weight: float = 1.0        # weight of the accuracy term (0: the budget term alone)
    lat_weight: float = 10.0
    util_weight: float = 1.0
    tau_start: float = 2.0
    tau_end: float = 0.3
    multi_prob: float = 0.2        # share of scenarios with 2-3 superclasses
    blind: bool = False            # ablation: the superclass input is zeroed (a superclass-blind generator)
    seed: int = 0
    checkpoint_every: int = 100
    threads: int = 0
    val_images: int = 500          # held-out training images per superclass (not trained on)


class ArchGenerator(nn.Module):
    """MLP: (multi-hot superclasses (B,n), budget in [0,1] (B,)) -> logits of every decision:
    depth (B,S,nd), expand (B,S,D,ne), kernel (B,S,D,nk).  ``blind`` zeroes the superclass input
    (an ablation: the same generator without conditioning)."""

    def __init__(self, space: SearchSpace, n_superclasses: int, hidden: int = 256, blind: bool = False):
        super().__init__()
        self.blind = blind
        self.S, self.D = space.num_stages, space.max_depth
        self.nd, self.ne, self.nk = len(space.depths), len(space.expands), len(space.kernels)
        self.n_superclasses = n_superclasses
        out = self.S * self.nd + self.S * self.D * (self.ne + self.nk)
        self.net = nn.Sequential(nn.Linear(n_superclasses + 1, hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, out))
        nn.init.zeros_(self.net[-1].weight)  # start from uniform choices
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, multi_hot: torch.Tensor, budget01: torch.Tensor):
        """``multi_hot`` ``[B, n_superclasses]`` and ``budget01`` ``[B]`` (the budget scaled to the
        target's feasible range, 0 = cheapest, 1 = dearest) -> the unnormalized logits
        ``(depth [B,S,nd], expand [B,S,D,ne], kernel [B,S,D,nk])``."""
        if self.blind:
            multi_hot = torch.zeros_like(multi_hot)
        z = self.net(torch.cat([multi_hot, 2 * budget01[:, None] - 1], 1))
        B, S, D = z.shape[0], self.S, self.D
        i = S * self.nd
        ld = z[:, :i].view(B, S, self.nd)
        le = z[:, i:i + S * D * self.ne].view(B, S, D, self.ne)
        lk = z[:, i + S * D * self.ne:].view(B, S, D, self.nk)
        return ld, le, lk


def expected_cost(table_t: torch.Tensor, active: torch.Tensor, fixed: torch.Tensor, pd, pe, pk) -> torch.Tensor:
    """E[cost] (B,) under per-decision probabilities ``pd`` (B,S,nd), ``pe`` (B,S,D,ne) and
    ``pk`` (B,S,D,nk); exact, since a cost is a sum over slots.  With one-hots it is the cost
    of that architecture."""
    p_active = pd @ active                                    # B,S,D
    block = torch.einsum("bsde,sdek,bsdk->bsd", pe, table_t, pk)
    return fixed + (p_active * block).sum((1, 2))


class Generator:
    """A trained :class:`ArchGenerator` with its cost table: scenarios -> architectures."""

    def __init__(self, model: ArchGenerator, space: SearchSpace, table: CostTable, superclasses: list[str],
                 classes_per_superclass: list[int], meta: dict | None = None):
        self.model, self.space, self.table = model.eval(), space, table
        self.superclasses = list(superclasses)
        self.classes_per_superclass = list(classes_per_superclass)
        self.meta = meta or {}

    def _inputs(self, scenarios: list[list[int]], budgets: list[float]):
        n = len(scenarios)
        mh = torch.zeros(n, len(self.superclasses))
        b01 = torch.zeros(n)
        for i, (sc, b) in enumerate(zip(scenarios, budgets)):
            mh[i, list(sc)] = 1
            lo, hi = self.table.bounds(self._nc(sc))
            b01[i] = min(max((b - lo) / max(hi - lo, 1e-12), 0.0), 1.0)
        return mh, b01

    def _nc(self, sc) -> int:
        return sum(self.classes_per_superclass[s] for s in sc)

    @torch.no_grad()
    def generate(self, scenarios: list[list[int]], budgets: list[float], repair: bool = True) -> list[Arch]:
        """One forward pass for all scenarios (superclass ids, budget in the cost unit), argmax,
        then the repair step, so every architecture's predicted cost is <= its budget."""
        mh, b01 = self._inputs(scenarios, budgets)
        ld, le, lk = self.model(mh, b01)
        lpd, lpe, lpk = ld.log_softmax(-1).numpy(), le.log_softmax(-1).numpy(), lk.log_softmax(-1).numpy()
        d, e, k = lpd.argmax(-1), lpe.argmax(-1), lpk.argmax(-1)
        out = []
        for i, sc in enumerate(scenarios):
            g = Genome(d[i].tolist(), e[i].tolist(), k[i].tolist())
            if repair:
                g = self.table.repair(g, budgets[i], self._nc(sc), logp=(lpd[i], lpe[i], lpk[i]))
            out.append(g.to_arch(self.space))
        return out


# ---- training -----------------------------------------------------------------------------
def _st_gumbel(logits: torch.Tensor, tau: float, gen: torch.Generator) -> torch.Tensor:
    """Straight-through Gumbel-softmax with seeded noise: one-hot forward, soft gradient."""
    u = torch.rand(logits.shape, generator=gen).clamp_(1e-10, 1 - 1e-10)
    soft = ((logits - torch.log(-torch.log(u))) / tau).softmax(-1)
    hard = F.one_hot(soft.argmax(-1), soft.shape[-1]).to(soft.dtype)
    return hard - soft.detach() + soft


def _st_forward(net, x: torch.Tensor, wd, we, wk, space: SearchSpace) -> torch.Tensor:
    """The supernet's features along the sampled path, each block scaled by its ST weights."""
    x = net.stem(x)
    for s, stage in enumerate(net.stages):
        for b, blk in enumerate(stage):
            a = sum(wd[s, i] for i, d in enumerate(space.depths) if d > b)
            ei, ki = int(we[s, b].argmax()), int(wk[s, b].argmax())
            blk.set_active(space.expands[ei], space.kernels[ki])
            y = blk(x)
            w = we[s, b, ei] * wk[s, b, ki]
            x = x + (a * w) * (y - x) if blk.residual else (a * w) * y
    return x


def _scenario(rng: random.Random, table: CostTable, n_sup: int, cps: list[int], multi_prob: float):
    sizes = [k for k in (2, 3) if k <= n_sup]  # a dataset of 2 superclasses has no 3-superclass scenario
    k = 1 if not sizes or rng.random() >= multi_prob else rng.choice(sizes)
    sc = sorted(rng.sample(range(n_sup), k))
    nc = sum(cps[s] for s in sc)
    lo, hi = table.bounds(nc)
    return sc, nc, rng.uniform(lo, hi)


def predictor_accuracy_model(predictor, table: CostTable):
    """An accuracy model for :func:`train_generator` from an :class:`AccuracyPredictor` (trained on
    measured subnets, superclasses as input): ``(multi_hot, wd, we, wk) -> (B,)`` predicted
    accuracy fraction, differentiable in the decision weights (:func:`soft_encode`)."""
    from .fitness import soft_encode

    active = torch.as_tensor(table.active, dtype=torch.float32)
    predictor = predictor.eval()
    predictor.requires_grad_(False)

    def model(multi_hot, wd, we, wk):
        return predictor(soft_encode(wd, we, wk, multi_hot, active))
    return model


def train_generator(supernet, ds, cost, cfg: GeneratorConfig | None = None, *, cost_name: str | None = None,
                    out: str | os.PathLike | None = None, resume: bool = False, progress: bool = False,
                    log=None, accuracy_model=None, accuracy_identity: dict | None = None) -> Generator:
    """Train a generator for ``cost`` against the frozen ``supernet`` on ``ds``'s superclasses.

    The accuracy term (``cfg.accuracy``):

    * ``"predictor"`` (default): ``accuracy_model(multi_hot, wd, we, wk) -> (B,)`` accuracy
      fractions, differentiable in the straight-through decision weights (e.g.
      :func:`predictor_accuracy_model` of an accuracy predictor fitted on measured held-out
      accuracies per superclass).  Every scenario of a step (``1 + cost_batch``, across all
      superclasses) gets an accuracy gradient, so the superclass input is trained at every step.
      ``accuracy_identity`` (e.g. the predictor data's key) is recorded in the generator file.
    * ``"supernet"``: the frozen supernet's cross-entropy on a batch of one scenario's training
      images per step, GDAS-style (the method up to edgeeas 0.1).  Measured on the shipped
      supernet, its superclass input barely mattered: one noisy single-sample gradient per step for
      one superclass, against a budget term over 65 scenarios (see ``benchmarks/bench_generator.py``).

    With ``out``, checkpoints ``<out>.ckpt`` atomically every ``cfg.checkpoint_every`` steps (a
    rerun with ``resume=True`` continues the same step sequence) and writes the generator to
    ``out`` at the end.  A zero accuracy weight trains on the budget term alone.

    Raises:
        GeneratorError: unknown ``cfg.accuracy``, predictor mode without an accuracy model, a
            checkpoint of another run, or divergence.
    """
    cfg = cfg or GeneratorConfig()
    if cfg.accuracy not in ("predictor", "supernet"):
        raise GeneratorError(f"unknown generator accuracy term {cfg.accuracy!r}; expected 'predictor' or 'supernet'")
    use_pred = cfg.accuracy == "predictor" and cfg.acc_weight > 0
    use_ce = cfg.accuracy == "supernet" and cfg.acc_weight > 0
    if use_pred and accuracy_model is None:
        raise GeneratorError("the predictor accuracy term needs an accuracy model (measured subnets); "
                             "use `edgeeas train generator`, which measures them, or --accuracy supernet")
    log = log or (lambda m: None)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    space = supernet.space
    table = CostTable(cost, space)
    ident = cost_identity(cost, space, cost_name)
    net_fp = supernet_fingerprint(supernet)
    n_sup = ds.num_superclasses
    cps = [len(ds.classes_of(s)) for s in range(n_sup)]
    torch.manual_seed(cfg.seed)
    model = ArchGenerator(space, n_sup, cfg.hidden, blind=cfg.blind)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    start, history = 0, []
    identity = {"supernet_fingerprint": net_fp, "cost": ident, "superclasses": list(ds.superclasses),
                "space": space.to_dict()}
    acc_ident = {"accuracy": cfg.accuracy, **(accuracy_identity or {})}
    ckpt = Path(f"{out}.ckpt") if out else None
    if ckpt is not None and ckpt.exists():
        if not resume:
            raise GeneratorError(f"an unfinished generator run is at {ckpt}: rerun with --resume, or delete it")
        ck = _load(ckpt, "generator checkpoint")
        for key, want in {**identity, "accuracy_identity": acc_ident}.items():
            if ck.get(key) != want:
                raise GeneratorError(f"{ckpt} was started with another {key.replace('_', ' ')}; delete it to start over")
        model.load_state_dict(ck["state_dict"])
        opt.load_state_dict(ck["optimizer"])
        start, history = int(ck["step"]), list(ck.get("history", []))
        log(f"resuming {ckpt} at step {start}/{cfg.steps}")

    # A private frozen copy: BN runs on batch statistics and must not touch the caller's net.
    net = None
    evaluator = Evaluator(supernet, ds, val_images=cfg.val_images, seed=cfg.seed)
    pools = {}
    if use_ce:
        net = copy.deepcopy(supernet).train()
        net.requires_grad_(False)
    table_t = torch.as_tensor(table.table, dtype=torch.float32)
    active = torch.as_tensor(table.active, dtype=torch.float32)

    def save_ckpt(step: int) -> None:
        if ckpt is not None:
            atomic_torch_save({"format": FORMAT + "-ckpt", **identity, "accuracy_identity": acc_ident,
                               "state_dict": model.state_dict(),
                               "optimizer": opt.state_dict(), "step": step, "config": asdict(cfg),
                               "history": history}, ckpt)
            _write_history(Path(f"{out}.csv"), history)

    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=cfg.steps, initial=start, desc="generator", unit="step", dynamic_ncols=True)
    t0 = time.time()
    model.train()
    for step in range(start, cfg.steps):
        rng = random.Random(f"{cfg.seed}:generator:{step}")
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        frac = step / max(cfg.steps - 1, 1)
        tau = cfg.tau_start * (cfg.tau_end / cfg.tau_start) ** frac
        scen = [_scenario(rng, table, n_sup, cps, cfg.multi_prob) for _ in range(1 + cfg.cost_batch)]
        mh = torch.zeros(len(scen), n_sup)
        b01 = torch.zeros(len(scen))
        budgets = torch.zeros(len(scen))
        fixed = torch.zeros(len(scen))
        for i, (sc, nc, b) in enumerate(scen):
            mh[i, sc] = 1
            lo, hi = table.bounds(nc)
            b01[i] = (b - lo) / max(hi - lo, 1e-12)
            budgets[i], fixed[i] = b, table.fixed(nc)
        ld, le, lk = model(mh, b01)
        # Budget term on the expected cost, and on the cost of the sampled architectures
        # (straight-through), which as tau falls approach the argmax that inference emits.
        wd, we, wk = (_st_gumbel(t, tau, gen) for t in (ld, le, lk))
        r = expected_cost(table_t, active, fixed, ld.softmax(-1), le.softmax(-1), lk.softmax(-1)) / budgets
        rs = expected_cost(table_t, active, fixed, wd, we, wk) / budgets
        lat = sum((cfg.lat_weight * F.relu(q - 1) + cfg.util_weight * F.relu(1 - q)).mean() for q in (r, rs)) / 2
        ce = torch.zeros(())
        pred_acc = torch.zeros(())
        if use_pred:
            # Predicted accuracy of every sampled architecture for its own scenario.
            pred_acc = accuracy_model(mh, wd, we, wk).mean()
        if use_ce:
            sc, nc, _ = scen[0]
            key = tuple(sc)
            if key not in pools:
                pools[key] = evaluator.fit_indices(sc)
            if "all" not in pools:
                pools["all"] = evaluator.fit_indices(list(range(n_sup)))
            np_rng = np.random.default_rng([cfg.seed, step])
            # Half the batch is the scenario's images (the loss), half any superclass's: BN runs on
            # batch statistics, and the supernet's BN learned mixed-superclass batches (statistics
            # of one superclass alone cost 3-12 points of accuracy on the shipped supernet).
            n_sc = min(max(1, cfg.batch_size // 2), len(pools[key]))
            idx_sc = np_rng.choice(pools[key], n_sc, replace=False)
            idx = np.concatenate([idx_sc, np_rng.choice(pools["all"], cfg.batch_size - n_sc, replace=False)])
            from ..train import augment

            x = augment(ds.train.images[idx], np_rng)
            classes = evaluator.classes(sc)
            y = torch.as_tensor(np.searchsorted(classes, ds.train.labels[idx_sc]))
            feats = _st_forward(net, x, wd[0], we[0], wk[0], space)
            logits = net.head(feats)[:n_sc, classes]
            ce = F.cross_entropy(logits, y)
        # Predictor: -acc_weight * PRED_SCALE * accuracy fraction, so that 5 points of accuracy weigh
        # as much as 10 % over budget (lat_weight 10).  Supernet: acc_weight * cross-entropy.
        loss = cfg.acc_weight * (ce if use_ce else -PRED_SCALE * pred_acc if use_pred else 0.0) + lat
        if not torch.isfinite(loss):
            raise GeneratorError(f"generator training diverged at step {step} (loss {loss.item()}); "
                                 f"try a smaller --lr")
        opt.zero_grad()
        loss.backward()
        opt.step()
        rec = {"step": step + 1, "loss": round(loss.item(), 5), "ce": round(ce.item(), 5),
               "pred_acc": round(100 * pred_acc.item(), 3),
               "ratio": round(r.mean().item(), 4), "over": round((r > 1).float().mean().item(), 4),
               "tau": round(tau, 4)}
        history.append(rec)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(**({"pred_acc": f"{rec['pred_acc']:.2f}"} if use_pred else {"ce": f"{rec['ce']:.3f}"}),
                            ratio=f"{rec['ratio']:.3f}")
        if cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.steps:
            save_ckpt(step + 1)
    if bar is not None:
        bar.close()
    model.eval()
    meta = {"config": asdict(cfg), "steps_done": cfg.steps, "seconds": round(time.time() - t0, 1),
            "history_tail": history[-20:], "versions": versions(), "command": command_line(),
            "dataset": ds.name, "dataset_fingerprint": ds.fingerprint, "classes_per_superclass": cps}
    meta["accuracy_identity"] = acc_ident
    g = Generator(model, space, table, list(ds.superclasses), cps, {**identity, **meta})
    if out is not None:
        save_generator(g, out)
        _write_history(Path(f"{out}.csv"), history)
        if ckpt is not None and ckpt.exists():
            ckpt.unlink()
    return g


def _write_history(path: Path, history: list[dict]) -> None:
    if not history:
        return
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(history[0]))
    w.writeheader()
    w.writerows(history)
    atomic_write_text(path, buf.getvalue())


# ---- files --------------------------------------------------------------------------------
def save_generator(g: Generator, path: str | os.PathLike) -> None:
    """Write ``g`` to ``path`` atomically as a ``weights_only``-loadable dict: format tag, MLP
    state and shape, the supernet fingerprint, cost identity, superclass names and space it was
    trained for (checked when loading), and the rest of ``g.meta``."""
    m = g.model
    atomic_torch_save({"format": FORMAT, "state_dict": m.state_dict(),
                       "model": {"n_superclasses": m.n_superclasses, "hidden": m.net[0].out_features,
                                 "blind": m.blind},
                       **{k: g.meta[k] for k in ("supernet_fingerprint", "cost", "superclasses", "space")},
                       "meta": {k: v for k, v in g.meta.items()
                                if k not in ("supernet_fingerprint", "cost", "superclasses", "space")}},
                      path)


def _load(path: Path, what: str) -> dict:
    if not path.is_file():
        raise GeneratorError(f"no {what} at {path}: train one with `edgeeas train generator`")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a bad file
        raise GeneratorError(f"{path} is not a readable {what} ({str(e).splitlines()[0][:160]})") from None
    if not isinstance(ck, dict) or not str(ck.get("format", "")).startswith(FORMAT):
        raise GeneratorError(f"{path} is not an edgeeas {what} (format "
                             f"{ck.get('format') if isinstance(ck, dict) else type(ck).__name__!r}, expected {FORMAT!r})")
    return ck


def load_generator(path: str | os.PathLike, supernet, cost, ds=None, cost_name: str | None = None) -> Generator:
    """Load ``path`` for use with ``supernet`` and ``cost`` (and ``ds``'s superclasses);
    a generator made for another supernet, target/table or dataset is a one-line error."""
    path = Path(path)
    ck = _load(path, "generator")
    space = supernet.space
    if ck.get("space") != space.to_dict():
        raise GeneratorError(f"{path} was trained for search space {ck.get('space', {}).get('name')!r}, "
                             f"this supernet uses {space.name!r}")
    have = cost_identity(cost, space, cost_name)
    want = ck.get("cost", {})
    if (want.get("kind"), want.get("fingerprint")) != (have["kind"], have["fingerprint"]):
        raise GeneratorError(
            f"{path} was trained for cost model {want.get('name')!r} ({want.get('kind')}, table "
            f"{want.get('fingerprint')}), not {have['name']!r} ({have['kind']}, table {have['fingerprint']}); "
            f"train one with `edgeeas train generator --{'madds' if have['kind'] == 'madds' else 'target ' + have['name']}`")
    fp = supernet_fingerprint(supernet)
    if ck.get("supernet_fingerprint") != fp:
        raise GeneratorError(f"{path} was trained against another supernet (fingerprint "
                             f"{ck.get('supernet_fingerprint')}, this one is {fp}); retrain it with "
                             f"`edgeeas train generator --supernet ...`")
    if ds is not None and list(ck.get("superclasses", [])) != list(ds.superclasses):
        raise GeneratorError(f"{path} was trained on superclasses {ck.get('superclasses', [])[:3]}..., "
                             f"the dataset has {list(ds.superclasses)[:3]}...")
    trained_on = ck.get("meta", {}).get("dataset_fingerprint")
    if ds is not None and trained_on and trained_on != ds.fingerprint:
        raise GeneratorError(f"{path} was trained on another content of dataset {ds.name!r} (fingerprint "
                             f"{trained_on}, this one is {ds.fingerprint}: images or grouping changed); retrain "
                             f"it with `edgeeas train generator --data ...`")
    spec = ck.get("model", {})
    model = ArchGenerator(space, int(spec["n_superclasses"]), int(spec["hidden"]), bool(spec.get("blind", False)))
    try:
        model.load_state_dict(ck["state_dict"])
    except (RuntimeError, KeyError) as e:
        raise GeneratorError(f"{path}: generator weights do not fit ({str(e).splitlines()[0][:160]})") from None
    meta = {**ck.get("meta", {}), **{k: ck[k] for k in ("supernet_fingerprint", "cost", "superclasses", "space")}}
    cps = meta.get("classes_per_superclass") or [5] * len(ck["superclasses"])
    return Generator(model, space, CostTable(cost, space), list(ck["superclasses"]), cps, meta)
