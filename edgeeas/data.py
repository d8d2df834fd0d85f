"""Datasets: images, fine labels and a superclass map.

Two sources, never a download:

* the official ``cifar-100-python`` archive (``.tar.gz`` or its extracted folder), read through
  an unpickler that only accepts what the archive legitimately holds;
* a user's ImageFolder tree (``train/<class>/*.png``, ``test/<class>/*.png``) with a
  ``superclasses.yaml`` that maps every class to a superclass.

The location comes from ``--data``, else ``EDGEEAS_DATA``, else ``./data``.  ``--superclasses
FILE`` (every command that takes ``--data``) regroups any dataset, CIFAR-100 included: a YAML
``superclass: [class, ...]`` mapping, validated up front (every class named exists, no class in
two groups, no duplicate key, no empty or one-class group: each a one-line error naming the
line).  Classes the file does not name are left out of the dataset (a tree's own
``superclasses.yaml`` must name every class instead).

A dataset's ``fingerprint`` covers its content: every image's bytes and label of both splits,
the class and superclass names and the grouping, so changing any image or the grouping
invalidates every cache keyed by it (accuracy caches, specialized models).  Classes are
identified by *name* (``Dataset.classes``): a supernet's head rows are matched to them by name
(:func:`edgeeas.checkpoint.load_supernet` with ``dataset=``).
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

from .errors import EdgeeasError, EdgeeasUsageError

__all__ = ["Dataset", "DataError", "DataSource", "load_dataset", "load_grouping", "regroup", "resolve_data_path",
           "content_fingerprint", "CIFAR100_CLASSES", "MEAN", "STD"]

# Per-channel statistics of the CIFAR-100 training images (shared/data/README.md); used for
# every dataset so that an exported model's input normalization is one known constant.
MEAN = (0.5073, 0.4867, 0.4412)
STD = (0.2674, 0.2565, 0.2762)


# The fine classes of CIFAR-100 in label order (its meta's fine_label_names): the head classes of
# a supernet checkpoint that predates recording them (meta["classes"]) and has a 100-way head.
CIFAR100_CLASSES = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel "
    "can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur "
    "dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion "
    "lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree "
    "pear pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea "
    "seal shark shrew skunk skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table "
    "tank telephone television tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman "
    "worm").split()


class DataError(EdgeeasError):
    """The data could not be found or does not have the expected form (one-line message)."""


class UnknownSuperclassError(DataError, EdgeeasUsageError):
    """A superclass name the dataset does not have: a usage error (exit 2) in every command."""


class DataSource(str):
    """A ``--data`` value (the path, ``""`` for the default) that also carries ``--superclasses``:
    a ``str``, so everything that records or passes the path on keeps working, and
    :func:`load_dataset` applies the grouping wherever the value travels."""

    superclasses: str | None = None

    def __new__(cls, path, superclasses=None):
        obj = super().__new__(cls, "" if path is None else str(path))
        obj.superclasses = str(superclasses) if superclasses else None
        return obj

    @classmethod
    def of(cls, path, superclasses=None):
        """``path`` itself without a grouping (None stays None), else a DataSource."""
        if not superclasses:
            return path
        return cls(path, superclasses)


@dataclass
class Split:
    """One split of a dataset: ``images`` uint8 (N, 3, H, W) and ``labels`` int64 (N,) fine-class ids."""

    images: np.ndarray  # uint8 [N, 3, H, W]
    labels: np.ndarray  # int64 [N] fine-class ids


@dataclass(eq=False)
class Dataset:
    """Images, fine labels and the superclass map, all in memory (uint8 NCHW).

    ``classes[i]`` names fine class ``i``; ``class_to_super[i]`` is its superclass id;
    ``fingerprint`` hashes every image's bytes, the labels, the names and the grouping (so any
    change of content invalidates what was keyed by it)."""

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
        """Fine classes (the rows a full head needs)."""
        return len(self.classes)

    @property
    def num_superclasses(self) -> int:
        """Superclasses (groups of fine classes)."""
        return len(self.superclasses)

    def classes_of(self, superclass: int) -> list[int]:
        """Fine-class ids of one superclass, ascending."""
        if superclass not in self._members:
            self._members[superclass] = [int(c) for c in np.flatnonzero(self.class_to_super == superclass)]
        return self._members[superclass]

    def superclass_id(self, name: str) -> int:
        """The id of superclass ``name``; an unknown name is a one-line error listing the known ones."""
        try:
            return self.superclasses.index(name)
        except ValueError:
            raise UnknownSuperclassError(f"unknown superclass {name!r}; expected one of: "
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


def load_dataset(path: str | os.PathLike | None = None, superclasses: str | os.PathLike | None = None) -> Dataset:
    """The dataset at ``path`` (:func:`resolve_data_path`), regrouped by the YAML file
    ``superclasses`` if given (or if ``path`` is a :class:`DataSource` carrying one).

    Raises:
        DataError: no dataset, an unreadable one, or a bad grouping (one line, naming the line).
    """
    superclasses = superclasses or getattr(path, "superclasses", None)
    sp = Path(superclasses) if superclasses else None
    if sp is not None and not sp.is_file():  # before loading anything
        raise DataError(f"--superclasses {sp}: no such file; expected a YAML 'superclass: [class, ...]' mapping")
    p = resolve_data_path(path or None).resolve()
    ds = _load_cached(str(p), _stamp(p), _is_tree(p) and superclasses is not None)
    if sp is not None:
        st = sp.stat()
        ds = _regroup_cached(ds, str(sp.resolve()), st.st_mtime_ns, st.st_size)
    return ds


def _is_tree(p: Path) -> bool:
    return p.is_dir() and (p / "train").is_dir() and (p / "test").is_dir()


def _stamp(p: Path) -> tuple:
    """What the cache keys on: the file's (mtime, size), or for a tree every file's."""
    if _is_tree(p):
        return tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in sorted(p.rglob("*")) if f.is_file())
    st = p.stat()
    return (st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=2)
def _load_cached(p: str, _stamp: tuple, grouping_given: bool = False) -> Dataset:
    path = Path(p)
    if _is_tree(path):
        return _load_imagefolder(path, own_map=not grouping_given or (path / "superclasses.yaml").exists())
    return _load_cifar100(path)


@functools.lru_cache(maxsize=4)
def _regroup_cached(ds: Dataset, path: str, _mtime: int, _size: int) -> Dataset:
    return regroup(ds, Path(path))


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
    return Dataset("cifar100", classes, supers, c2s, splits["train"], splits["test"], source=str(path),
                   fingerprint=content_fingerprint(classes, supers, c2s, splits["train"], splits["test"]))


def content_fingerprint(classes: list[str], superclasses: list[str], class_to_super: np.ndarray,
                        train: Split, test: Split) -> str:
    """sha256 (16 hex digits) of what a dataset is: class and superclass names, the grouping,
    and every image's bytes and label of both splits (all of CIFAR-100 takes about 0.3 s)."""
    h = hashlib.sha256()
    for part in ("\n".join(classes), "\n".join(superclasses)):
        h.update(part.encode())
        h.update(b"\0")
    h.update(np.ascontiguousarray(class_to_super, dtype=np.int64).tobytes())
    for s in (train, test):
        h.update(np.ascontiguousarray(s.labels, dtype=np.int64).tobytes())
        h.update(str(s.images.shape).encode())
        h.update(np.ascontiguousarray(s.images).data)
    return h.hexdigest()[:16]


