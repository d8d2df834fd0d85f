"""The search-strategy registry (timm's ``register_model`` / ``list_models`` habit).

A strategy registers once, where it is defined, and everything else reads the registry: the
``--strategy`` choices of ``edgeeas search`` and ``edgeeas specialize``, the options a
:class:`~edgeeas.specialize.SpecializeConfig` hands it, the benchmark's strategy list and the
report's plot style.  Adding a strategy touches that one place::

    @register_strategy("greedy", help="cheapest first", style=("tab:olive", "v"),
                       settings=lambda s: {"samples": s.evaluations})
    def greedy(ctx, superclasses: list[int], budget: float, num_classes: int, *, samples: int = 100) -> Proposal:
        ...

The keyword-only parameters of the function are its options; :attr:`StrategyInfo.options` is
a dataclass of them (derived from the signature unless one is given), so ``find_arch`` and
config validation can check option names before any work.  ``settings`` maps the shared
command-line settings (:class:`SearchSettings`: ``--fitness``, ``--evaluations``,
``--population``) to the strategy's options; a strategy without it takes none of them.

This module imports nothing heavy (no torch), so the CLI can list strategies instantly.
"""
from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import EdgeeasUsageError

__all__ = ["STRATEGIES", "StrategyInfo", "SearchSettings", "Proposal", "register_strategy", "get_strategy",
           "list_strategies", "strategy_options"]


@dataclass
class Proposal:
    """What a strategy returns.

    Attributes:
        arch: the architecture (an :class:`edgeeas.space.Arch`); it must fit the budget it was given.
        score: the strategy's fitness of ``arch`` (accuracy in %, measured or predicted), or None
            when it used no fitness.
        evaluations: how many architectures it scored.
        extra: strategy-specific figures copied into the search result (``generations``, ``family``).
    """

    arch: Any
    score: float | None = None
    evaluations: int = 0
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SearchSettings:
    """The search settings the command line shares between strategies (``commands/_options.py``).

    Attributes:
        fitness: ``"predictor"`` or ``"direct"`` (see :class:`edgeeas.search.SearchContext`).
        evaluations: fitness evaluations (evolution) or samples (random); a count.
        population: evolution population; a count.
    """

    fitness: str = "predictor"
    evaluations: int = 500
    population: int = 100


@dataclass(frozen=True)
class StrategyInfo:
    """One registered strategy.

    Attributes:
        name: the ``--strategy`` value.
        fn: ``fn(ctx, superclasses: list[int], budget: float, num_classes: int, **options) -> Proposal``;
            ``budget`` is in the cost model's unit (ms or millions of MAdds).
        options: a dataclass whose fields are ``fn``'s keyword-only options, with their defaults.
        settings: maps :class:`SearchSettings` to the options the command line sets (None: none).
        help: a few words for ``--help`` (``"once-for-all style"``).
        style: ``(matplotlib colour, marker)`` for plots.
        needs_generator: the strategy runs a trained architecture generator (loaded by the caller
            and set on the search context).
        check: ``check(options: dict)`` raises :class:`EdgeeasUsageError` (one line naming the
            option, the value and what is expected) for values the strategy cannot run with; called
            by :func:`strategy_options` with the defaults filled in, before any loading.
    """

    name: str
    fn: Callable
    options: type
    settings: Callable[[SearchSettings], dict] | None = None
    help: str = ""
    style: tuple[str | None, str] = (None, "x")
    needs_generator: bool = False
    check: Callable[[dict], None] | None = None

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)

    def option_names(self) -> list[str]:
        """The option names, in the function's order."""
        return [f.name for f in dataclasses.fields(self.options)]

    def check_options(self, opts: dict) -> None:
        """Raises :class:`EdgeeasUsageError` naming the first unknown option and the valid ones."""
        names = self.option_names()
        unknown = sorted(set(opts) - set(names))
        if unknown:
            raise EdgeeasUsageError(f"strategy {self.name!r} has no option {unknown[0]!r}; its options: "
                                    f"{', '.join(names) or 'none'}")

    def describe(self) -> str:
        """``name (help)`` for the command line's help text."""
        return f"{self.name} ({self.help})" if self.help else self.name


# name -> StrategyInfo, in registration order (the order --help lists them in)
STRATEGIES: dict[str, StrategyInfo] = {}


def _options_from_signature(name: str, fn: Callable) -> type:
    params = [p for p in inspect.signature(fn).parameters.values() if p.kind == p.KEYWORD_ONLY]
    spec = [(p.name, Any, field(default=None if p.default is p.empty else p.default)) for p in params]
    cls_name = "".join(part.capitalize() for part in name.replace("-", "_").split("_")) + "Options"
    cls = dataclasses.make_dataclass(cls_name, spec, frozen=True)
    cls.__module__ = fn.__module__
    return cls


def register_strategy(name: str, *, options: type | None = None,
                      settings: Callable[[SearchSettings], dict] | None = None, help: str = "",
                      style: tuple[str | None, str] = (None, "x"), needs_generator: bool = False,
                      check: Callable[[dict], None] | None = None):
    """Decorator: register ``fn`` as the search strategy ``name``.

    Args:
        name: the ``--strategy`` value; registered once.
        options: a dataclass of the options; default one derived from ``fn``'s keyword-only
            parameters.  Its field names must be exactly those parameters.
        settings, help, style, needs_generator, check: see :class:`StrategyInfo`.

    Raises:
        ValueError: ``name`` registered twice, or ``options`` disagrees with ``fn``'s parameters
            (a programming error, at import time).
    """
    def deco(fn):
        if name in STRATEGIES:
            raise ValueError(f"search strategy {name!r} registered twice")
        opts = options or _options_from_signature(name, fn)
        kw = [p.name for p in inspect.signature(fn).parameters.values() if p.kind == p.KEYWORD_ONLY]
        if not dataclasses.is_dataclass(opts) or [f.name for f in dataclasses.fields(opts)] != kw:
            raise ValueError(f"search strategy {name!r}: options {opts!r} must be a dataclass with exactly "
                             f"the keyword-only parameters {kw}")
        STRATEGIES[name] = StrategyInfo(name, fn, opts, settings, help, style, needs_generator, check)
        fn.strategy_name = name
        return fn
    return deco


def get_strategy(name: str) -> StrategyInfo:
    """The registered strategy ``name``; :class:`EdgeeasUsageError` listing the valid names if none."""
    try:
        return STRATEGIES[name]
    except KeyError:
        raise EdgeeasUsageError(f"unknown search strategy {name!r}; expected one of: "
                                f"{', '.join(sorted(STRATEGIES))}") from None


def list_strategies() -> list[str]:
    """Registered strategy names, in registration order (the built-ins: generator, evolution,
    random, uniform)."""
    return list(STRATEGIES)


def strategy_options(name: str, settings: SearchSettings | Any) -> dict:
    """The options the shared settings give strategy ``name`` (``{}`` if it takes none of them).

    ``settings`` is a :class:`SearchSettings` or anything with its attributes (a
    ``SpecializeConfig``).  Raises :class:`EdgeeasUsageError` for an unknown strategy, an unknown
    option, or a value the strategy cannot run with (its ``check``), so every caller (``search``,
    ``specialize``, ``deploy``, the API) refuses it before loading anything."""
    info = get_strategy(name)
    opts = dict(info.settings(settings)) if info.settings else {}
    info.check_options(opts)
    if info.check:
        defaults = {f.name: f.default for f in dataclasses.fields(info.options)}
        info.check({**defaults, **opts})
    return opts
