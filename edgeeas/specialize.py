"""Specialize: (superclasses, budget) -> an int8 TFLite model folder.

One scenario, start to finish (:meth:`Specializer.build`)::

    search (--strategy: any registered strategy, edgeeas.search.list_strategies(); all through find_arch)
      -> static subnet with inherited weights, head restricted to the scenario's fine classes
         (ascending fine-class id)
      -> BN statistics recalibrated on training images of every superclass (the mixture the
         supernet's BN saw in training: recalibrating on one superclass alone cost 3-12 points
         of within-superclass accuracy on the shipped supernet)
      -> float accuracy on the scenario's test images (host)
      -> model.onnx, model.tflite (full-integer int8, calibrated on the scenario's training images)
      -> int8 accuracy on the same test images through the LiteRT interpreter
      -> manifest.json (an edgeeas.manifest.ModelManifest, written last)

Every file goes into a temporary folder beside the destination, which is renamed into place
only when the whole scenario succeeded: ``out/TARGET/SUPERCLASS[+SUPERCLASS]/BUDGET/`` is
either complete or absent (also after a failure or Ctrl-C).  A destination that already holds
a model made by the same request (strategy and options, supernet, generator, dataset, cost
table, budget) is kept as it is, so a batch that was interrupted resumes where it stopped; one
that holds any other model is refused unless ``force``.

What happens to an emitted folder next lives beside this module: :mod:`edgeeas.validation`
(``validate_folder``: ``validation.json``), :mod:`edgeeas.deploy` (``deploy``) and
:mod:`edgeeas.report` (``build_report``, the Pareto plot); their names are also importable
from here.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .errors import EdgeeasError, EdgeeasUsageError
from .manifest import (MANIFEST_FORMAT, AccuracySpec, BudgetSpec, InputSpec, ManifestError, ModelManifest,
                       OutputSpec, model_inputs, read_manifest, write_manifest)
from .utils import portable_path, portable_source, sha256_file
from .validation import MANIFEST, MODEL, now

__all__ = ["Scenario", "SpecializeConfig", "Specializer", "SpecializeError", "OutputExistsError", "Plan",
           "parse_budget_list", "parse_scenarios", "validate_folder", "target_protocol", "find_models",
           "deploy", "load_deploy_config", "build_report", "MANIFEST_FORMAT", "STRATEGY_NAMES"]

ONNX = "model.onnx"

# Defined in the modules that now hold them; importable from here as before (loaded on first use).
_MOVED = {"validate_folder": "validation", "target_protocol": "validation", "deploy": "deploy",
          "load_deploy_config": "deploy", "build_report": "report", "find_models": "report",
          "pareto_front": "report", "plot_pareto": "report"}


def __getattr__(name: str):
    import importlib

    if name in _MOVED:
        return getattr(importlib.import_module(f".{_MOVED[name]}", __package__), name)
    if name == "STRATEGY_NAMES":  # the registry's names, in registration order
        from .search import list_strategies

        return tuple(list_strategies())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class SpecializeError(EdgeeasError):
    """A scenario could not be specialized (one line)."""


class OutputExistsError(EdgeeasUsageError):
    """The destination folder already holds another model; ``--force`` replaces it."""


# ---- scenarios --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scenario:
    """A deployment scenario: superclass names (dataset order, by superclass id) and a budget
    (an :class:`edgeeas.search.Budget`).  ``relpath`` is its folder, ``SUPERCLASS[+...]/BUDGET``."""

    superclasses: tuple[str, ...]   # dataset order (by superclass id)
    budget: object                  # edgeeas.search.Budget

    @property
    def name(self) -> str:
        """``vehicles_1`` or ``fish+flowers``."""
        return "+".join(self.superclasses)

    @property
    def relpath(self) -> Path:
        """The scenario's folder under ``OUT/TARGET``: ``vehicles_1/3ms``."""
        return Path(self.name) / str(self.budget)

    def __str__(self) -> str:
        return f"{self.name} @ {self.budget}"


def parse_budget_list(budgets) -> list:
    """``["20ms", "5ms,10ms"]`` -> Budgets (each checked by ``parse_budget``), duplicates dropped.

    Raises:
        EdgeeasUsageError: a malformed budget, or an empty entry between commas."""
    from .search import parse_budget

    out = []
    for item in budgets or ():
        for text in str(item).split(","):
            if not text.strip() and "," in str(item):
                raise EdgeeasUsageError(f"bad budget list {item!r}: an empty entry between commas")
            b = parse_budget(text)
            if b not in out:
                out.append(b)
    return out


