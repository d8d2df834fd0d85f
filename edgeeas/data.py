"""Datasets: images, fine labels and a superclass map.

Two sources, never a download:

* the official ``cifar-100-python`` archive (``.tar.gz`` or its extracted folder), read through
  an unpickler that only accepts what the archive legitimately holds;
* a user's ImageFolder tree (``train/<class>/*.png``, ``test/<class>/*.png``) with a
  ``superclasses.yaml`` that maps every class to a superclass.

The location comes from ``--data``, else ``EDGEEAS_DATA``, else ``./data``.
Everything is held in memory as uint8 NCHW tensors (CIFAR-100 is 180 MB): augmentation and
batching then run on tensors, which is what keeps a 2-core machine busy with training
rather than with Python image decoding.
"""
from __future__ import annotations

import functools
import hashlib
import io
import os
import pickle
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import EdgeeasError

__all__ = ["Dataset", "DataError", "load_dataset", "resolve_data_path", "MEAN", "STD"]

# Per-channel statistics of the CIFAR-100 training images (shared/data/README.md); used for
# every dataset so that an exported model's input normalization is one known constant.
MEAN = (0.5073, 0.4867, 0.4412)
STD = (0.2674, 0.2565, 0.2762)


class DataError(EdgeeasError):
    """The data could not be found or does not have the expected form (one-line message)."""


@dataclass
class Split:
    images: np.ndarray  # uint8 [N, 3, H, W]
    labels: np.ndarray  # int64 [N] fine-class ids


@dataclass
class Dataset:
    name: str
    classes: list[str]            # fine-class names, index = fine-class id
    superclasses: list[str]       # superclass names, index = superclass id
    class_to_super: np.ndarray    # int64 [num_classes]
    train: Split
    test: Split
    source: str = ""
    fingerprint: str = ""
    _members: dict = field(default_factory=dict, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def num_superclasses(self) -> int:
        return len(self.superclasses)

    def classes_of(self, superclass: int) -> list[int]:
        """Fine-class ids of one superclass, ascending."""
        if superclass not in self._members:
            self._members[superclass] = [int(c) for c in np.flatnonzero(self.class_to_super == superclass)]
        return self._members[superclass]

    def superclass_id(self, name: str) -> int:
        try:
            return self.superclasses.index(name)
        except ValueError:
            raise DataError(f"unknown superclass {name!r}; expected one of: "
                            + ", ".join(self.superclasses)) from None

    def indices(self, split: str, superclasses: list[int]) -> np.ndarray:
        """Indices of the images of ``split`` whose class belongs to ``superclasses``."""
        s = getattr(self, split)
        return np.flatnonzero(np.isin(self.class_to_super[s.labels], superclasses))


# ---- location -------------------------------------------------------------------------
def resolve_data_path(path: str | os.PathLike | None = None) -> Path:
    """``path``, else ``$EDGEEAS_DATA``, else ``./data``; a folder holding the archive works too."""
    p = Path(path or os.environ.get("EDGEEAS_DATA") or "data")
    if p.is_dir():
        for cand in ("cifar-100-python.tar.gz", "cifar-100-python"):
            if (p / cand).exists():
                return p / cand
    if not p.exists():
        how = "--data" if path else ("EDGEEAS_DATA" if os.environ.get("EDGEEAS_DATA") else "./data")
        raise DataError(f"no dataset at {p} (from {how}); expected the cifar-100-python archive "
                        f"(.tar.gz or its folder) or an ImageFolder tree with superclasses.yaml")
    return p


def load_dataset(path: str | os.PathLike | None = None) -> Dataset:
    p = resolve_data_path(path).resolve()
    st = p.stat()
    return _load_cached(str(p), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=2)
def _load_cached(p: str, _mtime: int, _size: int) -> Dataset:
    path = Path(p)
    if path.is_dir() and (path / "superclasses.yaml").exists():
        return _load_imagefolder(path)
    return _load_cifar100(path)


# ---- CIFAR-100 ------------------------------------------------------------------------
class _RestrictedUnpickler(pickle.Unpickler):
    """Only the globals the official archive uses: numpy arrays and latin-1 byte strings."""

    _ALLOWED = {
        ("_codecs", "encode"): lambda: __import__("codecs").encode,
        ("numpy.core.multiarray", "_reconstruct"): lambda: np._core.multiarray._reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): lambda: np._core.multiarray._reconstruct,
        ("numpy", "ndarray"): lambda: np.ndarray,
        ("numpy", "dtype"): lambda: np.dtype,
    }

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return self._ALLOWED[(module, name)]()
        raise pickle.UnpicklingError(f"forbidden global {module}.{name}")


