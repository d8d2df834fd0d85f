"""edgeeas.latency's predictor and fit against hand-computed numbers on a tiny table (no export,
no measurement: fast enough to run once per mutant in ``make mutate``)."""
from __future__ import annotations

import json
import math
import random

import pytest

from edgeeas.errors import EdgeeasUsageError
from edgeeas.latency.errors import LatencyError, MissingRowError
from edgeeas.latency.fit import Fit, _error_stats, _heldout, _kernel_sums, _lstsq, _max_blocks, _Sample
from edgeeas.latency.predictor import LatencyPredictor
from edgeeas.space import DEFAULT_SPACE, Arch, SearchSpace, Stage
from edgeeas.targets import TargetStore

# one stage of 1 or 2 blocks (h4, 4 -> 4 channels, stride 1: residual), expand 1, kernel 3 or 7
P = SearchSpace(name="p", resolution=4, stem_channels=4, stages=(Stage(4, 1),), depths=(1, 2), expands=(1,),
                kernels=(3, 7), head_channels=4, num_classes=10)
K3, K7 = "ir_h4_i4_o4_e1_k3_s1_r", "ir_h4_i4_o4_e1_k7_s1_r"
ROWS = {"stem": 0.3, K3: 1.0, K7: 4.0, "head_k5": 0.5, "head_k10": 0.7}
FIT = Fit(intercept_ms=0.2, scale=2.0, per_block_ms=0.1, kernel_scales={"7": 3.0}, kernel_crowding={"7": 0.5})


def test_block_keys_of_the_tiny_space():
    assert [s.key for s in P.block_specs(Arch((2,), (3, 7), (1, 1)))] == [K3, K7]


def test_predict_by_hand():
    p = LatencyPredictor(P, ROWS, FIT, target="t")
    # fixed: 0.2 + 2 * (0.3 + 0.5) = 1.8; a 7x7 block: 3 * 4 + 0.1 = 12.1; a 3x3 block: 2 * 1 + 0.1 = 2.1
    # crowding of 7x7: 0.5 * (sum of its rows) * (its blocks) / (2 blocks at most)
    assert p.fixed_ms(5) == pytest.approx(1.8)
    assert p.predict("d2-k77-e11") == pytest.approx(1.8 + 2 * 12.1 + 0.5 * 8 * 2 / 2)
    assert p.predict(Arch((2,), (3, 7), (1, 1))) == pytest.approx(1.8 + 2.1 + 12.1 + 0.5 * 4 * 1 / 2)
    assert p.predict("d1-k3-e1", num_classes=10) == pytest.approx(0.2 + 2 * (0.3 + 0.7) + 2.1)
    assert p.crowding_ms("d2-k33-e11") == 0.0 and p.crowding_ms("d2-k77-e11") == pytest.approx(4.0)
    assert LatencyPredictor(P, ROWS).predict("d2-k37-e11") == pytest.approx(0.3 + 0.5 + 1 + 4)   # no fit: the sum


def test_head_rows_interpolate_linearly_in_the_class_count():
    p = LatencyPredictor(P, ROWS, FIT)
    assert p.head_ms(5) == 0.5 and p.head_ms(10) == 0.7
    assert p.head_ms(7) == pytest.approx(0.5 + 0.2 * 2 / 5)
    assert p.head_ms(20) == pytest.approx(0.5 + 0.2 * 15 / 5)
    assert p.head_ms(2) == pytest.approx(0.5 - 0.2 * 3 / 5)
    assert p.head_ms(1) == pytest.approx(0.5 - 0.2 * 4 / 5)
    assert p.fixed_ms(7) == pytest.approx(0.2 + 2 * (0.3 + 0.58))
    with pytest.raises(EdgeeasUsageError, match="num_classes must be >= 1, got 0"):
        p.head_ms(0)
    one = LatencyPredictor(P, {**{k: v for k, v in ROWS.items() if k != "head_k10"}}, FIT)
    assert one.head_ms(100) == 0.5


