"""Data: the real CIFAR-100 archive, a user's ImageFolder tree, and every kind of bad input."""
import io
import os
import pickle
import tarfile

import numpy as np
import pytest

from edgeeas.data import DataError, load_dataset, resolve_data_path


def test_real_cifar100(cifar):
    assert cifar.train.images.shape == (50000, 3, 32, 32) and cifar.train.images.dtype == np.uint8
    assert cifar.test.images.shape == (10000, 3, 32, 32)
    assert cifar.num_classes == 100 and cifar.num_superclasses == 20
    assert {"vehicles_1", "aquatic_mammals", "flowers"} <= set(cifar.superclasses)
    assert all(len(cifar.classes_of(s)) == 5 for s in range(20))
    v1 = cifar.superclass_id("vehicles_1")
    assert sorted(cifar.classes[c] for c in cifar.classes_of(v1)) == ["bicycle", "bus", "motorcycle", "pickup_truck", "train"]
    assert len(cifar.indices("test", [v1])) == 500 and len(cifar.indices("train", [v1])) == 2500
    mean = cifar.train.images[:5000].reshape(5000, 3, -1).mean(axis=(0, 2)) / 255
    np.testing.assert_allclose(mean, [0.5073, 0.4867, 0.4412], atol=0.01)


def test_unknown_superclass_lists_valid_ones(cifar):
    with pytest.raises(DataError, match="unknown superclass 'vehicles'.*vehicles_1"):
        cifar.superclass_id("vehicles")


