#!/usr/bin/env bash
# `make arm-device`: an emulated arm64 "device" userland for the arm64 adb peer (testing/arm64).
#
# Builds, once, an arm64 Debian bookworm rootfs (debootstrap, run under qemu-user through
# binfmt_misc) holding Python 3.11 and the real aarch64 wheels of ai-edge-litert + numpy (the
# project's pinned versions, installed by the host's pip for the aarch64 platform), plus the two
# fixes measured in ../shared/TOOLCHAIN.md ("An emulated ARM64 device"):
#   * ARM-style /proc/cpuinfo and /sys/devices/system/cpu/{possible,present,online} files, so
#     XNNPACK's CPU detection succeeds (without them it silently falls back to builtin kernels;
#     the host's x86 /proc makes it crash);
#   * the emulated CPU is a real core (QEMU_CPU=cortex-a76, set by the peer), never `max`
#     (SME under qemu 7.2: XNNPACK computes wrong outputs).
# The result is cached: a rootfs whose READY stamp matches this recipe is kept as is; only the
# binfmt_misc registration (lost at reboot) is redone.  Needs root (apt, debootstrap, mount).
#
#   testing/arm64/make_rootfs.sh            # -> ${EDGEEAS_ARM64_ROOTFS:-~/.cache/edgeeas/arm64-rootfs}
#   EDGEEAS_ARM64_MIRROR=http://deb.debian.org/debian testing/arm64/make_rootfs.sh
#
# Exit status: 0 ready; 1 a step failed (one line on stderr says which); 3 not root / no binfmt
# here (the message says so: the arm64 tests cannot run on this machine).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
PROJECT="$(cd "$HERE/../.." && pwd)"
ROOTFS="${EDGEEAS_ARM64_ROOTFS:-$HOME/.cache/edgeeas/arm64-rootfs}"
SUITE=bookworm
LITERT_VERSION="$(sed -n 's/^ai-edge-litert==//p' "$PROJECT/constraints.txt" | head -1)"
NUMPY_VERSION="$(sed -n 's/^numpy==//p' "$PROJECT/constraints.txt" | head -1)"
RECIPE="edgeeas-arm64-rootfs v1 debian=$SUITE ai-edge-litert=$LITERT_VERSION numpy=$NUMPY_VERSION"

say() { echo "arm-device: $*" >&2; }
die() { say "$1"; exit "${2:-1}"; }

[ "$(id -u)" = 0 ] || die "needs root (apt-get, debootstrap, binfmt_misc, chroot); run as root or skip the arm64 tests" 3
[ -n "$LITERT_VERSION" ] && [ -n "$NUMPY_VERSION" ] || die "no ai-edge-litert/numpy pin in $PROJECT/constraints.txt"

# The machine's own Debian mirror (sources.list or deb822 .sources), unless given.
mirror() {
  if [ -n "${EDGEEAS_ARM64_MIRROR:-}" ]; then echo "$EDGEEAS_ARM64_MIRROR"; return; fi
  local m
  m="$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -1)"
  [ -n "$m" ] || m="$(grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
                      | awk '{print $2}' | grep -v security | head -1)"
  echo "${m:-http://deb.debian.org/debian}"
}

# 1. Host tools: qemu-user-static (qemu-aarch64 + its binfmt entry), binfmt-support, debootstrap.
if ! command -v qemu-aarch64-static >/dev/null || ! command -v update-binfmts >/dev/null \
   || ! command -v debootstrap >/dev/null || ! command -v unshare >/dev/null; then
  say "installing qemu-user-static binfmt-support debootstrap (apt)"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
     qemu-user-static binfmt-support debootstrap util-linux >/dev/null) \
    || die "apt-get install qemu-user-static binfmt-support debootstrap failed"
fi

# 2. binfmt_misc: arm64 ELF files run through qemu-aarch64-static (the F flag keeps it usable in a chroot).
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null \
    || die "cannot mount binfmt_misc here (a container without that privilege?): arm64 binaries cannot run" 3
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
fi
grep -qs '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64 \
  || die "binfmt_misc has no enabled qemu-aarch64 entry (update-binfmts --enable qemu-aarch64 failed)" 3

# 3. The rootfs, unless the cached one matches this recipe.
if [ -f "$ROOTFS/.edgeeas-ready" ] && [ "$(cat "$ROOTFS/.edgeeas-ready")" = "$RECIPE" ]; then
  say "cached rootfs $ROOTFS ($RECIPE)"
