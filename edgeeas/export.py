"""Export a static PyTorch subnet to int8 TFLite (and ONNX), and look inside TFLite files.

The int8 path is litert-torch's PT2E flow, the one measured to work here (see TOOLCHAIN)::

    module (float, NCHW [1,3,32,32] -> logits [1,K])
      -> to_channel_last_io(args=[0])            # the file takes NHWC [1,32,32,3]
      -> torch.export (batch dim dynamic, only so calibration can run in batches)
      -> prepare_pt2e(PT2EQuantizer, symmetric per-channel config)
      -> calibration batches
      -> convert_pt2e(fold_quantize=False)
      -> litert_torch.convert(..., quant_config=QuantConfig(pt2e_quantizer=...)) at batch 1
      -> flatbuffer, written atomically

With litert-torch 0.10.0 the result is full-integer: its input and output tensors are int8
(no float input with a QUANTIZE op, no DEQUANTIZE at the end), so nothing is post-processed;
:func:`export_tflite_int8` checks that and fails loudly if a toolchain change breaks it.
Callers feed real images through :func:`quantize_input` / :func:`dequantize_output`, or let
:func:`tflite_run` do both.

``import litert_torch`` takes seconds (it loads jax), so it is imported only inside the
functions that convert; importing this module costs numpy and torch only.
"""
from __future__ import annotations

import contextlib
import copy
import io
import os
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import EdgeeasError, first_line
from .quiet import quiet_export as _quiet_export, quiet_litert as _quiet_litert
from .quiet import quiet_stderr, verbose_requested  # noqa: F401 - re-exported (edgeeas.export.quiet_stderr)

# onnxruntime looks up a telemetry host ~10 s after import unless this is set first
# (TOOLCHAIN: ort.disable_telemetry_events() does not stop it).
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

__all__ = [
    "ExportError",
    "ExportInfo",
    "export_tflite_int8",
    "export_tflite_float",
    "export_onnx",
    "tflite_info",
    "quantize_input",
    "dequantize_output",
    "tflite_run",
    "tflite_madds",
]

INPUT_CHW = (3, 32, 32)
CALIB_BATCH = 32  # calibration batch size (observers see the same data either way)


class ExportError(EdgeeasError, RuntimeError):
    """An export or TFLite inspection failed; the message is one line and says why."""


@dataclass(frozen=True)
class ExportInfo:
    """What an exported TFLite file takes and returns, and what made it.

    ``input_*`` / ``output_*`` describe the file's own I/O tensors (for the int8 export:
    int8 NHWC ``[1,32,32,3]`` in, int8 ``[1,K]`` out); a real value is
    ``scale * (q - zero_point)``.  ``calib_batch`` is 1 when the net could not be exported
    with a dynamic batch dimension and was calibrated one image at a time.
    """

    path: str
    input_shape: tuple[int, ...]
    input_dtype: str
    input_scale: float
    input_zero_point: int
    output_shape: tuple[int, ...]
    output_dtype: str
    output_scale: float
    output_zero_point: int
    seconds: float = 0.0
    calib_images: int = 0
    calib_batch: int = 0
    versions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready form of every field (shapes as lists); the manifest's export record."""
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        d["output_shape"] = list(self.output_shape)
        return d


# ----------------------------------------------------------------------------- helpers


