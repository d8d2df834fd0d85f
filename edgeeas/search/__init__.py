"""Architecture search: budgets, cost models, the generator and the baseline strategies.

Public surface::

    from edgeeas.search import (parse_budget, Budget, feasible_range, MaddsCost, CostModel,
                                SearchContext, find_arch, STRATEGIES, register_strategy,
                                list_strategies, get_strategy, train_generator, load_generator,
                                GeneratorConfig)

    ctx = SearchContext(supernet, ds, MaddsCost(supernet.space))
    res = find_arch("evolution", ctx, ["vehicles_1"], "8M", evaluations=500)
    res.arch, res.predicted_cost, res.score, res.seconds, res.evaluations

Importing this package is cheap (no torch): the registry, budgets, cost tables and the
built-in strategies load at once; the search context and the generator (torch) load on first
use of their names.
"""
from __future__ import annotations

import importlib

from .budget import Budget, BudgetError, InfeasibleBudget, check_feasible, feasible_range, parse_budget
from .cost import CostModel, CostTable, Genome, MaddsCost, cost_identity, format_cost, load_cost
from .registry import (STRATEGIES, Proposal, SearchSettings, StrategyInfo, get_strategy, list_strategies,
                       register_strategy, strategy_options)
from . import strategies as _strategies  # noqa: F401,E402  (registers the built-in strategies)

# name -> submodule that defines it, imported on first access (PEP 562): they need torch
_LAZY = {**dict.fromkeys(("SearchContext", "SearchResult", "find_arch"), "api"),
         **dict.fromkeys(("Generator", "GeneratorConfig", "GeneratorError", "load_generator", "save_generator",
                          "train_generator"), "generator")}

__all__ = ["STRATEGIES", "register_strategy", "get_strategy", "list_strategies", "strategy_options",
           "StrategyInfo", "SearchSettings", "find_arch", "SearchContext", "SearchResult", "Proposal",
           "Budget", "BudgetError", "InfeasibleBudget", "parse_budget", "feasible_range", "check_feasible",
           "CostModel", "CostTable", "Genome", "MaddsCost", "cost_identity", "format_cost", "load_cost",
           "Generator", "GeneratorConfig", "GeneratorError", "train_generator", "load_generator",
           "save_generator"]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
