"""A connected device: shell with exit codes, push, pull, and small file helpers.

Built on adb-shell (no adb server needed).  adb-shell only speaks ``shell:`` v1,
which has no exit status and mixes stderr into stdout, so :meth:`Device.shell`
wraps every command::

    exec 3>/data/local/tmp/.edgeeas-stderr-NONCE 4<(same file); rm -f (the file)
    ( CMD
    ) 2>&3; printf '\\n__EDGEEAS_RC_NONCE=%d\\n' $?; cat <&4

(the stderr file is unlinked before CMD runs, so a dropped connection leaves no file behind)

and splits the stream at the marker (the nonce is random per call, so a command
cannot fake it by accident).  Every argument built here goes through
``shlex.quote``; every remote operation is logged (logger ``android_runner``)
as the ``adb -s SERIAL ...`` line that does the same by hand.
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
import secrets
import shlex
import socket
import stat
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .errors import (AdbAuthError, AdbCommandError, AdbConnectionError, AdbError, AdbTimeout,
                     translate)
from .keys import AdbKey, load_keys, quiet_auth

__all__ = ["ShellResult", "Device", "connect", "select_serial", "parse_serial"]

log = logging.getLogger("android_runner")

DEFAULT_TMP_DIR = "/data/local/tmp"


@dataclass(frozen=True)
class ShellResult:
    """What a remote command produced. ``command`` is the command as the caller gave it."""

    stdout: str
    stderr: str
    exit_code: int
    command: str = ""
    duration_s: float = 0.0
    serial: str = ""

    @property
    def ok(self) -> bool:
        """True when the remote command exited with status 0."""
        return self.exit_code == 0

    def stderr_tail(self, lines: int = 3) -> str:
        """The last ``lines`` non-blank lines of stderr, stripped and joined with `` | `` (for
        one-line error messages); empty when stderr was."""
        tail = [ln.strip() for ln in self.stderr.strip().splitlines() if ln.strip()][-lines:]
        return " | ".join(tail)

    def check(self) -> "ShellResult":
        """Return self if the exit code is 0, else raise :class:`AdbCommandError`."""
        if self.exit_code != 0:
            tail = self.stderr_tail()
            raise AdbCommandError(
                f"`{_short(self.command)}` exited with {self.exit_code}" + (f": {tail}" if tail else ""),
                serial=self.serial or None, command=self.command, exit_code=self.exit_code, stderr_tail=tail,
                advice=f"reproduce with: adb -s {self.serial} shell {shlex.quote(self.command)}")
        return self


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- serials and selection ---------------------------------------------------------------------

def parse_serial(serial: str) -> tuple[str, str, int]:
    """``("tcp", host, port)`` for ``host:port`` / ``[v6]:port`` / ``emulator-N``; ``("usb", serial, 0)`` otherwise.

    Raises:
        AdbError: a port out of range, a serial with a ':' that is not ``host:port`` (``host:``,
            ``:5555``, ``a:b``: "malformed host:port"), an empty serial or one with spaces."""
    m = re.fullmatch(r"emulator-(\d+)", serial)
    if m:  # adb's emulator serials name the console port; adbd listens on the next one
        return "tcp", "127.0.0.1", int(m.group(1)) + 1
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)", serial) or re.fullmatch(r"([^:\s]+):(\d+)", serial)
    if m:
        port = int(m.group(2))
        if not 0 < port < 65536:
            raise AdbError(f"bad serial {serial!r}: port {port} out of range", advice="expected host:port with 1 <= port <= 65535")
        return "tcp", m.group(1), port
    if ":" in serial:  # USB serials have no ':'; anything with one was meant as host:port
        raise AdbError(f"malformed host:port serial {serial!r}",
                       advice="expected HOST:PORT with a host and a port, e.g. 192.168.1.20:5555 or [fe80::1]:5555")
    if not serial or any(c.isspace() for c in serial):
        raise AdbError(f"bad serial {serial!r}", advice="expected a USB serial (see `adb devices`) or host:port")
    return "usb", serial, 0


def select_serial(serial: str | None = None, candidates: Sequence[str] = ()) -> str:
    """Pick a device like adb does.

    1. an explicit ``serial``; 2. ``$ANDROID_SERIAL``; 3. the only candidate;
    4. otherwise a one-line error listing the candidates.
    """
    if serial:
        return serial
    env = os.environ.get("ANDROID_SERIAL", "").strip()
    if env:
        return env
    unique = list(dict.fromkeys(c for c in candidates if c))
    if len(unique) == 1:
        return unique[0]
    if not unique:
        raise AdbConnectionError("no device selected and none known",
                                 advice="pass --adb-serial SERIAL, set ANDROID_SERIAL, or name one in targets.yaml")
    raise AdbConnectionError(f"more than one device: {', '.join(unique)}",
                             advice="pick one with --adb-serial SERIAL or ANDROID_SERIAL")


# --- transport -------------------------------------------------------------------------------

def _tcp_transport(host: str, port: int):
    """adb-shell's TCP transport, made to notice a closed socket and to write whole messages.

    Stock ``TcpTransport.bulk_read`` returns ``b''`` forever once the peer has closed
    (adb-shell then spins until its read timeout), and ``bulk_write`` ignores short
    writes on its non-blocking socket.
    """
    from adb_shell.transport.tcp_transport import TcpTransport

    class _Transport(TcpTransport):
        def connect(self, transport_timeout_s):
            super().connect(transport_timeout_s)
            # A phone that walks out of Wi-Fi range sends nothing: let TCP keepalive notice it
            # within ~15 s even while a long, silent benchmark command runs.
            sock = self._connection
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            # adb-shell writes a message header and its payload separately; with Nagle the payload
            # waits for the device's delayed ACK (~40 ms per command, measured on loopback).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for opt, value in (("TCP_KEEPIDLE", 5), ("TCP_KEEPINTVL", 3), ("TCP_KEEPCNT", 3)):
                if hasattr(socket, opt):
                    sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, opt), value)

        def bulk_read(self, numbytes, transport_timeout_s):
            if self._connection is None:
                raise ConnectionResetError("connection closed")
            try:
                data = super().bulk_read(numbytes, transport_timeout_s)
            except BlockingIOError:
                return b""
            if not data:
                raise ConnectionResetError("device closed the connection")
            return data

        def bulk_write(self, data, transport_timeout_s):
            view = memoryview(data)
            sent = 0
            while sent < len(view):
                if self._connection is None:
                    raise ConnectionResetError("connection closed")
                try:
                    sent += super().bulk_write(view[sent:], transport_timeout_s)
                except BlockingIOError:
                    continue
            return sent

    return _Transport(host, port)


class Device:
    """One device, connected lazily and reconnected after a failure.

    Thread-safe: calls on one Device are serialised; use one Device per device and
    threads across devices.
    """

    def __init__(self, serial: str, *, keys: Sequence[AdbKey] | None = None, connect_timeout_s: float = 10.0,
                 auth_timeout_s: float = 10.0, io_timeout_s: float = 30.0, tmp_dir: str = DEFAULT_TMP_DIR):
        self.serial = serial
        self.kind, self._host, self._port = parse_serial(serial)
        self._keys = list(keys) if keys is not None else None
        self.connect_timeout_s = connect_timeout_s
        self.auth_timeout_s = auth_timeout_s
        self.io_timeout_s = io_timeout_s
        self.tmp_dir = tmp_dir
        self._adb = None
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"Device({self.serial!r}, connected={self._adb is not None})"

    def __enter__(self) -> "Device":
        return self.connect()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- connection --------------------------------------------------------------------------
    def _open(self, timeout_s: float):
        """A freshly connected and authenticated adb-shell device (raises AdbError)."""
        from adb_shell import exceptions as ax

        if self._keys is None:
            self._keys = load_keys()
        prompted: list[bool] = []
        adb = None
        try:
            if self.kind == "tcp":
                from adb_shell.adb_device import AdbDevice

                adb = AdbDevice(_tcp_transport(self._host, self._port), default_transport_timeout_s=timeout_s)
            else:
                from adb_shell.adb_device import AdbDeviceUsb

                adb = AdbDeviceUsb(serial=self._host, default_transport_timeout_s=timeout_s)
            with quiet_auth():
                adb.connect(rsa_keys=self._keys, transport_timeout_s=timeout_s, auth_timeout_s=self.auth_timeout_s,
                            read_timeout_s=timeout_s, auth_callback=lambda _dev: prompted.append(True))
            return adb
        except Exception as exc:  # noqa: BLE001 - every failure is translated below
            if adb is not None:
                try:
                    adb.close()
                except Exception:  # noqa: BLE001
                    pass
            timeouts = (ax.TcpTimeoutException, ax.AdbTimeoutError, ax.UsbReadFailedError, TimeoutError)
            if prompted and isinstance(exc, timeouts):
                raise AdbAuthError("device unauthorized: it did not accept our RSA key",
                                   serial=self.serial,
                                   advice="accept the USB debugging prompt on the phone (tick 'Always allow'), then retry") from None
            raise translate(exc, serial=self.serial, action="connect") from None

    def connect(self) -> "Device":
        """Connect now (otherwise the first command connects). Returns self."""
        with self._lock:
            if self._adb is None:
                log.debug("connecting to %s", self.serial)
                self._adb = self._open(self.connect_timeout_s)
        return self

    def close(self) -> None:
        """Drop the connection (the next command reconnects).  Never raises: errors of the
        closing transport are ignored.  Safe to call twice."""
        with self._lock:
            adb, self._adb = self._adb, None
            if adb is not None:
                try:
                    adb.close()
                except Exception:  # noqa: BLE001
                    pass

    def reachable(self, timeout_s: float = 3.0) -> bool:
        """True if a fresh connection + handshake succeeds within ``timeout_s``."""
        try:
            self._open(timeout_s).close()
            return True
        except AdbError:
            return False

    def _run(self, action: str, fn, timeout_s: float):
        """Run ``fn(adb)`` on the live connection, translating and classifying failures."""
        from adb_shell import exceptions as ax

        with self._lock:
            self.connect()
            try:
                return fn(self._adb)
            except Exception as exc:  # noqa: BLE001
                err = translate(exc, serial=self.serial, action=action)
                if isinstance(err, (AdbTimeout, AdbConnectionError)) or isinstance(
                        exc, (ax.InvalidResponseError, ax.InvalidCommandError, ax.InvalidChecksumError)):
                    # The stream is in an unknown state: drop the connection (the device kills
                    # whatever still runs on it) and reconnect next time.
                    self.close()
                if isinstance(err, AdbTimeout):
                    # A silent command and a vanished device look the same from here: ask.
                    if self.reachable(min(3.0, max(1.0, timeout_s))):
                        err = AdbTimeout(f"{action}: did not finish within {timeout_s:g} s", serial=self.serial,
                                         advice="raise the timeout; the command was stopped by closing its connection")
                    else:
                        err = AdbConnectionError(f"{action}: device stopped answering and cannot be reached",
                                                 serial=self.serial,
                                                 advice="the device went offline: check the network / cable and reconnect")
                raise err from None

    # -- shell -------------------------------------------------------------------------------
    def shell(self, cmd: str | Sequence[str], timeout_s: float = 60.0, *, check: bool = False) -> ShellResult:
        """Run ``cmd`` in the device's shell; return stdout, stderr and the exit code.

        ``cmd`` is a shell command line, or an argv list that is quoted here.
        ``check=True`` raises :class:`AdbCommandError` on a non-zero exit code.
        """
        command = cmd if isinstance(cmd, str) else shlex.join(str(a) for a in cmd)
        nonce = secrets.token_hex(8)
        marker = f"__EDGEEAS_RC_{nonce}="
        # stderr goes to a temp file (shell v1 has one stream), opened twice (fd 3 to write, fd 4 to
        # read back) and unlinked at once, before the command runs: a dropped connection, which
        # kills the shell mid-command, leaves nothing on the device (the kernel frees an unlinked
        # file with its last descriptor).  If the temp dir is not writable the command still
        # runs, with stderr discarded.
        tmpq = shlex.quote(self.tmp_dir)
        errq = shlex.quote(f"{self.tmp_dir}/.edgeeas-stderr-{nonce}")
        wrapped = (f"if [ -d {tmpq} ] && [ -w {tmpq} ]; then exec 3>{errq} 4<{errq}; rm -f {errq}; "
                   f"else exec 3>/dev/null 4</dev/null; fi; "
                   f"( {command}\n) 2>&3 3>&- 4<&-; printf '\\n{marker}%d\\n' $?; exec 3>&-; cat <&4; exec 4<&-")
        log.info("adb -s %s shell %s", self.serial, shlex.quote(command))
        start = time.monotonic()
        raw = self._run(f"shell {shlex.quote(_short(command, 80))}",
                        lambda adb: adb.shell(wrapped, transport_timeout_s=timeout_s, read_timeout_s=timeout_s,
                                              timeout_s=timeout_s, decode=False),
                        timeout_s)
        duration = time.monotonic() - start
        text = raw.decode("utf-8", "replace")
        m = re.search(r"\r?\n" + re.escape(marker) + r"(\d+)\r?\n", text)
        if m is None:
            raise AdbCommandError(f"`{_short(command)}` ended without an exit status (the shell itself died?)",
                                  serial=self.serial, command=command, stderr_tail=_short(text[-300:]),
                                  advice=f"reproduce with: adb -s {self.serial} shell {shlex.quote(command)}")
        result = ShellResult(command=command, stdout=text[:m.start()], stderr=text[m.end():],
                             exit_code=int(m.group(1)), duration_s=duration, serial=self.serial)
        log.debug("%s: exit %d in %.3f s", self.serial, result.exit_code, duration)
        return result.check() if check else result

    # -- files -------------------------------------------------------------------------------
    def push(self, local: str | os.PathLike, remote: str, timeout_s: float | None = None) -> None:
        """Copy a local file (or a directory tree) to the exact remote path ``remote``."""
        local = Path(local)
        t = timeout_s or self.io_timeout_s
        if local.is_dir():
            self.mkdir(remote)
            for root, dirs, files in os.walk(local):
                rel = os.path.relpath(root, local)
                rdir = remote if rel == "." else posixpath.join(remote, *Path(rel).parts)
                for d in sorted(dirs):
                    self.mkdir(posixpath.join(rdir, d))
                for f in sorted(files):
                    self.push(Path(root) / f, posixpath.join(rdir, f), timeout_s)
            return
        if not local.is_file():
            raise AdbError(f"push: local file {local} does not exist", serial=self.serial)
        st = local.stat()
        mode = stat.S_IFREG | (st.st_mode & 0o777)
        log.info("adb -s %s push %s %s", self.serial, shlex.quote(str(local)), shlex.quote(remote))
        self._run(f"push {local} -> {remote}",
                  lambda adb: adb.push(str(local), remote, st_mode=mode, mtime=int(st.st_mtime),
                                       transport_timeout_s=t, read_timeout_s=t),
                  t)

    def pull(self, remote: str, local_dir: str | os.PathLike, timeout_s: float | None = None,
             *, name: str | None = None) -> Path:
        """Copy the remote file into ``local_dir`` (as its basename, or ``name``); return the local path.

        The local file can only land inside ``local_dir``: names with ``..``, separators
        or absolute parts are refused, and the file appears atomically (temp + rename).
        """
        t = timeout_s or self.io_timeout_s
        if ".." in remote.split("/") or "\0" in remote:
            raise AdbError(f"pull: refusing remote path {remote!r} with '..'", serial=self.serial,
                           advice="give a normalised absolute path such as /data/local/tmp/x")
        target = _local_target(Path(local_dir), name if name is not None else posixpath.basename(remote.rstrip("/")))
        log.info("adb -s %s pull %s %s", self.serial, shlex.quote(remote), shlex.quote(str(target)))
        fd, tmp = tempfile.mkstemp(prefix=".pull-", dir=target.parent)
        os.close(fd)
        try:
            self._run(f"pull {remote}", lambda adb: adb.pull(remote, tmp, transport_timeout_s=t, read_timeout_s=t), t)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return target

    def exists(self, remote: str, timeout_s: float = 30.0) -> bool:
        """True if ``remote`` exists (``test -e``)."""
        res = self.shell(["test", "-e", remote], timeout_s)
        if res.exit_code not in (0, 1):
            res.check()  # raises AdbCommandError with the stderr tail
        return res.exit_code == 0

    def mkdir(self, remote: str, timeout_s: float = 30.0) -> None:
        """``mkdir -p``."""
        self.shell(["mkdir", "-p", remote], timeout_s, check=True)

    def remove(self, remote: str, *, recursive: bool = False, timeout_s: float = 30.0) -> None:
        """``rm -f`` (``-rf`` with ``recursive``); a missing path is not an error."""
        self.shell(["rm", "-rf" if recursive else "-f", "--", remote], timeout_s, check=True)

    def getprop(self, key: str | None = None, timeout_s: float = 30.0) -> str | dict[str, str]:
        """One property's value (``""`` if unset), or all of them as a dict."""
        if key is not None:
            return self.shell(["getprop", key], timeout_s, check=True).stdout.strip()
        return parse_getprop(self.shell("getprop", timeout_s, check=True).stdout)


