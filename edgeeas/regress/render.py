"""The reports of a run: JUnit XML (for CI), ``regress.json``, and an HTML page with its plots.

    paths = write_reports(res, "regress-out")   # {"junit": ..., "json": ..., "html": ...}

The JUnit file has one ``<testsuite>`` per device and one ``<testcase>`` per device x model x
metric (``failure`` for a regression, ``error`` for a device that failed); warnings go to
``<system-err>``.  The HTML page embeds its PNG plots: latency against the baseline per device,
accuracy deltas, and predicted (manifest) against measured latency.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .run import RegressResult

__all__ = ["write_reports", "render_junit", "render_html"]


def write_reports(res: RegressResult, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``junit.xml``, ``regress.json`` and ``report.html`` (plots embedded) in ``out_dir``, atomically.

    Returns:
        ``{"junit": path, "json": path, "html": path}``; ``out_dir`` is created if needed.
    """
    from ..utils import atomic_write_text

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"junit": out / "junit.xml", "json": out / "regress.json", "html": out / "report.html"}
    atomic_write_text(paths["junit"], render_junit(res))
    atomic_write_text(paths["json"], json.dumps(res.to_dict(), indent=1, sort_keys=True, default=str) + "\n")
    atomic_write_text(paths["html"], render_html(res, out))
    return paths


def render_junit(res: RegressResult) -> str:
    """The JUnit XML text: one <testsuite> per device, one <testcase> per device x model x metric."""
    import xml.etree.ElementTree as ET

    c = res.counts()
    root = ET.Element("testsuites", name="edgeeas regress", tests=str(len(res.cases)), failures=str(c["fail"]),
                      errors=str(c["error"]), skipped=str(c["inconclusive"]), time=f"{res.seconds:.3f}")
    for name, run in res.devices.items():
        cases = [x for x in res.cases if x.device == name]
        suite = ET.SubElement(root, "testsuite", name=f"regress.{name}", tests=str(len(cases)),
                              failures=str(sum(x.status == "fail" for x in cases)),
                              errors=str(sum(x.status == "error" for x in cases)),
                              skipped=str(sum(x.status == "inconclusive" for x in cases)), time=f"{run.seconds:.3f}")
        props = ET.SubElement(suite, "properties")
        for k, v in (("kind", run.kind), ("serial", run.serial), ("attempts", run.attempts),
                     ("protocol", json.dumps(run.protocol, sort_keys=True)),
                     ("interpreter_version", (run.fingerprint or {}).get("interpreter_version"))):
            ET.SubElement(props, "property", name=k, value=str(v))
        for x in cases:
            tc = ET.SubElement(suite, "testcase", classname=f"regress.{name}", name=f"{x.model} [{x.metric}]",
                               time=f"{x.seconds:.3f}")
            if x.status == "fail":
                ET.SubElement(tc, "failure", message=x.message, type=f"{x.metric}-regression").text = x.message
            elif x.status == "error":
                ET.SubElement(tc, "error", message=x.message, type="infrastructure").text = x.message
            elif x.status == "inconclusive":  # neither a pass nor a regression: too noisy to tell
                ET.SubElement(tc, "skipped", message=x.message, type="inconclusive").text = x.message
            elif x.message:
                ET.SubElement(tc, "system-out").text = x.message
        mine = [w for w in res.warnings if name in w] or []
        if mine:
            ET.SubElement(suite, "system-err").text = "\n".join("WARNING: " + w for w in mine)
    if res.warnings:
        ET.SubElement(root, "system-err").text = "\n".join("WARNING: " + w for w in res.warnings)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _short(key: str, n: int = 28) -> str:
    key = key.removesuffix("/model.tflite").removesuffix(".tflite")
    return key if len(key) <= n else "…" + key[-(n - 1):]


