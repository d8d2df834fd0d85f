"""Budgets: ``20ms``, ``500us`` (latency on a target) or ``8M`` (millions of MAdds).

The rule, in full: a positive plain decimal number immediately followed by one unit,

* ``ms`` or ``us`` -- a latency budget, judged by a target's latency predictor;
* ``M``            -- a MAdds budget in millions of multiply-adds (no table needed).

Everything else is refused with a one-line error naming that form: a bare number (``20``: ms
or M?), a space (``20 ms``: the budget names folders, so it has one spelling), seconds
(``0.02s``: write ``20ms``), exponents (``1e9ms``), signs, zero.  A well-formed budget outside
what the search space can reach from below (``1M``) is refused by :func:`check_feasible` with
the feasible range for that cost model and scenario; a budget above the largest subnet's cost
(``300M``) is met by the largest subnet, which the search returns with a note.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import EdgeeasUsageError
from .cost import CostTable, format_cost

__all__ = ["Budget", "BudgetError", "InfeasibleBudget", "parse_budget", "feasible_range", "check_feasible",
           "parse_margin"]

FORM = "a positive number with a unit, e.g. 20ms, 500us (latency) or 8M (millions of MAdds)"


class BudgetError(EdgeeasUsageError):
    """A budget string that does not follow the budget form."""


class InfeasibleBudget(EdgeeasUsageError):
    """A budget no architecture of the space can meet."""


@dataclass(frozen=True)
class Budget:
    """A deployment budget: latency in ms (``kind="latency_ms"``) or millions of MAdds
    (``kind="madds"``).  ``str()`` gives its canonical spelling; :func:`parse_budget` makes one."""

    kind: str     # "latency_ms" | "madds"
    value: float  # ms for latency (us are converted), millions of MAdds for madds

    @property
    def unit(self) -> str:
        """``"ms"`` or ``"M"`` (millions of MAdds), as cost models name their units."""
        return "ms" if self.kind == "latency_ms" else "M"

    def __str__(self) -> str:
        """Canonical spelling (also a folder name): ``20ms``, ``0.5ms``, ``8M``."""
        return f"{self.value:g}{self.unit}"


_RE = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)(ms|us|µs|M)$")


def parse_budget(text: str) -> Budget:
    """``20ms``, ``0.5ms``, ``500us`` (or ``µs``: converted to ms) or ``8M`` to a :class:`Budget`.

    Raises:
        BudgetError: not a positive number with one of those units; the message says what is
            wrong (missing unit, unknown unit, zero...) and the expected form.
    """
    raw = text if isinstance(text, str) else str(text)
    t = raw.strip()
    m = _RE.match(t)
    if m:
        num, unit = float(m.group(1)), m.group(2)
        if num <= 0:
            raise BudgetError(f"bad budget {raw!r}: it must be greater than zero; expected {FORM}")
        if unit == "M":
            return Budget("madds", num)
        return Budget("latency_ms", num / 1000.0 if unit in ("us", "µs") else num)
    why = _why(t)
    raise BudgetError(f"bad budget {raw!r}: {why}; expected {FORM}")


def _why(t: str) -> str:
    if not t:
        return "it is empty"
    if re.match(r"^[+-]", t):
        return "no sign allowed (a budget is positive)" if t[0] == "+" else "a budget cannot be negative"
    if re.search(r"\d[eE][+-]?\d", t):
        return "write the number without an exponent"
    if re.match(r"^[\d.]+$", t):
        return "a bare number is ambiguous (ms or M?)"
    if re.match(r"^[\d.]+\s+\S+$", t):
        return f"no space between number and unit (write {t.replace(' ', '')})"
    m = re.match(r"^([\d.]+)s$", t)
    if m:
        try:
            return f"seconds are not accepted (write {float(m.group(1)) * 1000:g}ms)"
        except ValueError:
            pass
    m = re.match(r"^[\d.]+(m|k|G|mb|MB|mM|Mmadds|madds)$", t)
    if m:
        return f"unknown unit {m.group(1)!r} (latency in ms or us, MAdds in M)"
    return "not a number followed by ms, us or M"


def feasible_range(cost_or_table, num_classes: int = 5, space=None) -> tuple[float, float]:
    """(min, max) cost over the whole search space for a ``num_classes``-way head (exact)."""
    table = cost_or_table if isinstance(cost_or_table, CostTable) else CostTable(cost_or_table, space)
    return table.bounds(num_classes)


def check_feasible(budget: Budget, table: CostTable, num_classes: int = 5, what: str = "") -> float:
    """The budget's value in the cost model's unit, or a one-line error naming the feasible
    range (``what`` describes the cost model and scenario, e.g. "target host, vehicles_1")."""
    unit = table.unit
    if (budget.unit == "M") != (unit == "M"):
        if budget.unit == "M":
            raise InfeasibleBudget(f"budget {budget} counts MAdds but this cost model measures latency "
                                   f"({what}); give the budget in ms or us, or search by MAdds")
        raise InfeasibleBudget(f"budget {budget} is a latency but this cost model counts MAdds ({what}); "
                               f"give the budget in M (e.g. 8M), or name a latency target")
    lo, hi = table.bounds(num_classes)
    if budget.value < lo:
        raise InfeasibleBudget(
            f"budget {budget} is below the feasible range {format_cost(lo, unit, 'up')}.."
            f"{format_cost(hi, unit, 'down')} for {what or 'this cost model'} ({num_classes} classes)")
    # A budget above every architecture's cost is met by all of them: the search returns the
    # largest subnet with a note (:func:`edgeeas.search.find_arch`), never an error.
    return budget.value


def parse_margin(text) -> str | float:
    """``--latency-margin``: ``auto`` (from the target predictor's held-out errors) or a
    percentage (``5%``, ``5``, ``0``), returned as a fraction."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        t = str(text).strip().lower()
        if t == "auto":
            return "auto"
        try:
            value = float(t.removesuffix("%")) / 100.0
        except ValueError:
            raise BudgetError(f"latency margin {text!r}: expected 'auto' or a percentage such as 5% or 0") from None
    if not 0.0 <= value < 1.0:
        raise BudgetError(f"latency margin {text!r}: expected 'auto' or a percentage from 0% to 99%")
    return value
