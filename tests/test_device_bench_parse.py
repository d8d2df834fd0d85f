"""device_bench.parse against real official outputs and their known variants."""

from pathlib import Path

import pytest

from device_bench.parse import BenchmarkParseError, parse_benchmark_output, parse_many, percentile

FIXTURES = Path(__file__).parent / "fixtures" / "benchmark_model"
FACE = FIXTURES / "official_2021_x86_64_face_detection.txt"
MOBILENET = FIXTURES / "official_2022_x86_64_mobilenet_v2_quant.txt"

PREFIXES = {
    "none": "",
    "info": "INFO: ",
    "logcat_tag": "I tflite  : ",
    "logcat_full": "04-12 10:11:12.123  1234  1234 I tflite  : ",
}


def _prefixed(text: str, prefix: str) -> str:
    return "\n".join(prefix + line for line in text.splitlines())


def test_official_2021_face_detection_exact_numbers():
    r = parse_benchmark_output(FACE.read_text())
    assert r.count == 50
    assert (r.avg_us, r.min_us, r.max_us, r.std_us) == (160491, 138134, 283321, 20992)
    assert (r.init_us, r.first_us, r.warmup_avg_us, r.inference_avg_us) == (760, 282796, 180608, 160491)
    assert r.runs_us is None and r.p90_us is None and r.median_us is None
    assert r.runner == "benchmark_model"
    assert r.graph == "../models/mp_face_detection_short_range.tflite"
    assert r.raw_tail.endswith("Peak memory footprint (MB): init=2.53516 overall=6.05078")


def test_official_2022_mobilenet_exponent_numbers():
    r = parse_benchmark_output(MOBILENET.read_text())
    assert r.count == 50
    assert r.avg_us == pytest.approx(1.63488e06)
    assert r.inference_avg_us == pytest.approx(1634880)
    assert r.warmup_avg_us == pytest.approx(1593630)
    assert (r.min_us, r.max_us, r.std_us) == (1059329, 2242449, 278532)
    assert (r.init_us, r.first_us) == (1109, 1679961)
    assert r.raw_tail.endswith("init=4.125 overall=9.97656")


@pytest.mark.parametrize("prefix", PREFIXES.values(), ids=PREFIXES.keys())
@pytest.mark.parametrize("fixture", [FACE, MOBILENET], ids=["2021", "2022"])
def test_prefixed_lines_parse_the_same(fixture, prefix):
    plain = parse_benchmark_output(fixture.read_text())
    r = parse_benchmark_output(_prefixed(fixture.read_text(), prefix))
    for f in ("count", "avg_us", "min_us", "max_us", "std_us", "init_us", "first_us",
              "warmup_avg_us", "inference_avg_us", "graph"):
        assert getattr(r, f) == getattr(plain, f), f


def test_percentiles_on_count_line_give_median():
    text = MOBILENET.read_text().replace(
        "avg=1.63488e+06 std=278532", "avg=1.63488e+06 std=278532 p5=1100000 median=1.6e+06 p95=2.1e+06")
    r = parse_benchmark_output(text)
    assert r.median_us == 1.6e6
    assert r.p90_us is None  # not derivable from p5/median/p95
    assert r.avg_us == pytest.approx(1634880)


OLD_TF22 = """STARTING!
Min num runs: [50]
Num threads: [4]
Graph: [/data/local/tmp/mobilenet_quant_v1_224.tflite]
Loaded model /data/local/tmp/mobilenet_quant_v1_224.tflite
Initialized session in 4.108ms
Running benchmark for at least 1 iterations and at least 0.5 seconds
count=6 first=91471 curr=85097 min=84834 max=91810 avg=86184.3 std=2519

Running benchmark for at least 50 iterations and at least 1 seconds
count=50 first=81000 curr=80100 min=79000 max=84000 avg=80660.1 std=1200

Average inference timings in us: Warmup: 91471, Init: 4108, Inference: 80660.1
"""

OLD_NO_STATS = """Initialized session in 4.452ms
Running benchmark for 1 iterations
count=1 curr=146161

Running benchmark for 50 iterations
count=50 first=137789 curr=137254 min=137079 max=143416 avg=137722 std=896

Average inference timings in us: Warmup: 146161, Init: 4452, no stats: 137722
"""


