"""Models whose outputs are corrupted on purpose, to prove that validation fails loudly.

:func:`roll_classes` rewrites a real int8 classifier so that output ``j`` computes what output
``j + shift`` computed: the weight rows, the bias and the per-channel quantization scales of its
last ``FULLY_CONNECTED`` layer are rolled together.  The result is a valid model whose logits are
exactly the original's, rolled (``y_bad == np.roll(y, -shift, axis=1)``, bit for bit under the
same kernels), so its top-1 class is almost never the original's.  Put on a device in place of
the file the host holds, it is a device that runs the model wrongly (a corrupted copy, a broken
delegate) while every file the host sees is right.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["roll_classes"]

_FULLY_CONNECTED = 9  # tflite BuiltinOperator


def roll_classes(src: str | Path, dst: str | Path, shift: int = 1) -> Path:
    """Write to ``dst`` a copy of the ``.tflite`` at ``src`` whose class outputs are rolled by
    ``shift`` (see the module).

    Raises:
        ValueError: no ``FULLY_CONNECTED`` layer producing a graph output, or a weight/bias/scale
            layout other than one row per class.
    """
    from ai_edge_litert.tools import flatbuffer_utils as fbu

    model = fbu.read_model(str(src))
    g = model.subgraphs[0]
    fc = None
    for op in g.operators:
        code = model.operatorCodes[op.opcodeIndex]
        if max(code.builtinCode, code.deprecatedBuiltinCode) == _FULLY_CONNECTED and set(op.outputs) & set(g.outputs):
            fc = op
    if fc is None:
        raise ValueError(f"{src}: no FULLY_CONNECTED layer produces a graph output")
    k = None
    for idx, dtype in ((fc.inputs[1], np.int8), (fc.inputs[2] if len(fc.inputs) > 2 else -1, np.int32)):
        if idx < 0:
            continue
        t = g.tensors[idx]
        rows = int(t.shape[0])
        k = k or rows
        buf = model.buffers[t.buffer]
        data = np.frombuffer(bytes(buf.data), dtype=dtype).reshape(rows, -1)
        buf.data = np.roll(data, -shift, axis=0).tobytes()
        q = t.quantization
        if q is not None and q.scale is not None and len(q.scale) == rows:
            q.scale = np.roll(np.asarray(q.scale), -shift).tolist()
            if q.zeroPoint is not None and len(q.zeroPoint) == rows:
                q.zeroPoint = np.roll(np.asarray(q.zeroPoint), -shift).tolist()
        elif q is not None and q.scale is not None and len(q.scale) not in (0, 1):
            raise ValueError(f"{src}: tensor {t.name!r} has {len(q.scale)} scales for {rows} rows")
    fbu.write_model(model, str(dst))
    return Path(dst)
