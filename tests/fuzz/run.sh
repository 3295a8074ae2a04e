#!/usr/bin/env bash
# Build the libFuzzer harnesses (clang, -fsanitize=fuzzer,address,undefined) in their own build
# folder and run each for a time budget. Not part of ctest.
#
#   tests/fuzz/run.sh [SECONDS_PER_HARNESS] [HARNESS...]     (default 60 s; all four harnesses)
#   FUZZ_BUILD=build-fuzz tests/fuzz/run.sh 120 image dicom
#   PS_FUZZ_KNOWN_R2=1 tests/fuzz/run.sh 120 csv   (csv: go on past open bug R2, see the harness)
#
# Harnesses: image (PNG+JPEG decoding), dicom (ps_dicom_read/_meta/_probe + ps_image_read
# dispatch), safetensors (ps_st_open + ps_st_read_tensor, the parser behind ps_model_load), csv (manifest and
# labels CSV of native/dataset). Seeds: small variants of the real films in sample_data/
# (made by tests/malformed/make_catalogue.py --seeds) plus the regression files in
# tests/malformed/regress/. New corpus entries stay in $FUZZ_BUILD/corpus/<harness>; crashes,
# leaks and timeouts are written to $FUZZ_BUILD/findings/<harness>/ and make the script exit 1.
# A summary line per harness (runs, exec/s, corpus size, findings) goes to $FUZZ_BUILD/summary.txt.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
src="$(cd "$here/../.." && pwd)"
budget="${1:-60}"
shift || true
harnesses=("$@")
[ ${#harnesses[@]} -gt 0 ] || harnesses=(image dicom safetensors csv)
out="${FUZZ_BUILD:-$src/build-fuzz}"
py="${PS_PYTHON:-/usr/bin/python3}"
CC="${CC:-clang}"
CXX="${CXX:-clang++}"
mkdir -p "$out/obj" "$out/seeds" "$out/corpus" "$out/findings"

san="-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g -O1"
lib_san="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g -O1"
inc=(-I"$src/native/core" -I"$src/native/image" -I"$src/dicom" -I"$src/native/model"
     -I"$src/native/torch" -I"$src/native/dataset" -I"$here")
dcmtk_libs="$(pkg-config --libs dcmtk 2>/dev/null || echo -ldcmdata -ldcmimgle -ldcmjpeg -ldcmjpls -ldcmimage -ldcmrle -ldcmdata -loflog -lofstd)"

compile_c() { # out.o src.c [defs...]
  local o="$1" s="$2"; shift 2
  if [ ! -f "$o" ] || [ "$s" -nt "$o" ]; then
    "$CC" -std=gnu11 $lib_san "${inc[@]}" "$@" -c "$s" -o "$o"
  fi
}

build() {
  local h="$1" objs=() extra_libs="" defs=()
  case "$h" in
    image)
      for f in core/common core/image image/image_read image/image_png image/image_jpeg; do
        compile_c "$out/obj/img_${f//\//_}.o" "$src/native/$f.c"; objs+=("$out/obj/img_${f//\//_}.o"); done
      extra_libs="-lpng -lturbojpeg -lz -lm" ;;
    dicom)
      for f in core/common core/image image/image_read image/image_png image/image_jpeg; do
        compile_c "$out/obj/dcm_${f//\//_}.o" "$src/native/$f.c" -DPS_HAVE_DICOM; objs+=("$out/obj/dcm_${f//\//_}.o"); done
      if [ ! -f "$out/obj/dicom.o" ] || [ "$src/dicom/dicom.cpp" -nt "$out/obj/dicom.o" ]; then
        local jp2=""; pkg-config --exists libopenjp2 && jp2="-DPS_HAVE_OPENJPEG $(pkg-config --cflags libopenjp2)"
        "$CXX" -std=c++17 $lib_san "${inc[@]}" $jp2 -DPS_HAVE_DICOM -c "$src/dicom/dicom.cpp" -o "$out/obj/dicom.o"
      fi
      objs+=("$out/obj/dicom.o")
      extra_libs="$dcmtk_libs $(pkg-config --libs libopenjp2 2>/dev/null) -lpng -lturbojpeg -lz -lm -lstdc++ -lpthread" ;;
    safetensors)
      for f in core/common core/io torch/dtype model/safetensors; do
        compile_c "$out/obj/st_${f//\//_}.o" "$src/native/$f.c"; objs+=("$out/obj/st_${f//\//_}.o"); done
      extra_libs="-ljansson -lm" ;;
    csv)
      for f in core/common core/io core/image image/image_read image/image_png image/image_jpeg \
               dataset/csv dataset/dataset dataset/split dataset/materialize; do
        compile_c "$out/obj/csv_${f//\//_}.o" "$src/native/$f.c"; objs+=("$out/obj/csv_${f//\//_}.o"); done
      extra_libs="-lpng -lturbojpeg -lz -ljansson -lnettle -lm -lpthread" ;;
    *) echo "unknown harness $h" >&2; exit 2 ;;
  esac
  local link="$CC"; [ "$h" = dicom ] && link="$CXX"
  "$link" $san "${inc[@]}" -x c "$here/fuzz_$h.c" -x none "${objs[@]}" $extra_libs -o "$out/fuzz_$h"
}

