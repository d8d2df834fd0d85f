"""Library noise on stderr is held back by default and shown with ``-v`` (issue 13, item 12):
a fresh process that imports the converters and exports a model prints nothing on stderr."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import sys, torch
    from edgeeas.export import export_tflite_int8
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                            torch.nn.Flatten(), torch.nn.Linear(4, 5)).eval()
    export_tflite_int8(m, torch.randn(8, 3, 32, 32), sys.argv[1])
    print("exported", flush=True)
""")


def _export(tmp_path, **env):
    e = {**os.environ, "OMP_NUM_THREADS": "1", **env}
    e.pop("EDGEEAS_VERBOSE", None) if not env else None
    return subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "m.tflite")], capture_output=True,
                          text=True, cwd=ROOT, env=e, timeout=600)


def test_an_export_prints_nothing_on_stderr_unless_verbose(tmp_path):
    r = _export(tmp_path)
    assert r.returncode == 0 and "exported" in r.stdout, r.stderr
    assert r.stderr.strip() == "", r.stderr


def test_quiet_stderr_shows_what_it_held_when_the_block_fails(capfd):
    import pytest

    from edgeeas.export import quiet_stderr

    with quiet_stderr(False):
        os.write(2, b"W1130 absl noise\n")
    assert capfd.readouterr().err == ""
    with pytest.raises(RuntimeError):
        with quiet_stderr(False):
            os.write(2, b"the real cause\n")
            raise RuntimeError("conversion failed")
    assert "the real cause" in capfd.readouterr().err
    with quiet_stderr(True):
        os.write(2, b"shown with -v\n")
    assert "shown with -v" in capfd.readouterr().err