def test_old_tf22_format():
    r = parse_benchmark_output(OLD_TF22)
    assert r.count == 50 and r.avg_us == 80660.1
    assert (r.warmup_avg_us, r.init_us, r.inference_avg_us) == (91471, 4108, 80660.1)
    assert r.first_us is None or r.first_us == 91471


def test_old_no_stats_format_and_logcat():
    r = parse_benchmark_output(_prefixed(OLD_NO_STATS, PREFIXES["logcat_full"]))
    assert (r.count, r.avg_us, r.min_us, r.max_us) == (50, 137722, 137079, 143416)
    assert (r.warmup_avg_us, r.init_us, r.inference_avg_us) == (146161, 4452, 137722)


def test_only_summary_line_in_logcat():
    # What `adb logcat | grep "Average inference"` leaves.
    r = parse_benchmark_output(
        "... tflite  : Average inference timings in us: Warmup: 91471, Init: 4108, Inference: 80660.1")
    assert r.inference_avg_us == r.avg_us == 80660.1 and r.count is None


def test_op_profiling_tables_do_not_replace_the_measured_stage():
    profile = ("\nTimings (microseconds): count=50 first=79449 curr=81350 min=77385 max=88213 avg=79732 std=1929"
               "\nMemory (bytes): count=0\n31 nodes observed\n")
    text = FACE.read_text()
    i = text.index("Inference timings in us")
    r = parse_benchmark_output(text[:i] + profile + text[i:] + profile)
    assert (r.count, r.avg_us, r.min_us) == (50, 160491, 138134)


RUNNER_BLOCK = """STARTING!
Graph: [m.tflite]
Loaded model m.tflite
Initialized session in 0.5ms.
Running benchmark for at least 2 iterations and at least 0 seconds but terminate if exceeding 150 seconds.
count=2 first=30 curr=12 min=12 max=30 avg=21 std=9

Running benchmark for at least 10 iterations and at least 0 seconds but terminate if exceeding 150 seconds.
count=10 first=10 curr=19 min=10 max=19 avg=14.5 std=2 p5=10 median=14 p95=18

Inference timings in us: Init: 500, First inference: 30, Warmup (avg): 21, Inference (avg): 14.5
Memory footprint delta from the start of the tool (MB): init=1 overall=2
EDGEEAS_RUNNER: runner=edgeeas-runner runner_version=1 interpreter=ai_edge_litert version=2.3.0 threads=1 xnnpack=true cpu_mask=none python=3.11.7
EDGEEAS_RUNS_US: 10.0,11.0,12.0,13.0,14.0,15.0,16.0,17.0,18.0,19.0 graph=m.tflite
"""


def test_runner_block_exact_stats_from_runs():
    r = parse_benchmark_output(RUNNER_BLOCK)
    assert r.runs_us == [10.0 + i for i in range(10)]
    assert r.count == 10
    assert r.median_us == 14.5  # exact, not the count line's integer 14
    assert r.p90_us == pytest.approx(18.1)
    assert r.avg_us == pytest.approx(14.5)
    assert r.std_us == pytest.approx(2.8722813)  # population std of 10..19
    assert (r.runner, r.runner_version, r.interpreter, r.version) == ("edgeeas-runner", "1", "ai_edge_litert", "2.3.0")
    assert r.runner_info["threads"] == "1"
    assert r.graph == "m.tflite"
    assert (r.init_us, r.first_us, r.warmup_avg_us, r.inference_avg_us) == (500, 30, 21, 14.5)


SKEWED_RUNS = [1000.0, 1010.0, 1020.0, 1030.0, 1040.0, 1050.0, 1070.0, 1400.0, 2500.0, 9000.0, 1005.0]