def test_a_missing_row_is_an_error_never_zero():
    p = LatencyPredictor(P, {k: v for k, v in ROWS.items() if k != K3}, FIT, target="t")
    assert p.predict("d1-k7-e1") == pytest.approx(1.8 + 12.1 + 0.5 * 4 * 1 / 2)
    with pytest.raises(MissingRowError, match=f"no latency row '{K3}' for target 't'"):
        p.predict("d1-k3-e1")
    with pytest.raises(MissingRowError):
        LatencyPredictor(P, {k: v for k, v in ROWS.items() if k != "stem"}).predict("d1-k7-e1")


def test_breakdown_lists_every_term_and_adds_up_to_predict():
    p = LatencyPredictor(P, ROWS, FIT)
    b = p.breakdown("d2-k37-e11", num_classes=10)
    assert [r[0] for r in b] == ["stem", K3, K7, "head_k10", "overhead (fitted intercept)",
                                 "crowding (many blocks of one kernel size)"]
    assert b[0][1:] == (0.3, pytest.approx(0.6)) and b[1][1:] == (1.0, pytest.approx(2.1))
    assert b[2][1:] == (4.0, pytest.approx(12.1)) and b[3][1:] == (0.7, pytest.approx(1.4))
    assert math.isnan(b[4][1]) and b[4][2] == 0.2 and b[5][2] == pytest.approx(1.0)
    assert sum(r[2] for r in b) == pytest.approx(p.predict("d2-k37-e11", 10))
    plain = LatencyPredictor(P, ROWS).breakdown("d1-k3-e1")
    assert [r[0] for r in plain][-1] == "overhead (fitted intercept)"


def test_safety_margin_is_a_quantile_of_measured_over_heldout():
    per = [{"measured_ms": m, "heldout_predicted_ms": 1.0} for m in (1.0, 1.1, 0.9, 1.2, 1.05)]
    per += [{"measured_ms": 9.0, "heldout_predicted_ms": None}, {"measured_ms": None, "heldout_predicted_ms": 1.0}]
    p = LatencyPredictor(P, ROWS, FIT, errors={"per_subnet": per})
    # sorted ratios 0.9 1.0 1.05 1.1 1.2; position 0.95 * 4 = 3.8 -> 1.1 + 0.8 * 0.1
    assert p.safety_margin() == pytest.approx(0.18)
    assert p.safety_margin(0.5) == pytest.approx(0.05)
    fast = LatencyPredictor(P, ROWS, FIT, errors={"per_subnet": [{"measured_ms": 0.5, "heldout_predicted_ms": 1.0}]})
    assert fast.safety_margin() == 0.0
    assert LatencyPredictor(P, ROWS, FIT).safety_margin() == 0.0


def test_load_reads_predictor_json_and_refuses_a_broken_one(tmp_path):
    store = TargetStore(tmp_path)
    store.predictor_path.write_text(json.dumps({"space": P.to_dict(), "rows": ROWS, "fit": FIT.to_dict(),
                                                "target": "tiny", "errors": {"per_subnet": []}}))
    p = LatencyPredictor.load(tmp_path)
    assert p.target == "tiny" and p.source == str(store.predictor_path) and p.space == P
    assert p.predict("d2-k77-e11") == pytest.approx(30.0)
    d = json.loads(store.predictor_path.read_text())
    del d["target"]
    store.predictor_path.write_text(json.dumps(d))
    assert LatencyPredictor.load(tmp_path).target == tmp_path.name
    store.predictor_path.write_text("{not json")
    with pytest.raises(LatencyError, match="is not a readable predictor"):
        LatencyPredictor.load(tmp_path)
    store.predictor_path.unlink()
    with pytest.raises(LatencyError, match="no latency table in"):
        LatencyPredictor.load(tmp_path)


# ---- fit ------------------------------------------------------------------------------------------

