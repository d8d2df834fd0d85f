"""Supernet training: real steps on real CIFAR-100, resume (also after kill -9), torchrun, bad input."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from edgeeas.checkpoint import CheckpointError, load_raw, load_supernet, save_supernet
from edgeeas.cli import main
from edgeeas.space import DEFAULT_SPACE, SearchSpace
from edgeeas.train import TrainConfig, TrainError, augment, train_supernet

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _cfg(out, **kw):
    base = dict(out=str(out), epochs=1, batch_size=16, train_subset=400, eval_images=50, recal_images=50,
                num_random=1, threads=1)
    base.update(kw)
    return TrainConfig(**base)


def test_run_directory(tiny_run, cifar):
    assert {"args.yaml", "summary.csv", "supernet.pt", "last.pt", "steps.jsonl"} <= {p.name for p in tiny_run.iterdir()}
    import yaml
    args = yaml.safe_load((tiny_run / "args.yaml").read_text())
    assert args["superclass_dropout"] == 0.5 and args["search_space"]["name"] == DEFAULT_SPACE.name
    net, meta = load_supernet(tiny_run / "supernet.pt", space=DEFAULT_SPACE)
    assert meta["superclasses"] == cifar.superclasses
    rows = (tiny_run / "summary.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,") and len(rows) == 2
    steps = [json.loads(line) for line in (tiny_run / "steps.jsonl").read_text().splitlines()]
    assert len(steps) == 4 and all(1 <= len(s["kept"]) <= 20 for s in steps)
    assert any(len(s["kept"]) < 20 for s in steps)  # superclass dropout dropped some


def test_training_changes_weights_and_loss_is_finite(cifar, tmp_path):
    torch.manual_seed(0)
    path = train_supernet(cifar, _cfg(tmp_path / "a", max_steps=3), progress=False, log=lambda m: None)
    trained, _ = load_supernet(path)
    from edgeeas.nn.supernet import Supernet
    torch.manual_seed(0)
    fresh = Supernet(DEFAULT_SPACE)
    diff = sum((a - b).abs().sum().item() for a, b in zip(trained.parameters(), fresh.parameters()))
    assert diff > 0
    losses = [json.loads(x)["loss"] for x in (tmp_path / "a" / "steps.jsonl").read_text().splitlines()]
    assert all(0 < v < 100 for v in losses)


def test_resume_continues_the_same_sequence(cifar, tmp_path):
    """2 steps + resume for 2 more gives bit-for-bit the weights of 4 steps straight."""
    straight = train_supernet(cifar, _cfg(tmp_path / "s", max_steps=4), progress=False, log=lambda m: None)
    train_supernet(cifar, _cfg(tmp_path / "r", max_steps=2), progress=False, log=lambda m: None)
    resumed = train_supernet(cifar, _cfg(tmp_path / "r", max_steps=4), resume=True, progress=False, log=lambda m: None)
    a = load_raw(tmp_path / "s" / "last.pt")["state_dict"]
    b = load_raw(tmp_path / "r" / "last.pt")["state_dict"]
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=0, rtol=0, msg=k)
    assert straight.exists() and resumed.exists()
    # summary.csv has one row per epoch, with the totals of both segments of the resumed run
    import csv
    for run in ("s", "r"):
        rows = list(csv.DictReader(open(tmp_path / run / "summary.csv")))
        assert [(r["epoch"], r["steps"]) for r in rows] == [("1", "4")]


def test_dropout_zero_keeps_every_superclass(cifar, tmp_path):
    train_supernet(cifar, _cfg(tmp_path / "z", max_steps=2, superclass_dropout=0.0), progress=False, log=lambda m: None)
    steps = [json.loads(x) for x in (tmp_path / "z" / "steps.jsonl").read_text().splitlines()]
    assert all(s["kept"] == list(range(20)) for s in steps)


def test_augment_keeps_pixels_and_flips():
    import numpy as np
    imgs = np.arange(2 * 3 * 32 * 32, dtype=np.int64).reshape(2, 3, 32, 32) % 251
    imgs = imgs.astype(np.uint8)
    out = augment(imgs, np.random.default_rng(0), pad=0)
    from edgeeas.evaluate import to_float
    ref = to_float(imgs)
    for i in range(2):
        assert torch.allclose(out[i], ref[i]) or torch.allclose(out[i], ref[i].flip(-1))


def _cli(args, env=None):
    return subprocess.run([str(BIN / "edgeeas"), *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **(env or {})}, timeout=600)


@pytest.mark.slow  # a real training subprocess killed and resumed: ~100 s on the loaded 2-core machine
def test_kill_9_then_resume(data_path, tmp_path):
    out = tmp_path / "killed"
    args = ["train", "supernet", "--data", str(data_path), "--out", str(out), "--epochs", "1", "--batch-size", "16",
            "--train-subset", "800", "--eval-images", "50", "--threads", "1", "--checkpoint-minutes", "0", "--quiet"]
    p = subprocess.Popen([str(BIN / "edgeeas"), *args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline:
        if (out / "last.pt").exists() and load_raw(out / "last.pt")["step"] >= 2:
            break
        time.sleep(0.2)
    p.send_signal(signal.SIGKILL)
    p.wait()
    step_at_kill = load_raw(out / "last.pt")["step"]
    assert 2 <= step_at_kill < 50, "the run finished before it could be killed"
    r = _cli(args + ["--resume"])
    assert r.returncode == 0, r.stderr
    ck = load_raw(out / "last.pt")
    assert ck["epoch"] == 1 and ck["step"] == 0  # the epoch completed
    steps = [json.loads(x)["step"] for x in (out / "steps.jsonl").read_text().splitlines()]
    assert steps == list(range(50))  # each step once: what the killed run logged past its checkpoint is cut


def test_resume_cuts_the_step_log_back_to_the_checkpoint(cifar, tmp_path):
    """Records past the checkpoint (a killed run logs steps it never saved) and a torn line go."""
    train_supernet(cifar, _cfg(tmp_path / "c", max_steps=2), progress=False, log=lambda m: None)
    log = tmp_path / "c" / "steps.jsonl"
    extra = [json.dumps({"epoch": 0, "step": 2, "kept": [], "archs": [], "loss": 1.0}),
             json.dumps({"epoch": 0, "step": 3, "kept": [], "archs": [], "loss": 1.0}), '{"epoch": 0, "st']
    log.write_text(log.read_text() + "\n".join(extra))
    train_supernet(cifar, _cfg(tmp_path / "c", max_steps=4), resume=True, progress=False, log=lambda m: None)
    recs = [json.loads(x) for x in log.read_text().splitlines()]
    assert [r["step"] for r in recs] == [0, 1, 2, 3] and all(r["archs"] for r in recs)


def _torchrun(data_path, out, *extra, port):
    return subprocess.run([str(BIN / "torchrun"), "--nproc_per_node=2", f"--master_port={port}", "-m", "edgeeas.cli",
                           "train", "supernet", "--data", str(data_path), "--out", str(out), "--epochs", "1",
                           "--batch-size", "8", "--train-subset", "400", "--eval-images", "50",
                           "--threads", "1", "--quiet", *extra],
                          capture_output=True, text=True, cwd=ROOT, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.slow
def test_torchrun_two_cpu_processes_resume_bit_identically(data_path, tmp_path):
    """2 ranks: 2 steps, stop, resume to 4 == 4 steps straight; supernet.pt holds the final weights;
    metrics count both ranks' images."""
    r = _torchrun(data_path, tmp_path / "straight", "--max-steps", "4", port=29731)
    assert r.returncode == 0, r.stderr[-2000:]
    import yaml
    assert yaml.safe_load((tmp_path / "straight" / "args.yaml").read_text())["world_size"] == 2
    assert r.stdout.count("supernet written") == 1  # rank 0 only
    assert len((tmp_path / "straight" / "steps.jsonl").read_text().splitlines()) == 4
    r = _torchrun(data_path, tmp_path / "resumed", "--max-steps", "2", port=29732)
    assert r.returncode == 0, r.stderr[-2000:]
    r = _torchrun(data_path, tmp_path / "resumed", "--max-steps", "4", "--resume", port=29733)
    assert r.returncode == 0, r.stderr[-2000:]
    a = load_raw(tmp_path / "straight" / "last.pt")
    b = load_raw(tmp_path / "resumed" / "last.pt")
    final = load_raw(tmp_path / "resumed" / "supernet.pt")
    for k in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][k], b["state_dict"][k], atol=0, rtol=0, msg=k)
        torch.testing.assert_close(final["state_dict"][k], b["state_dict"][k], atol=0, rtol=0, msg=k)
    import csv
    for run in ("straight", "resumed"):
        (row,) = list(csv.DictReader(open(tmp_path / run / "summary.csv")))
        assert row["steps"] == "4"
        assert int(row["images"]) == 4 * 8 * 2  # both ranks' images, not rank 0's alone


