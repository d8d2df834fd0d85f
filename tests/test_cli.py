"""The CLI: instant --help, one-line errors, eval on a real (tiny) supernet."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgeeas.cli import main

ROOT = Path(__file__).resolve().parent.parent


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


def test_eval_names_a_run_directory_prints_per_superclass_figures(tiny_run, data_path):
    """``eval smallest`` as ``arch smallest`` does; ``--supernet RUN_DIR`` as every other command;
    the table prints every superclass's figure (not only with --json)."""
    r = CliRunner().invoke(main, ["eval", "--supernet", str(tiny_run), "--data", str(data_path),
                                  "--recal-images", "100", "--test-images", "400", "smallest", "LARGEST"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    for name in ("aquatic_mammals", "vehicles_2", "within-superclass mean %", "top-1 all classes %"):
        row = next(ln for ln in lines if ln.startswith(name + " "))
        assert len(row.split()[-2:]) == 2 and all(0 <= float(v) <= 100 for v in row.split()[-2:])
    from edgeeas.checkpoint import load_supernet

    space = load_supernet(tiny_run)[0].space
    assert f"#1  {space.smallest()}" in lines and f"#2  {space.largest()}" in lines


@pytest.mark.parametrize("command", [["arch"], ["latency", "--target", "host"]])
@pytest.mark.parametrize("name", ["smallest", "middle", "largest"])
def test_every_command_taking_an_arch_takes_its_names(command, name):
    from edgeeas.space import DEFAULT_SPACE

    r = CliRunner().invoke(main, [command[0], name, *command[1:]])
    assert r.exit_code == 0, r.output
    assert str(getattr(DEFAULT_SPACE, name)()) in r.output


def test_eval_rejects_archs_of_another_shape(tiny_run, data_path):
    r = CliRunner().invoke(main, ["eval", "--supernet", str(tiny_run / "supernet.pt"), "--data", str(data_path),
                                  "d2222-k33333333-e33333333"])
    assert r.exit_code == 2 and "4 stages" in r.output


def test_missing_data_is_one_line(tmp_path, tiny_run):
    r = subprocess.run([str(Path(sys.executable).parent / "edgeeas"), "eval", "--supernet",
                        str(tiny_run / "supernet.pt"), "--data", str(tmp_path / "nope")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "no dataset at" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


# ---- the strategy registry is the one source of strategy names ------------------------------------
@pytest.fixture
def toy_strategy():
    """A strategy registered for one test (and unregistered after it)."""
    from edgeeas.search import STRATEGIES, Proposal, register_strategy

    @register_strategy("toy", help="a test", style=("tab:olive", "v"), settings=lambda s: {"tries": s.evaluations})
    def toy(ctx, sc, budget, nc, *, tries: int = 3):
        return Proposal(ctx.space.smallest(), None, tries)

    yield "toy"
    STRATEGIES.pop("toy")


def test_a_registered_strategy_is_a_choice_everywhere(toy_strategy, tmp_path):
    import importlib.util

    from edgeeas.errors import EdgeeasUsageError
    from edgeeas.report import strategy_style
    from edgeeas.specialize import STRATEGY_NAMES, SpecializeConfig

    for cmd in ("search", "specialize"):
        h = CliRunner().invoke(main, [cmd, "--help"])
        assert h.exit_code == 0 and "[generator|evolution|random|uniform|toy]" in " ".join(h.output.split()), h.output
    # the CLI takes it: the run fails later, at the missing dataset, not at the choice
    args = ["--budget", "8M", "--superclass", "fish", "--data", str(tmp_path / "nope")]
    r = CliRunner().invoke(main, ["specialize", "--strategy", "toy", *args])
    assert r.exit_code == 1 and "no dataset at" in r.output, r.output
    r = CliRunner().invoke(main, ["specialize", "--strategy", "nope", *args])
    assert r.exit_code == 2 and "Invalid value for '--strategy'" in r.output
    # config validation and options come from its registration
    assert "toy" in STRATEGY_NAMES
    assert SpecializeConfig(strategy="toy", evaluations=9).strategy_options() == {"tries": 9}
    with pytest.raises(EdgeeasUsageError, match="unknown search strategy 'nope'.*toy"):
        SpecializeConfig(strategy="nope").strategy_options()
    # the benchmark and the plots read the registry too
    spec = importlib.util.spec_from_file_location("bench_specialize", ROOT / "benchmarks" / "bench_specialize.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.registered_strategies()[-1] == "toy"
    assert bench.parse_args([]).strategies.split(",")[-2:] == ["toy", "oracle"]  # + the benchmark-only oracle
    assert strategy_style("toy") == ("tab:olive", "v")


def test_one_error_wrapper_for_groups_and_commands():
    """Usage errors exit 2 in one `Error:` line: under the usage line for the groups, alone for
    bench/latency (OneLineCommand); other project errors exit 1."""
    r = CliRunner().invoke(main, ["arch", "d9-k-e"])
    assert r.exit_code == 2 and r.output.count("Error:") == 1 and "Usage:" in r.output
    # the usage line is the subcommand's, never the group's `COMMAND [ARGS]...`
    assert "Usage: main arch [OPTIONS] ARCH" in r.output and "COMMAND [ARGS]" not in r.output
    r = CliRunner().invoke(main, ["train", "supernet", "--out", "README.md/x", "--epochs", "1"])
    assert "COMMAND [ARGS]" not in r.output
    r = CliRunner().invoke(main, ["latency", "smallest", "--target", "no-such-target"])
    assert r.exit_code == 1 and r.output.count("Error:") == 1 and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["bench", "--threads", "0"])
    assert r.exit_code == 2 and "Usage:" not in r.output and r.output.count("Error:") == 1
