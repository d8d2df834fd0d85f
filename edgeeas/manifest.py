"""The model manifest: what ``edgeeas specialize`` writes beside ``model.tflite``, typed.

:class:`ModelManifest` is written in one place (:func:`write_manifest`, by the build in
:mod:`edgeeas.specialize`) and read through one function, :func:`read_manifest`, by
validation, deploy, the report and the farm regression.  :func:`model_inputs` is the one way
from a manifest plus a dataset to the model's input tensors (normalized, quantized, laid out).

Units are in the field names, so no reader guesses:

* ``budget``: :class:`BudgetSpec` with ``latency_ms`` (milliseconds) or ``madds`` (a count of
  multiply-adds, not millions), plus the ``text`` it was given as (``3ms``, ``8M``);
* ``input``: :class:`InputSpec` with ``mean_0_1`` / ``std_0_1``, per RGB channel, on pixels
  scaled to 0..1 (``uint8 / 255``), and the int8 ``scale`` / ``zero_point``
  (``real = scale * (q - zero_point)``);
* ``accuracy``: :class:`AccuracySpec` in percent (``*_pct``) and percentage points (``*_pp``);
* ``madds``, ``madds_tflite``, ``params``: counts; ``predicted_latency_ms``: milliseconds.

Format ``edgeeas-model/2`` (:data:`MANIFEST_FORMAT`).  :meth:`ModelManifest.from_dict` also
reads the older ``edgeeas-model/1`` (:data:`LEGACY_FORMATS`; budget ``value`` in the budget's
unit, ``M`` = millions of MAdds; ``mean``/``std`` on 0..1; accuracy keys without units) and
hand-written manifests without a ``format`` (read as ``/1``), upgrading them.

Example::

    m = read_manifest("out/host/vehicles_1/3ms/manifest.json")
    m.budget.latency_ms, m.input.mean_0_1, m.accuracy.host_int8_pct
    mx = model_inputs(m, load_dataset(None))     # mx.inputs: int8 NHWC [N,32,32,3] test images of its classes
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import EdgeeasError, EdgeeasUsageError

__all__ = ["MANIFEST_FORMAT", "LEGACY_FORMATS", "ManifestError", "BudgetSpec", "InputSpec", "OutputSpec",
           "AccuracySpec", "ModelManifest", "ModelInputs", "read_manifest", "write_manifest", "model_inputs"]

MANIFEST_FORMAT = "edgeeas-model/2"
LEGACY_FORMATS = ("edgeeas-model/1",)
PREPROCESS = "x = (uint8_rgb / 255 - mean_0_1) / std_0_1; q = clip(round(x / scale) + zero_point, -128, 127)"


class ManifestError(EdgeeasError):
    """A manifest that is not readable JSON, not an edgeeas model manifest, or has a bad field (one line)."""


def _opt(conv, v):
    return None if v is None else conv(v)


# ---- parts --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BudgetSpec:
    """A scenario's budget.

    Attributes:
        text: as the user wrote it, canonical (``3ms``, ``0.5ms``, ``8M``); also the folder name.
        latency_ms: a latency budget in milliseconds (``500us`` is 0.5), else None.
        madds: an MAdds budget as a count of multiply-adds (``8M`` is 8000000), else None.
    """

    text: str
    latency_ms: float | None = None
    madds: int | None = None

    @property
    def kind(self) -> str:
        """``"latency_ms"`` or ``"madds"`` (the kinds of :class:`edgeeas.search.Budget`)."""
        return "latency_ms" if self.latency_ms is not None else "madds"

    @classmethod
    def from_budget(cls, b) -> "BudgetSpec":
        """From an :class:`edgeeas.search.Budget` (``value`` in ms, or in millions of MAdds)."""
        if b.kind == "latency_ms":
            return cls(str(b), latency_ms=float(b.value))
        return cls(str(b), madds=int(round(float(b.value) * 1e6)))

    def to_dict(self) -> dict:
        """``{"text", "kind", "latency_ms", "madds"}`` (the unused unit is null)."""
        return {"text": self.text, "kind": self.kind, "latency_ms": self.latency_ms, "madds": self.madds}

    @classmethod
    def from_dict(cls, d: dict, legacy: bool = False) -> "BudgetSpec":
        """Parse :meth:`to_dict`'s form, or with ``legacy`` format /1's ``{"kind", "value", "text",
        "unit"}``.  Raises ``KeyError``/``ValueError`` (:meth:`ModelManifest.from_dict` words them)."""
        if not legacy:
            spec = cls(str(d["text"]), _opt(float, d.get("latency_ms")), _opt(int, d.get("madds")))
        else:  # /1: {"kind", "value" in the budget's unit, "text", "unit"}; MAdds were in millions ("M")
            kind, value = d.get("kind"), d.get("value")
            if kind not in ("latency_ms", "madds") or value is None:
                raise ValueError(f"budget {d!r}: expected kind 'latency_ms' or 'madds' and a value")
            if kind == "madds" and d.get("unit", "M") != "M":
                raise ValueError(f"budget {d!r}: MAdds budgets are written in millions (unit 'M')")
            text = d.get("text") or f"{float(value):g}{'ms' if kind == 'latency_ms' else 'M'}"
            spec = (cls(str(text), latency_ms=float(value)) if kind == "latency_ms"
                    else cls(str(text), madds=int(round(float(value) * 1e6))))
        if (spec.latency_ms is None) == (spec.madds is None):
            raise ValueError(f"budget {d!r}: give exactly one of latency_ms and madds")
        return spec


@dataclass(frozen=True)
class InputSpec:
    """The model's input tensor and how images become it.

    Attributes:
        layout: ``"NHWC"`` (the int8 export) or ``"NCHW"``.
        shape: the file's input shape, ``[1, 32, 32, 3]``.
        dtype: ``"int8"`` (or the file's dtype).
        scale, zero_point: input quantization, ``real = scale * (q - zero_point)``; None if unknown
            (then :meth:`tensor` needs the model's :class:`~edgeeas.export.ExportInfo`).
        mean_0_1, std_0_1: normalization per RGB channel on pixels scaled to 0..1 (``uint8 / 255``);
            the training normalization (:data:`edgeeas.data.MEAN`, ``STD``) when not given.
    """

    layout: str = "NHWC"
    shape: tuple[int, ...] = ()
    dtype: str = "int8"
    scale: float | None = None
    zero_point: int | None = None
    mean_0_1: tuple[float, float, float] = ()
    std_0_1: tuple[float, float, float] = ()

    def __post_init__(self):
        from .data import MEAN, STD

        if not self.mean_0_1:
            object.__setattr__(self, "mean_0_1", tuple(MEAN))
        if not self.std_0_1:
            object.__setattr__(self, "std_0_1", tuple(STD))
        m, s = tuple(float(v) for v in self.mean_0_1), tuple(float(v) for v in self.std_0_1)
        if len(m) != 3 or len(s) != 3 or not all(0.0 <= v <= 1.0 for v in m) or not all(0.0 < v <= 1.0 for v in s):
            raise ValueError(f"input mean {list(m)} / std {list(s)}: expected 3 values each on the 0..1 pixel "
                             f"scale (uint8 / 255), std > 0")
        object.__setattr__(self, "mean_0_1", m)
        object.__setattr__(self, "std_0_1", s)
        object.__setattr__(self, "shape", tuple(int(v) for v in self.shape))

    @classmethod
    def from_export(cls, info) -> "InputSpec":
        """From an :class:`edgeeas.export.ExportInfo`, with the training normalization."""
        shape = tuple(info.input_shape)
        return cls("NHWC" if shape and shape[-1] == 3 else "NCHW", shape, info.input_dtype,
                   float(info.input_scale), int(info.input_zero_point))

    def normalize(self, images: np.ndarray) -> np.ndarray:
        """uint8 RGB NCHW ``[N,3,H,W]`` -> float32 NCHW ``(x / 255 - mean) / std``.

        Computed as ``(x - 255 mean) / (255 std)`` in float32: bit for bit what
        :func:`edgeeas.evaluate.to_float` feeds the PyTorch model."""
        m = np.asarray(self.mean_0_1, np.float32).reshape(1, 3, 1, 1) * np.float32(255)
        s = np.asarray(self.std_0_1, np.float32).reshape(1, 3, 1, 1) * np.float32(255)
        return ((np.asarray(images).astype(np.float32) - m) / s).astype(np.float32)

    def tensor(self, images: np.ndarray, info=None) -> np.ndarray:
        """uint8 RGB NCHW images ``[N,3,H,W]`` -> the model's input rows (``[N,32,32,3]`` int8).

        Normalized with ``mean_0_1``/``std_0_1``, quantized with the model's own scale and zero
        point when ``info`` (an :class:`~edgeeas.export.ExportInfo`, e.g. ``tflite_info(path)``) is
        given, else with this spec's; transposed to NHWC when the model takes NHWC.

        Raises:
            ManifestError: no quantization parameters for an integer input, or images whose
                shape does not match the model's rows.
        """
        x = self.normalize(images)
        shape = tuple(info.input_shape) if info is not None else self.shape
        dtype = np.dtype(info.input_dtype if info is not None else self.dtype)
        scale = info.input_scale if info is not None else self.scale
        zp = info.input_zero_point if info is not None else self.zero_point
        row = shape[1:] if shape and shape[0] == 1 else shape
        if row and row[-1] == 3 and x.shape[1:] != row:
            x = x.transpose(0, 2, 3, 1)
        if dtype.kind in "iu":
            if scale is None or zp is None:
                raise ManifestError("the model input is integer but no input scale/zero_point is known: "
                                    "give the model's tflite_info")
            lim = np.iinfo(dtype)
            x = np.clip(np.round(x / scale) + zp, lim.min, lim.max).astype(dtype)
        else:
            x = x.astype(dtype)
        if row and x.shape[1:] != row:
            raise ManifestError(f"images give input rows {list(x.shape[1:])} but the model takes {list(row)}")
        return np.ascontiguousarray(x)

    def to_dict(self) -> dict:
        """The JSON form, with ``preprocess`` spelling the formula out for readers in other languages."""
        return {"layout": self.layout, "shape": list(self.shape), "dtype": self.dtype, "scale": self.scale,
                "zero_point": self.zero_point, "mean_0_1": list(self.mean_0_1), "std_0_1": list(self.std_0_1),
                "preprocess": PREPROCESS}

    @classmethod
    def from_dict(cls, d: dict, legacy: bool = False) -> "InputSpec":
        """Parse :meth:`to_dict`'s form (``legacy``: format /1's ``mean``/``std``, also on 0..1).
        Raises ``ValueError`` for a normalization off the 0..1 scale."""
        mean, std = (d.get("mean"), d.get("std")) if legacy else (d.get("mean_0_1"), d.get("std_0_1"))
        return cls(str(d.get("layout", "NHWC")), tuple(d.get("shape") or ()), str(d.get("dtype", "int8")),
                   _opt(float, d.get("scale")), _opt(int, d.get("zero_point")), tuple(mean or ()), tuple(std or ()))


@dataclass(frozen=True)
class OutputSpec:
    """The model's output: ``shape`` ``[1, K]``, ``dtype``, quantization (``real = scale * (q -
    zero_point)``); logits over the manifest's ``classes``, in that order."""

    shape: tuple[int, ...] = ()
    dtype: str = "int8"
    scale: float | None = None
    zero_point: int | None = None

    @classmethod
    def from_export(cls, info) -> "OutputSpec":
        """From an :class:`edgeeas.export.ExportInfo`."""
        return cls(tuple(int(v) for v in info.output_shape), info.output_dtype, float(info.output_scale),
                   int(info.output_zero_point))

    def to_dict(self) -> dict:
        """The JSON form (plus ``meaning``)."""
        return {"shape": list(self.shape), "dtype": self.dtype, "scale": self.scale, "zero_point": self.zero_point,
                "meaning": "logits over classes, in this order"}

    @classmethod
    def from_dict(cls, d: dict, legacy: bool = False) -> "OutputSpec":
        """Parse :meth:`to_dict`'s form (the same in format /1)."""
        return cls(tuple(int(v) for v in d.get("shape") or ()), str(d.get("dtype", "int8")),
                   _opt(float, d.get("scale")), _opt(int, d.get("zero_point")))


