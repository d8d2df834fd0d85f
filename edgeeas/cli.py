"""The ``edgeeas`` command line: the top-level group; every command lives in :mod:`edgeeas.commands`.

Heavy modules (torch, LiteRT, litert-torch) are imported inside the commands that need them,
so ``edgeeas --help`` is instant.  Every expected failure is a one-line error: exit 2 for a
usage error, 1 for anything else (:mod:`edgeeas.commands._click`).

Also the module ``torchrun`` runs: ``torchrun --nproc_per_node=N -m edgeeas.cli train supernet ...``.
"""
from __future__ import annotations

import os

import click

from .commands._click import LazyGroup

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__all__ = ["main", "COMMANDS"]

# name -> "module:attribute"; imported only when run (or when --help lists them)
COMMANDS = {
    "train": "edgeeas.commands.train:train",
    "eval": "edgeeas.commands.evaluate:eval_cmd",
    "arch": "edgeeas.commands.evaluate:arch_cmd",
    "bench": "edgeeas.commands.bench:bench",
    "latency": "edgeeas.commands.bench:latency",
    "devices": "edgeeas.commands.devices:devices",
    "validate": "edgeeas.commands.validate:validate",
    "search": "edgeeas.commands.search:search",
    "specialize": "edgeeas.commands.specialize:specialize",
    "report": "edgeeas.commands.specialize:report",
    "deploy": "edgeeas.commands.specialize:deploy",
    "regress": "edgeeas.commands.regress:regress",
}


@click.group(cls=LazyGroup, lazy=COMMANDS,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="edgeeas")
@click.option("-v", "--verbose", "lib_verbose", is_flag=True,
              help="show what the converter libraries print on stderr (hidden by default: it is not failure)")
def main(lib_verbose=False):
    """edgeeas: Elastic Architecture Search for phones.

    \b
    Train one elastic supernet, measure devices, then specialize a subnet for any
    (superclass, latency budget) and export it as an int8 TFLite model.

    \b
      edgeeas train supernet --out runs/mine        train the supernet (superclass dropout)
      edgeeas eval                                  within-superclass accuracy of subnets
      edgeeas bench --target host                   latency table + predictor for a target
      edgeeas bench --adb-serial SERIAL --name pixel  the same on a phone over adb
      edgeeas train generator --supernet runs/default --target host
      edgeeas specialize --target host --budget 3ms --superclass vehicles_1
      edgeeas validate out/host/vehicles_1/3ms/model.tflite
      edgeeas regress --farm farm.yaml --baseline baseline.json
    """
    if lib_verbose:  # read by edgeeas.quiet.quiet_stderr, in this process and its workers
        os.environ["EDGEEAS_VERBOSE"] = "1"


if __name__ == "__main__":  # torchrun -m edgeeas.cli ...
    main()
