"""Config files are checked against a schema up front (issue 13, item 5): a wrong type or value
anywhere is one line with the file, the line and the field, before any work."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from edgeeas.cli import main
from edgeeas.config import ConfigError
from edgeeas.deploy import load_deploy_config

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = (ROOT / "deploy.example.yaml").read_text()


def test_the_example_is_valid():
    cfg = load_deploy_config(ROOT / "deploy.example.yaml")
    assert cfg["target"] == "host" and cfg["strategy"] == "generator"
    assert cfg["scenarios"][2] == {"superclasses": ["vehicles_1", "vehicles_2"], "budget": "4ms"}


@pytest.mark.parametrize("line, field, words", [
    ("max_accuracy_gap: lots", "max_accuracy_gap", "valid number"),
    ("max_accuracy_gap: -1", "max_accuracy_gap", "greater than or equal to 0"),
    ("min_agreement: 150", "min_agreement", "less than or equal to 100"),
    ("min_agreement: most", "min_agreement", "valid number"),
    ("recal_images: lots", "recal_images", "valid integer"),
    ("recal_images: -5", "recal_images", "greater than 0"),
    ("calib_images: 2.5", "calib_images", "valid integer"),
    ("latency_margin: lots", "latency_margin", "expected 'auto' or a percentage"),
    ("target: [a, b]", "target", "valid string"),
    ("colour: red", "colour", "unknown key"),
])
def test_a_bad_value_is_one_line_with_its_line(tmp_path, line, field, words):
    f = tmp_path / "deploy.yaml"
    key = line.split(":")[0]
    base = "\n".join(x for x in EXAMPLE.splitlines() if not x.startswith(f"{key}:")) + "\n"  # a key given once
    text = base.replace("scenarios:", f"{line}\nscenarios:")
    f.write_text(text)
    n = text.splitlines().index(line) + 1
    with pytest.raises(ConfigError) as e:
        load_deploy_config(f)
    msg = str(e.value)
    assert "\n" not in msg and f"{f}, line {n}: {field}: " in msg and words in msg, msg


@pytest.mark.parametrize("old, new, field, words", [
    ("budget: 2ms", "budget: 2 ms", "scenarios.1.budget", "no space"),
    ("budget: 2ms", "budget: lots", "scenarios.1.budget", "bad budget"),
    ("  - superclass: fish\n", "  - superclas: fish\n", "scenarios.1.superclas", "unknown key"),
    ("  - superclass: fish\n    budget: 2ms\n", "  - budget: 2ms\n", "scenarios.1", "give 'superclass"),
])
def test_a_bad_scenario_names_its_line(tmp_path, old, new, field, words):
    f = tmp_path / "deploy.yaml"
    f.write_text(EXAMPLE.replace(old, new))
    with pytest.raises(ConfigError, match=rf"line \d+: {field}: .*{words}"):
        load_deploy_config(f)


def test_deploy_refuses_a_bad_config_before_any_work(tmp_path, monkeypatch):
    import edgeeas.specialize

    def boom(*a, **k):
        raise AssertionError("work started before the config was checked")

    monkeypatch.setattr(edgeeas.specialize, "Specializer", boom)
    f = tmp_path / "deploy.yaml"
    f.write_text(EXAMPLE.replace("scenarios:", "recal_images: lots\nscenarios:"))
    r = CliRunner().invoke(main, ["deploy", "--config", str(f)])
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    errs = [ln for ln in r.output.splitlines() if ln.startswith("Error:")]
    assert len(errs) == 1 and "recal_images" in errs[0] and "line" in errs[0]
