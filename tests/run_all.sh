#!/usr/bin/env bash
# Every test, from a fresh Debian 12 machine (as root): install the Debian packages,
# build in build-test/, run ctest. This is the README's second command and what .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=$(xargs -a .ci/packages dpkg-query -W -f='${Package} ${Status}\n' 2>/dev/null | grep -vc ' installed$' || true)
  if ! xargs -a .ci/packages dpkg-query -W >/dev/null 2>&1 || [ "$missing" != 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive xargs -a .ci/packages apt-get install -y -qq --no-install-recommends
  fi
fi
jobs=$(nproc)
cmake -S . -B build-test -DCMAKE_BUILD_TYPE=Release
cmake --build build-test -j"$jobs"
cd build-test
ctest --output-on-failure -j"$jobs" "$@"
