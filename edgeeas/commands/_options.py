"""Click options shared by the commands that run a search strategy (``search``, ``specialize``)."""
from __future__ import annotations

import click

_SEARCH_OPTIONS = (
    click.option("--fitness", default="predictor", show_default=True, type=click.Choice(["predictor", "direct"]),
                 help="evolution/random: accuracy predictor trained on measured subnets (as once-for-all), "
                      "or direct held-out evaluation"),
    click.option("--evaluations", default=500, show_default=True, type=click.IntRange(1),
                 help="evolution: fitness evaluations; random: samples"),
    click.option("--population", default=100, show_default=True, type=click.IntRange(2), help="evolution population"),
    click.option("--predictor-samples", default=200, show_default=True, type=click.IntRange(3),
                 help="measured subnets per superclass for the accuracy predictor (cached in the run directory)"),
    click.option("--latency-margin", default="auto", show_default=True,
                 help="aim latency budgets this much lower, so measured models meet them: 'auto' is how much "
                      "the target's predictor under-predicts 95 % of its held-out measured subnets; or a "
                      "percentage (5%, 0)"),
)


def search_options(f):
    """--fitness, --evaluations, --population, --predictor-samples, --latency-margin."""
    for opt in reversed(_SEARCH_OPTIONS):
        f = opt(f)
    return f
