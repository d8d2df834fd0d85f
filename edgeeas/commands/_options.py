"""Click options shared by several commands: ``--data``, ``--strategy`` (from the strategy
registry), the search settings (``search``, ``specialize``) and ``-v/--verbose`` (adb commands)."""
from __future__ import annotations

import logging

import click

__all__ = ["DATA_HELP", "SUPERCLASSES_HELP", "data_option", "StrategyChoice", "strategy_option", "search_options", "verbose_option",
           "enable_adb_log"]

DATA_HELP = "CIFAR-100 archive (.tar.gz or folder) or ImageFolder tree; default $EDGEEAS_DATA, else ./data"


SUPERCLASSES_HELP = ("regroup the dataset: a YAML 'superclass: [class, ...]' file (any dataset, CIFAR-100 "
                     "included; classes it leaves out are left out); checked up front")


def data_option(f):
    """``--data`` and ``--superclasses``: the dataset (:func:`edgeeas.data.load_dataset`) and an
    optional regrouping file, for every command in this one place.

    The command receives one ``data`` value: the ``--data`` text as before, or, with
    ``--superclasses``, an :class:`edgeeas.data.DataSource` (a ``str`` of the path that also
    carries the file), so whatever the command hands the value to loads the regrouped dataset."""
    import functools

    @functools.wraps(f)
    def wrapper(*args, data=None, superclasses_file=None, **kwargs):
        from ..data import DataSource

        return f(*args, data=DataSource.of(data, superclasses_file), **kwargs)

    # its own parameter name: search/specialize's repeated --superclass is called `superclasses`
    wrapper = click.option("--superclasses", "superclasses_file", default=None, metavar="FILE",
                           type=click.Path(dir_okay=False),
                           help=SUPERCLASSES_HELP)(wrapper)
    return click.option("--data", default=None, help=DATA_HELP)(wrapper)


class StrategyChoice(click.Choice):
    """The registered search strategies (:func:`edgeeas.search.list_strategies`), read when the
    choices are needed, so a strategy registered later is a valid choice too."""

    def __init__(self):
        super().__init__(())

    @property
    def choices(self):
        """The registered names, in registration order."""
        from ..search import list_strategies

        return tuple(list_strategies())

    @choices.setter
    def choices(self, value):
        """Ignored: click.Choice.__init__ assigns it; the registry is the source."""
        pass


def strategy_option(*names: str, **kwargs):
    """``--strategy`` over the registry; its help names each strategy with its registered words
    (``generator (one forward pass), evolution (once-for-all style), ...``)."""
    from ..search import STRATEGIES

    help_text = ", ".join(info.describe() for info in STRATEGIES.values())
    return click.option(*(names or ("--strategy",)), type=StrategyChoice(), help=help_text, **kwargs)


_SEARCH_OPTIONS = (
    click.option("--fitness", default="predictor", show_default=True, type=click.Choice(["predictor", "direct"]),
                 help="evolution/random: accuracy predictor trained on measured subnets (as once-for-all), "
                      "or direct held-out evaluation"),
    click.option("--evaluations", default=500, show_default=True, type=click.IntRange(1),
                 help="evolution: fitness evaluations; random: samples"),
    click.option("--population", default=100, show_default=True, type=click.IntRange(2), help="evolution population"),
    click.option("--predictor-samples", default=200, show_default=True, type=click.IntRange(3),
                 help="measured subnets per scenario for the accuracy predictor of --fitness predictor: a one-time cost on first use of a scenario (about 5 s a subnet here, so ~15 min at 200), cached in the run directory"),
    click.option("--latency-margin", default="auto", show_default=True,
                 help="aim latency budgets this much lower, so measured models meet them: 'auto' is how much "
                      "the target's predictor under-predicts 95 % of its held-out measured subnets; or a "
                      "percentage (5%, 0)"),
)


def search_options(f):
    """--fitness, --evaluations, --population, --predictor-samples, --latency-margin (the
    shared search settings, :class:`edgeeas.search.SearchSettings`, and the latency margin)."""
    for opt in reversed(_SEARCH_OPTIONS):
        f = opt(f)
    return f


def enable_adb_log(verbose: bool) -> None:
    """Show every remote command as the ``adb -s SERIAL shell ...`` line that repeats it (stderr)."""
    if not verbose:
        return
    lg = logging.getLogger("android_runner")
    lg.setLevel(logging.INFO)
    if not any(getattr(h, "_edgeeas", False) for h in lg.handlers):
        h = logging.StreamHandler()
        h.setFormatter(logging.Formatter("%(message)s"))
        h._edgeeas = True  # type: ignore[attr-defined]
        lg.addHandler(h)


verbose_option = click.option("-v", "--verbose", is_flag=True,
                              help="print every remote command as the `adb -s SERIAL shell ...` line that repeats it")