def _tar(path, members: dict[str, bytes]):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _cifar_like(n=20, fine=100, coarse=20):
    rng = np.random.default_rng(0)
    labels = list(range(fine)) * (n // fine + 1)
    split = {b"data": rng.integers(0, 255, (len(labels), 3072), dtype=np.uint8),
             b"fine_labels": labels, b"coarse_labels": [c % coarse for c in labels]}
    meta = {b"fine_label_names": [f"c{i}".encode() for i in range(fine)],
            b"coarse_label_names": [f"s{i}".encode() for i in range(coarse)]}
    return {k: pickle.dumps(v, protocol=2) for k, v in (("train", split), ("test", split), ("meta", meta))}


def test_extracted_folder_and_tar_of_the_official_layout(tmp_path):
    members = _cifar_like()
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for k, v in members.items():
        (folder / k).write_bytes(v)
    ds = load_dataset(folder)
    assert ds.num_classes == 100 and ds.train.images.shape[1:] == (3, 32, 32)
    tgz = _tar(tmp_path / "c.tar.gz", {f"cifar-100-python/{k}": v for k, v in members.items()})
    assert load_dataset(tgz).num_superclasses == 20
    assert resolve_data_path(tmp_path) == tmp_path / "cifar-100-python"  # a folder holding it


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_malicious_pickle_is_refused(tmp_path):
    members = _cifar_like()
    members["meta"] = pickle.dumps({b"fine_label_names": _Evil()}, protocol=2)
    tgz = _tar(tmp_path / "evil.tar.gz", {f"cifar-100-python/{k}": v for k, v in members.items()})
    with pytest.raises(DataError, match="forbidden global"):
        load_dataset(tgz)
    assert not (tmp_path / "pwned").exists() and not os.path.exists("pwned")


@pytest.mark.parametrize("case,msg", [
    ("corrupt", "not a readable tar.gz"),
    ("cifar10", "not the cifar-100-python archive"),
    ("truncated", "not a readable tar.gz|not a valid CIFAR-100 pickle"),
    ("missing", "no dataset at"),
    ("wrong_counts", "expected 100 and 20"),
])
def test_bad_archives(tmp_path, case, msg):
    p = tmp_path / "x.tar.gz"
    if case == "corrupt":
        p.write_bytes(os.urandom(4096))
    elif case == "cifar10":
        _tar(p, {"cifar-10-batches-py/data_batch_1": b"x", "cifar-10-batches-py/batches.meta": b"y"})
    elif case == "truncated":
        full = _tar(tmp_path / "full.tar.gz", {f"cifar-100-python/{k}": v for k, v in _cifar_like(2000).items()})
        p.write_bytes(full.read_bytes()[:30000])
    elif case == "missing":
        p = tmp_path / "nowhere"
    elif case == "wrong_counts":
        _tar(p, {f"cifar-100-python/{k}": v for k, v in _cifar_like(fine=10, coarse=2).items()})
    with pytest.raises(DataError, match=msg) as e:
        load_dataset(p)
    assert "\n" not in str(e.value)


def _image_folder(root, classes, mapping_yaml):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(3):
                Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(d / f"{i}.png")
    (root / "superclasses.yaml").write_text(mapping_yaml)
    return root


def test_image_folder_with_superclasses(tmp_path):
    root = _image_folder(tmp_path / "mine", ["cat", "dog", "car", "bus"],
                         "animals: [cat, dog]\nvehicles: [car, bus]\n")
    ds = load_dataset(root)
    assert ds.superclasses == ["animals", "vehicles"] and ds.classes == ["bus", "car", "cat", "dog"]
    assert ds.train.images.shape == (12, 3, 32, 32)
    assert [ds.classes[c] for c in ds.classes_of(ds.superclass_id("vehicles"))] == ["bus", "car"]
    # the other form of the map, class -> superclass, works too
    root2 = _image_folder(tmp_path / "mine2", ["cat", "dog", "car", "bus"],
                          "cat: animals\ndog: animals\ncar: vehicles\nbus: vehicles\n")
    assert load_dataset(root2).num_superclasses == 2


def test_image_folder_grouping_comes_from_its_yaml_or_from_superclasses(tmp_path):
    """A tree without superclasses.yaml needs --superclasses (one line saying so); with one and
    --superclasses, the given grouping wins."""
    root = _image_folder(tmp_path / "t", ["cat", "dog", "car", "bus"], "animals: [cat, dog]\nvehicles: [car, bus]\n")
    (root / "superclasses.yaml").unlink()
    with pytest.raises(DataError, match="no superclasses.yaml.*--superclasses"):
        load_dataset(root)
    other = tmp_path / "other.yaml"
    other.write_text("pets: [cat, dog]\nwheels: [bus, car]\n")
    assert load_dataset(root, other).superclasses == ["pets", "wheels"]
    (root / "superclasses.yaml").write_text("animals: [cat, dog]\nvehicles: [car, bus]\n")
    ds = load_dataset(root, other)
    assert ds.superclasses == ["pets", "wheels"] and [ds.classes[c] for c in ds.classes_of(1)] == ["bus", "car"]


@pytest.mark.parametrize("yaml_text,msg", [
    ("animals: [cat, dog, lion]\nvehicles: [car, bus]\n", "line 1: .*'lion'.*no train folder"),
    ("animals: [cat, dog]\nvehicles: [car, bus]\n", "leaves out classes: cow"),
    ("animals: [cat, dog, cow]\nvehicles: [car, dog, bus]\n", "line 2: class 'dog' is in two superclasses"),
    ("- just a list\n", "expected a mapping"),
    ("animals: [cat\n", "not readable YAML"),
    # duplicate key: yaml.safe_load would silently keep the last one
    ("animals: [cat, dog]\nvehicles: [car, bus]\nanimals: [cow, dog]\n", "line 3: key 'animals' is given twice"),
    ("animals: [cat, dog, cow]\nvehicles: []\nother: [car, bus]\n", "line 2: superclass 'vehicles' is empty"),
    ("animals: [cat, dog, cow]\nvehicles:\nother: [car, bus]\n", "line 2: superclass 'vehicles' is empty"),
    ("animals: [cat, dog, cow, car]\nvehicles: [bus]\n", "line 2: superclass 'vehicles' has one class"),
    ("animals: [cat, dog, cow, cat]\nvehicles: [car, bus]\n", "listed twice"),
])
def test_bad_superclass_maps(tmp_path, yaml_text, msg):
    root = _image_folder(tmp_path / "bad", ["cat", "dog", "cow", "car", "bus"], yaml_text)
    with pytest.raises(DataError, match=msg) as e:
        load_dataset(root)
    assert "\n" not in str(e.value)


def test_env_var_is_used(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEEAS_DATA", str(tmp_path / "elsewhere"))
    with pytest.raises(DataError, match=r"elsewhere \(from EDGEEAS_DATA\)"):
        resolve_data_path(None)
