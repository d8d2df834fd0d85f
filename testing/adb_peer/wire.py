"""adbd's wire protocol, device side: packets, authentication, streams, one host connection.

A packet is a 24-byte little-endian header ``cmd, arg0, arg1, length, checksum, magic``
(``magic = cmd ^ 0xFFFFFFFF``) and ``length`` bytes of payload (at most :data:`MAX_PAYLOAD`).
A :class:`Connection` answers ``CNXN`` and ``AUTH`` (TOKEN -> SIGNATURE checked with RSA against
the peer's keys; RSAPUBLICKEY accepted only with ``accept_new_keys``), and turns every ``OPEN``
into a :class:`Stream` served in its own thread by what ``peer.service_for(name)`` returns
(:mod:`.services`).  Every ``WRTE`` is acknowledged by an ``OKAY``, both ways; checksums are
sent when the host's version needs them and never required.
"""

from __future__ import annotations

import base64
import logging
import os
import queue
import signal
import socket
import struct
import subprocess
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .peer import AdbPeer

log = logging.getLogger("testing.adb_peer")

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

class StreamClosed(Exception):
    """The stream or its connection ended: the service stops quietly."""


class Stream:
    """One adb stream: device id ``local_id`` ↔ host id ``remote_id``."""

    def __init__(self, conn: "Connection", local_id: int, remote_id: int):
        self.conn = conn
        self.local_id = local_id
        self.remote_id = remote_id
        self.inbound: queue.Queue[bytes | None] = queue.Queue()
        self._cv = threading.Condition()
        self._can_send = True
        self.closed = False
        self.on_close = None  # called once when the stream ends (kill the process, ...)

    def okay(self) -> None:
        """The host acknowledged our last WRTE (host → device OKAY): the next one may go."""
        with self._cv:
            self._can_send = True
            self._cv.notify_all()

    def write(self, data: bytes) -> None:
        """Send ``data`` to the host in WRTE packets of at most the host's payload size, each
        waiting for the host's OKAY.

        Raises:
            StreamClosed: the stream or the connection closed meanwhile.
        """
        view = memoryview(data)
        step = self.conn.max_payload
        for off in range(0, len(view), step):
            with self._cv:
                while not self._can_send and not self.closed:
                    self._cv.wait(0.5)
                if self.closed:
                    raise StreamClosed()
                self._can_send = False
            self.conn.send(A_WRTE, self.local_id, self.remote_id, bytes(view[off:off + step]))

    def close(self) -> None:
        """Device side closes: send CLSE once."""
        if self._mark_closed():
            self.conn.send(A_CLSE, self.local_id, self.remote_id)

    def host_closed(self) -> None:
        """The connection went away: mark the stream closed without sending CLSE."""
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


class InboundReader:
    """Byte-exact reads over a stream's WRTE payloads."""

    def __init__(self, stream: Stream):
        self.stream = stream
        self.buf = bytearray()
        self.eof = False

    def read(self, n: int) -> bytes | None:
        """Exactly ``n`` bytes, waiting for more WRTE payloads; None when the stream ends first."""
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

class Connection:
    """One host connected to the peer: reads packets in :meth:`serve`, sends them with :meth:`send`."""

    def __init__(self, peer: "AdbPeer", sock: socket.socket, addr):
        self.peer = peer
        self.sock = sock
        self.addr = addr
        self.send_lock = threading.Lock()
        self.streams: dict[int, Stream] = {}
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
        """Send one packet (checksummed for hosts older than :data:`VERSION_SKIP_CHECKSUM`).

        Raises:
            StreamClosed: the connection is dead.
        """
        check = 0 if self.host_version >= VERSION_SKIP_CHECKSUM else _checksum(data)
        header = struct.pack("<6I", cmd, arg0, arg1, len(data), check, cmd ^ 0xFFFFFFFF)
        with self.send_lock:
            if self.dead:
                raise StreamClosed()
            try:
                self.sock.sendall(header + data)
            except OSError:
                self.dead = True
                raise StreamClosed() from None

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
        """Drop stream ``local_id`` (it closed)."""
        with self.streams_lock:
            self.streams.pop(local_id, None)

    def serve(self) -> None:
        """Read and handle packets until the host leaves or sends garbage, then :meth:`shutdown`."""
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
        except StreamClosed:
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
            kill_group(proc)
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
        self.peer.drop_connection(self)

    # protocol
    def handle(self, cmd: int, arg0: int, arg1: int, data: bytes) -> None:
        """One packet from the host: CNXN, AUTH, then (once online) OPEN, WRTE, OKAY, CLSE."""
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
            stream = Stream(self, local_id, host_id)
            self.streams[local_id] = stream
        self.send(A_OKAY, local_id, host_id)
        threading.Thread(target=self._run_service, args=(runner, stream), daemon=True,
                         name=f"adbpeer-{self.peer.port}-{local_id}").start()

    def _run_service(self, runner, stream: Stream) -> None:
        try:
            runner(self, stream)
        except StreamClosed:
            pass
        except Exception:  # noqa: BLE001 - a service bug must not take the device down
            log.exception("service failed")
        finally:
            try:
                stream.close()
            except StreamClosed:
                pass


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process group of a shell command that is still running (it runs in its own session)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
