"""Which latency-predictor form and which fit data would predict the models searches emit ->
``benchmarks/results/latency_fit.json``.  An analysis of measurements already taken; it measures
nothing.

    .venv/bin/python benchmarks/bench_latency_fit.py

Inputs: the host table's measured random subnets (``targets/host/latency.sqlite``) and the 300
int8 models ``bench_specialize.py`` emitted and measured (``benchmarks/results/specialize.json``).
Each form is a relative least-squares fit (every subnet weighs by its relative error, as
``edgeeas.latency.fit`` does) of the measured median on features built from the shipped
predictor's rows:

* ``r``: the sum of the subnet's rows (stem, blocks, 5-class head), the shipped model's only term;
* ``r*m``, ``r*m^2``: the sum times its MAdds share of the largest subnet (a network-size term);
* ``crowd7``: the 7x7 blocks' rows times their share of the 20 block slots (the per-kernel
  crowding term of ``edgeeas.latency.fit``, for 7x7 only).

Two fit sets: (a) the 200 random subnets alone (what ``edgeeas bench`` fits today), tested on the
300 emitted models; (b) the random subnets plus every other emitted model (even positions),
tested on the other half: what the predictor would gain from measurements where searches go.
"""
from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FORMS = {"r": ("r",), "r + r*m": ("r", "r*m"), "r + r*m^2": ("r", "r*m^2"), "r + crowd7": ("r", "crowd7"),
         "r + r*m + r*m^2 + crowd7": ("r", "r*m", "r*m^2", "crowd7")}


def main() -> int:
    import numpy as np

    from edgeeas.latency import LatencyPredictor
    from edgeeas.space import DEFAULT_SPACE as S
    from edgeeas.space import Arch
    from edgeeas.targets import HostTarget
    from edgeeas.utils import command_line, machine, versions

    pred = LatencyPredictor.load(HostTarget())
    scale = pred.fit.scale
    if pred.fit.kernel_crowding or pred.fit.kernel_scales:
        raise SystemExit("this analysis expects the shipped shared-scale fit (no per-kernel terms)")
    db = sqlite3.connect(ROOT / "targets" / "host" / "latency.sqlite")
    random_subnets = [(Arch.parse(a), m) for a, m in db.execute("select arch, median_ms from subnets")]
    spec = json.loads((ROOT / "benchmarks" / "results" / "specialize.json").read_text())
    emitted = [(Arch.parse(r["arch"]), r["measured_ms"]) for r in spec["models"]]
    big = S.madds(S.largest())

    def features(a) -> dict:
        r = pred.predict(a, 5) / scale
        m = S.madds(a) / big
        blocks = list(S.block_specs(a))
        r7 = sum(pred.block_ms(b) for b in blocks if b.kernel == 7) / scale
        n7 = sum(b.kernel == 7 for b in blocks)
        return {"r": r, "r*m": r * m, "r*m^2": r * m * m, "crowd7": r7 * n7 / S.max_depth / S.num_stages}

    feats = {str(a): features(a) for a, _ in random_subnets + emitted}

    def fit(data, cols):
        x = np.array([[feats[str(a)][c] for c in cols] for a, _ in data])
        y = np.array([m for _, m in data])
        w, *_ = np.linalg.lstsq(x / y[:, None], np.ones(len(y)), rcond=None)
        return w

    def errors(data, cols, w) -> dict:
        x = np.array([[feats[str(a)][c] for c in cols] for a, _ in data])
        y = np.array([m for _, m in data])
        e = 100 * (x @ w - y) / y
        return {"n": len(y), "mape_pct": round(float(np.abs(e).mean()), 2), "mean_error_pct": round(float(e.mean()), 2),
                "within_10_pct": round(float(np.mean(np.abs(e) <= 10)), 3), "worst_under_pct": round(float(e.min()), 1)}

    half_fit = random_subnets + emitted[0::2]
    half_test = emitted[1::2]
    out = {}
    for name, cols in FORMS.items():
        wa = fit(random_subnets, cols)
        wb = fit(half_fit, cols)
        out[name] = {
            "a_fit_on_random": {"weights": [round(float(v), 4) for v in wa],
                                "random_subnets": errors(random_subnets, cols, wa),
                                "emitted_models": errors(emitted, cols, wa)},
            "b_fit_on_random_plus_half_emitted": {"weights": [round(float(v), 4) for v in wb],
                                                  "random_subnets": errors(random_subnets, cols, wb),
                                                  "other_half_emitted": errors(half_test, cols, wb)},
        }
        print(f"{name:<26} (a) emitted within ±10 %: {out[name]['a_fit_on_random']['emitted_models']['within_10_pct']:.3f}"
              f"   (b) held-out emitted within ±10 %: "
              f"{out[name]['b_fit_on_random_plus_half_emitted']['other_half_emitted']['within_10_pct']:.3f}", flush=True)
    doc = {"what": "latency-predictor forms and fit sets against the models searches emit (analysis, no measurement)",
           "inputs": {"random_subnets": "targets/host/latency.sqlite", "emitted_models": "benchmarks/results/specialize.json",
                      "predictor": "targets/host/predictor.json", "shipped_scale": round(scale, 4)},
           "forms": out, "command": command_line(), "machine": machine(), "versions": versions()}
    from edgeeas.utils import atomic_write_text

    atomic_write_text(ROOT / "benchmarks" / "results" / "latency_fit.json", json.dumps(doc, indent=1) + "\n")
    print("wrote benchmarks/results/latency_fit.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
