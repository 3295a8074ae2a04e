#!/usr/bin/env bash
# Builds PneumoScope on the GPU machine against the CUDA libtorch of its PyTorch (no DCMTK, Java or
# CMocka there): the build the GPU scripts share (gpu_check.sh, devbatch_check.sh, gpu_models_call.sh).
#
#   tests/bench/cuda_build.sh BUILD LOGDIR [TARGET...] [-- CMAKE_ARG...]
#
# PS_DEPS_PREFIX: Debian packages unpacked with dpkg -x (libjansson-dev libjansson4 nettle-dev
# libnettle8 libpng-dev libpng16-16 zlib1g-dev libturbojpeg0-dev libturbojpeg0 ...), e.g.
# .device/deps/usr; their .pc files say /usr, so pkg-config reads them through its sysroot.
# Programs built here then need LD_LIBRARY_PATH=$PS_DEPS_PREFIX/lib/x86_64-linux-gnu: `. BUILD/env.sh`.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
B=$1 LOGS=$2
shift 2
TARGETS=() ARGS=()
while [ $# -gt 0 ]; do
  if [ "$1" = -- ]; then shift; ARGS=("$@"); break; fi
  TARGETS+=(--target "$1"); shift
done
mkdir -p "$LOGS"
PY=${PS_PYTHON:-python3}
PREFIX=$("$PY" -c 'import torch; print(torch.utils.cmake_prefix_path)')
if [ -n "${PS_DEPS_PREFIX:-}" ]; then
  DEPS=$(cd "$PS_DEPS_PREFIX" && pwd)
  PREFIX="$PREFIX;$DEPS"
  export PKG_CONFIG_SYSROOT_DIR="$(cd "$DEPS/.." && pwd)"
  export PKG_CONFIG_LIBDIR="$DEPS/lib/x86_64-linux-gnu/pkgconfig:$DEPS/share/pkgconfig"
  export LD_LIBRARY_PATH="$DEPS/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
t0=$(date +%s)
# PS_WITH_DIST=OFF: dist.cpp is written for Debian's libtorch 1.13 c10d, not pip's
cmake -S "$SRC" -B "$B" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$PREFIX" -DPS_WITH_DICOM=OFF \
  -DPS_WITH_JAVA=OFF -DPS_WITH_TESTS=OFF -DPS_WITH_DIST=OFF "${ARGS[@]}" > "$LOGS/configure.log" 2>&1 \
  || { tail -40 "$LOGS/configure.log"; exit 1; }
grep PneumoScope "$LOGS/configure.log" || true
cmake --build "$B" -j"$(nproc)" "${TARGETS[@]}" > "$LOGS/build.log" 2>&1 \
  || { grep -E -A3 "error|Error" "$LOGS/build.log" | head -60; exit 1; }
echo "build: $(($(date +%s) - t0)) s"
printf 'export LD_LIBRARY_PATH=%q\n' "${LD_LIBRARY_PATH:-}" > "$B/env.sh"
