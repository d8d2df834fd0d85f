"""``edgeeas bench`` (latency tables, any .tflite) and ``edgeeas latency`` (the predictor).

Heavy imports (torch, litert-torch, the interpreter) happen inside the commands.  Every
expected failure is one line on stderr: exit 2 for a bad value, 1 for anything else.
"""
from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import EdgeeasError, EdgeeasUsageError, first_line
from ._click import OneLineCommand

__all__ = ["bench", "latency"]

TFLITE_MAGIC = b"TFL3"


def _protocol(threads: int, warmup_runs: int, num_runs: int, passes: int = 3, input_layer_shape: str | None = None):
    from device_bench import Protocol

    try:
        return Protocol(threads=threads, warmup_runs=warmup_runs, num_runs=num_runs, passes=passes,
                        input_layer_shape=input_layer_shape)
    except ValueError as e:
        raise EdgeeasUsageError(f"--input-layer-shape {input_layer_shape}: {e}" if "input_layer_shape" in str(e)
                                else str(e)) from None


def _targets(target_name, adb_serials, name, targets_file, benchmark_binary, protocol) -> list:
    from ..targets import _NAME_RE, resolve_target

    if len(adb_serials) > 1 and (name or (target_name and target_name != "host")):
        raise EdgeeasUsageError("--name/--target name one target; with several --adb-serial each device is named "
                                "after its serial (or its targets.yaml name)")
    if adb_serials:
        targets = [resolve_target(target_name if len(adb_serials) == 1 else None, adb_serial=s,
                                  targets_file=targets_file, protocol=protocol, benchmark_binary=benchmark_binary)
                   for s in adb_serials]
    else:
        targets = [resolve_target(target_name, targets_file=targets_file, protocol=protocol,
                                  benchmark_binary=benchmark_binary)]
    if name:
        if not _NAME_RE.match(name):
            raise EdgeeasUsageError(f"bad target name {name!r}: use letters, digits, '_', '-', '.', ':'")
        targets[0].name = name
    return targets


