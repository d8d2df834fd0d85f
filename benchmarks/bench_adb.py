"""adb path benchmarks against the device-side peer on loopback → benchmarks/results/adb.json

1. Transport: push throughput (a 20 MB file, median of N) and the round trip of a short
   command (`echo`, median of M), android_runner (adb-shell, no server) vs Debian's `adb`
   client (its own private server on a private port, a private HOME holding the same key).
   Same peer, same file, one run, rounds alternating between the two clients.  The `adb`
   figures include starting the `adb` client process, as a user running it pays.
2. Tables: the same block configurations (a spread of ~20 rows of the default search space's
   latency table: stem, blocks of every stage, heads; real single-layer int8 models from the
   latency table builder's shared cache) measured into a host table and a peer table with the
   table builder (`edgeeas.latency.measure_rows`), in alternating chunks so slow drifts of
   machine load hit both.  Same interpreter, same machine: the peer/host median ratio should
   be 1 within noise.  Reported: its quartiles and the share of rows within ±10 %.

    .venv/bin/python benchmarks/bench_adb.py [--rows 20] [--pushes 5] [--echoes 30]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def quartiles(values):
    """min, q1, median, q3, max of ``values`` (inclusive quartiles)."""
    q = statistics.quantiles(values, n=4, method="inclusive")
    return {"min": min(values), "q1": q[0], "median": q[1], "q3": q[2], "max": max(values)}


def r(x, n=3):
    """``x`` rounded to ``n`` decimals, None stays None."""
    return None if x is None else round(float(x), n)


def bench_transport(tmp: Path, pushes: int, echoes: int, size_mb: int) -> dict:
    """Part 1: push/pull throughput (MB/s) and echo round trip (ms), android_runner vs Debian's adb, on one peer."""
    from adb_shell.auth.keygen import keygen

    from android_runner import Device
    from android_runner.keys import load_keys
    from testing.adb_peer import AdbPeer

    home = tmp / "home"
    (home / ".android").mkdir(parents=True)
    keygen(str(home / ".android" / "adbkey"))
    os.environ["HOME"] = str(home)
    os.environ.pop("ANDROID_SERIAL", None)
    peer = AdbPeer(sandbox=tmp / "device", authorized_keys=home / ".android" / "adbkey.pub", model="Bench").start()
    blob = tmp / "blob.bin"
    blob.write_bytes(os.urandom(size_mb * 1024 * 1024))
    nbytes = blob.stat().st_size
    adb_bin = shutil.which("adb")
    adb_home = tmp / "adb-home"
    (adb_home / ".android").mkdir(parents=True)
    for suffix in ("", ".pub"):
        shutil.copy(home / ".android" / ("adbkey" + suffix), adb_home / ".android" / ("adbkey" + suffix))
    with socket_port() as port:
        server_port = port
    env = {k: v for k, v in os.environ.items() if k not in ("ANDROID_SERIAL", "ADB_VENDOR_KEYS")}
    env.update(HOME=str(adb_home), ANDROID_ADB_SERVER_PORT=str(server_port))

    def adb(*args, timeout=120):
        return subprocess.run([adb_bin, *args], env=env, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    out = {"file_mb": nbytes / 1e6, "pushes": pushes, "echoes": echoes}
    try:
        dev = Device(peer.serial, keys=load_keys()).connect()
        version = adb("version").stdout.splitlines()[0] if adb_bin else None
        if adb_bin:
            adb("start-server")
            res = adb("connect", peer.serial)
            if "connected" not in res.stdout:
                raise RuntimeError(f"adb connect failed: {res.stdout} {res.stderr}")
            for _ in range(50):  # the server finishes the handshake asynchronously
                if f"{peer.serial}\tdevice" in adb("devices").stdout:
                    break
                time.sleep(0.1)
        t_push = {"android_runner": [], "adb": []}
        t_pull = {"android_runner": [], "adb": []}
        t_echo = {"android_runner": [], "adb": []}
        remote = "/data/local/tmp/bench/blob.bin"
        dev.mkdir("/data/local/tmp/bench")
        pulled = tmp / "pulled"
        pulled.mkdir()
        for i in range(pushes):
            order = ["android_runner", "adb"] if i % 2 == 0 else ["adb", "android_runner"]
            for who in order:
                if who == "adb" and not adb_bin:
                    continue
                t0 = time.perf_counter()
                if who == "adb":
                    res = adb("-s", peer.serial, "push", str(blob), remote)
                    assert res.returncode == 0, res.stderr
                else:
                    dev.push(blob, remote, timeout_s=120)
                t_push[who].append(time.perf_counter() - t0)
                assert (peer.sandbox / "bench" / "blob.bin").stat().st_size == nbytes
                t0 = time.perf_counter()
                if who == "adb":
                    res = adb("-s", peer.serial, "pull", remote, str(pulled / "adb.bin"))
                    assert res.returncode == 0, res.stderr
                else:
                    dev.pull(remote, pulled, timeout_s=120, name="ar.bin")
                t_pull[who].append(time.perf_counter() - t0)
        for i in range(echoes):
            for who in (["android_runner", "adb"] if i % 2 == 0 else ["adb", "android_runner"]):
                if who == "adb" and not adb_bin:
                    continue
                t0 = time.perf_counter()
                if who == "adb":
                    res = adb("-s", peer.serial, "shell", "echo", "hi")
                    assert res.returncode == 0 and res.stdout.strip() == "hi", (res.stdout, res.stderr)
                else:
                    assert dev.shell("echo hi").stdout == "hi\n"
                t_echo[who].append(time.perf_counter() - t0)
        # Experiment: the same echo with TCP_NODELAY on android_runner's socket.  adb-shell writes a
        # message's 24-byte header and its payload in two send()s; with Nagle on, the second waits
        # for the peer's delayed ACK (~40 ms on Linux).  Reaches into adb-shell's internals.
        import socket

        dev._adb._io_manager._transport._connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t_nodelay = []
        for _ in range(echoes):
            t0 = time.perf_counter()
            assert dev.shell("echo hi").stdout == "hi\n"
            t_nodelay.append(time.perf_counter() - t0)
        out["android_runner_tcp_nodelay_experiment"] = {
            "echo_round_trip_ms_median": r(statistics.median(t_nodelay) * 1e3, 2),
            "how": "Device.shell('echo hi') after setsockopt(TCP_NODELAY) on the open adb-shell socket"}
        dev.close()
        for who in ("android_runner", "adb"):
            if not t_push[who]:
                continue
            out[who] = {
                "push_mb_per_s_median": r(nbytes / 1e6 / statistics.median(t_push[who]), 1),
                "push_s": [r(t, 3) for t in t_push[who]],
                "pull_mb_per_s_median": r(nbytes / 1e6 / statistics.median(t_pull[who]), 1),
                "echo_round_trip_ms_median": r(statistics.median(t_echo[who]) * 1e3, 2),
                "echo_round_trip_ms_p90": r(sorted(t_echo[who])[int(0.9 * (len(t_echo[who]) - 1))] * 1e3, 2),
            }
        out["android_runner"]["how"] = ("Device.push/pull (adb-shell sync, 64 KiB DATA chunks) and Device.shell "
                                        "('echo hi' wrapped with the exit-status line) on one open connection")
        if adb_bin:
            out["adb"]["how"] = (f"{adb_bin} ({version}) with a private server: `adb -s S push/pull`, "
                                 "`adb -s S shell echo hi`; each figure includes starting the client process")
    finally:
        if adb_bin:
            adb("kill-server", timeout=30)
        peer.stop()
    return out


class socket_port:
    """``with socket_port() as port``: a free loopback port, held until the block ends."""

    def __enter__(self):
        import socket

        self.s = socket.socket()
        self.s.bind(("127.0.0.1", 0))
        return self.s.getsockname()[1]

    def __exit__(self, *exc):
        self.s.close()


def pick_rows(rows, n):
    """stem, the heads and an even spread of blocks (every stage, first and later positions)."""
    fixed = [x for x in rows if x.kind != "block"]
    blocks = [x for x in rows if x.kind == "block"]
    k = max(1, n - len(fixed))
    step = len(blocks) / k
    return fixed[:1] + [blocks[int(i * step)] for i in range(k)] + fixed[1:]


def bench_tables(tmp: Path, n_rows: int, chunk: int) -> dict:
    """Part 2: the same ``n_rows`` table rows measured on the host and on a peer; their ratio's quartiles."""
    from android_runner.keys import load_keys
    from device_bench import Protocol
    from edgeeas.adb_target import AdbTarget
    from edgeeas.latency import LatencyTable, export_row_models, measure_rows, model_cache_dir, table_rows
    from edgeeas.space import DEFAULT_SPACE
    from edgeeas.targets import HostTarget
    from testing.adb_peer import AdbPeer

    rows = pick_rows(table_rows(DEFAULT_SPACE), n_rows)
    cache = model_cache_dir(DEFAULT_SPACE, ROOT / "targets")
    t0 = time.perf_counter()
    exported = export_row_models(DEFAULT_SPACE, rows, cache, progress=True)
    export_s = time.perf_counter() - t0
    protocol = Protocol()
    peer = AdbPeer(sandbox=tmp / "table-device", authorized_keys=Path(os.environ["HOME"]) / ".android" / "adbkey.pub",
                   model="Bench table").start()
    try:
        host = HostTarget("bench-host", protocol, root=tmp / "targets")
        dev = AdbTarget("bench-peer", peer.serial, protocol, root=tmp / "targets", keys=load_keys())
        tables = {t.name: LatencyTable.open(t.directory, DEFAULT_SPACE, protocol, t.fingerprint(), target_name=t.name)
                  for t in (host, dev)}
        t0 = time.perf_counter()
        for i in range(0, len(rows), chunk):
            part = rows[i:i + chunk]
            for t in ((host, dev) if (i // chunk) % 2 == 0 else (dev, host)):
                measure_rows(t, tables[t.name], part, cache)
        measure_s = time.perf_counter() - t0
        h, p = tables["bench-host"].rows(), tables["bench-peer"].rows()
    finally:
        peer.stop()
    per_row = []
    for row in rows:
        per_row.append({"key": row.key, "host_median_ms": r(h[row.key]["median_ms"], 4),
                        "peer_median_ms": r(p[row.key]["median_ms"], 4),
                        "ratio": r(p[row.key]["median_ms"] / h[row.key]["median_ms"], 4)})
    ratios = [x["ratio"] for x in per_row]
    return {
        "rows": len(rows), "models_exported_now": exported, "export_s": r(export_s, 1), "measure_s": r(measure_s, 1),
        "protocol": protocol.to_dict(), "chunk_rows": chunk,
        "ratio_peer_over_host": {k: r(v, 4) for k, v in quartiles(ratios).items()},
        "share_within_10pct": r(sum(abs(x - 1) <= 0.10 for x in ratios) / len(ratios), 3),
        "share_within_20pct": r(sum(abs(x - 1) <= 0.20 for x in ratios) / len(ratios), 3),
        "per_row": per_row,
        "how": ("edgeeas.latency.measure_rows on a HostTarget and on an AdbTarget (the peer), same single-layer "
                "int8 models from the shared cache, chunks alternating host/peer with the order swapped each chunk"),
    }


def main(argv=None) -> int:
    """Run both parts (``--skip-tables``: transport only) and write ``--out`` (JSON)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20)
    ap.add_argument("--chunk", type=int, default=4)
    ap.add_argument("--pushes", type=int, default=5)
    ap.add_argument("--echoes", type=int, default=30)
    ap.add_argument("--size-mb", type=int, default=20)
    ap.add_argument("--skip-tables", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "adb.json"))
    args = ap.parse_args(argv)

    from edgeeas.utils import machine, versions

    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    load_start = [round(x, 2) for x in os.getloadavg()]  # what else the machine was running, measured
    with tempfile.TemporaryDirectory(prefix="bench-adb-") as tmp:
        tmp = Path(tmp)
        transport = bench_transport(tmp, args.pushes, args.echoes, args.size_mb)
        print(json.dumps(transport, indent=1), file=sys.stderr)
        tables = None if args.skip_tables else bench_tables(tmp, args.rows, args.chunk)
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    adb_bin = shutil.which("adb")
    result = {
        "benchmark": "adb path: transport (android_runner vs Debian adb) and peer vs host latency tables",
        "started": started,
        "machine": {**machine(), "loadavg_at_start": load_start,
                    "loadavg_at_end": [round(x, 2) for x in load] if load else None},
        "versions": {**versions(), "adb": subprocess.run([adb_bin, "version"], capture_output=True, text=True)
                     .stdout.splitlines()[0] if adb_bin else None},
        "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
        "transport": transport,
        "tables": tables,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
