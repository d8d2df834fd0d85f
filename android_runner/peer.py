"""A device-side adb peer: speaks adbd's wire protocol over TCP, for tests.

No device-side adbd exists outside Android, so this module plays one, like a Linux
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

    python -m android_runner.peer --port 5800 --sandbox /tmp/dev --authorized-keys ~/.android/adbkey.pub
"""

from __future__ import annotations

import argparse
import base64
import errno
import logging
import os
import platform
import posixpath
import queue
import re
import selectors
import shlex
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["AdbPeer", "main"]

log = logging.getLogger("android_runner.peer")


def _cmd(name: bytes) -> int:
    return struct.unpack("<I", name)[0]


A_SYNC, A_CNXN, A_AUTH, A_OPEN = _cmd(b"SYNC"), _cmd(b"CNXN"), _cmd(b"AUTH"), _cmd(b"OPEN")
A_OKAY, A_CLSE, A_WRTE = _cmd(b"OKAY"), _cmd(b"CLSE"), _cmd(b"WRTE")
_NAMES = {A_SYNC: "SYNC", A_CNXN: "CNXN", A_AUTH: "AUTH", A_OPEN: "OPEN", A_OKAY: "OKAY", A_CLSE: "CLSE", A_WRTE: "WRTE"}
AUTH_TOKEN, AUTH_SIGNATURE, AUTH_RSAPUBLICKEY = 1, 2, 3
VERSION = 0x01000001            # the version that lets both sides skip checksums
VERSION_SKIP_CHECKSUM = 0x01000001
MAX_PAYLOAD = 1024 * 1024
SYNC_DATA_MAX = 64 * 1024
TOKEN_SIZE = 20
DEVICE_TMP = "/data/local/tmp"
DEVICE_SDCARD = "/sdcard"
_SAFE_PATH = re.compile(r"[A-Za-z0-9_./+=@-]+")


def _checksum(data: bytes) -> int:
    return sum(data) & 0xFFFFFFFF


# --- keys --------------------------------------------------------------------------------------

def parse_adb_public_key(line: str | bytes):
    """adb's ``BASE64 [user@host]`` public key line → a ``cryptography`` RSA public key (or None)."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    if isinstance(line, bytes):
        line = line.decode("ascii", "replace")
    parts = line.strip().split()
    if not parts:
        return None
    try:
        blob = base64.b64decode(parts[0], validate=True)
        words, _n0inv = struct.unpack_from("<2I", blob)
        size = words * 4
        if len(blob) != 8 + 2 * size + 4 or size < 64:
            return None
        n = int.from_bytes(blob[8:8 + size], "little")
        (e,) = struct.unpack_from("<I", blob, 8 + 2 * size)
        return rsa.RSAPublicNumbers(e, n).public_key()
    except (ValueError, struct.error):
        return None


def _verify(public_key, token: bytes, signature: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, utils

    try:
        public_key.verify(signature, token, padding.PKCS1v15(), utils.Prehashed(hashes.SHA1()))
        return True
    except (InvalidSignature, ValueError):
        return False


# --- streams -----------------------------------------------------------------------------------

class _StreamClosed(Exception):
    pass


class _Stream:
    """One adb stream: device id ``local_id`` ↔ host id ``remote_id``."""

    def __init__(self, conn: "_Connection", local_id: int, remote_id: int):
        self.conn = conn
        self.local_id = local_id
        self.remote_id = remote_id
        self.inbound: queue.Queue[bytes | None] = queue.Queue()
        self._cv = threading.Condition()
        self._can_send = True
        self.closed = False
        self.on_close = None  # called once when the stream ends (kill the process, ...)

    # host → device
    def okay(self) -> None:
        with self._cv:
            self._can_send = True
            self._cv.notify_all()

    # device → host, one WRTE at a time, each waiting for the host's OKAY
    def write(self, data: bytes) -> None:
        view = memoryview(data)
        step = self.conn.max_payload
        for off in range(0, len(view), step):
            with self._cv:
                while not self._can_send and not self.closed:
                    self._cv.wait(0.5)
                if self.closed:
                    raise _StreamClosed()
                self._can_send = False
            self.conn.send(A_WRTE, self.local_id, self.remote_id, bytes(view[off:off + step]))

    def close(self) -> None:
        """Device side closes: send CLSE once."""
        if self._mark_closed():
            self.conn.send(A_CLSE, self.local_id, self.remote_id)

    def host_closed(self) -> None:
        self._mark_closed()

    def _mark_closed(self) -> bool:
        with self._cv:
            if self.closed:
                return False
            self.closed = True
            self._cv.notify_all()
        self.conn.forget(self.local_id)
        self.inbound.put(None)
        if self.on_close is not None:
            try:
                self.on_close()
            except Exception:  # noqa: BLE001
                log.exception("stream close hook failed")
        return True


class _InboundReader:
    """Byte-exact reads over a stream's WRTE payloads."""

    def __init__(self, stream: _Stream):
        self.stream = stream
        self.buf = bytearray()
        self.eof = False

    def read(self, n: int) -> bytes | None:
        while len(self.buf) < n and not self.eof:
            chunk = self.stream.inbound.get()
            if chunk is None:
                self.eof = True
            else:
                self.buf += chunk
        if len(self.buf) < n:
            return None
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out


