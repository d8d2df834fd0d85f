"""Child processes die with their parent.

A measurement runner or an export worker left behind by a ``kill -9`` of ``edgeeas bench`` holds
hundreds of MB and blocks forever on a pipe nobody reads.  On Linux the kernel can send a signal
to a process when its parent dies (``prctl(PR_SET_PDEATHSIG)``); :func:`die_with_parent` asks for
SIGKILL, and closes the race where the parent died before the request (the child was then
already re-parented).  Elsewhere it does nothing.
"""
from __future__ import annotations

import os
import signal
import sys

__all__ = ["die_with_parent"]

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int | None = None) -> bool:
    """Ask the kernel to SIGKILL this process when its parent exits; True if it could.

    ``parent_pid``: the pid the parent had when it started this process; if this process has
    already been re-parented (the parent died first), it exits at once.  Usable as a
    ``preexec_fn`` (no argument) or a pool ``initializer`` (the parent's ``os.getpid()``)."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        ok = libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)
    return ok
