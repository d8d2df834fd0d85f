"""``python -m testing.arm64.agreement MODEL_FOLDER``: device-vs-host figures of one specialized model
on the emulated arm64 device, in both kernel modes, and on the host with builtin kernels.

Each row is one ``edgeeas validate --skip-latency --json`` run (its ``device_vs_host`` record):

* ``arm64 xnnpack``: the arm64 peer, the interpreter's default XNNPACK delegate (ARM kernels);
* ``arm64 builtin``: the arm64 peer, ``--use-xnnpack false`` (LiteRT's builtin ARM kernels);
* ``x86 builtin``: the host itself with ``--use-xnnpack false``;

all against the host's XNNPACK outputs.  Writes ``--out`` (default ``docs/arm64-agreement.json``)
with the command, versions and the three records; prints one line per row.  Needs the device
(``make arm-device``) and root.  Exit status 1 when it cannot run, with the reason.
"""
from __future__ import annotations

import argparse
import json
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import QEMU_CPU, Arm64Peer, arm64_unavailable

ROOT = Path(__file__).resolve().parents[2]


def _qemu_version() -> str | None:
    try:
        out = subprocess.run(["qemu-aarch64-static", "--version"], capture_output=True, text=True).stdout
        return out.splitlines()[0] if out else None
    except OSError:
        return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m testing.arm64.agreement", description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path, help="a specialize output folder (model.tflite + manifest.json)")
    ap.add_argument("--images", type=int, default=0, help="first N test images (0: all)")
    ap.add_argument("--data", default=None, help="the dataset (default: edgeeas's)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "arm64-agreement.json")
    args = ap.parse_args(argv)
    why = arm64_unavailable()
    if why is not None:
        print(f"arm64 agreement: cannot run: {why}", file=sys.stderr)
        return 1
    if not (args.folder / "model.tflite").is_file():
        print(f"arm64 agreement: no model.tflite in {args.folder}", file=sys.stderr)
        return 1
    exe = str(Path(sys.executable).with_name("edgeeas"))
    rows = {}
    with tempfile.TemporaryDirectory(prefix="arm64-agreement-") as tmp:
        work = Path(tmp) / "model"
        work.mkdir()
        for name in ("model.tflite", "manifest.json"):
            if (args.folder / name).is_file():
                shutil.copy(args.folder / name, work / name)
        with Arm64Peer(sandbox=Path(tmp) / "device", auth_required=False) as peer:
            for label, where, xnn in (("arm64 xnnpack", ["--adb-serial", peer.serial], "true"),
                                      ("arm64 builtin", ["--adb-serial", peer.serial], "false"),
                                      ("x86 builtin", ["--target", "host"], "false")):
                cmd = [exe, "validate", str(work / "model.tflite"), *where, "--skip-latency", "--use-xnnpack", xnn,
                       "--images", str(args.images), "--json"] + (["--data", args.data] if args.data else [])
                t0 = time.time()
                res = subprocess.run(cmd, capture_output=True, text=True)
                try:
                    r = json.loads(res.stdout)
                except ValueError:
                    print(f"arm64 agreement: {label}: {(res.stderr.strip().splitlines() or ['no output'])[-1]}",
                          file=sys.stderr)
                    return 1
                d = r["device_vs_host"]
                rows[label] = {"seconds": round(time.time() - t0, 1), **d}
                print(f"{label:14} top-1 agreement {d['top1_agreement_pct']:6.2f}%  accuracy {d['accuracy_device_pct']:.2f}% "
                      f"vs host {d['accuracy_host_pct']:.2f}% ({d['accuracy_diff_points']:+.2f} points, McNemar "
                      f"p={d['mcnemar_p']:.2g})  bit-identical rows {d['identical_outputs_pct']:.1f}%  max diff "
                      f"{d['max_abs_output_diff']:g}  {d['status']}", flush=True)
    manifest = json.loads((args.folder / "manifest.json").read_text()) if (args.folder / "manifest.json").is_file() else {}
    result = {
        "command": "python -m testing.arm64.agreement " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "model_arch": manifest.get("arch"),
        "superclasses": manifest.get("superclasses"), "qemu": _qemu_version(), "qemu_cpu": QEMU_CPU,
        "host": platform.machine(), "reference": "host x86, ai-edge-litert default (XNNPACK) kernels", "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
