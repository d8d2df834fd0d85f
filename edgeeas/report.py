"""The report: a Pareto plot (measured latency vs int8 accuracy, per strategy) and a Markdown
table linking every emitted model of a target (``edgeeas report``).

Models are the complete folders under ``OUT/TARGET/`` (:func:`find_models`); latency is the
measured one from their ``validation.json`` (``--measure`` validates those without one).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import EdgeeasError, EdgeeasUsageError
from .manifest import ModelManifest, read_manifest
from .validation import MANIFEST, MODEL, VALIDATION, validate_folder

__all__ = ["find_models", "pareto_front", "plot_pareto", "strategy_style", "build_report"]


def _read_validation(path: Path) -> dict | None:
    import json

    try:
        d = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None


def find_models(out_dirs, target: str) -> list[dict]:
    """Every complete model folder under ``OUT/TARGET/`` for each of ``out_dirs``.

    Temporary folders (names starting with '.') and folders whose manifest is not an edgeeas
    model manifest (no ``format``, or unreadable) are skipped.

    Returns:
        Dicts with ``folder`` (Path), ``rel`` (relative to ``OUT/TARGET``), ``manifest``
        (:class:`~edgeeas.manifest.ModelManifest`) and ``validation`` (the validation.json dict,
        None unless it validated this very model file).
    """
    from .targets import TargetStore

    found = []
    for out in out_dirs:
        root = Path(out) / TargetStore.folder_name(target)
        if not root.is_dir():
            continue
        for mf in sorted(root.rglob(MANIFEST)):
            rel = mf.parent.relative_to(root)
            if any(part.startswith(".") for part in rel.parts) or not (mf.parent / MODEL).is_file():
                continue
            try:
                m = read_manifest(mf, strict=True)
            except EdgeeasError:  # not an edgeeas model, or unreadable: not listed
                continue
            v = _read_validation(mf.parent / VALIDATION)
            if v and v.get("model_sha256") != (m.files.get(MODEL) or {}).get("sha256"):
                v = None  # validated another model that once lived here
            found.append({"folder": mf.parent, "rel": rel, "manifest": m, "validation": v})
    return found


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points ``(latency, accuracy)`` no other point beats on both latency (lower) and accuracy
    (higher), sorted by latency."""
    front, best = [], -np.inf
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best:
            front.append((x, y))
            best = y
    return front


def strategy_style(name: str) -> tuple[str | None, str]:
    """``(matplotlib colour, marker)`` a strategy registered for plots; ``(None, "x")`` otherwise."""
    from .search import STRATEGIES

    info = STRATEGIES.get(name)
    return info.style if info else (None, "x")


def plot_pareto(groups: dict[str, list[tuple[float, float]]], path: Path, title: str,
                xlabel: str = "measured latency (ms)", ylabel: str = "int8 accuracy (%)") -> None:
    """Scatter per strategy plus its Pareto front, written atomically as a PNG.

    ``groups``: strategy name -> ``[(latency ms, accuracy %)]``; registered strategies come
    first, in registration order, in their registered style."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .search import list_strategies
    from .utils import save_figure

    order = list_strategies()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for name in sorted(groups, key=lambda n: (n not in order, order.index(n) if n in order else 0, n)):
        pts = groups[name]
        if not pts:
            continue
        color, marker = strategy_style(name)
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


def _budget_key(man: ModelManifest) -> float:
    b = man.budget
    if b is None:
        return 0.0
    return b.latency_ms if b.latency_ms is not None else b.madds / 1e6


def build_report(target: str, out_dirs, dest: Path | None = None, *, measure: bool = False, data=None,
                 log: Callable[[str], None] | None = None) -> dict:
    """``report.md`` and ``pareto.png`` for every model of ``target`` under ``out_dirs``.

    Latency is the measured one from validation.json; ``measure`` validates models that have
    none yet.  Models without a measurement are listed, and left out of the plot.

    Returns:
        ``{"report": path, "plot": path or None, "models": count, "validated": count}``.

    Raises:
        EdgeeasUsageError: no model of ``target`` under ``out_dirs``.
    """
    from .targets import TargetStore
    from .utils import atomic_write_text

    log = log or (lambda m: None)
    out_dirs = [Path(o) for o in out_dirs]
    dest = Path(dest) if dest else out_dirs[0] / TargetStore.folder_name(target)
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
    rows: list[tuple[ModelManifest, dict | None, Path]] = []
    for m in models:
        man, v = m["manifest"], m["validation"]
        acc = man.accuracy
        if v and v["latency_ms"] is not None:
            groups.setdefault(man.strategy or "?", []).append((v["latency_ms"], acc.host_int8_pct if acc else None))
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
            ms = [(man, v) for man, v, _ in rows if man.strategy == s and v]
            ok = sum(1 for _, v in ms if v["passed"])
            lines.append(f"| {s} | {len(ms)} | {np.mean([man.accuracy.host_int8_pct for man, _ in ms]):.2f} | "
                         f"{np.mean([v['latency_ms'] for _, v in ms]):.3f} | {ok}/{len(ms)} |")
        lines.append("")
    lines += ["| scenario | budget | strategy | architecture | MAdds (M) | params | predicted ms | measured ms | "
              "float % | int8 % | device % | validation | files |",
              "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for man, v, folder in sorted(rows, key=lambda r: (r[0].scenario or "", _budget_key(r[0]), r[0].strategy or "")):
        acc = man.accuracy
        status = "not validated" if not v else ("PASS" if v["passed"] else "FAIL: " + "; ".join(v["failures"]))
        lines.append(
            f"| {man.scenario} | {man.budget.text if man.budget else None} | {man.strategy} | "
            f"`{man.arch}` | {f(man.madds_m)} | {man.params} | "
            f"{f(man.predicted_latency_ms, '{:.3f}')} | {f(v['latency_ms'] if v else None, '{:.3f}')} | "
            f"{f(acc.host_float_pct if acc else None)} | {f(acc.host_int8_pct if acc else None)} | "
            f"{f(v['accuracy_device_int8'] if v else None)} | {status.replace('|', '/')} | "
            f"[model]({rel(folder / MODEL)}) · [manifest]({rel(folder / MANIFEST)}) |")
    md = dest / "report.md"
    atomic_write_text(md, "\n".join(lines) + "\n")
    return {"report": str(md), "plot": str(png) if groups else None, "models": len(rows),
            "validated": sum(1 for _, v, _ in rows if v)}
