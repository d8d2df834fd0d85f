"""Supernet checkpoints: one dict of tensors and plain values, written atomically, read with
``torch.load(weights_only=True)`` so a checkpoint can never run code."""
from __future__ import annotations

import os
from pathlib import Path

from .errors import EdgeeasError
from .space import DEFAULT_SPACE, SearchSpace
from .utils import atomic_torch_save

__all__ = ["CheckpointError", "save_supernet", "load_supernet", "load_raw", "resolve_supernet",
           "default_generator_path", "FORMAT", "DEFAULT_SUPERNET"]

FORMAT = "edgeeas-supernet/1"
DEFAULT_SUPERNET = Path(__file__).resolve().parent.parent / "runs" / "default" / "supernet.pt"


class CheckpointError(EdgeeasError):
    """A checkpoint is missing, unreadable, or from another search space (one-line message)."""


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
    atomic_torch_save({"format": FORMAT, "space": supernet.space.to_dict(),
                       "state_dict": supernet.state_dict(), "meta": meta, **extra}, path)


def load_raw(path: str | os.PathLike) -> dict:
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


def load_supernet(path: str | os.PathLike | None = None, space: SearchSpace | None = None):
    """(Supernet in eval mode, meta dict).  ``space``, if given, must match the checkpoint's."""
    from .nn.supernet import Supernet

    path = Path(path) if path else DEFAULT_SUPERNET
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
    return net, ck.get("meta", {})


def _diff(a: SearchSpace, b: SearchSpace) -> str:
    da, db = a.to_dict(), b.to_dict()
    keys = [k for k in da if da[k] != db.get(k)]
    return ", ".join(f"{k} {da[k]} vs {db.get(k)}" for k in keys[:2]) or "same fields"
