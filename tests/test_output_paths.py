"""Output paths are checked before any work, and a measurement is never lost to an output
error (issue 13, item 6): every command that writes somewhere the user names."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from edgeeas.cli import main
from edgeeas.errors import EdgeeasUsageError
from edgeeas.utils import check_output_dir, check_output_file


def test_check_output_paths(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(EdgeeasUsageError, match="it is a file"):
        check_output_dir(f)
    with pytest.raises(EdgeeasUsageError, match="file is a file, not a folder"):
        check_output_dir(f / "a" / "b")
    with pytest.raises(EdgeeasUsageError, match="file is a file, not a folder"):
        check_output_file(f / "bl.json")
    with pytest.raises(EdgeeasUsageError, match="it is a folder"):
        check_output_file(tmp_path)
    assert check_output_dir(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert check_output_file(tmp_path / "new" / "bl.json") == tmp_path / "new" / "bl.json"


def _fails_fast(args, monkeypatch, tmp_path, forbidden):
    """``edgeeas ARGS`` exits 2 with one line naming the path, and never reaches ``forbidden``."""
    import importlib

    mod, attr = forbidden.rsplit(".", 1)

    def boom(*a, **k):
        raise AssertionError(f"{forbidden} ran before the output path was checked")

    monkeypatch.setattr(importlib.import_module(mod), attr, boom)
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1 and "cannot write" in lines[0] and "Traceback" not in r.output, r.output
    assert "COMMAND [ARGS]" not in r.output  # not the group's usage line
    return lines[0]


def test_specialize_out_is_a_file(tmp_path, monkeypatch):
    (tmp_path / "FILE").write_text("x")
    line = _fails_fast(["specialize", "--budget", "8M", "--superclass", "fish", "--out", "FILE"], monkeypatch,
                       tmp_path, "edgeeas.specialize.Specializer")
    assert "FILE: it is a file" in line


def test_regress_baseline_under_a_file_fails_before_measuring(tmp_path, monkeypatch):
    (tmp_path / "FILE").write_text("x")
    (tmp_path / "farm.yaml").write_text("devices: [host]\nmodels: [m.tflite]\n")
    line = _fails_fast(["regress", "--farm", "farm.yaml", "--update-baseline", "--baseline", "FILE/bl.json"],
                       monkeypatch, tmp_path, "edgeeas.regress.run_regress")
    assert "FILE is a file, not a folder" in line


def test_regress_out_is_a_file(tmp_path, monkeypatch):
    (tmp_path / "FILE").write_text("x")
    (tmp_path / "farm.yaml").write_text("devices: [host]\nmodels: [m.tflite]\n")
    _fails_fast(["regress", "--farm", "farm.yaml", "--out", "FILE"], monkeypatch, tmp_path,
                "edgeeas.regress.run_regress")


def test_report_dest_is_a_file(tmp_path, monkeypatch):
    (tmp_path / "FILE").write_text("x")
    _fails_fast(["report", "--dest", "FILE/sub"], monkeypatch, tmp_path, "edgeeas.report.build_report")


def test_bench_target_folder_is_a_file(tmp_path, monkeypatch):
    (tmp_path / "targets").mkdir()
    (tmp_path / "targets" / "mine").write_text("x")
    monkeypatch.setenv("EDGEEAS_TARGETS", str(tmp_path / "targets"))
    _fails_fast(["bench", "--name", "mine", "--subnets", "0"], monkeypatch, tmp_path, "edgeeas.latency.bench_targets")


def test_regress_keeps_the_measurements_when_the_baseline_cannot_be_written(tmp_path, monkeypatch):
    """A write error after measuring (disk full) leaves the measurements in a file it names."""
    import edgeeas.regress as regress_pkg
    from edgeeas.regress.run import RegressResult

    res = RegressResult.__new__(RegressResult)
    monkeypatch.setattr(regress_pkg, "load_farm", lambda p: object())
    monkeypatch.setattr(regress_pkg, "run_regress", lambda *a, **k: res)
    monkeypatch.setattr(regress_pkg, "write_reports", lambda r, out: {"html": "x.html", "junit": "x.xml"})

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(regress_pkg, "write_baseline", full)
    monkeypatch.setattr(RegressResult, "exit_code", property(lambda self: 0), raising=False)
    monkeypatch.setattr(RegressResult, "counts", lambda self: {"pass": 1, "fail": 0, "error": 0}, raising=False)
    monkeypatch.setattr(RegressResult, "to_dict", lambda self: {"measured": [1.25]}, raising=False)
    for k, v in {"warnings": [], "cases": [], "devices": [], "models": [], "seconds": 0.0}.items():
        setattr(res, k, v)
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, ["regress", "--farm", "farm.yaml", "--update-baseline", "--baseline", "bl.json"])
    assert r.exit_code == 2, r.output
    kept = r.output.split("kept in ")[1].split()[0]
    assert json.loads(open(kept).read()) == {"measured": [1.25]}


def _dead_pid() -> int:
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_killed_runs_hidden_temporaries_are_cleaned(tmp_path):
    """``specialize`` (folders), atomic writes (files): a temporary of a dead process is removed
    by the next write beside the same destination; a live process's is kept."""
    import os

    from edgeeas.utils import atomic_write_text, mkdtemp_beside

    dead, live = _dead_pid(), os.getpid()
    dest = tmp_path / "3ms"
    stale_dir = tmp_path / f".3ms.{dead}.abc123.tmp"
    stale_dir.mkdir()
    (stale_dir / "model.tflite").write_bytes(b"half")
    stale_old = tmp_path / f".3ms.{dead}.old.tmp"
    stale_old.mkdir()
    mine = tmp_path / f".3ms.{live}.xyz.tmp"
    mine.mkdir()
    other = tmp_path / f".4ms.{dead}.abc.tmp"
    other.mkdir()
    tmp = mkdtemp_beside(dest)
    assert tmp.name.startswith(f".3ms.{live}.") and tmp.name.endswith(".tmp")
    assert not stale_dir.exists() and not stale_old.exists()
    assert mine.exists() and other.exists()  # a live run's, and another destination's
    f = tmp_path / "validation.json"
    stale_file = tmp_path / f".validation.json.{dead}.q.tmp"
    stale_file.write_text("{")
    atomic_write_text(f, "{}\n")
    assert f.read_text() == "{}\n" and not stale_file.exists()