def parse_scenarios(ds, superclass_groups, all_superclasses: bool, budgets) -> list[Scenario]:
    """Scenarios = (each superclass group, or every superclass) x budgets.

    ``superclass_groups``: names; ``a+b`` makes one scenario of several superclasses.

    Raises:
        EdgeeasUsageError: an unknown name (listing the valid ones), both or neither of groups
            and ``all_superclasses``, or no budget."""
    groups: list[tuple[str, ...]] = []
    if all_superclasses:
        if superclass_groups:
            raise EdgeeasUsageError("give --superclass or --all-superclasses, not both")
        groups = [(n,) for n in ds.superclasses]
    for g in superclass_groups or ():
        names = [n.strip() for n in str(g).split("+")]
        for n in names:
            if n not in ds.superclasses:
                raise EdgeeasUsageError(f"unknown superclass {n!r}; expected one of: {', '.join(ds.superclasses)}")
        key = tuple(sorted(set(names), key=ds.superclasses.index))
        if key not in groups:
            groups.append(key)
    if not groups:
        raise EdgeeasUsageError("no scenario: give --superclass NAME (repeatable) or --all-superclasses")
    if not budgets:
        raise EdgeeasUsageError("no budget: give --budget 20ms (or --budgets 5ms,10ms,... ; 8M for MAdds)")
    return [Scenario(g, b) for g in groups for b in budgets]


def _fs_name(target: str) -> str:
    from .targets import TargetStore

    return TargetStore.folder_name(target)


@dataclass
class SpecializeConfig:
    """Everything ``edgeeas specialize`` takes besides the scenarios (the CLI's options).

    ``strategy`` is a registered name; ``fitness``, ``evaluations`` and ``population`` are the
    shared search settings (:class:`edgeeas.search.SearchSettings`) that the strategy's
    registration maps to its options (:meth:`strategy_options`).  Image counts are counts;
    ``latency_margin`` is ``"auto"`` or a percentage (``"5%"``)."""

    target: str = "host"
    strategy: str = "generator"
    supernet: str | None = None          # run directory or .pt (default runs/default)
    generator: str | None = None         # default: <supernet run>/generator-<target or madds>.pt
    data: str | None = None
    out: str = "out"
    force: bool = False
    recal_images: int = 1000             # BN recalibration (training images of all superclasses)
    calib_images: int = 256              # int8 calibration (scenario's training images)
    test_images: int = 0                 # 0: every test image of the scenario
    fitness: str = "predictor"           # evolution / random
    evaluations: int = 500
    population: int = 100
    predictor_samples: int = 200
    latency_margin: str = "auto"         # "auto" (the predictor's held-out under-prediction) or a % ("5%")
    seed: int = 0

    def strategy_options(self) -> dict:
        """The options this config gives its strategy (:func:`edgeeas.search.strategy_options`).

        Raises:
            EdgeeasUsageError: an unknown strategy (listing the registered ones)."""
        from .search import strategy_options

        return strategy_options(self.strategy, self)


@dataclass
class Plan:
    """One scenario's destination folder and what :meth:`Specializer.build` will do with it:
    ``status`` is ``"new"``, ``"same"`` (kept: same request) or ``"replace"`` (``--force``)."""

    scenario: Scenario
    dest: Path
    status: str                     # "new" | "same" (kept) | "replace" (--force)
    request: dict = field(default_factory=dict)


class _CostKind:
    """Everything one kind of budget (latency on the target, or MAdds) needs."""

    def __init__(self, cost, name: str, ctx, generator=None, generator_info=None):
        self.cost, self.name, self.ctx = cost, name, ctx
        self.generator, self.generator_info = generator, generator_info
        self.fingerprint = ctx.table.fingerprint()


def _read_existing(path: Path) -> ModelManifest | None:
    """The manifest already in a destination folder, or None when it is missing or not one."""
    try:
        return read_manifest(path) if path.is_file() else None
    except (ManifestError, EdgeeasUsageError):
        return None


