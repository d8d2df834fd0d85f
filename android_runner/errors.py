"""One error tree for everything that can go wrong talking to a device.

adb-shell raises flat, unrelated exceptions (and plain ``OSError``\\ s from the
socket underneath).  :func:`translate` maps them onto this tree so that callers
catch ``AdbError`` (or one precise subclass) and print ``str(err)``: one line,
saying what happened and what to do about it.

    AdbError
    ├── AdbConnectionError   refused, vanished, broken pipe, USB gone
    │   └── AdbUsbBusy       another adb server holds the USB interface
    ├── AdbTimeout           the device is there but the command took too long
    ├── AdbAuthError         key not (yet) accepted on the device
    ├── DeviceFull           push failed: no space left on the device
    └── AdbCommandError      a remote command exited non-zero / a sync request failed
"""

from __future__ import annotations

import socket

__all__ = [
    "AdbError",
    "AdbConnectionError",
    "AdbUsbBusy",
    "AdbTimeout",
    "AdbAuthError",
    "DeviceFull",
    "AdbCommandError",
    "translate",
]


def _one_line(text: str) -> str:
    return " | ".join(part.strip() for part in str(text).splitlines() if part.strip())


class AdbError(Exception):
    """Base class: ``str(err)`` is one line, ending with advice when there is any."""

    def __init__(self, message: str, *, serial: str | None = None, advice: str | None = None):
        self.serial = serial
        self.advice = advice
        self.detail = _one_line(message)
        text = f"{serial}: {self.detail}" if serial else self.detail
        if advice:
            text = f"{text} ({advice})"
        super().__init__(text)


class AdbConnectionError(AdbError):
    """The device refused the connection, vanished, or the link broke."""


class AdbUsbBusy(AdbConnectionError):
    """Another process (usually an adb server) has claimed the device's USB interface."""


class AdbTimeout(AdbError):
    """The device is reachable but did not answer or finish in time."""


class AdbAuthError(AdbError):
    """The device does not (yet) accept our RSA key."""


class DeviceFull(AdbError):
    """A push failed because the device ran out of space."""


class AdbCommandError(AdbError):
    """A remote command exited non-zero, or a file-sync request was refused.

    ``command``, ``exit_code`` and ``stderr_tail`` keep the details for callers.
    """

    def __init__(self, message: str, *, serial: str | None = None, advice: str | None = None,
                 command: str | None = None, exit_code: int | None = None, stderr_tail: str = ""):
        self.command = command
        self.exit_code = exit_code
        self.stderr_tail = stderr_tail
        super().__init__(message, serial=serial, advice=advice)


_NO_SPACE = ("no space left on device", "enospc", "disk full")


def _is_no_space(text: str) -> bool:
    low = text.lower()
    return any(marker in low for marker in _NO_SPACE)


