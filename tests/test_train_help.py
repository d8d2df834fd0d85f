"""`edgeeas train supernet --help` says what the options do: every option has help, a default
(shown or stated), units where it has them, and the figures it quotes are the trainer's own."""
from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from edgeeas.cli import main
from edgeeas.commands.train import train_supernet_cmd
from edgeeas.train import TrainConfig

OPTIONS = [p for p in train_supernet_cmd.params if isinstance(p, click.Option) and p.name != "help"]


@pytest.mark.parametrize("opt", OPTIONS, ids=lambda o: o.opts[0])
def test_every_option_has_help_and_a_default(opt):
    assert opt.help and len(opt.help) > 10, opt.opts
    if opt.is_flag or opt.default in (None, ()) or opt.name in ("data", "superclasses_file", "init_from", "init",
                                                              "space_path"):
        return  # flags; optional inputs whose absence the help explains
    assert opt.show_default or "[default" in opt.help, f"{opt.opts[0]} shows no default"


def test_help_quotes_the_trainers_own_settings():
    text = " ".join(CliRunner().invoke(main, ["train", "supernet", "--help"]).output.split())
    assert f"Nesterov momentum {TrainConfig.momentum:g}" in text
    assert f"after {TrainConfig.warmup_epochs:g} epoch of linear warm-up" in text
    assert f"BN recalibration on {TrainConfig.recal_images:,} training images" in text
    assert "minutes between mid-epoch checkpoints" in text and "(0: after every step)" in text
    assert "(0: no limit" in text and "(0: all" in text


def test_the_group_help_names_both_subcommands():
    out = CliRunner().invoke(main, ["train", "--help"]).output
    assert "later" not in out and "supernet" in out and "generator" in out



def test_the_cli_defaults_are_the_trainers():
    """The CLI and TrainConfig agree on every default they share (superclass dropout is off in
    both, as the ablation found)."""
    import dataclasses

    fields = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    shared = [o for o in OPTIONS if o.name in fields and not o.is_flag and o.default is not None]
    assert len(shared) >= 8
    for o in shared:
        cli = tuple(o.default) if o.name == "keep_epochs" and not o.default else o.default  # '' = ()
        assert cli == fields[o.name], (o.name, o.default, fields[o.name])
    assert fields["superclass_dropout"] == 0.0


def _generator_options():
    from edgeeas.commands.generator import train_generator as cmd

    return [p for p in cmd.params if isinstance(p, click.Option) and p.name != "help"]


@pytest.mark.parametrize("opt", _generator_options(), ids=lambda o: o.opts[0])
def test_every_train_generator_option_has_help_and_a_default(opt):
    assert opt.help and len(opt.help) > 10, opt.opts
    if opt.is_flag or opt.name in ("data", "superclasses_file"):
        return  # flags; the data options explain their environment default
    assert opt.show_default or "default" in opt.help, f"{opt.opts[0]} states no default"
