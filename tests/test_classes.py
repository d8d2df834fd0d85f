"""Class identity end to end (issue 12): a supernet's head rows are matched to a dataset's classes
by name, ``--superclasses`` regroups any dataset, the head is sized from the dataset, transfer
keeps the rows of matching classes, and a dataset's fingerprint covers its content.

Trees are written as PNGs from real CIFAR-100 images; the supernet is the shipped one."""
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edgeeas.checkpoint import DEFAULT_SUPERNET, ClassMismatchError, load_raw, load_supernet
from edgeeas.data import CIFAR100_CLASSES, DataError, load_dataset, regroup
from edgeeas.space import DEFAULT_SPACE, SearchSpace

pytestmark = pytest.mark.skipif(not DEFAULT_SUPERNET.is_file(), reason="needs the shipped runs/default/supernet.pt")


def _tree(root, cifar, classes, grouping, n_train=12, n_test=20, names=None):
    """An ImageFolder tree of real CIFAR-100 images of ``classes`` (written under ``names``)."""
    from PIL import Image

    for split, s, n in (("train", cifar.train, n_train), ("test", cifar.test, n_test)):
        for c, name in zip(classes, names or classes):
            d = root / split / name
            d.mkdir(parents=True)
            for k, i in enumerate(np.flatnonzero(s.labels == cifar.classes.index(c))[:n]):
                Image.fromarray(s.images[i].transpose(1, 2, 0)).save(d / f"{k:03d}.png")
    (root / "superclasses.yaml").write_text(grouping)
    return root


@pytest.fixture(scope="module")
def shipped():
    return load_supernet(DEFAULT_SUPERNET)


def test_old_checkpoints_mean_cifar100(shipped):
    assert shipped[1]["classes"] == CIFAR100_CLASSES  # what a checkpoint without meta["classes"] is taken to hold


def test_silent_mislabel_case_uses_the_rows_of_the_same_names(tmp_path, cifar, shipped):
    """A tree of apple, bicycle, whale was scored with the rows of apple, aquarium_fish, baby."""
    from edgeeas.evaluate import evaluate_arch, predict, recalibrate_bn

    root = _tree(tmp_path / "t", cifar, ["apple", "bicycle", "whale"], "things: [apple, bicycle, whale]\n")
    ds = load_dataset(root)
    assert ds.classes == ["apple", "bicycle", "whale"]
    want = [cifar.classes.index(c) for c in ds.classes]
    assert want == [0, 8, 95]
    full, _ = shipped
    net, meta = load_supernet(DEFAULT_SUPERNET, dataset=ds)
    assert meta["head_classes"] == ["apple", "bicycle", "whale"] and net.space.num_classes == 3
    assert torch.equal(net.head.fc.weight, full.head.fc.weight[want])
    assert torch.equal(net.head.fc.bias, full.head.fc.bias[want])

    arch = DEFAULT_SPACE.middle()
    recal = ds.train.images
    got = evaluate_arch(net, arch, ds, recal=recal).per_superclass["things"]
    sub = full.subnet(arch)
    recalibrate_bn(sub, recal)
    logits = predict(sub, ds.test.images)
    right = 100 * float((logits[:, want].argmax(1).numpy() == ds.test.labels).mean())
    wrong = 100 * float((logits[:, [0, 1, 2]].argmax(1).numpy() == ds.test.labels).mean())  # the old behaviour
    assert got == pytest.approx(right, abs=1e-6)
    assert right >= 80 and right > wrong + 25, (right, wrong)


def test_a_class_the_head_does_not_have_is_one_line(tmp_path, cifar):
    from edgeeas.cli import main

    root = _tree(tmp_path / "t", cifar, ["apple", "bicycle", "tiger"], "s: [apple, bicycle, zebra]\n",
                 names=["apple", "bicycle", "zebra"])
    ds = load_dataset(root)
    with pytest.raises(ClassMismatchError, match="missing zebra") as e:
        load_supernet(DEFAULT_SUPERNET, dataset=ds)
    assert "\n" not in str(e.value) and "--init" in str(e.value)
    r = CliRunner().invoke(main, ["eval", "--data", str(root), "smallest"])
    assert r.exit_code == 1 and "missing zebra" in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_superclasses_file_regroups_cifar100(tmp_path, cifar):
    from edgeeas.cli import main

    f = tmp_path / "groups.yaml"
    f.write_text("wheels: [bicycle, bus, motorcycle]\nsea: [whale, shark, ray, seal]\n")
    ds = regroup(cifar, f)
    assert ds.superclasses == ["wheels", "sea"]
    assert ds.classes == [c for c in cifar.classes if c in {"bicycle", "bus", "motorcycle", "whale", "shark", "ray", "seal"}]
    assert len(ds.test.labels) == 7 * 100 and [ds.classes[c] for c in ds.classes_of(0)] == ["bicycle", "bus", "motorcycle"]
    assert ds.fingerprint != cifar.fingerprint
    r = CliRunner().invoke(main, ["eval", "--data", cifar.source, "--superclasses", str(f), "--recal-images", "100",
                                 "--test-images", "200", "--json", "smallest"])
    assert r.exit_code == 0, r.output
    assert set(json.loads(r.output)[0]["per_superclass"]) == {"wheels", "sea"}
    f.write_text("wheels: [bicycle, bus]\nsea: [whale, unicorn]\n")
    r = CliRunner().invoke(main, ["eval", "--data", cifar.source, "--superclasses", str(f), "smallest"])
    assert r.exit_code == 1 and "line 2" in r.output and "'unicorn'" in r.output and "Traceback" not in r.output


