"""Fixtures for the adb tests: private keys and HOME, in-process device peers, a private adb server.

Import the fixtures into a test module (``from adb_fixtures import *``); pytest's
default import mode puts ``tests/`` on ``sys.path``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from android_runner.peer import AdbPeer

__all__ = ["adb_keypair", "other_keypair", "adb_home", "make_peer", "peer", "adb_cli", "free_port", "AdbCli",
           "ADB_BIN"]

ADB_BIN = shutil.which("adb")


def free_port() -> int:
    """A free TCP port on loopback (ephemeral range, so never 5555-5585 where adb scans for emulators)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert not 5555 <= port <= 5585
    return port


def _keygen(folder: Path) -> Path:
    from adb_shell.auth.keygen import keygen

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "adbkey"
    keygen(str(path))
    return path


@pytest.fixture(scope="session")
def adb_keypair(tmp_path_factory) -> Path:
    """One RSA key pair for the session (2048-bit keygen is slow-ish); copied into each private HOME."""
    return _keygen(tmp_path_factory.mktemp("adbkey"))


@pytest.fixture(scope="session")
def other_keypair(tmp_path_factory) -> Path:
    """A second key that no peer authorizes unless a test says so."""
    return _keygen(tmp_path_factory.mktemp("otherkey"))


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
    return make_peer(model="Peer One")


class AdbCli:
    """Debian's real adb client with a private HOME and a private server port."""

    def __init__(self, home: Path, port: int):
        self.home = home
        self.port = port
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("ANDROID_SERIAL", "ADB_VENDOR_KEYS", "ANDROID_USER_HOME", "ANDROID_SDK_HOME")}
        self.env.update(HOME=str(home), ANDROID_ADB_SERVER_PORT=str(port))

    def __call__(self, *args: str, timeout: float = 30, input: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([ADB_BIN, *args], env=self.env, input=input, capture_output=True, text=True,
                              timeout=timeout, **({"stdin": subprocess.DEVNULL} if input is None else {}))

    @property
    def public_key(self) -> str:
        return (self.home / ".android" / "adbkey.pub").read_text()


@pytest.fixture
def adb_cli(tmp_path):
    if ADB_BIN is None:
        pytest.skip("Debian's adb client is not installed (apt-get install adb)")
    home = tmp_path / "adb-home"
    home.mkdir()
    cli = AdbCli(home, free_port())
    res = cli("start-server")  # also generates HOME/.android/adbkey
    assert res.returncode == 0, res.stderr
    yield cli
    subprocess.run([ADB_BIN, "-P", str(cli.port), "kill-server"], env=cli.env, capture_output=True, timeout=30)