def _unpickle(raw: bytes, what: str, src: Path) -> dict:
    try:
        d = _RestrictedUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as e:  # noqa: BLE001 - any failure means "not a CIFAR-100 pickle"
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"{src}: {what} is not a valid CIFAR-100 pickle ({first})") from None
    if not isinstance(d, dict):
        raise DataError(f"{src}: {what} holds a {type(d).__name__}, expected a dict")
    return d


def _read_cifar_members(path: Path) -> dict[str, bytes]:
    names = ("train", "test", "meta")
    if path.is_dir():
        missing = [n for n in names if not (path / n).is_file()]
        if missing:
            raise DataError(f"{path} lacks {', '.join(missing)}; expected the cifar-100-python "
                            f"folder with train, test and meta")
        return {n: (path / n).read_bytes() for n in names}
    try:
        with tarfile.open(path, "r:*") as tar:
            members = {Path(m.name).name: m for m in tar.getmembers()
                       if m.isfile() and Path(m.name).parent.name == "cifar-100-python"}
            missing = [n for n in names if n not in members]
            if missing:
                found = ", ".join(sorted(m.name for m in tar.getmembers())[:5]) or "nothing"
                raise DataError(f"{path} is not the cifar-100-python archive: no cifar-100-python/"
                                f"{missing[0]} in it (found {found})")
            return {n: tar.extractfile(members[n]).read() for n in names}
    except (tarfile.TarError, EOFError, OSError, ValueError) as e:
        first = str(e).splitlines()[0].rstrip(":") if str(e) else type(e).__name__
        raise DataError(f"{path} is not a readable tar.gz archive ({first}); expected "
                        f"cifar-100-python.tar.gz") from None


def _load_cifar100(path: Path) -> Dataset:
    raw = _read_cifar_members(path)
    meta = _unpickle(raw["meta"], "meta", path)
    if b"fine_label_names" not in meta or b"coarse_label_names" not in meta:
        raise DataError(f"{path}: meta has keys {sorted(k.decode() if isinstance(k, bytes) else str(k) for k in meta)}, "
                        f"expected fine_label_names and coarse_label_names (is this CIFAR-10?)")
    classes = [_s(n) for n in meta[b"fine_label_names"]]
    supers = [_s(n) for n in meta[b"coarse_label_names"]]
    if len(classes) != 100 or len(supers) != 20:
        raise DataError(f"{path}: {len(classes)} fine and {len(supers)} coarse classes, expected 100 and 20")
    splits, c2s = {}, np.full(100, -1, dtype=np.int64)
    for name in ("train", "test"):
        d = _unpickle(raw[name], name, path)
        try:
            data = np.asarray(d[b"data"], dtype=np.uint8)
            fine = np.asarray(d[b"fine_labels"], dtype=np.int64)
            coarse = np.asarray(d[b"coarse_labels"], dtype=np.int64)
        except KeyError as e:
            raise DataError(f"{path}: {name} lacks key {e.args[0]!r}; expected data, fine_labels, coarse_labels") from None
        if data.ndim != 2 or data.shape[1] != 3072 or len(fine) != len(data) or len(coarse) != len(data):
            raise DataError(f"{path}: {name} data has shape {data.shape}, expected N x 3072 with N labels")
        if fine.min() < 0 or fine.max() > 99 or coarse.min() < 0 or coarse.max() > 19:
            raise DataError(f"{path}: {name} labels out of range (fine 0..99, coarse 0..19)")
        c2s[fine] = coarse
        splits[name] = Split(data.reshape(-1, 3, 32, 32), fine)
    if (c2s < 0).any():
        raise DataError(f"{path}: fine classes {np.flatnonzero(c2s < 0).tolist()[:5]} have no image")
    fp = hashlib.sha256(raw["meta"] + raw["test"][:1 << 20]).hexdigest()[:16]
    return Dataset("cifar100", classes, supers, c2s, splits["train"], splits["test"],
                   source=str(path), fingerprint=fp)


