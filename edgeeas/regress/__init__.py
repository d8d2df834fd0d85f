"""Device-farm regression checks: latency and accuracy of shipped models against a baseline.

    from edgeeas.regress import load_farm, run_regress, Tolerances, write_baseline, write_reports
    farm = load_farm("farm.yaml")
    res = run_regress(farm, "baseline.json", tolerances=Tolerances(latency_rel=0.10))
    res.exit_code          # 0 all pass, 1 a regression, 2 an unreachable device / infrastructure error
    write_reports(res, "regress-out")   # junit.xml, regress.json, report.html (+ PNGs)

The package follows the data, in reading order (``docs/regress.md`` is the user's guide):

=============  ===========================================================================
``farm``       ``farm.yaml`` (devices, models, protocol, eval settings) → :class:`Farm`;
               targets for its devices; :func:`run_on_devices`, one job per device
``baseline``   the baseline schema: :func:`load_baseline`, :func:`write_baseline`
``checks``     :class:`Tolerances`, :func:`latency_check`, :func:`accuracy_check`, the cases
``run``        evaluation inputs, the per-device job, :func:`run_regress` → :class:`RegressResult`
``render``     JUnit XML, ``regress.json``, the HTML report and its plots
=============  ===========================================================================
"""
from .baseline import BASELINE_FORMAT, BASELINE_VERSION, baseline_from, load_baseline, write_baseline
from .checks import Case, Tolerances, accuracy_check, device_cases, latency_check, protocol_warnings
from .farm import (DeviceEntry, Farm, FarmError, FarmResult, ModelEntry, RegressUsageError, build_targets, load_farm,
                   run_on_devices)
from .render import render_html, render_junit, write_reports
from .run import RESULT_FORMAT, DeviceRun, EvalSet, RegressResult, run_regress

__all__ = [
    "Farm", "DeviceEntry", "ModelEntry", "RegressUsageError", "load_farm", "build_targets",
    "FarmError", "FarmResult", "run_on_devices",
    "BASELINE_FORMAT", "BASELINE_VERSION", "load_baseline", "baseline_from", "write_baseline",
    "Tolerances", "Case", "latency_check", "accuracy_check", "device_cases", "protocol_warnings",
    "EvalSet", "DeviceRun", "RegressResult", "RESULT_FORMAT", "run_regress",
    "write_reports", "render_junit", "render_html",
]
