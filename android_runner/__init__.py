"""The adb layer of edgeeas: talk to phones (USB or ``host:port``) without an adb server.

    from android_runner import connect
    dev = connect("192.168.1.20:5555")            # or connect() → $ANDROID_SERIAL / the only candidate
    dev.mkdir("/data/local/tmp/edgeeas")
    dev.push("runner.py", "/data/local/tmp/edgeeas/runner.py")
    res = dev.shell(["python3", "/data/local/tmp/edgeeas/runner.py", "--graph", "/data/local/tmp/edgeeas/m.tflite"],
                    timeout_s=300)
    res.stdout, res.exit_code

Errors are one tree (:class:`AdbError`); every remote command is logged (logger
``android_runner``) as the ``adb -s SERIAL ...`` line that reproduces it.
The device-side adb peer the tests run against lives outside the product, in ``testing.adb_peer``.
"""

from .device import Device, ShellResult, connect, parse_serial, select_serial
from .errors import (AdbAuthError, AdbCommandError, AdbConnectionError, AdbError, AdbTimeout, AdbUsbBusy,
                     DeviceFull)
from .fingerprint import fingerprint
from .keys import AdbKey, default_key_path, ensure_user_key, load_keys
from .targets import DeviceInfo, TargetSpec, discover, load_targets, resolve_target

__all__ = [
    "Device", "ShellResult", "connect", "select_serial", "parse_serial",
    "AdbError", "AdbConnectionError", "AdbUsbBusy", "AdbTimeout", "AdbAuthError", "DeviceFull", "AdbCommandError",
    "fingerprint",
    "AdbKey", "load_keys", "ensure_user_key", "default_key_path",
    "TargetSpec", "DeviceInfo", "load_targets", "discover", "resolve_target",
]
