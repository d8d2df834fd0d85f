"""`edgeeas search` as a fresh user meets it: specialize's superclass syntax, and a one-line error
naming the minimum for too few --evaluations."""
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
        assert len(err.strip().splitlines()) == 1, err
        assert "--evaluations 1 is too few for evolution: the minimum is 2" in err


def test_evaluations_at_the_minimum_pass_the_check():
    from edgeeas.commands.search import check_evaluations

    check_evaluations("evolution", 2)
    check_evaluations("random", 1)


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
