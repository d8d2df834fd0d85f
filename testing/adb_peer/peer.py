"""The device: an adb peer on ``host:port`` with a sandbox for ``/data/local/tmp``, properties and keys.

See the package docstring for what it emulates; :mod:`.wire` speaks the protocol and
:mod:`.services` runs the shell and sync services.
"""

from __future__ import annotations

import logging
import os
import platform
import posixpath
import re
import shlex
import shutil
import socket
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from . import services
from .services import DEVICE_SDCARD, DEVICE_TMP
from .wire import Connection, parse_adb_public_key

__all__ = ["AdbPeer"]

log = logging.getLogger("testing.adb_peer")

_SAFE_PATH = re.compile(r"[A-Za-z0-9_./+=@-]+")


def getprop_script(props_file) -> str:
    """A ``/bin/sh`` ``getprop`` reading ``KEY=VALUE`` lines of ``props_file`` (a path as the
    device's shell sees it): no argument lists ``[key]: [value]``, ``getprop KEY [DEFAULT]`` prints one."""
    return ("#!/bin/sh\n"
            f"F={props_file}\n"
            'if [ $# -eq 0 ]; then\n'
            '  while IFS= read -r l; do printf \'[%s]: [%s]\\n\' "${l%%=*}" "${l#*=}"; done < "$F"\n'
            "else\n"
            '  while IFS= read -r l; do if [ "${l%%=*}" = "$1" ]; then printf \'%s\\n\' "${l#*=}"; exit 0; fi; done < "$F"\n'
            '  printf \'%s\\n\' "$2"\n'
            "fi\n")


