"""Which exceptions are the user's doing: the CLI prints them as one line, never a traceback."""
from __future__ import annotations

from .checkpoint import CheckpointError
from .data import DataError
from .space import ArchError
from .train import TrainError

# Bad command-line values (exit 2).
USAGE_ERRORS: tuple[type[BaseException], ...] = (ArchError,)
# Bad files, missing runs, failed conversions (exit 1).
USER_ERRORS: tuple[type[BaseException], ...] = (DataError, CheckpointError, TrainError)