def test_dropped_superclasses_do_not_reach_the_loss(cifar):
    """Superclass dropout masks the dropped classes' logits: the loss must not change when the
    head rows of dropped classes change, and must equal cross-entropy over the kept columns."""
    import torch.nn.functional as F

    from edgeeas.nn.supernet import Supernet
    from edgeeas.train import SandwichLoss, _Batches

    torch.manual_seed(0)
    net = Supernet(DEFAULT_SPACE).train()
    cfg = TrainConfig(num_random=0, superclass_dropout=0.5, kd_ratio=1.0, label_smoothing=0.0)
    kept = [3, 7]
    kept_cols = torch.tensor(sorted(c for s in kept for c in cifar.classes_of(s)))
    batches = _Batches(cifar, _cfg("unused", superclass_dropout=0.5, batch_size=16, train_subset=0), 0, 1)
    idx, rng = batches.batch(0, 0, kept)
    assert set(cifar.class_to_super[cifar.train.labels[idx]]) <= set(kept)   # the batch holds kept superclasses only
    x = augment(cifar.train.images[idx], rng)
    remap = torch.full((100,), -1, dtype=torch.long)
    remap[kept_cols] = torch.arange(len(kept_cols))
    y = remap[torch.as_tensor(cifar.train.labels[idx])]
    sand = SandwichLoss(net, cfg)
    archs = [DEFAULT_SPACE.largest(), DEFAULT_SPACE.smallest()]
    net.eval()  # fixed BN statistics, so two forwards are comparable
    loss, _ = sand(x, y, kept_cols, archs)
    net.set_active(archs[0])
    full = net(x)
    assert full.shape[1] == 100
    expected_largest = F.cross_entropy(full[:, kept_cols], y)
    net.set_active(archs[1])
    small = net(x)[:, kept_cols]
    expected = (expected_largest + F.cross_entropy(small, y)
                + F.kl_div(F.log_softmax(small, 1), F.softmax(full[:, kept_cols], 1), reduction="batchmean"))
    torch.testing.assert_close(loss, expected)
    with torch.no_grad():
        dropped = torch.tensor([c for c in range(100) if c not in set(kept_cols.tolist())])
        net.head.fc.weight[dropped] += 50.0
        net.head.fc.bias[dropped] += 50.0
    loss2, _ = sand(x, y, kept_cols, archs)
    torch.testing.assert_close(loss, loss2)