# --- one host connection ------------------------------------------------------------------------

class _Connection:
    def __init__(self, peer: "AdbPeer", sock: socket.socket, addr):
        self.peer = peer
        self.sock = sock
        self.addr = addr
        self.send_lock = threading.Lock()
        self.streams: dict[int, _Stream] = {}
        self.streams_lock = threading.Lock()
        self.next_id = 1
        self.online = False
        self.host_version = 0x01000000
        self.max_payload = 4096
        self.token = os.urandom(TOKEN_SIZE)
        self.procs: set[subprocess.Popen] = set()
        self.dead = False

    # wire
    def send(self, cmd: int, arg0: int, arg1: int, data: bytes = b"") -> None:
        check = 0 if self.host_version >= VERSION_SKIP_CHECKSUM else _checksum(data)
        header = struct.pack("<6I", cmd, arg0, arg1, len(data), check, cmd ^ 0xFFFFFFFF)
        with self.send_lock:
            if self.dead:
                raise _StreamClosed()
            try:
                self.sock.sendall(header + data)
            except OSError:
                self.dead = True
                raise _StreamClosed() from None

    def _recv_exact(self, n: int) -> bytes | None:
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = self.sock.recv(n - len(buf))
            except OSError:
                return None
            if not chunk:
                return None
            buf += chunk
        return bytes(buf)

    def forget(self, local_id: int) -> None:
        with self.streams_lock:
            self.streams.pop(local_id, None)

    def serve(self) -> None:
        try:
            while not self.dead:
                header = self._recv_exact(24)
                if header is None:
                    break
                cmd, arg0, arg1, length, check, magic = struct.unpack("<6I", header)
                if magic != cmd ^ 0xFFFFFFFF or cmd not in _NAMES or length > MAX_PAYLOAD:
                    log.warning("%s: bad packet header %r: dropping the connection", self.addr, header)
                    break
                data = self._recv_exact(length) if length else b""
                if data is None:
                    break
                if check and self.host_version < VERSION_SKIP_CHECKSUM and check != _checksum(data):
                    log.warning("%s: bad checksum on %s: dropping the connection", self.addr, _NAMES[cmd])
                    break
                self.handle(cmd, arg0, arg1, data)
        except _StreamClosed:
            pass
        finally:
            self.shutdown(abort=False)

    def shutdown(self, *, abort: bool) -> None:
        """Close every stream, kill every process, close the socket (RST if ``abort``)."""
        self.dead = True
        with self.streams_lock:
            streams = list(self.streams.values())
        for s in streams:
            s.host_closed()
        for proc in list(self.procs):
            _kill_group(proc)
        try:
            if abort:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.sock.shutdown(socket.SHUT_RD)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass
        self.peer._forget(self)

    # protocol
    def handle(self, cmd: int, arg0: int, arg1: int, data: bytes) -> None:
        if cmd == A_CNXN:
            self.host_version = min(arg0, VERSION)
            self.max_payload = max(256, min(arg1, MAX_PAYLOAD))
            log.debug("%s: CNXN %r", self.addr, data[:80])
            if self.peer.auth_required and not self.online:
                self.token = os.urandom(TOKEN_SIZE)
                self.send(A_AUTH, AUTH_TOKEN, 0, self.token)
            else:
                self._go_online()
        elif cmd == A_AUTH:
            self._auth(arg0, data)
        elif not self.online:
            log.debug("%s: %s before authentication: ignored", self.addr, _NAMES[cmd])
        elif cmd == A_OPEN:
            self._open(arg0, data.rstrip(b"\0").decode("utf-8", "replace"))
        elif cmd == A_WRTE:
            with self.streams_lock:
                stream = self.streams.get(arg1)
            if stream is not None:
                stream.inbound.put(data)
                self.send(A_OKAY, arg1, arg0)
        elif cmd == A_OKAY:
            with self.streams_lock:
                stream = self.streams.get(arg1)
            if stream is not None:
                stream.okay()
        elif cmd == A_CLSE:
            with self.streams_lock:
                stream = self.streams.get(arg1)
            if stream is not None:
                stream.close()  # adbd answers a host's CLSE with its own (adb-shell waits for it)

    def _go_online(self) -> None:
        self.online = True
        self.send(A_CNXN, VERSION, MAX_PAYLOAD, self.peer.banner().encode())

    def _auth(self, kind: int, data: bytes) -> None:
        if self.online:
            return
        if kind == AUTH_SIGNATURE:
            if any(_verify(key, self.token, data) for key in self.peer.accepted_keys()):
                log.info("%s: key accepted", self.addr)
                self._go_online()
            else:
                self.token = os.urandom(TOKEN_SIZE)
                self.send(A_AUTH, AUTH_TOKEN, 0, self.token)
        elif kind == AUTH_RSAPUBLICKEY:
            line = data.rstrip(b"\0").decode("ascii", "replace")
            if self.peer.accept_new_keys and parse_adb_public_key(line) is not None:
                self.peer.add_key(line)
                log.info("%s: new key accepted (--accept-new-keys)", self.addr)
                self._go_online()
            else:
                # A phone would now show its "Allow USB debugging?" prompt and wait.
                log.info("%s: unknown key offered: staying unauthorized", self.addr)

    def _open(self, host_id: int, service: str) -> None:
        runner = self.peer.service_for(service)
        if runner is None:
            log.info("%s: service %r refused", self.addr, service[:80])
            self.send(A_CLSE, 0, host_id)
            return
        with self.streams_lock:
            local_id = self.next_id
            self.next_id += 1
            stream = _Stream(self, local_id, host_id)
            self.streams[local_id] = stream
        self.send(A_OKAY, local_id, host_id)
        threading.Thread(target=self._run_service, args=(runner, stream), daemon=True,
                         name=f"adbpeer-{self.peer.port}-{local_id}").start()

    def _run_service(self, runner, stream: _Stream) -> None:
        try:
            runner(self, stream)
        except _StreamClosed:
            pass
        except Exception:  # noqa: BLE001 - a service bug must not take the device down
            log.exception("service failed")
        finally:
            try:
                stream.close()
            except _StreamClosed:
                pass


