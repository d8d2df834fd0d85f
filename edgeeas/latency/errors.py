"""The latency package's errors: all one line, all under :class:`edgeeas.errors.EdgeeasError`."""
from __future__ import annotations

from ..errors import EdgeeasError, EdgeeasUsageError

__all__ = ["LatencyError", "TableMismatchError", "EmulatedDeviceError", "MissingRowError"]


class LatencyError(EdgeeasError):
    """A latency table or predictor cannot be built or read (one line)."""


class TableMismatchError(EdgeeasUsageError):
    """The target's table was measured for another search space or protocol."""


class EmulatedDeviceError(EdgeeasUsageError):
    """A latency table was asked of an emulated device (its timings mean nothing on a phone)."""


class MissingRowError(LatencyError, KeyError):
    """The table has no row for a layer the predictor was asked about."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
