"""The device's services: ``shell:``/``exec:`` (v1 and v2) and ``sync:`` v1, over a :class:`~.wire.Stream`.

* ``shell:CMD`` (a raw stream, stderr merged into stdout), ``shell,v2,...:CMD`` (packets of
  ``id, length, data``: stdout id 1, stderr id 2, exit id 3; stdin id 0, close-stdin id 4) and
  ``exec:CMD`` run ``/bin/sh -c CMD`` in the peer's sandbox, with its device paths rewritten
  (:meth:`AdbPeer.rewrite_command`) and its tools on PATH; closing the stream kills the
  command's process group.
* ``sync:`` v1: STAT, LIST, SEND, RECV (DATA, DONE, OKAY, FAIL), QUIT.  Paths outside
  :data:`DEVICE_TMP` and :data:`DEVICE_SDCARD` get ``FAIL`` (or zeros for STAT, as adbd answers
  what it may not lstat); a SEND over the peer's disk quota fails with "No space left on device".

Anything else gets ``CLSE`` (:func:`service_for` returns None).
"""

from __future__ import annotations

import errno
import logging
import os
import selectors
import struct
import subprocess
import threading
from typing import TYPE_CHECKING, Callable

from .wire import SYNC_DATA_MAX, Connection, InboundReader, Stream, kill_group

if TYPE_CHECKING:
    from .peer import AdbPeer

log = logging.getLogger("testing.adb_peer")

DEVICE_TMP = "/data/local/tmp"
DEVICE_SDCARD = "/sdcard"


def service_for(peer: AdbPeer, service: str) -> Callable[[Connection, Stream], None] | None:
    """The runner of service name ``service`` (as in an OPEN packet), or None to refuse it."""
    if service.startswith("shell") and ":" in service:
        head, command = service.split(":", 1)
        opts = head.split(",")[1:] if head.startswith("shell,") else []
        if head != "shell" and not head.startswith("shell,"):
            return None
        v2 = "v2" in opts
        return lambda conn, stream: shell(peer, conn, stream, command, v2)
    if service.startswith("exec:"):
        return lambda conn, stream: shell(peer, conn, stream, service[5:], False)
    if service == "sync:":
        return lambda conn, stream: sync(peer, conn, stream)
    return None


def shell(peer: AdbPeer, conn: Connection, stream: Stream, command: str, v2: bool) -> None:
    """Run ``command`` (an interactive ``/bin/sh`` when empty) and stream its output; v2 adds the exit code."""
    argv = peer.shell_argv(command)
    log.info("%s: shell%s %r", peer.serial, " (v2)" if v2 else "", command[:200])
    proc = subprocess.Popen(argv, cwd=peer.sandbox, env=peer.shell_env(), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE if v2 else subprocess.STDOUT,
                            start_new_session=True)
    conn.procs.add(proc)
    stream.on_close = lambda: kill_group(proc)
    if conn.dead or stream.closed:
        kill_group(proc)
    threading.Thread(target=_shell_stdin, args=(stream, proc, v2), daemon=True).start()
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
        kill_group(proc)
        proc.wait()
        for f in (proc.stdout, proc.stderr):
            if f is not None:
                f.close()
        conn.procs.discard(proc)


def _shell_stdin(stream: Stream, proc: subprocess.Popen, v2: bool) -> None:
    reader = InboundReader(stream)
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


def sync(peer: AdbPeer, conn: Connection, stream: Stream) -> None:
    """Serve sync v1 requests until QUIT, the end of the stream, or a protocol error (``FAIL``)."""
    rd = InboundReader(stream)
    while True:
        head = rd.read(8)
        if head is None:
            return
        sid, length = head[:4], struct.unpack("<I", head[4:])[0]
        if sid == b"QUIT":
            return
        if length > 4096 and sid in (b"STAT", b"LIST", b"SEND", b"RECV"):
            _fail(stream, "path too long")
            return
        arg = rd.read(length) if length else b""
        if arg is None:
            return
        text = arg.decode("utf-8", "surrogateescape")
        if sid == b"STAT":
            _sync_stat(peer, stream, text)
        elif sid == b"LIST":
            _sync_list(peer, stream, text)
        elif sid == b"SEND":
            if not _sync_send(peer, stream, rd, text):
                return
        elif sid == b"RECV":
            _sync_recv(peer, conn, stream, text)
        else:
            _fail(stream, f"unknown sync request {sid!r}")
            return


def _fail(stream: Stream, message: str) -> None:
    msg = message.encode("utf-8", "replace")
    stream.write(b"FAIL" + struct.pack("<I", len(msg)) + msg)


def _sync_stat(peer: AdbPeer, stream: Stream, path: str) -> None:
    local = peer.map_path(path)
    try:
        st = os.lstat(local) if local is not None else None
    except OSError:
        st = None
    if st is None:  # like adbd: zeros for anything it cannot (or may not) lstat
        stream.write(b"STAT" + struct.pack("<3I", 0, 0, 0))
    else:
        stream.write(b"STAT" + struct.pack("<3I", st.st_mode & 0xFFFFFFFF, st.st_size & 0xFFFFFFFF,
                                           int(st.st_mtime) & 0xFFFFFFFF))


def _sync_list(peer: AdbPeer, stream: Stream, path: str) -> None:
    local = peer.map_path(path)
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


def _sync_send(peer: AdbPeer, stream: Stream, rd: InboundReader, spec: str) -> bool:
    path, sep, mode_text = spec.rpartition(",")
    if not sep or not mode_text.isdigit():
        path, mode = spec, 0o644
    else:
        mode = int(mode_text) & 0o777 or 0o644
    local = peer.map_path(path)
    error = None if local is not None else f"{path}: permission denied (outside {DEVICE_TMP} and {DEVICE_SDCARD})"
    fd = None
    written = 0
    with peer.quota_lock:
        used = peer.disk_used() if peer.disk_quota_bytes is not None else 0
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
            _fail(stream, error)
            return False
        data = rd.read(size)
        if data is None:
            error = error or "connection closed"
            break
        if error is not None:
            continue
        if peer.disk_quota_bytes is not None and used + written + len(data) > peer.disk_quota_bytes:
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
        log.info("%s: push to %s failed: %s", peer.serial, path, error)
        _fail(stream, error)
    else:
        stream.write(b"OKAY" + struct.pack("<I", 0))
    return True


def _sync_recv(peer: AdbPeer, conn: Connection, stream: Stream, path: str) -> None:
    local = peer.map_path(path)
    if local is None:
        _fail(stream, f"{path}: permission denied (outside {DEVICE_TMP} and {DEVICE_SDCARD})")
        return
    try:
        f = open(local, "rb")
    except OSError as exc:
        _fail(stream, f"open failed: {exc.strerror or exc}")
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
