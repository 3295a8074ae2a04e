#!/usr/bin/env bash
# ctest fiji_imagej_<part>: real ImageJ runs the macros in this folder; check_fiji.py compares
# with the CLI. Part: open | model | train (see tests/fiji.cmake).
set -euo pipefail
exec "${PS_PYTHON:-/usr/bin/python3}" "$(dirname "$0")/check_fiji.py" "$@"
