"""Mutation testing of the core modules with cosmic-ray (issue 15, item 2).

Each module is mutated alone and tested only with its own fast test files: cosmic-ray's
``init`` lists every mutant of the module, a seeded random sample of ``--sample`` of them is
kept (``--sample 0`` keeps all; the others are marked skipped in cosmic-ray's session), and
``exec`` applies each one, runs the module's test command and restores the file.  Everything
runs in a throw-away copy of the working tree (cosmic-ray edits the module on disk), never in
the tree itself.  A mutant is killed when its tests fail, survives when they pass, and times out
(counted apart, and as killed in the kill rate, as cosmic-ray does) when they run past
``max(30 s, 5 x the unmutated run)``.

Writes ``benchmarks/results/mutation.json``: per module the mutants total, sampled, killed,
survived, timed out, the kill rate (with a Wilson 95 % interval when sampled), the test command,
the wall time, the survivors (id, operator, line, the mutated code) and ``explained``: the
survivors explained as equivalent mutants in :data:`EXPLAINED` (matched by module, operator and
line content, so a stale explanation is dropped, not carried).  A module with a :data:`SCOPES`
entry (``train``: its method, not its training loop) is mutated only inside the functions named
there; the others are counted as out of scope, with the reason, and not run.  Mutants inside type annotations
(never evaluated under ``from __future__ import annotations``) are found from the module's AST,
counted as equivalent and not run.  The kill rate is over the mutants run.  A run of a subset
(``--modules evaluate,parse``) updates those modules' entries and keeps the others with their own
``run_at``.

    .venv/bin/python benchmarks/bench_mutation.py [--modules evaluate,parse] [--sample 24]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgeeas.utils import machine, versions  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "mutation.json"
PYTEST = "-m pytest -x -q -p no:cacheprovider"

# module name -> (path, test arguments).  Only each module's own fast tests; tests that need the
# CIFAR-100 archive or the trained tiny supernet (tens of seconds per run) are left out where a
# fast test covers the same code.
MODULES: dict[str, tuple[str, str]] = {
    "evaluate": ("edgeeas/evaluate.py",
                 "tests/test_core_evaluate.py tests/test_evaluate.py -k 'not shipped_supernet and not hand_counted'"),
    "parse": ("device_bench/parse.py", "tests/test_device_bench_parse.py"),
    "space": ("edgeeas/space.py", "tests/test_core_space.py tests/test_space.py"),
    "cost": ("edgeeas/search/cost.py",
             "tests/test_core_cost.py tests/test_search.py -k 'test_core_cost or parse_budget or bad_budgets or "
             "feasibility or cost_table or madds_cost or repair'"),
    "fit": ("edgeeas/latency/fit.py",
            "tests/test_core_latency.py tests/test_latency.py -k 'test_core_latency or per_kernel_scales or crowding'"),
    "predictor": ("edgeeas/latency/predictor.py",
                  "tests/test_core_latency.py tests/test_target_store.py -k 'not adb_push'"),
    "data": ("edgeeas/data.py", "tests/test_core_data.py tests/test_data.py"),
    "train": ("edgeeas/train.py", "tests/test_core_train.py"),
}
# module name -> (qualified-name prefixes in scope, why the rest is not): mutants elsewhere in the
# module are counted and not run.
SCOPES: dict[str, tuple[tuple[str, ...], str]] = {
    "train": (("TrainConfig.steps_per_epoch", "augment", "_Batches", "SandwichLoss", "_param_groups", "_lr_at"),
              "the method is in scope (the sandwich loss with in-place distillation, superclass dropout's kept "
              "superclasses and batches, the schedule, weight-decay groups, augmentation); train_supernet's "
              "loop, checkpointing, resume and distributed code are tested by tests/test_train.py's real "
              "training runs (minutes each), too slow to run once per mutant on this machine"),
}

# Survivors that are equivalent mutants: (module, enclosing class/function, operator, the original
# line stripped) -> why no test can tell them apart (any mutation of that operator on that line).  Filled from the survivors
# of a run; a line that changes no longer matches, so a stale explanation is dropped, not carried.
EXPLAINED: dict[tuple[str, str, str, str], str] = {
    ("cost", "CostTable._extreme_genome", "core/NumberReplacer",
     "g = Genome([0] * S, [[0] * D for _ in range(S)], [[0] * D for _ in range(S)])"):
        "equivalent mutant: CostTable._extreme_genome's starting values are placeholders; the loop that "
        "follows assigns every g.d[s] and every g.e[s][b] and g.k[s][b] (b over all max_depth slots) before "
        "the genome is returned, so no starting number is ever read",
    ("cost", "CostModel.fixed_ms", "core/NumberReplacer", "def fixed_ms(self, num_classes: int = 5) -> float:"):
        "equivalent mutant: CostModel is a typing.Protocol; its methods are declarations with `...` bodies that "
        "no code calls (runtime_checkable isinstance checks only that the methods exist), so the default of "
        "the declaration is never used",
    ("parse", "_last_run", "core/ReplaceBinaryOperator_Sub_BitOr",
     "end = summaries[-1] if summaries else len(lines) - 1"):
        "equivalent mutant: without a summary line `end` only bounds lines[:end + 1], and len(lines) | 1 is "
        "never below len(lines) - 1 (it is len(lines) or len(lines) + 1; 1 when there are no lines), so the "
        "slice is all of lines either way",
    ("train", "augment", "core/ReplaceBinaryOperator_Add_BitOr", "oy = torch.as_tensor(rng.integers(0, 2 * pad + 1, b))"):
        "equivalent mutant: 2 * pad is even, so 2 * pad | 1 == 2 * pad + 1 for every integer pad",
    ("train", "augment", "core/ReplaceComparisonOperator_Lt_LtE", "flip = torch.as_tensor(rng.random(b) < 0.5)"):
        "equivalent except on a draw of exactly 0.5 (probability 2**-53 per image): numpy's random() is a "
        "multiple of 2**-53 in [0, 1), so `< 0.5` and `<= 0.5` flip the same images",
    ("data", "_load_cifar100", "core/NumberReplacer", "splits[name] = Split(data.reshape(-1, 3, 32, 32), fine)"):
        "equivalent mutant: numpy's reshape takes any negative size as the one inferred dimension "
        "(reshape(-2, 3, 32, 32) == reshape(-1, 3, 32, 32); checked with numpy 2.4)",
    ("fit", "_lstsq", "core/ReplaceComparisonOperator_Gt_NotEq", "if n >= 3 and np.ptp(s) > 0:"):
        "equivalent for finite row sums: np.ptp(s) is max(s) - min(s), never negative, so `> 0` and `!= 0` "
        "agree; they differ only when a row sum is NaN (the original then falls back to a NaN 'mean offset' "
        "fit, the mutant to a failing nnls: no usable predictor either way, and no test asserts either)",
    ("fit", "fit_predictor", "core/ReplaceComparisonOperator_Lt_LtE",
     "per_kernel = candidates[True][0] < candidates[False][0]"):
        "equivalent except on an exact floating-point tie: the two held-out MAPEs are equal when the "
        "per-kernel model is not eligible (fewer than 8 subnets per coefficient), and then "
        "_lstsq(..., per_kernel=True) returns the shared-scale fit itself, so either choice stores the same "
        "fit, held-out predictions and selection figures; when it is eligible the MAPEs come from two "
        "different models and tie only by coincidence",
}


def wilson(k: int, n: int, z: float = 1.96) -> list[float] | None:
    if n == 0:
        return None
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return [round(100 * max(0.0, c - h), 1), round(100 * min(1.0, c + h), 1)]


def copy_tree(dst: Path) -> None:
    """The tracked and untracked-not-ignored files of the working tree (not .venv, runs/e40, logs)."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for f in files:
        if not f or f.startswith(("runs/e40/", "logs/", "benchmarks/results/")):
            continue
        src = ROOT / f
        if src.is_symlink() or not src.is_file():
            continue
        (dst / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst / f)
    data = ROOT / "data"
    if data.exists():
        (dst / "data").symlink_to(data.resolve())


