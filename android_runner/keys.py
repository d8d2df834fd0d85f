"""RSA keys for adb authentication, stored and found the way adb does it.

* The user key is ``~/.android/adbkey`` (PEM private key) with ``adbkey.pub``
  (adb's base64 ``RSAPublicKey`` struct followed by `` user@host``).  It is created
  when missing, with mode 0600, atomically (two processes racing both end up with
  one valid pair).
* ``ADB_VENDOR_KEYS`` is a ``:``-separated list of private key files, or of
  directories whose ``*.adb_key`` files are keys, exactly like adb.

Key material never reaches a log: signers have an opaque ``repr`` and
:data:`AUTH_LOG_FILTER` drops adb-shell's packet dumps while a handshake runs.
"""

from __future__ import annotations

import base64
import logging
import os
import tempfile
import threading
from pathlib import Path

from .errors import AdbAuthError

__all__ = ["AdbKey", "default_key_path", "ensure_user_key", "load_keys", "public_key_text"]

log = logging.getLogger("android_runner")


def default_key_path() -> Path:
    """``~/.android/adbkey`` (``ANDROID_USER_HOME`` replaces ``~/.android`` like in newer adb)."""
    user_home = os.environ.get("ANDROID_USER_HOME")
    base = Path(user_home) if user_home else Path.home() / ".android"
    return base / "adbkey"


def ensure_user_key(path: Path | None = None) -> Path:
    """Return the private key path, generating the pair (mode 0600) when it is missing."""
    path = Path(path) if path is not None else default_key_path()
    if path.is_file() and path.with_name(path.name + ".pub").is_file():
        return path
    from adb_shell.auth.keygen import keygen, write_public_keyfile

    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.is_file():  # private key without its .pub: derive the public half, as adb does
        write_public_keyfile(str(path), str(path) + ".pub")
        return path
    # Generate inside a private (0700) temp dir, fix modes, then rename into place.
    tmpdir = tempfile.mkdtemp(prefix=".adbkey-", dir=path.parent)
    try:
        tmp = os.path.join(tmpdir, "adbkey")
        keygen(tmp)
        os.chmod(tmp, 0o600)
        os.chmod(tmp + ".pub", 0o644)
        os.replace(tmp + ".pub", str(path) + ".pub")
        os.replace(tmp, path)
    finally:
        for name in os.listdir(tmpdir):
            os.unlink(os.path.join(tmpdir, name))
        os.rmdir(tmpdir)
    log.info("generated adb key %s (add %s.pub to the device, or accept the prompt)", path, path)
    return path


def public_key_text(private_key_pem: bytes) -> str:
    """adb's public key line (``BASE64 user@host``) for a PEM private key."""
    from adb_shell.auth.keygen import (ANDROID_PUBKEY_MODULUS_SIZE, ANDROID_PUBKEY_MODULUS_SIZE_WORDS,
                                       ANDROID_RSAPUBLICKEY_STRUCT, get_user_info)
    import struct

    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(private_key_pem, password=None)
    numbers = key.public_key().public_numbers()
    r32 = 1 << 32
    n0inv = r32 - pow(numbers.n % r32, -1, r32)
    rr = pow(1 << (ANDROID_PUBKEY_MODULUS_SIZE * 8), 2, numbers.n)
    packed = struct.pack(ANDROID_RSAPUBLICKEY_STRUCT, ANDROID_PUBKEY_MODULUS_SIZE_WORDS, n0inv,
                         numbers.n.to_bytes(ANDROID_PUBKEY_MODULUS_SIZE, "little"),
                         rr.to_bytes(ANDROID_PUBKEY_MODULUS_SIZE, "little"), numbers.e)
    return base64.b64encode(packed).decode("ascii") + get_user_info()


class AdbKey:
    """An adb-shell signer (``Sign``/``GetPublicKey``) backed by ``cryptography``.

    Its ``repr`` names the file, never the key.
    """

    def __init__(self, path: Path):
        from cryptography.hazmat.primitives import serialization

        self.path = Path(path)
        try:
            pem = self.path.read_bytes()
            self._key = serialization.load_pem_private_key(pem, password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise AdbAuthError(f"cannot load adb key {self.path}: {type(exc).__name__}",
                               advice="expected a PEM RSA private key as written by adb or adb-shell's keygen") from None
        pub = Path(str(self.path) + ".pub")
        try:
            self._public = pub.read_text().strip()
        except OSError:
            self._public = public_key_text(pem)  # vendor keys often come without .pub

    def Sign(self, data: bytes) -> bytes:  # noqa: N802 (adb-shell's signer interface)
        """RSA PKCS#1 v1.5 signature of the device's 20-byte AUTH token, taken as an already
        hashed SHA-1 digest (what adbd verifies); adb-shell's ``PythonRSASigner`` interface."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding, utils

        return self._key.sign(bytes(data), padding.PKCS1v15(), utils.Prehashed(hashes.SHA1()))

    def GetPublicKey(self) -> str:  # noqa: N802
        """The public key in adb's text form (base64 of Android's RSA public key struct, then
        `` user@host``), sent when the device does not know our key yet: the phone asks "Allow
        USB debugging?" and stores it.  From the ``.pub`` file beside the key, else derived from
        the private key."""
        return self._public

    def __repr__(self) -> str:
        return f"AdbKey({str(self.path)!r})"


def _vendor_key_paths() -> list[Path]:
    paths: list[Path] = []
    for entry in os.environ.get("ADB_VENDOR_KEYS", "").split(":"):
        if not entry:
            continue
        p = Path(entry).expanduser()
        if p.is_dir():
            paths.extend(sorted(q for q in p.iterdir() if q.name.endswith(".adb_key") and q.is_file()))
        elif p.is_file():
            paths.append(p)
        else:
            log.warning("ADB_VENDOR_KEYS entry %s does not exist: ignored", p)
    return paths


def load_keys(key_path: Path | None = None, *, vendor_keys: bool = True) -> list[AdbKey]:
    """The signers to offer a device: the user key (created if missing), then vendor keys."""
    keys = [AdbKey(ensure_user_key(key_path))]
    if vendor_keys:
        seen = {keys[0].path.resolve()}
        for p in _vendor_key_paths():
            if p.resolve() not in seen:
                seen.add(p.resolve())
                keys.append(AdbKey(p))
    return keys


# --- keep adb-shell's packet dumps (signature, public key) out of the logs ---------------------
_tls = threading.local()


class _AuthLogFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(_tls, "in_auth", False)


AUTH_LOG_FILTER = _AuthLogFilter()
logging.getLogger("adb_shell.adb_device").addFilter(AUTH_LOG_FILTER)


class quiet_auth:
    """Context manager: drop adb-shell's debug packet dumps in this thread while authenticating."""

    def __enter__(self):
        _tls.in_auth = True

    def __exit__(self, *exc):
        _tls.in_auth = False
        return False
