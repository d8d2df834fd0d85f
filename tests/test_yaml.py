"""Every user YAML (superclasses, deploy, farm, targets) goes through one reader that refuses a
key given twice: plain YAML silently keeps the last value."""
import pytest

from edgeeas.errors import EdgeeasError
from edgeeas.utils import read_yaml


@pytest.mark.parametrize("text,line,first", [
    ("a: 1\nb: 2\na: 3\n", 3, 1),
    ("target: host\nscenarios:\n  - superclass: fish\n    budget: 2ms\n    budget: 3ms\n", 5, 4),  # nested
])
def test_a_key_given_twice_is_a_one_line_error_with_both_lines(tmp_path, text, line, first):
    p = tmp_path / "x.yaml"
    p.write_text(text)
    with pytest.raises(EdgeeasError) as e:
        read_yaml(p, "deploy config", EdgeeasError, "expected ...")
    msg = str(e.value)
    assert f"line {line}: key" in msg and f"first at line {first}" in msg and "\n" not in msg


def test_plain_files_and_the_node_tree(tmp_path):
    p = tmp_path / "ok.yaml"
    p.write_text("a: [1, 2]\nb: {c: 3}\n")
    assert read_yaml(p, "x", EdgeeasError) == {"a": [1, 2], "b": {"c": 3}}
    node = read_yaml(p, "x", EdgeeasError, compose=True)
    assert node.value[1][0].value == "b" and node.value[1][0].start_mark.line == 1
    (tmp_path / "bad.yaml").write_text("a: [1\n")
    with pytest.raises(EdgeeasError, match="not readable YAML at line"):
        read_yaml(tmp_path / "bad.yaml", "x", EdgeeasError)