def _png(fig) -> str:
    import base64
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _plots(res: RegressResult) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    devs = list(res.devices)
    models = list(res.models)
    if not devs or not models:
        return out
    by = {(c.device, c.model, c.metric): c for c in res.cases}
    # 1. latency per device: baseline vs now, bar = statistic, error bar up to p90, tick = allowed
    fig, axes = plt.subplots(1, len(devs), figsize=(max(4.5, 0.9 * len(models) + 2) * len(devs), 3.6), squeeze=False)
    fig.subplots_adjust(wspace=0.25)
    for ax, d in zip(axes[0], devs):
        run = res.devices[d]
        bdev = (res.baseline or {}).get("devices", {}).get(d, {}).get("models", {})
        x = np.arange(len(models))
        w = 0.38
        for i, m in enumerate(models):
            b = bdev.get(m, {}).get("latency")
            now = run.latency.get(m)
            if b:
                ax.bar(i - w / 2, b["value_ms"], w, color="#9aa5b1", yerr=[[0], [max(0, b["p90_ms"] - b["median_ms"])]],
                       capsize=3, label="baseline" if i == 0 else None)
            if now:
                case = by.get((d, m, "latency"))
                col = "#d64545" if case and case.status == "fail" else "#2f80ed"
                ax.bar(i + w / 2 if b else i, now["value_ms"], w, color=col,
                       yerr=[[0], [max(0, now["p90_ms"] - now["median_ms"])]], capsize=3,
                       label="now" if i == 0 else None)
                if case and case.base is not None and case.details.get("budget_ms"):
                    ax.plot([i - w, i + w], [case.details["budget_ms"]] * 2, color="k", lw=1,
                            ls="--", label="allowed" if i == 0 else None)
            elif res.devices[d].error:
                ax.text(i, 0, "error", ha="center", va="bottom", color="#d64545", fontsize=8, rotation=90)
        ax.set_xticks(x, [_short(m) for m in models], rotation=30, ha="right", fontsize=7)
        tops = [r["value_ms"] for r in list(run.latency.values()) + [v.get("latency") or {} for v in bdev.values()]
                if r.get("value_ms")]
        if tops:  # p90 bars of a burst-ridden run may reach 10x the median: keep the medians readable
            ax.set_ylim(0, 1.8 * max(tops))
        if ax is axes[0][0]:
            ax.set_ylabel(f"latency ms ({(run.protocol or {}).get('statistic', 'median')}; bar to p90)")
        ax.set_title(f"{d}" + ("  [DEVICE ERROR]" if run.error else ""), fontsize=9,
                     color="#d64545" if run.error else "k")
        ax.legend(fontsize=7, loc="upper left")
    out.append(("Latency against the baseline (error bars: median to p90; dashed: allowed)", _png(fig)))
    # 2. accuracy deltas
    if res.baseline is not None:
        fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(models) * len(devs) + 2), 3.2))
        w = 0.8 / len(devs)
        for j, d in enumerate(devs):
            vals, edges = [], []
            for m in models:
                c = by.get((d, m, "accuracy"))
                vals.append(c.details.get("delta_pp", 0.0) if c and c.status in ("pass", "fail") else np.nan)
                edges.append("#d64545" if c and c.status == "fail" else "none")
            bars = ax.bar(np.arange(len(models)) + (j - (len(devs) - 1) / 2) * w, vals, w, color="C%d" % j,
                          label=d, edgecolor=edges, linewidth=2)
            for bar, v, edge in zip(bars, vals, edges):
                if edge != "none":
                    bar.set_hatch("//")
        ax.axhline(-res.tolerances.accuracy_pp, color="k", ls="--", lw=1, label="tolerance")
        ax.axhline(0, color="#555", lw=0.6)
        ax.set_xticks(np.arange(len(models)), [_short(m) for m in models], rotation=30, ha="right", fontsize=7)
        ax.set_ylabel("accuracy delta (pp)")
        ax.legend(fontsize=7)
        out.append(("Accuracy now minus baseline (percentage points; agreement with the baseline's top-1 for "
                    "models without a manifest)", _png(fig)))
    # 3. predicted vs measured
    pts = [(d, m, mi["manifest"]["predicted_latency_ms"], res.devices[d].latency[m]["value_ms"])
           for m, mi in res.models.items() if (mi.get("manifest") or {}).get("predicted_latency_ms")
           for d in devs if m in res.devices[d].latency]
    if pts:
        fig, ax = plt.subplots(figsize=(4.6, 4.2))
        for j, d in enumerate(devs):
            p = [(a, b) for dd, _, a, b in pts if dd == d]
            if p:
                ax.scatter(*zip(*p), label=d, s=22)
        hi = max(max(a, b) for _, _, a, b in pts) * 1.1
        ax.plot([0, hi], [0, hi], "k--", lw=0.8)
        ax.set_xlabel("predicted latency (ms, manifest)")
        ax.set_ylabel("measured latency (ms)")
        ax.legend(fontsize=7)
        out.append(("Predicted (manifest) vs measured latency", _png(fig)))
    return out


