"""``edgeeas specialize``, ``edgeeas deploy`` and ``edgeeas report`` (the logic is in
:mod:`edgeeas.specialize`, :mod:`edgeeas.deploy` and :mod:`edgeeas.report`)."""
from __future__ import annotations

import json
from pathlib import Path

import click

from ._options import data_option, search_options, strategy_option

__all__ = ["specialize", "deploy", "report"]


def _print_validation(v: dict) -> str:
    """One line of a validation result (:func:`edgeeas.validation.run_validation`)."""
    budget = v.get("budget") or {}
    b = budget.get("text") or "-"
    verdict = v.get("verdict") or ("PASS" if v["passed"] else "FAIL")
    status = verdict if v["passed"] else f"{verdict}: " + "; ".join(v["failures"] + v.get("inconclusive", []))
    return (f"  validated on {v['target']}: {v['latency_ms']:.3f} ms measured (budget {b}), "
            f"int8 accuracy {v['accuracy_device_int8']:.2f}% on the target vs {v['accuracy_host_int8']:.2f}% "
            f"on the host -> {status}")


@click.command("specialize")
@click.option("--target", default=None,
              help="target whose latency table judges ms/us budgets, and on which --validate runs "
                   "[default: host, or the $ANDROID_SERIAL device's target]")
@click.option("--adb-serial", default=None,
              help="the adb device --validate runs on (default: the target's, else $ANDROID_SERIAL); it must be "
                   "of the kind the target's table was measured on")
@click.option("--budget", "budget_args", multiple=True,
              help="20ms, 500us (latency on --target) or 8M (millions of MAdds); repeatable")
@click.option("--budgets", "budget_lists", multiple=True, help="comma-separated budgets for a batch: 5ms,10ms,20ms")
@click.option("--superclass", "superclasses", multiple=True,
              help="superclass of a scenario (repeat for several scenarios; a+b for one scenario of two)")
@click.option("--all-superclasses", is_flag=True, help="one scenario per superclass of the dataset")
@strategy_option(default="generator", show_default=True)
@click.option("--supernet", "supernet_arg", default=None, metavar="RUN_OR_PT",
              help="run directory or supernet checkpoint (default: runs/default)")
@click.option("--generator", "generator_path", default=None,
              help="generator file (default: the supernet's run directory/generator-<target>.pt, "
                   "generator-madds.pt for MAdds budgets)")
@data_option
@click.option("--out", default="out", show_default=True, help="output root: OUT/TARGET/SUPERCLASS/BUDGET/")
@click.option("--force", is_flag=True, help="replace folders that already hold another model")
@click.option("--validate", "do_validate", is_flag=True,
              help="run each emitted model on the target: measured latency vs budget, accuracy vs host")
@click.option("--recal-images", default=1000, show_default=True, type=click.IntRange(1),
              help="training images (of all superclasses) for BN recalibration")
@click.option("--calib-images", default=256, show_default=True, type=click.IntRange(1),
              help="scenario training images for int8 calibration")
@click.option("--test-images", default=0, type=click.IntRange(0), help="score on the first N test images (0: all)")
@search_options
@click.option("--seed", default=0, show_default=True, type=int,
              help="seed of the search and of the recalibration and calibration images")
