"""Fitness of an architecture for a scenario: measured, or predicted (as once-for-all does).

*Measured* ("direct"): BN statistics recalibrated on training images of all superclasses (the
mixture the supernet's BN was trained on: one superclass's statistics alone cost 3-12 points), then
accuracy with the head restricted to the scenario's fine classes, on a **held-out** part of
the training images (never the test set: the search must not see what reports are made on).
The held-out part is a seeded split per superclass; the generator trains on the rest.

*Predicted*: a small MLP on a one-hot encoding of the architecture (depth per stage, expand
and kernel per active slot) and the scenario's superclasses, trained on measured accuracies
of sampled subnets.  Measurements are cached in a JSON-lines file keyed by the supernet, the
dataset and the evaluation protocol, so they are made once and reused by every search.
"""
from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..evaluate import predict, recalibrate_bn
from ..space import Arch, SearchSpace
from ..utils import atomic_write_text

__all__ = ["Evaluator", "encode", "soft_encode", "AccuracyPredictor", "AccuracyData", "supernet_fingerprint",
           "measure_all_superclasses"]


def supernet_fingerprint(supernet) -> str:
    """Hash of every tensor of the supernet's state (weights and BN buffers) and its space."""
    h = hashlib.sha256(json.dumps(supernet.space.to_dict(), sort_keys=True).encode())
    for k, v in sorted(supernet.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class Evaluator:
    """Seeded held-out split of the training images, and measured scenario accuracy."""

    def __init__(self, supernet, ds, *, recal_images: int = 500, val_images: int = 500, seed: int = 0):
        self.supernet, self.ds = supernet, ds
        self.recal_images, self.val_images, self.seed = recal_images, val_images, seed
        self._split: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._memo: dict[tuple[str, tuple[int, ...]], float] = {}
        self.measurements = 0

    def protocol(self) -> dict:
        """What a measured accuracy depends on besides the supernet and the architecture
        (recalibration and held-out sizes, split seed, dataset fingerprint): part of the key of
        cached measurements, so a change invalidates them."""
        return {"recal_images": self.recal_images, "val_images": self.val_images, "seed": self.seed,
                "dataset": self.ds.fingerprint}

    def split(self, superclass: int) -> tuple[np.ndarray, np.ndarray]:
        """(fit indices, held-out indices) of one superclass's training images."""
        if superclass not in self._split:
            idx = self.ds.indices("train", [superclass])
            perm = np.random.default_rng([self.seed, 7919, superclass]).permutation(idx)
            n_val = min(self.val_images, len(idx) // 2)
            self._split[superclass] = (np.sort(perm[n_val:]), np.sort(perm[:n_val]))
        return self._split[superclass]

    def fit_indices(self, superclasses: list[int]) -> np.ndarray:
        """Training-set indices of the scenario's images outside the held-out split (what the
        generator trains on), concatenated in superclass order."""
        return np.concatenate([self.split(s)[0] for s in superclasses])

    def classes(self, superclasses: list[int]) -> list[int]:
        """The scenario's fine-class ids, sorted: the head rows a restricted subnet keeps."""
        return sorted(c for s in superclasses for c in self.ds.classes_of(s))

    def recal(self, superclasses: list[int]) -> np.ndarray:
        """uint8 NCHW training images for BN recalibration: ``recal_images`` of them, a seeded
        sample of every superclass's fit part (never held-out images), the same whatever
        ``superclasses`` is (mixed statistics measured better than the scenario's own)."""
        # every superclass's fit part (never a held-out image), whatever the scenario
        pool = self.fit_indices(list(range(self.ds.num_superclasses)))
        rng = np.random.default_rng([self.seed, 104729])
        return self.ds.train.images[np.sort(rng.choice(pool, min(self.recal_images, len(pool)), replace=False))]

    def accuracy_all(self, arch: Arch) -> dict[int, float]:
        """Held-out accuracy (%) of ``arch`` for every single-superclass scenario, from one BN
        recalibration and one forward pass over all superclasses' held-out images (the head
        restricted to each superclass's classes afterwards, which is what ``restrict_head``
        computes).  ~20x cheaper than 20 calls of :meth:`accuracy`; the results fill its memo."""
        n = self.ds.num_superclasses
        if all((str(arch), (s,)) in self._memo for s in range(n)):
            return {s: self._memo[(str(arch), (s,))] for s in range(n)}
        sub = self.supernet.subnet(arch)
        recalibrate_bn(sub, self.recal(list(range(n))))
        vals = [self.split(s)[1] for s in range(n)]
        logits = predict(sub, self.ds.train.images[np.concatenate(vals)])
        out, start = {}, 0
        for s, val in enumerate(vals):
            classes = self.classes([s])
            rows = logits[start:start + len(val)][:, classes]
            start += len(val)
            target = torch.as_tensor(np.searchsorted(classes, self.ds.train.labels[val]))
            out[s] = self._memo[(str(arch), (s,))] = 100.0 * (rows.argmax(1) == target).float().mean().item()
        self.measurements += 1
        return out

    def accuracy(self, arch: Arch, superclasses: list[int]) -> float:
        """Held-out accuracy (%) of ``arch`` among the scenario's fine classes."""
        key = (str(arch), tuple(sorted(superclasses)))
        if key not in self._memo:
            classes = self.classes(superclasses)
            sub = self.supernet.subnet(arch).restrict_head(classes)
            recalibrate_bn(sub, self.recal(list(key[1])))
            val = np.concatenate([self.split(s)[1] for s in key[1]])
            logits = predict(sub, self.ds.train.images[val])
            target = torch.as_tensor(np.searchsorted(classes, self.ds.train.labels[val]))
            self._memo[key] = 100.0 * (logits.argmax(1) == target).float().mean().item()
            self.measurements += 1
        return self._memo[key]


def encode(archs: list[Arch], scenarios: list[list[int]], space: SearchSpace, n_superclasses: int) -> torch.Tensor:
    """One-hot depth per stage, one-hot expand and kernel per active slot (zeros for inactive
    slots), and the scenario's multi-hot superclass vector."""
    S, D = space.num_stages, space.max_depth
    nd, ne, nk = len(space.depths), len(space.expands), len(space.kernels)
    width = S * nd + S * D * (ne + nk) + n_superclasses
    x = np.zeros((len(archs), width), dtype=np.float32)
    for r, (a, sc) in enumerate(zip(archs, scenarios)):
        i = 0
        for s, blocks in enumerate(a.blocks_per_stage()):
            x[r, s * nd + space.depths.index(a.depths[s])] = 1
            for b, (k, e) in enumerate(blocks):
                base = S * nd + (s * D + b) * (ne + nk)
                x[r, base + space.expands.index(e)] = 1
                x[r, base + ne + space.kernels.index(k)] = 1
                i += 1
        for c in sc:
            x[r, width - n_superclasses + c] = 1
    return torch.from_numpy(x)


def soft_encode(wd: torch.Tensor, we: torch.Tensor, wk: torch.Tensor, multi_hot: torch.Tensor,
                active: torch.Tensor) -> torch.Tensor:
    """:func:`encode`'s layout from per-decision weights, differentiable.

    ``wd`` (B,S,nd) depth, ``we`` (B,S,D,ne) expand and ``wk`` (B,S,D,nk) kernel weights (one-hots,
    straight-through one-hots or probabilities), ``multi_hot`` (B,n_superclasses), ``active``
    (nd,D): 1 where depth option i keeps slot b (:attr:`CostTable.active`).  A slot's expand and
    kernel entries are scaled by the weight of the depths that keep it, so with one-hots the
    result equals :func:`encode` of that architecture exactly (inactive slots are zeros).
    Returns (B, S*nd + S*D*(ne+nk) + n_superclasses)."""
    B = wd.shape[0]
    act = (wd @ active)[..., None]                                   # B,S,D,1
    slots = torch.cat([we * act, wk * act], -1).reshape(B, -1)
    return torch.cat([wd.reshape(B, -1), slots, multi_hot], 1)


def measure_all_superclasses(evaluator: "Evaluator", data: "AccuracyData", archs: list[Arch], *,
                             progress: bool = False, desc: str = "accuracy data") -> int:
    """Measure every architecture of ``archs`` missing from ``data`` on all single-superclass
    scenarios (:meth:`Evaluator.accuracy_all`), saving ``data`` every 5 architectures (an
    interrupted run keeps what it measured).  Returns how many architectures were measured."""
    ds = evaluator.ds
    names = [(ds.superclasses[s],) for s in range(ds.num_superclasses)]
    todo = [a for a in archs if not all(data.has(a, n) for n in names)]
    bar = None
    if progress and todo:
        from tqdm import tqdm
        bar = tqdm(total=len(todo), desc=desc, unit="subnet", dynamic_ncols=True)
    for i, a in enumerate(todo):
        for s, acc in evaluator.accuracy_all(a).items():
            if not data.has(a, names[s]):
                data.add(a, names[s], acc)
        if (i + 1) % 5 == 0:
            data.save()
        if bar is not None:
            bar.update(1)
    if todo:
        data.save()
    if bar is not None:
        bar.close()
    return len(todo)


class AccuracyPredictor(nn.Module):
    """Accuracy of (architecture, scenario) from :func:`encode`'s features: ridge regression on
    the architecture's one-hots, the superclass, and architecture x superclass interactions
    (a shared additive model plus a per-superclass one shrunk towards it).

    Why not once-for-all's MLP (``benchmarks/bench_generator.py --only predictor``, on the 40-epoch
    supernet's 200 subnets x 20 superclasses, 40 subnets held out): held-out RMSE 0.72 points for
    this model against 1.62 for the MLP; and where a search exploits it (each predictor's best of
    3000 random subnets under three MAdds budgets, then measured) the MLP over-predicts its picks
    by 4.9 points, this model by 0.75, and the MLP's picks measure 1.3 points lower (ReLU
    extrapolation off the data, which the generator's gradient ascent drives further).
    A linear model cannot be driven past the sum of its best coefficients, and with
    interactions it still ranks architectures per superclass.  The two ridge strengths are
    chosen by cross-validation over architectures (:meth:`fit`).

    A scenario of several superclasses is predicted as the mean of its superclasses'
    predictions (its multi-hot is normalized to sum 1), which is linear, so
    :func:`soft_encode`'s soft decisions stay differentiable.
    """

    #: ridge strengths tried by :meth:`fit`: (main effects, interactions)
    GRID = tuple((m, i) for m in (0.1, 1.0, 10.0) for i in (1.0, 10.0, 100.0))

    def __init__(self, in_features: int, n_superclasses: int):
        super().__init__()
        if not 0 < n_superclasses < in_features:
            raise ValueError(f"n_superclasses must be in 1..{in_features - 1}, got {n_superclasses}")
        self.n_superclasses = n_superclasses
        self.n_arch = n_arch = in_features - n_superclasses
        self.register_buffer("weight", torch.zeros(1 + n_arch + n_superclasses + n_arch * n_superclasses,
                                                   dtype=torch.float64))
        self.strengths: tuple[float, float] | None = None
        self.cv_rmse: float | None = None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, in_features]`` -> ``[B, 1 + A + S + A*S]`` (bias, architecture A, normalized
        superclass multi-hot S, their outer product), float64."""
        x = x.to(torch.float64)
        a, s = x[:, :-self.n_superclasses], x[:, -self.n_superclasses:]
        s = s / s.sum(1, keepdim=True).clamp_min(1.0)
        inter = (a[:, :, None] * s[:, None, :]).reshape(len(x), -1)
        return torch.cat([torch.ones(len(x), 1, dtype=x.dtype), a, s, inter], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, features]`` encodings (:func:`encode` or :func:`soft_encode`) -> ``[B]`` predicted
        accuracies as fractions (0-1, not %), float32; differentiable in ``x``."""
        return (self.features(x) @ self.weight).to(torch.float32)

    def _penalty(self, main: float, inter: float) -> torch.Tensor:
        n_main = 1 + self.n_arch + self.n_superclasses
        pen = torch.full((self.weight.numel(),), inter, dtype=torch.float64)
        pen[:n_main] = main
        pen[0] = 0.0  # the bias is not shrunk
        return pen

    def fit(self, x: torch.Tensor, y: torch.Tensor, *, seed: int = 0, folds: int = 4) -> float:
        """Fit by ridge regression, the strengths chosen from :attr:`GRID` by ``folds``-fold
        cross-validation over architectures (all records of one architecture in one fold).

        Args:
            x: ``[N, in_features]`` :func:`encode` rows; y: ``[N]`` accuracies as fractions.
        Returns:
            the training RMSE in points (%); :attr:`cv_rmse` holds the chosen strengths' CV RMSE.
        """
        with torch.no_grad():
            f = self.features(x)
            yy = y.to(torch.float64)
            arch = x[:, :-self.n_superclasses]
            _, group = torch.unique(arch, dim=0, return_inverse=True)
            n_groups = int(group.max()) + 1 if len(group) else 0
            perm = torch.randperm(n_groups, generator=torch.Generator().manual_seed(seed))
            fold_of = torch.empty(n_groups, dtype=torch.long)
            fold_of[perm] = torch.arange(n_groups) % max(2, folds)
            fold = fold_of[group]
            gram, rhs = f.T @ f, f.T @ yy
            best = (float("inf"), self.GRID[0])
            if n_groups >= max(2, folds):
                parts = [(f[fold == k], yy[fold == k]) for k in range(max(2, folds))]
                for main, inter in self.GRID:
                    pen = torch.diag(self._penalty(main, inter))
                    se = 0.0
                    for fk, yk in parts:
                        w = torch.linalg.solve(gram - fk.T @ fk + pen, rhs - fk.T @ yk)
                        se += float(((fk @ w - yk) ** 2).sum())
                    best = min(best, ((se / len(yy)) ** 0.5, (main, inter)))
            self.strengths = best[1]
            self.cv_rmse = None if best[0] == float("inf") else 100.0 * best[0]
            self.weight.copy_(torch.linalg.solve(gram + torch.diag(self._penalty(*best[1])), rhs))
            return 100.0 * float(((f @ self.weight - yy) ** 2).mean().sqrt())


class AccuracyData:
    """Measured (arch, superclasses, accuracy %) records in a JSON-lines file, rewritten
    atomically (a crash never leaves half a line)."""

    def __init__(self, path: Path | None, meta: dict):
        self.path, self.meta = path, meta
        self.records: list[dict] = []
        if path is not None and path.is_file():
            for line in path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(rec, dict) and "arch" in rec and "acc" in rec:
                    self.records.append(rec)
        self._have = {(r["arch"], tuple(r["superclasses"])) for r in self.records}

    def has(self, arch: Arch, names: tuple[str, ...]) -> bool:
        """Whether ``arch`` was measured on the scenario of superclass ``names`` (in that order)."""
        return (str(arch), names) in self._have

    def add(self, arch: Arch, names: tuple[str, ...], acc: float) -> None:
        """Record a measured accuracy ``acc`` (%, kept to 4 decimals) in memory; :meth:`save`
        writes it."""
        self.records.append({"arch": str(arch), "superclasses": list(names), "acc": round(acc, 4)})
        self._have.add((str(arch), names))

    def save(self) -> None:
        """Rewrite the whole JSON-lines file atomically (nothing when ``path`` is None)."""
        if self.path is not None:
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in self.records))


def sample_archs(space: SearchSpace, n: int, seed: int) -> list[Arch]:
    """The fixed sequence of architectures the predictor is trained on (same for every
    scenario, so measurements of one superclass inform the others): extremes first."""
    rng = random.Random(f"{seed}:predictor-archs")
    out = [space.smallest(), space.largest(), space.middle()]
    seen = {str(a) for a in out}
    while len(out) < n:
        a = space.sample(rng)
        if str(a) not in seen:
            seen.add(str(a))
            out.append(a)
    return out[:n]
