"""Shared fixtures: the real CIFAR-100 archive, a tiny trained supernet, a private CLI runner."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _data_path() -> Path | None:
    for cand in (os.environ.get("EDGEEAS_DATA"), ROOT / "data", ROOT.parent / "shared" / "data"):
        if cand and Path(cand).exists():
            return Path(cand)
    return None


@pytest.fixture(scope="session")
def data_path() -> Path:
    p = _data_path()
    if p is None:
        pytest.fail("CIFAR-100 not found: set EDGEEAS_DATA or run `make install` (links ./data to ../shared/data)")
    return p


@pytest.fixture(scope="session")
def cifar(data_path):
    from edgeeas.data import load_dataset

    return load_dataset(data_path)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, cifar):
    """A supernet trained for a few real steps on a small subset (weights are real, accuracy is not)."""
    from edgeeas.train import TrainConfig, train_supernet

    out = tmp_path_factory.mktemp("run") / "tiny"
    cfg = TrainConfig(out=str(out), epochs=1, batch_size=32, max_steps=4, train_subset=800, eval_images=100,
                      recal_images=100, num_random=1, threads=2)
    train_supernet(cifar, cfg, progress=False, log=lambda m: None)
    return out