def _first_line(err: BaseException) -> str:
    return first_line(err, with_type=True)


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for dist in ("torch", "litert-torch", "ai-edge-litert"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "missing"
    return out


@contextlib.contextmanager
def _atomic_path(path: Path, suffix: str) -> Iterator[Path]:
    """Yield a temp path beside ``path``; rename it onto ``path`` only if the body succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the mode open() would
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _check_module(module, calib, input_chw=INPUT_CHW, logits: bool = True):
    """Validate inputs before any slow import; return the float output shape.

    ``logits``: the module must return ``[1,K]``; otherwise a feature map ``[1,C,H,W]``.
    """
    import torch

    shape = "x".join(map(str, input_chw))
    if not isinstance(module, torch.nn.Module):
        raise ExportError(f"expected a torch.nn.Module, got {type(module).__name__}")
    if not isinstance(calib, torch.Tensor):
        raise ExportError(f"calibration data must be a torch.Tensor, got {type(calib).__name__}")
    if calib.ndim != 4 or tuple(calib.shape[1:]) != tuple(input_chw):
        raise ExportError(
            f"calibration data must be float NCHW [N,{','.join(map(str, input_chw))}], "
            f"got {list(calib.shape)}"
        )
    if calib.shape[0] == 0:
        raise ExportError(f"calibration set is empty: pass at least one input [N>=1,{','.join(map(str, input_chw))}]")
    if not calib.is_floating_point():
        raise ExportError(f"calibration data must be float (normalized), got {calib.dtype}")
    if not torch.isfinite(calib).all():
        raise ExportError("calibration data contains NaN or inf")
    one = f"[1,{','.join(map(str, input_chw))}]"
    try:
        with torch.no_grad():
            out = copy.deepcopy(module).eval()(calib[:1].float())
    except Exception as e:  # noqa: BLE001 - any failure of the user's module
        raise ExportError(f"module fails on a {one} input: {_first_line(e)}") from e
    if logits:
        if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != 1:
            got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ExportError(f"module must return logits [1,K] for a {one} input, got {got}")
    elif not isinstance(out, torch.Tensor) or out.ndim not in (2, 4) or out.shape[0] != 1:
        got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ExportError(f"module must return [1,K] or a feature map [1,C,H,W] for a {one} input, got {got}")
    return tuple(out.shape)


def _io_details(interp) -> tuple[dict, dict]:
    ins, outs = interp.get_input_details(), interp.get_output_details()
    if len(ins) != 1 or len(outs) != 1:
        raise ExportError(f"expected a model with 1 input and 1 output, got {len(ins)} and {len(outs)}")
    return ins[0], outs[0]


def _interpreter(path, num_threads: int = 1):
    from ai_edge_litert.interpreter import Interpreter

    path = Path(path)
    if not path.is_file():
        raise ExportError(f"no TFLite file at {path}")
    try:
        interp = Interpreter(model_path=str(path), num_threads=num_threads)
        interp.allocate_tensors()
    except Exception as e:  # noqa: BLE001
        raise ExportError(f"cannot load {path}: {_first_line(e)}") from e
    return interp


def _info_from_interpreter(interp, path, seconds=0.0, versions=None) -> ExportInfo:
    i, o = _io_details(interp)
    return ExportInfo(
        path=str(path),
        input_shape=tuple(int(s) for s in i["shape"]),
        input_dtype=np.dtype(i["dtype"]).name,
        input_scale=float(i["quantization"][0]),
        input_zero_point=int(i["quantization"][1]),
        output_shape=tuple(int(s) for s in o["shape"]),
        output_dtype=np.dtype(o["dtype"]).name,
        output_scale=float(o["quantization"][0]),
        output_zero_point=int(o["quantization"][1]),
        seconds=seconds,
        versions=dict(versions or {}),
    )


# ----------------------------------------------------------------------------- export


@_quiet_export
def export_tflite_int8(module, calib, path, *, nhwc: bool = True, verbose: bool = False,
                       input_chw: tuple[int, int, int] = INPUT_CHW, logits: bool = True) -> ExportInfo:
    """Convert a static eval-mode network to a full-integer int8 TFLite file at ``path``.

    ``module`` takes float NCHW ``[1,3,32,32]`` normalized images and returns logits
    ``[1,K]``; ``calib`` is float NCHW ``[N,3,32,32]`` (already normalized) calibration images.
    The file takes int8 ``[1,32,32,3]`` (NHWC; ``nhwc=False`` keeps ``[1,3,32,32]``) and returns
    int8 ``[1,K]``.  The caller's module is not modified.  Raises :class:`ExportError`.

    Parts of a network (a single block for a latency table row, the stem, the head) export
    too: ``input_chw`` is the input's ``(C,H,W)`` and ``logits=False`` also accepts a feature
    map output ``[1,C,H',W']``, which the file returns as NHWC ``[1,H',W',C]`` (unless
    ``nhwc=False``).
    """
    import torch

    t0 = time.perf_counter()
    path = Path(path)
    input_chw = tuple(int(v) for v in input_chw)
    out_shape = _check_module(module, calib, input_chw, logits)
    out_map = len(out_shape) == 4
    module = copy.deepcopy(module).eval()
    calib = calib.detach().float()

    try:
        import litert_torch
        from litert_torch.quantize.pt2e_quantizer import (
            PT2EQuantizer,
            get_symmetric_quantization_config,
        )
        from litert_torch.quantize.quant_config import QuantConfig
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    except ImportError as e:
        raise ExportError(
            f"int8 export needs litert-torch (pip install -e '.[export]'): {_first_line(e)}"
        ) from e

    if nhwc:
        net = litert_torch.to_channel_last_io(module, args=[0], outputs=[0] if out_map else None).eval()
        calib = calib.permute(0, 2, 3, 1).contiguous()
        if out_map:
            out_shape = (out_shape[0], out_shape[2], out_shape[3], out_shape[1])
    else:
        net = module
    sample = (calib[:1].clone(),)

    with _quiet_litert(verbose), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            # The batch dimension is dynamic only for calibration; the file is converted at
            # batch 1.  A net that cannot be exported with a dynamic batch (e.g. a reshape
            # that hard-codes it) falls back to calibrating one image at a time.
            batch = CALIB_BATCH
            try:
                dim = torch.export.Dim("batch", min=1, max=1 << 16)
                # ChannelLastIOWrapper.forward takes *args: its spec is nested one deeper.
                spec = (({0: dim},),) if nhwc else ({0: dim},)
                # (traced at batch 2: torch.export specializes a size-1 dim to a constant)
                two = (calib[:2] if calib.shape[0] >= 2 else calib[:1].repeat(2, 1, 1, 1),)
                ep = torch.export.export(net, two, dynamic_shapes=spec)
            except Exception:  # noqa: BLE001
                ep = torch.export.export(net, sample)
                batch = 1
            quantizer = _quantizer_class(PT2EQuantizer)().set_global(
                get_symmetric_quantization_config(is_per_channel=True)
            )
            prepared = prepare_pt2e(ep.module(), quantizer)
            with torch.no_grad():
                for start in range(0, calib.shape[0], batch):
                    prepared(calib[start : start + batch])
            quantized = convert_pt2e(prepared, fold_quantize=False)
            edge = litert_torch.convert(
                quantized, sample, quant_config=QuantConfig(pt2e_quantizer=quantizer)
            )
            with _atomic_path(path, ".tflite.tmp") as tmp:
                edge.export(str(tmp))
                info = _check_int8_file(tmp, out_shape, nhwc, input_chw)
        except ExportError:
            raise
        except Exception as e:  # noqa: BLE001 - converter internals raise anything
            raise ExportError(f"int8 TFLite conversion failed: {_first_line(e)}") from e

    return replace(
        info,
        path=str(path),
        seconds=round(time.perf_counter() - t0, 3),
        calib_images=int(calib.shape[0]),
        calib_batch=batch,
        versions=_versions(),
    )


def _quantizer_class(base):
    """litert-torch's PT2E quantizer, also annotating tensor adds it misses.

    Its ``add`` annotator finds adds by ``source_fn_stack``, which torch 2.13's
    ``torch.export`` no longer records, so no add is annotated.  Inside a network that is
    harmless (the converter fuses dequantize -> add -> quantize into an int8 ADD), but a
    residual add that *is* the output (a single block exported for a latency table row)
    stays float, with float I/O.  Annotating the missing adds the way the annotator would
    gives the same int8 ADD everywhere.
    """
    import torch
    from litert_torch.quantize import pt2e_quantizer_utils as qu
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation

    class _Quantizer(base):
        def annotate(self, model):
            model = super().annotate(model)
            config = self.global_config
            if config is None or not config.input_activation:
                return model
            in_spec, out_spec = qu.get_input_act_qspec(config), qu.get_output_act_qspec(config)
            for node in model.graph.nodes:
                if (node.op == "call_function" and node.target is torch.ops.aten.add.Tensor
                        and "quantization_annotation" not in node.meta
                        and all(isinstance(a, torch.fx.Node) for a in node.args[:2])):
                    node.meta["quantization_annotation"] = QuantizationAnnotation(
                        input_qspec_map={a: in_spec for a in node.args[:2]},
                        output_qspec=out_spec, _annotated=True)
            return model

    return _Quantizer


def _check_int8_file(tmp: Path, out_shape, nhwc: bool, input_chw=INPUT_CHW) -> ExportInfo:
    """The converted file must be full-integer with the expected I/O, or it is not written."""
    info = _info_from_interpreter(_interpreter(tmp), tmp)
    c, h, w = input_chw
    want_in = (1, h, w, c) if nhwc else (1, c, h, w)
    problems = []
    if info.input_dtype != "int8" or info.output_dtype != "int8":
        problems.append(f"I/O dtypes {info.input_dtype}/{info.output_dtype}, expected int8/int8")
    if info.input_shape != want_in:
        problems.append(f"input shape {list(info.input_shape)}, expected {list(want_in)}")
    if info.output_shape != tuple(out_shape):
        problems.append(f"output shape {list(info.output_shape)}, expected {list(out_shape)}")
    if not info.input_scale > 0 or not info.output_scale > 0:
        problems.append(f"non-positive I/O scales {info.input_scale}/{info.output_scale}")
    if problems:
        raise ExportError("converted model is not the expected full-integer model: " + "; ".join(problems))
    return info


@_quiet_export
def export_tflite_float(module, path, *, input_chw: tuple[int, int, int] = INPUT_CHW, nhwc: bool = True,
                        verbose: bool = False) -> ExportInfo:
    """The float32 TFLite twin of :func:`export_tflite_int8` (NHWC float input, float output),
    for comparing float and int8 latency and accuracy on a device."""
    import torch

    t0 = time.perf_counter()
    path = Path(path)
    input_chw = tuple(int(v) for v in input_chw)
    out_shape = _check_module(module, torch.zeros(1, *input_chw), input_chw, logits=False)
    module = copy.deepcopy(module).eval()
    try:
        import litert_torch
    except ImportError as e:
        raise ExportError(f"TFLite export needs litert-torch (pip install -e '.[export]'): {_first_line(e)}") from e
    out_map = len(out_shape) == 4
    x = torch.zeros(1, *input_chw)
    if nhwc:
        module = litert_torch.to_channel_last_io(module, args=[0], outputs=[0] if out_map else None).eval()
        x = x.permute(0, 2, 3, 1).contiguous()
    with _quiet_litert(verbose), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            edge = litert_torch.convert(module, (x,))
            with _atomic_path(path, ".tflite.tmp") as tmp:
                edge.export(str(tmp))
                info = _info_from_interpreter(_interpreter(tmp), tmp)
        except ExportError:
            raise
        except Exception as e:  # noqa: BLE001
            raise ExportError(f"float TFLite conversion failed: {_first_line(e)}") from e
    if info.input_dtype != "float32" or tuple(info.input_shape) != tuple(x.shape):
        path.unlink(missing_ok=True)
        raise ExportError(f"float model has input {info.input_dtype} {list(info.input_shape)}, "
                          f"expected float32 {list(x.shape)}")
    return replace(info, path=str(path), seconds=round(time.perf_counter() - t0, 3), versions=_versions())


@_quiet_export
def export_onnx(module, path, *, opset: int = 17) -> Path:
    """Write ``module`` as one self-contained ONNX file: ``input`` float NCHW ``[N,3,32,32]``
    -> ``logits [N,K]`` (batch dimension dynamic).

    Uses the TorchScript exporter (``dynamo=False``: 0.3 s, weights inside the file); the
    caller's module is not modified.  Returns the path.  Raises :class:`ExportError`.
    """
    import torch

    path = Path(path)
    if not isinstance(module, torch.nn.Module):
        raise ExportError(f"expected a torch.nn.Module, got {type(module).__name__}")
    module = copy.deepcopy(module).eval()
    x = torch.zeros(1, *INPUT_CHW)
    with warnings.catch_warnings(), _atomic_path(path, ".onnx.tmp") as tmp:
        warnings.simplefilter("ignore")  # dynamo=False is deprecated in torch 2.9+
        try:
            with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
                torch.onnx.export(
                    module,
                    (x,),
                    str(tmp),
                    dynamo=False,
                    opset_version=opset,
                    input_names=["input"],
                    output_names=["logits"],
                    dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                    do_constant_folding=True,
                )
        except Exception as e:  # noqa: BLE001
            raise ExportError(f"ONNX export failed: {_first_line(e)}") from e
    return path


# ----------------------------------------------------------------------------- running


def tflite_info(path) -> ExportInfo:
    """Read the I/O description of an existing TFLite file (``seconds``/``versions`` empty)."""
    return _info_from_interpreter(_interpreter(path), path)


def quantize_input(x_float_nchw, info: ExportInfo) -> np.ndarray:
    """Float NCHW images (``[3,32,32]`` or ``[N,3,32,32]``, normalized) -> int8 NHWC ``[N,32,32,3]``.

    (NCHW int8 instead if ``info`` describes a file exported with ``nhwc=False``.)
    """
    x = np.asarray(x_float_nchw.detach().cpu() if hasattr(x_float_nchw, "detach") else x_float_nchw,
                   dtype=np.float32)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[1] != 3:
        raise ExportError(f"quantize_input expects float NCHW [N,3,H,W], got {list(x.shape)}")
    if info.input_dtype != "int8":
        raise ExportError(f"model input is {info.input_dtype}, not int8: nothing to quantize")
    q = np.clip(np.round(x / info.input_scale) + info.input_zero_point, -128, 127).astype(np.int8)
    if tuple(info.input_shape[1:]) == (3, *x.shape[2:]):  # a file exported with nhwc=False
        return q
    return q.transpose(0, 2, 3, 1).copy()


def dequantize_output(y_int8, info: ExportInfo) -> np.ndarray:
    """int8 model output -> float32 logits: ``scale * (q - zero_point)``."""
    y = np.asarray(y_int8)
    if info.output_dtype == "int8" and y.dtype != np.int8:
        raise ExportError(f"dequantize_output expects int8 values, got {y.dtype}")
    return ((y.astype(np.float32) - info.output_zero_point) * info.output_scale).astype(np.float32)


def tflite_run(path, x_nhwc_batch, num_threads: int = 1, *, dequantize: bool = True) -> np.ndarray:
    """Run a TFLite classifier over ``x_nhwc_batch`` (``[N,H,W,C]``) one row at a time.

    Float input to an int8 model is quantized with the file's input scale; int8 input is fed
    as is.  Returns ``[N,K]``: float32 logits when ``dequantize`` (default), else the raw output
    tensor values (int8 for an int8 model).
    """
    interp = _interpreter(path, num_threads)
    i, o = _io_details(interp)
    x = np.asarray(x_nhwc_batch)
    want = tuple(int(s) for s in i["shape"][1:])
    if x.ndim == len(want):
        x = x[None]
    if tuple(x.shape[1:]) != want:
        raise ExportError(f"{path} takes rows of shape {list(want)}, got a batch of {list(x.shape)}")
    in_dtype = np.dtype(i["dtype"])
    if in_dtype != x.dtype:
        if in_dtype in (np.int8, np.uint8) and x.dtype.kind == "f":
            scale, zp = i["quantization"]
            info = np.iinfo(in_dtype)
            x = np.clip(np.round(x / scale) + zp, info.min, info.max).astype(in_dtype)
        elif in_dtype.kind == "f" and x.dtype.kind == "f":
            x = x.astype(in_dtype)
        else:
            raise ExportError(f"{path} takes {in_dtype.name} input, got {x.dtype.name}")
    out_dtype = np.dtype(o["dtype"])
    rows = []
    for row in x:
        interp.set_tensor(i["index"], row[None])
        interp.invoke()
        rows.append(interp.get_tensor(o["index"])[0].copy())
    y = np.stack(rows) if rows else np.zeros((0, *o["shape"][1:]), dtype=out_dtype)
    if dequantize and out_dtype.kind in "iu":
        scale, zp = o["quantization"]
        y = ((y.astype(np.float32) - zp) * scale).astype(np.float32)
    return y


# ----------------------------------------------------------------------------- counting


def tflite_madds(path) -> int:
    """Multiply-adds of a TFLite model, from its ops and tensor shapes.

    CONV_2D ``oh*ow*oc*ic*kh*kw`` (``ic`` from the filter, so grouped convs count right),
    DEPTHWISE_CONV_2D ``oh*ow*oc*kh*kw``, FULLY_CONNECTED ``rows*in*out``; element-wise ops,
    pooling and means are not multiply-adds.  Reads the flatbuffer, so delegates do not
    hide nodes.
    """
    from ai_edge_litert.tools import flatbuffer_utils as fbu

    path = Path(path)
    if not path.is_file():
        raise ExportError(f"no TFLite file at {path}")
    try:
        model = fbu.read_model(str(path))
    except Exception as e:  # noqa: BLE001
        raise ExportError(f"cannot parse {path}: {_first_line(e)}") from e

    total = 0
    for sg in model.subgraphs:
        def shape(t):
            return [int(s) for s in sg.tensors[t].shape]

        for op in sg.operators:
            name = fbu.opcode_to_name(model, op.opcodeIndex)
            if name == "CONV_2D":
                out, w = shape(op.outputs[0]), shape(op.inputs[1])  # out NHWC, w [oc,kh,kw,ic]
                total += int(np.prod(out)) * w[1] * w[2] * w[3]
            elif name == "DEPTHWISE_CONV_2D":
                out, w = shape(op.outputs[0]), shape(op.inputs[1])  # w [1,kh,kw,oc]
                total += int(np.prod(out)) * w[1] * w[2]
            elif name == "FULLY_CONNECTED":
                out, w = shape(op.outputs[0]), shape(op.inputs[1])  # w [out,in]
                total += int(np.prod(out)) * w[1]
            elif name in ("CONV_3D", "TRANSPOSE_CONV", "BATCH_MATMUL"):
                raise ExportError(f"tflite_madds does not count {name} ops (in {path})")
    return total
