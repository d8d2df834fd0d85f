"""Shared fixtures: the real CIFAR-100 archive, a tiny trained supernet, adb keys, homes and
device-side peers, Debian's adb client, and the tiny space's host latency table.

Test modules use them by name; helpers they call directly are imported explicitly
(``from adb_helpers import free_port``, ``from latency_fixtures import TINY``).
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from adb_helpers import ADB_BIN, AdbCli, free_port, keygen
from testing.adb_peer import AdbPeer

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


# Tests that need the trained tiny supernet (`tiny_run`: about 1.5 minutes to train once per session
# on the loaded 2-core machine) or the tiny space's latency table (`tiny_bench`: real exports) are
# slow: `pytest -m "not slow"` leaves them out, `make test` runs them all.
SLOW_FIXTURES = {"tiny_run", "tiny_bench"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Mark every test that uses a fixture of :data:`SLOW_FIXTURES` (directly or through another) slow."""
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def _data_path() -> Path | None:
    for cand in (os.environ.get("EDGEEAS_DATA"), ROOT / "data", ROOT.parent / "shared" / "data"):
        if cand and Path(cand).exists():
            return Path(cand)
    return None


@pytest.fixture(scope="session")
def data_path() -> Path:
    """The CIFAR-100 archive or folder ($EDGEEAS_DATA, ./data, ../shared/data); fails the test without it."""
    p = _data_path()
    if p is None:
        pytest.fail("CIFAR-100 not found: set EDGEEAS_DATA or run `make install` (links ./data to ../shared/data)")
    return p


@pytest.fixture(scope="session")
def cifar(data_path):
    """The loaded CIFAR-100 dataset (edgeeas.data.load_dataset), once per session."""
    from edgeeas.data import load_dataset

    return load_dataset(data_path)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, cifar):
    """A supernet trained for a few real steps on a small subset (weights are real, accuracy is not)."""
    from edgeeas.train import TrainConfig, train_supernet

    out = tmp_path_factory.mktemp("run") / "tiny"
    cfg = TrainConfig(out=str(out), epochs=1, batch_size=32, max_steps=4, train_subset=800, eval_images=100,
                      recal_images=100, num_random=1, threads=2, superclass_dropout=0.5)
    train_supernet(cifar, cfg, progress=False, log=lambda m: None)
    return out


# ---- adb: keys, a private HOME, device-side peers, Debian's client ---------------------------------
@pytest.fixture(scope="session")
def adb_keypair(tmp_path_factory) -> Path:
    """One RSA key pair for the session (2048-bit keygen is slow-ish); copied into each private HOME."""
    return keygen(tmp_path_factory.mktemp("adbkey"))


@pytest.fixture(scope="session")
def other_keypair(tmp_path_factory) -> Path:
    """A second key that no peer authorizes unless a test says so."""
    return keygen(tmp_path_factory.mktemp("otherkey"))


@pytest.fixture
def adb_home(tmp_path, monkeypatch, adb_keypair) -> Path:
    """A private HOME holding ~/.android/adbkey(.pub); no ANDROID_SERIAL / vendor keys leak in."""
    home = tmp_path / "home"
    (home / ".android").mkdir(parents=True)
    for suffix in ("", ".pub"):
        shutil.copy(str(adb_keypair) + suffix, home / ".android" / ("adbkey" + suffix))
    os.chmod(home / ".android" / "adbkey", 0o600)
    monkeypatch.setenv("HOME", str(home))
    for var in ("ANDROID_SERIAL", "ADB_VENDOR_KEYS", "ANDROID_USER_HOME"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture
def make_peer(tmp_path, adb_home):
    """Factory: ``make_peer(**AdbPeer kwargs)`` → a started peer that authorizes the HOME key by default."""
    peers: list[AdbPeer] = []

    def make(**kwargs) -> AdbPeer:
        n = len(peers)
        if "authorized_keys" not in kwargs:
            keys = tmp_path / f"adb_keys{n}"
            keys.write_text((adb_home / ".android" / "adbkey.pub").read_text() + "\n")
            kwargs["authorized_keys"] = keys
        kwargs.setdefault("sandbox", tmp_path / f"device{n}")
        p = AdbPeer(**kwargs).start()
        peers.append(p)
        return p

    yield make
    for p in peers:
        p.stop()


@pytest.fixture
def peer(make_peer) -> AdbPeer:
    """One started peer (model "Peer One") that authorizes the HOME key."""
    return make_peer(model="Peer One")


@pytest.fixture
def adb_cli(tmp_path):
    """Debian's adb client on a private server port with a private HOME (skips when adb is missing)."""
    if ADB_BIN is None:
        pytest.skip("Debian's adb client is not installed (apt-get install adb)")
    home = tmp_path / "adb-home"
    home.mkdir()
    cli = AdbCli(home, free_port())
    res = cli("start-server")  # also generates HOME/.android/adbkey
    assert res.returncode == 0, res.stderr
    yield cli
    subprocess.run([ADB_BIN, "-P", str(cli.port), "kill-server"], env=cli.env, capture_output=True, timeout=30)


# ---- the tiny space's host latency table --------------------------------------------------------
@pytest.fixture(scope="session")
def tiny_bench():
    """(targets root, HostTarget 'tiny', BenchReport) of the tiny space's complete table."""
    from latency_fixtures import build_tiny_bench

    s = build_tiny_bench()
    assert s["report"].error is None, s["report"].error
    return s["root"], s["target"], s["report"]
