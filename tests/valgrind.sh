#!/usr/bin/env bash
# valgrind memcheck of the CLI on the sample films (not part of ctest: minutes under valgrind).
#
#   tests/valgrind.sh [BUILD_DIR]        (default build; RelWithDebInfo gives usable stacks)
#
# Runs `pneumoscope info` over every sample film, and `pneumoscope classify` (when the command is
# in this build) with the bundled model over 8 of them (each decoder once; libtorch under valgrind is slow). Passes when valgrind reports no invalid read/write, no
# use of uninitialised values and 0 bytes "definitely lost" / "indirectly lost"; "possibly lost"
# blocks inside libtorch/OpenMP/OpenBLAS thread pools are suppressed (tests/sanitize/valgrind.supp,
# each entry explained there). Logs: BUILD_DIR/valgrind-*.log.
set -uo pipefail
cd "$(dirname "$0")/.."
build="${1:-build}"
cli="$build/pneumoscope"
supp="tests/sanitize/valgrind.supp"
films=(sample_data/films/png/* sample_data/films/dicom/* sample_data/films/kaggle/NORMAL/* sample_data/films/kaggle/PNEUMONIA/*)
vg=(valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect
    --track-origins=yes --error-exitcode=99 --suppressions="$supp" --num-callers=30)
status=0
run() { # name args...
  local name="$1"; shift
  local log="$build/valgrind-$name.log"
  OMP_NUM_THREADS=2 "${vg[@]}" --log-file="$log" "$cli" "$@" >/dev/null 2>"$build/valgrind-$name.stderr"
  local rc=$?
  local errs; errs=$(grep -o 'ERROR SUMMARY: [0-9]*' "$log" | grep -o '[0-9]*$')
  local def; def=$(grep -o 'definitely lost: [0-9,]* bytes' "$log" | head -1)
  echo "valgrind $name: rc=$rc errors=${errs:-?} ${def:-definitely lost: 0 bytes (no leaks)}"
  if [ "$rc" -eq 99 ] || [ "${errs:-1}" != 0 ]; then status=1; grep -A12 -m3 -E 'Invalid|uninitialised|definitely lost in' "$log"; fi
}
run info info "${films[@]}"
if "$cli" help 2>&1 | grep -qw classify; then
  # the PNG, the 5 DICOMs (JPEG Baseline, implicit VR, ACR-NEMA) and 2 JPEGs: every decoder once
  run classify classify --threads 2 --batch 4 sample_data/films/png/* sample_data/films/dicom/* \
    "$(ls sample_data/films/kaggle/NORMAL/* | head -1)" "$(ls sample_data/films/kaggle/PNEUMONIA/* | head -1)"
else
  echo "valgrind classify: SKIPPED (no classify command in this build)"
fi
exit $status