def _s(b) -> str:
    return b.decode("latin1") if isinstance(b, bytes) else str(b)


# ---- ImageFolder + superclasses.yaml ----------------------------------------------------
_IMG_EXT = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


def _load_superclass_map(path: Path) -> dict[str, str]:
    from .utils import read_yaml

    doc = read_yaml(path, "superclass map", DataError,
                    "expected 'superclass: [class, ...]' or 'class: superclass' entries")
    if not isinstance(doc, dict) or not doc:
        raise DataError(f"{path}: expected a mapping 'superclass: [class, ...]' or 'class: superclass'")
    out: dict[str, str] = {}
    for k, v in doc.items():
        if isinstance(v, list):        # superclass: [classes]
            for c in v:
                if str(c) in out:
                    raise DataError(f"{path}: class {c!r} is in two superclasses ({out[str(c)]!r} and {k!r})")
                out[str(c)] = str(k)
        elif isinstance(v, str):       # class: superclass
            out[str(k)] = v
        else:
            raise DataError(f"{path}: entry {k!r} maps to {v!r}; expected a list of classes or a superclass name")
    return out


def _load_imagefolder(root: Path, size: int = 32) -> Dataset:
    from PIL import Image

    mapping = _load_superclass_map(root / "superclasses.yaml")
    split_dirs = {s: root / s for s in ("train", "test")}
    if not all(d.is_dir() for d in split_dirs.values()):
        raise DataError(f"{root}: expected folders train/<class>/ and test/<class>/ next to superclasses.yaml")
    classes = sorted(d.name for d in split_dirs["train"].iterdir() if d.is_dir())
    unknown = sorted(set(mapping) - set(classes))
    if unknown:
        raise DataError(f"{root}/superclasses.yaml names classes with no train folder: {', '.join(unknown[:5])}")
    left_out = [c for c in classes if c not in mapping]
    if left_out:
        raise DataError(f"{root}/superclasses.yaml leaves out classes: {', '.join(left_out[:5])}; "
                        f"every class needs a superclass")
    supers = sorted(set(mapping.values()))
    c2s = np.array([supers.index(mapping[c]) for c in classes], dtype=np.int64)
    splits = {}
    for name, d in split_dirs.items():
        imgs, labels = [], []
        for ci, c in enumerate(classes):
            for f in sorted((d / c).glob("*")) if (d / c).is_dir() else []:
                if f.suffix.lower() not in _IMG_EXT:
                    continue
                try:
                    with Image.open(f) as im:
                        im = im.convert("RGB").resize((size, size), Image.BILINEAR)
                except OSError as e:
                    raise DataError(f"{f}: not a readable image ({e})") from None
                imgs.append(np.asarray(im, dtype=np.uint8).transpose(2, 0, 1))
                labels.append(ci)
        if not imgs:
            raise DataError(f"{d}: no images found (expected {d}/<class>/*.png)")
        splits[name] = Split(np.stack(imgs), np.array(labels, dtype=np.int64))
    fp = hashlib.sha256(("|".join(classes) + "|".join(supers)).encode()).hexdigest()[:16]
    return Dataset(root.name, classes, supers, c2s, splits["train"], splits["test"],
                   source=str(root), fingerprint=fp)