else
  START=$(date +%s)
  MIRROR="$(mirror)"
  PARTIAL="$ROOTFS.partial"
  # a killed earlier build may have left mounts under the partial tree
  # a killed earlier build may have left mounts under the partial tree; its debootstrap is kept
  # when it finished (the stamp), anything else starts over
  for m in $(awk -v p="$PARTIAL/" 'index($2, p) == 1 {print $2}' /proc/mounts | sort -r); do umount -l "$m" || true; done
  if [ ! -f "$PARTIAL/.edgeeas-debootstrap-done" ]; then
    rm -rf "$PARTIAL"
    mkdir -p "$(dirname "$ROOTFS")"
    say "debootstrap arm64 $SUITE from $MIRROR into $PARTIAL (about 4 minutes)"
    debootstrap --arch=arm64 --variant=minbase --include=python3 "$SUITE" "$PARTIAL" "$MIRROR" \
      > "$(dirname "$ROOTFS")/arm64-debootstrap.log" 2>&1 \
      || die "debootstrap failed ($(grep -E '^E:' "$(dirname "$ROOTFS")/arm64-debootstrap.log" | tail -1)): see $(dirname "$ROOTFS")/arm64-debootstrap.log"
    for m in $(awk -v p="$PARTIAL/" 'index($2, p) == 1 {print $2}' /proc/mounts | sort -r); do umount -l "$m" || true; done
    touch "$PARTIAL/.edgeeas-debootstrap-done"
  fi

  # The real aarch64 wheels, resolved and installed by the host's pip for the device's platform
  # (CPython 3.11, glibc 2.36): no pip, no CA bundle and no emulation needed inside.
  SITE="$PARTIAL/usr/local/lib/python3.11/dist-packages"
  say "pip: ai-edge-litert==$LITERT_VERSION numpy==$NUMPY_VERSION (aarch64 wheels) into the rootfs"
  # pip takes --platform tags literally: list every manylinux tag bookworm's glibc 2.36 runs
  PLATFORMS="--platform manylinux2014_aarch64"
  for v in $(seq 17 36); do PLATFORMS="$PLATFORMS --platform manylinux_2_${v}_aarch64"; done
  PIP="$PROJECT/.venv/bin/pip"; [ -x "$PIP" ] || PIP="python3 -m pip"
  $PIP install -q --no-compile --target "$SITE" --only-binary=:all: --implementation cp --python-version 3.11 \
      --abi cp311 $PLATFORMS -c "$PROJECT/constraints.txt" \
      "ai-edge-litert==$LITERT_VERSION" "numpy==$NUMPY_VERSION" \
    > "$(dirname "$ROOTFS")/arm64-pip.log" 2>&1 \
    || die "pip install of the aarch64 wheels failed ($(grep -E '^ERROR' "$(dirname "$ROOTFS")/arm64-pip.log" | tail -1)): see $(dirname "$ROOTFS")/arm64-pip.log"

  # Trap 1: ARM-style CPU description files (a Cortex-A76), as plain files: nothing is mounted on
  # the rootfs' /proc or /sys.  Core count: this machine's (qemu-user threads are host threads).
  NCPU="$(nproc)"
  rm -rf "$PARTIAL/proc" "$PARTIAL/sys"
  mkdir -p "$PARTIAL/proc" "$PARTIAL/sys/devices/system/cpu"
  : > "$PARTIAL/proc/cpuinfo"
  for i in $(seq 0 $((NCPU - 1))); do
    cat >> "$PARTIAL/proc/cpuinfo" <<CPU
processor	: $i
BogoMIPS	: 50.00
Features	: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs
CPU implementer	: 0x41
CPU architecture: 8
CPU variant	: 0x4
CPU part	: 0xd0b
CPU revision	: 1

CPU
    mkdir -p "$PARTIAL/sys/devices/system/cpu/cpu$i"
  done
  for f in possible present online; do echo "0-$((NCPU - 1))" > "$PARTIAL/sys/devices/system/cpu/$f"; done

  # Android's folders: /data/local/tmp, /sdcard and /system/bin (getprop) are bind-mounted per peer.
  mkdir -p "$PARTIAL/data/local/tmp" "$PARTIAL/sdcard" "$PARTIAL/storage/emulated" "$PARTIAL/system/bin"
  ln -sfn /sdcard "$PARTIAL/storage/emulated/0"
  rm -rf "$PARTIAL/var/cache/apt/archives/"*.deb "$PARTIAL/usr/share/doc" "$PARTIAL/usr/share/man"

  # Smoke test on emulated ARM: the interpreter imports and reports the wheel's version.
  got="$(QEMU_CPU=cortex-a76 chroot "$PARTIAL" /usr/bin/python3 -c \
        'import importlib.metadata as m, platform, numpy; from ai_edge_litert.interpreter import Interpreter; print(platform.machine(), m.version("ai-edge-litert"), numpy.__version__)' 2>&1)" \
    || die "the rootfs' python3 cannot import ai_edge_litert under qemu: $got"
  [ "$got" = "aarch64 $LITERT_VERSION $NUMPY_VERSION" ] || die "unexpected smoke test output: $got"
  echo "$RECIPE" > "$PARTIAL/.edgeeas-ready"
  rm -rf "$ROOTFS"
  mv "$PARTIAL" "$ROOTFS"
  say "built $ROOTFS in $(( $(date +%s) - START )) s ($(du -sm "$ROOTFS" | cut -f1) MB): $got"
fi
echo "$ROOTFS"
