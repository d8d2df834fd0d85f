"""Architecture search: budgets, cost models, the generator and the baseline strategies.

Public surface::

    from edgeeas.search import (parse_budget, Budget, feasible_range, MaddsCost, CostModel,
                                SearchContext, find_arch, STRATEGIES, register_strategy,
                                train_generator, load_generator, GeneratorConfig)

    ctx = SearchContext(supernet, ds, MaddsCost(supernet.space))
    res = find_arch("evolution", ctx, ["vehicles_1"], "8M", evaluations=500)
    res.arch, res.predicted_cost, res.score, res.seconds, res.evaluations
"""
from .api import STRATEGIES, Proposal, SearchContext, SearchResult, find_arch, register_strategy
from .budget import Budget, BudgetError, InfeasibleBudget, check_feasible, feasible_range, parse_budget
from .cost import CostModel, CostTable, Genome, MaddsCost, cost_identity, format_cost, load_cost
from .generator import Generator, GeneratorConfig, GeneratorError, load_generator, save_generator, train_generator
from . import strategies as _strategies  # noqa: F401  (registers the built-in strategies)

__all__ = ["STRATEGIES", "register_strategy", "find_arch", "SearchContext", "SearchResult", "Proposal",
           "Budget", "BudgetError", "InfeasibleBudget", "parse_budget", "feasible_range", "check_feasible",
           "CostModel", "CostTable", "Genome", "MaddsCost", "cost_identity", "format_cost", "load_cost",
           "Generator", "GeneratorConfig", "GeneratorError", "train_generator", "load_generator",
           "save_generator"]