@click.option("--threads", default=0, type=click.IntRange(0), help="torch threads (0: torch's default)")
@click.option("--quiet", is_flag=True, help="no progress bar or log lines")
@click.option("--json", "as_json", is_flag=True, help="print one JSON summary")
def specialize(target, adb_serial, budget_args, budget_lists, superclasses, all_superclasses, strategy, supernet_arg,
               generator_path, data, out, force, do_validate, recal_images, calib_images, test_images, fitness,
               evaluations, population, predictor_samples, latency_margin, seed, threads, quiet, as_json):
    """Emit an int8 TFLite model per scenario (superclasses + budget) into OUT/TARGET/SCENARIO/BUDGET/.

    \b
      edgeeas specialize --target host --budget 3ms --superclass vehicles_1
      edgeeas specialize --budget 8M --superclass fish --strategy uniform
      edgeeas specialize --all-superclasses --budgets 2ms,3ms,4ms --validate
    Each folder holds model.tflite (int8 NHWC [1,32,32,3] in, int8 logits over the scenario's
    classes out), model.onnx and manifest.json; it appears complete or not at all.  A folder
    made by the same request is kept (a rerun resumes a batch); any other is refused
    unless --force.
    """
    from ..errors import EdgeeasError
    from ..specialize import SpecializeConfig, Specializer, parse_budget_list, parse_scenarios
    from ..validation import validate_folder

    from ..search.budget import parse_margin

    from ..utils import check_output_dir

    budgets = parse_budget_list(list(budget_args) + list(budget_lists))  # bad budgets fail before any loading
    check_output_dir(out, "--out folder")  # a file in the way fails before any work
    parse_margin(latency_margin)
    if not budgets:
        raise click.UsageError("give --budget 20ms (or --budgets 5ms,10ms,...; 8M for MAdds)")
    from ..targets import TargetStore, check_store_kind, choose_device

    # one device rule for every command (--adb-serial, a name, $ANDROID_SERIAL, else the host); a
    # table measured on another kind of device is refused before any work
    choice = choose_device(target, adb_serial=adb_serial)
    check_store_kind(TargetStore.named(choice.name), choice.kind, choice.describe())
    target = choice.name
    if threads:
        import torch

        torch.set_num_threads(threads)
    log = (lambda m: None) if quiet else (lambda m: click.echo(m, err=True))
    cfg = SpecializeConfig(target=target, strategy=strategy, supernet=supernet_arg, generator=generator_path,
                           data=data, out=out, force=force, recal_images=recal_images, calib_images=calib_images,
                           test_images=test_images, fitness=fitness, evaluations=evaluations, population=population,
                           predictor_samples=predictor_samples, latency_margin=latency_margin, seed=seed)
    from ..data import load_dataset

    scenarios = parse_scenarios(load_dataset(data), superclasses, all_superclasses, budgets)
    sp = Specializer(cfg, log=log)
    plans = sp.plan(scenarios)
    bar = plans
    if len(plans) > 1 and not quiet and not as_json:
        from tqdm import tqdm

        bar = tqdm(plans, desc="specialize", unit="scenario", dynamic_ncols=True)
    summary, failed = [], []
    for plan in bar:
        m = sp.build(plan)
        acc = m.accuracy
        entry = {"scenario": str(plan.scenario), "folder": str(plan.dest), "status": plan.status,
                 "arch": m.arch, "predicted_latency_ms": m.predicted_latency_ms,
                 "madds_m": m.madds_m, "accuracy": acc.to_dict() if acc else None}
        if not as_json:
            pl = m.predicted_latency_ms
            what = "kept (same request)" if plan.status == "same" else "written"
            click.echo(f"{plan.dest}: {what}\n  {m.arch}  {m.madds_m:.2f} M MAdds, "
                       f"{m.params} params" + (f", {pl:.3f} ms predicted" if pl is not None else "")
                       + f"\n  accuracy on {acc.test_images} test images: float {acc.host_float_pct:.2f}%, "
                       f"int8 {acc.host_int8_pct:.2f}%")
        if do_validate:
            try:
                v = validate_folder(plan.dest, target, data=data, adb_serial=adb_serial)
            except EdgeeasError as e:
                v = {"passed": False, "failures": [str(e)], "error": True}
            entry["validation"] = {k: v.get(k) for k in ("passed", "verdict", "failures", "inconclusive", "latency_ms",
                                                         "accuracy_device_int8", "accuracy_host_int8")}
            if not v["passed"]:
                failed.append(f"{plan.scenario}: {'; '.join(v['failures'] + v.get('inconclusive', []))}")
            if not as_json:
                click.echo(_print_validation(v) if not v.get("error") else f"  validation failed: {v['failures'][0]}")
        summary.append(entry)
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
    if failed:
        raise click.ClickException(f"{len(failed)} of {len(plans)} models failed validation "
                                   f"(first: {failed[0]}); they are kept, with validation.json")


@click.command("deploy")
@click.option("--config", "config_path", default="deploy.yaml", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path), help="deploy.yaml (see deploy.example.yaml)")
@click.option("--out", default=None, help="output root for the models (default: the config's 'out', else out/)")
@click.option("--force", is_flag=True, help="replace model folders made by another request")
@data_option
@click.option("--targets-file", default=None, help="targets.yaml for named adb targets")
@click.option("--quiet", is_flag=True, help="no progress bars or log lines; only the final summary")
def deploy(config_path, out, force, data, targets_file, quiet):
    """Specialize and validate every scenario of deploy.yaml, then push the passing models.

    \b
    adb targets: to /data/local/tmp/edgeeas/SCENARIO/BUDGET/ on the device;
    host: copied to ./deploy/SCENARIO/BUDGET/ ('local_dir' in the config).
    A model that fails validation is never pushed; the exit status is 1 if any failed.
    """
    from ..deploy import deploy as run_deploy

    log = (lambda m: None) if quiet else (lambda m: click.echo(m, err=True))
    r = run_deploy(config_path, out=out, force=force, data=data, targets_file=targets_file, log=log,
                   progress=not quiet)
    for d in r["deployed"]:
        click.echo(f"deployed  {d['scenario']}: {d['latency_ms']:.3f} ms, {d['accuracy']:.2f}% -> {d['to']}")
    for d in r["refused"]:
        click.echo(f"REFUSED   {d['scenario']}: {d['why']} (not pushed; see {d['folder']}/validation.json)")
    if r["refused"]:
        raise click.ClickException(f"{len(r['refused'])} of {len(r['refused']) + len(r['deployed'])} models "
                                   f"failed validation and were not deployed")


@click.command("report")
@click.option("--target", default="host", show_default=True, help="the target whose models to report (out/TARGET/)")
@click.option("--out", "outs", multiple=True, help="output root(s) to collect models from (default: out)")
@click.option("--dest", default=None, help="where report.md and pareto.png go (default: OUT/TARGET/)")
@click.option("--measure", is_flag=True, help="validate models that have no validation.json yet")
@data_option
def report(target, outs, dest, measure, data):
    """Pareto plot (measured latency vs accuracy, per strategy) and a Markdown report linking every model."""
    from ..report import build_report
    from ..utils import check_output_dir

    if dest:
        check_output_dir(dest, "--dest folder")  # before --measure validates anything
    r = build_report(target, list(outs) or ["out"], Path(dest) if dest else None, measure=measure, data=data,
                     log=lambda m: click.echo(m, err=True))
    click.echo(f"{r['report']}: {r['models']} models, {r['validated']} validated"
               + (f"; plot {r['plot']}" if r["plot"] else "; no measured model to plot (run with --measure)"))