def test_resume_of_missing_run_is_one_line(tmp_path, data_path):
    r = _cli(["train", "supernet", "--data", str(data_path), "--out", str(tmp_path / "none"), "--resume"])
    assert r.returncode == 1 and "nothing to resume" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_existing_run_is_not_overwritten(tiny_run, data_path):
    before = (tiny_run / "last.pt").read_bytes()
    r = CliRunner().invoke(main, ["train", "supernet", "--data", str(data_path), "--out", str(tiny_run)])
    assert r.exit_code == 1 and "already holds a run" in r.output
    assert (tiny_run / "last.pt").read_bytes() == before


def test_checkpoints_of_other_spaces_and_garbage(tmp_path):
    from edgeeas.nn.supernet import Supernet
    other = SearchSpace(name="other", head_channels=128)
    save_supernet(tmp_path / "other.pt", Supernet(other), {})
    with pytest.raises(CheckpointError, match="trained for search space 'other'.*head_channels 128 vs 256"):
        load_supernet(tmp_path / "other.pt", space=DEFAULT_SPACE)
    ck = torch.load(tmp_path / "other.pt", weights_only=True)
    ck["space"] = DEFAULT_SPACE.to_dict()  # claims the default space, holds other tensors
    torch.save(ck, tmp_path / "lying.pt")
    with pytest.raises(CheckpointError, match="does not fit search space"):
        load_supernet(tmp_path / "lying.pt")
    (tmp_path / "junk.pt").write_bytes(os.urandom(1000))
    with pytest.raises(CheckpointError, match="not a readable edgeeas checkpoint"):
        load_supernet(tmp_path / "junk.pt")
    torch.save({"state_dict": {}}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not an edgeeas supernet checkpoint"):
        load_supernet(tmp_path / "plain.pt")
    r = CliRunner().invoke(main, ["eval", "--supernet", str(tmp_path / "junk.pt")])
    assert r.exit_code == 1 and "Traceback" not in r.output


def test_dataset_class_count_must_match(tmp_path):
    from PIL import Image
    import numpy as np
    for split in ("train", "test"):
        for c in ("a", "b"):
            (tmp_path / split / c).mkdir(parents=True)
            Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / split / c / "0.png")
    (tmp_path / "superclasses.yaml").write_text("s: [a, b]\n")
    from edgeeas.data import load_dataset
    # the head is sized from the dataset (issue 12); a space given explicitly must fit it
    path = train_supernet(load_dataset(tmp_path), _cfg(tmp_path / "o", max_steps=1, batch_size=2),
                          progress=False, log=lambda m: None)
    assert load_raw(path)["space"]["num_classes"] == 2
    with pytest.raises(TrainError, match="2 classes but search space"):
        train_supernet(load_dataset(tmp_path), _cfg(tmp_path / "o2"), space=DEFAULT_SPACE, progress=False)


def test_a_fork_resumes_with_its_own_init_from_and_refuses_another(cifar, tmp_path):
    """make pretrain-ablation repeats --init-from on resume: the same fork point continues, another is refused."""
    train_supernet(cifar, _cfg(tmp_path / "base", epochs=2, max_steps=25, keep_epochs=(1,)), progress=False,
                   log=lambda m: None)
    fork = str(tmp_path / "base" / "epoch01.pt")
    train_supernet(cifar, _cfg(tmp_path / "fork", epochs=2, max_steps=27, init_from=fork, superclass_dropout=0.0),
                   progress=False, log=lambda m: None)
    train_supernet(cifar, _cfg(tmp_path / "fork", epochs=2, max_steps=29, init_from=fork, superclass_dropout=0.0),
                   resume=True, progress=False, log=lambda m: None)
    assert load_raw(tmp_path / "fork" / "last.pt")["step"] == 4   # 25 steps an epoch: epoch 2, step 4
    with pytest.raises(TrainError, match="was started from"):
        train_supernet(cifar, _cfg(tmp_path / "fork", epochs=2, max_steps=30,
                                   init_from=str(tmp_path / "base" / "last.pt")), resume=True, progress=False)
