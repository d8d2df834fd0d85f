"""Pure functions of android_runner: serial parsing, device selection, targets.yaml, fingerprint parsing."""

from __future__ import annotations

import pytest

from android_runner import AdbConnectionError, AdbError, load_targets, parse_serial, select_serial
from android_runner.errors import translate
from android_runner.fingerprint import count_cpus, max_temp_c


def test_parse_serial():
    assert parse_serial("192.168.1.20:5555") == ("tcp", "192.168.1.20", 5555)
    assert parse_serial("[::1]:5801") == ("tcp", "::1", 5801)
    assert parse_serial("emulator-5554") == ("tcp", "127.0.0.1", 5555)
    assert parse_serial("R58M12ABCDE") == ("usb", "R58M12ABCDE", 0)
    for bad in ("", "host:99999", "a b"):
        with pytest.raises(AdbError):
            parse_serial(bad)
    # a ':' means host:port was meant: a missing part is "malformed host:port", never "no USB device"
    for bad in ("host:", ":5555", "a:b", "h:5555:1", "::1:5555", "[::1]:"):
        with pytest.raises(AdbError, match="malformed host:port serial"):
            parse_serial(bad)


@pytest.mark.parametrize("serial", ["host:", ":5555"])
def test_devices_names_a_malformed_host_port(serial):
    from click.testing import CliRunner

    from edgeeas.cli import main

    r = CliRunner().invoke(main, ["devices", serial])
    assert "malformed host:port" in r.output and "no USB device" not in r.output, r.output


def test_select_serial_like_adb(monkeypatch):
    monkeypatch.delenv("ANDROID_SERIAL", raising=False)
    assert select_serial("explicit", ["a", "b"]) == "explicit"
    assert select_serial(None, ["only"]) == "only"
    assert select_serial(None, ["same", "same"]) == "same"
    with pytest.raises(AdbConnectionError) as ei:
        select_serial(None, ["a:1", "b:2"])
    assert "a:1, b:2" in str(ei.value) and "ANDROID_SERIAL" in str(ei.value) and "\n" not in str(ei.value)
    with pytest.raises(AdbConnectionError, match="none known"):
        select_serial(None, [])
    monkeypatch.setenv("ANDROID_SERIAL", "from-env")
    assert select_serial(None, ["a", "b"]) == "from-env"
    assert select_serial("explicit", ["a"]) == "explicit"


def test_load_targets(tmp_path):
    f = tmp_path / "targets.yaml"
    f.write_text("pixel:\n  serial: 192.168.1.20:5555\nboard:\n  model: Pixel 7\n  candidates: [10.0.0.5:5555]\n")
    t = load_targets(f)
    assert t["pixel"].serial == "192.168.1.20:5555" and t["pixel"].model is None
    assert t["board"].model == "Pixel 7" and t["board"].candidates == ("10.0.0.5:5555",)
    f.write_text("targets:\n  p: {serial: abc}\n")
    assert load_targets(f)["p"].serial == "abc"
    for text in ("- a\n- b\n", "p: 3\n", "p: {serial: a, model: b}\n", "p: {}\n", "p: {serial: a, colour: red}\n",
                 "p: [unclosed\n", "!!python/object:os.system ls\n"):
        f.write_text(text)
        with pytest.raises(ValueError) as ei:
            load_targets(f)
        msg = str(ei.value)
        assert str(f) in msg and "expected a mapping" in msg and "\n" not in msg
    with pytest.raises(ValueError, match="cannot read"):
        load_targets(tmp_path / "missing.yaml")


def test_fingerprint_parsers():
    assert count_cpus("0-7\n") == 8 and count_cpus("0-3,6") == 5 and count_cpus("0") == 1
    assert count_cpus("garbage") is None
    assert max_temp_c("41000\n38500\n-273000\n") == 41.0
    assert max_temp_c("45\n") == 45.0 and max_temp_c("") is None


def test_translate_maps_adb_shell_errors():
    from adb_shell import exceptions as ax

    cases = [
        (ConnectionRefusedError(), "AdbConnectionError"),
        (BrokenPipeError(), "AdbConnectionError"),
        (ax.TcpTimeoutException("x"), "AdbTimeout"),
        (ax.DeviceAuthError("no keys"), "AdbAuthError"),
        (ax.PushFailedError(bytearray(b"write failed: No space left on device")), "DeviceFull"),
        (ax.AdbCommandFailureException("Command failed: open failed: No such file"), "AdbCommandError"),
        (type("USBErrorBusy", (Exception,), {})(), "AdbUsbBusy"),
    ]
    for exc, expected in cases:
        err = translate(exc, serial="s", action="act")
        assert type(err).__name__ == expected and "\n" not in str(err)
    busy = translate(type("USBErrorBusy", (Exception,), {})(), serial="s", action="connect")
    assert "adb kill-server" in str(busy)