def test_a_device_that_fails_every_check_is_said_once():
    from edgeeas.commands.regress import _problem_lines
    from edgeeas.regress.checks import Case

    msg = "placeholder: malformed host:port serial 'HOST:' (expected HOST:PORT)"
    cases = [Case("placeholder", f"m{i}.tflite", metric, "error", msg) for i in range(4)
             for metric in ("latency", "accuracy")]
    cases += [Case("host", "m0.tflite", "latency", "fail", "m0 is 20 % slower"),
              Case("host", "m1.tflite", "latency", "pass", "")]
    assert _problem_lines(cases) == [f"ERROR: {msg} (8 checks)", "FAIL: m0 is 20 % slower"]


def test_records_keep_paths_relative_to_the_project(tmp_path, monkeypatch):
    """Manifests record the supernet and the dataset without this machine's absolute prefix."""
    from pathlib import Path

    from edgeeas.utils import portable_path

    project = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(tmp_path)
    assert portable_path(project / "runs" / "default" / "supernet.pt") == "runs/default/supernet.pt"
    assert portable_path(tmp_path / "data" / "x.tar.gz") == "data/x.tar.gz"  # under the working folder
    assert portable_path("runs/mine") == "runs/mine"
    assert portable_path("/elsewhere/cifar") == "/elsewhere/cifar"  # outside both: as given
    beside = project.parent / "shared-data-for-test" / "cifar.tar.gz"  # beside the project: '../'
    if project.parent != Path(project.anchor):
        assert portable_path(beside) == "../shared-data-for-test/cifar.tar.gz"
    assert portable_path(None) is None
