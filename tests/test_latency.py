"""edgeeas.latency on a tiny search space: real int8 exports, real LiteRT measurements.

The session fixture (latency_fixtures.py) builds the complete host table of an 11-row space
plus 3 whole subnets once; the tests below read it, and measure more (never export more)
when they need a table of their own.
"""
from __future__ import annotations

import itertools
import json
import math
import sqlite3

import pytest

from latency_fixtures import TINY, tiny_protocol

from edgeeas import latency as L
from edgeeas.space import DEFAULT_SPACE, Arch
from edgeeas.targets import HostTarget, TargetError

pytestmark = pytest.mark.slow


def all_archs(space):
    for depths in itertools.product(space.depths, repeat=space.num_stages):
        n = sum(depths)
        for ks in itertools.product(space.kernels, repeat=n):
            for es in itertools.product(space.expands, repeat=n):
                yield Arch(depths, ks, es)


# ----------------------------------------------------------------------------- rows (no export)

def test_rows_cover_every_block_of_every_arch():
    rows = L.table_rows(TINY)
    keys = [r.key for r in rows]
    assert len(keys) == len(set(keys)) == 11
    assert keys[0] == "stem" and keys[-2:] == ["head_k5", "head_k100"]
    used = {s.key for a in all_archs(TINY) for s in TINY.block_specs(a)}
    assert used == {r.key for r in rows if r.kind == "block"}


def test_default_space_rows():
    import random

    rows = L.table_rows(DEFAULT_SPACE)
    keys = {r.key for r in rows}
    assert len(rows) == 1 + 90 + len(L.HEAD_CLASSES)
    rng = random.Random(1)
    for a in [DEFAULT_SPACE.smallest(), DEFAULT_SPACE.largest()] + [DEFAULT_SPACE.sample(rng) for _ in range(300)]:
        assert {s.key for s in DEFAULT_SPACE.block_specs(a)} <= keys


# ----------------------------------------------------------------------------- models and table

def test_row_models_are_single_int8_layers_in_context(tiny_bench):
    from edgeeas.export import tflite_info, tflite_madds

    root, target, _ = tiny_bench
    cache = L.model_cache_dir(TINY, root)
    hf, ch, cl = TINY.final_resolution, TINY.head_channels, TINY.stages[-1].channels
    for row in L.table_rows(TINY):
        info = tflite_info(L.row_model_path(cache, row))
        c, h, w = row.input_chw
        assert info.input_shape == (1, h, w, c) and info.input_dtype == info.output_dtype == "int8"
        madds = tflite_madds(info.path)
        if row.kind == "block":
            b = row.block
            assert info.output_shape == (1, b.hout, b.hout, b.cout)
            assert madds == b.madds
        elif row.kind == "stem":
            assert info.output_shape == (1, h, w, TINY.stem_channels)
            assert madds == h * w * TINY.stem_channels * TINY.in_channels * 9
        else:
            assert info.output_shape == (1, row.num_classes)
            assert madds == hf * hf * ch * cl + ch * row.num_classes


def test_subnet_models_match_the_space(tiny_bench):
    """Whole-subnet files: MAdds from the file == the space's exact count with a 5-row head."""
    from edgeeas.export import tflite_madds

    root, *_ = tiny_bench
    cache = L.model_cache_dir(TINY, root)
    archs = L.subnet_archs(TINY, 3)
    assert archs[:2] == [TINY.smallest(), TINY.largest()]
    for a in archs:
        removed = TINY.head_channels * (TINY.num_classes - L.SUBNET_CLASSES)
        assert tflite_madds(L.subnet_model_path(cache, a, L.SUBNET_CLASSES)) == TINY.madds(a) - removed


