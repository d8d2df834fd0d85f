"""Library noise, held back: what the converter libraries (litert-torch, absl, oneDNN, torchao,
jax) print while exporting looks like failure and is not.  Quiet by default, shown with
``edgeeas -v`` (``$EDGEEAS_VERBOSE``), and printed anyway when the export fails."""
from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from typing import Iterator

__all__ = ["verbose_requested", "quiet_stderr", "quiet_export", "quiet_litert"]


class _TrainingModeNoise:
    """A logging filter dropping litert-torch's "converted in training mode" warning."""

    def filter(self, record) -> bool:
        return not str(record.msg).startswith("Your model is converted in training mode")


def verbose_requested(verbose: bool | None = None) -> bool:
    """``verbose`` if given, else ``$EDGEEAS_VERBOSE`` (``edgeeas -v`` sets it)."""
    if verbose is not None:
        return bool(verbose)
    return os.environ.get("EDGEEAS_VERBOSE", "") not in ("", "0")


@contextlib.contextmanager
def quiet_stderr(verbose: bool | None = None) -> Iterator[None]:
    """Hold back what the converter libraries print on stderr (absl ``W1130`` lines, oneDNN,
    torchao's ``Failed to load ..._C_mxfp8...so``, pytree and other warnings): it looks like
    failure and is not.  Captured at the file-descriptor level (the C++ libraries write there),
    dropped on success, printed (its tail) if the block raises; everything shown when verbose
    (:func:`verbose_requested`: ``edgeeas -v``)."""
    import sys

    if verbose_requested(verbose):
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real fd 2 (embedded): nothing to redirect
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
        return
    tmp = tempfile.TemporaryFile(mode="w+b")
    ok = False
    try:
        os.dup2(tmp.fileno(), 2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
        ok = True
    finally:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(saved, 2)
        os.close(saved)
        if not ok:
            tmp.seek(0)
            text = tmp.read().decode(errors="replace")
            if text.strip():
                sys.stderr.write(text[-4000:])
        tmp.close()


def quiet_export(fn):
    """Run an export function under :func:`quiet_stderr` (its ``verbose`` keyword, if any)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with quiet_stderr(kwargs.get("verbose") or None):
            return fn(*args, **kwargs)
    return wrapper


@contextlib.contextmanager
def quiet_litert(verbose: bool) -> Iterator[None]:
    """litert-torch prints a progress tree per conversion step; keep it unless asked."""
    import logging

    key = "LITERT_TORCH_SHOW_PROGRESS"
    old = os.environ.get(key)
    if not verbose:
        os.environ[key] = "n"
    # litert-torch warns that the graph module of an *exported* program is "in training
    # mode": its train flag means nothing there (BN was folded at export, in eval mode).
    noise = _TrainingModeNoise()
    logging.getLogger().addFilter(noise)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(noise)
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old