def translate(exc: BaseException, *, serial: str, action: str) -> AdbError:
    """Map an exception raised by adb-shell, libusb or the socket layer to our tree.

    ``action`` names what we were doing ("connect", "shell 'ls'", "push x -> y"),
    so the message says where it failed.  Never includes key material: adb-shell
    exceptions only carry packet names, timeouts and device messages.
    """
    if isinstance(exc, AdbError):
        return exc
    # Imported here so that `import android_runner` stays cheap and never touches libusb.
    from adb_shell import exceptions as ax

    name = type(exc).__name__
    text = _one_line(str(exc)) or name

    if isinstance(exc, ax.DeviceAuthError):
        return AdbAuthError(f"{action}: device requires authentication and no usable key was offered",
                            serial=serial, advice="check ~/.android/adbkey or ADB_VENDOR_KEYS")
    if isinstance(exc, ax.PushFailedError):
        detail = exc.args[0] if exc.args else b""
        if isinstance(detail, (bytes, bytearray)):
            detail = bytes(detail).decode("utf-8", "replace")
        detail = _one_line(detail) or "push refused"
        if _is_no_space(detail):
            return DeviceFull(f"{action}: {detail}", serial=serial,
                              advice="free space on the device, e.g. remove old files under /data/local/tmp")
        return AdbCommandError(f"{action}: {detail}", serial=serial, stderr_tail=detail)
    if isinstance(exc, ax.AdbCommandFailureException):
        if _is_no_space(text):
            return DeviceFull(f"{action}: {text}", serial=serial,
                              advice="free space on the device, e.g. remove old files under /data/local/tmp")
        return AdbCommandError(f"{action}: {text}", serial=serial, stderr_tail=text)
    if isinstance(exc, (ax.TcpTimeoutException, ax.AdbTimeoutError, socket.timeout, TimeoutError)):
        return AdbTimeout(f"{action}: no answer in time ({text})", serial=serial,
                          advice="raise the timeout, or check that the device is awake and reachable")
    if isinstance(exc, ConnectionRefusedError):
        return AdbConnectionError(f"{action}: connection refused", serial=serial,
                                  advice="enable wireless debugging / run `adb tcpip 5555` on the device, and check host:port")
    if isinstance(exc, (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, EOFError)):
        return AdbConnectionError(f"{action}: device closed the connection ({name})", serial=serial,
                                  advice="the device vanished: check the cable / network and reconnect")
    if isinstance(exc, ax.UsbDeviceNotFoundError):
        return AdbConnectionError(f"{action}: no USB device with this serial", serial=serial,
                                  advice="check the cable, enable USB debugging, see `adb devices`")
    if isinstance(exc, ax.InvalidTransportError):
        return AdbConnectionError(f"{action}: USB support unavailable ({text})", serial=serial,
                                  advice="install adb-shell[usb] and the system library libusb-1.0-0")
    if isinstance(exc, (ax.UsbReadFailedError, ax.UsbWriteFailedError)):
        usb_error = getattr(exc, "usb_error", None)
        if usb_error is not None and type(usb_error).__name__ == "USBErrorTimeout":
            return AdbTimeout(f"{action}: USB transfer timed out", serial=serial,
                              advice="raise the timeout, or replug the device")
        return AdbConnectionError(f"{action}: USB transfer failed ({text})", serial=serial,
                                  advice="the device vanished: check the cable and reconnect")
    usb_busy = name == "USBErrorBusy"
    if usb_busy:
        return AdbUsbBusy(f"{action}: the USB interface is busy", serial=serial,
                          advice="another adb server holds the device: run `adb kill-server`")
    if name == "USBErrorAccess":
        return AdbConnectionError(f"{action}: no permission to open the USB device", serial=serial,
                                  advice="add a udev rule for the phone (see developer.android.com/studio/run/device) or run as root")
    if name in ("USBErrorNoDevice", "USBErrorNotFound", "USBErrorIO", "USBErrorPipe"):
        return AdbConnectionError(f"{action}: USB device gone ({name})", serial=serial,
                                  advice="the device vanished: check the cable and reconnect")
    if isinstance(exc, (socket.gaierror,)):
        return AdbConnectionError(f"{action}: cannot resolve host ({text})", serial=serial,
                                  advice="check the host part of the serial (host:port)")
    if isinstance(exc, OSError):
        return AdbConnectionError(f"{action}: {name}: {text}", serial=serial,
                                  advice="check that the device is reachable")
    if isinstance(exc, (ax.InvalidResponseError, ax.InvalidCommandError, ax.InvalidChecksumError)):
        return AdbConnectionError(f"{action}: protocol error ({name}: {text})", serial=serial,
                                  advice="reconnect; if it persists, restart adbd on the device (toggle USB debugging)")
    if isinstance(exc, ax.AdbConnectionError):
        return AdbConnectionError(f"{action}: not connected ({text})", serial=serial,
                                  advice="reconnect to the device")
    if isinstance(exc, ax.DevicePathInvalidError):
        return AdbCommandError(f"{action}: {text}", serial=serial)
    return AdbError(f"{action}: {name}: {text}", serial=serial)
