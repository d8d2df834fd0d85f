"""Supernet checkpoints: one dict of tensors and plain values, written atomically, read with
``torch.load(weights_only=True)`` so a checkpoint can never run code.

A checkpoint records the names of its head's classes (``meta["classes"]``, row order).  Pairing
a supernet with a dataset matches classes by name, never by position (:func:`head_rows`,
``load_supernet(..., dataset=ds)``): the dataset's classes take the head rows of the same names,
in the dataset's order, and a dataset class the head does not have is a one-line error.  A
checkpoint written before the names were recorded, with a 100-way head, was trained on
CIFAR-100: its head classes are CIFAR-100's fine classes in label order
(:data:`edgeeas.data.CIFAR100_CLASSES`)."""
from __future__ import annotations

import os
from pathlib import Path

from .errors import EdgeeasError
from .space import DEFAULT_SPACE, SearchSpace
from .utils import atomic_torch_save

__all__ = ["CheckpointError", "ClassMismatchError", "save_supernet", "load_supernet", "load_raw", "resolve_supernet",
           "default_generator_path", "head_classes", "head_rows", "align_head", "FORMAT", "DEFAULT_SUPERNET"]

FORMAT = "edgeeas-supernet/1"
DEFAULT_SUPERNET = Path(__file__).resolve().parent.parent / "runs" / "default" / "supernet.pt"


class CheckpointError(EdgeeasError):
    """A checkpoint is missing, unreadable, or from another search space (one-line message)."""


class ClassMismatchError(CheckpointError):
    """A dataset has classes a supernet's head does not (one line listing them)."""


def head_classes(meta: dict, space: SearchSpace, where: str = "the supernet") -> list[str]:
    """The names of a checkpoint's head rows: ``meta["classes"]``; for a checkpoint from before
    they were recorded with a 100-way head, CIFAR-100's fine classes (documented above).

    Raises:
        CheckpointError: the names are missing (and the head is not 100-way) or do not fit the head.
    """
    from .data import CIFAR100_CLASSES

    names = (meta or {}).get("classes")
    if not names:
        if space.num_classes == len(CIFAR100_CLASSES):
            return list(CIFAR100_CLASSES)
        raise CheckpointError(f"{where} does not record its head's class names (meta['classes']) and has a "
                              f"{space.num_classes}-way head: retrain it with this version")
    names = [str(n) for n in names]
    if len(names) != space.num_classes or len(set(names)) != len(names):
        raise CheckpointError(f"{where} records {len(names)} class names ({len(set(names))} distinct) for a "
                              f"{space.num_classes}-way head")
    return names


def head_rows(head: list[str], classes: list[str], where: str = "the supernet", dataset: str = "the dataset",
              hint: str = "") -> list[int]:
    """For each name of ``classes`` (a dataset's, in its order), the index of the head row of the
    same name.

    Raises:
        ClassMismatchError: classes the head does not have (one line listing them, and the
            head's own classes beyond them, ``hint`` appended).
    """
    index = {c: i for i, c in enumerate(head)}
    missing = [c for c in classes if c not in index]
    if missing:
        extra = [c for c in head if c not in set(classes)]
        more = lambda v: ", ".join(v[:6]) + (f" (and {len(v) - 6} more)" if len(v) > 6 else "")  # noqa: E731
        raise ClassMismatchError(
            f"{dataset} has classes {where}'s head does not: missing {more(missing)}"
            f"{'; the head has instead ' + more(extra) if extra else ''}"
            f"{hint or '; fine-tune a supernet for these classes: edgeeas train supernet --data ... --init RUN'}")
    return [index[c] for c in classes]


def align_head(net, rows: list[int]):
    """``net`` with its head reduced/reordered to ``rows`` (row ``i`` of the result is row
    ``rows[i]`` of ``net``), in a space with a ``len(rows)``-way head; ``net`` itself when
    ``rows`` is every row in order (so its fingerprint, and what is cached by it, stays)."""
    import torch

    from .nn.supernet import Supernet

    if list(rows) == list(range(net.space.num_classes)):
        return net
    out = Supernet(net.space.with_num_classes(len(rows)))
    sd = dict(net.state_dict())
    idx = torch.as_tensor(list(rows), dtype=torch.long)
    sd["head.fc.weight"] = sd["head.fc.weight"][idx].clone()
    sd["head.fc.bias"] = sd["head.fc.bias"][idx].clone()
    out.load_state_dict(sd)
    out.train(net.training)
    return out


