"""Run one job per device on several devices at once, without losing anyone's results.

    from edgeeas.farm import run_on_devices
    targets = [resolve_target(adb_serial=s) for s in serials]
    res = run_on_devices(targets, lambda t: build_table(t, on_row=commit))   # one thread per device
    res.results   -> {target name: what fn returned}
    res.errors    -> {target name: one-line error}       (the others' results are complete)
    res.raise_if_failed()

This is the farm primitive for ``edgeeas bench`` over several ``--adb-serial``\\ s and for
``edgeeas regress`` over ``farm.yaml``: every device gets its own thread and runs one job at a
time (a :class:`android_runner.Device` serialises its commands anyway, and two benchmarks on
one phone would disturb each other's figures).  A device that drops out
(:class:`android_runner.AdbConnectionError`: unplugged, Wi-Fi gone, adbd restarted) is retried
``retries`` times after ``retry_delay_s``; ``fn`` should therefore be resumable — e.g. commit
rows through ``Target.measure_many(on_result=...)`` and skip rows already on disk, as the
latency table builder does.  Any other error is reported for that device and not retried.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from .errors import EdgeeasError

__all__ = ["FarmResult", "FarmError", "run_on_devices"]

log = logging.getLogger(__name__)


class FarmError(EdgeeasError):
    """Some devices failed (one line naming each of them)."""


@dataclass
class FarmResult:
    results: dict[str, Any] = field(default_factory=dict)        # name -> fn's return value
    errors: dict[str, str] = field(default_factory=dict)         # name -> one-line error
    exceptions: dict[str, BaseException] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        done = ", ".join(self.results) or "none"
        failed = "; ".join(f"{n}: {e}" for n, e in self.errors.items()) or "none"
        return f"done: {done}; failed: {failed}"

    def raise_if_failed(self) -> None:
        if self.errors:
            raise FarmError(f"{len(self.errors)} of {len(self.errors) + len(self.results)} device(s) failed: "
                            + "; ".join(f"{n}: {e}" for n, e in self.errors.items()))


def _name(target) -> str:
    return str(getattr(target, "name", None) or getattr(target, "serial", None) or target)


def run_on_devices(targets: Sequence, fn: Callable[[Any], Any], *, retries: int = 1, retry_delay_s: float = 2.0,
                   on_done: Callable[[str, Any, BaseException | None], None] | None = None) -> FarmResult:
    """``fn(target)`` for every target in parallel (one thread each); never raises for a device's failure.

    ``on_done(name, result, error)`` is called from the device's thread when it finishes.
    KeyboardInterrupt in the caller's thread stops waiting; the device threads end with their
    current command.
    """
    from android_runner import AdbConnectionError

    names = [_name(t) for t in targets]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise FarmError(f"the same device is listed twice: {', '.join(dup)} (one job per device at a time)")
    out = FarmResult()
    lock = threading.Lock()

    def job(target) -> None:
        name = _name(target)
        start = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                value = fn(target)
            except AdbConnectionError as e:
                if attempt <= retries:
                    log.warning("%s dropped (%s): retry %d of %d in %g s", name, e, attempt, retries, retry_delay_s)
                    time.sleep(retry_delay_s)
                    continue
                err: BaseException | None = e
            except Exception as e:  # noqa: BLE001 - one device's failure must not stop the others
                err = e
            else:
                err = None
            break
        with lock:
            out.attempts[name] = attempt
            out.seconds[name] = round(time.monotonic() - start, 3)
            if err is None:
                out.results[name] = value
            else:
                out.errors[name] = " ".join(str(err).split()) or type(err).__name__
                out.exceptions[name] = err
        if on_done:
            on_done(name, None if err else value, err)

    if not targets:
        return out
    with ThreadPoolExecutor(max_workers=len(targets), thread_name_prefix="farm") as pool:
        for f in [pool.submit(job, t) for t in targets]:
            f.result()
    # keep the callers' order
    out.results = {n: out.results[n] for n in names if n in out.results}
    out.errors = {n: out.errors[n] for n in names if n in out.errors}
    return out
