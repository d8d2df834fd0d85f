"""device_bench.protocol: Protocol, host fingerprint, and real host measurements."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from device_bench.protocol import (
    RUNNER_PATH, RUNNER_VERSION, Measurement, Protocol, RunnerError, host_fingerprint,
    measure_host, measure_many_host,
)
from testing.tiny_model import build_tiny_model

FAST = dict(warmup_runs=3, num_runs=20)


@pytest.fixture(scope="session")
def int8_model():
    return build_tiny_model("int8")


@pytest.fixture(scope="session")
def float_model():
    return build_tiny_model("float32")


def test_protocol_round_trip_and_hashable():
    p = Protocol(threads=2, cpu_mask="f0", num_runs=30, use_xnnpack=False, statistic="p90")
    d = json.loads(json.dumps(p.to_dict()))
    assert Protocol.from_dict(d) == p
    assert hash(p) == hash(Protocol.from_dict(d))
    assert p.runner == "edgeeas-runner" and p.runner_version == RUNNER_VERSION
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.threads = 3


def test_runner_args():
    p = Protocol(threads=2, cpu_mask="0xf0", warmup_runs=4, num_runs=30, use_xnnpack=False,
                 interpreter="ai_edge_litert")
    assert p.runner_args("m.tflite") == [
        "--graph=m.tflite", "--num_threads=2", "--warmup_runs=4", "--num_runs=30", "--min_secs=0",
        "--warmup_min_secs=0", "--use_xnnpack=false", "--cpu_mask=0xf0", "--interpreter=ai_edge_litert"]
    assert "--graph" not in " ".join(Protocol().runner_args())


@pytest.mark.parametrize("kwargs, needle", [
    (dict(threads=0), "threads"),
    (dict(num_runs=0), "num_runs"),
    (dict(warmup_runs=-1), "warmup_runs"),
    (dict(statistic="mean"), "statistic"),
    (dict(cpu_mask="zz"), "cpu_mask"),
    (dict(cpu_mask="0"), "cpu_mask"),
    (dict(interpreter="onnxruntime"), "interpreter"),
    (dict(max_spread=0), "max_spread"),
])
def test_protocol_validation(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        Protocol(**kwargs)


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(ValueError, match="bogus"):
        Protocol.from_dict({"bogus": 1})


def test_host_fingerprint():
    fp = host_fingerprint()
    assert fp["cores"] == os.cpu_count() and fp["cores"] >= 1
    assert fp["cpu_model"]
    assert fp["interpreter"] == "ai_edge_litert" and fp["interpreter_version"]
    assert fp["numpy"] and fp["python"] and fp["kernel"]
    assert {"governor", "temperature_c"} <= set(fp)
    json.dumps(fp)


def test_cpu_isa_reads_the_kernel_relevant_simd_features():
    from device_bench.protocol import _cpu_isa

    x86 = ("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse4_2 avx2 avx512_vnni fma lm\n\n"
           "processor\t: 1\nflags\t\t: fpu avx amx_int8\n")  # only the first CPU counts
    assert _cpu_isa(x86) == "avx2,avx512_vnni,fma,sse4_2"
    arm = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes asimddp i8mm sve\nCPU part\t: 0xd40\n"
    assert _cpu_isa(arm) == "asimd,asimddp,i8mm,sve"
    assert _cpu_isa("processor\t: 0\nflags\t\t: fpu lm\n") == "none"
    assert _cpu_isa("") is None
    assert host_fingerprint()["cpu_isa"]  # readable here (Linux)


def test_measure_host_real(int8_model):
    p = Protocol(**FAST)
    m = measure_host(int8_model, p)
    assert m.count == len(m.runs_us) == 20
    assert 0 < m.median_ms <= m.p90_ms
    assert m.median_ms == pytest.approx(sorted(m.runs_us)[9:11][0] / 2e3 + sorted(m.runs_us)[9:11][1] / 2e3)
    assert m.protocol.interpreter == "ai_edge_litert" and m.protocol.interpreter_version
    assert m.protocol.num_runs == 20 and m.protocol.runner_version == RUNNER_VERSION
    assert m.value_ms == m.median_ms
    assert m.command.startswith("python3 ") and f"--graph={int8_model}" in m.command
    assert 1 <= m.attempts <= 1 + p.max_remeasure and len(m.spreads) == m.attempts
    assert Measurement.from_dict(json.loads(json.dumps(m.to_dict()))) == m


def test_remeasure_keeps_lowest_spread(int8_model):
    # A limit no real measurement meets forces every re-measure.
    p = Protocol(warmup_runs=2, num_runs=10, max_spread=1e-12, max_remeasure=2)
    m = measure_host(int8_model, p)
    assert m.attempts == 3 and len(m.spreads) == 3
    assert m.spread == min(m.spreads)


def test_pinned_interpreter_version_mismatch(int8_model):
    with pytest.raises(RunnerError, match="0.0.1"):
        measure_host(int8_model, Protocol(interpreter_version="0.0.1", **FAST))


def test_measure_host_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\0" * 100)
    with pytest.raises(RunnerError) as e:
        measure_host(bad, Protocol(**FAST))
    assert e.value.returncode == 1 and "ERROR:" in str(e.value) and str(bad) in str(e.value)
    with pytest.raises(RunnerError) as e:
        measure_host(tmp_path / "missing.tflite", Protocol(**FAST))
    assert e.value.returncode == 2 and "not found" in str(e.value)


def test_measure_many_host_one_process(int8_model, float_model):
    p = Protocol(**FAST)
    res = measure_many_host([int8_model, float_model], p)
    assert list(res) == [str(int8_model), str(float_model)]
    for g, m in res.items():
        assert m.graph == g and m.count == 20 and m.median_ms > 0
        assert m.protocol.interpreter == "ai_edge_litert"


def test_measure_many_host_bad_graph(tmp_path, int8_model):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"junk")
    with pytest.raises(RunnerError, match="bad.tflite"):
        measure_many_host([int8_model, bad], Protocol(**FAST))


def test_runner_subprocess_does_not_import_torch_or_repo(int8_model):
    # What measure_host runs: the subprocess must stay cheap and standalone.
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['runner.py', '--graph={int8_model}', '--num_runs=2', '--min_secs=0', '--warmup_min_secs=0']\n"
        "try:\n"
        f"    runpy.run_path({str(RUNNER_PATH)!r}, run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'edgeeas', 'device_bench', 'litert_torch', 'jax', 'tensorflow'))\n"
        "print('IMPORTED', bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=os.path.dirname(RUNNER_PATH), env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert "IMPORTED []" in out.stdout, out.stdout[-500:] + out.stderr[-500:]


def test_host_target_measures_in_passes(int8_model, float_model):
    """passes=3: each model is swept three times (three runner processes); its figure is the
    median of the three pass medians and its runs pool all three sweeps."""
    from edgeeas.targets import HostTarget

    got = []
    res = HostTarget(protocol=Protocol(passes=3, **FAST)).measure_many(
        [int8_model, float_model], on_result=lambda p, m: got.append(p))
    assert got == [str(int8_model), str(float_model)]
    for m in res.values():
        assert len(m.pass_medians_ms) == 3 and m.count == len(m.runs_us) == 60 and m.attempts >= 3
        assert m.median_ms == sorted(m.pass_medians_ms)[1]
        assert min(m.pass_medians_ms) <= m.p90_ms
        assert Measurement.from_dict(json.loads(json.dumps(m.to_dict()))) == m


def test_combine_passes_is_the_median_of_passes(int8_model):
    """One disturbed pass (here: a real measurement scaled 10x, as a burst of load would) does
    not move the combined figure."""
    from device_bench import combine_passes

    m = measure_host(int8_model, Protocol(**FAST))
    slow = dataclasses.replace(m, median_ms=10 * m.median_ms, p90_ms=10 * m.p90_ms,
                               runs_us=tuple(10 * r for r in m.runs_us))
    c = combine_passes([m, slow, m])
    assert c.median_ms == m.median_ms and c.p90_ms == m.p90_ms and c.count == 3 * m.count
    assert c.pass_medians_ms == (m.median_ms, 10 * m.median_ms, m.median_ms)
    assert combine_passes([m]) is m
    with pytest.raises(ValueError, match="different graphs"):
        combine_passes([m, dataclasses.replace(m, graph="other.tflite")])
    with pytest.raises(ValueError):
        Protocol(passes=0)