def test_superclasses_file_regroups_a_tree_without_its_own_map(tmp_path, cifar):
    root = _tree(tmp_path / "t", cifar, ["apple", "pear", "bus", "train"], "x: [apple, pear, bus, train]\n", n_test=4)
    (root / "superclasses.yaml").unlink()
    with pytest.raises(DataError, match="no superclasses.yaml"):
        load_dataset(root)
    f = tmp_path / "g.yaml"
    f.write_text("fruit: [apple, pear]\nvehicles: [bus, train]\n")
    ds = load_dataset(root, superclasses=f)
    assert ds.superclasses == ["fruit", "vehicles"] and ds.classes == ["apple", "bus", "pear", "train"]


def test_train_on_a_tree_sizes_the_head_from_the_dataset(tmp_path, cifar):
    from edgeeas.search.fitness import supernet_fingerprint
    from edgeeas.train import TrainConfig, train_supernet

    root = _tree(tmp_path / "t", cifar, ["apple", "bicycle", "whale"], "things: [apple, bicycle, whale]\n")
    ds = load_dataset(root)
    cfg = TrainConfig(out=str(tmp_path / "run"), epochs=1, batch_size=8, max_steps=1, eval_images=10, recal_images=10,
                      num_random=0, threads=1)
    path = train_supernet(ds, cfg, progress=False, log=lambda m: None)
    ck = load_raw(path)
    space = SearchSpace.from_dict(ck["space"])
    assert space.num_classes == 3 and space != DEFAULT_SPACE and space.same_body(DEFAULT_SPACE)
    assert ck["meta"]["classes"] == ["apple", "bicycle", "whale"]
    net, meta = load_supernet(path, dataset=ds)
    assert net.head.fc.out_features == 3 and meta["head_classes"] == ds.classes
    assert supernet_fingerprint(net) != supernet_fingerprint(load_supernet(DEFAULT_SUPERNET)[0])


def test_transfer_init_keeps_the_rows_of_matching_classes(tmp_path, cifar, shipped):
    import yaml

    from edgeeas.cli import main
    from edgeeas.nn.supernet import Supernet
    from edgeeas.train import _transfer_init

    # "zebra" is new to the shipped head; apple and whale are not
    root = _tree(tmp_path / "t", cifar, ["apple", "tiger", "whale"], "s: [apple, zebra, whale]\n",
                 names=["apple", "zebra", "whale"])
    ds = load_dataset(root)
    torch.manual_seed(0)
    net = Supernet(DEFAULT_SPACE.with_num_classes(3))
    fresh = net.head.fc.weight.detach().clone()
    info = _transfer_init(net, ds, str(DEFAULT_SUPERNET.parent))
    src = shipped[0]
    assert info["head_rows_kept"] == 2 and info["classes_kept"] == ["apple", "whale"]
    assert torch.equal(net.head.fc.weight[0], src.head.fc.weight[0])
    assert ds.classes == ["apple", "whale", "zebra"]
    assert torch.equal(net.head.fc.weight[1], src.head.fc.weight[95])
    assert torch.equal(net.head.fc.weight[2], fresh[2])  # zebra: a fresh row
    assert torch.equal(net.stem[0].weight, src.stem[0].weight)

    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["train", "supernet", "--data", str(root), "--init", str(DEFAULT_SUPERNET.parent),
                                  "--out", str(out), "--epochs", "1", "--batch-size", "8", "--max-steps", "1",
                                  "--num-random", "0", "--eval-images", "10", "--threads", "1", "--quiet"])
    assert r.exit_code == 0, r.output
    args = yaml.safe_load((out / "args.yaml").read_text())
    assert args["init"] == str(DEFAULT_SUPERNET.parent) and args["init_record"]["head_rows_kept"] == 2
    assert load_raw(out / "supernet.pt")["meta"]["init"]["classes_kept"] == ["apple", "whale"]


