"""device_bench/runner.py run for real: real ai_edge_litert interpreter, real int8 model.

The runner is copied alone into a temporary directory and run from there with
``sys.executable``, as on a device (/data/local/tmp/edgeeas/runner.py).
"""

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from device_bench.parse import parse_benchmark_output, parse_many
from testing.tiny_model import build_tiny_model

RUNNER = Path(__file__).resolve().parents[1] / "device_bench" / "runner.py"
FIXTURES = Path(__file__).parent / "fixtures" / "benchmark_model"
FAST = ["--warmup_runs=3", "--warmup_min_secs=0", "--min_secs=0"]


@pytest.fixture(scope="session")
def int8_model():
    return build_tiny_model("int8")


@pytest.fixture(scope="session")
def float_model():
    return build_tiny_model("float32")


@pytest.fixture(scope="session")
def device_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("device")
    shutil.copy(RUNNER, d / "runner.py")
    return d


def run(device_dir, *args, check=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([sys.executable, str(device_dir / "runner.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=device_dir, env=env, timeout=120)
    if check is not None:
        assert proc.returncode == check, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    return proc


def error_lines(proc):
    return [l for l in proc.stderr.splitlines() if l.startswith("ERROR:")]


def assert_one_line_error(proc, code, *needles):
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    errs = error_lines(proc)
    assert len(errs) == 1, proc.stderr
    for n in needles:
        assert n in errs[0], errs[0]
    return errs[0]


def test_runner_imports_only_stdlib_numpy_and_interpreters():
    allowed = {"argparse", "gc", "math", "os", "re", "sys", "time", "resource", "numpy",
               "ai_edge_litert", "tflite_runtime", "tensorflow"}
    tree = ast.parse(RUNNER.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "runner.py must not use relative imports"
            names.add(node.module.split(".")[0])
    assert names <= allowed, names - allowed


def test_benchmark_output_is_official_format_and_parses_back(device_dir, int8_model):
    proc = run(device_dir, f"--graph={int8_model}", "--num_threads=1", "--num_runs=17", *FAST, check=0)
    out = proc.stdout
    # The official summary lines, in the official order.
    official = FIXTURES.joinpath("official_2022_x86_64_mobilenet_v2_quant.txt").read_text()
    keys = ["STARTING!", "Min num runs: [", "Num threads: [", "Min warmup runs: [", "Graph: [",
            "#threads used for CPU inference: [", "Loaded model ", "The input model file size (MB): ",
            "Initialized session in ", "count=", "count=", "Inference timings in us: Init: ",
            "Memory footprint delta from the start of the tool (MB): init="]
    pos = -1
    for k in keys:
        assert k in official
        nxt = out.find(k, pos + 1)
        assert nxt > pos, f"{k!r} missing or out of order"
        pos = nxt
    assert re.search(r"^count=3 first=\d+ curr=\d+ min=\d+ max=\d+ avg=\S+ std=\d+$", out, re.M)
    assert re.search(r"^count=17 first=\d+ curr=\d+ min=\d+ max=\d+ avg=\S+ std=\d+ "
                     r"p5=\d+ median=\d+ p95=\d+$", out, re.M)
    assert re.search(r"^Inference timings in us: Init: \d+, First inference: \d+, "
                     r"Warmup \(avg\): \S+, Inference \(avg\): \S+$", out, re.M)
    # The machine-readable lines come last.
    tail = out.strip().splitlines()[-2:]
    assert tail[0].startswith("EDGEEAS_RUNNER: runner=edgeeas-runner runner_version=")
    assert "interpreter=ai_edge_litert version=" in tail[0] and "threads=1 xnnpack=true" in tail[0]
    assert tail[1].startswith("EDGEEAS_RUNS_US: ") and tail[1].endswith(f" graph={int8_model}")

    r = parse_benchmark_output(out)
    assert len(r.runs_us) == r.count == 17
    assert all(t > 0 for t in r.runs_us)
    assert r.interpreter == "ai_edge_litert" and r.version
    assert r.min_us <= r.median_us <= r.p90_us <= r.max_us
    # The official summary agrees with the per-run times.
    assert r.inference_avg_us == pytest.approx(sum(r.runs_us) / 17, rel=1e-3, abs=0.1)
    assert r.init_us > 0 and r.first_us > 0 and r.warmup_avg_us > 0


def test_min_secs_is_honoured(device_dir, float_model):
    proc = run(device_dir, f"--graph={float_model}", "--num_runs=2", "--min_secs=0.2",
               "--warmup_runs=1", "--warmup_min_secs=0", check=0)
    r = parse_benchmark_output(proc.stdout)
    assert sum(r.runs_us) >= 0.2e6 * 0.9 and r.count > 2


def test_use_xnnpack_false_and_cpu_mask(device_dir, float_model):
    cpu = min(os.sched_getaffinity(0))
    proc = run(device_dir, f"--graph={float_model}", "--use_xnnpack=false", f"--cpu_mask={1 << cpu:x}",
               "--enable_op_profiling=true", "--num_runs=5", *FAST, check=0)
    assert "Note: op profiling is not available" in proc.stdout
    r = parse_benchmark_output(proc.stdout)
    assert r.runner_info["xnnpack"] == "false" and r.runner_info["cpu_mask"] == f"{1 << cpu:x}"
    assert len(r.runs_us) == 5


def test_multi_graph_mode_one_block_per_graph(device_dir, int8_model, float_model):
    proc = run(device_dir, f"--graphs={int8_model},{float_model}", "--num_runs=7", *FAST, check=0)
    res = parse_many(proc.stdout)
    assert list(res) == [str(int8_model), str(float_model)]
    assert all(len(r.runs_us) == 7 for r in res.values())
    assert proc.stdout.count("STARTING!") == 2


def test_multi_graph_mode_keeps_going_after_a_bad_graph(device_dir, tmp_path, int8_model):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(os.urandom(2000))
    proc = run(device_dir, f"--graphs={bad},{int8_model}", "--num_runs=3", *FAST)
    assert_one_line_error(proc, 1, str(bad), "TFLite")
    ok = parse_many(proc.stdout, on_error="skip")
    assert list(ok) == [str(int8_model)]


# --------------------------------------------------------------------------- errors
def test_corrupt_model(device_dir, tmp_path):
    bad = tmp_path / "corrupt.tflite"
    bad.write_bytes(b"TFL3" + os.urandom(4000))
    err = assert_one_line_error(run(device_dir, f"--graph={bad}", "--num_runs=2"), 1, str(bad))
    assert "expected a valid .tflite" in err


def test_not_a_tflite_file(device_dir):
    err = assert_one_line_error(run(device_dir, f"--graph={RUNNER}", "--num_runs=2"), 1, str(RUNNER))
    assert "TFLite" in err


def test_missing_model(device_dir, tmp_path):
    missing = tmp_path / "nope.tflite"
    assert_one_line_error(run(device_dir, f"--graph={missing}"), 2, "not found", str(missing))


@pytest.mark.parametrize("threads", ["0", "-3"])
def test_bad_num_threads(device_dir, int8_model, threads):
    assert_one_line_error(run(device_dir, f"--graph={int8_model}", f"--num_threads={threads}"), 2,
                          "--num_threads", threads, "positive")


@pytest.mark.parametrize("args, needle", [
    (["--num_runs=0"], "--num_runs"),
    (["--use_xnnpack=maybe"], "true or false"),
    (["--cpu_mask=xyz"], "hex"),
    (["--no_such_flag=1"], "unrecognized"),
    (["--eval_input=x.npy"], "--eval_output"),
])
def test_bad_flags_are_usage_errors(device_dir, int8_model, args, needle):
    assert_one_line_error(run(device_dir, f"--graph={int8_model}", *args), 2, needle)


def test_no_graph(device_dir):
    assert_one_line_error(run(device_dir, "--num_runs=3"), 2, "--graph")


# --------------------------------------------------------------------------- eval mode
def _reference_outputs(model, x):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(model), num_threads=1)
    it.allocate_tensors()
    din, dout = it.get_input_details()[0], it.get_output_details()[0]
    rows = []
    for row in x:
        it.set_tensor(din["index"], row[None])
        it.invoke()
        rows.append(it.get_tensor(dout["index"])[0].copy())
    return np.stack(rows), din, dout


def test_eval_mode_int8_matches_interpreter_row_by_row(device_dir, tmp_path, int8_model):
    rng = np.random.default_rng(3)
    x = rng.integers(-128, 128, size=(12, 32, 32, 3), dtype=np.int8)
    np.save(tmp_path / "x.npy", x)
    proc = run(device_dir, f"--graph={int8_model}", f"--eval_input={tmp_path / 'x.npy'}",
               f"--eval_output={tmp_path / 'y.npy'}", check=0)
    m = re.search(r"^EDGEEAS_EVAL: n=(\d+) seconds=([\d.]+) graph=(.*)$", proc.stdout, re.M)
    assert m and int(m.group(1)) == 12 and float(m.group(2)) > 0 and m.group(3) == str(int8_model)
    y = np.load(tmp_path / "y.npy")
    ref, _, dout = _reference_outputs(int8_model, x)
    assert y.dtype == np.int8 == dout["dtype"]
    assert y.shape == (12, 10)
    np.testing.assert_array_equal(y, ref)
    assert len({r.tobytes() for r in y}) > 1  # different inputs, different outputs


def test_eval_mode_float_input_is_quantized(device_dir, tmp_path, int8_model):
    rng = np.random.default_rng(4)
    xf = rng.uniform(-2, 2, size=(5, 1, 32, 32, 3)).astype(np.float32)  # full-shape rows
    np.save(tmp_path / "xf.npy", xf)
    run(device_dir, f"--graph={int8_model}", f"--eval_input={tmp_path / 'xf.npy'}",
        f"--eval_output={tmp_path / 'yf.npy'}", check=0)
    y = np.load(tmp_path / "yf.npy")
    from ai_edge_litert.interpreter import Interpreter

    din = Interpreter(model_path=str(int8_model)).get_input_details()[0]
    scale, zero = din["quantization"]
    xq = np.clip(np.round(xf[:, 0] / scale + zero), -128, 127).astype(np.int8)
    ref, _, _ = _reference_outputs(int8_model, xq)
    assert y.shape == (5, 1, 10)
    np.testing.assert_array_equal(y[:, 0], ref)


def test_eval_mode_float_model(device_dir, tmp_path, float_model):
    x = np.random.default_rng(5).standard_normal((4, 32, 32, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    run(device_dir, f"--graph={float_model}", f"--eval_input={tmp_path / 'x.npy'}",
        f"--eval_output={tmp_path / 'y.npy'}", check=0)
    ref, _, _ = _reference_outputs(float_model, x)
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), ref)


@pytest.mark.parametrize("shape, dtype, needles", [
    ((4, 3, 32, 32), np.int8, ["(4, 3, 32, 32)", "expected (N, 32, 32, 3)"]),
    ((4, 32, 32), np.int8, ["(4, 32, 32)", "expected (N, 32, 32, 3)"]),
    ((4, 32, 32, 3), np.int32, ["dtype int32", "expected int8"]),
])
def test_eval_mode_bad_input(device_dir, tmp_path, int8_model, shape, dtype, needles):
    np.save(tmp_path / "x.npy", np.zeros(shape, dtype=dtype))
    proc = run(device_dir, f"--graph={int8_model}", f"--eval_input={tmp_path / 'x.npy'}",
               f"--eval_output={tmp_path / 'y.npy'}")
    assert_one_line_error(proc, 1, *needles)
    assert not (tmp_path / "y.npy").exists()
