"""``edgeeas regress``: latency and accuracy of models on a device farm, against a baseline."""
from __future__ import annotations

import sys

import click


class _UsageExit(click.ClickException):
    """A bad farm/baseline file or an unusable setup: one line on stderr, exit 2."""

    exit_code = 2


@click.command("regress")
@click.option("--farm", "farm_path", default="farm.yaml", show_default=True,
              help="devices (host, adb serials, host:port, targets.yaml names) and models")
@click.option("--baseline", "baseline_path", default="baseline.json", show_default=True,
              help="baseline JSON to compare with (or to write with --update-baseline)")
@click.option("--update-baseline", is_flag=True, help="measure and write a new baseline (atomically) instead of checking")
@click.option("--out", "out_dir", default="regress-out", show_default=True,
              help="report folder: junit.xml, regress.json, report.html")
@click.option("--latency-tol", default=0.10, show_default=True, type=click.FloatRange(0),
              help="allowed slowdown over the baseline, a fraction (0.10 = +10 %), judged by the noise-aware "
                   "verdict: PASS, FAIL or INCONCLUSIVE")
@click.option("--accuracy-tol", default=1.0, show_default=True, type=click.FloatRange(0),
              help="allowed accuracy drop, percentage points")
@click.option("--confidence", default=0.95, show_default=True, type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="confidence of the latency verdict's interval")
@click.option("--max-passes", default=15, show_default=True, type=click.IntRange(3),
              help="cap of passes (runner processes) per model before a latency verdict is INCONCLUSIVE")
@click.option("--baseline-passes", default=None, type=click.IntRange(1),
              help="passes per model when recording a baseline [default: the verdict's first look, 9]")
@click.option("--jobs", default=0, type=click.IntRange(0), help="devices measured at once (0: all)")
@click.option("--data", default=None, help="CIFAR-100 for models with a manifest (default: farm.yaml `data`, "
                                           "$EDGEEAS_DATA, ./data)")
@click.option("--retries", default=1, show_default=True, type=click.IntRange(0),
              help="retries of a device that drops out")
@click.option("--quiet", is_flag=True, help="print only the verdict and warnings")
def regress(farm_path, baseline_path, update_baseline, out_dir, latency_tol, accuracy_tol, confidence, max_passes,
            baseline_passes, jobs, data, retries, quiet):
    """Check every device x model of FARM against BASELINE; write JUnit XML, JSON and HTML reports.

    \b
    Exit status: 0 all checks pass, 1 a regression (latency or accuracy),
    2 a usage or infrastructure error (bad file, unreachable device: never a pass),
    3 a latency verdict INCONCLUSIVE (the device too noisy to tell within --max-passes).
    2 wins over 1, 1 over 3: a run that could not reach a device is not a complete check.
    \b
      edgeeas regress --farm farm.yaml --baseline baseline.json --update-baseline
      edgeeas regress --farm farm.yaml --baseline baseline.json --out regress-out
    """
    from ..errors import EdgeeasError
    from ..regress import RegressUsageError, Tolerances, load_farm, run_regress, write_baseline, write_reports
    from ..utils import command_line

    def say(msg: str) -> None:
        if not quiet:
            click.echo(msg, err=True)

    from ..utils import check_output_dir, check_output_file

    try:
        # output paths first: a measurement is never lost to a path that cannot be written
        check_output_dir(out_dir, "--out folder")
        if update_baseline:
            check_output_file(baseline_path, "--baseline file")
        tol = Tolerances(latency_rel=latency_tol, accuracy_pp=accuracy_tol, confidence=confidence,
                         max_passes=max_passes)
        farm = load_farm(farm_path)
        res = run_regress(farm, baseline_path, update=update_baseline, tolerances=tol, jobs=jobs, base_passes=baseline_passes,
                          data=data, retries=retries, log_fn=say, command=command_line())
    except RegressUsageError as e:
        raise _UsageExit(str(e)) from None
    except EdgeeasError as e:  # target resolution, adb unavailable: infrastructure
        raise _UsageExit(" ".join(str(e).split())) from None
    if res.warnings:
        click.echo("!" * 78, err=True)
        for w in res.warnings:
            click.echo(f"WARNING: {w}", err=True)
        click.echo("!" * 78, err=True)
    for line in _problem_lines(res.cases):
        click.echo(line, err=True)
    try:
        paths = write_reports(res, out_dir)
    except OSError as e:
        saved = _save_elsewhere(res)
        raise _UsageExit(f"could not write the reports to {out_dir} ({e.strerror or e}); the measurements "
                         f"are kept in {saved}") from None
    code = res.exit_code
    n = res.counts()
    if update_baseline:
        if code == 0:
            try:
                write_baseline(res, baseline_path)
            except (EdgeeasError, OSError) as e:
                saved = _save_elsewhere(res)
                raise _UsageExit(f"{getattr(e, 'strerror', None) or e}: baseline not written to {baseline_path}; "
                                 f"the measurements are kept in {saved} and the report in {paths['html']}") from None
            click.echo(f"baseline written to {baseline_path}: {len(res.devices)} device(s) x {len(res.models)} "
                       f"model(s); report {paths['html']}")
        else:
            click.echo(f"baseline NOT written: {n['error']} error(s); report {paths['html']}", err=True)
    else:
        verdict = {0: "PASS", 1: "REGRESSION", 2: "ERROR", 3: "INCONCLUSIVE"}[code]
        click.echo(f"{verdict}: {n['pass']} passed, {n['fail']} failed, {n['inconclusive']} inconclusive, "
                   f"{n['error']} errors "
                   f"({len(res.devices)} device(s) x {len(res.models)} model(s), {res.seconds:.1f} s); "
                   f"junit {paths['junit']}, report {paths['html']}")
    sys.exit(code)


def _save_elsewhere(res) -> str:
    """The run's measurements as JSON in a new file under the temp folder (its path), when the
    requested output could not be written: never lose a measurement to an output error."""
    import json
    import tempfile

    fd, path = tempfile.mkstemp(prefix="edgeeas-regress-", suffix=".json")
    with open(fd, "w") as f:
        json.dump(res.to_dict() if hasattr(res, "to_dict") else vars(res), f, indent=2, default=str)
    return path


def _problem_lines(cases) -> list[str]:
    """One line per distinct failure: a device that cannot be reached fails every model and
    metric with the same message, which is said once, with how many checks it cost."""
    seen: dict[tuple[str, str], int] = {}
    for c in cases:
        if c.status in ("fail", "error", "inconclusive"):
            key = (c.status, c.message)
            seen[key] = seen.get(key, 0) + 1
    return [f"{status.upper()}: {msg}" + (f" ({n} checks)" if n > 1 else "") for (status, msg), n in seen.items()]