def test_fit_terms_by_hand():
    f = Fit.from_dict({"intercept_ms": 1, "scale": 2, "per_block_ms": 0.5, "kernel_scales": {7: 3},
                       "kernel_crowding": {"7": 0.25}})
    assert f.to_dict() == {"intercept_ms": 1.0, "scale": 2.0, "per_block_ms": 0.5, "method": "", "n": 0,
                           "kernel_scales": {"7": 3.0}, "kernel_crowding": {"7": 0.25}}
    assert f.block_scale(7) == 3.0 and f.block_scale(3) == 2.0
    # 0.25 * 8 ms * 4 blocks / 20 = 0.4; kernel 3 has no crowding term
    assert f.crowding_ms({7: 8.0, 3: 5.0}, {7: 4, 3: 2}, 20) == pytest.approx(0.4)
    s = _Sample(fixed_ms=1.5, by_kernel={3: 5.0, 7: 8.0}, blocks=6, measured_ms=0.0,
                count_by_kernel={7: 4, 3: 2}, max_blocks=20)
    assert s.rows_sum_ms == 14.5 and s.crowd(7) == pytest.approx(8 * 4 / 20) and s.crowd(3) == pytest.approx(5 * 2 / 20)
    assert s.predict(f) == pytest.approx(1 + 2 * 1.5 + 0.5 * 6 + 2 * 5 + 3 * 8 + 0.4)


def test_kernel_sums_and_max_blocks():
    by_k, count = _kernel_sums(P, Arch((2,), (7, 3), (1, 1)), ROWS.__getitem__)
    assert by_k == {7: 4.0, 3: 1.0} and count == {7: 1, 3: 1}
    by_k, count = _kernel_sums(P, Arch((2,), (7, 7), (1, 1)), ROWS.__getitem__)
    assert by_k == {7: 8.0} and count == {7: 2}
    assert _max_blocks(DEFAULT_SPACE) == 20 and _max_blocks(P) == 2


def _samples(n, truth, seed=0, kernels=(3, 7)):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        counts = {k: rng.randint(1, 6) for k in kernels}
        by_k = {k: c * rng.uniform(0.2, 1.0) for k, c in counts.items()}
        s = _Sample(rng.uniform(0.1, 0.5), by_k, sum(counts.values()), 0.0, counts, 12)
        out.append(_Sample(s.fixed_ms, by_k, s.blocks, s.predict(truth), counts, 12))
    return out


def test_shared_scale_fit_recovers_exact_coefficients():
    truth = Fit(intercept_ms=0.5, scale=1.2, per_block_ms=0.05)
    f = _lstsq(_samples(12, truth))
    assert (f.intercept_ms, f.scale, f.per_block_ms) == pytest.approx((0.5, 1.2, 0.05), rel=1e-6)
    assert f.method == "relative nnls lstsq intercept+scale+per_block" and f.n == 12 and f.kernel_scales == {}


def test_small_fits_fall_back_to_fewer_coefficients():
    truth = Fit(intercept_ms=0.5, scale=1.2)
    f = _lstsq(_samples(5, truth))                           # 5 < 8 subnets: no per-block term
    assert f.method == "relative nnls lstsq intercept+scale" and f.per_block_ms == 0.0
    assert (f.intercept_ms, f.scale) == pytest.approx((0.5, 1.2), rel=1e-6)
    same_blocks = [_Sample(0.1 * i, {3: 1.0 + i}, 4, 2.0 + 1.5 * (1.0 + 1.1 * i)) for i in range(9)]
    f = _lstsq(same_blocks)                                  # every subnet 4 blocks: no per-block term
    assert f.method == "relative nnls lstsq intercept+scale" and (f.intercept_ms, f.scale) == pytest.approx((2.0, 1.5))
    narrow = [_Sample(1.0, {3: 0.1 * i}, 2, 0.5 + 1.2 * (1.0 + 0.1 * i)) for i in range(5)]   # sums 1.0..1.4
    f = _lstsq(narrow)
    assert f.method == "relative nnls lstsq intercept+scale" and (f.intercept_ms, f.scale) == pytest.approx((0.5, 1.2))
    two = [_Sample(1.0, {3: 1.0}, 2, 3.5), _Sample(1.0, {3: 2.0}, 2, 4.0)]
    f = _lstsq(two)                                          # (3.5 - 2) and (4 - 3): mean offset 1.25
    assert f.method == "mean offset" and f.intercept_ms == pytest.approx(1.25) and f.scale == 1.0 and f.n == 2
    assert _lstsq([]) == Fit()