def test_table_in_sqlite(tiny_bench):
    root, target, report = tiny_bench
    db = target.directory / "latency.sqlite"
    assert report.rows_measured == report.rows_total == 11 and report.subnets_measured == 3
    con = sqlite3.connect(db)
    meta = {k: json.loads(v) for k, v in con.execute("SELECT key, value FROM meta")}
    assert meta["space"] == TINY.to_dict() and meta["space_name"] == TINY.name
    assert meta["protocol"]["num_runs"] == 10 and meta["protocol"]["threads"] == 1
    assert meta["fingerprint"]["kind"] == "host" and meta["fingerprint"]["interpreter"] == "ai_edge_litert"
    assert meta["measured_protocol"]["interpreter_version"]
    rows = con.execute("SELECT key, kind, count, median_ms, p90_ms, std_ms, runs_us, attempts, command FROM rows").fetchall()
    assert {r[0] for r in rows} == {r.key for r in L.table_rows(TINY)}
    for key, kind, count, med, p90, std, runs, attempts, command in rows:
        runs = json.loads(runs)
        passes = meta["protocol"]["passes"]
        assert passes == 3 and count == len(runs) == 10 * passes and attempts >= passes and "runner.py" in command
        assert 0 < med <= p90 and std >= 0 and math.isfinite(med)
        assert kind == ("stem" if key == "stem" else "head" if key.startswith("head") else "block")
    subs = con.execute("SELECT arch, num_classes, median_ms, predicted_ms FROM subnets").fetchall()
    assert len(subs) == 3 and all(k == 5 and m > 0 and p is not None and p > 0 for _, k, m, p in subs)
    assert json.loads((target.directory / "fingerprint.json").read_text())["kind"] == "host"
    assert json.loads((target.directory / "protocol.json").read_text())["num_runs"] == 10


# ----------------------------------------------------------------------------- predictor

def test_predictor_interface_identity(tiny_bench):
    root, target, _ = tiny_bench
    p = L.LatencyPredictor.load(target)
    q = L.LatencyPredictor.load(target.directory)
    assert p.space == TINY and "lstsq" in p.fit.method and p.fit.n == 3
    for a in all_archs(TINY):
        for k in (5, 20, 100):
            want = p.fixed_ms(k) + sum(p.block_ms(s) for s in TINY.block_specs(a))
            assert p.predict(a, k) == pytest.approx(want, rel=1e-12)
            assert q.predict(str(a), num_classes=k) == pytest.approx(want, rel=1e-12)
            assert sum(c for _, _, c in p.breakdown(a, k)) == pytest.approx(want, rel=1e-9)
        assert p.predict(a) == p.predict(a, 5) > 0
    # Head rows: measured counts exactly, others on the line through the nearest two.
    h5, h100 = p.rows["head_k5"], p.rows["head_k100"]
    assert p.head_ms(5) == h5 and p.head_ms(100) == h100
    assert p.head_ms(24) == pytest.approx(h5 + (h100 - h5) * 19 / 95)
    s = next(TINY.block_specs(TINY.largest()))
    assert p.block_ms(s) == pytest.approx(p.fit.scale * p.rows[s.key] + p.fit.per_block_ms)


