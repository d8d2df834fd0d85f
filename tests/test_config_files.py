"""farm.yaml and targets.yaml are checked against their schemas up front (pydantic): one line
naming the file, the line, the field and what was expected; never a traceback."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from android_runner import load_targets
from edgeeas.cli import main
from edgeeas.regress import RegressUsageError, load_farm


@pytest.mark.parametrize("text, expect", [
    ("devices: host\n", "line 1: devices: Input should be a valid list (got 'host')"),
    ("devices: []\n", "line 1: devices: List should have at least 1 item"),
    ("devices:\n  - host\n  - {serial: 'a:1', protocol: {thread: 2}}\n",
     "line 3: devices.1.protocol: unknown Protocol field(s) ['thread']"),
    ("devices:\n  - host\n  - {seral: a}\n", "line 3: devices.1.seral: unknown key; expected some of: "
                                            "benchmark_binary, name, protocol, python, serial"),
    ("devices:\n  - host\n  - {protocol: {threads: 1}}\n", "line 3: devices.1: a device needs `name` and/or `serial`"),
    ("devices:\n  - [x]\n", "line 2: devices.0: expected a mapping or a string (got ['x'])"),
    ("devices: [host]\nprotocl: {}\n", "line 2: protocl: unknown key; expected some of: data, devices, eval, models"),
    ("devices: [host]\nprotocol: {threads: lots}\n", "line 2: protocol: threads must be a positive int, got 'lots'"),
    ("devices: [host]\nmodels: [m.tflite]\neval:\n  seed: 0\n  random_inputs: 0\n",
     "line 5: eval.random_inputs: Input should be greater than 0 (got 0)"),
    ("devices: [host]\neval: {max_images: -1}\n", "line 2: eval.max_images: Input should be greater than or equal to 0"),
    ("devices: [host]\nmodels: [{name: a}]\n", "line 2: models.0.path: missing"),
    ("devices: [host]\nmodels: []\n", "line 2: models: List should have at least 1 item"),
    ("devices: [host]\ndata: 5\n", "line 2: data: Input should be a valid string (got 5)"),
    ("devices: [host]\ndevices: [x]\n", "key 'devices' is given twice"),
])
def test_farm_schema_errors_name_file_line_and_expectation(tmp_path, text, expect):
    f = tmp_path / "farm.yaml"
    f.write_text(text)
    with pytest.raises(RegressUsageError) as ei:
        load_farm(f)
    msg = str(ei.value)
    assert str(f) in msg and expect in msg and "\n" not in msg, msg
    r = CliRunner().invoke(main, ["regress", "--farm", str(f), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()


def test_good_farm_still_loads(tmp_path):
    (tmp_path / "m.tflite").write_bytes(b"x")
    f = tmp_path / "farm.yaml"
    f.write_text("devices:\n  - host\n  - 5555\n  - {name: board, serial: '10.0.0.5:5555', protocol: {threads: 2}}\n"
                 "models: [m.tflite, {name: k, path: m.tflite}]\nprotocol: {threads: 1, num_runs: 20}\n"
                 "eval: {random_inputs: 8}\n")
    farm = load_farm(f)
    assert [d.spec for d in farm.devices] == ["host", "5555", "board"]
    assert farm.devices[2].serial == "10.0.0.5:5555" and farm.devices[2].protocol == {"threads": 2}
    assert [m.key for m in farm.models] == ["m.tflite", "k"]
    assert farm.protocol == {"threads": 1, "num_runs": 20}
    assert farm.eval == {"seed": 0, "random_inputs": 8, "max_images": 0}


@pytest.mark.parametrize("text, expect", [
    ("pixel: {serial: 5555}\n", "line 1: target 'pixel': serial: Input should be a valid string (got 5555)"),
    ("pixel:\n  serial: 'a:1'\n  modle: x\n", "line 3: target 'pixel': modle: unknown key; expected some of: "
                                             "candidates, model, serial"),
    ("pixel:\n  serial: 'a:1'\npixel:\n  model: P\n", "line 3: key 'pixel' given twice (first on line 1)"),
    ("a:\n  serial: x\n  model: y\n", "line 1: target 'a': needs exactly one of serial/model"),
    ("a:\n  model: y\n  candidates: [1, 2]\n", "line 3: target 'a': candidates.0: Input should be a valid string"),
    ("- a\n", "line 1: top level is a list"),
    ("a: {serial: ''}\n", "target 'a': serial: must be a non-empty string"),
    ("a: [\n", "not valid YAML"),
    ("!!python/object:os.system ls\n", "line 1: not plain YAML data"),
    ("targets:\n  p:\n    serial: 'ok:1'\n    candidates: x\n", "line 4: target 'p': candidates: Input should be a valid list"),
])
def test_targets_schema_errors_name_file_line_and_expectation(tmp_path, text, expect):
    f = tmp_path / "targets.yaml"
    f.write_text(text)
    with pytest.raises(ValueError) as ei:
        load_targets(f)
    msg = str(ei.value)
    assert msg.startswith(str(f)) and expect in msg and "\n" not in msg, msg
    assert "e.g. `pixel: {serial: 192.168.1.20:5555}`" in msg
    r = CliRunner().invoke(main, ["devices", "--targets-file", str(f)])
    assert r.exit_code != 0 and "Traceback" not in r.output


def test_good_targets_file(tmp_path):
    f = tmp_path / "targets.yaml"
    f.write_text("targets:\n  pixel: {serial: '192.168.1.20:5555'}\n  board:\n    model: Pixel 7\n"
                 "    candidates: ['10.0.0.5:5555']\n")
    t = load_targets(f)
    assert t["pixel"].serial == "192.168.1.20:5555" and t["board"].model == "Pixel 7"
    assert t["board"].candidates == ("10.0.0.5:5555",)