def test_per_kernel_fit_recovers_crowding_when_the_scales_are_one():
    """Scales of exactly 1 satisfy the ridge rows too, so the exact coefficients are the optimum."""
    truth = Fit(intercept_ms=0.3, scale=1.0, per_block_ms=0.02, kernel_scales={"3": 1.0, "7": 1.0},
                kernel_crowding={"3": 0.0, "7": 0.4})
    ss = _samples(8 * 7, truth)                              # 8 per coefficient: 2 kernels -> 7 coefficients
    f = _lstsq(ss, per_kernel=True)
    assert f.kernel_scales == pytest.approx({"3": 1.0, "7": 1.0}, abs=1e-6)
    assert f.kernel_crowding == pytest.approx({"3": 0.0, "7": 0.4}, abs=1e-6)
    assert (f.intercept_ms, f.scale, f.per_block_ms) == pytest.approx((0.3, 1.0, 0.02), abs=1e-6)
    assert f.method.startswith("relative nnls: intercept") and f.n == 56
    assert _lstsq(ss[:55], per_kernel=True).kernel_scales == {}   # one subnet short: shared scale


def test_heldout_predictions_come_from_the_other_folds():
    truth = Fit(intercept_ms=0.5, scale=1.2, per_block_ms=0.05)
    ss = _samples(20, truth)
    h = _heldout(ss, 5, False)
    assert all(p == pytest.approx(s.measured_ms, rel=1e-6) for p, s in zip(h, ss))
    # one wild subnet: only its own held-out prediction misses it (it is not in its own fit) ...
    wild = list(ss)
    wild[3] = _Sample(ss[3].fixed_ms, ss[3].by_kernel, ss[3].blocks, 100.0, ss[3].count_by_kernel, 12)
    h = _heldout(wild, 20, False)                              # leave-one-out
    assert h[3] == pytest.approx(ss[3].measured_ms, rel=1e-6)
    assert _heldout(ss[:1], 5, False) == [None]
    assert _heldout([], 5, False) == []


def test_error_stats_by_hand():
    assert _error_stats([]) == {"n": 0}
    assert _error_stats([5.5, -10.5, 4.0, 9.0]) == {"n": 4, "mape_pct": 7.25, "median_ape_pct": 7.25,
                                                   "max_ape_pct": 10.5, "within_5_pct": 0.25, "within_10_pct": 0.75}
    assert _error_stats([-5, 10, 2, -20]) == {"n": 4, "mape_pct": 9.25, "median_ape_pct": 7.5, "max_ape_pct": 20.0,
                                              "within_5_pct": 0.5, "within_10_pct": 0.75}


def test_three_kernel_sizes_need_72_subnets_for_the_per_kernel_model():
    """2 * 3 + 3 = 9 coefficients, 8 subnets each: 71 subnets keep the shared scale."""
    truth = Fit(intercept_ms=0.3, scale=1.0, per_block_ms=0.02)
    ss = _samples(72, truth, kernels=(3, 5, 7))
    assert _lstsq(ss[:71], per_kernel=True).kernel_scales == {}
    assert set(_lstsq(ss, per_kernel=True).kernel_scales) == {"3", "5", "7"}


def _measurement(ms):
    from types import SimpleNamespace

    return SimpleNamespace(count=3, median_ms=ms, p90_ms=ms * 1.1, std_ms=0.0, runs_us=[ms * 1e3] * 3, attempts=1,
                           command="synthetic")