# Seeds: small variants of the real films and models (regenerated when the script changes).
if [ ! -f "$out/seeds/.done" ] || [ "$src/tests/malformed/make_catalogue.py" -nt "$out/seeds/.done" ]; then
  rm -rf "$out/seeds"; mkdir -p "$out/seeds"
  "$py" "$src/tests/malformed/make_catalogue.py" --seeds "$out/seeds"
  touch "$out/seeds/.done"
fi

status=0
: > "$out/summary.txt.new"
for h in "${harnesses[@]}"; do
  echo "== building fuzz_$h"
  build "$h"
  mkdir -p "$out/corpus/$h" "$out/findings/$h" "$out/findings-old/$h"
  # earlier findings (already turned into regression files) move aside: count only this run's
  find "$out/findings/$h" -type f -exec mv -t "$out/findings-old/$h/" {} +
  seeds=("$out/seeds/$h")
  [ -d "$src/tests/malformed/regress/$h" ] && seeds+=("$src/tests/malformed/regress/$h")
  dict=(); [ -f "$here/$h.dict" ] && dict=(-dict="$here/$h.dict")
  echo "== fuzzing $h for ${budget}s"
  log="$out/fuzz_$h.log"
  set +e
  # -jobs=1: libFuzzer runs the fuzzing in a child that logs to fuzz-0.log in the working folder
  # (here $out); its final stats are appended to $log below.
  rm -f "$out/fuzz-0.log"
  (cd "$out" && ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=1:halt_on_error=1" \
  UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1" \
    "$out/fuzz_$h" "$out/corpus/$h" "${seeds[@]}" "${dict[@]}" -max_total_time="$budget" \
      -timeout=10 -rss_limit_mb=2048 -max_len=262144 -print_final_stats=1 \
      -artifact_prefix="$out/findings/$h/" -jobs=1 -workers=1 >"$log" 2>&1)
  rc=$?
  [ -f "$out/fuzz-0.log" ] && cat "$out/fuzz-0.log" >> "$log" && rm -f "$out/fuzz-0.log"
  set -e
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  eps=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*')
  ncorp=$(ls "$out/corpus/$h" | wc -l)
  nfind=$(ls "$out/findings/$h" | wc -l)
  line="$h: ${budget}s runs=${runs:-?} exec/s=${eps:-?} cov=${cov:-?} corpus=$ncorp findings=$nfind rc=$rc"
  echo "$line" | tee -a "$out/summary.txt.new"
  if [ "$rc" -ne 0 ] || [ "$nfind" -ne 0 ]; then
    status=1
    grep -E "ERROR|SUMMARY|runtime error" "$log" | head -5 || true
  fi
done
mv "$out/summary.txt.new" "$out/summary.txt"
exit $status
