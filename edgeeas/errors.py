"""One error tree: what the CLI prints as a single line (exit 1; exit 2 for usage errors),
never a traceback.  Every module raises a subclass of these for a user's mistake or an
unusable file/device, with the bad value and the expected form in the message."""
from __future__ import annotations

import sys

__all__ = ["EdgeeasError", "EdgeeasUsageError", "one_line_errors"]


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
    out: list[type[BaseException]] = [EdgeeasError]
    for mod, names in _FOREIGN.items():
        m = sys.modules.get(mod)
        if m is not None:
            out += [getattr(m, n) for n in names if hasattr(m, n)]
    return tuple(out)
