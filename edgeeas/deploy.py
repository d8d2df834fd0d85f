"""Deploy: specialize and validate every scenario of ``deploy.yaml``, push only the passing models.

``deploy.yaml`` (see ``deploy.example.yaml``)::

    target: pixel                 # host (default), a targets.yaml name, or an adb serial
    strategy: generator           # any registered strategy (edgeeas.search.list_strategies())
    scenarios:
      - {superclass: vehicles_1, budget: 20ms}
      - {superclasses: [fish, flowers], budget: 8M}
    # optional: supernet, generator, data, out, remote_dir, local_dir, adb_serial,
    #           max_accuracy_gap (points), min_agreement (%), recal_images, calib_images, latency_margin

A model that fails validation is never pushed; the host "pushes" by copying into
``local_dir`` (default ``./deploy``), adb targets into ``remote_dir`` (default
``/data/local/tmp/edgeeas``), both as ``SCENARIO/BUDGET/`` (:meth:`edgeeas.targets.Target.push`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from .errors import EdgeeasError, EdgeeasUsageError
from .validation import (DEFAULT_MAX_ACCURACY_GAP, DEFAULT_MIN_AGREEMENT, MANIFEST, MODEL, VALIDATION,
                         validate_folder)

__all__ = ["deploy", "load_deploy_config"]

_DEPLOY_KEYS = {"target", "strategy", "scenarios", "supernet", "generator", "data", "out", "remote_dir",
                "local_dir", "adb_serial", "max_accuracy_gap", "min_agreement", "recal_images", "calib_images", "latency_margin"}


def load_deploy_config(path: Path) -> dict:
    """Read and check ``deploy.yaml``.

    Returns:
        The mapping, with ``scenarios`` as ``[{"superclasses": [names], "budget": "20ms"}]`` and
        ``strategy`` (default ``generator``) filled in; without ``target`` the device is
        ``adb_serial``, else ``$ANDROID_SERIAL``, else the host (:func:`edgeeas.targets.choose_device`).

    Raises:
        ConfigError (an EdgeeasUsageError): the file cannot be read, or does not follow
            :class:`edgeeas.config.DeployConfig` (a wrong type or value, an unknown key, a
            malformed scenario or budget): one line with the line number.
    """
    from .config import DeployConfig, load_config

    # the whole file against its schema, before any work (one line with the line number)
    c = load_config(DeployConfig, path, "deploy config", "copy deploy.example.yaml to start")
    cfg = c.model_dump(exclude_none=True)
    cfg["scenarios"] = [{"superclasses": s.names(), "budget": s.budget} for s in c.scenarios]
    return cfg


def _push(target_name: str, folder: Path, rel: Path, cfg: dict, targets_file=None) -> str:
    """Copy (host) or push (adb) a passing model folder's model, manifest and validation;
    returns where it went (a local path, or ``SERIAL:/remote/path``)."""
    from .targets import resolve_target

    files = [f for f in (MODEL, MANIFEST, VALIDATION) if (folder / f).is_file()]
    t = resolve_target(target_name, adb_serial=cfg.get("adb_serial"), targets_file=targets_file)
    root = cfg.get("local_dir") if t.is_local else cfg.get("remote_dir")
    return t.push(folder, rel.as_posix(), root=root or None, files=files)


def progress_bar(items, progress: bool, desc: str):
    """``items`` wrapped in a tqdm bar (unit: scenario) when ``progress`` and there are several."""
    if progress and len(items) > 1:
        from tqdm import tqdm

        return tqdm(items, desc=desc, unit="scenario", dynamic_ncols=True)
    return items


def deploy(config_path: Path, *, out: str | None = None, force: bool = False, data=None, targets_file=None,
           log: Callable[[str], None] | None = None, progress: bool = False) -> dict:
    """Specialize + validate every scenario of ``deploy.yaml``, then push the passing ones.

    Args:
        config_path: ``deploy.yaml`` (:func:`load_deploy_config`).
        out: output root for the model folders (default: the config's ``out``, else ``out``).
        force: replace model folders made by another request.
        data, targets_file: the dataset and ``targets.yaml`` (default: the config's / the usual ones).

    Returns:
        ``{"target", "deployed": [{scenario, folder, to, latency_ms, accuracy (%)}],
        "refused": [{scenario, folder, why}]}``; a model whose validation is not PASS (FAIL, or
        INCONCLUSIVE: the latency could not be told apart from the budget, :mod:`edgeeas.verdict`)
        is never pushed.

    Raises:
        What loading the config, :class:`edgeeas.specialize.Specializer` and validation raise
        (one-line errors); a bad budget fails before any loading.
    """
    from .search import parse_budget
    from .specialize import SpecializeConfig, Specializer, parse_scenarios

    from .targets import TargetStore, check_store_kind, choose_device

    log = log or (lambda m: None)
    cfg = load_deploy_config(config_path)
    # the one device rule (adb_serial, the target's name, $ANDROID_SERIAL, else the host), and a
    # table measured on another kind of device is refused before any work
    choice = choose_device(cfg.get("target"), adb_serial=cfg.get("adb_serial"), targets_file=targets_file)
    check_store_kind(TargetStore.named(choice.name), choice.kind, choice.describe())
    target = choice.name
    sc_cfg = SpecializeConfig(target=target, strategy=str(cfg["strategy"]), supernet=cfg.get("supernet"),
                              generator=cfg.get("generator"), data=data or cfg.get("data"),
                              out=out or cfg.get("out") or "out", force=force,
                              latency_margin=str(cfg.get("latency_margin", "auto")),
                              **{k: int(cfg[k]) for k in ("recal_images", "calib_images") if k in cfg})
    budgets = [parse_budget(s["budget"]) for s in cfg["scenarios"]]  # bad budgets fail before any loading
    sp = Specializer(sc_cfg, log=log)
    scenarios = []
    for s, b in zip(cfg["scenarios"], budgets):
        for sc in parse_scenarios(sp.ds, ["+".join(s["superclasses"])], False, [b]):
            if sc not in scenarios:
                scenarios.append(sc)
    plans = sp.plan(scenarios)
    report = {"target": target, "deployed": [], "refused": []}
    for plan in progress_bar(plans, progress, "deploy"):
        m = sp.build(plan)
        v = validate_folder(plan.dest, target, data=sc_cfg.data, adb_serial=cfg.get("adb_serial"),
                            targets_file=targets_file,
                            max_accuracy_gap=float(cfg.get("max_accuracy_gap", DEFAULT_MAX_ACCURACY_GAP)),
                            min_agreement=float(cfg.get("min_agreement", DEFAULT_MIN_AGREEMENT)))
        rel = plan.scenario.relpath
        if not v["passed"]:  # FAIL, or INCONCLUSIVE: too noisy to tell within the cap of passes
            why = "; ".join(v["failures"] + v.get("inconclusive", []))
            log(f"refusing to deploy {plan.scenario}: {why}")
            report["refused"].append({"scenario": str(plan.scenario), "folder": str(plan.dest), "why": why})
            continue
        where = _push(target, plan.dest, rel, cfg, targets_file)
        log(f"deployed {plan.scenario} ({m.arch}, {v['latency_ms']:.3f} ms, "
            f"{v['accuracy_device_int8']:.1f}%) to {where}")
        report["deployed"].append({"scenario": str(plan.scenario), "folder": str(plan.dest), "to": where,
                                   "latency_ms": v["latency_ms"], "accuracy": v["accuracy_device_int8"]})
    return report
