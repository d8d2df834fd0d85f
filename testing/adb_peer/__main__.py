"""``python -m testing.adb_peer``: serve one adb peer until SIGINT or SIGTERM (see the package docstring)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from .peer import AdbPeer


def main(argv: list[str] | None = None) -> int:
    """Parse the flags, start the peer, print ``adb peer listening on SERIAL (sandbox PATH)``, wait.

    Returns:
        0 after SIGINT/SIGTERM, 1 when the peer cannot start (a bad folder, a port in use).
    """
    ap = argparse.ArgumentParser(prog="python -m testing.adb_peer",
                                 description="A device-side adb peer (adbd wire protocol over TCP) for tests.")
    ap.add_argument("--port", type=int, default=0, help="TCP port (0: pick a free one); keep out of 5555-5585")
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback)")
    ap.add_argument("--sandbox", required=True, type=Path, help="host folder that is the device's /data/local/tmp")
    ap.add_argument("--sdcard", type=Path, default=None, help="host folder that is the device's /sdcard")
    ap.add_argument("--authorized-keys", type=Path, default=None, help="adb public keys accepted (adb_keys format)")
    ap.add_argument("--accept-new-keys", action="store_true", help="accept (and remember) any offered public key")
    ap.add_argument("--no-auth", action="store_true", help="skip authentication, like ro.adb.secure=0")
    ap.add_argument("--model", default="edgeeas-peer", help="ro.product.model")
    ap.add_argument("--prop", action="append", default=[], metavar="KEY=VALUE", help="extra getprop property")
    ap.add_argument("--disk-quota-bytes", type=int, default=None, help="simulate a full disk beyond N bytes")
    ap.add_argument("--arm64", action="store_true",
                    help="run shell commands inside the emulated arm64 rootfs (testing.arm64; `make arm-device`)")
    ap.add_argument("--rootfs", type=Path, default=None, help="with --arm64: the rootfs (default: make arm-device's)")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    props = {}
    for item in args.prop:
        key, sep, value = item.partition("=")
        if not sep or not key:
            ap.error(f"--prop {item!r}: expected KEY=VALUE")
        props[key] = value
    kw = dict(sandbox=args.sandbox, port=args.port, host=args.host, authorized_keys=args.authorized_keys,
              accept_new_keys=args.accept_new_keys, auth_required=not args.no_auth, props=props,
              disk_quota_bytes=args.disk_quota_bytes, sdcard=args.sdcard)
    if args.arm64:
        from testing.arm64 import Arm64Peer

        peer = Arm64Peer(rootfs=args.rootfs, **kw, **({"model": args.model} if args.model != "edgeeas-peer" else {}))
    else:
        peer = AdbPeer(model=args.model, **kw)
    try:
        peer.start()
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"adb peer: cannot start: {exc}", file=sys.stderr)
        return 1
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    print(f"adb peer listening on {peer.serial} (sandbox {peer.sandbox})", flush=True)
    done.wait()
    peer.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
