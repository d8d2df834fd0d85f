"""The baseline: what a quiet farm measured once, and the schema every check reads it through.

``baseline.json`` (written atomically by ``--update-baseline``, format ``edgeeas-regress-baseline`` v1)::

    {format, version, created, command, farm, versions{python, ai-edge-litert, ...},
     eval{seed, random_inputs, max_images},
     models{KEY: {path, sha256, bytes, manifest{arch, target, predicted_latency_ms, classes, ...} | null,
                  eval{mode: labels|agreement, ...},
                  validation{target, validated, device_vs_host{...}} (when validation.json validated this file)}},
     devices{NAME: {kind, serial, protocol{threads, runner_version, ...}, fingerprint{...},
                    models{KEY: {latency{value_ms, median_ms, p90_ms, std_ms, spread, runs_us[], attempts_ms[],
                                         command},
                                 accuracy{mode, metric, accuracy_pct, n, top1[],
                                          device_vs_host{top1_agreement_pct, accuracy_diff_points,
                                                         mcnemar_p, status, ...} (labels mode)}}}}}}

The baseline is only written when every device succeeded.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import EdgeeasError
from .farm import RegressUsageError

if TYPE_CHECKING:
    from .run import RegressResult

__all__ = ["BASELINE_FORMAT", "BASELINE_VERSION", "load_baseline", "baseline_from", "write_baseline"]

BASELINE_FORMAT = "edgeeas-regress-baseline"
BASELINE_VERSION = 1


def load_baseline(path: str | os.PathLike) -> dict:
    """Read and validate a baseline (the schema in the module docstring).

    Returns:
        The baseline document as a dict.

    Raises:
        RegressUsageError: a missing, unreadable, corrupt or foreign file, another version, or a
            record without the fields the checks read (one line, exit 2 in the CLI).
    """
    path = Path(path)
    form = (f"expected a JSON baseline written by `edgeeas regress --update-baseline` "
            f"(format {BASELINE_FORMAT!r}, version {BASELINE_VERSION})")
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise RegressUsageError(f"baseline {path} does not exist: record one with --update-baseline") from None
    except OSError as e:
        raise RegressUsageError(f"baseline {path}: cannot read ({e.strerror or e})") from None
    try:
        b = json.loads(text)
    except ValueError as e:
        raise RegressUsageError(f"baseline {path}: corrupt JSON ({e}); {form}") from None
    if not isinstance(b, dict) or b.get("format") != BASELINE_FORMAT:
        got = b.get("format") if isinstance(b, dict) else type(b).__name__
        raise RegressUsageError(f"baseline {path}: not a regress baseline (format {got!r}); {form}")
    if b.get("version") != BASELINE_VERSION:
        raise RegressUsageError(f"baseline {path}: version {b.get('version')!r} is not supported; {form}")
    try:
        for dname, dev in b["devices"].items():
            dev["protocol"], dev["fingerprint"]
            for mkey, rec in dev["models"].items():
                float(rec["latency"]["value_ms"]), float(rec["latency"]["spread"])
                float(rec["accuracy"]["accuracy_pct"]), list(rec["accuracy"]["top1"])
        for mkey, m in b["models"].items():
            m["path"], m["eval"]["mode"]
        b["eval"]["seed"], b["eval"]["random_inputs"]
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise RegressUsageError(f"baseline {path}: malformed (missing or bad {e}); {form}") from None
    return b


def baseline_from(res: RegressResult) -> dict:
    """The baseline document of an --update-baseline run.

    Raises:
        EdgeeasError: some device failed (a baseline is only recorded from a complete run).
    """
    from ..utils import versions

    failed = {n: d.error for n, d in res.devices.items() if d.error}
    if failed:
        raise EdgeeasError("baseline not written: " + "; ".join(f"{n}: {e}" for n, e in failed.items()))
    devices = {}
    for n, d in res.devices.items():
        devices[n] = {"kind": d.kind, "serial": d.serial, "protocol": d.protocol, "fingerprint": d.fingerprint,
                      "models": {k: {"latency": d.latency[k], "accuracy": d.accuracy[k]} for k in res.models}}
    return {"format": BASELINE_FORMAT, "version": BASELINE_VERSION,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": res.command, "farm": res.farm,
            "versions": versions(), "eval": dict(res.eval), "models": res.models, "devices": devices}


def write_baseline(res: RegressResult, path: str | os.PathLike) -> Path:
    """Write the baseline of an --update-baseline run atomically (temp file, then rename).

    Returns:
        ``path`` as a Path.

    Raises:
        EdgeeasError: some device failed; nothing is written.
    """
    from ..utils import atomic_write_text

    doc = baseline_from(res)
    atomic_write_text(path, json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return Path(path)