def test_fit_predictor_on_a_synthetic_table(tmp_path):
    """A table whose subnets were 'measured' from a known shared-scale fit: the stored predictor
    recovers it, predicts every subnet, and writes its held-out errors (5 folds by default)."""
    from edgeeas.latency.fit import fit_predictor
    from edgeeas.latency.table import LatencyTable

    proto = type("Proto", (), {"to_dict": lambda self: {"statistic": "median"}})()
    table = LatencyTable.open(tmp_path, P, proto)
    rows = {**ROWS, "head_k100": 2.0}
    for key, ms in rows.items():
        if key != "head_k10":
            table.put_row(key, "block" if key.startswith("ir_") else key.split("_")[0], _measurement(ms))
    truth = Fit(intercept_ms=0.5, scale=1.2, per_block_ms=0.05)
    archs = ["d1-k3-e1", "d1-k7-e1", "d2-k33-e11", "d2-k37-e11", "d2-k73-e11", "d2-k77-e11"]
    for a in archs:
        for nc in (5, 100):
            arch = P.parse(a)
            rows_sum = rows["stem"] + rows[f"head_k{nc}"] + sum(rows[s.key] for s in P.block_specs(arch))
            table.put_subnet(arch, nc, _measurement(0.5 + 1.2 * rows_sum + 0.05 * sum(arch.depths)), rows_sum)
    out = fit_predictor(table, target_name="tiny", plot=False)
    store = TargetStore(tmp_path)
    assert store.predictor_path.is_file() and not store.plot_path.exists()
    f = Fit.from_dict(out["fit"])
    assert (f.intercept_ms, f.scale, f.per_block_ms) == pytest.approx((0.5, 1.2, 0.05), rel=1e-6)
    assert out["target"] == "tiny" and out["statistic"] == "median_ms" and out["errors"]["heldout_folds"] == 5
    per = out["errors"]["per_subnet"]
    assert len(per) == 12 and all(abs(p["error_pct"]) < 1e-6 and abs(p["heldout_error_pct"]) < 1e-6 for p in per)
    # d2-k77 with 100 classes: rows 0.3 + 2.0 + 8.0 = 10.3 -> 0.5 + 1.2 * 10.3 + 0.1 = 12.96
    big = next(p for p in per if p["arch"] == "d2-k77-e11" and p["num_classes"] == 100)
    assert big["measured_ms"] == pytest.approx(12.96) and big["rows_sum_ms"] == pytest.approx(10.3)
    assert out["errors"]["raw_sum"]["n"] == 12
    raw = []   # the plain sum of rows against the 'measurement', computed here from the truth
    for a in archs:
        for nc in (5, 100):
            arch = P.parse(a)
            rs = rows["stem"] + rows[f"head_k{nc}"] + sum(rows[s.key] for s in P.block_specs(arch))
            raw.append(abs(100 * (rs - (0.5 + 1.2 * rs + 0.05 * sum(arch.depths))) / (0.5 + 1.2 * rs + 0.05 * sum(arch.depths))))
    assert out["errors"]["raw_sum"]["mape_pct"] == pytest.approx(sum(raw) / 12, abs=1e-3)
    assert out["errors"]["raw_sum"]["max_ape_pct"] == pytest.approx(max(raw), abs=1e-3)
    assert set(out["model_selection_heldout_mape_pct"]) == {"shared_scale", "per_kernel"}
    p = LatencyPredictor.load(tmp_path)
    assert p.predict("d2-k77-e11", 100) == pytest.approx(12.96)
    assert [round(s["predicted_ms"], 6) for s in table.subnets()] == [round(x["measured_ms"], 6) for x in per]
    table.put_row("stem", "stem", _measurement(0.3))
    con = __import__("sqlite3").connect(store.table_path)
    con.execute("DELETE FROM rows WHERE key = ?", (K7,))
    con.commit()
    con.close()
    with pytest.raises(LatencyError, match="lacks 1 rows"):
        fit_predictor(table, plot=False)