def test_runner_block_skewed_runs_mean_median_p90_all_differ():
    """A long tail (as on a phone with a background burst): mean, median and p90 are three different
    numbers, checked against values computed here by hand (sorted runs, linear interpolation)."""
    text = RUNNER_BLOCK.replace("10.0,11.0,12.0,13.0,14.0,15.0,16.0,17.0,18.0,19.0",
                                ",".join(str(v) for v in SKEWED_RUNS))
    r = parse_benchmark_output(text)
    srt = sorted(SKEWED_RUNS)                      # 1000 1005 1010 1020 1030 1040 1050 1070 1400 2500 9000
    assert r.median_us == 1040.0 == srt[5]
    assert r.p90_us == pytest.approx(2500.0)     # k = 10 * 0.9 = 9 -> srt[9] exactly
    assert r.avg_us == pytest.approx(sum(SKEWED_RUNS) / 11)  # 1920.45...
    assert r.min_us == 1000.0 and r.max_us == 9000.0 and r.count == 11
    assert len({r.median_us, r.p90_us, round(r.avg_us, 3)}) == 3
    even = parse_benchmark_output(text.replace(",1005.0 graph", " graph"))   # 10 runs: median between two
    assert even.median_us == pytest.approx((1040.0 + 1050.0) / 2)
    assert even.p90_us == pytest.approx(2500.0 + 0.1 * (9000.0 - 2500.0))


def test_count_line_median_differs_from_avg():
    """benchmark_model's own count line with a median: the median is its median field, never its avg."""
    text = MOBILENET.read_text().replace(
        "avg=1.63488e+06 std=278532", "avg=1.63488e+06 std=278532 p5=1100000 median=1.2e+06 p95=2.1e+06")
    r = parse_benchmark_output(text)
    assert r.median_us == pytest.approx(1.2e6) and r.avg_us == pytest.approx(1.63488e6)


def test_percentile_matches_numpy_linear():
    np = pytest.importorskip("numpy")
    vals = [5.0, 1.0, 9.0, 3.0, 7.5, 2.2, 8.8]
    for q in (0, 5, 50, 90, 95, 100):
        assert percentile(vals, q) == pytest.approx(float(np.percentile(vals, q)))


def test_parse_many_splits_blocks():
    text = RUNNER_BLOCK + RUNNER_BLOCK.replace("m.tflite", "n dir/b.tflite").replace("19.0 graph", "99.0 graph")
    res = parse_many(text)
    assert list(res) == ["m.tflite", "n dir/b.tflite"]
    assert res["n dir/b.tflite"].max_us == 99.0 and res["m.tflite"].max_us == 19.0


def test_parse_many_failed_graph():
    text = RUNNER_BLOCK + "STARTING!\nEDGEEAS_FAILED: cannot load x.tflite as a TFLite model graph=x.tflite\n"
    with pytest.raises(BenchmarkParseError, match="x.tflite: cannot load"):
        parse_many(text)
    assert list(parse_many(text, on_error="skip")) == ["m.tflite"]


@pytest.mark.parametrize("text, last", [
    ("STARTING!\nGraph: [x.tflite]\nLoaded model x.tflite\nERROR: Could not open 'x.tflite'.\n"
     "Failed to initialize the interpreter\n\n", "Failed to initialize the interpreter"),
    ("/system/bin/sh: /data/local/tmp/benchmark_model: not found\n", "benchmark_model: not found"),
    ("", "<empty output>"),
    ("Initialized session in 1.2ms.\nSegmentation fault\n", "Segmentation fault"),
])
def test_unparseable_output_names_last_line(text, last):
    with pytest.raises(BenchmarkParseError) as e:
        parse_benchmark_output(text)
    assert last in str(e.value)
    assert "\n" not in str(e.value)


def test_bad_runs_line_is_an_error():
    with pytest.raises(BenchmarkParseError, match="EDGEEAS_RUNS_US"):
        parse_benchmark_output("EDGEEAS_RUNS_US: 1.0,abc graph=m.tflite\n")


def test_count_lines_after_the_summary_line_are_not_the_measured_stage():
    """A count= line printed after the 'Inference timings' line (no profiling tag: e.g. a later
    stage's statistics) must not replace the measured stage, the last count= line before it."""
    text = FACE.read_text()
    i = text.index("Inference timings in us")
    later = "\ncount=7 first=1 curr=2 min=3 max=4 avg=5 std=6\n"
    r = parse_benchmark_output(text + later)
    assert (r.count, r.avg_us, r.min_us, r.max_us, r.std_us) == (50, 160491, 138134, 283321, 20992)
    # without a summary line, the last count= line is the measured one
    r = parse_benchmark_output(text[:i] + later)
    assert (r.count, r.avg_us) == (7, 5)


