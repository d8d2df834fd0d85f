"""The predicted-vs-measured PNG written beside a target's ``predictor.json``."""
from __future__ import annotations

from pathlib import Path

__all__ = ["plot_predicted_vs_measured"]


def plot_predicted_vs_measured(per: list[dict], out: dict, path: Path) -> None:
    """Scatter of measured (x, ms) against held-out predicted and raw sum-of-rows (y, ms), with
    the ±10 % band; log axes when latencies span more than 20x.

    Args:
        per: ``predictor.json``'s ``errors.per_subnet`` entries (``measured_ms``, ``rows_sum_ms``,
            ``predicted_ms``, ``heldout_predicted_ms`` or ``None``).
        out: the ``predictor.json`` dict (its ``target`` and ``errors`` make the title).
        path: the PNG to write (atomically); matplotlib is imported here, with the Agg backend.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..utils import save_figure

    y = [p["measured_ms"] for p in per]
    pred = [p["heldout_predicted_ms"] if p["heldout_predicted_ms"] is not None else p["predicted_ms"] for p in per]
    raw = [p["rows_sum_ms"] for p in per]
    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=120)
    lo, hi = min(y + pred) * 0.9, max(y + pred) * 1.1
    ax.fill_between([lo, hi], [lo * 0.9, hi * 0.9], [lo * 1.1, hi * 1.1], color="0.9", label="±10 %")
    ax.plot([lo, hi], [lo, hi], color="0.4", lw=1)
    ax.scatter(y, raw, s=8, color="tab:orange", alpha=0.6, label="sum of rows (no fit)")
    ax.scatter(y, pred, s=10, color="tab:blue", label="predicted (held-out)")
    e = out["errors"]["heldout"] if out["errors"]["heldout"].get("n") else out["errors"]["in_sample"]
    ax.set_title(f"{out['target']}: MAPE {e.get('mape_pct', float('nan')):.2f} %, "
                 f"{100 * e.get('within_10_pct', float('nan')):.1f} % within ±10 % (n={e.get('n', 0)})", fontsize=9)
    ax.set_xlabel("measured latency (ms)")
    ax.set_ylabel("predicted latency (ms)")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, max(hi, max(raw) * 1.05))
    if hi / max(lo, 1e-12) > 20:  # latencies over decades: log axes keep the small subnets visible
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    save_figure(fig, path)
