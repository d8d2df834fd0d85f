"""edgeeas.export: real litert-torch PT2E conversion, real LiteRT interpreter, real onnxruntime.

One small MobileNetV2-style net is converted once per session (a conversion takes seconds
plus ~5 s of imports); every check reads that one file.
"""
from __future__ import annotations

import os

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from edgeeas import export as ex

pytestmark = pytest.mark.slow  # one real conversion (~20-30 s with imports) per session

NUM_CLASSES = 5


def conv_bn(cin, cout, k, stride=1, groups=1, act=True):
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, expand, k, stride):
        super().__init__()
        mid = cin * expand
        self.use_res = stride == 1 and cin == cout
        self.body = nn.Sequential(
            conv_bn(cin, mid, 1),
            conv_bn(mid, mid, k, stride, groups=mid),
            conv_bn(mid, cout, 1, act=False),
        )

    def forward(self, x):
        y = self.body(x)
        return x + y if self.use_res else y


class TinyNet(nn.Module):
    """stem k3 s2 (32->16) -> IR(e3,k3,s1, residual) -> IR(e4,k5,s2, 16->8) -> pool -> linear."""

    def __init__(self):
        super().__init__()
        self.stem = conv_bn(3, 8, 3, stride=2)
        self.b1 = InvertedResidual(8, 8, expand=3, k=3, stride=1)
        self.b2 = InvertedResidual(8, 16, expand=4, k=5, stride=2)
        self.fc = nn.Linear(16, NUM_CLASSES)

    def forward(self, x):
        x = self.b2(self.b1(self.stem(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# Hand count, layer by layer (BN folded into the convs; pool and the residual ADD are free).
TINY_MADDS = (
    16 * 16 * 8 * 3 * 3 * 3  # stem conv 3->8, k3, s2: 16x16 out
    + 16 * 16 * 24 * 8  # b1 expand 1x1 8->24
    + 16 * 16 * 24 * 3 * 3  # b1 depthwise k3
    + 16 * 16 * 8 * 24  # b1 project 1x1 24->8
    + 16 * 16 * 32 * 8  # b2 expand 1x1 8->32 (at 16x16)
    + 8 * 8 * 32 * 5 * 5  # b2 depthwise k5 s2: 8x8 out
    + 8 * 8 * 16 * 32  # b2 project 32->16
    + 16 * NUM_CLASSES  # linear
)


_PROTOS = F.interpolate(
    torch.randn(NUM_CLASSES, 3, 4, 4, generator=torch.Generator().manual_seed(42)),
    size=(32, 32), mode="bilinear", align_corners=False,
)


def structured_images(n: int, seed: int, with_labels: bool = False):
    """Smooth random images, roughly normalized: one of 5 low-frequency class patterns, faded
    into other low-frequency noise, plus texture and a colour cast."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, NUM_CLASSES, (n,), generator=g)
    noise = F.interpolate(torch.randn(n, 3, 4, 4, generator=g), size=(32, 32), mode="bilinear",
                          align_corners=False)
    a = 0.4 + 0.8 * torch.rand(n, 1, 1, 1, generator=g)
    x = a * _PROTOS[y] + 0.8 * noise
    x = x + 0.3 * torch.randn(n, 3, 32, 32, generator=g)  # texture
    x = x + 0.3 * torch.randn(n, 3, 1, 1, generator=g)  # colour cast
    x = x.clamp(-2.5, 2.5)
    return (x, y) if with_labels else x


@pytest.fixture(scope="module")
def net() -> nn.Module:
    """TinyNet briefly trained (seeded) on the structured images: real margins, real BN stats.

    An untrained net is a poor subject: its pooled features barely vary between images, so
    its logits are near-ties that any int8 rounding flips, whatever the converter does.
    """
    torch.manual_seed(0)
    m = TinyNet().train()
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    for step in range(60):
        x, y = structured_images(64, seed=1000 + step, with_labels=True)
        loss = F.cross_entropy(m(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return m.eval()


@pytest.fixture(scope="module")
def exported(net, tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "tiny.tflite"
    calib = structured_images(128, seed=1)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    info = ex.export_tflite_int8(net, calib, path)
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "export modified the module"
    assert not net.training
    return info


def test_io_is_int8_nhwc(exported):
    assert exported.input_shape == (1, 32, 32, 3)
    assert exported.input_dtype == "int8"
    assert exported.output_shape == (1, NUM_CLASSES)
    assert exported.output_dtype == "int8"
    assert exported.input_scale > 0 and exported.output_scale > 0
    assert -128 <= exported.input_zero_point <= 127
    assert set(exported.versions) == {"torch", "litert-torch", "ai-edge-litert"}
    assert exported.seconds > 0
    assert (exported.calib_images, exported.calib_batch) == (128, ex.CALIB_BATCH)
    # What the interpreter reads back from the file agrees.
    again = ex.tflite_info(exported.path)
    assert again.input_shape == exported.input_shape
    assert again.input_scale == pytest.approx(exported.input_scale)
    assert again.output_zero_point == exported.output_zero_point


def test_no_float_ops_at_the_edges(exported):
    """Full-integer: no QUANTIZE/DEQUANTIZE ops, every op's tensors int8/int32."""
    from ai_edge_litert.tools import flatbuffer_utils as fbu

    model = fbu.read_model(exported.path)
    names = [fbu.opcode_to_name(model, op.opcodeIndex) for op in model.subgraphs[0].operators]
    assert "QUANTIZE" not in names and "DEQUANTIZE" not in names, names
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD"} <= set(names), names


def test_int8_agrees_with_float(net, exported):
    x = structured_images(256, seed=7)
    with torch.no_grad():
        ref = net(x).numpy()
    q = ex.quantize_input(x, exported)
    assert q.dtype == np.int8 and q.shape == (256, 32, 32, 3)
    raw = ex.tflite_run(exported.path, q, dequantize=False)
    assert raw.dtype == np.int8 and raw.shape == (256, NUM_CLASSES)
    logits = ex.dequantize_output(raw, exported)
    agree = float((logits.argmax(1) == ref.argmax(1)).mean())
    print(f"int8 vs float top-1 agreement: {agree:.4f}")
    assert agree >= 0.95
    # Logits are close, not just their argmax (error well under the logits' spread).
    assert np.abs(logits - ref).max() < 0.25 * (ref.max() - ref.min())
    # Feeding float NHWC lets tflite_run quantize itself, with the same result.
    via_float = ex.tflite_run(exported.path, x.permute(0, 2, 3, 1).numpy())
    np.testing.assert_array_equal(via_float, logits)


def test_int8_is_not_a_constant(net, exported):
    """Guard against a degenerate model that would agree by luck: predictions vary."""
    x = structured_images(256, seed=7)
    with torch.no_grad():
        ref = net(x).argmax(1).numpy()
    assert len(np.unique(ref)) >= 3


def test_madds_match_hand_count(exported):
    assert ex.tflite_madds(exported.path) == TINY_MADDS


def test_onnx_matches_torch(net, tmp_path):
    import onnx
    import onnxruntime as ort

    path = ex.export_onnx(net, tmp_path / "tiny.onnx")
    assert path.is_file() and not (tmp_path / "tiny.onnx.data").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.onnx"]  # no temp file left
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == 17
    x = structured_images(8, seed=3)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        ref = net(x).numpy()
    for batch in (x[:1], x):  # batch dimension is dynamic
        (got,) = sess.run(["logits"], {"input": batch.numpy()})
        np.testing.assert_allclose(got, ref[: len(batch)], atol=1e-4, rtol=0)


class NotLogits(nn.Module):
    def forward(self, x):
        return x.mean(dim=1)  # [1,32,32]


@pytest.mark.parametrize(
    "module, calib, match",
    [
        (NotLogits(), structured_images(4, 0), r"logits \[1,K\].*\[1, 32, 32\]"),
        (TinyNet().eval(), torch.zeros(0, 3, 32, 32), "calibration set is empty"),
        (TinyNet().eval(), torch.zeros(4, 32, 32, 3), r"NCHW \[N,3,32,32\], got \[4, 32, 32, 3\]"),
        (TinyNet().eval(), torch.zeros(4, 3, 32, 32, dtype=torch.uint8), "must be float"),
        ("not a module", structured_images(4, 0), "torch.nn.Module"),
    ],
)
def test_bad_input_raises_export_error(module, calib, match, tmp_path):
    path = tmp_path / "bad.tflite"
    with pytest.raises(ex.ExportError, match=match) as err:
        ex.export_tflite_int8(module, calib, path)
    assert "\n" not in str(err.value)
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_conversion_failure_is_wrapped(tmp_path):
    """A module torch.export cannot trace: the error is one ExportError line, no file left."""

    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            v = x.mean(dim=(2, 3))
            if v.sum() > 0:  # data-dependent control flow
                return self.fc(v)
            return -self.fc(v)

    path = tmp_path / "dd.tflite"
    with pytest.raises(ex.ExportError, match="conversion failed") as err:
        ex.export_tflite_int8(DataDependent(), structured_images(4, 0), path)
    assert "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_tflite_helpers_reject_bad_input(exported, tmp_path):
    with pytest.raises(ex.ExportError, match="no TFLite file"):
        ex.tflite_madds(tmp_path / "missing.tflite")
    with pytest.raises(ex.ExportError, match="takes rows of shape"):
        ex.tflite_run(exported.path, np.zeros((2, 3, 32, 32), np.float32))
    bad = tmp_path / "garbage.tflite"
    bad.write_bytes(b"not a flatbuffer")
    with pytest.raises(ex.ExportError, match="cannot load"):
        ex.tflite_run(bad, np.zeros((1, 32, 32, 3), np.float32))
    with pytest.raises(ex.ExportError, match="NCHW"):
        ex.quantize_input(np.zeros((1, 32, 32, 3), np.float32), exported)


def test_import_is_light():
    """Importing edgeeas.export must not pull litert_torch (seconds of jax import)."""
    import subprocess
    import sys

    code = "import sys, edgeeas.export; print('litert_torch' in sys.modules, 'jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
