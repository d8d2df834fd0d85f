#!/usr/bin/env python3
"""edgeeas on-device benchmark runner: TFLite ``benchmark_model``'s language in Python.

ONE self-contained file. It is pushed alone to a device
(``/data/local/tmp/edgeeas/runner.py``) and run with ``python3``, so it imports
only the standard library, numpy and the first TFLite interpreter it finds:
``ai_edge_litert.interpreter``, ``tflite_runtime.interpreter``,
``tensorflow.lite``. It must never import anything from the edgeeas repo.

Benchmark (same flags and summary lines as the official binary)::

    python3 runner.py --graph=m.tflite --num_threads=1 --warmup_runs=5 \\
        --num_runs=50 --min_secs=0 --warmup_min_secs=0 --use_xnnpack=true \\
        [--cpu_mask=f0]

Several graphs in one process (our extension; one block per graph, each
ending with its ``EDGEEAS_RUNS_US`` line)::

    python3 runner.py --graphs=a.tflite,b.tflite --num_runs=50 ...

Evaluation (raw outputs for on-device accuracy)::

    python3 runner.py --graph=m.tflite --eval_input=x.npy --eval_output=y.npy

Machine-readable lines (stdout), after each block's official summary::

    EDGEEAS_RUNNER: runner=edgeeas-runner runner_version=1 interpreter=ai_edge_litert version=2.3.0 threads=1 xnnpack=true cpu_mask=none
    EDGEEAS_RUNS_US: 51.2,50.8,... graph=m.tflite
    EDGEEAS_EVAL: n=256 seconds=0.0123 graph=m.tflite
    EDGEEAS_FAILED: <message> graph=b.tflite          (--graphs mode only)

Errors: one line ``ERROR: ...`` on stderr, never a traceback. Exit code 2 for
usage errors (bad or missing flag values, missing model file, CPU mask that
selects no available CPU), 1 for runtime errors (not a TFLite model,
interpreter failure, eval input of the wrong shape or dtype).
"""

import argparse
import gc
import math
import re
import os
import sys
import time

RUNNER_NAME = "edgeeas-runner"
RUNNER_VERSION = "1"

# Official benchmark_model defaults.
_DEFAULTS = {
    "num_threads": -1,  # official: -1 = let the runtime decide; we map it to 1
    "warmup_runs": 1,
    "num_runs": 50,
    "min_secs": 1.0,
    "warmup_min_secs": 0.5,
    "max_secs": 150.0,
}

_INTERPRETERS = ("ai_edge_litert", "tflite_runtime", "tensorflow")


class UsageError(Exception):
    """Exit code 2."""


class RunError(Exception):
    """Exit code 1."""


# --------------------------------------------------------------------------- #
# Command line
# --------------------------------------------------------------------------- #
class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, no usage dump
        raise UsageError(message + " (see --help)")


