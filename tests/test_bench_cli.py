"""``edgeeas bench`` / ``edgeeas latency`` as a user runs them (subprocesses, real measurements).

Uses the tiny space's model cache built by latency_fixtures (so no test here exports a model).
"""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from latency_fixtures import TINY

from edgeeas import latency as L

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent / "edgeeas"
FAST = ["--warmup-runs", "1", "--num-runs", "10"]


def env_for(root: Path, tmp_path: Path) -> dict:
    return {**os.environ, "EDGEEAS_TARGETS": str(root), "HOME": str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "2",
            "ANDROID_SERIAL": ""}


def run(args, root, tmp_path, timeout=300):
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, env=env_for(root, tmp_path),
                          timeout=timeout)


def one_line_error(r, code):
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.stderr
    return lines[0]


def rows_in(db: Path) -> dict:
    if not db.exists():
        return {}
    try:
        con = sqlite3.connect(db, timeout=5)
        try:
            return {k: (m, r, t) for k, m, r, t in con.execute("SELECT key, median_ms, runs_us, measured_at FROM rows")}
        finally:
            con.close()
    except sqlite3.OperationalError:  # tables not created yet
        return {}


def test_kill_9_loses_no_row_and_rerun_measures_only_missing(tiny_bench, tmp_path):
    root, *_ = tiny_bench
    space = str(root / "tiny.json")
    args = ["bench", "--space", space, "--name", "killed", *FAST, "--subnets", "0", "--quiet"]
    db = root / "killed" / "latency.sqlite"
    for attempt in range(3):  # the window between two runner chunks is ~1 s; retry if we miss it
        p = subprocess.Popen([str(BIN), *args, *(["--force"] if attempt else [])], env=env_for(root, tmp_path),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + 240
        while time.time() < deadline and p.poll() is None and not rows_in(db):
            time.sleep(0.02)
        os.killpg(p.pid, signal.SIGKILL)  # the bench and the runner it started
        p.wait()
        before = rows_in(db)
        if 0 < len(before) < 11:
            break
    assert 0 < len(before) < 11, f"could not kill between two commits: {len(before)} rows"
    r = run(args, root, tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"rows 11 ({11 - len(before)} measured now)" in r.stdout
    after = rows_in(db)
    assert len(after) == 11 and all(after[k] == v for k, v in before.items())
    r = run(args, root, tmp_path)
    assert "rows 11 (0 measured now)" in r.stdout


def test_bench_a_tflite_file_prints_the_summary(tiny_bench, tmp_path):
    root, *_ = tiny_bench
    model = L.row_model_path(L.model_cache_dir(TINY, root), L.table_rows(TINY)[1])
    r = run(["bench", str(model), *FAST], root, tmp_path)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    # 3 passes (the default) of 10 runs: the runs pool, the figure is the median of the passes
    assert f"Graph: [{model}]" in out and "count=30 first=" in out and "Inference timings in us: Init:" in out
    assert "median of 3 passes: " in out
    assert "median " in out and " ms, p90 " in out and "reproduce: python3" in out
    # the printed summary parses with the project's benchmark_model parser
    from device_bench import parse_benchmark_output

    res = parse_benchmark_output(out)
    assert res.count == 30 and res.avg_us > 0


def test_latency_command(tiny_bench, tmp_path):
    root, target, _ = tiny_bench
    p = L.LatencyPredictor.load(target)
    a = "d12-k333-e636"
    r = run(["latency", a, "--target", "tiny", "--classes", "5", "--json", "-v"], root, tmp_path)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["predicted_ms"] == pytest.approx(p.predict(a, 5))
    assert sum(x["ms"] for x in d["layers"]) == pytest.approx(d["predicted_ms"])
    assert [x["layer"] for x in d["layers"]][:2] == ["stem", "ir_h32_i8_o8_e6_k3_s2"]
    r = run(["latency", "largest", "--target", str(target.directory), "-v"], root, tmp_path)
    assert r.returncode == 0 and "ms predicted on tiny" in r.stdout and "held-out error on 3" in r.stdout


def test_help(tmp_path):
    r = run(["bench", "--help"], tmp_path, tmp_path, timeout=60)
    assert r.returncode == 0
    for opt in ("--adb-serial", "--threads", "--num-runs", "--warmup-runs", "--subnets", "--force",
                "--benchmark-binary", "--targets-file", "--name", "resume"):
        assert opt in r.stdout, opt


@pytest.mark.parametrize("case", ["not_tflite", "truncated", "threads0", "unknown_target", "other_space",
                                  "missing_file", "latency_no_table", "latency_bad_arch", "binary_on_host"])
def test_bad_input_is_one_line(case, tiny_bench, tmp_path):
    root, target, _ = tiny_bench
    space = str(root / "tiny.json")
    stem = L.row_model_path(L.model_cache_dir(TINY, root), L.table_rows(TINY)[0])
    if case == "not_tflite":
        bad = tmp_path / "x.tflite"
        bad.write_text("hello, not a model\n")
        msg = one_line_error(run(["bench", str(bad)], root, tmp_path), 1)
        assert "is not a TFLite model" in msg
    elif case == "truncated":
        bad = tmp_path / "cut.tflite"
        bad.write_bytes(stem.read_bytes()[:200])
        msg = one_line_error(run(["bench", str(bad), *FAST], root, tmp_path), 1)
        assert "cut.tflite" in msg or "runner" in msg
    elif case == "threads0":
        msg = one_line_error(run(["bench", "--num-threads", "0"], root, tmp_path), 2)
        assert "0 is not in the range" in msg
    elif case == "unknown_target":
        one_line_error(run(["bench", "--target", "no-such-device", "--space", space, *FAST], root, tmp_path), 1)
        assert not (root / "no-such-device").exists()
    elif case == "other_space":
        other = tmp_path / "other.json"
        other.write_text(json.dumps({**TINY.to_dict(), "name": "other-space", "expands": [3, 4]}))
        msg = one_line_error(run(["bench", "--space", str(other), "--name", "tiny", *FAST], root, tmp_path), 2)
        assert "search space 'tiny-latency-test', not 'other-space'" in msg and "--force" in msg
    elif case == "missing_file":
        msg = one_line_error(run(["bench", str(tmp_path / "nope.tflite")], root, tmp_path), 2)
        assert "no such file" in msg
    elif case == "latency_no_table":
        msg = one_line_error(run(["latency", "smallest", "--target", "nowhere"], root, tmp_path), 1)
        assert "edgeeas bench --target nowhere" in msg
    elif case == "latency_bad_arch":
        msg = one_line_error(run(["latency", "d1-k3-e3", "--target", "tiny"], root, tmp_path), 2)
        assert "has 1 stages (depth digits d1) but the search space tiny-latency-test has 2 stages" in msg
    elif case == "binary_on_host":
        msg = one_line_error(run(["bench", "--benchmark-binary", str(stem), "--target", "host"], root, tmp_path), 2)
        assert "adb targets only" in msg


def test_several_files_one_bad_keeps_the_good_results(tiny_bench, tmp_path):
    """benchmark_model parity: per-file results; one unloadable file costs only its own result,
    and the exit status says some failed.  A path with a comma is measured like any other."""
    import shutil

    root, *_ = tiny_bench
    model = L.row_model_path(L.model_cache_dir(TINY, root), L.table_rows(TINY)[1])
    comma = tmp_path / "a,b.tflite"
    shutil.copy(model, comma)
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"\0\0\0\0TFL3" + b"\x07" * 64)  # the identifier, then nothing a model has
    r = run(["bench", str(model), str(broken), str(comma), "--passes", "1", "--num-runs", "3",
             "--warmup-runs", "1"], root, tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"Graph: [{model}]" in r.stdout and f"Graph: [{comma}]" in r.stdout
    assert f"{broken}: FAILED on host:" in r.stdout
    assert "1 of 3 measurement(s) failed" in r.stderr and "Traceback" not in r.stderr


def test_a_path_with_a_comma_alone(tiny_bench, tmp_path):
    import shutil

    root, *_ = tiny_bench
    model = L.row_model_path(L.model_cache_dir(TINY, root), L.table_rows(TINY)[1])
    comma = tmp_path / "x,y.tflite"
    shutil.copy(model, comma)
    r = run(["bench", str(comma), "--passes", "1", "--num-runs", "3", "--warmup-runs", "1"], root, tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"Graph: [{comma}]" in r.stdout