def test_predictor_errors_are_stored(tiny_bench):
    root, target, report = tiny_bench
    d = json.loads((target.directory / "predictor.json").read_text())
    assert d["space"] == TINY.to_dict() and d["statistic"] == "median_ms"
    held = d["errors"]["heldout"]
    assert held["n"] == 3 and math.isfinite(held["mape_pct"]) and 0 <= held["within_10_pct"] <= 1
    con = sqlite3.connect(target.directory / "latency.sqlite")
    measured = {a: m for a, m in con.execute("SELECT arch, median_ms FROM subnets")}
    per = d["errors"]["per_subnet"]
    assert {p["arch"] for p in per} == set(measured)
    for p in per:
        assert p["measured_ms"] == pytest.approx(measured[p["arch"]], abs=1e-5)
        assert p["heldout_error_pct"] == pytest.approx(
            100 * (p["heldout_predicted_ms"] - p["measured_ms"]) / p["measured_ms"], abs=0.01)
    png = (target.directory / "predicted_vs_measured.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_missing_row_is_a_clear_error(tiny_bench):
    from edgeeas.space import ArchError

    root, target, _ = tiny_bench
    p = L.LatencyPredictor.load(target)
    del p.rows["ir_h16_i8_o16_e6_k3_s2"]
    a = TINY.parse("d12-k333-e366")
    with pytest.raises(L.MissingRowError, match="no latency row 'ir_h16_i8_o16_e6_k3_s2'") as e:
        p.predict(a)
    assert "\n" not in str(e.value)
    with pytest.raises(ArchError):
        p.predict(DEFAULT_SPACE.smallest())


# ----------------------------------------------------------------------------- resume, failures

class DropsOut(HostTarget):
    """The host, but the 'device' goes away after ``after`` results (real measurements)."""

    def __init__(self, name, after, root):
        super().__init__(name, tiny_protocol(), root)
        self.after, self.asked = after, []

    def measure_many(self, paths, on_result=None, chunk=8):
        paths = list(paths)
        self.asked.append([p.name for p in paths])
        n = [0]

        def cb(path, m):
            if n[0] >= self.after:
                raise TargetError(f"{self.name}: device went away")
            n[0] += 1
            on_result(path, m)

        return super().measure_many(paths, cb, chunk)


def test_rows_commit_one_by_one_and_resume_measures_only_missing(tiny_bench):
    root, *_ = tiny_bench
    cache = L.model_cache_dir(TINY, root)
    rows = L.table_rows(TINY)
    t = DropsOut("drops", 5, root)
    table = L.LatencyTable.open(t.directory, TINY, t.protocol, {}, target_name=t.name)
    with pytest.raises(TargetError, match="device went away"):
        L.measure_rows(t, table, rows, cache)
    first = table.rows()
    # 5 rows arrived in one runner chunk of 8 and each was committed as it arrived
    assert len(first) == 5
    again = DropsOut("drops", 100, root)
    table = L.LatencyTable.open(again.directory, TINY, again.protocol, {}, target_name=again.name)
    assert L.measure_rows(again, table, rows, cache) == 6
    assert again.asked == [[f"{r.key}.tflite" for r in rows if r.key not in first]]
    final = table.rows()
    assert len(final) == 11
    assert all(final[k] == first[k] for k in first)  # nothing measured twice, nothing lost
    assert L.measure_rows(again, table, rows, cache) == 0


def test_one_failing_target_spares_the_others(tiny_bench):
    root, *_ = tiny_bench
    good, bad = HostTarget("good", tiny_protocol(), root), DropsOut("bad", 3, root)
    reports = L.bench_targets([good, bad], TINY, subnets=0)
    assert reports["good"].error is None and reports["good"].rows_measured == 11
    assert reports["bad"].error == "bad: device went away"
    assert len(L.LatencyTable(bad.directory / "latency.sqlite").rows()) == 3
    # the summary counts what this run committed, even from the device that dropped
    assert reports["bad"].rows_measured == 3
    assert len(L.LatencyTable(good.directory / "latency.sqlite").rows()) == 11
    # no subnets measured: the predictor is the bare sum of rows, and says so
    p = L.LatencyPredictor.load(good)
    assert p.fit.method == "none" and p.fit.scale == 1.0 and p.fit.intercept_ms == 0.0


def test_table_from_another_space_or_protocol(tiny_bench):
    from dataclasses import replace

    from device_bench import Protocol

    root, target, _ = tiny_bench
    other = replace(TINY, name="other-space", expands=(3, 4))
    with pytest.raises(L.TableMismatchError, match="search space 'tiny-latency-test', not 'other-space'.*--force"):
        L.LatencyTable.open(target.directory, other, target.protocol)
    with pytest.raises(L.TableMismatchError, match=r"another protocol \(threads 1 vs 2\).*--name"):
        L.LatencyTable.open(target.directory, TINY, Protocol(threads=2, **{k: v for k, v in
                                                                            tiny_protocol().to_dict().items()
                                                                            if k in ("warmup_runs", "num_runs")}))
    scratch = HostTarget("scratch", tiny_protocol(), root)
    t = L.LatencyTable.open(scratch.directory, TINY, scratch.protocol, {})
    t.put_row("stem", "stem", type("M", (), dict(count=1, median_ms=1.0, p90_ms=1.0, std_ms=0.0, runs_us=(1000.0,),
                                                 attempts=1, command=None))())
    fresh = L.LatencyTable.open(scratch.directory, other, scratch.protocol, {}, force=True)
    assert fresh.rows() == {} and fresh.space == other


def test_per_kernel_scales_recovered_and_chosen_only_when_better():
    """The fit gives each kernel size its own scale when that predicts held-out subnets better.
    Synthetic subnets (this tests the regression, not a device): in the first set the truth has
    7x7 blocks costing 1.3x their rows and 3x3 0.9x, which one shared scale cannot express."""
    import random

    rng = random.Random(0)

    def sample(truth):
        by_k = {k: rng.uniform(0.0, 2.0) for k in (3, 5, 7)}
        blocks = rng.randint(10, 20)
        y = 0.05 + 1.0 * 0.1 + sum(truth[k] * v for k, v in by_k.items()) + 0.002 * blocks
        return L._Sample(0.1, by_k, blocks, y * rng.uniform(0.98, 1.02))

    skewed = [sample({3: 0.9, 5: 1.0, 7: 1.3}) for _ in range(120)]
    fit = L._lstsq(skewed, per_kernel=True)
    assert fit.kernel_scales["7"] == pytest.approx(1.3, rel=0.05)
    assert fit.kernel_scales["3"] == pytest.approx(0.9, rel=0.05)
    shared = L._lstsq(skewed, per_kernel=False)
    err = lambda f, ss: sum(abs(s.predict(f) - s.measured_ms) / s.measured_ms for s in ss) / len(ss)  # noqa: E731
    assert err(fit, skewed) < 0.5 * err(shared, skewed)
    # too few subnets for 6 coefficients: the shared scale, whatever was asked
    assert L._lstsq(skewed[:20], per_kernel=True).kernel_scales == {}
    # round trip through predictor.json's dict
    assert L.Fit.from_dict(json.loads(json.dumps(fit.to_dict()))) == fit


def test_parallel_export_is_byte_identical_to_serial(tiny_bench, tmp_path):
    """The fixture's models came from two export processes; exported again here in this process,
    they are the same bytes (every model is seeded by its own key, not by process state)."""
    import hashlib

    root, *_ = tiny_bench
    cache = L.model_cache_dir(TINY, root)
    rows = L.table_rows(TINY)[:3]
    arch = L.subnet_archs(TINY, 1)
    assert L.export_row_models(TINY, rows, tmp_path, workers=1) == 3
    assert L.export_subnet_models(TINY, arch, tmp_path, workers=1) == 1
    files = sorted(tmp_path.glob("*.tflite"))
    assert len(files) == 4
    for f in files:
        assert hashlib.sha256(f.read_bytes()).digest() == hashlib.sha256((cache / f.name).read_bytes()).digest(), f.name
    assert L.export_row_models(TINY, rows, tmp_path, workers=2) == 0  # nothing missing: nothing exported


def test_safety_margin_is_the_heldout_underprediction_quantile(tiny_bench):
    """From the real measured subnets of the tiny table: the margin is the 95th percentile of
    measured / held-out predicted, minus 1, never negative; no measured subnets, no margin."""
    import numpy as np

    root, target, _ = tiny_bench
    p = L.LatencyPredictor.load(target)
    per = p.errors["per_subnet"]
    assert len(per) == 3
    ratios = [x["measured_ms"] / x["heldout_predicted_ms"] for x in per]
    assert p.safety_margin() == pytest.approx(max(0.0, float(np.quantile(ratios, 0.95)) - 1))
    assert p.safety_margin(1.0) == pytest.approx(max(0.0, max(ratios) - 1))
    assert L.LatencyPredictor(p.space, p.rows).safety_margin() == 0.0


def test_crowding_recovered_and_predicted():
    """Synthetic subnets whose 7x7 blocks cost more the more of them there are (as measured on
    the host): the fit finds the crowding coefficient, and a predictor with it adds the term."""
    import random

    rng = random.Random(1)
    samples = []
    for _ in range(150):
        count = {3: rng.randint(0, 8), 5: rng.randint(0, 8), 7: rng.randint(0, 12)}
        by_k = {k: n * rng.uniform(0.02, 0.2) for k, n in count.items()}
        y = 0.1 + sum(by_k.values()) + 0.5 * by_k[7] * count[7] / 20
        samples.append(L._Sample(0.1, by_k, sum(count.values()), y * rng.uniform(0.99, 1.01), count, 20))
    fit = L._lstsq(samples, per_kernel=True)
    assert fit.kernel_crowding["7"] == pytest.approx(0.5, rel=0.1) and fit.kernel_crowding["5"] < 0.05
    rows = {r.key: 0.1 for r in L.table_rows(DEFAULT_SPACE)}
    p = L.LatencyPredictor(DEFAULT_SPACE, rows, fit)
    largest = DEFAULT_SPACE.largest()  # 20 blocks, all 7x7: rows sum 2.0, count 20 of 20
    assert p.crowding_ms(largest) == pytest.approx(fit.kernel_crowding["7"] * 2.0)
    additive = p.fixed_ms() + sum(p.block_ms(b) for b in DEFAULT_SPACE.block_specs(largest))
    assert p.predict(largest) == pytest.approx(additive + p.crowding_ms(largest))