def _s(b) -> str:
    return b.decode("latin1") if isinstance(b, bytes) else str(b)


# ---- ImageFolder + superclasses.yaml ----------------------------------------------------
_IMG_EXT = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


class _Group:
    """One superclass of a grouping file, with the lines it came from."""

    def __init__(self, name: str, line: int):
        self.name, self.line, self.classes = name, line, []   # classes: [(class, line)]


def _yaml_groups(path: Path) -> list[_Group]:
    """The groups of a superclass YAML in file order, each with its line numbers.

    Two forms, mixable: ``superclass: [class, ...]`` and ``class: superclass``.  Parsed through
    ``yaml.compose`` (safe: only plain nodes), which keeps the line of every key and item, so
    a duplicate key (which ``yaml.safe_load`` would silently collapse to its last value) is an
    error naming both lines."""
    import yaml

    from .utils import read_yaml

    hint = "expected a mapping 'superclass: [class, ...]' (or 'class: superclass')"
    node = read_yaml(path, "superclass map", DataError, hint, compose=True)
    if not isinstance(node, yaml.MappingNode) or not node.value:
        raise DataError(f"{path}: {hint}")
    groups: dict[str, _Group] = {}
    keys_seen: dict[str, int] = {}

    def scalar(n, what: str) -> str:
        if not isinstance(n, yaml.ScalarNode) or n.value == "" and n.tag.endswith(":null"):
            raise DataError(f"{path} line {n.start_mark.line + 1}: {what} must be a name, got "
                            f"{'a list' if isinstance(n, yaml.SequenceNode) else 'a mapping' if isinstance(n, yaml.MappingNode) else 'nothing'}")
        return str(n.value)

    for k, v in node.value:
        line = k.start_mark.line + 1
        key = scalar(k, "a key")
        if key in keys_seen:
            raise DataError(f"{path} line {line}: key {key!r} is given twice (first at line {keys_seen[key]}); "
                            f"YAML would keep only the last")
        keys_seen[key] = line
        if isinstance(v, yaml.SequenceNode) or (isinstance(v, yaml.ScalarNode) and v.tag.endswith(":null")):
            g = groups.get(key)
            if g is None:
                g = groups[key] = _Group(key, line)
            for item in (v.value if isinstance(v, yaml.SequenceNode) else []):
                g.classes.append((scalar(item, f"a class of superclass {key!r}"), item.start_mark.line + 1))
            if not g.classes:
                raise DataError(f"{path} line {line}: superclass {key!r} is empty; give it two or more classes")
        elif isinstance(v, yaml.ScalarNode):       # class: superclass
            sup = str(v.value)
            g = groups.get(sup)
            if g is None:
                g = groups[sup] = _Group(sup, line)
            g.classes.append((key, line))
        else:
            raise DataError(f"{path} line {line}: entry {key!r} maps to a mapping; "
                            f"expected a list of classes or a superclass name")
    return list(groups.values())


