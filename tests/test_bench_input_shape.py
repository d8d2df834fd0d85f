"""`edgeeas bench FILE --input-layer-shape`: benchmark_model's --input_layer_shape for a real
TFLite model with a dynamic (batch) dimension, measured by the real runner and LiteRT."""
from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from edgeeas.cli import main


@pytest.fixture(scope="module")
def dynamic_model(tmp_path_factory):
    """A float conv net converted by litert-torch with a dynamic batch: input signature [-1, 3, 32, 32]."""
    import litert_torch
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 16, 3, padding=1)

        def forward(self, x):
            return torch.relu(self.conv(x)).mean(dim=(2, 3))

    torch.manual_seed(0)
    batch = torch.export.Dim("batch", min=1, max=64)
    edge = litert_torch.convert(Net().eval(), (torch.randn(2, 3, 32, 32),), dynamic_shapes=({0: batch},))
    path = tmp_path_factory.mktemp("dyn") / "dyn_batch.tflite"
    edge.export(str(path))
    from ai_edge_litert.interpreter import Interpreter

    assert list(Interpreter(model_path=str(path)).get_input_details()[0]["shape_signature"]) == [-1, 3, 32, 32]
    return path


def _bench(*args):
    r = CliRunner().invoke(main, ["bench", *args, "--num-runs", "30", "--passes", "1"])
    return r.exit_code, r.stdout, r.stderr


def _median(out: str) -> float:
    return float(re.search(r"median ([\d.]+) ms", out).group(1))


def test_input_layer_shape_resizes_a_dynamic_batch(dynamic_model):
    code, out1, err = _bench(str(dynamic_model), "--input-layer-shape", "1,3,32,32")
    assert code == 0, err
    code, out32, err = _bench(str(dynamic_model), "--input-layer-shape", "32,3,32,32")
    assert code == 0, err
    assert "input shapes 32,3,32,32" in out32 and "--input_layer_shape=32,3,32,32" in out32  # reproduce line
    assert _median(out32) > 4 * _median(out1)   # 32 images per inference: far more work than 1


@pytest.mark.parametrize("shape, expect", [
    ("1,3,a,32", "--input-layer-shape 1,3,a,32"),
    ("1,3,32,32:1,3,32,32", "gives 2 shapes but"),
])
def test_bad_input_layer_shape_is_one_line(dynamic_model, shape, expect):
    code, out, err = _bench(str(dynamic_model), "--input-layer-shape", shape)
    assert code != 0 and expect in (out + err) and "Traceback" not in out + err, out + err


def test_input_layer_shape_needs_files():
    r = CliRunner().invoke(main, ["bench", "--input-layer-shape", "1,3,32,32"])
    assert r.exit_code == 2 and "applies to FILE.tflite" in r.stderr
