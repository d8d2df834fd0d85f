"""`edgeeas search` as a fresh user meets it: specialize's superclass syntax, and a one-line error
naming the minimum for too few --evaluations (on every path: search, specialize, the API)."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from edgeeas.cli import main


def _search(*args):
    r = CliRunner().invoke(main, ["search", *args])
    return r.exit_code, r.stdout, r.stderr


@pytest.mark.parametrize("n", [0, 1])
def test_too_few_evaluations_is_one_line_with_the_minimum(n):
    code, out, err = _search("-s", "evolution", "--superclass", "vehicles_1", "--budget", "8M", "--evaluations", str(n))
    assert code == 2 and "Traceback" not in err
    if n == 1:  # 0 is refused by the option's range already
        errors = [ln for ln in err.splitlines() if ln.startswith("Error:")]
        assert len(errors) == 1 and "evolution needs evaluations >= 2" in errors[0] and "got 1" in errors[0], err


def test_specialize_refuses_too_few_evaluations_before_any_work(tmp_path, data_path):
    """The same rule on specialize's path (the strategy's check runs in strategy_options, which
    every caller goes through), before the supernet or the data are loaded."""
    r = CliRunner().invoke(main, ["specialize", "--strategy", "evolution", "--evaluations", "1", "--budget", "8M",
                                  "--superclass", "fish", "--data", str(data_path),
                                  "--supernet", str(tmp_path / "never-loaded.pt"), "--out", str(tmp_path / "out")])
    assert r.exit_code == 2 and "Traceback" not in r.stderr, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1 and "evolution needs evaluations >= 2" in errors[0], r.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("settings,needle", [
    ({"evaluations": 1}, "evaluations >= 2"),
    ({"evaluations": 50, "population": 1}, "population >= 2"),
])
def test_strategy_options_check_every_caller(settings, needle):
    from edgeeas.errors import EdgeeasUsageError
    from edgeeas.search import SearchSettings, strategy_options

    with pytest.raises(EdgeeasUsageError, match=needle):
        strategy_options("evolution", SearchSettings(**settings))


def test_the_strategies_check_their_own_ranges():
    """Called directly (the API, bench_specialize), evolution and random refuse what they cannot run."""
    from edgeeas.errors import EdgeeasUsageError
    from edgeeas.search import get_strategy

    evo = get_strategy("evolution")
    for bad, needle in [({"population": 10, "evaluations": 5}, "evaluations >= population"),
                        ({"parent_ratio": 1.0}, "parent_ratio"), ({"mutation_ratio": 1.5}, "mutation_ratio"),
                        ({"mutate_prob": -0.1}, "mutate_prob")]:
        with pytest.raises(EdgeeasUsageError, match=needle):
            evo(None, [0], 1.0, 5, **bad)
    with pytest.raises(EdgeeasUsageError, match="samples >= 1"):
        get_strategy("random")(None, [0], 1.0, 5, samples=0)


def test_evaluations_at_the_minimum_pass_the_check():
    from edgeeas.search import SearchSettings, strategy_options

    assert strategy_options("evolution", SearchSettings(evaluations=2))["population"] == 2
    assert strategy_options("random", SearchSettings(evaluations=1))["samples"] == 1


def test_unknown_superclass_in_a_plus_b_is_named(data_path):
    code, out, err = _search("-s", "uniform", "--superclass", "vehicles_1+no_such_class", "--budget", "8M",
                             "--data", str(data_path))
    assert code == 2 and "unknown superclass 'no_such_class'" in err and "Traceback" not in err


@pytest.mark.slow
def test_a_plus_b_is_the_same_scenario_as_in_specialize(data_path):
    """`--superclass a+b` (specialize's syntax) and the repeated flag give one scenario of two."""
    common = ["-s", "uniform", "--budget", "8M", "--data", str(data_path), "--val-images", "20",
              "--recal-images", "20", "--json"]
    code, out1, err = _search("--superclass", "vehicles_1+fish", *common)
    assert code == 0, err
    code, out2, err = _search("--superclass", "fish", "--superclass", "vehicles_1", *common)
    assert code == 0, err
    a, b = json.loads(out1), json.loads(out2)
    assert a["superclasses"] == b["superclasses"] == ["fish", "vehicles_1"]   # dataset order, as specialize
    assert a["arch"] == b["arch"] and a["heldout_accuracy"] == b["heldout_accuracy"]
