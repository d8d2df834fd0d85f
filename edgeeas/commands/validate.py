"""``edgeeas validate``: run an exported model on a target; latency vs budget, accuracy vs host.

The logic is :func:`edgeeas.validation.run_validation`; this module prints it.
"""
from __future__ import annotations

import json
from pathlib import Path

import click

from ._click import OneLineCommand
from ._options import data_option, enable_adb_log, verbose_option

__all__ = ["validate"]


def _table(r: dict) -> str:
    """:func:`~edgeeas.validation.run_validation`'s result as the table ``edgeeas validate`` prints."""
    def v(x, fmt="{:.2f}"):
        return "-" if x is None else fmt.format(x)

    acc = r["accuracy_manifest"]
    budget = r["budget"] or {}
    budget_text = budget.get("text") or "-"
    lines = [
        f"model      {r['model']}" + (f"  ({r['arch']})" if r.get("arch") else ""),
        f"target     {r['target']} ({r['target_kind']}); {', '.join(r['superclasses'])}: {r['images']} test images",
        "",
        f"{'':<22} {'device':>10} {'host':>10} {'manifest':>10}",
        f"{'latency ms (' + r['statistic'] + ')':<22} {v(r['latency_ms'], '{:.3f}'):>10} {'':>10} "
        f"{v(r['predicted_latency_ms'], '{:.3f}'):>10}   (manifest: predicted)",
        f"{'accuracy int8 %':<22} {v(r['accuracy_device_int8']):>10} {v(r['accuracy_host_int8']):>10} "
        f"{v(acc.get('host_int8_pct')):>10}",
        f"{'accuracy float %':<22} {'':>10} {'':>10} {v(acc.get('host_float_pct')):>10}",
        f"{'budget':<22} {budget_text:>32}",
        "",
    ]
    a = r.get("device_vs_host")
    if a:
        kernels = (f"device {a['device_kernels']} kernels, host {a['host_kernels']}")
        lines.append(f"device vs host ({kernels}): top-1 agreement {a['top1_agreement_pct']:.1f}% "
                     f"(at least {a['min_top1_agreement_pct']:g}%), accuracy difference "
                     f"{a['accuracy_diff_points']:+.2f} points (tolerance ±{a['max_accuracy_diff_points']:g} when "
                     f"real; {a['host_only_correct']} images only the host gets right, {a['device_only_correct']} "
                     f"only the device, McNemar p={a['mcnemar_p']:.2g}): {a['status']}")
        lines.append(f"outputs {'bit-identical' if r['outputs_identical'] else 'differ'}: "
                     f"{a['identical_outputs_pct']:.1f}% of images bit-identical, largest difference "
                     f"{a['max_abs_output_diff']:g} (output units)")
    lines += [f"note: {n}" for n in r["notes"]]
    if r.get("latency_note"):
        lines.append(f"note: {r['latency_note']}")
    if r.get("latency_verdict"):
        lv = r["latency_verdict"]
        lines.append(f"latency verdict: {lv['status']} ({lv['confidence'] * 100:g} % interval "
                     + (f"{lv['ci_low_ms']:.3f}-{lv['ci_high_ms']:.3f} ms" if lv["ci_low_ms"] is not None else "-")
                     + f" over {lv['passes']} passes of {r['protocol']['num_runs']} runs, {r['protocol']['threads']} "
                     f"thread(s); spread {lv['spread'] * 100:.1f} %)")
    lines += [f"FAIL: {f}" for f in r["failures"]]
    lines += [f"INCONCLUSIVE: {f}" for f in r.get("inconclusive", [])]
    if r.get("verdict", "PASS") == "PASS" and not r["failures"]:
        lines.append("PASS" if r.get("latency_checked", True) else
                     "PASS (accuracy and agreement with the host only: latency NOT checked)")
    return "\n".join(lines)


@click.command("validate", cls=OneLineCommand)
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--target", "target_name", default=None,
              help="host (default), a name from targets.yaml, a benched target, or host:port; an unknown "
                   "name is an error listing the known ones (a USB serial goes in --adb-serial)")