def test_fingerprint_covers_every_image_and_the_grouping(tmp_path, cifar):
    from PIL import Image

    root = _tree(tmp_path / "t", cifar, ["apple", "pear", "bus", "train"], "fruit: [apple, pear]\nv: [bus, train]\n",
                 n_train=3, n_test=3)
    fp = load_dataset(root).fingerprint
    img = root / "test" / "pear" / "001.png"
    a = np.asarray(Image.open(img)).copy()
    a[0, 0, 0] ^= 1                                  # one bit of one pixel of one test image
    Image.fromarray(a).save(img)
    fp2 = load_dataset(root).fingerprint
    assert fp2 != fp
    (root / "superclasses.yaml").write_text("x: [apple, bus]\ny: [pear, train]\n")
    assert load_dataset(root).fingerprint not in (fp, fp2)


def test_manifest_classes_are_matched_by_name(tmp_path, cifar):
    from edgeeas.manifest import ManifestError, ModelManifest, manifest_classes

    root = _tree(tmp_path / "t", cifar, ["apple", "bicycle", "whale"], "s: [apple, bicycle, whale]\n",
                 n_train=2, n_test=2)
    ds = load_dataset(root)
    # ids from CIFAR-100 (bicycle 8, whale 95), names win
    assert manifest_classes(ModelManifest(classes=[8, 95], labels=["bicycle", "whale"]), ds) == [1, 2]
    with pytest.raises(ManifestError, match="lion"):
        manifest_classes(ModelManifest(classes=[8, 43], labels=["bicycle", "lion"]), ds)


def test_resume_with_other_classes_is_refused(tmp_path, cifar):
    from edgeeas.train import TrainConfig, TrainError, train_supernet

    root = _tree(tmp_path / "t", cifar, ["apple", "bicycle", "whale"], "s: [apple, bicycle, whale]\n",
                 n_train=4, n_test=2)
    out = tmp_path / "run"
    cfg = TrainConfig(out=str(out), epochs=2, batch_size=4, max_steps=1, eval_images=2, recal_images=4,
                      num_random=0, threads=1)
    train_supernet(load_dataset(root), cfg, progress=False, log=lambda m: None)
    other = _tree(tmp_path / "o", cifar, ["apple", "bicycle", "shark"], "s: [apple, bicycle, shark]\n",
                  n_train=4, n_test=2)
    with pytest.raises(TrainError, match="other classes.*shark"):
        train_supernet(load_dataset(other), cfg, resume=True, progress=False, log=lambda m: None)


def test_digits_tree_with_a_user_grouping(tmp_path):
    """scikit-learn's real 8x8 digits as a 32x32 RGB tree: not CIFAR classes, so the shipped head
    cannot score them (one line naming --init), and transfer keeps no head row but every other tensor."""
    sklearn = pytest.importorskip("sklearn")  # noqa: F841
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from bench_transfer import GROUPS, make_digits_tree

    from edgeeas.nn.supernet import Supernet
    from edgeeas.train import _transfer_init

    counts = make_digits_tree(tmp_path / "digits")
    ds = load_dataset(tmp_path / "digits")
    assert counts == {"images": 1797, "train": 1258, "test": 539}
    assert ds.classes == [f"digit_{k}" for k in range(10)] and ds.superclasses == sorted(GROUPS)
    assert ds.train.images.shape == (1258, 3, 32, 32) and ds.train.images.max() == 255
    assert [ds.classes[c] for c in ds.classes_of(ds.superclass_id("loops"))] == ["digit_0", "digit_6", "digit_8", "digit_9"]
    with pytest.raises(ClassMismatchError, match="missing digit_0.*--init"):
        load_supernet(DEFAULT_SUPERNET, dataset=ds)
    net = Supernet(DEFAULT_SPACE.with_num_classes(10))
    info = _transfer_init(net, ds, str(DEFAULT_SUPERNET))
    assert info["head_rows_kept"] == 0 and net.head.fc.out_features == 10
    src = load_supernet(DEFAULT_SUPERNET)[0]
    assert all(torch.equal(v, src.state_dict()[k]) for k, v in net.state_dict().items() if not k.startswith("head.fc"))


@pytest.mark.parametrize("cmd", [["specialize", "--superclass", "loops", "--budget", "6M"],
                                 ["search", "-s", "uniform", "--superclass", "loops", "--budget", "6M"], ["eval"],
                                 ["train", "supernet", "--out", "never"]])
def test_every_data_command_takes_superclasses(tmp_path, cmd):
    """--superclasses comes with --data (commands/_options.py) and does not clash with --superclass."""
    from edgeeas.cli import main

    r = CliRunner().invoke(main, cmd + ["--superclasses", str(tmp_path / "none.yaml")])
    assert r.exit_code != 0 and "no such file" in r.output and "none.yaml" in r.output, r.output
    assert "Traceback" not in r.output
    assert "--superclasses FILE" in CliRunner().invoke(main, ["validate", "--help"]).output