def _load_space(space_path):
    from ..space import DEFAULT_SPACE, SearchSpace

    if not space_path:
        return DEFAULT_SPACE
    p = Path(space_path)
    if not p.is_file():
        raise EdgeeasUsageError(f"--space {p}: no such file (give a supernet checkpoint or a JSON search space)")
    if p.suffix in (".pt", ".pth"):
        from ..checkpoint import load_raw

        d = load_raw(p).get("space")
    else:
        try:
            d = json.loads(p.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise EdgeeasUsageError(f"--space {p} is not a JSON search space ({first_line(e)})") from None
    try:
        return SearchSpace.from_dict(d)
    except (KeyError, TypeError, ValueError) as e:
        raise EdgeeasUsageError(f"--space {p} is not a valid search space ({type(e).__name__}: {first_line(e)})") from None


def _check_tflite(path: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise EdgeeasUsageError(f"no such file: {p}")
    with open(p, "rb") as f:
        head = f.read(8)
    if len(head) < 8 or head[4:8] != TFLITE_MAGIC:
        raise EdgeeasError(f"{p} is not a TFLite model (no 'TFL3' file identifier at byte 4)")
    return p


def _fmt_us(v: float) -> str:
    return f"{v:.0f}" if v >= 100 else f"{v:.3g}"


def _summary(path: Path, m, target) -> list[str]:
    """benchmark_model's summary lines, plus median and p90."""
    import statistics

    runs = list(m.runs_us)
    avg = statistics.fmean(runs) if runs else float("nan")
    p = m.protocol
    lines = [
        f"Graph: [{path}]",
        f"Target: {target.describe()}  runner {p.runner} {p.runner_version}, {p.interpreter} {p.interpreter_version}, "
        f"{p.threads} thread(s), xnnpack {'on' if p.use_xnnpack else 'off'}"
        + (f", input shapes {p.input_layer_shape}" if p.input_layer_shape else ""),
        f"count={m.count} first={_fmt_us(runs[0])} curr={_fmt_us(runs[-1])} min={_fmt_us(min(runs))} "
        f"max={_fmt_us(max(runs))} avg={_fmt_us(avg)} std={_fmt_us(m.std_ms * 1e3)}" if runs else f"count={m.count}",
        f"Inference timings in us: Init: {_fmt_us((m.init_ms or 0) * 1e3)}, Inference (avg): {_fmt_us(avg)}",
        f"median {m.median_ms:.4f} ms, p90 {m.p90_ms:.4f} ms ({m.count} runs after {p.warmup_runs} warm-up, "
        f"{m.attempts} attempt(s), spread {100 * m.spread:.1f} %)",
    ]
    if len(m.pass_medians_ms) > 1:
        lines.append(f"median of {len(m.pass_medians_ms)} passes: "
                     + ", ".join(f"{v:.4f}" for v in m.pass_medians_ms) + " ms")
    if m.command:
        lines.append(f"reproduce: {m.command}")
    return lines


_BENCH_EPILOG = """\b
Examples:
  edgeeas bench --target host                   build or resume the host table, then check the predictor
  edgeeas bench --adb-serial A --adb-serial B   two phones in parallel (one thread each)
  edgeeas bench model.tflite                    measure any .tflite file on the host
  edgeeas bench model.tflite --adb-serial A     ... or on a phone
\b
Outputs in targets/NAME/: latency.sqlite (meta, rows, subnets), predictor.json (fit and
error distribution), predicted_vs_measured.png, fingerprint.json, protocol.json.
Single-layer and subnet models are exported once into targets/_models/ and shared by
every target.  Kill it at any time: measured rows are committed one by one and a rerun
measures only what is missing.
"""


@click.command("bench", cls=OneLineCommand, epilog=_BENCH_EPILOG,
               context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("files", nargs=-1, metavar="[FILE.tflite]...")
@click.option("--target", "target_name", default=None,
              help="host (default), a name from targets.yaml, or an adb serial")
@click.option("--adb-serial", "adb_serials", multiple=True,
              help="adb device serial (USB serial or host:port); repeat to bench several devices in parallel")
@click.option("--name", default=None, help="name of the target's table directory (targets/NAME/); use a new name "
              "to keep tables measured under other protocols")
@click.option("--targets-file", default=None, help="targets.yaml with named device profiles")
@click.option("--benchmark-binary", default=None,
              help="official TFLite benchmark_model binary (Android build) to push and use instead of our runner")
@click.option("--threads", "--num-threads", "threads", default=1, show_default=True, type=click.IntRange(1),
              help="interpreter threads")
@click.option("--warmup-runs", default=5, show_default=True, type=click.IntRange(0),
              help="untimed runs before the timed ones (benchmark_model's --warmup_runs)")
@click.option("--num-runs", default=50, show_default=True, type=click.IntRange(1), help="measured runs per model")
@click.option("--passes", default=3, show_default=True, type=click.IntRange(1),
              help="sweeps over the models, each in its own runner process; a figure is the median of its "
                   "passes (one burst of load from elsewhere cannot move it)")
@click.option("--input-layer-shape", default=None, metavar="SHAPE[:SHAPE...]",
              help="FILE mode: shapes of the model's inputs, e.g. 8,32,32,3 (':' between inputs), for models with "
                   "dynamic dimensions (benchmark_model's --input_layer_shape); default: the model's own shapes")
@click.option("--export-jobs", default=None, type=click.IntRange(1),
              help="processes exporting models in parallel [default: $EDGEEAS_EXPORT_JOBS, else one per CPU, "
                   "at most 4]")
@click.option("--subnets", default=100, show_default=True, type=click.IntRange(0),
              help="random whole subnets measured end to end to fit and check the predictor (0: skip)")
@click.option("--space", "space_path", default=None,
              help="search space: a supernet checkpoint or a JSON file of its fields (default: the built-in space)")
@click.option("--force", is_flag=True, help="discard the target's existing table (another space or protocol)")
@click.option("--allow-emulated", is_flag=True,
              help="build a table on an emulated device (Android emulator, the arm64 test device: "
                   "ro.kernel.qemu=1), refused by default: its timings mean nothing on a phone")
@click.option("--quiet", is_flag=True, help="no progress bars")
def bench(files, target_name, adb_serials, name, targets_file, benchmark_binary, threads, warmup_runs, num_runs,
          passes, input_layer_shape, export_jobs, subnets, space_path, force, allow_emulated, quiet):
    """Measure latency on a target: its latency table and predictor, or any .tflite FILE.

    Without FILE: build or resume the target's latency table (one int8 single-layer model
    per distinct stem/block/head configuration of the search space), measure --subnets
    random whole subnets end to end, fit the predictor's overhead and store its held-out
    error distribution.  With FILE(s): measure them and print benchmark_model's summary
    with the median and p90.
    """
    protocol = _protocol(threads, warmup_runs, num_runs, passes, input_layer_shape)
    if input_layer_shape and not files:
        raise EdgeeasUsageError("--input-layer-shape applies to FILE.tflite measurements; a latency table's "
                                "models have static shapes")
    if files:
        paths = [_check_tflite(f) for f in files]
        targets = _targets(target_name, adb_serials, name, targets_file, benchmark_binary, protocol)
        _bench_files(paths, targets)
        return
    space = _load_space(space_path)
    targets = _targets(target_name, adb_serials, name, targets_file, benchmark_binary, protocol)
    from ..utils import check_output_dir

    for t in targets:  # a file in the way fails before any device is reached or model exported
        check_output_dir(t.directory, "target folder")

    from ..latency import bench_targets
    from ..targets import TargetStore

    log = (lambda m: None) if quiet else (lambda m: click.echo(m, err=True))
    reports = bench_targets(targets, space, subnets=subnets, force=force, progress=not quiet, log=log,
                            export_jobs=export_jobs, allow_emulated=allow_emulated)
    if len(reports) == 1:
        (r,) = reports.values()
        if r.error and not r.rows_measured and not TargetStore(r.directory).table_path.exists():
            raise EdgeeasError(f"{r.target}: {r.error}")
    failed = []
    for r in reports.values():
        line = (f"{r.target}: rows {r.rows_total} ({r.rows_measured} measured now), "
                f"subnets {r.subnets_total} ({r.subnets_measured} measured now)")
        if r.predictor:
            e = r.predictor["errors"]["heldout"]
            if e.get("n"):
                line += (f"; predictor held-out MAPE {e['mape_pct']:.2f} %, {100 * e['within_10_pct']:.1f} % "
                         f"within ±10 % (n={e['n']})")
            line += f" -> {TargetStore(r.directory).predictor_path}"
        click.echo(line)
        if r.error:
            failed.append(r)
    if failed:
        for r in failed:
            click.echo(f"{r.target} failed: {r.error}", err=True)
        raise EdgeeasError(f"{len(failed)} of {len(reports)} target(s) failed ({', '.join(r.target for r in failed)}); "
                           f"the others' rows are kept; rerun to resume")


def _bench_files(paths: list[Path], targets: list) -> None:
    from ..latency import BenchReport, _parallel

    results, reports = {}, {t.name: BenchReport(t.name) for t in targets}
    errors: dict[str, dict[str, str]] = {t.name: {} for t in targets}

    def run(t, _i):
        # one runner for all the files; if that fails, each file alone, so one bad file
        # (unloadable, an unresolved custom op) costs only its own result
        try:
            results[t.name] = t.measure_many(paths)
            return
        except Exception as e:  # noqa: BLE001 -- retried file by file below
            if len(paths) == 1:
                raise
            first = e
        res = {}
        for p in paths:
            try:
                res.update(t.measure_many([p]))
            except Exception as e:  # noqa: BLE001 -- reported per file
                errors[t.name][str(p)] = first_line(e)
        if not res:  # nothing ran: the target itself failed
            raise first
        results[t.name] = res

    _parallel(targets, run, reports)
    n_bad = 0
    for t in targets:
        if t.name not in results:
            continue
        for p in paths:
            if str(p) in results[t.name]:
                for line in _summary(p, results[t.name][str(p)], t):
                    click.echo(line)
            else:
                n_bad += 1
                click.echo(f"{p}: FAILED on {t.name}: {errors[t.name].get(str(p), 'no result')}")
    failed = [r for r in reports.values() if r.error]
    if len(failed) == 1 and len(targets) == 1:
        raise EdgeeasError(failed[0].error)
    if failed:
        for r in failed:
            click.echo(f"{r.target} failed: {r.error}", err=True)
        raise EdgeeasError(f"{len(failed)} of {len(reports)} target(s) failed ({', '.join(r.target for r in failed)})")
    if n_bad:  # the good files' results are printed above; the exit status says some failed
        raise EdgeeasError(f"{n_bad} of {len(paths) * len(targets)} measurement(s) failed (see above)")


@click.command("latency", cls=OneLineCommand,
               context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("arch")
@click.option("--target", "target_name", default="host", show_default=True,
              help="target name (targets/NAME/) or a target directory")
@click.option("--classes", default=5, show_default=True, type=click.IntRange(1),
              help="classes of the deployed head (5 = one CIFAR-100 superclass)")
@click.option("--verbose", "-v", is_flag=True, help="per-layer breakdown and the predictor's error figures")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def latency(arch, target_name, classes, verbose, as_json):
    """Predicted latency of ARCH on a target (architecture string, or smallest/middle/largest).

    The sum of the target's table rows for ARCH's stem, blocks and head, plus the overhead
    fitted on whole-subnet measurements by `edgeeas bench`.
    """
    from ..latency import LatencyError, LatencyPredictor
    from ..targets import TargetStore

    d = TargetStore.find(target_name).directory
    if not d.is_dir():
        raise LatencyError(f"no latency table for target {target_name!r} (no {d}): run "
                           f"`edgeeas bench --target {target_name}` first")
    pred = LatencyPredictor.load(d)
    space = pred.space
    a = space.resolve(arch)
    ms = pred.predict(a, classes)
    err = pred.errors.get("heldout", {}) if pred.errors else {}
    if as_json:
        out = {"arch": str(a), "target": pred.target, "num_classes": classes, "predicted_ms": ms,
               "fixed_ms": pred.fixed_ms(classes), "fit": pred.fit.to_dict(), "heldout_error": err}
        if verbose:
            out["layers"] = [{"layer": k, "row_ms": r, "ms": c} for k, r, c in pred.breakdown(a, classes)]
        click.echo(json.dumps(out, indent=2))
        return
    click.echo(f"{a}: {ms:.4f} ms predicted on {pred.target} ({classes} classes)")
    if verbose:
        click.echo(f"{'layer':<34} {'row ms':>9} {'ms':>9}")
        for k, r, c in pred.breakdown(a, classes):
            click.echo(f"{k:<34} {'' if r != r else f'{r:.4f}':>9} {c:>9.4f}")
        f = pred.fit
        ks = "".join(f", k{k} blocks x{v:.4f}" for k, v in sorted(f.kernel_scales.items()))
        click.echo(f"fit: intercept {f.intercept_ms:.4f} ms, scale {f.scale:.4f}{ks}, per block {f.per_block_ms:.4f} ms "
                   f"({f.method}, n={f.n}); source {pred.source}")
        if err.get("n"):
            click.echo(f"held-out error on {err['n']} measured subnets: MAPE {err['mape_pct']:.2f} %, "
                       f"{100 * err['within_5_pct']:.1f} % within ±5 %, {100 * err['within_10_pct']:.1f} % within ±10 %")