@click.option("--adb-serial", default=None, help="adb device serial (USB serial or host:port)")
@click.option("--targets-file", default=None, help="targets.yaml (default: $EDGEEAS_TARGETS_FILE, else ./targets.yaml)")
@click.option("--manifest", "manifest_path", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="manifest.json of the model (default: the one next to MODEL)")
@click.option("--superclass", default=None, help="superclass whose test images to use (needed without a manifest)")
@data_option
@click.option("--images", default=0, type=click.IntRange(0), help="use the first N test images only (0: all)")
@click.option("--threads", default=None, type=click.IntRange(1),
              help="interpreter threads [default: the target's recorded protocol, as its table was measured]")
@click.option("--budget", default=None, metavar="BUDGET",
              help="budget to check against (20ms, 500us, 8M), replacing the manifest's; without either, "
                   "latency is measured but not checked, and the output says so")
@click.option("--skip-latency", is_flag=True,
              help="measure no latency (an emulated device, where timings mean nothing): accuracy and "
                   "agreement with the host only, said so in the output")
@click.option("--use-xnnpack", "use_xnnpack", default=None, type=click.BOOL, metavar="true|false",
              help="the device's kernels, as benchmark_model's --use_xnnpack: true = the XNNPACK delegate, "
                   "false = the interpreter's builtin kernels [default: the target's protocol]; the host "
                   "reference always uses XNNPACK")
@click.option("--max-accuracy-gap", default=1.0, show_default=True, type=click.FloatRange(0),
              help="allowed difference between on-device and host int8 accuracy, in points (a larger one "
                   "fails when the disagreeing images make it real: exact McNemar p < 0.05)")
@click.option("--min-agreement", default=95.0, show_default=True, type=click.FloatRange(0, 100),
              help="least % of images whose on-device top-1 class is the host's (fails when even the 95 % "
                   "upper bound of the agreement is below it)")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
@verbose_option
def validate(model, target_name, adb_serial, targets_file, manifest_path, superclass, data, images, threads,
             budget, skip_latency, use_xnnpack, max_accuracy_gap, min_agreement, as_json, verbose):
    """Run MODEL on a target: latency by the target's protocol, accuracy on the superclass's test images.

    \b
      edgeeas validate out/pixel/vehicles_1/20ms/model.tflite --target pixel
      edgeeas validate model.tflite --adb-serial 192.168.1.20:5555 --superclass fish --images 200
    The device is --adb-serial, else a targets.yaml name or benched target given by --target
    (default: the manifest's), else $ANDROID_SERIAL, else the host; it must be of the kind the
    target's table was measured on.  Latency is measured by the target's recorded protocol, pass
    after pass, until the 95 % interval of the median is clear of the budget (PASS or FAIL) or
    15 passes are spent (INCONCLUSIVE: the device is too noisy to tell).
    The result is written to validation.json beside MODEL (NAME.validation.json beside a model
    not named model.tflite), where `edgeeas report` and `make deploy` read it.
    Device and host are compared by top-1 agreement (--min-agreement, %) and accuracy
    difference (--max-accuracy-gap, points), not bit for bit: other kernels or another ISA round
    int8 arithmetic differently (recorded as device_vs_host in validation.json).
    Exit status 1 unless PASS: the latency is over the budget (--budget, else the manifest's) or
    inconclusive, or a device-vs-host tolerance is broken.  Without a budget the latency is not
    checked, and the output says so.
    """
    from ..manifest import read_manifest
    from ..validation import MANIFEST, run_validation, save_validation, validation_path

    enable_adb_log(verbose)
    out = validation_path(model)
    r = run_validation(model, target_name=target_name, adb_serial=adb_serial, targets_file=targets_file,
                       manifest_path=manifest_path, superclass=superclass, data=data, images=images,
                       threads=threads, max_accuracy_gap=max_accuracy_gap, min_agreement=min_agreement,
                       budget=budget, check_latency=not skip_latency, use_xnnpack=use_xnnpack,
                       verbose=verbose or None)
    mp = manifest_path or model.parent / MANIFEST
    # validation.json beside the model, where report and deploy read it
    try:
        written = save_validation(model, r, read_manifest(mp) if Path(mp).is_file() else None)
    except OSError as e:  # the measurement is printed below all the same
        written = None
        click.echo(f"warning: could not write {out}: {e.strerror or e}", err=True)
    click.echo(json.dumps(r, indent=2, default=str) if as_json else _table(r))
    if written is not None and not as_json:
        click.echo(f"wrote {written}", err=True)
    if not r["passed"]:
        raise SystemExit(1)