def annotation_spans(source: str) -> list[tuple[int, int, int, int]] | None:
    """(line, col, end line, end col) of every annotation of a module that has ``from __future__
    import annotations`` (annotations then stay unevaluated strings), else None."""
    import ast

    tree = ast.parse(source)
    if not any(isinstance(n, ast.ImportFrom) and n.module == "__future__" and
               any(a.name == "annotations" for a in n.names) for n in tree.body):
        return None
    spans = []
    for n in ast.walk(tree):
        anns = []
        if isinstance(n, ast.arg):
            anns.append(n.annotation)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
            anns.append(n.returns)
        elif isinstance(n, ast.AnnAssign):
            anns.append(n.annotation)
        spans += [(a.lineno, a.col_offset, a.end_lineno, a.end_col_offset) for a in anns if a is not None]
    return spans


def qualnames(source: str) -> list[tuple[int, int, str]]:
    """(first line, last line, qualified name) of every class and function of a module."""
    import ast

    out = []

    def walk(node, prefix):
        for n in ast.iter_child_nodes(node):
            if isinstance(n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                q = f"{prefix}{n.name}"
                out.append((n.lineno, n.end_lineno, q))
                walk(n, q + ".")
            else:
                walk(n, prefix)

    walk(ast.parse(source), "")
    return out


def qualname_at(names, row: int) -> str:
    inner = [(l1 - l0, q) for l0, l1, q in names if l0 <= row <= l1]
    return min(inner)[1] if inner else "<module>"


def _inside(spans, row: int, col: int) -> bool:
    return any((l0, c0) <= (row, col) < (l1, c1) for l0, c0, l1, c1 in spans)


ANNOTATION_WHY = ("equivalent mutant: the mutated operator is inside a type annotation, and the module has "
                  "`from __future__ import annotations`, so annotations are never evaluated (nothing in the "
                  "package calls typing.get_type_hints or inspect.signature(eval_str=True)); found by the script "
                  "from the module's AST")


def mutated_line(diff: str) -> tuple[int | None, str, str]:
    """(line, original, mutated) from cosmic-ray's unified diff of one mutant."""
    line, old, new = None, [], []
    for d in diff.splitlines():
        m = re.match(r"@@ -(\d+)", d)
        if m and line is None:
            line = int(m.group(1))
        elif d.startswith("-") and not d.startswith("---"):
            old.append(d[1:].strip())
        elif d.startswith("+") and not d.startswith("+++"):
            new.append(d[1:].strip())
    return line, " / ".join(old), " / ".join(new)


def run_module(name: str, sample: int, seed: int, py: str) -> dict:
    path, test_args = MODULES[name]
    command = f"{py} {PYTEST} {test_args}"
    with tempfile.TemporaryDirectory(prefix=f"edgeeas-mutate-{name}-") as tmp:
        work = Path(tmp)
        copy_tree(work)
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
        # the copy, not the editable install, must be under test
        where = subprocess.run([py, "-c", "import edgeeas, device_bench; print(edgeeas.__file__)"], cwd=work,
                               env=env, capture_output=True, text=True, check=True).stdout.strip()
        assert where.startswith(str(work)), where
        t0 = time.time()
        base = subprocess.run(command, shell=True, cwd=work, env=env, capture_output=True, text=True)
        base_s = time.time() - t0
        if base.returncode != 0:
            raise SystemExit(f"{name}: the unmutated tests fail:\n{base.stdout[-3000:]}{base.stderr[-2000:]}")
        timeout = max(30.0, 5 * base_s)
        # cosmic-ray runs the command through shlex.split: wrap it in sh -c for the -k expression
        cr_cmd = "sh -c " + _shquote(command)
        (work / "cr.toml").write_text(
            "[cosmic-ray]\n"
            f'module-path = "{path}"\n'
            f"timeout = {timeout:.0f}\n"
            "excluded-modules = []\n"
            f"test-command = {json.dumps(cr_cmd)}\n"
            '[cosmic-ray.distributor]\nname = "local"\n')
        spans = annotation_spans((work / path).read_text())
        names = qualnames((work / path).read_text())
        cr = [str(Path(py).parent / "cosmic-ray")]
        subprocess.run(cr + ["init", "cr.toml", "s.sqlite"], cwd=work, env=env, check=True, capture_output=True)
        db = sqlite3.connect(work / "s.sqlite")
        # job ids are random uuids: sample over the mutants' positions so a seed picks the same mutants
        specs = sorted(db.execute("select operator_name, occurrence, start_pos_row, start_pos_col, job_id "
                                  "from mutation_specs").fetchall())
        total = len(specs)
        # mutants inside annotations are equivalent (ANNOTATION_WHY): counted, not run
        in_annotations = [r[-1] for r in specs if spans and _inside(spans, r[2], r[3])]
        scope = SCOPES.get(name)
        out_of_scope = [r[-1] for r in specs if scope and r[-1] not in set(in_annotations)
                        and not qualname_at(names, r[2]).startswith(scope[0])]
        ids = [r[-1] for r in specs if r[-1] not in set(in_annotations) | set(out_of_scope)]
        keep = set(ids) if sample <= 0 or sample >= len(ids) else set(random.Random(f"{seed}:{name}").sample(ids, sample))
        drop = [i for i in ids if i not in keep] + in_annotations + out_of_scope
        db.execute("PRAGMA foreign_keys=ON")
        db.executemany("insert into work_results (job_id, worker_outcome, output, test_outcome, diff) "
                       "values (?, 'SKIPPED', 'not in the sample', NULL, NULL)", [(i,) for i in drop])
        db.commit()
        db.close()
        t0 = time.time()
        subprocess.run(cr + ["exec", "cr.toml", "s.sqlite"], cwd=work, env=env, check=True, capture_output=True)
        wall = time.time() - t0
        db = sqlite3.connect(work / "s.sqlite")
        rows = db.execute(
            "select r.job_id, r.worker_outcome, r.test_outcome, r.output, r.diff, m.operator_name, m.start_pos_row, "
            "m.start_pos_col "
            "from work_results r join mutation_specs m on m.job_id = r.job_id "
            "where r.worker_outcome != 'SKIPPED'").fetchall()
        db.close()
    killed = survived = timeout_n = incompetent = 0
    survivors, explained = [], {}
    for job, worker, test, output, diff, op, row, col in rows:
        if worker != "NORMAL" or test == "INCOMPETENT":
            incompetent += 1
        elif test == "KILLED":
            killed += 1
            if (output or "").strip() == "timeout":
                timeout_n += 1
        else:
            survived += 1
            line, old, new = mutated_line(diff or "")
            where = qualname_at(names, row)
            survivors.append({"id": job, "operator": op, "line": line if line is not None else row, "in": where,
                              "original": old, "mutated": new})
            why = EXPLAINED.get((name, where, op, old)) or (ANNOTATION_WHY if spans and _inside(spans, row, col) else None)
            if why:
                explained[job] = why
    done = killed + survived
    return {
        "module": path,
        "command": command.replace(py, ".venv/bin/python") if py.endswith(".venv/bin/python") else command,
        "test_files": [a for a in test_args.split() if a.startswith("tests/")],
        "unmutated_test_run_s": round(base_s, 1),
        "timeout_s": round(timeout),
        "mutants_total": total,
        "mutants_in_annotations": len(in_annotations),
        "mutants_in_annotations_why": ANNOTATION_WHY if in_annotations else None,
        "scope": list(scope[0]) if scope else None,
        "mutants_out_of_scope": len(out_of_scope),
        "out_of_scope_why": scope[1] if scope else None,
        "mutants_eligible": len(ids),
        "mutants_run": len(rows),
        "sampled": len(keep) < len(ids),
        "killed": killed - timeout_n,
        "timeout": timeout_n,
        "survived": survived,
        "incompetent": incompetent,
        "kill_rate_pct": round(100 * killed / done, 1) if done else None,
        "kill_rate_95ci_pct": wilson(killed, done) if len(keep) < len(ids) else None,
        "kill_rate_excluding_explained_pct": round(100 * killed / (done - len(explained)), 1)
        if done - len(explained) else None,
        "exec_wall_s": round(wall, 1),
        "estimated_full_run_s": round(wall / max(len(rows), 1) * len(ids)),
        "survivors": survivors,
        "explained": explained,
        "run_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _shquote(s: str) -> str:
    import shlex
    return shlex.quote(s)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--modules", default=",".join(MODULES), help="comma-separated, of: " + ",".join(MODULES))
    ap.add_argument("--sample", type=int, default=24, help="mutants per module, seeded random sample (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    names = [m.strip() for m in args.modules.split(",") if m.strip()]
    bad = [m for m in names if m not in MODULES]
    if bad:
        ap.error(f"unknown modules {bad}; known: {', '.join(MODULES)}")
    import cosmic_ray  # noqa: F401
    from importlib.metadata import version

    result = json.loads(args.out.read_text()) if args.out.exists() else {}
    result.setdefault("modules", {})
    py = str(Path(sys.executable))
    t0 = time.time()
    for name in names:
        print(f"mutation: {name} ...", flush=True)
        r = run_module(name, args.sample, args.seed, py)
        r["bench_command"] = " ".join([Path(sys.executable).name, *sys.argv])
        r["sample_requested"], r["seed"] = args.sample, args.seed
        r["library"] = f"cosmic-ray {version('cosmic-ray')}"
        result["modules"][name] = r
        print(f"  {r['mutants_run']}/{r['mutants_total']} mutants: {r['killed']} killed, {r['timeout']} timeout, "
              f"{r['survived']} survived, kill rate {r['kill_rate_pct']} % ({r['exec_wall_s']} s)", flush=True)
        result.update({
            "library": f"cosmic-ray {version('cosmic-ray')}",
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "last_run": {"modules": names, "sample": args.sample, "seed": args.seed,
                         "started_at": datetime.fromtimestamp(t0, timezone.utc).isoformat(timespec="seconds"),
                         "wall_s": round(time.time() - t0, 1)},
            "goal_kill_rate_pct": 80,
            "machine": machine(),
            "versions": versions(),
        })
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
