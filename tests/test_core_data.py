"""edgeeas.data's class mapping on tiny hand-made inputs (no real CIFAR-100: fast enough to run
once per mutant in ``make mutate``): a synthetic cifar-100-python folder, regrouping, the
grouping file's messages."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from edgeeas.data import DataError, Dataset, Split, _load_cifar100, load_grouping, regroup


def _cifar_folder(tmp_path, train_fine, test_fine, coarse_of=lambda f: f // 5, bad_coarse=None):
    d = tmp_path / "cifar-100-python"
    d.mkdir()
    meta = {b"fine_label_names": [f"c{i}".encode() for i in range(100)],
            b"coarse_label_names": [f"s{i}".encode() for i in range(20)]}
    (d / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    for name, fine in (("train", train_fine), ("test", test_fine)):
        coarse = [coarse_of(f) for f in fine]
        if bad_coarse is not None and name == "train":
            coarse[0] = bad_coarse
        data = [[(i * 7 + j) % 256 for j in range(3072)] for i in range(len(fine))]
        (d / name).write_bytes(pickle.dumps({b"data": data, b"fine_labels": list(fine), b"coarse_labels": coarse},
                                            protocol=2))
    return d


def test_synthetic_cifar_folder_loads_with_its_class_map(tmp_path):
    """Every class in train, only classes 0..9 in test (a test split need not reach class 99)."""
    ds = _load_cifar100(_cifar_folder(tmp_path, list(range(100)), list(range(10))))
    assert ds.num_classes == 100 and ds.num_superclasses == 20
    assert ds.class_to_super.tolist() == [f // 5 for f in range(100)]
    assert ds.classes_of(3) == [15, 16, 17, 18, 19]
    assert ds.train.images.shape == (100, 3, 32, 32) and ds.test.labels.tolist() == list(range(10))
    assert ds.train.images[2, 0, 0, 1] == (2 * 7 + 1) % 256


@pytest.mark.parametrize("train,test,bad_coarse", [
    (list(range(100)) + [100], [0], None),          # fine label 100
    (list(range(100)), [-1], None),                  # fine label -1
    (list(range(100)), [0], 20),                     # coarse label 20
    (list(range(100)), [0], -1),                     # coarse label -1
])
def test_labels_out_of_range_are_refused(tmp_path, train, test, bad_coarse):
    with pytest.raises(DataError, match="labels out of range"):
        _load_cifar100(_cifar_folder(tmp_path, train, test, bad_coarse=bad_coarse))


def test_coarse_label_19_and_fine_label_99_are_in_range(tmp_path):
    ds = _load_cifar100(_cifar_folder(tmp_path, list(range(100)), [99, 98]))
    assert ds.class_to_super[99] == 19 and ds.test.labels.tolist() == [99, 98]


def _toy(n_per_class=2) -> Dataset:
    labels = np.repeat(np.arange(6), n_per_class)
    images = np.arange(len(labels), dtype=np.uint8).reshape(-1, 1, 1, 1)
    return Dataset("toy", ["cat", "dog", "cow", "car", "bus", "van"], ["animals", "vehicles"],
                   np.array([0, 0, 0, 1, 1, 1]), Split(images, labels), Split(images.copy(), labels.copy()),
                   source="toy")


def test_regroup_drops_the_classes_left_out_with_their_images(tmp_path):
    y = tmp_path / "g.yaml"
    y.write_text("wheels: [car, bus]\npets: [dog, cat]\n")
    ds = regroup(_toy(), y)
    assert ds.classes == ["cat", "dog", "car", "bus"] and ds.superclasses == ["wheels", "pets"]
    assert ds.class_to_super.tolist() == [1, 1, 0, 0]
    for s in (ds.train, ds.test):
        assert len(s.images) == len(s.labels) == 8
        # images 0-3 were cat, dog; 6-9 car, bus (the toy's image i holds the value i)
        assert s.images[:, 0, 0, 0].tolist() == [0, 1, 2, 3, 6, 7, 8, 9]
        assert s.labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def test_regroup_naming_every_class_keeps_ids_and_images(tmp_path):
    y = tmp_path / "g.yaml"
    y.write_text("a: [cat, car, van]\nb: [dog, cow, bus]\n")
    toy = _toy()
    ds = regroup(toy, y)
    assert ds.classes == toy.classes and ds.class_to_super.tolist() == [0, 1, 1, 0, 1, 0]
    assert np.array_equal(ds.train.images, toy.train.images) and np.array_equal(ds.train.labels, toy.train.labels)
    # every image kept: the arrays are shared, not copied (50,000 CIFAR-100 images are 150 MB)
    assert ds.train.images is toy.train.images and ds.test.images is toy.test.images


def test_classes_without_images_are_named_five_at_most(tmp_path):
    with pytest.raises(DataError) as e:
        _load_cifar100(_cifar_folder(tmp_path, list(range(93)), [0]))
    assert str(e.value).endswith("fine classes [93, 94, 95, 96, 97] have no image")


def test_data_source_carries_a_grouping_only_when_given():
    from edgeeas.data import DataSource

    assert type(DataSource.of("data")) is str and type(DataSource.of("data", "")) is str
    assert DataSource.of(None) is None
    src = DataSource.of("data", "groups.yaml")
    assert isinstance(src, DataSource) and src.superclasses == "groups.yaml"


@pytest.mark.parametrize("n_left,more", [(1, ""), (4, ""), (5, ""), (6, " (and 1 more)"), (7, " (and 2 more)")])
def test_classes_left_out_are_named_five_at_most(tmp_path, n_left, more):
    classes = [f"c{i}" for i in range(n_left + 2)]
    y = tmp_path / "g.yaml"
    y.write_text(f"g: [c{n_left}, c{n_left + 1}]\n")
    with pytest.raises(DataError) as e:
        load_grouping(y, classes, require_all=True)
    named = ", ".join(f"c{i}" for i in range(min(n_left, 5)))
    assert str(e.value) == f"{y} leaves out classes: {named}{more}; every class needs a superclass"
    assert load_grouping(y, classes) == (["g"], {f"c{n_left}": "g", f"c{n_left + 1}": "g"})


def _write(d, name, obj):
    (d / name).write_bytes(pickle.dumps(obj, protocol=2))


def test_a_class_without_any_image_is_refused(tmp_path):
    with pytest.raises(DataError, match=r"fine classes \[99\] have no image"):
        _load_cifar100(_cifar_folder(tmp_path, list(range(99)), list(range(10))))


def test_wrong_class_counts_and_shapes_are_refused(tmp_path):
    d = _cifar_folder(tmp_path, list(range(100)), [0, 1])
    good_meta = pickle.loads((d / "meta").read_bytes())
    _write(d, "meta", {**good_meta, b"fine_label_names": good_meta[b"fine_label_names"] + [b"extra"]})
    with pytest.raises(DataError, match="101 fine and 20 coarse classes, expected 100 and 20"):
        _load_cifar100(d)
    _write(d, "meta", good_meta)
    test = {b"fine_labels": [0, 1], b"coarse_labels": [0, 0]}
    for data in ([[[0]] * 3072] * 2, [[0] * 3000] * 2, [[0] * 3073] * 2):   # N x 3072 x 1, N x 3000, N x 3073
        _write(d, "test", {**test, b"data": data})
        with pytest.raises(DataError, match="test data has shape"):
            _load_cifar100(d)