@dataclass
class AdbPeer:
    """An adb device on ``host:port``.  ``start()`` serves in threads; ``stop()`` pulls the plug.

    ``port=0`` picks a free port (read ``.port`` / ``.serial`` after ``start()``).
    ``authorized_keys`` is a file of adb public keys (one ``BASE64 user@host`` per
    line, like ``/data/misc/adb/adb_keys``), re-read at every handshake.
    """

    sandbox: Path
    port: int = 0
    host: str = "127.0.0.1"
    authorized_keys: Path | None = None
    accept_new_keys: bool = False
    auth_required: bool = True
    model: str = "edgeeas-peer"
    props: dict[str, str] = field(default_factory=dict)
    disk_quota_bytes: int | None = None
    sdcard: Path | None = None
    python: str = sys.executable

    def __post_init__(self):
        self.sandbox = Path(self.sandbox)
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[Connection] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._extra_keys: list[str] = []
        self._private_dir: Path | None = None
        self.quota_lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def serial(self) -> str:
        """``host:port``, what ``adb connect`` and ``Device(serial)`` take (the real port after ``start()``)."""
        return f"{self.host}:{self.port}"

    def start(self) -> "AdbPeer":
        """Create the sandbox and the private device root, listen, and serve in a daemon thread.

        Returns:
            self, listening.

        Raises:
            ValueError: a folder whose path needs shell quoting (the peer rewrites commands as text).
            OSError: the port cannot be bound.
        """
        self.sandbox.mkdir(parents=True, exist_ok=True)
        self.sandbox = self.sandbox.resolve()
        self._private_dir = Path(tempfile.mkdtemp(prefix="adbpeer-"))
        if self.sdcard is None:
            self.sdcard = self._private_dir / "sdcard"
        self.sdcard = Path(self.sdcard)
        self.sdcard.mkdir(parents=True, exist_ok=True)
        self.sdcard = self.sdcard.resolve()
        for p in (self.sandbox, self.sdcard, self._private_dir):
            if not _SAFE_PATH.fullmatch(str(p)):
                raise ValueError(f"peer folder {p} has characters that need shell quoting: use a plain path")
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(16)
        sock.settimeout(0.2)
        self.port = sock.getsockname()[1]
        self._write_tools()  # after binding: ro.serialno is the real host:port
        self._listener = sock
        self._stopping.clear()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True, name=f"adbpeer-{self.port}")
        self._thread.start()
        log.info("adb peer %s serving %s as %s", self.serial, self.sandbox, DEVICE_TMP)
        return self

    def stop(self) -> None:
        """Kill switch: close the listener and every connection abruptly (RST), kill all commands."""
        self._stopping.set()
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept() at once on Linux
            except OSError:
                pass
            try:
                self._listener.close()
            except OSError:
                pass
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            conn.shutdown(abort=True)
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        if self._private_dir is not None:
            shutil.rmtree(self._private_dir, ignore_errors=True)
            self._private_dir = None

    def __enter__(self) -> "AdbPeer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                sock, addr = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            if self._stopping.is_set():
                sock.close()
                break
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Connection(self, sock, f"{addr[0]}:{addr[1]}")
            with self._lock:
                self._conns.add(conn)
            threading.Thread(target=conn.serve, daemon=True, name=f"adbpeer-{self.port}-conn").start()

    def drop_connection(self, conn: Connection) -> None:
        """Forget a connection that has shut down (called by the connection)."""
        with self._lock:
            self._conns.discard(conn)

    # -- identity ----------------------------------------------------------------------------
    def properties(self) -> dict[str, str]:
        """What ``getprop`` answers: ``ro.product.*``, ``ro.build.fingerprint``, ... and ``props`` on top."""
        machine = platform.machine() or "unknown"
        abi = {"x86_64": "x86_64", "AMD64": "x86_64", "aarch64": "arm64-v8a", "arm64": "arm64-v8a"}.get(machine, machine)
        props = {
            "ro.product.name": "edgeeas_peer",
            "ro.product.model": self.model,
            "ro.product.manufacturer": "edgeeas",
            "ro.product.device": "edgeeas_peer",
            "ro.product.cpu.abi": abi,
            "ro.board.platform": f"linux-{machine}",
            "ro.build.fingerprint": f"edgeeas/adb-peer/{platform.node()}:{platform.release()}/python{platform.python_version()}",
            "ro.serialno": self.serial,
        }
        props.update(self.props)
        return props

    def banner(self) -> str:
        """The ``CNXN`` banner: ``device::ro.product.name=...;...;features=shell_v2,cmd``."""
        p = self.properties()
        return (f"device::ro.product.name={p['ro.product.name']};ro.product.model={p['ro.product.model']};"
                f"ro.product.device={p['ro.product.device']};features=shell_v2,cmd")

    def accepted_keys(self) -> list:
        """The RSA public keys accepted now (``authorized_keys`` re-read, plus keys added since)."""
        lines = list(self._extra_keys)
        if self.authorized_keys is not None:
            try:
                lines += Path(self.authorized_keys).read_text().splitlines()
            except OSError:
                pass
        keys = []
        for line in lines:
            key = parse_adb_public_key(line)
            if key is not None:
                keys.append(key)
        return keys

    def add_key(self, line: str) -> None:
        """What "Always allow from this computer" does: remember the key (in the file if one is set)."""
        self._extra_keys.append(line)
        if self.authorized_keys is not None:
            with open(self.authorized_keys, "a") as f:
                f.write(line.strip() + "\n")

    # -- device paths ------------------------------------------------------------------------
    def map_path(self, device_path: str) -> Path | None:
        """Device path → host path, or None if outside /data/local/tmp and /sdcard (or escaping by symlink)."""
        if not device_path.startswith("/") or "\0" in device_path:
            return None
        norm = posixpath.normpath(device_path)
        for root, local in ((DEVICE_TMP, self.sandbox), (DEVICE_SDCARD, self.sdcard), ("/storage/emulated/0", self.sdcard)):
            if norm == root or norm.startswith(root + "/"):
                rest = norm[len(root):].lstrip("/")
                path = local / rest if rest else local
                real = Path(os.path.realpath(path))
                if real != local and local not in real.parents:
                    return None
                return path
        return None

    def rewrite_command(self, command: str) -> str:
        """Point absolute ``/data``, ``/sdcard`` and ``/storage`` paths into the private device root.

        That root holds ``data/local/tmp`` → sandbox and ``sdcard`` → the sdcard folder
        (symlinks), so ``mkdir -p /data/local/tmp/x`` or ``ls /data`` never touch the
        host's own ``/data``.
        """
        return re.sub(r"(?<![\w.-])(?=/(?:data|sdcard|storage)(?:[^\w.-]|$))", str(self._root), command)

    def _write_tools(self) -> None:
        self._root = self._private_dir / "root"
        (self._root / "data" / "local").mkdir(parents=True)
        (self._root / "storage" / "emulated").mkdir(parents=True)
        (self._root / "data" / "local" / "tmp").symlink_to(self.sandbox)
        (self._root / "sdcard").symlink_to(self.sdcard)
        (self._root / "storage" / "emulated" / "0").symlink_to(self.sdcard)
        bindir = self._private_dir / "bin"
        bindir.mkdir()
        for name in ("python3", "python"):
            (bindir / name).write_text(f"#!/bin/sh\nexec {shlex.quote(self.python)} \"$@\"\n")
        props_file = self._private_dir / "props"
        props_file.write_text("".join(f"{k}={v}\n" for k, v in sorted(self.properties().items())))
        (bindir / "getprop").write_text(getprop_script(props_file))
        for tool in bindir.iterdir():
            tool.chmod(0o755)
        self._bindir = bindir
        # `pwd` and `ls` print device paths, never the host folders behind them (a shell function
        # wins over the regular built-in `pwd` and over `ls` on PATH)
        subs = [(os.path.realpath(self.sandbox), DEVICE_TMP), (os.path.realpath(self.sdcard), DEVICE_SDCARD),
                (str(self.sandbox), DEVICE_TMP), (str(self.sdcard), DEVICE_SDCARD), (str(self._root), "")]
        sed = " ".join(f"-e {shlex.quote(f's#{a}#{b}#g')}" for a, b in subs)
        self._prelude = self._private_dir / "prelude.sh"
        self._prelude.write_text(f"pwd() {{ command pwd \"$@\" | sed {sed}; }}\n"
                                 f"ls() {{ command ls \"$@\" | sed {sed}; }}\n")

    def shell_argv(self, command: str) -> list[str]:
        """The host process that runs a shell command (an interactive ``/bin/sh`` when empty), in
        the sandbox with :meth:`shell_env`: ``/bin/sh -c`` with device paths rewritten here; the
        arm64 peer (:mod:`testing.arm64`) runs it inside its emulated rootfs instead."""
        if not command:
            return ["/bin/sh"]  # interactive: reads the prelude through $ENV
        return ["/bin/sh", "-c", f". {shlex.quote(str(self._prelude))}\n{self.rewrite_command(command)}"]

    def shell_env(self) -> dict[str, str]:
        """The environment of shell commands: the peer's tools first on PATH, HOME and TMPDIR the sandbox."""
        return {
            "PATH": f"{self._bindir}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.sandbox),
            "TMPDIR": str(self.sandbox),
            "LANG": "C.UTF-8",
            "EXTERNAL_STORAGE": str(self.sdcard),
            "ENV": str(self._prelude),
        }

    def disk_used(self) -> int:
        """Bytes in the sandbox and the sdcard folder (what the disk quota counts)."""
        total = 0
        for top in (self.sandbox, self.sdcard):
            for root, _dirs, files in os.walk(top):
                for f in files:
                    try:
                        total += os.lstat(os.path.join(root, f)).st_size
                    except OSError:
                        pass
        return total

    # -- services ----------------------------------------------------------------------------
    def service_for(self, service: str):
        """The runner of service ``service`` (``shell:``, ``shell,v2,...:``, ``exec:``, ``sync:``), or None."""
        return services.service_for(self, service)
