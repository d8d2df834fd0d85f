"""Child processes die with their parent (issue 13, item 7): a ``kill -9`` of ``edgeeas bench``
leaves no export worker and no runner behind."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def _orphans_after_kill_9(script: str) -> list[int]:
    """Run ``script`` (it prints its children's pids, one line, then waits), kill -9 it, and
    return the children still alive 10 s later."""
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], stdout=subprocess.PIPE, text=True,
                              cwd=os.path.dirname(os.path.dirname(__file__)))
    try:
        kids = [int(p) for p in parent.stdout.readline().split()]
        assert kids and all(_alive(p) for p in kids)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(p) for p in kids):
        time.sleep(0.1)
    left = [p for p in kids if _alive(p)]
    for p in left:
        os.kill(p, signal.SIGKILL)
    return left


def test_export_pool_workers_die_with_bench():
    """The export pool exactly as edgeeas.latency.export starts it (spawn, the same initializer)."""
    script = """
        import multiprocessing, os, sys, time
        from concurrent.futures import ProcessPoolExecutor
        from edgeeas.latency.export import _worker_init
        ctx = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(max_workers=2, mp_context=ctx, initializer=_worker_init, initargs=(os.getpid(),))
        futs = [pool.submit(time.sleep, 600) for _ in range(2)]
        while len(pool._processes) < 2:
            time.sleep(0.05)
        time.sleep(1)
        print(*pool._processes, flush=True)
        time.sleep(600)
    """
    assert _orphans_after_kill_9(script) == []


def test_runner_subprocess_dies_with_bench():

    script = """
        import subprocess, sys, time
        from device_bench.lifetime import die_with_parent
        p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], preexec_fn=die_with_parent)
        time.sleep(0.5)
        print(p.pid, flush=True)
        time.sleep(600)
    """
    assert _orphans_after_kill_9(script) == []
