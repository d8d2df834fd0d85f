"""``edgeeas devices``: which adb devices are reachable, and what they are."""
from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor

import click

from ._options import enable_adb_log, verbose_option

__all__ = ["devices", "list_devices"]


def _probe(entry: dict, timeout_s: float, keys) -> dict:
    from android_runner import AdbAuthError, AdbError, Device, fingerprint, resolve_target
    from android_runner.targets import TargetSpec

    row = dict(entry)
    spec = row.pop("_spec", None)
    try:
        if row["serial"] is None and isinstance(spec, TargetSpec):
            row["serial"] = resolve_target(spec, timeout_s=timeout_s, keys=keys)
        dev = Device(row["serial"], keys=keys, connect_timeout_s=timeout_s, auth_timeout_s=timeout_s,
                     io_timeout_s=max(timeout_s, 10.0))
        try:
            fp = fingerprint(dev, timeout_s=max(timeout_s, 10.0))
        finally:
            dev.close()
    except AdbAuthError as e:
        row.update(state="unauthorized", reachable=False, reason=str(e))
        return row
    except AdbError as e:
        row.update(state="offline", reachable=False, reason=str(e))
        return row
    fp.pop("serial", None)
    row.update(state="device", reachable=True, reason="", **fp)
    return row


def list_devices(serials=(), targets_file=None, timeout_s: float = 3.0) -> list[dict]:
    """targets.yaml entries + ``serials`` + ``$ANDROID_SERIAL``, probed in parallel (input order)."""
    from android_runner import load_keys

    from ..adb_target import load_target_specs

    path, specs = load_target_specs(targets_file)
    entries: list[dict] = []
    seen: dict[str, dict] = {}
    for name, spec in specs.items():
        e = {"name": name, "serial": spec.serial, "wanted_model": spec.model, "source": str(path), "_spec": spec}
        entries.append(e)
        if spec.serial:
            seen[spec.serial] = e
    extra = list(serials)
    if os.environ.get("ANDROID_SERIAL", "").strip():
        extra.append(os.environ["ANDROID_SERIAL"].strip())
    for s in extra:
        if s in seen:
            continue
        e = {"name": None, "serial": s, "wanted_model": None,
             "source": "ANDROID_SERIAL" if s == os.environ.get("ANDROID_SERIAL", "").strip() and s not in serials
             else "argument"}
        entries.append(e)
        seen[s] = e
    if not entries:
        return []
    keys = load_keys()
    with ThreadPoolExecutor(max_workers=min(16, len(entries)), thread_name_prefix="devices") as pool:
        return list(pool.map(lambda e: _probe(e, timeout_s, keys), entries))


@click.command("devices")
@click.argument("serials", nargs=-1)
@click.option("--targets-file", default=None,
              help="targets.yaml naming devices (default: $EDGEEAS_TARGETS_FILE, else ./targets.yaml)")
@click.option("--timeout", "timeout_s", default=3.0, show_default=True, type=click.FloatRange(0.1),
              help="seconds to wait for each device to connect")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
@verbose_option
def devices(serials, targets_file, timeout_s, as_json, verbose):
    """List adb devices (targets.yaml names, SERIALS, $ANDROID_SERIAL) with their fingerprints.

    \b
      edgeeas devices                                  targets.yaml + ANDROID_SERIAL
      edgeeas devices 192.168.1.20:5555 R58M123ABC     these serials too
    Exit status 1 when a listed device is unreachable.
    """
    enable_adb_log(verbose)
    rows = list_devices(serials, targets_file, timeout_s)
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
    elif not rows:
        click.echo("no devices: name them in targets.yaml, pass serials, or set ANDROID_SERIAL", err=True)
    else:
        head = f"{'NAME':<12} {'SERIAL':<22} {'STATE':<12} {'MODEL':<18} {'SOC':<14} {'ABI':<12} {'CORES':>5} " \
               f"{'GOVERNOR':<12} {'TEMP_C':>6}"
        click.echo(head)
        for r in rows:
            def f(v, w):
                return ("-" if v is None else str(v))[:w].ljust(w)
            if r["reachable"]:
                click.echo(f"{f(r['name'], 12)} {f(r['serial'], 22)} {f(r['state'], 12)} {f(r.get('model'), 18)} "
                           f"{f(r.get('soc_model') or r.get('platform'), 14)} {f(r.get('abi'), 12)} "
                           f"{f(r.get('cores'), 5).strip():>5} {f(r.get('governor'), 12)} "
                           f"{f(r.get('max_temp_c'), 6).strip():>6}")
            else:
                what = r["serial"] or f"model {r['wanted_model']!r}"
                click.echo(f"{f(r['name'], 12)} {f(what, 22)} {f(r['state'], 12)} {r['reason']}")
    if any(not r["reachable"] for r in rows):
        raise SystemExit(1)
