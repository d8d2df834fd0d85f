"""A user's own ImageFolder tree through the whole pipeline (issue 12), on the real CLI:
transfer from the shipped supernet -> train generator on the host table -> specialize ->
validate, with the classes checked by name at the end and accuracy above chance.

The tree holds real CIFAR-100 images of six classes grouped by the user (things, sky); the
host latency table serves any head size (head rows by class count), so no new bench is needed."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from edgeeas.checkpoint import DEFAULT_SUPERNET
from edgeeas.cli import main

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not DEFAULT_SUPERNET.is_file(), reason="needs the shipped runs/default/supernet.pt")]

GROUPS = {"things": ["apple", "bicycle", "whale"], "sky": ["rocket", "tulip", "cloud"]}


def _tree(root, cifar, n_train=40, n_test=20):
    from PIL import Image

    for split, s, n in (("train", cifar.train, n_train), ("test", cifar.test, n_test)):
        for cls in [c for cs in GROUPS.values() for c in cs]:
            d = root / split / cls
            d.mkdir(parents=True)
            for k, i in enumerate(np.flatnonzero(s.labels == cifar.classes.index(cls))[:n]):
                Image.fromarray(s.images[i].transpose(1, 2, 0)).save(d / f"{k:03d}.png")
    (root / "superclasses.yaml").write_text("".join(f"{g}: [{', '.join(cs)}]\n" for g, cs in GROUPS.items()))
    return root


def _cli(*args):
    r = CliRunner().invoke(main, [str(a) for a in args])
    assert r.exit_code == 0, f"edgeeas {' '.join(map(str, args))}\n{r.output}"
    return r


def test_own_tree_transfer_generator_specialize_validate(tmp_path, cifar, monkeypatch):
    monkeypatch.setenv("EDGEEAS_TARGETS", str(DEFAULT_SUPERNET.parents[2] / "targets"))  # the shipped host table
    tree = _tree(tmp_path / "mytree", cifar)
    run = tmp_path / "runs" / "mine"
    _cli("train", "supernet", "--data", tree, "--init", DEFAULT_SUPERNET.parent, "--out", run, "--epochs", 1,
         "--max-steps", 2, "--lr", 0.001, "--batch-size", 32, "--eval-images", 60,
         "--num-random", 0, "--threads", 1, "--quiet")
    _cli("train", "generator", "--supernet", run, "--target", "host", "--data", tree, "--predictor-samples", 4,
         "--val-images", 5, "--steps", 40, "--threads", 1, "--quiet")
    assert (run / "generator-host.pt").is_file()
    out = tmp_path / "out"
    _cli("specialize", "--supernet", run, "--data", tree, "--superclass", "things", "--budget", "3ms",
         "--target", "host", "--out", out, "--recal-images", 120, "--calib-images", 60, "--threads", 1)
    folder = out / "host" / "things" / "3ms"
    manifest = json.loads((folder / "manifest.json").read_text())
    # the model's outputs are the user's classes, by name, in the order of its head rows
    assert manifest["labels"] == sorted(GROUPS["things"]), manifest["labels"]
    r = _cli("validate", folder / "model.tflite", "--data", tree, "--skip-latency", "--json")
    v = json.loads(r.stdout)
    assert v["superclasses"] == ["things"] and v["images"] == 60  # the 3 classes x 20 test images, by name
    assert v["accuracy_device_int8"] > 100 / 3 + 15, v  # well above chance (3 classes)
    assert v["passed"], v
