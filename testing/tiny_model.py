"""Real, tiny TFLite models for the tests and benchmarks (runner, protocol, adb target, farm,
regress, validate).  Test support, not runtime: nothing in ``edgeeas``, ``device_bench`` or
``android_runner`` imports it.

Builds a small conv net with litert-torch's PT2E int8 path (full int8, int8
in/out, NHWC input [1, 32, 32, 3]) or a float32 conversion of the same net,
and caches the ``.tflite`` file on disk so a test session pays for the
conversion once (~20 s for int8, importing litert_torch alone takes 4-7 s).

torch and litert_torch are imported inside the builders only.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import tempfile
from pathlib import Path

__all__ = ["build_tiny_model", "default_cache_dir"]

# Bump when the network or the conversion recipe changes: it keys the cache.
_RECIPE_VERSION = "1"


def default_cache_dir() -> Path:
    """``$EDGEEAS_TEST_CACHE`` or ``<tmp>/edgeeas-device-bench-<uid>``."""
    env = os.environ.get("EDGEEAS_TEST_CACHE")
    if env:
        return Path(env)
    return Path(tempfile.gettempdir()) / f"edgeeas-device-bench-{os.getuid()}"


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "none"


def _tiny_net(width: int, num_classes: int):
    import torch
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, width, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1, groups=width),
        nn.ReLU(),
        nn.Conv2d(width, 2 * width, 1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2 * width, num_classes),
    )
    return net.eval()


def build_tiny_model(
    kind: str = "int8",
    width: int = 8,
    num_classes: int = 10,
    input_size: int = 32,
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """Return the path of a cached tiny ``.tflite`` model, building it if needed.

    ``kind`` is ``"int8"`` (PT2E static int8, int8 input and output) or
    ``"float32"``. The input is NHWC ``[1, input_size, input_size, 3]``.
    """
    if kind not in ("int8", "float32"):
        raise ValueError(f"kind must be 'int8' or 'float32', got {kind!r}")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    versions = "-".join(_version(d) for d in ("torch", "litert-torch"))
    key = hashlib.sha1(
        f"{_RECIPE_VERSION}-{kind}-{width}-{num_classes}-{input_size}-{versions}".encode()
    ).hexdigest()[:12]
    size = "" if input_size == 32 else f"_s{input_size}"
    path = cache / f"tiny_{kind}_w{width}_c{num_classes}{size}_{key}.tflite"
    if path.exists() and path.stat().st_size > 0:
        return path

    import litert_torch
    import torch

    net = _tiny_net(width, num_classes)
    args = (torch.randn(1, 3, input_size, input_size),)
    nhwc_args = (args[0].permute(0, 2, 3, 1).contiguous(),)
    if kind == "float32":
        edge = litert_torch.convert(litert_torch.to_channel_last_io(net, args=[0]).eval(), nhwc_args)
    else:
        from litert_torch.quantize import pt2e_quantizer
        from litert_torch.quantize.quant_config import QuantConfig
        from torchao.quantization.pt2e import quantize_pt2e

        exported = torch.export.export(net, args).module()
        quantizer = pt2e_quantizer.PT2EQuantizer().set_global(
            pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True)
        )
        prepared = quantize_pt2e.prepare_pt2e(exported, quantizer)
        gen = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for _ in range(16):  # calibration
                prepared(torch.randn(1, 3, input_size, input_size, generator=gen))
        quantized = quantize_pt2e.convert_pt2e(prepared, fold_quantize=False)
        nhwc = litert_torch.to_channel_last_io(quantized, args=[0])  # the PT2E graph has no eval() switch
        edge = litert_torch.convert(
            nhwc,
            nhwc_args,
            quant_config=QuantConfig(pt2e_quantizer=quantizer),
        )
    # Write atomically: concurrent test sessions may build the same file.
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    edge.export(str(tmp))
    os.replace(tmp, path)
    return path