def load_grouping(path: str | os.PathLike, classes: list[str], *, dataset: str = "the dataset",
                  require_all: bool = False, unknown_hint: str = "") -> tuple[list[str], dict[str, str]]:
    """(superclass names in file order, class -> superclass) of a grouping file, validated.

    Args:
        path: the YAML file.
        classes: the dataset's class names; every class the file names must be one of them.
        require_all: every class must be in a group (a tree's own ``superclasses.yaml``);
            otherwise classes left out are left out of the dataset (:func:`regroup`).

    Raises:
        DataError: one line naming the file and the line: a class the dataset does not have, a
            class in two groups, a duplicate key, an empty group, a group of one class (a
            1-way model is always "right", so its accuracy would be a fake 100 %), or (with
            ``require_all``) classes left out.
    """
    path = Path(path)
    groups = _yaml_groups(path)
    known = set(classes)
    out: dict[str, str] = {}
    where: dict[str, int] = {}
    for g in groups:
        for c, line in g.classes:
            if c not in known:
                raise DataError(f"{path} line {line}: superclass {g.name!r} names class {c!r}, which "
                                f"{dataset} does not have{unknown_hint}")
            if c in out:
                if out[c] == g.name:
                    raise DataError(f"{path} line {line}: class {c!r} is listed twice in superclass {g.name!r} "
                                    f"(first at line {where[c]})")
                raise DataError(f"{path} line {line}: class {c!r} is in two superclasses ({out[c]!r} at line "
                                f"{where[c]} and {g.name!r})")
            out[c], where[c] = g.name, line
    for g in groups:
        if len(g.classes) == 1:
            raise DataError(f"{path} line {g.line}: superclass {g.name!r} has one class ({g.classes[0][0]}): a "
                            f"1-way model is always right, so its accuracy means nothing; put it in a group "
                            f"of two or more classes")
    if require_all:
        left_out = [c for c in classes if c not in out]
        if left_out:
            raise DataError(f"{path} leaves out classes: {', '.join(left_out[:5])}"
                            f"{' (and %d more)' % (len(left_out) - 5) if len(left_out) > 5 else ''}; "
                            f"every class needs a superclass")
    return [g.name for g in groups], out


def regroup(ds: Dataset, path: str | os.PathLike) -> Dataset:
    """``ds`` with the superclasses of the grouping file ``path`` (:func:`load_grouping`), in
    file order; classes the file leaves out are dropped with their images (the kept classes
    keep their order, so a file naming all 100 CIFAR classes keeps CIFAR's class ids)."""
    supers, mapping = load_grouping(path, ds.classes, dataset=f"{ds.name} ({ds.source})")
    keep = [i for i, c in enumerate(ds.classes) if c in mapping]
    classes = [ds.classes[i] for i in keep]
    new_id = np.full(ds.num_classes, -1, np.int64)
    new_id[keep] = np.arange(len(keep))
    c2s = np.array([supers.index(mapping[c]) for c in classes], dtype=np.int64)
    splits = {}
    for name in ("train", "test"):
        s = getattr(ds, name)
        sel = np.flatnonzero(new_id[s.labels] >= 0)
        splits[name] = Split(s.images[sel] if len(sel) < len(s.labels) else s.images, new_id[s.labels[sel]])
    return Dataset(ds.name, classes, supers, c2s, splits["train"], splits["test"],
                   source=f"{ds.source} --superclasses {path}",
                   fingerprint=content_fingerprint(classes, supers, c2s, splits["train"], splits["test"]))


def _load_imagefolder(root: Path, size: int = 32, own_map: bool = True) -> Dataset:
    """A tree ``train/<class>/*``, ``test/<class>/*`` (classes: the train folders, sorted by name)
    with its ``superclasses.yaml`` (superclasses sorted by name).  Without one (``own_map``
    False: ``--superclasses`` will group it) every class is in one superclass ``all`` until then."""
    from PIL import Image

    split_dirs = {s: root / s for s in ("train", "test")}
    if not all(d.is_dir() for d in split_dirs.values()):
        raise DataError(f"{root}: expected folders train/<class>/ and test/<class>/ next to superclasses.yaml")
    classes = sorted(d.name for d in split_dirs["train"].iterdir() if d.is_dir())
    if own_map:
        if not (root / "superclasses.yaml").is_file():
            raise DataError(f"{root} has no superclasses.yaml: write one ('superclass: [class, ...]') or pass "
                            f"--superclasses FILE")
        names, mapping = load_grouping(root / "superclasses.yaml", classes, dataset=str(root),
                                       require_all=True, unknown_hint=" (no train folder)")
        supers = sorted(names)
    else:
        supers, mapping = ["all"], {c: "all" for c in classes}
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
    return Dataset(root.name, classes, supers, c2s, splits["train"], splits["test"], source=str(root),
                   fingerprint=content_fingerprint(classes, supers, c2s, splits["train"], splits["test"]))
