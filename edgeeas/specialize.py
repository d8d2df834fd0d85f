"""Specialize: (superclasses, budget) -> an int8 TFLite model folder, validated and deployable.

One scenario, start to finish (:meth:`Specializer.build`)::

    search (--strategy: generator | evolution | random | uniform, all through find_arch)
      -> static subnet with inherited weights, head restricted to the scenario's fine classes
         (ascending fine-class id)
      -> BN statistics recalibrated on training images of every superclass (the mixture the
         supernet's BN saw in training: recalibrating on one superclass alone cost 3-12 points
         of within-superclass accuracy on the shipped supernet)
      -> float accuracy on the scenario's test images (host)
      -> model.onnx, model.tflite (full-integer int8, calibrated on the scenario's training images)
      -> int8 accuracy on the same test images through the LiteRT interpreter
      -> manifest.json (written last)

Every file goes into a temporary folder beside the destination, which is renamed into place
only when the whole scenario succeeded: ``out/TARGET/SUPERCLASS[+SUPERCLASS]/BUDGET/`` is
either complete or absent (also after a failure or Ctrl-C).  A destination that already holds
a model made by the same request (strategy and options, supernet, generator, dataset, cost
table, budget) is kept as it is, so a batch that was interrupted resumes where it stopped; one
that holds any other model is refused unless ``force``.

:func:`validate_folder` runs ``edgeeas validate``'s logic on an emitted folder and stores the
result as ``validation.json`` beside the model; :func:`deploy` and :func:`build_report` read it.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import EdgeeasError, EdgeeasUsageError
from .utils import sha256_file

__all__ = ["Scenario", "SpecializeConfig", "Specializer", "SpecializeError", "OutputExistsError",
           "parse_budget_list", "parse_scenarios", "validate_folder", "target_protocol", "find_models",
           "deploy", "load_deploy_config", "build_report", "MANIFEST_FORMAT", "STRATEGY_NAMES"]

MANIFEST_FORMAT = "edgeeas-model/1"
MODEL, ONNX, MANIFEST, VALIDATION = "model.tflite", "model.onnx", "manifest.json", "validation.json"
STRATEGY_NAMES = ("generator", "evolution", "random", "uniform")


class SpecializeError(EdgeeasError):
    """A scenario could not be specialized (one line)."""


class OutputExistsError(EdgeeasUsageError):
    """The destination folder already holds another model; ``--force`` replaces it."""


# ---- scenarios --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scenario:
    superclasses: tuple[str, ...]   # dataset order (by superclass id)
    budget: object                  # edgeeas.search.Budget

    @property
    def name(self) -> str:
        return "+".join(self.superclasses)

    @property
    def relpath(self) -> Path:
        return Path(self.name) / str(self.budget)

    def __str__(self) -> str:
        return f"{self.name} @ {self.budget}"


def parse_budget_list(budgets) -> list:
    """``["20ms", "5ms,10ms"]`` -> Budgets (each checked by ``parse_budget``), duplicates dropped."""
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

    ``superclass_groups``: names; ``a+b`` makes one scenario of several superclasses.  An
    unknown name is a usage error listing the valid ones."""
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


# ---- small helpers ----------------------------------------------------------------------------


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _write_json(path: Path, obj) -> None:
    from .utils import atomic_write_text

    atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def _read_json(path: Path) -> dict | None:
    try:
        d = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None