@dataclass(frozen=True)
class AccuracySpec:
    """Host accuracies on the scenario's test images, in percent (``_pct``) or points (``_pp``).

    Attributes:
        host_float_pct: the PyTorch subnet (float32).
        host_int8_pct: the int8 file through the LiteRT interpreter.
        int8_float_drop_pp: float minus int8, percentage points.
        int8_float_agreement_pct: images on which both predict the same class.
        test_images: how many images (the first N of the split's images of the classes).
        split: ``"test"``.
    """

    host_float_pct: float | None = None
    host_int8_pct: float | None = None
    int8_float_drop_pp: float | None = None
    int8_float_agreement_pct: float | None = None
    test_images: int | None = None
    split: str = "test"

    _LEGACY = {"host_float": "host_float_pct", "host_int8": "host_int8_pct", "int8_float_drop": "int8_float_drop_pp",
               "int8_float_agreement": "int8_float_agreement_pct"}

    def to_dict(self) -> dict:
        """The fields as a JSON object."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict, legacy: bool = False) -> "AccuracySpec":
        """Parse :meth:`to_dict`'s form (``legacy``: format /1's names without units); unknown keys
        are dropped.  Raises ``ValueError`` for a non-number."""
        if legacy:
            d = {cls._LEGACY.get(k, k): v for k, v in d.items()}
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        for k in ("host_float_pct", "host_int8_pct", "int8_float_drop_pp", "int8_float_agreement_pct"):
            kw[k] = _opt(float, kw.get(k))
        kw["test_images"] = _opt(int, kw.get("test_images"))
        return cls(**kw)


# ---- the manifest ---------------------------------------------------------------------------------
_PARTS = {"budget": BudgetSpec, "input": InputSpec, "output": OutputSpec, "accuracy": AccuracySpec}
_LEGACY_DROPPED = ("madds_m",)  # /1 fields now derived (ModelManifest.madds_m)


@dataclass
class ModelManifest:
    """``manifest.json`` of one emitted model (format :data:`MANIFEST_FORMAT`).

    Every field may be missing in a hand-written manifest (None or empty); ``edgeeas
    specialize`` fills them all.  ``classes`` are fine-class ids in head order (output row i is
    ``classes[i]``), ``labels`` their names; ``request`` is what made the model (a folder whose
    request matches is kept on a rerun); the provenance dicts (``search``, ``supernet``,
    ``generator``, ``dataset``, ``versions``, ``files``, ``bn_recalibration``, ``calibration``)
    are recorded as the build gives them.  Unknown top-level keys are kept in ``extra`` and
    written back.
    """

    format: str = MANIFEST_FORMAT
    scenario: str | None = None
    superclasses: list[str] = field(default_factory=list)
    classes: list[int] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    budget: BudgetSpec | None = None
    target: str | None = None
    strategy: str | None = None
    arch: str | None = None
    predicted_latency_ms: float | None = None   # the target's latency predictor, ms
    predicted_cost: float | None = None         # the search's cost model, in cost_unit
    cost_unit: str | None = None                # "ms" or "M" (millions of MAdds)
    cost_model: str | None = None
    madds: int | None = None                    # multiply-adds of the architecture (count)
    madds_tflite: int | None = None             # counted in the exported file (count)
    params: int | None = None                   # parameters (count)
    accuracy: AccuracySpec | None = None
    input: InputSpec | None = None
    output: OutputSpec | None = None
    search: dict = field(default_factory=dict)
    bn_recalibration: dict = field(default_factory=dict)
    calibration: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)   # name -> {"sha256", "bytes"}
    supernet: dict = field(default_factory=dict)
    generator: dict | None = None
    dataset: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    command: str | None = None
    created: str | None = None
    request: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    @property
    def madds_m(self) -> float | None:
        """``madds`` in millions (4 decimals), for tables."""
        return None if self.madds is None else round(self.madds / 1e6, 4)

    def input_spec(self) -> InputSpec:
        """``input``, or the default spec (int8 NHWC, training normalization) if the manifest has none."""
        return self.input or InputSpec()

    def to_dict(self) -> dict:
        """The JSON object written to ``manifest.json`` (format :data:`MANIFEST_FORMAT`)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            v = getattr(self, f.name)
            out[f.name] = v.to_dict() if hasattr(v, "to_dict") else v
        out["format"] = MANIFEST_FORMAT
        out.update({k: v for k, v in self.extra.items() if k not in out})
        return out

    @classmethod
    def from_dict(cls, d: dict, *, strict: bool = False) -> "ModelManifest":
        """Parse (and upgrade) a manifest object.

        Reads :data:`MANIFEST_FORMAT`, the legacy :data:`LEGACY_FORMATS` and, unless ``strict``,
        hand-written dicts without ``format`` (read as legacy); the result is always the current
        format.

        Raises:
            ManifestError: another format, or a field of the wrong type or unit (the message
                names the field).
        """
        if not isinstance(d, dict):
            raise ManifestError(f"expected a JSON object, got {type(d).__name__}")
        fmt = d.get("format")
        if strict and fmt is None:
            raise ManifestError("no 'format': not a manifest written by edgeeas specialize")
        if fmt is not None and fmt != MANIFEST_FORMAT and fmt not in LEGACY_FORMATS:
            raise ManifestError(f"unknown manifest format {fmt!r}; expected {MANIFEST_FORMAT!r} "
                                f"(or {', '.join(map(repr, LEGACY_FORMATS))})")
        legacy = fmt != MANIFEST_FORMAT
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kw: dict[str, Any] = {"extra": {k: v for k, v in d.items()
                                        if k not in names and not (legacy and k in _LEGACY_DROPPED)}}
        for k in names - {"format"}:
            if k not in d or d[k] is None:
                continue
            v = d[k]
            try:
                if k in _PARTS:
                    if not isinstance(v, dict):
                        raise TypeError(f"expected an object, got {type(v).__name__}")
                    v = _PARTS[k].from_dict(v, legacy)
                elif k == "classes":
                    v = [int(c) for c in v]
                elif k in ("superclasses", "labels"):
                    v = [str(c) for c in v]
                elif k in ("madds", "madds_tflite", "params"):
                    v = int(v)
                elif k in ("predicted_latency_ms", "predicted_cost"):
                    v = float(v)
            except (KeyError, TypeError, ValueError) as e:
                raise ManifestError(f"bad {k!r}: {e}") from None
            kw[k] = v
        if legacy and isinstance(kw.get("request"), dict) and kw["request"].get("format") in LEGACY_FORMATS:
            # the request names what made the model; a /1 folder holds the same model, so a rerun
            # of the same request keeps it (only the manifest's spelling changed)
            kw["request"] = {**kw["request"], "format": MANIFEST_FORMAT}
        return cls(**kw)


