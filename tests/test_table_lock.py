"""One bench per table (issue 13, item 7): a second ``bench`` on a table being measured stops at
once with one line naming the holder; a killed holder's lock is gone (the kernel drops flocks)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from types import SimpleNamespace

import pytest

from edgeeas.latency.bench import TableBusyError, bench_targets, table_lock


def test_second_bench_on_a_table_names_the_holder(tmp_path):
    t = SimpleNamespace(name="host", directory=tmp_path / "targets" / "host")
    with table_lock(t.directory, t.name):
        with pytest.raises(TableBusyError) as e:
            bench_targets([t], subnets=0)
    msg = str(e.value)
    assert "\n" not in msg and f"pid {os.getpid()}" in msg and "target host" in msg and "since" in msg
    # released: another holder may take it
    with table_lock(t.directory, t.name):
        pass


def test_a_killed_holders_lock_is_released(tmp_path):
    d = tmp_path / "targets" / "pixel"
    code = ("import sys, time; from edgeeas.latency.bench import table_lock\n"
            f"with table_lock({str(d)!r}, 'pixel'):\n    print('held', flush=True); time.sleep(600)\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "held"
        with pytest.raises(TableBusyError, match=f"pid {p.pid} "):
            with table_lock(d, "pixel"):
                pass
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    with table_lock(d, "pixel"):
        pass
