"""The CLI: instant --help, one-line errors, eval on a real (tiny) supernet."""
import json
import subprocess
import sys

from click.testing import CliRunner

from edgeeas.cli import main


def test_help_does_not_import_torch():
    code = ("import sys; from edgeeas.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'litert_torch', 'ai_edge_litert', 'jax') if m in sys.modules]\n"
            "assert not heavy, heavy")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "train" in r.stdout and "eval" in r.stdout


def test_every_listed_command_has_help():
    r = CliRunner().invoke(main, ["--help"])
    cmds = [line.split()[0] for line in r.output.split("Commands:")[1].splitlines() if line.strip()]
    assert {"train", "eval", "arch"} <= set(cmds)
    for c in cmds:
        h = CliRunner().invoke(main, [c, "--help"])
        assert h.exit_code == 0, (c, h.output)


def test_arch_counts():
    r = CliRunner().invoke(main, ["arch", "smallest"])
    assert r.exit_code == 0 and "MAdds: 4.857 M" in r.output


def test_malformed_arch_is_a_usage_error():
    r = CliRunner().invoke(main, ["arch", "d9-k-e"])
    assert r.exit_code == 2 and "malformed architecture" in r.output and "Traceback" not in r.output


def test_eval_on_a_trained_supernet(tiny_run, data_path):
    r = CliRunner().invoke(main, ["eval", "--supernet", str(tiny_run / "supernet.pt"), "--data", str(data_path),
                                  "--recal-images", "100", "--test-images", "400", "--json",
                                  "d22222-k3333333333-e3333333333"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert len(res) == 1 and res[0]["arch"] == "d22222-k3333333333-e3333333333"
    per = res[0]["per_superclass"]
    assert len(per) == 20 and all(0 <= v <= 100 for v in per.values())
    assert abs(res[0]["mean_within_superclass"] - sum(per.values()) / 20) < 0.01


def test_eval_rejects_archs_of_another_shape(tiny_run, data_path):
    r = CliRunner().invoke(main, ["eval", "--supernet", str(tiny_run / "supernet.pt"), "--data", str(data_path),
                                  "d2222-k33333333-e33333333"])
    assert r.exit_code == 2 and "4 stages" in r.output


def test_missing_data_is_one_line(tmp_path, tiny_run):
    r = subprocess.run([str(__import__("pathlib").Path(sys.executable).parent / "edgeeas"), "eval", "--supernet",
                        str(tiny_run / "supernet.pt"), "--data", str(tmp_path / "nope")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "no dataset at" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