def read_manifest(path: str | Path, *, strict: bool = False) -> ModelManifest:
    """The manifest at ``path`` (any format :meth:`ModelManifest.from_dict` reads; with ``strict``
    only those that name their format), upgraded.

    Raises:
        EdgeeasUsageError: the file cannot be read (missing, permissions).
        ManifestError: not JSON, not an object, or a bad field; the message names ``path``.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as e:
        raise EdgeeasUsageError(f"cannot read manifest {path}: {e.strerror or e}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        where = f"line {e.lineno}: {e.msg}" if isinstance(e, json.JSONDecodeError) else str(e)
        raise ManifestError(f"manifest {path} is not valid JSON ({where})") from None
    if not isinstance(data, dict):
        raise ManifestError(f"manifest {path}: expected a JSON object, got {type(data).__name__}")
    try:
        return ModelManifest.from_dict(data, strict=strict)
    except ManifestError as e:
        raise ManifestError(f"manifest {path}: {e}") from None


def write_manifest(path: str | Path, manifest: ModelManifest) -> None:
    """Write ``manifest.to_dict()`` as indented JSON, atomically (temporary file, then rename)."""
    from .utils import atomic_write_text

    atomic_write_text(Path(path), json.dumps(manifest.to_dict(), indent=2, default=str) + "\n")


# ---- manifest + dataset -> input tensors ------------------------------------------------------------
@dataclass
class ModelInputs:
    """A model's evaluation inputs.

    Attributes:
        inputs: the model's input rows, ``[N, 32, 32, 3]`` int8 for the int8 export.
        labels: int64 ``[N]``, the head row (index into ``classes``) of each image's class.
        classes: fine-class ids in head order.
        indices: int64 ``[N]``, the images' indices in the dataset split.
        images: uint8 NCHW ``[N, 3, H, W]``, the images themselves (for the float model).
    """

    inputs: np.ndarray
    labels: np.ndarray
    classes: list[int]
    indices: np.ndarray
    images: np.ndarray

    @property
    def fine_labels(self) -> np.ndarray:
        """int64 ``[N]`` fine-class ids of the images."""
        return np.asarray(self.classes, np.int64)[self.labels]


def manifest_classes(manifest: ModelManifest, ds) -> list[int]:
    """Fine-class ids in head order: the dataset's ids of ``manifest.labels`` (class names, matched
    by name), else ``manifest.classes``, else every class of its
    ``superclasses`` (ascending id, as ``edgeeas specialize`` orders a head).

    Raises:
        ManifestError: class ids outside the dataset.
        EdgeeasUsageError: neither classes nor superclasses (or an unknown superclass name).
    """
    if manifest.labels:  # class names win: the dataset's ids of the same names, in head order
        index = {c: i for i, c in enumerate(ds.classes)}
        missing = [n for n in manifest.labels if n not in index]
        if missing:
            raise ManifestError(f"the model's classes {', '.join(missing[:5])} are not classes of dataset {ds.name} "
                                f"({getattr(ds, 'source', '')}); pass the --data it was built with")
        return [index[n] for n in manifest.labels]
    if manifest.classes:
        bad = [c for c in manifest.classes if not 0 <= c < ds.num_classes]
        if bad:
            raise ManifestError(f"manifest classes {bad} are not fine-class ids of {ds.name} (0..{ds.num_classes - 1})")
        return list(manifest.classes)
    if not manifest.superclasses:
        raise EdgeeasUsageError("the manifest names no classes or superclasses")
    return sorted(c for n in manifest.superclasses for c in ds.classes_of(ds.superclass_id(n)))


def model_inputs(manifest: ModelManifest, ds, info=None, *, split: str = "test", limit: int = 0,
                 sample: int = 0, seed: int = 0) -> ModelInputs:
    """The ``split`` images of the manifest's classes as the model's inputs, with their labels.

    Args:
        manifest: gives the classes (:func:`manifest_classes`) and the input spec (normalization,
            layout, quantization).
        ds: an :class:`edgeeas.data.Dataset`.
        info: the model file's :class:`~edgeeas.export.ExportInfo` (``tflite_info(path)``): its own
            input scale, zero point, dtype and shape win over the manifest's.
        limit: keep the first ``limit`` images (0: all).
        sample: keep a random ``sample`` of them instead, seeded by ``seed``, in split order (0: all).

    Returns:
        :class:`ModelInputs`.

    Raises:
        ManifestError, EdgeeasUsageError: see :func:`manifest_classes` and :meth:`InputSpec.tensor`.
        EdgeeasError: no image of those classes in the split.
    """
    classes = manifest_classes(manifest, ds)
    s = getattr(ds, split)
    idx = np.flatnonzero(np.isin(s.labels, classes))
    if limit:
        idx = idx[:limit]
    if sample and len(idx) > sample:
        idx = np.sort(np.random.default_rng(seed).choice(idx, sample, replace=False))
    if not len(idx):
        raise EdgeeasError(f"no {split} images of classes {classes} in {getattr(ds, 'source', None) or ds.name}")
    lookup = {c: i for i, c in enumerate(classes)}
    labels = np.array([lookup[int(c)] for c in s.labels[idx]], np.int64)
    images = s.images[idx]
    return ModelInputs(manifest.input_spec().tensor(images, info), labels, classes, idx, images)
