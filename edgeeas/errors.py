"""One error tree: what the CLI prints as a single line (exit 1; exit 2 for usage errors),
never a traceback.  Every module raises a subclass of these for a user's mistake or an
unusable file/device, with the bad value and the expected form in the message."""
from __future__ import annotations

import sys

__all__ = ["EdgeeasError", "EdgeeasUsageError", "one_line_errors", "first_line"]


class EdgeeasError(Exception):
    """A failure the user can act on (bad file, missing run, unreachable device): exit 1."""


class EdgeeasUsageError(EdgeeasError, ValueError):
    """A bad command-line value (architecture string, budget, superclass name): exit 2."""


# Errors of the project's sibling packages, matched by name so that importing this module
# stays free (a module is only consulted once something already imported it).
_FOREIGN = {
    "android_runner.errors": ("AdbError",),
    "device_bench.protocol": ("RunnerError",),
    "device_bench.parse": ("BenchmarkParseError",),
}


def one_line_errors() -> tuple[type[BaseException], ...]:
    """The exception classes the CLI prints as one line instead of a traceback:
    :class:`EdgeeasError` plus the sibling packages' roots (``AdbError``, ``RunnerError``,
    ``BenchmarkParseError``), the latter only once their module has been imported (so this
    stays free to call).  Use as ``except one_line_errors() as e``."""
    out: list[type[BaseException]] = [EdgeeasError]
    for mod, names in _FOREIGN.items():
        m = sys.modules.get(mod)
        if m is not None:
            out += [getattr(m, n) for n in names if hasattr(m, n)]
    return tuple(out)


def first_line(err: BaseException, *, with_type: bool = False) -> str:
    """The first non-blank line of ``str(err)`` (what a one-line error shows), or the
    exception's type name when it has no message; ``with_type`` prefixes ``TypeName: ``."""
    lines = [ln for ln in str(err).strip().splitlines() if ln.strip()]
    if not lines:
        return type(err).__name__
    return f"{type(err).__name__}: {lines[0]}" if with_type else lines[0]