def resolve_supernet(arg: str | os.PathLike | None) -> Path:
    """The supernet checkpoint a ``--supernet`` value names: a run directory (its
    ``supernet.pt``) or a checkpoint file; None or empty: the shipped :data:`DEFAULT_SUPERNET`.

    Raises:
        CheckpointError: a run directory without ``supernet.pt`` yet (it is written after each
            training epoch).  A file path is returned as given (:func:`load_supernet` checks it).
    """
    if not arg:
        return DEFAULT_SUPERNET
    p = Path(arg)
    if p.is_dir():
        if not (p / "supernet.pt").is_file():
            raise CheckpointError(f"run directory {p} has no supernet.pt yet (it is written after each "
                                  f"training epoch); pass a run that finished an epoch, or a .pt file")
        return p / "supernet.pt"
    return p


def default_generator_path(supernet: str | os.PathLike, cost_name: str) -> Path:
    """Where the generator of a supernet checkpoint for cost model ``cost_name`` (a target
    name, or ``madds``) lives by default: ``RUN/generator-<cost_name, ':' as '_'>.pt``."""
    from .targets import TargetStore

    return Path(supernet).parent / f"generator-{TargetStore.folder_name(cost_name)}.pt"


def save_supernet(path: str | os.PathLike, supernet, meta: dict, **extra) -> None:
    """Write ``supernet`` (its space, state dict and ``meta``: config, classes, history) atomically."""
    atomic_torch_save({"format": FORMAT, "space": supernet.space.to_dict(),
                       "state_dict": supernet.state_dict(), "meta": meta, **extra}, path)


def load_raw(path: str | os.PathLike) -> dict:
    """The checkpoint's dict, read with ``weights_only=True`` (it can never run code).

    Raises:
        CheckpointError: no file, an unreadable file, or another format (one line)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a bad file
        raise CheckpointError(f"{path} is not a readable edgeeas checkpoint "
                              f"({str(e).splitlines()[0][:160]})") from None
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        got = ck.get("format") if isinstance(ck, dict) else type(ck).__name__
        raise CheckpointError(f"{path} is not an edgeeas supernet checkpoint (format {got!r}, expected {FORMAT!r})")
    return ck


def load_supernet(path: str | os.PathLike | None = None, space: SearchSpace | None = None, dataset=None):
    """(Supernet in eval mode, meta dict).  ``path``: a checkpoint or a run directory
    (:func:`resolve_supernet`).  ``space``, if given, must match the checkpoint's.

    With ``dataset`` (an :class:`edgeeas.data.Dataset`) the head is matched to the dataset's
    classes by name (:func:`head_rows`, :func:`align_head`): head row ``i`` of the returned
    supernet is the dataset's class ``i``; ``meta["head_classes"]`` then lists those names.

    Raises:
        CheckpointError: a missing, unreadable or mismatching checkpoint.
        ClassMismatchError: the dataset has classes the head does not.
    """
    from .nn.supernet import Supernet

    path = resolve_supernet(path)  # a run directory names its supernet.pt, as in every command
    ck = load_raw(path)
    try:
        ck_space = SearchSpace.from_dict(ck["space"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable search space in checkpoint ({e})") from None
    want = space or DEFAULT_SPACE
    if space is not None and ck_space != want:
        raise CheckpointError(f"{path} was trained for search space {ck_space.name!r} "
                              f"({_diff(ck_space, want)}), expected {want.name!r}")
    net = Supernet(ck_space)
    try:
        missing, unexpected = net.load_state_dict(ck["state_dict"], strict=False)
    except (RuntimeError, KeyError) as e:
        raise CheckpointError(f"{path} does not fit search space {ck_space.name!r} "
                              f"({str(e).splitlines()[-1].strip()[:160]})") from None
    if missing or unexpected:
        raise CheckpointError(f"{path} does not fit search space {ck_space.name!r}: "
                              f"{len(missing)} missing and {len(unexpected)} unexpected tensors")
    net.eval()
    meta = dict(ck.get("meta", {}))
    if dataset is not None:
        head = head_classes(meta, ck_space, str(path))
        rows = head_rows(head, list(dataset.classes), where=f"supernet {path}",
                         dataset=f"dataset {dataset.name} ({dataset.source})")
        net = align_head(net, rows)
        net.eval()
        meta["head_classes"] = [head[r] for r in rows]
    return net, meta


def _diff(a: SearchSpace, b: SearchSpace) -> str:
    da, db = a.to_dict(), b.to_dict()
    keys = [k for k in da if da[k] != db.get(k)]
    return ", ".join(f"{k} {da[k]} vs {db.get(k)}" for k in keys[:2]) or "same fields"
