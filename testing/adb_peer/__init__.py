"""A device-side adb peer: speaks adbd's wire protocol over TCP, for tests (never on a phone).

No device-side adbd exists outside Android, so this package plays one, like a Linux
board that has Python: Debian's ``adb`` client and adb-shell both drive it as they
would drive a phone over ``adb tcpip``.  It implements

* ``CNXN`` (version 0x01000001, 1 MiB payloads, a ``device::`` banner advertising
  ``shell_v2,cmd``) and ``AUTH`` (TOKEN -> SIGNATURE checked with RSA against the
  authorized keys in adb's public-key format; RSAPUBLICKEY accepted only with
  ``accept_new_keys``, otherwise the device stays silent = "unauthorized");
* streams: ``OPEN``/``OKAY``/``WRTE``/``CLSE``, an ``OKAY`` for every ``WRTE`` both
  ways, checksums sent when the host's version needs them and never required;
* services ``shell:CMD`` (v1 raw stream), ``shell,v2,...:CMD`` (stdout id 1, stderr
  id 2, exit id 3; stdin id 0, close-stdin id 4), ``exec:CMD`` and ``sync:`` v1
  (STAT, LIST, SEND, RECV, DATA, DONE, OKAY, FAIL, QUIT); anything else gets ``CLSE``.

The device's ``/data/local/tmp`` is the ``sandbox`` folder and ``/sdcard`` a second
folder: sync paths are mapped and refused (``FAIL``) outside those two, and shell
commands get absolute ``/data``, ``/sdcard`` and ``/storage`` paths pointed into a
private device root (where ``data/local/tmp`` links to the sandbox) and run with
``/bin/sh -c`` in the sandbox,
with ``python3`` (this interpreter) and ``getprop`` (the configured properties) on
PATH.  It is a test double, **not** a security boundary: shell commands run on the
host as the calling user.  Listen on loopback (or a private network namespace) only.

    python -m testing.adb_peer --port 5800 --sandbox /tmp/dev --authorized-keys ~/.android/adbkey.pub

The package: :mod:`.wire` (packets, authentication, streams, one host connection),
:mod:`.services` (shell, exec, sync), :mod:`.peer` (:class:`AdbPeer`: the device, its
sandbox, properties and keys) and ``__main__`` (the command line above).

    from testing.adb_peer import AdbPeer
    with AdbPeer(sandbox=tmp / "dev", authorized_keys=home / ".android/adbkey.pub") as peer:
        Device(peer.serial).shell("echo hi")
"""

from .peer import AdbPeer
from .wire import parse_adb_public_key

__all__ = ["AdbPeer", "parse_adb_public_key"]