def parse_getprop(text: str) -> dict[str, str]:
    """``[key]: [value]`` lines → dict (multi-line values are kept joined)."""
    props: dict[str, str] = {}
    for m in re.finditer(r"^\[([^\]]+)\]: \[(.*?)\]$", text, re.M | re.S):
        props[m.group(1)] = m.group(2)
    return props


def _local_target(local_dir: Path, name: str) -> Path:
    bad = (not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name
           or os.path.isabs(name) or name != os.path.normpath(name))
    if bad:
        raise AdbError(f"pull: refusing local file name {name!r}",
                       advice="the pulled file must land directly inside the destination folder")
    local_dir.mkdir(parents=True, exist_ok=True)
    base = local_dir.resolve()
    target = base / name
    if target.parent != base:
        raise AdbError(f"pull: {target} would land outside {base}")
    return target


def connect(serial: str | None = None, *, candidates: Sequence[str] = (), keys: Sequence[AdbKey] | None = None,
            connect_timeout_s: float = 10.0, auth_timeout_s: float = 10.0, io_timeout_s: float = 30.0) -> Device:
    """Select a device (see :func:`select_serial`) and connect to it."""
    chosen = select_serial(serial, candidates)
    return Device(chosen, keys=keys, connect_timeout_s=connect_timeout_s, auth_timeout_s=auth_timeout_s,
                  io_timeout_s=io_timeout_s).connect()