def _mkdtemp(dest: Path) -> Path:
    """A temporary folder beside ``dest`` (same file system, so it can be renamed into place),
    with the mode a plain mkdir would give it."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    return tmp


def _fs_name(target: str) -> str:
    return target.replace(":", "_")


def target_protocol(target: str):
    """The measurement protocol of ``targets/TARGET`` (its predictor or table), so validation
    measures the way the table was measured; the default protocol if the target has none."""
    from device_bench import Protocol

    from .targets import targets_root

    d = targets_root() / _fs_name(target)
    proto = None
    pj = _read_json(d / "predictor.json")
    if pj and isinstance(pj.get("protocol"), dict):
        proto = pj["protocol"]
    elif (d / "latency.sqlite").is_file():
        try:
            from .latency import LatencyTable

            proto = LatencyTable(d / "latency.sqlite").meta().get("protocol")
        except Exception:  # noqa: BLE001 - an unreadable table just means the default protocol
            proto = None
    if isinstance(proto, dict):
        try:
            return Protocol.from_dict(proto)
        except (TypeError, ValueError):
            pass
    return Protocol()


@dataclass
class SpecializeConfig:
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
        if self.strategy == "evolution":
            return {"evaluations": self.evaluations, "population": min(self.population, self.evaluations),
                    "fitness": self.fitness}
        if self.strategy == "random":
            return {"samples": self.evaluations, "fitness": self.fitness}
        return {}


@dataclass
class Plan:
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


class Specializer:
    """Loads the supernet and dataset once; :meth:`plan` checks every scenario before any work,
    :meth:`build` makes one scenario's folder."""

    def __init__(self, cfg: SpecializeConfig, log: Callable[[str], None] | None = None):
        from .checkpoint import load_supernet
        from .commands.generator import resolve_supernet
        from .data import load_dataset
        from .search.fitness import supernet_fingerprint
        from .targets import _NAME_RE  # the same rule as every target's name

        if cfg.strategy not in STRATEGY_NAMES:
            raise EdgeeasUsageError(f"unknown strategy {cfg.strategy!r}; expected one of: {', '.join(STRATEGY_NAMES)}")
        if not _NAME_RE.match(cfg.target):
            raise EdgeeasUsageError(f"bad target name {cfg.target!r}: use letters, digits, '_', '-', '.', ':'")
        self.cfg = cfg
        self.log = log or (lambda m: None)
        self.supernet_path = Path(resolve_supernet(cfg.supernet))
        self.net, self.net_meta = load_supernet(self.supernet_path)
        self.space = self.net.space
        self.net_fp = supernet_fingerprint(self.net)
        self.ds = load_dataset(cfg.data)
        self.out = Path(cfg.out) / _fs_name(cfg.target)
        self._kinds: dict[str, _CostKind] = {}
        self._latency = None  # the target's latency predictor, if it has one (for MAdds budgets too)

    # ---- identities ------------------------------------------------------------------------
    def supernet_identity(self) -> dict:
        m = self.net_meta or {}
        if not hasattr(self, "_net_sha"):
            self._net_sha = sha256_file(self.supernet_path)
        return {"path": str(self.supernet_path), "sha256": self._net_sha, "fingerprint": self.net_fp,
                "epochs_done": m.get("epochs_done"), "command": m.get("command")}

    def dataset_identity(self) -> dict:
        return {"name": self.ds.name, "source": self.ds.source, "fingerprint": self.ds.fingerprint}

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
        if c.strategy == "generator":
            k.generator, k.generator_info = self._load_generator(cost, name)
            ctx.generator = k.generator
        self._kinds[key] = k
        return k

    def _load_generator(self, cost, cost_name: str):
        from .search import load_generator

        run = self.supernet_path.parent
        path = Path(self.cfg.generator) if self.cfg.generator else run / f"generator-{_fs_name(cost_name)}.pt"
        if not path.is_file():
            what = "--madds" if cost_name == "madds" else f"--target {cost_name}"
            where = "given with --generator" if self.cfg.generator else f"for {cost_name!r} budgets"
            raise SpecializeError(
                f"no trained generator at {path} ({where}): run `edgeeas train generator --supernet {run} {what}` "
                f"(or pass --generator PATH), or search per scenario with --strategy evolution")
        g = load_generator(path, self.net, cost, self.ds, cost_name)
        info = {"path": str(path), "sha256": sha256_file(path), "cost": g.meta.get("cost"),
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
                old = _read_json(dest / MANIFEST)
                if old is not None and old.get("request") == req and (dest / MODEL).is_file() and not self.cfg.force:
                    status = "same"
                elif self.cfg.force:
                    status = "replace"
                else:
                    if old:
                        was = old.get("request") or {}
                        diff = [f"{k} {was.get(k)!r} -> {req[k]!r}" for k in req if was.get(k) != req[k]]
                        what = (f"a model by strategy {old.get('strategy')!r} ({old.get('arch')}) made by another "
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
    def build(self, plan: Plan, *, before_rename: Callable[[Path], None] | None = None) -> dict:
        """Make ``plan.dest`` (search, export, accuracies, manifest), atomically.  Returns the
        manifest.  A "same" plan returns the existing manifest untouched."""
        if plan.status == "same":
            return _read_json(plan.dest / MANIFEST) or {}
        dest = plan.dest
        created = []
        p = dest.parent
        while not p.exists():
            created.append(p)
            p = p.parent
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = _mkdtemp(dest)
        try:
            manifest = self._build_into(plan, tmp)
            if before_rename is not None:
                before_rename(tmp)
            if dest.exists():
                old = dest.parent / f".{dest.name}.old-{os.getpid()}"
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

    def _build_into(self, plan: Plan, tmp: Path) -> dict:
        import torch

        from .evaluate import predict, recal_images, recalibrate_bn, to_float
        from .export import export_onnx, export_tflite_int8, quantize_input, tflite_madds, tflite_run
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
        idx = ds.indices("test", ids)
        if c.test_images:
            idx = idx[:c.test_images]
        images = ds.test.images[idx]
        labels = np.searchsorted(classes, ds.test.labels[idx])
        with torch.no_grad():
            pred_float = predict(sub, images).argmax(1).numpy()
        acc_float = float((pred_float == labels).mean() * 100)

        # 4. files
        export_onnx(sub, tmp / ONNX)
        info = export_tflite_int8(sub, calib, tmp / MODEL)
        x = quantize_input(to_float(images), info)
        pred_int8 = tflite_run(tmp / MODEL, x).argmax(1)
        acc_int8 = float((pred_int8 == labels).mean() * 100)

        madds = sum(m for _, m, _ in self.space.layer_costs(arch, nc))
        params = sum(p for _, _, p in self.space.layer_costs(arch, nc))
        lat = self.latency_predictor()
        pred_ms = float(lat.predict(arch, nc)) if lat is not None else None
        from .data import MEAN, STD

        manifest = {
            "format": MANIFEST_FORMAT,
            "scenario": sc.name,
            "superclasses": list(sc.superclasses),
            "classes": classes,
            "labels": [ds.classes[cl] for cl in classes],
            "budget": {"kind": sc.budget.kind, "value": sc.budget.value, "text": str(sc.budget),
                       "unit": sc.budget.unit},
            "target": c.target,
            "strategy": c.strategy,
            "arch": str(arch),
            "predicted_latency_ms": None if pred_ms is None else round(pred_ms, 5),
            "predicted_cost": round(float(res.predicted_cost), 5),
            "cost_unit": res.unit,
            "cost_model": k.name,
            "madds": int(madds),
            "madds_m": round(madds / 1e6, 4),
            "madds_tflite": int(tflite_madds(tmp / MODEL)),
            "params": int(params),
            "accuracy": {"host_float": round(acc_float, 3), "host_int8": round(acc_int8, 3),
                         "int8_float_drop": round(acc_float - acc_int8, 3),
                         "int8_float_agreement": round(float((pred_float == pred_int8).mean() * 100), 3),
                         "test_images": int(len(idx)), "split": "test"},
            "input": {"layout": "NHWC", "shape": list(info.input_shape), "dtype": info.input_dtype,
                      "scale": info.input_scale, "zero_point": info.input_zero_point,
                      "mean": list(MEAN), "std": list(STD),
                      "preprocess": "x = (uint8_rgb / 255 - mean) / std; q = clip(round(x / scale) + zero_point, -128, 127)"},
            "output": {"shape": list(info.output_shape), "dtype": info.output_dtype, "scale": info.output_scale,
                       "zero_point": info.output_zero_point, "meaning": "logits over classes, in this order"},
            "search": {**res.to_dict(), "budget": str(sc.budget)},
            "bn_recalibration": {"images": int(len(recal)), "split": "train", "superclasses": "all",
                                 "seed": c.seed},
            "calibration": {"images": int(calib.shape[0]), "split": "train", "seed": c.seed + 1},
            "files": {},
            "supernet": self.supernet_identity(),
            "generator": k.generator_info,
            "dataset": self.dataset_identity(),
            "versions": {**versions(), **info.versions},
            "command": command_line(),
            "created": _now(),
            "request": plan.request,
        }
        for name in (MODEL, ONNX):
            manifest["files"][name] = {"sha256": sha256_file(tmp / name), "bytes": (tmp / name).stat().st_size}
        _write_json(tmp / MANIFEST, manifest)
        return manifest


# ---- validation --------------------------------------------------------------------------------
def validate_folder(folder: Path, target: str | None = None, *, data=None, images: int = 0,
                    adb_serial: str | None = None, targets_file=None, max_accuracy_gap: float = 1.0) -> dict:
    """``edgeeas validate`` on ``folder/model.tflite`` with its manifest, under the target's own
    measurement protocol; the result (``passed``, ``failures``) is stored as validation.json."""
    from .commands.validate import run_validation

    folder = Path(folder)
    manifest = _read_json(folder / MANIFEST) or {}
    target = target or manifest.get("target") or "host"
    r = run_validation(folder / MODEL, target_name=target, adb_serial=adb_serial, targets_file=targets_file,
                       manifest_path=folder / MANIFEST, data=data, images=images,
                       max_accuracy_gap=max_accuracy_gap, protocol=target_protocol(target))
    r["model_sha256"] = sha256_file(folder / MODEL)
    r["validated"] = _now()
    budget = manifest.get("budget") or {}
    if budget.get("kind") == "latency_ms" and budget.get("value"):
        r["budget_utilization"] = round(r["latency_ms"] / float(budget["value"]), 4)
    _write_json(folder / VALIDATION, r)
    return r


def find_models(out_dirs, target: str) -> list[dict]:
    """Every complete model folder under ``OUT/TARGET/`` (temporary folders skipped): dicts
    with ``folder``, ``manifest`` and ``validation`` (None unless it matches the model file)."""
    found = []
    for out in out_dirs:
        root = Path(out) / _fs_name(target)
        if not root.is_dir():
            continue
        for mf in sorted(root.rglob(MANIFEST)):
            rel = mf.parent.relative_to(root)
            if any(part.startswith(".") for part in rel.parts) or not (mf.parent / MODEL).is_file():
                continue
            m = _read_json(mf)
            if not m or m.get("format") != MANIFEST_FORMAT:
                continue
            v = _read_json(mf.parent / VALIDATION)
            if v and v.get("model_sha256") != (m.get("files", {}).get(MODEL) or {}).get("sha256"):
                v = None  # validated another model that once lived here
            found.append({"folder": mf.parent, "rel": rel, "manifest": m, "validation": v})
    return found


# ---- deploy -------------------------------------------------------------------------------------
_DEPLOY_KEYS = {"target", "strategy", "scenarios", "supernet", "generator", "data", "out", "remote_dir",
                "local_dir", "adb_serial", "max_accuracy_gap", "recal_images", "calib_images", "latency_margin"}


def load_deploy_config(path: Path) -> dict:
    from .utils import read_yaml

    path = Path(path)
    cfg = read_yaml(path, "deploy config", EdgeeasUsageError, "copy deploy.example.yaml to start")
    if not isinstance(cfg, dict):
        raise EdgeeasError(f"{path}: expected a mapping with 'target' and 'scenarios', got {type(cfg).__name__}")
    unknown = sorted(set(cfg) - _DEPLOY_KEYS)
    if unknown:
        raise EdgeeasError(f"{path}: unknown key {unknown[0]!r}; expected some of: {', '.join(sorted(_DEPLOY_KEYS))}")
    scen = cfg.get("scenarios")
    if not isinstance(scen, list) or not scen:
        raise EdgeeasError(f"{path}: 'scenarios' must be a non-empty list of {{superclass: NAME, budget: 20ms}}")
    out = []
    for i, s in enumerate(scen):
        if not isinstance(s, dict) or "budget" not in s or not ({"superclass", "superclasses"} & set(s)):
            raise EdgeeasError(f"{path}: scenario {i + 1} must have 'superclass' (or 'superclasses') and 'budget'")
        extra = sorted(set(s) - {"superclass", "superclasses", "budget"})
        if extra:
            raise EdgeeasError(f"{path}: scenario {i + 1} has unknown key {extra[0]!r}")
        names = s.get("superclasses", s.get("superclass"))
        names = [names] if isinstance(names, str) else list(names or [])
        if not names or not all(isinstance(n, str) for n in names):
            raise EdgeeasError(f"{path}: scenario {i + 1}: superclasses must be names")
        out.append({"superclasses": names, "budget": str(s["budget"])})
    cfg["scenarios"] = out
    cfg.setdefault("target", "host")
    cfg.setdefault("strategy", "generator")
    return cfg


def _push(target_name: str, folder: Path, rel: Path, cfg: dict, targets_file=None) -> str:
    """Copy (host) or push (adb) a passing model folder; returns where it went."""
    files = [f for f in (MODEL, MANIFEST, VALIDATION) if (folder / f).is_file()]
    if target_name == "host" and not cfg.get("adb_serial"):
        dest = Path(cfg.get("local_dir") or "deploy") / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = _mkdtemp(dest)
        try:
            for f in files:
                shutil.copy2(folder / f, tmp / f)
            if dest.exists():
                shutil.rmtree(dest)
            os.rename(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return str(dest)
    from .targets import resolve_target

    t = resolve_target(target_name, adb_serial=cfg.get("adb_serial"), targets_file=targets_file)
    remote = f"{cfg.get('remote_dir') or '/data/local/tmp/edgeeas'}/{rel.as_posix()}"
    t.device.mkdir(remote)
    for f in files:
        t.device.push(folder / f, f"{remote}/.{f}.part")
        t.device.shell(["mv", f"{remote}/.{f}.part", f"{remote}/{f}"], check=True)
    return f"{t.serial}:{remote}"


def deploy(config_path: Path, *, out: str | None = None, force: bool = False, data=None, targets_file=None,
           log: Callable[[str], None] | None = None, progress: bool = False) -> dict:
    """specialize + validate every scenario of ``deploy.yaml``, then push the passing ones.
    Returns ``{"deployed": [...], "refused": [...]}``; a failing model is never pushed."""
    log = log or (lambda m: None)
    cfg = load_deploy_config(config_path)
    target = str(cfg["target"])
    sc_cfg = SpecializeConfig(target=target, strategy=str(cfg["strategy"]), supernet=cfg.get("supernet"),
                              generator=cfg.get("generator"), data=data or cfg.get("data"),
                              out=out or cfg.get("out") or "out", force=force,
                              latency_margin=str(cfg.get("latency_margin", "auto")),
                              **{k: int(cfg[k]) for k in ("recal_images", "calib_images") if k in cfg})
    from .search import parse_budget

    budgets = [parse_budget(s["budget"]) for s in cfg["scenarios"]]  # bad budgets fail before any loading
    sp = Specializer(sc_cfg, log=log)
    scenarios = []
    for s, b in zip(cfg["scenarios"], budgets):
        for sc in parse_scenarios(sp.ds, ["+".join(s["superclasses"])], False, [b]):
            if sc not in scenarios:
                scenarios.append(sc)
    plans = sp.plan(scenarios)
    report = {"target": target, "deployed": [], "refused": []}
    bar = _bar(plans, progress, "deploy")
    for plan in bar:
        m = sp.build(plan)
        v = validate_folder(plan.dest, target, data=sc_cfg.data, adb_serial=cfg.get("adb_serial"),
                            targets_file=targets_file, max_accuracy_gap=float(cfg.get("max_accuracy_gap", 1.0)))
        rel = plan.scenario.relpath
        if not v["passed"]:
            why = "; ".join(v["failures"])
            log(f"refusing to deploy {plan.scenario}: {why}")
            report["refused"].append({"scenario": str(plan.scenario), "folder": str(plan.dest), "why": why})
            continue
        where = _push(target, plan.dest, rel, cfg, targets_file)
        log(f"deployed {plan.scenario} ({m.get('arch')}, {v['latency_ms']:.3f} ms, "
            f"{v['accuracy_device_int8']:.1f}%) to {where}")
        report["deployed"].append({"scenario": str(plan.scenario), "folder": str(plan.dest), "to": where,
                                   "latency_ms": v["latency_ms"], "accuracy": v["accuracy_device_int8"]})
    return report


def _bar(items, progress: bool, desc: str):
    if progress and len(items) > 1:
        from tqdm import tqdm

        return tqdm(items, desc=desc, unit="scenario", dynamic_ncols=True)
    return items


# ---- report ---------------------------------------------------------------------------------------
def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points no other point beats on both latency (lower) and accuracy (higher), by latency."""
    front, best = [], -np.inf
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best:
            front.append((x, y))
            best = y
    return front


STRATEGY_STYLE = {"generator": ("tab:red", "o"), "evolution": ("tab:blue", "s"), "random": ("tab:gray", "^"),
                  "uniform": ("tab:green", "D")}


def plot_pareto(groups: dict[str, list[tuple[float, float]]], path: Path, title: str,
                xlabel: str = "measured latency (ms)", ylabel: str = "int8 accuracy (%)") -> None:
    """Scatter per strategy plus its Pareto front, written atomically as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .utils import save_figure

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for name in sorted(groups, key=lambda n: (n not in STRATEGY_STYLE, list(STRATEGY_STYLE).index(n)
                                              if n in STRATEGY_STYLE else 0, n)):
        pts = groups[name]
        if not pts:
            continue
        color, marker = STRATEGY_STYLE.get(name, (None, "x"))
        xs, ys = zip(*pts)
        ax.scatter(xs, ys, s=18, alpha=0.45, color=color, marker=marker)
        fx, fy = zip(*pareto_front(pts))
        ax.step(fx, fy, where="post", color=color, lw=1.6, label=f"{name} ({len(pts)} models)")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    save_figure(fig, path)


def build_report(target: str, out_dirs, dest: Path | None = None, *, measure: bool = False, data=None,
                 log: Callable[[str], None] | None = None) -> dict:
    """``report.md`` and ``pareto.png`` for every model of ``target`` under ``out_dirs``.

    Latency is the measured one from validation.json; ``measure`` validates models that have
    none yet.  Models without a measurement are listed, and left out of the plot."""
    log = log or (lambda m: None)
    out_dirs = [Path(o) for o in out_dirs]
    dest = Path(dest) if dest else out_dirs[0] / _fs_name(target)
    models = find_models(out_dirs, target)
    if not models:
        raise EdgeeasUsageError(f"no models for target {target!r} under {', '.join(map(str, out_dirs))}: "
                                f"run `edgeeas specialize --target {target} ...` first")
    if measure:
        for m in models:
            if m["validation"] is None:
                log(f"validating {m['folder']}")
                m["validation"] = validate_folder(m["folder"], target, data=data)
    groups: dict[str, list[tuple[float, float]]] = {}
    rows = []
    for m in models:
        man, v = m["manifest"], m["validation"]
        acc = man.get("accuracy", {})
        lat = v["latency_ms"] if v else None
        if lat is not None:
            groups.setdefault(man.get("strategy", "?"), []).append((lat, acc.get("host_int8")))
        rows.append((man, v, m["folder"]))
    dest.mkdir(parents=True, exist_ok=True)
    png = dest / "pareto.png"
    if groups:
        plot_pareto(groups, png, f"target {target}: measured latency vs int8 within-scenario accuracy")

    def rel(p: Path) -> str:
        return os.path.relpath(p, dest)

    def f(x, fmt="{:.2f}"):
        return "-" if x is None else fmt.format(x)

    lines = [f"# edgeeas models for target `{target}`", "",
             f"{len(rows)} models; {sum(1 for _, v, _ in rows if v)} validated on the target. "
             f"Latency: measured on the target by `edgeeas validate` "
             f"({next((v.get('statistic') for _, v, _ in rows if v), 'median')}); "
             "accuracy: int8 on the scenario's test images.", ""]
    if groups:
        lines += [f"![Pareto plot]({rel(png)})", ""]
        lines += ["| strategy | models | mean int8 acc % | mean measured ms | within budget |",
                  "|---|---:|---:|---:|---:|"]
        for s in sorted(groups):
            ms = [(man, v) for man, v, _ in rows if man.get("strategy") == s and v]
            ok = sum(1 for _, v in ms if v["passed"])
            lines.append(f"| {s} | {len(ms)} | {np.mean([man['accuracy']['host_int8'] for man, _ in ms]):.2f} | "
                         f"{np.mean([v['latency_ms'] for _, v in ms]):.3f} | {ok}/{len(ms)} |")
        lines.append("")
    lines += ["| scenario | budget | strategy | architecture | MAdds (M) | params | predicted ms | measured ms | "
              "float % | int8 % | device % | validation | files |",
              "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for man, v, folder in sorted(rows, key=lambda r: (r[0].get("scenario", ""), r[0].get("budget", {}).get("value", 0),
                                                      r[0].get("strategy", ""))):
        acc = man.get("accuracy", {})
        status = "not validated" if not v else ("PASS" if v["passed"] else "FAIL: " + "; ".join(v["failures"]))
        lines.append(
            f"| {man.get('scenario')} | {man.get('budget', {}).get('text')} | {man.get('strategy')} | "
            f"`{man.get('arch')}` | {f(man.get('madds_m'))} | {man.get('params')} | "
            f"{f(man.get('predicted_latency_ms'), '{:.3f}')} | {f(v['latency_ms'] if v else None, '{:.3f}')} | "
            f"{f(acc.get('host_float'))} | {f(acc.get('host_int8'))} | "
            f"{f(v['accuracy_device_int8'] if v else None)} | {status.replace('|', '/')} | "
            f"[model]({rel(folder / MODEL)}) · [manifest]({rel(folder / MANIFEST)}) |")
    from .utils import atomic_write_text

    md = dest / "report.md"
    atomic_write_text(md, "\n".join(lines) + "\n")
    return {"report": str(md), "plot": str(png) if groups else None, "models": len(rows),
            "validated": sum(1 for _, v, _ in rows if v)}