def _bool(text):
    low = str(text).strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _build_parser():
    p = _Parser(
        prog="runner.py",
        description="edgeeas benchmark runner (TFLite benchmark_model flags).",
    )
    p.add_argument("--graph", help="path to the .tflite model")
    p.add_argument("--graphs", help="comma-separated .tflite paths, one block each (edgeeas extension)")
    p.add_argument("--num_threads", type=int, default=_DEFAULTS["num_threads"])
    p.add_argument("--warmup_runs", type=int, default=_DEFAULTS["warmup_runs"])
    p.add_argument("--num_runs", type=int, default=_DEFAULTS["num_runs"])
    p.add_argument("--min_secs", type=float, default=_DEFAULTS["min_secs"])
    p.add_argument("--warmup_min_secs", type=float, default=_DEFAULTS["warmup_min_secs"])
    p.add_argument("--max_secs", type=float, default=_DEFAULTS["max_secs"])
    p.add_argument("--use_xnnpack", type=_bool, nargs="?", const=True, default=True)
    p.add_argument("--enable_op_profiling", type=_bool, nargs="?", const=True, default=False)
    p.add_argument("--verbose", type=_bool, nargs="?", const=True, default=False)
    p.add_argument("--cpu_mask", help="hex CPU affinity mask, e.g. f0 (edgeeas extension)")
    p.add_argument("--interpreter", choices=("auto",) + _INTERPRETERS, default="auto",
                   help="interpreter module to use (edgeeas extension)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    p.add_argument("--input_layer", help="input names, comma-separated (accepted, as benchmark_model; inputs are "
                   "taken in order)")
    p.add_argument("--input_layer_shape", help="input shapes: 1,224,224,3:1,20 (for dynamic dimensions)")
    p.add_argument("--eval_input", help=".npy of N rows of the model input")
    p.add_argument("--eval_output", help=".npy to write the N raw outputs to")
    return p


def _check_args(args):
    if bool(args.graph) == bool(args.graphs):
        raise UsageError("give exactly one of --graph=FILE.tflite or --graphs=A.tflite,B.tflite")
    if args.num_threads == -1:
        args.num_threads = 1
    if args.num_threads <= 0:
        raise UsageError(f"--num_threads must be a positive integer (or -1 for the default 1), got {args.num_threads}")
    if args.num_runs <= 0:
        raise UsageError(f"--num_runs must be a positive integer, got {args.num_runs}")
    if args.warmup_runs < 0:
        raise UsageError(f"--warmup_runs must be 0 or more, got {args.warmup_runs}")
    for name in ("min_secs", "warmup_min_secs", "max_secs"):
        value = getattr(args, name)
        if not (value >= 0 and math.isfinite(value)):
            raise UsageError(f"--{name} must be a finite number >= 0, got {value}")
    if (args.eval_input is None) != (args.eval_output is None):
        raise UsageError("--eval_input and --eval_output go together: give both")
    if args.eval_input is not None and args.graphs:
        raise UsageError("evaluation mode takes one --graph, not --graphs")
    graphs = [args.graph] if args.graph else [g for g in args.graphs.split(",") if g.strip()]
    if not graphs:
        raise UsageError("--graphs is empty: expected A.tflite,B.tflite")
    for g in graphs:
        if not os.path.isfile(g):
            raise UsageError(f"model file not found: {g} (expected a path to a .tflite file on this device)")
    if args.eval_input is not None and not os.path.isfile(args.eval_input):
        raise UsageError(f"eval input file not found: {args.eval_input} (expected a .npy file)")
    return graphs


def _parse_cpu_mask(text):
    raw = text.strip().lower()
    if raw.startswith("0x"):
        raw = raw[2:]
    try:
        mask = int(raw, 16)
    except ValueError:
        raise UsageError(f"--cpu_mask must be a hex mask such as f0 or 0x3, got {text!r}") from None
    if mask <= 0:
        raise UsageError(f"--cpu_mask selects no CPU: {text!r}")
    return {i for i in range(mask.bit_length()) if mask >> i & 1}


def _apply_cpu_mask(text):
    """Pin this process (and the interpreter's thread pool, created later)."""
    if text is None:
        return "none"
    cpus = _parse_cpu_mask(text)
    if not hasattr(os, "sched_setaffinity"):
        print(f"Note: --cpu_mask={text} not applied: os.sched_setaffinity is not available here",
              file=sys.stderr)
        return text + "(not-applied)"
    try:
        os.sched_setaffinity(0, cpus)
    except OSError as e:
        have = sorted(os.sched_getaffinity(0))
        raise UsageError(
            f"--cpu_mask={text} selects CPUs {sorted(cpus)} but this process may run on {have}: {e.strerror}"
        ) from None
    return text


# --------------------------------------------------------------------------- #
# Interpreter
# --------------------------------------------------------------------------- #
def _import_interpreter(which):
    """Return (Interpreter class, module name, version)."""
    order = _INTERPRETERS if which == "auto" else (which,)
    tried = []
    for name in order:
        try:
            if name == "ai_edge_litert":
                import ai_edge_litert
                from ai_edge_litert.interpreter import Interpreter
                version = getattr(ai_edge_litert, "__version__", "unknown")
            elif name == "tflite_runtime":
                import tflite_runtime
                from tflite_runtime.interpreter import Interpreter
                version = getattr(tflite_runtime, "__version__", "unknown")
            else:
                import tensorflow as tf
                Interpreter = tf.lite.Interpreter
                version = tf.__version__
        except Exception as e:  # ImportError, or a broken wheel (numpy ABI...)
            tried.append(f"{name} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
            continue
        return Interpreter, name, version
    raise RunError("no TFLite interpreter could be imported; tried " + "; ".join(tried)
                   + ". Install ai-edge-litert (pip install ai-edge-litert) or tflite-runtime")


def _make_interpreter(Interpreter, graph, args):
    kwargs = {"model_path": graph, "num_threads": args.num_threads}
    if not args.use_xnnpack:
        module = sys.modules.get(Interpreter.__module__)
        resolver = getattr(module, "OpResolverType", None)
        if resolver is None:
            raise RunError(f"--use_xnnpack=false is not supported by {Interpreter.__module__} "
                           "(it has no OpResolverType)")
        kwargs["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        interp = Interpreter(**kwargs)
    except Exception as e:
        raise RunError(_load_error(graph, e, stage="load")) from None
    shapes = _input_shapes(args)
    try:
        if shapes:
            details = interp.get_input_details()
            if len(shapes) > len(details):
                raise RunError(f"--input_layer_shape gives {len(shapes)} shapes but {graph} has "
                               f"{len(details)} input(s)")
            for d, shape in zip(details, shapes):
                interp.resize_tensor_input(d["index"], shape, strict=False)
        interp.allocate_tensors()
    except RunError:
        raise
    except Exception as e:
        raise RunError(_load_error(graph, e, stage="prepare")) from None
    dynamic = [d["name"] for d in interp.get_input_details()
               if any(int(v) < 0 for v in d.get("shape_signature", d["shape"])) and not shapes]
    if dynamic and any(0 in [int(v) for v in d["shape"]] for d in interp.get_input_details()):
        raise RunError(f"{graph} has inputs with dynamic dimensions ({', '.join(dynamic)}): give their shapes "
                       f"with --input_layer_shape=1,224,224,3 (':' between inputs), as benchmark_model takes")
    return interp


def _input_shapes(args) -> list[list[int]]:
    """``--input_layer_shape=1,224,224,3:1,20`` (benchmark_model's form) as lists of ints."""
    text = getattr(args, "input_layer_shape", None)
    if not text:
        return []
    try:
        return [[int(v) for v in part.split(",")] for part in text.split(":")]
    except ValueError:
        raise UsageError(f"--input_layer_shape {text!r}: expected comma-separated sizes, ':' between "
                         f"inputs, e.g. 1,224,224,3:1,20") from None


def _load_error(graph, e: BaseException, stage: str) -> str:
    """One accurate line for a model the interpreter cannot load (``stage="load"``: not a valid
    flatbuffer) or cannot prepare (``"prepare"``: a valid model with an operator this interpreter
    lacks, or a bad shape).  A message the interpreter repeats is said once."""
    parts = []
    for piece in re.split(r"[\n\r]+", str(e)):
        piece = " ".join(piece.split())
        if piece and piece not in parts:
            parts.append(piece)
    msg = "; ".join(parts)[:300] or type(e).__name__
    custom = re.search(r"custom op(?:erator)?\s*[:']?\s*'?([\w.-]+)?", msg, re.I)
    if custom or "unresolved" in msg.lower() or "didn't find op" in msg.lower():
        op = (custom.group(1) or "").rstrip(".") if custom else ""
        name = f" {op!r}" if op else ""
        return (f"{graph} is a valid TFLite model, but uses an operator{name} this interpreter does not "
                f"have ({msg}); run it with a benchmark_model built with that op")
    if stage == "prepare":
        return f"{graph} is a valid TFLite model, but the interpreter cannot prepare it: {msg}"
    return f"cannot load {graph} as a TFLite model: {msg} (expected a valid .tflite flatbuffer)"


def _random_fill(interp, rng):
    import numpy as np

    for d in interp.get_input_details():
        shape = [int(s) for s in d["shape"]]
        dtype = np.dtype(d["dtype"])
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            lo, hi = max(int(info.min), -(2 ** 31)), min(int(info.max), 2 ** 31 - 1)
            data = rng.integers(lo, hi, size=shape, endpoint=True).astype(dtype)
        elif dtype.kind == "f":
            data = rng.uniform(-1.0, 1.0, size=shape).astype(dtype)
        elif dtype.kind == "b":
            data = rng.integers(0, 1, size=shape, endpoint=True).astype(bool)
        else:
            data = np.zeros(shape, dtype=dtype)
        interp.set_tensor(d["index"], data)


# --------------------------------------------------------------------------- #
# Statistics and printing in benchmark_model's format
# --------------------------------------------------------------------------- #
def _g(x):
    """C++ ostream default formatting (6 significant digits): 1.63488e+06."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "nan"
    return "%g" % x


def _percentile(sorted_vals, q):
    """Linear interpolation (numpy's default method)."""
    if not sorted_vals:
        return float("nan")
    k = (len(sorted_vals) - 1) * q / 100.0
    f = int(math.floor(k))
    c = min(f + 1, len(sorted_vals) - 1)
    return sorted_vals[f] + (k - f) * (sorted_vals[c] - sorted_vals[f])


def _stat_line(us, with_percentiles):
    """The official ``count=... first=... ... std=...`` line (times in us)."""
    n = len(us)
    if n == 0:
        return "count=0"
    avg = sum(us) / n
    std = math.sqrt(max(sum(u * u for u in us) / n - avg * avg, 0.0))  # population, as Stat<>
    line = (f"count={n} first={int(us[0])} curr={int(us[-1])} min={int(min(us))} "
            f"max={int(max(us))} avg={_g(avg)} std={int(std)}")
    if with_percentiles:
        s = sorted(us)
        line += (f" p5={int(_percentile(s, 5))} median={int(_percentile(s, 50))} "
                 f"p95={int(_percentile(s, 95))}")
    return line


def _timed_loop(invoke, min_runs, min_secs, max_secs):
    """Run at least min_runs and at least min_secs, stop after max_secs. Returns ns."""
    pc = time.perf_counter_ns
    out = []
    append = out.append
    start = pc()
    min_ns = int(min_secs * 1e9)
    max_ns = int(max_secs * 1e9)
    while True:
        t0 = pc()
        invoke()
        t1 = pc()
        append(t1 - t0)
        elapsed = t1 - start
        if (len(out) >= min_runs and elapsed >= min_ns) or elapsed >= max_ns:
            return out


def _maxrss_mb():
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    except Exception:
        return float("nan")


def _print_params(args, graph, cpu_mask_applied):
    print("STARTING!")
    print("Log parameter values verbosely: [%d]" % int(args.verbose))
    print(f"Min num runs: [{args.num_runs}]")
    print(f"Min runs duration (seconds): [{_g(args.min_secs)}]")
    print(f"Max runs duration (seconds): [{_g(args.max_secs)}]")
    print(f"Num threads: [{args.num_threads}]")
    print(f"Min warmup runs: [{args.warmup_runs}]")
    print(f"Min warmup runs duration (seconds): [{_g(args.warmup_min_secs)}]")
    print(f"Graph: [{graph}]")
    if args.enable_op_profiling:
        print("Enable op profiling: [1]")
        print("Note: op profiling is not available in the edgeeas runner; ignored.")
    print(f"CPU mask: [{cpu_mask_applied}]")
    print(f"Use xnnpack: [{int(args.use_xnnpack)}]")
    print(f"#threads used for CPU inference: [{args.num_threads}]")


def _runner_line(args, iname, iversion, cpu_mask_applied):
    return (f"EDGEEAS_RUNNER: runner={RUNNER_NAME} runner_version={RUNNER_VERSION} "
            f"interpreter={iname} version={iversion} threads={args.num_threads} "
            f"xnnpack={'true' if args.use_xnnpack else 'false'} cpu_mask={cpu_mask_applied} "
            f"python={sys.version.split()[0]}")


def _benchmark_one(Interpreter, iname, iversion, graph, args, cpu_mask_applied, rss0):
    import numpy as np

    _print_params(args, graph, cpu_mask_applied)
    print(f"Loaded model {graph}")
    print("The input model file size (MB): %s" % _g(os.path.getsize(graph) / 1e6))
    t0 = time.perf_counter_ns()
    interp = _make_interpreter(Interpreter, graph, args)
    init_us = (time.perf_counter_ns() - t0) / 1e3
    rss_init = _maxrss_mb()
    print(f"Initialized session in {_g(init_us / 1e3)}ms.")
    _random_fill(interp, np.random.default_rng(args.seed))
    invoke = interp.invoke

    # Warm-up and measured loops run back to back; every line about them is
    # printed afterwards, so no Python work (formatting, sorting) runs between
    # them and evicts the caches the warm-up filled.
    warming = args.warmup_runs > 0 or args.warmup_min_secs > 0
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        warm_ns = _timed_loop(invoke, args.warmup_runs, args.warmup_min_secs, args.max_secs) if warming else []
        runs_ns = _timed_loop(invoke, args.num_runs, args.min_secs, args.max_secs)
    except Exception as e:
        msg = " ".join(str(e).split()) or type(e).__name__
        raise RunError(f"invoke() failed on {graph}: {msg[:300]}") from None
    finally:
        if gc_was_enabled:
            gc.enable()
    warm = [t / 1e3 for t in warm_ns]
    runs = [t / 1e3 for t in runs_ns]
    if warming:
        print(f"Running benchmark for at least {args.warmup_runs} iterations and at least "
              f"{_g(args.warmup_min_secs)} seconds but terminate if exceeding {_g(args.max_secs)} seconds.")
        print(_stat_line(warm, with_percentiles=False))
        print()
    print(f"Running benchmark for at least {args.num_runs} iterations and at least "
          f"{_g(args.min_secs)} seconds but terminate if exceeding {_g(args.max_secs)} seconds.")
    print(_stat_line(runs, with_percentiles=True))
    print()
    first = warm[0] if warm else runs[0]
    warm_avg = sum(warm) / len(warm) if warm else float("nan")
    print(f"Inference timings in us: Init: {int(init_us)}, First inference: {int(first)}, "
          f"Warmup (avg): {_g(warm_avg)}, Inference (avg): {_g(sum(runs) / len(runs))}")
    print("Note: as the benchmark tool itself affects memory footprint, the following is only "
          "APPROXIMATE to the actual memory footprint of the model at runtime. Take the "
          "information at your discretion.")
    print(f"Memory footprint delta from the start of the tool (MB): init={_g(rss_init - rss0)} "
          f"overall={_g(_maxrss_mb() - rss0)}")
    print(_runner_line(args, iname, iversion, cpu_mask_applied))
    print("EDGEEAS_RUNS_US: " + ",".join("%.1f" % r for r in runs) + f" graph={graph}")
    sys.stdout.flush()


# --------------------------------------------------------------------------- #
# Evaluation mode
# --------------------------------------------------------------------------- #
def _evaluate(Interpreter, iname, iversion, graph, args, cpu_mask_applied):
    import numpy as np

    interp = _make_interpreter(Interpreter, graph, args)
    ins, outs = interp.get_input_details(), interp.get_output_details()
    if len(ins) != 1 or len(outs) != 1:
        raise RunError(f"evaluation mode needs a model with one input and one output; "
                       f"{graph} has {len(ins)} inputs and {len(outs)} outputs")
    din, dout = ins[0], outs[0]
    shape = tuple(int(s) for s in din["shape"])
    in_dtype = np.dtype(din["dtype"])
    try:
        x = np.load(args.eval_input, allow_pickle=False)
    except Exception as e:
        raise RunError(f"cannot read {args.eval_input} as a .npy array: {' '.join(str(e).split())[:200]}") from None

    # Rows are either the model input without its batch-1 axis, or the full shape.
    if shape and shape[0] == 1 and x.ndim == len(shape) and tuple(x.shape[1:]) == shape[1:]:
        squeeze = True
    elif x.ndim == len(shape) + 1 and tuple(x.shape[1:]) == shape:
        squeeze = False
    else:
        want = f"(N, {', '.join(map(str, shape[1:]))})" if shape and shape[0] == 1 else "(N, ...)"
        raise RunError(f"eval input {args.eval_input} has shape {tuple(x.shape)}; "
                       f"expected {want} or (N, {', '.join(map(str, shape))}) for model input {list(shape)}")

    if x.dtype != in_dtype:
        scale, zero = din.get("quantization", (0.0, 0))
        if x.dtype == np.float32 and in_dtype.kind in "iu" and scale:
            info = np.iinfo(in_dtype)
            x = np.clip(np.round(x / scale + zero), info.min, info.max).astype(in_dtype)
        else:
            raise RunError(f"eval input {args.eval_input} has dtype {x.dtype}; expected {in_dtype}"
                           + (" or float32 (quantized with the input's scale/zero point)"
                              if in_dtype.kind in "iu" and scale else ""))

    n = x.shape[0]
    oshape = tuple(int(s) for s in dout["shape"])
    oidx, iidx = dout["index"], din["index"]
    rows = []
    t0 = time.perf_counter()
    try:
        for i in range(n):
            interp.set_tensor(iidx, x[i].reshape(shape))
            interp.invoke()
            rows.append(interp.get_tensor(oidx).copy())
    except Exception as e:
        raise RunError(f"invoke() failed on row {len(rows)} of {args.eval_input}: "
                       f"{' '.join(str(e).split())[:300]}") from None
    seconds = time.perf_counter() - t0
    if squeeze and oshape and oshape[0] == 1:
        y = np.stack([r.reshape(oshape[1:]) for r in rows]) if rows else np.zeros((0,) + oshape[1:], dout["dtype"])
    else:
        y = np.stack(rows) if rows else np.zeros((0,) + oshape, dout["dtype"])
    out = args.eval_output
    tmp = out + ".tmp.npy"
    try:
        np.save(tmp, y)
        os.replace(tmp, out)
    except OSError as e:
        raise RunError(f"cannot write {out}: {e.strerror}") from None
    print(_runner_line(args, iname, iversion, cpu_mask_applied))
    print(f"EDGEEAS_EVAL: n={n} seconds={seconds:.6f} graph={graph}")


# --------------------------------------------------------------------------- #
def main(argv=None):
    """Run the runner with ``argv`` (default ``sys.argv[1:]``) and return the exit status:
    0 success, 1 a failed run (or any failed graph of a list), 2 bad flags, 130 interrupted.
    Errors print one ``ERROR: ...`` line on stderr, never a traceback."""
    try:
        args = _build_parser().parse_args(argv)
        graphs = _check_args(args)
        cpu_mask_applied = _apply_cpu_mask(args.cpu_mask)
        rss0 = _maxrss_mb()
        Interpreter, iname, iversion = _import_interpreter(args.interpreter)
        if args.eval_input is not None:
            _evaluate(Interpreter, iname, iversion, graphs[0], args, cpu_mask_applied)
            return 0
        if args.graph:
            _benchmark_one(Interpreter, iname, iversion, graphs[0], args, cpu_mask_applied, rss0)
            return 0
        failed = 0
        for g in graphs:  # one block per graph; a broken graph does not stop the others
            try:
                _benchmark_one(Interpreter, iname, iversion, g, args, cpu_mask_applied, rss0)
            except RunError as e:
                failed += 1
                msg = " ".join(str(e).split())
                print(f"EDGEEAS_FAILED: {msg} graph={g}")
                sys.stdout.flush()
                print(f"ERROR: {msg}", file=sys.stderr)
        return 1 if failed else 0
    except UsageError as e:
        sys.stdout.flush()
        print(f"ERROR: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except RunError as e:
        sys.stdout.flush()
        print(f"ERROR: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ERROR: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # last resort: still one line, never a traceback
        print(f"ERROR: unexpected {type(e).__name__}: {' '.join(str(e).split())[:300]}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