def render_html(res: RegressResult, out_dir: Path | None = None) -> str:
    """The HTML report as one self-contained page (verdict, warnings, plots as PNG data URLs,
    checks, devices); ``out_dir`` is unused and kept for callers that pass it."""
    import html

    e = html.escape
    c = res.counts()
    code = res.exit_code
    verdict = {0: ("PASS", "#1e8e3e"), 1: ("REGRESSION", "#d64545"), 2: ("ERROR", "#b7791f"),
               3: ("INCONCLUSIVE", "#8a6d00")}[code]
    if res.mode == "update":
        verdict = ("BASELINE RECORDED" if code == 0 else "BASELINE NOT RECORDED", verdict[1])
    rows = []
    for x in res.cases:
        col = {"pass": "#1e8e3e", "fail": "#d64545", "inconclusive": "#8a6d00", "error": "#b7791f",
               "recorded": "#555"}[x.status]
        base = "" if x.base is None else f"{x.base:.4g}"
        now = "" if x.now is None else f"{x.now:.4g}"
        rows.append(f"<tr><td>{e(x.device)}</td><td>{e(x.model)}</td><td>{x.metric}</td>"
                    f"<td style='color:{col};font-weight:bold'>{x.status.upper()}</td><td>{base}</td><td>{now}</td>"
                    f"<td>{e(x.message)}</td></tr>")
    warn = "".join(f"<li>{e(w)}</li>" for w in res.warnings)
    devs = []
    for n, d in res.devices.items():
        fp = d.fingerprint or {}
        devs.append(f"<tr><td>{e(n)}</td><td>{e(d.kind)}</td><td>{e(str(d.serial or ''))}</td>"
                    f"<td>{e(str((d.protocol or {}).get('threads')))}</td>"
                    f"<td>{e(str(fp.get('interpreter')))} {e(str(fp.get('interpreter_version')))}</td>"
                    f"<td>{e(str(fp.get('cpu_model') or fp.get('model') or ''))}</td><td>{d.seconds:.1f}</td>"
                    f"<td style='color:#d64545'>{e(d.error or '')}</td></tr>")
    plots = "".join(f"<figure><img alt='{e(t)}' src='data:image/png;base64,{b}'><figcaption>{e(t)}</figcaption>"
                    f"</figure>" for t, b in _plots(res))
    tol = res.tolerances
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>edgeeas regress: {verdict[0]}</title>
<style>body{{font-family:sans-serif;margin:1.5em;color:#222}} table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 7px;text-align:left}} th{{background:#f3f3f3}}
.verdict{{font-size:1.6em;font-weight:bold;color:{verdict[1]}}} .warn{{background:#fff4e5;border:2px solid #b7791f;
padding:.5em 1em}} figure{{display:inline-block;margin:1em 1em 0 0}} img{{max-width:100%}}
figcaption{{font-size:12px;color:#555}}</style></head><body>
<h1>edgeeas regress</h1>
<p class="verdict">{verdict[0]} <small>(exit {code}: {c['pass']} passed, {c['fail']} failed, {c['inconclusive']} inconclusive, {c['error']} errors)</small></p>
<p>farm <code>{e(res.farm)}</code>, baseline <code>{e(res.baseline_path)}</code>, {len(res.devices)} device(s) x
{len(res.models)} model(s), {res.seconds:.1f} s. Latency allowed: +{tol.latency_rel * 100:g} % over the baseline,
judged by a noise-aware verdict ({tol.confidence * 100:g} % interval of the median of pass values, at most
{tol.max_passes} passes: PASS, FAIL or INCONCLUSIVE); accuracy allowed: -{tol.accuracy_pp:g} pp.</p>
{f'<div class="warn"><b>Warnings</b><ul>{warn}</ul></div>' if warn else ''}
<h2>Plots</h2>{plots}
<h2>Checks</h2><table><tr><th>device</th><th>model</th><th>metric</th><th>status</th><th>baseline</th><th>now</th>
<th>detail</th></tr>{''.join(rows)}</table>
<h2>Devices</h2><table><tr><th>name</th><th>kind</th><th>serial</th><th>threads</th><th>interpreter</th><th>CPU / model</th>
<th>seconds</th><th>error</th></tr>{''.join(devs)}</table>
<p><small>command: <code>{e(res.command)}</code></small></p>
</body></html>
"""