def test_raw_tail_is_the_last_20_lines():
    lines = [f"line {k}" for k in range(30)] + ["count=3 first=1 curr=2 min=1 max=3 avg=2 std=1"]
    r = parse_benchmark_output("\n".join(lines))
    assert r.raw_tail.splitlines() == lines[-20:]
    assert r.raw_tail.splitlines()[0] == "line 11"


# ---- one run per paste (issue 13, item 4) ----------------------------------------------------------
RUN_A = """STARTING!
Graph: [/data/local/tmp/a.tflite]
count=1 first=9000 curr=9000 min=9000 max=9000 avg=9000 std=0
count=50 first=5000 curr=5000 min=4000 max=6000 avg=5000 std=100
Inference timings in us: Init: 7000, First inference: 9000, Warmup (avg): 9000, Inference (avg): 5000
"""
RUN_B = """STARTING!
Graph: [/data/local/tmp/b.tflite]
count=1 first=3000 curr=3000 min=3000 max=3000 avg=3000 std=0
count=20 first=1000 curr=1000 min=900 max=1200 avg=1000 std=50
Inference timings in us: Init: 2000, First inference: 3000, Warmup (avg): 3000, Inference (avg): 1000
"""


def test_two_pasted_runs_are_never_combined():
    for text in (RUN_A + RUN_B, RUN_A + "Peak memory footprint (MB): init=1 overall=2\n" + RUN_B):
        r = parse_benchmark_output(text)
        assert (r.graph, r.count, r.avg_us, r.init_us, r.first_us) == ("/data/local/tmp/b.tflite", 20, 1000, 2000, 3000)


def test_a_dead_run_then_a_rerun_reads_the_rerun_only():
    dead = "STARTING!\nGraph: [/x/a.tflite]\ncount=1 first=9000 curr=9000 min=9000 max=9000 avg=9000 std=0\n"
    rerun = "STARTING!\nGraph: [/x/b.tflite]\ncount=20 first=1000 curr=1000 min=900 max=1200 avg=1000 std=50\n" \
            "Inference timings in us: Init: 2000, Inference (avg): 1000\n"
    r = parse_benchmark_output(dead + rerun)
    assert r.graph == "/x/b.tflite" and r.count == 20 and r.first_us is None  # not the dead run's 9000


def test_first_inference_from_old_format_warmup_lines():
    old = ("count=1 curr=12345\n"
           "count=50 curr=1100 min=1000 max=1500 avg=1200 std=40\n"
           "Average inference timings in us: Warmup: 12345, Init: 5000, no stats: 1200\n")
    r = parse_benchmark_output(old)
    assert r.first_us == 12345 and r.avg_us == 1200 and r.count == 50 and r.init_us == 5000


# ---- the runner's load errors say what is wrong, once (issue 13, item 4) --------------------------
def _runner():
    import importlib.util

    from device_bench import RUNNER_PATH

    spec = importlib.util.spec_from_file_location("edgeeas_runner_under_test", RUNNER_PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_an_unresolved_custom_op_is_not_called_an_invalid_flatbuffer():
    r = _runner()
    err = RuntimeError("Encountered unresolved custom op: MyOp.\nSee instructions: https://x\n"
                       "Encountered unresolved custom op: MyOp.\nNode number 0 (MyOp) failed to prepare.")
    msg = r._load_error("m.tflite", err, stage="prepare")
    assert "valid TFLite model" in msg and "'MyOp'" in msg and "flatbuffer" not in msg
    assert msg.count("Encountered unresolved custom op: MyOp.") == 1 and "\n" not in msg
    bad = r._load_error("x.tflite", ValueError("Model provided has model identifier 'abcd', should be 'TFL3'"),
                        stage="load")
    assert "expected a valid .tflite flatbuffer" in bad


def test_input_layer_shape_is_benchmark_models_form():
    import argparse

    import pytest

    r = _runner()
    args = r._build_parser().parse_args(["--graph", "m.tflite", "--input_layer_shape", "1,224,224,3:1,20"])
    assert r._input_shapes(args) == [[1, 224, 224, 3], [1, 20]]
    with pytest.raises(r.UsageError, match="comma-separated sizes"):
        r._input_shapes(argparse.Namespace(input_layer_shape="1,a"))