def _kill_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


# --- the peer ----------------------------------------------------------------------------------

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
        self._conns: set[_Connection] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._extra_keys: list[str] = []
        self._private_dir: Path | None = None
        self._quota_lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def serial(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> "AdbPeer":
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
        self._write_tools()
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(16)
        sock.settimeout(0.2)
        self.port = sock.getsockname()[1]
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
            conn = _Connection(self, sock, f"{addr[0]}:{addr[1]}")
            with self._lock:
                self._conns.add(conn)
            threading.Thread(target=conn.serve, daemon=True, name=f"adbpeer-{self.port}-conn").start()

    def _forget(self, conn: _Connection) -> None:
        with self._lock:
            self._conns.discard(conn)

    # -- identity ----------------------------------------------------------------------------
    def properties(self) -> dict[str, str]:
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
        p = self.properties()
        return (f"device::ro.product.name={p['ro.product.name']};ro.product.model={p['ro.product.model']};"
                f"ro.product.device={p['ro.product.device']};features=shell_v2,cmd")

    def accepted_keys(self) -> list:
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
        (bindir / "getprop").write_text(
            "#!/bin/sh\n"
            f"F={props_file}\n"
            'if [ $# -eq 0 ]; then\n'
            '  while IFS= read -r l; do printf \'[%s]: [%s]\\n\' "${l%%=*}" "${l#*=}"; done < "$F"\n'
            "else\n"
            '  while IFS= read -r l; do if [ "${l%%=*}" = "$1" ]; then printf \'%s\\n\' "${l#*=}"; exit 0; fi; done < "$F"\n'
            '  printf \'%s\\n\' "$2"\n'
            "fi\n")
        for tool in bindir.iterdir():
            tool.chmod(0o755)
        self._bindir = bindir

    def shell_env(self) -> dict[str, str]:
        return {
            "PATH": f"{self._bindir}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.sandbox),
            "TMPDIR": str(self.sandbox),
            "LANG": "C.UTF-8",
            "EXTERNAL_STORAGE": str(self.sdcard),
        }

    def disk_used(self) -> int:
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
        if service.startswith("shell") and ":" in service:
            head, command = service.split(":", 1)
            opts = head.split(",")[1:] if head.startswith("shell,") else []
            if head != "shell" and not head.startswith("shell,"):
                return None
            v2 = "v2" in opts
            return lambda conn, stream: self._shell(conn, stream, command, v2)
        if service.startswith("exec:"):
            return lambda conn, stream: self._shell(conn, stream, service[5:], False)
        if service == "sync:":
            return self._sync
        return None

    def _shell(self, conn: _Connection, stream: _Stream, command: str, v2: bool) -> None:
        argv = ["/bin/sh", "-c", self.rewrite_command(command)] if command else ["/bin/sh"]
        log.info("%s: shell%s %r", self.serial, " (v2)" if v2 else "", command[:200])
        proc = subprocess.Popen(argv, cwd=self.sandbox, env=self.shell_env(), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE if v2 else subprocess.STDOUT,
                                start_new_session=True)
        conn.procs.add(proc)
        stream.on_close = lambda: _kill_group(proc)
        if conn.dead or stream.closed:
            _kill_group(proc)
        threading.Thread(target=self._shell_stdin, args=(stream, proc, v2), daemon=True).start()
        try:
            sel = selectors.DefaultSelector()
            sel.register(proc.stdout, selectors.EVENT_READ, 1)
            if v2:
                sel.register(proc.stderr, selectors.EVENT_READ, 2)
            chunk = max(256, min(conn.max_payload, 256 * 1024) - 5)
            while sel.get_map():
                for key, _ in sel.select():
                    data = os.read(key.fd, chunk)
                    if not data:
                        sel.unregister(key.fileobj)
                        continue
                    stream.write(struct.pack("<BI", key.data, len(data)) + data if v2 else data)
            sel.close()
            rc = proc.wait()
            if rc < 0:
                rc = 128 - rc
            if v2:
                stream.write(struct.pack("<BI", 3, 1) + bytes([rc & 0xFF]))
        finally:
            _kill_group(proc)
            proc.wait()
            for f in (proc.stdout, proc.stderr):
                if f is not None:
                    f.close()
            conn.procs.discard(proc)

    @staticmethod
    def _shell_stdin(stream: _Stream, proc: subprocess.Popen, v2: bool) -> None:
        reader = _InboundReader(stream)
        try:
            while True:
                if v2:
                    head = reader.read(5)
                    if head is None:
                        break
                    kind, size = struct.unpack("<BI", head)
                    data = reader.read(size) if size else b""
                    if data is None:
                        break
                    if kind == 0 and data:
                        proc.stdin.write(data)
                        proc.stdin.flush()
                    elif kind == 4:
                        break
                else:
                    data = stream.inbound.get()
                    if data is None:
                        break
                    proc.stdin.write(data)
                    proc.stdin.flush()
        except (BrokenPipeError, ValueError, OSError):
            pass
        finally:
            try:
                proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass

    # sync: v1
    def _sync(self, conn: _Connection, stream: _Stream) -> None:
        rd = _InboundReader(stream)
        while True:
            head = rd.read(8)
            if head is None:
                return
            sid, length = head[:4], struct.unpack("<I", head[4:])[0]
            if sid == b"QUIT":
                return
            if length > 4096 and sid in (b"STAT", b"LIST", b"SEND", b"RECV"):
                self._fail(stream, "path too long")
                return
            arg = rd.read(length) if length else b""
            if arg is None:
                return
            text = arg.decode("utf-8", "surrogateescape")
            if sid == b"STAT":
                self._sync_stat(stream, text)
            elif sid == b"LIST":
                self._sync_list(stream, text)
            elif sid == b"SEND":
                if not self._sync_send(stream, rd, text):
                    return
            elif sid == b"RECV":
                self._sync_recv(conn, stream, text)
            else:
                self._fail(stream, f"unknown sync request {sid!r}")
                return

    @staticmethod
    def _fail(stream: _Stream, message: str) -> None:
        msg = message.encode("utf-8", "replace")
        stream.write(b"FAIL" + struct.pack("<I", len(msg)) + msg)

    def _sync_stat(self, stream: _Stream, path: str) -> None:
        local = self.map_path(path)
        try:
            st = os.lstat(local) if local is not None else None
        except OSError:
            st = None
        if st is None:  # like adbd: zeros for anything it cannot (or may not) lstat
            stream.write(b"STAT" + struct.pack("<3I", 0, 0, 0))
        else:
            stream.write(b"STAT" + struct.pack("<3I", st.st_mode & 0xFFFFFFFF, st.st_size & 0xFFFFFFFF,
                                               int(st.st_mtime) & 0xFFFFFFFF))

    def _sync_list(self, stream: _Stream, path: str) -> None:
        local = self.map_path(path)
        out = bytearray()
        if local is not None and local.is_dir():
            for name in [".", ".."] + sorted(os.listdir(local)):
                try:
                    st = os.lstat(local / name)
                except OSError:
                    continue
                raw = name.encode("utf-8", "surrogateescape")
                out += b"DENT" + struct.pack("<4I", st.st_mode & 0xFFFFFFFF, st.st_size & 0xFFFFFFFF,
                                             int(st.st_mtime) & 0xFFFFFFFF, len(raw)) + raw
        out += b"DONE" + struct.pack("<4I", 0, 0, 0, 0)
        stream.write(bytes(out))

    def _sync_send(self, stream: _Stream, rd: _InboundReader, spec: str) -> bool:
        path, sep, mode_text = spec.rpartition(",")
        if not sep or not mode_text.isdigit():
            path, mode = spec, 0o644
        else:
            mode = int(mode_text) & 0o777 or 0o644
        local = self.map_path(path)
        error = None if local is not None else f"remote path {path} is outside {DEVICE_TMP} and {DEVICE_SDCARD}: permission denied"
        fd = None
        written = 0
        with self._quota_lock:
            used = self.disk_used() if self.disk_quota_bytes is not None else 0
        if error is None:
            try:
                local.parent.mkdir(parents=True, exist_ok=True)
                if local.is_symlink() or local.exists():
                    if local.is_dir() and not local.is_symlink():
                        raise IsADirectoryError(errno.EISDIR, "Is a directory")
                    local.unlink()
                fd = os.open(local, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            except OSError as exc:
                error = f"couldn't create file: {exc.strerror or exc}"
        mtime = 0
        # Read DATA until DONE.  On an error keep draining and report it after DONE, as
        # adbd's "keep reading and throwing away ID_DATA packets" does.
        while True:
            head = rd.read(8)
            if head is None:
                error = error or "connection closed"
                break
            sid, size = head[:4], struct.unpack("<I", head[4:])[0]
            if sid == b"DONE":
                mtime = size
                break
            if sid != b"DATA" or size > SYNC_DATA_MAX:
                error = error or "invalid data message"
                if fd is not None:
                    os.close(fd)
                    fd = None
                    local.unlink(missing_ok=True)
                self._fail(stream, error)
                return False
            data = rd.read(size)
            if data is None:
                error = error or "connection closed"
                break
            if error is not None:
                continue
            if self.disk_quota_bytes is not None and used + written + len(data) > self.disk_quota_bytes:
                error = "write failed: No space left on device"
                os.close(fd)
                fd = None
                local.unlink(missing_ok=True)
                continue
            try:
                os.write(fd, data)
                written += len(data)
            except OSError as exc:
                error = f"write failed: {exc.strerror or exc}"
                os.close(fd)
                fd = None
                local.unlink(missing_ok=True)
        if fd is not None:
            os.close(fd)
            if error is None:
                os.chmod(local, mode)
                if mtime:
                    os.utime(local, (mtime, mtime))
            else:
                local.unlink(missing_ok=True)
        if error is not None:
            log.info("%s: push to %s failed: %s", self.serial, path, error)
            self._fail(stream, error)
        else:
            stream.write(b"OKAY" + struct.pack("<I", 0))
        return True

    def _sync_recv(self, conn: _Connection, stream: _Stream, path: str) -> None:
        local = self.map_path(path)
        if local is None:
            self._fail(stream, f"remote path {path} is outside {DEVICE_TMP} and {DEVICE_SDCARD}: permission denied")
            return
        try:
            f = open(local, "rb")
        except OSError as exc:
            self._fail(stream, f"open failed: {exc.strerror or exc}")
            return
        batch = max(SYNC_DATA_MAX + 8, conn.max_payload)
        with f:
            out = bytearray()
            while True:
                data = f.read(SYNC_DATA_MAX)
                if not data:
                    break
                out += b"DATA" + struct.pack("<I", len(data)) + data
                if len(out) >= batch:
                    stream.write(bytes(out))
                    out.clear()
            out += b"DONE" + struct.pack("<I", 0)
            stream.write(bytes(out))


# --- command line ------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m android_runner.peer",
                                 description="A device-side adb peer (adbd wire protocol over TCP) for tests.")
    ap.add_argument("--port", type=int, default=0, help="TCP port (0: pick a free one); keep out of 5555-5585")
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback)")
    ap.add_argument("--sandbox", required=True, type=Path, help="host folder that is the device's /data/local/tmp")
    ap.add_argument("--sdcard", type=Path, default=None, help="host folder that is the device's /sdcard")
    ap.add_argument("--authorized-keys", type=Path, default=None, help="adb public keys accepted (adb_keys format)")
    ap.add_argument("--accept-new-keys", action="store_true", help="accept (and remember) any offered public key")
    ap.add_argument("--no-auth", action="store_true", help="skip authentication, like ro.adb.secure=0")
    ap.add_argument("--model", default="edgeeas-peer", help="ro.product.model")
    ap.add_argument("--prop", action="append", default=[], metavar="KEY=VALUE", help="extra getprop property")
    ap.add_argument("--disk-quota-bytes", type=int, default=None, help="simulate a full disk beyond N bytes")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    props = {}
    for item in args.prop:
        key, sep, value = item.partition("=")
        if not sep or not key:
            ap.error(f"--prop {item!r}: expected KEY=VALUE")
        props[key] = value
    peer = AdbPeer(sandbox=args.sandbox, port=args.port, host=args.host, authorized_keys=args.authorized_keys,
                   accept_new_keys=args.accept_new_keys, auth_required=not args.no_auth, model=args.model,
                   props=props, disk_quota_bytes=args.disk_quota_bytes, sdcard=args.sdcard)
    try:
        peer.start()
    except (OSError, ValueError) as exc:
        print(f"adb peer: cannot start: {exc}", file=sys.stderr)
        return 1
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    print(f"adb peer listening on {peer.serial} (sandbox {peer.sandbox})", flush=True)
    done.wait()
    peer.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