class Specializer:
    """Loads the supernet and dataset once; :meth:`plan` checks every scenario before any work,
    :meth:`build` makes one scenario's folder.

    Args:
        cfg: the configuration (its ``supernet`` resolved by :func:`edgeeas.checkpoint.resolve_supernet`).
        log: called with one progress line at a time.

    Raises:
        EdgeeasUsageError: an unknown strategy or a malformed target name.
        CheckpointError, DataError: the supernet or the dataset cannot be loaded.
    """

    def __init__(self, cfg: SpecializeConfig, log: Callable[[str], None] | None = None):
        from .checkpoint import load_supernet, resolve_supernet
        from .data import load_dataset
        from .search.fitness import supernet_fingerprint
        from .targets import _NAME_RE  # the same rule as every target's name

        cfg.strategy_options()  # an unknown strategy (or option) fails before any loading
        if not _NAME_RE.match(cfg.target):
            raise EdgeeasUsageError(f"bad target name {cfg.target!r}: use letters, digits, '_', '-', '.', ':'")
        self.cfg = cfg
        self.log = log or (lambda m: None)
        self.supernet_path = Path(resolve_supernet(cfg.supernet))
        self.ds = load_dataset(cfg.data)
        # head rows matched to the dataset's classes by name: row i is the dataset's class i
        self.net, self.net_meta = load_supernet(self.supernet_path, dataset=self.ds)
        self.space = self.net.space
        self.net_fp = supernet_fingerprint(self.net)
        self.out = Path(cfg.out) / _fs_name(cfg.target)
        self._kinds: dict[str, _CostKind] = {}
        self._latency = None  # the target's latency predictor, if it has one (for MAdds budgets too)

    # ---- identities ------------------------------------------------------------------------
    def supernet_identity(self) -> dict:
        """What the manifest records of the supernet: path, sha256 of the file, fingerprint of
        the weights, epochs done and the command that trained it."""
        m = self.net_meta or {}
        if not hasattr(self, "_net_sha"):
            self._net_sha = sha256_file(self.supernet_path)
        return {"path": portable_path(self.supernet_path), "sha256": self._net_sha, "fingerprint": self.net_fp,
                "epochs_done": m.get("epochs_done"), "command": m.get("command")}

    def dataset_identity(self) -> dict:
        """What the manifest records of the dataset: name, source and content fingerprint."""
        return {"name": self.ds.name, "source": portable_source(self.ds.source), "fingerprint": self.ds.fingerprint}

    # ---- cost models -------------------------------------------------------------------------
    def kind(self, budget) -> _CostKind:
        """Cost model (and search context, and generator when the strategy needs one) for a
        budget's kind; loaded once, with one-line errors that say what to run."""
        key = budget.kind
        if key in self._kinds:
            return self._kinds[key]
        from .search import SearchContext, load_cost

        madds = budget.unit == "M"
        cost, name = load_cost(self.space, target=None if madds else self.cfg.target, madds=madds)
        c = self.cfg
        ctx = SearchContext(self.net, self.ds, cost, cost_name=name, cache_dir=self.supernet_path.parent,
                            predictor_samples=c.predictor_samples, fitness=c.fitness, seed=c.seed,
                            latency_margin=c.latency_margin, log=self.log)
        k = _CostKind(cost, name, ctx)
        from .search import get_strategy

        if get_strategy(c.strategy).needs_generator:
            k.generator, k.generator_info = self._load_generator(cost, name)
            ctx.generator = k.generator
        self._kinds[key] = k
        return k

    def _load_generator(self, cost, cost_name: str):
        from .checkpoint import default_generator_path
        from .search import load_generator

        run = self.supernet_path.parent
        path = Path(self.cfg.generator) if self.cfg.generator else default_generator_path(self.supernet_path, cost_name)
        if not path.is_file():
            what = "--madds" if cost_name == "madds" else f"--target {cost_name}"
            where = "given with --generator" if self.cfg.generator else f"for {cost_name!r} budgets"
            raise SpecializeError(
                f"no trained generator at {path} ({where}): run `edgeeas train generator --supernet {run} {what}` "
                f"(or pass --generator PATH), or search per scenario with --strategy evolution")
        g = load_generator(path, self.net, cost, self.ds, cost_name)
        info = {"path": portable_path(path), "sha256": sha256_file(path), "cost": g.meta.get("cost"),
                "supernet_fingerprint": g.meta.get("supernet_fingerprint"),
                "steps": g.meta.get("steps_done"), "command": g.meta.get("command")}
        return g, info

    def latency_predictor(self):
        """The target's latency predictor, or None when it has no table (MAdds budgets)."""
        if self._latency is None:
            if "latency_ms" in self._kinds:
                self._latency = self._kinds["latency_ms"].cost
            else:
                try:
                    from .search import load_cost

                    self._latency = load_cost(self.space, target=self.cfg.target)[0]
                    self._latency.predict(self.space.smallest(), 5)  # a table still being built has holes
                except (EdgeeasError, KeyError):
                    self._latency = False
        return self._latency or None

    # ---- planning -------------------------------------------------------------------------
    def request(self, sc: Scenario) -> dict:
        """What makes a model: two folders with the same request hold the same model."""
        k = self.kind(sc.budget)
        c = self.cfg
        return {"superclasses": list(sc.superclasses), "budget": str(sc.budget), "target": c.target,
                "strategy": c.strategy, "strategy_options": c.strategy_options(),
                "supernet_fingerprint": self.net_fp, "dataset_fingerprint": self.ds.fingerprint,
                "cost_model": k.name, "cost_fingerprint": k.fingerprint,
                "latency_margin_pct": round(100 * k.ctx.latency_margin, 2),
                "generator_sha256": (k.generator_info or {}).get("sha256"),
                "recal_images": c.recal_images, "calib_images": c.calib_images, "test_images": c.test_images,
                "seed": c.seed, "format": MANIFEST_FORMAT}

    def plan(self, scenarios: list[Scenario]) -> list[Plan]:
        """Check every scenario (cost model, generator, feasibility, destination) before any
        work, so a bad batch fails at once and writes nothing."""
        from .search import check_feasible

        plans, conflicts = [], []
        for sc in scenarios:
            k = self.kind(sc.budget)
            ids = [self.ds.superclass_id(n) for n in sc.superclasses]
            check_feasible(sc.budget, k.ctx.table, k.ctx.num_classes(ids), k.ctx.describe(ids))
            req = self.request(sc)
            dest = self.out / sc.relpath
            status = "new"
            if dest.exists():
                old = _read_existing(dest / MANIFEST)
                if old is not None and old.request == req and (dest / MODEL).is_file() and not self.cfg.force:
                    status = "same"
                elif self.cfg.force:
                    status = "replace"
                else:
                    if old:
                        was = old.request or {}
                        diff = [f"{k} {was.get(k)!r} -> {req[k]!r}" for k in req if was.get(k) != req[k]]
                        what = (f"a model by strategy {old.strategy!r} ({old.arch}) made by another "
                                f"request ({', '.join(diff[:2]) or 'incomplete folder'})")
                    else:
                        what = "files that are not an edgeeas model"
                    conflicts.append(f"{dest} already holds {what}")
            plans.append(Plan(sc, dest, status, req))
        if conflicts:
            more = f" (and {len(conflicts) - 1} more)" if len(conflicts) > 1 else ""
            raise OutputExistsError(f"{conflicts[0]}{more}; pass --force to replace, or choose another --out")
        return plans

    # ---- one scenario ------------------------------------------------------------------------
    def build(self, plan: Plan, *, before_rename: Callable[[Path], None] | None = None) -> ModelManifest:
        """Make ``plan.dest`` (search, export, accuracies, manifest), atomically.

        Returns:
            The :class:`~edgeeas.manifest.ModelManifest` written; a "same" plan returns the
            existing one (read, upgraded if it is of an older format) and touches nothing.

        Raises:
            What the search, the export and the evaluation raise (one-line errors); the
            destination is then as it was (``before_rename(tmp)`` runs just before the rename).
        """
        if plan.status == "same":
            return _read_existing(plan.dest / MANIFEST) or ModelManifest()
        dest = plan.dest
        created = []
        p = dest.parent
        while not p.exists():
            created.append(p)
            p = p.parent
        dest.parent.mkdir(parents=True, exist_ok=True)
        from .utils import mkdtemp_beside

        tmp = mkdtemp_beside(dest)
        try:
            manifest = self._build_into(plan, tmp)
            if before_rename is not None:
                before_rename(tmp)
            if dest.exists():
                old = dest.parent / f".{dest.name}.{os.getpid()}.old.tmp"  # cleaned if killed here
                os.rename(dest, old)
                os.rename(tmp, dest)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(tmp, dest)
            return manifest
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            for d in created:  # deepest first: only the (empty) folders this call made
                try:
                    d.rmdir()
                except OSError:
                    break
            raise

    def _build_into(self, plan: Plan, tmp: Path) -> ModelManifest:
        import torch

        from .evaluate import predict, recal_images, recalibrate_bn, to_float
        from .export import export_onnx, export_tflite_int8, tflite_madds, tflite_run
        from .search import find_arch
        from .utils import command_line, versions

        c, ds, sc = self.cfg, self.ds, plan.scenario
        k = self.kind(sc.budget)
        ids = sorted(ds.superclass_id(n) for n in sc.superclasses)
        classes = sorted(cl for s in ids for cl in ds.classes_of(s))
        nc = len(classes)

        # 1. architecture
        res = find_arch(c.strategy, k.ctx, list(sc.superclasses), sc.budget, **c.strategy_options())
        arch = res.arch
        self.log(f"{sc}: {c.strategy} chose {arch} ({res.predicted_cost:.3f}{res.unit} predicted, "
                 f"{res.seconds:.3g} s)")

        # 2. static subnet, head restricted, BN recalibrated on training images of all superclasses:
        #    the supernet's BN learned mixed-superclass batches, and one superclass's statistics
        #    alone cost 3-12 points (measured on vehicles_1, flowers, fish); the int8 calibration
        #    below still uses the scenario's own images, which fix the activation ranges.
        sub = self.net.subnet(arch).restrict_head(classes)
        recal = recal_images(ds, n=c.recal_images, seed=c.seed)
        recalibrate_bn(sub, recal)
        sub.eval()
        calib = to_float(recal_images(ds, n=c.calib_images, seed=c.seed + 1, superclasses=ids))

        # 3. host float accuracy on the scenario's test images (labels = head row indices)
        test = model_inputs(ModelManifest(classes=classes, input=InputSpec(dtype="float32")), ds,
                            limit=c.test_images)
        images, labels = test.images, test.labels
        with torch.no_grad():
            pred_float = predict(sub, images).argmax(1).numpy()
        acc_float = float((pred_float == labels).mean() * 100)

        # 4. files
        export_onnx(sub, tmp / ONNX)
        info = export_tflite_int8(sub, calib, tmp / MODEL)
        input_spec = InputSpec.from_export(info)
        pred_int8 = tflite_run(tmp / MODEL, input_spec.tensor(images, info)).argmax(1)
        acc_int8 = float((pred_int8 == labels).mean() * 100)

        madds = sum(m for _, m, _ in self.space.layer_costs(arch, nc))
        params = sum(p for _, _, p in self.space.layer_costs(arch, nc))
        lat = self.latency_predictor()
        pred_ms = float(lat.predict(arch, nc)) if lat is not None else None
        manifest = ModelManifest(
            scenario=sc.name, superclasses=list(sc.superclasses), classes=classes,
            labels=[ds.classes[cl] for cl in classes], budget=BudgetSpec.from_budget(sc.budget),
            target=c.target, strategy=c.strategy, arch=str(arch),
            predicted_latency_ms=None if pred_ms is None else round(pred_ms, 5),
            predicted_cost=round(float(res.predicted_cost), 5), cost_unit=res.unit, cost_model=k.name,
            madds=int(madds), madds_tflite=int(tflite_madds(tmp / MODEL)), params=int(params),
            accuracy=AccuracySpec(host_float_pct=round(acc_float, 3), host_int8_pct=round(acc_int8, 3),
                                  int8_float_drop_pp=round(acc_float - acc_int8, 3),
                                  int8_float_agreement_pct=round(float((pred_float == pred_int8).mean() * 100), 3),
                                  test_images=int(len(labels)), split="test"),
            input=input_spec, output=OutputSpec.from_export(info),
            search={**res.to_dict(), "budget": str(sc.budget)},
            bn_recalibration={"images": int(len(recal)), "split": "train", "superclasses": "all", "seed": c.seed},
            calibration={"images": int(calib.shape[0]), "split": "train", "seed": c.seed + 1},
            files={name: {"sha256": sha256_file(tmp / name), "bytes": (tmp / name).stat().st_size}
                   for name in (MODEL, ONNX)},
            supernet=self.supernet_identity(), generator=k.generator_info, dataset=self.dataset_identity(),
            versions={**versions(), **info.versions}, command=command_line(), created=now(),
            request=plan.request)
        write_manifest(tmp / MANIFEST, manifest)
        return manifest
