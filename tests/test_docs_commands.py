"""Every command the README and the ``--help`` texts show runs as written (issue 13, item 9).

Each shown command line is parsed by the real click commands (options, choices, types and
required options), every architecture string in it parses in the search space, every budget
parses and is not refused on the shipped host table; the cheap ones (``arch``, ``latency``) are
run for real.  Placeholders a reader must fill in (ARCH, SERIAL, MODEL.tflite) get a real value.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from edgeeas.cli import main

ROOT = Path(__file__).resolve().parents[1]
ARCH = "d23423-k35735573557357-e34634634634634"
# placeholder -> a value a reader would type
FILL = {"ARCH": ARCH, "SERIAL": "emulator-5554", "NAME": "pixel", "N": "2"}


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    cmds = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if "edgeeas " in line:
                cmds.append(line)
    for code in re.findall(r"`([^`\n]*edgeeas[ .][^`\n]*)`", text):
        if code.split()[0] in ("edgeeas", ".venv/bin/edgeeas", "torchrun"):
            cmds.append(code)
    return cmds


def _help_commands() -> list[str]:
    runner = CliRunner()
    names = [[n] for n in main.list_commands(None)] + [["train", "supernet"], ["train", "generator"]]
    cmds = []
    for n in [[]] + names:
        r = runner.invoke(main, [*n, "--help"])
        assert r.exit_code == 0, (n, r.output)
        for line in r.output.splitlines():
            m = re.match(r"^\s+(edgeeas\s.*)$", line)
            if m:
                cmds.append(re.split(r"\s{2,}", m.group(1).strip())[0])  # drop the comment column
    return cmds


def _expand(cmd: str) -> list[list[str]]:
    """Shell words of ``cmd`` without the program, one list per alternative (``a\\|b``); optional
    parts (``[...]``) and ellipses dropped, placeholders filled in."""
    cmd = re.sub(r"\[[^\]]*\]", "", cmd.replace("\\|", "|")).replace("...", "")
    words = shlex.split(cmd)
    if words[0] == "torchrun":
        words = words[words.index("edgeeas.cli"):]
    words = words[1:]
    out = [[]]
    for w in words:
        w = FILL.get(w, w)
        alts = w.split("|") if "|" in w and not w.startswith("-") else [w]
        out = [o + [a] for o in out for a in alts]
    return out


def _parse(args: list[str]):
    """(command, params) as click parses ``edgeeas ARGS``: a usage error fails the test."""
    ctx = main.make_context("edgeeas", list(args))
    cmd = main
    while isinstance(cmd, click.Group):
        rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
        name, cmd, rest = cmd.resolve_command(ctx, rest)
        ctx = cmd.make_context(name, rest, parent=ctx)
    return cmd, ctx.params


# (``--help`` lines are covered by test_cli's every-command --help test)
SHOWN = sorted({" ".join(a) for c in _readme_commands() + _help_commands() for a in _expand(c)} - {""})
SHOWN = [s for s in SHOWN if "--help" not in s.split()]


def test_the_readme_and_help_show_commands():
    assert len(SHOWN) >= 30
    assert "specialize --target host --budget 3ms --superclass vehicles_1" in SHOWN
    assert "search -s generator --superclass vehicles_1 --budget 20ms" in SHOWN


@pytest.mark.parametrize("line", SHOWN)
def test_shown_command_parses_as_written(line):
    from edgeeas.search import check_feasible, load_cost, parse_budget
    from edgeeas.search.cost import CostTable
    from edgeeas.space import DEFAULT_SPACE

    cmd, params = _parse(shlex.split(line))
    for w in shlex.split(line):
        if re.match(r"^d\d+-k\d+-e\d+$", w):
            DEFAULT_SPACE.parse(w)  # a malformed architecture string raises
    budgets = [b for k in ("budget", "budgets") if params.get(k) for b in str(params[k]).split(",")]
    for text in budgets:
        b = parse_budget(text)
        if b.unit == "ms" and params.get("target", "host") == "host":
            cost, _ = load_cost(DEFAULT_SPACE, target="host")
            check_feasible(b, CostTable(cost, DEFAULT_SPACE), 5, "host")


def test_readme_architecture_string_is_well_formed():
    text = (ROOT / "README.md").read_text()
    archs = set(re.findall(r"\bd\d{5}-k\d+-e\d+\b", text))
    assert ARCH in archs
    from edgeeas.space import DEFAULT_SPACE

    for a in archs:
        assert str(DEFAULT_SPACE.parse(a)) == a


@pytest.mark.parametrize("line", [s for s in SHOWN if s.split()[0] in ("arch", "latency")])
def test_cheap_shown_commands_run(line):
    r = CliRunner().invoke(main, shlex.split(line))
    assert r.exit_code == 0, r.output


def test_the_help_budget_above_the_largest_subnet_gives_the_largest():
    """``search --budget 20ms`` on the host: the largest subnet (predicted well under 20 ms) meets it."""
    from edgeeas.search import load_cost
    from edgeeas.space import DEFAULT_SPACE

    cost, _ = load_cost(DEFAULT_SPACE, target="host")
    largest = cost.predict(DEFAULT_SPACE.largest(), 5)
    assert largest < 20 / (1 + cost.safety_margin())


def _all_commands():
    names = [[n] for n in main.list_commands(None) if n != "train"] + [["train", "supernet"], ["train", "generator"]]
    for n in names:
        cmd = main
        for part in n:
            cmd = cmd.get_command(None, part)
        yield " ".join(n), cmd


def test_every_option_has_help_text():
    missing = [f"{name} {'/'.join(p.opts)}" for name, cmd in _all_commands() for p in cmd.params
               if isinstance(p, click.Option) and not p.hidden and not (p.help or "").strip()]
    assert missing == []


def test_a_users_config_files_are_ignored_by_git():
    import shutil
    import subprocess

    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    for name in ("deploy.yaml", "farm.yaml", "baseline.json", "targets.yaml"):
        r = subprocess.run(["git", "check-ignore", "-q", name], cwd=ROOT)
        assert r.returncode == 0, f"{name} is not in .gitignore"
    for shipped in ("deploy.example.yaml", "farm.example.yaml"):
        assert subprocess.run(["git", "check-ignore", "-q", shipped], cwd=ROOT).returncode == 1
