#!/bin/sh
# pneumoscope classify vs what a user otherwise runs (/usr/bin/python3: PIL decode + torchvision
# transforms + torchvision ResNet18 with torch.set_num_threads(nproc), tests/bench/classify_reference.py)
# on the same random-weight binary model. pneumoscope classifies on the CPU through its C engine
# (native/model/engine.c, OpenBLAS) and never loads libtorch for it. Not part of ctest. Prints ratios measured in this run:
#   - one film, whole process (file -> label, cold process), best of REPEATS wall time
#   - in-process per-film latency (read + preprocess + forward), median of 20 after a warm-up
#   - folder throughput over ../shared/data/kaggle (651 films): both in batches of 16
#     (pneumoscope's CPU default), best of REPEATS interleaved runs each (wall times on a shared
#     2-core machine vary by +-20 % from run to run; all are printed)
#   - peak RSS (/usr/bin/time -v "Maximum resident set size") of the whole-process and folder runs
# and checks that the BLAS libtorch loads is OpenBLAS. Aim: whole process >= 3x faster,
# throughput >= 1.5x, peak memory <= half.
#
#   tests/bench/bench_classify.sh [BUILD_DIR (default build-model)] [REPEATS (default 3)]
#
# Wall times: on a shared machine, rerun when the load average printed is high.
set -eu
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${1:-$SRC/build-model}
REPS=${2:-3}
PY=${PS_PYTHON:-/usr/bin/python3}
DATA=${PS_SHARED_DATA:-$SRC/../shared/data}
CLI="$BUILD/pneumoscope"
NPROC=$(nproc)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
FILM="$DATA/kaggle/NORMAL/IM-0117-0001.jpeg"

echo "machine: $NPROC CPUs, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
# --- which BLAS: the C engine (CPU classification) and libtorch (training, Grad-CAM) ------------
ENGINE=$("$CLI" version | sed -n 's/^cpu classification: //p')
echo "CPU classification runs on: $ENGINE"
BLAS=$(ldd "$BUILD/libpneumoscope.so" "$BUILD/libpneumoscope_torch.so" 2>/dev/null | awk '/libblas|libopenblas/ {print $3}' | xargs -r readlink -f | sort -u | tr '\n' ' ')
echo "BLAS libraries loaded by libpneumoscope and its libtorch backend: $BLAS"
case "$ENGINE $BLAS" in
  *OpenBLAS*openblas*) echo "BLAS check: OpenBLAS (ok)" ;;
  *) echo "BLAS check: FAILED, the engine or libtorch does not use OpenBLAS"; exit 1 ;;
esac

cc -O2 -o "$T/bench_classify" "$SRC/tests/bench/bench_classify.c" -I"$SRC/native/core" -I"$SRC/native/torch" \
  -I"$SRC/native/model" -I"$SRC/native/infer" -L"$BUILD" -lpneumoscope -Wl,-rpath,"$BUILD"

# --- the model both sides use ---------------------------------------------------------------------
"$PY" - "$SRC/tests/ref" "$T/model.safetensors" <<'PYEOF'
import sys
sys.path.insert(0, sys.argv[1])
import torch, torchvision, safetensors_io
torch.manual_seed(2024)
m = torchvision.models.resnet18(num_classes=2)
safetensors_io.save(sys.argv[2], m.state_dict(), {"task": "binary", "classes": "NORMAL,PNEUMONIA",
                    "input_size": "224", "threshold": "0.5", "provenance": "bench: random weights"})
PYEOF
M="$T/model.safetensors"

# time_run OUTFILE CMD... -> appends "wall_s peak_kb" of one run
time_run() {
  out=$1; shift
  /usr/bin/time -f "%e %M" -o "$T/time.txt" "$@" > "$T/stdout.txt" 2> "$T/stderr.txt" || true
  cat "$T/time.txt" >> "$out"
}

echo
echo "== one film, whole process: $FILM (${REPS} runs each, interleaved)"
: > "$T/one_ours"; : > "$T/one_ref"
for r in $(seq "$REPS"); do
  time_run "$T/one_ours" "$CLI" classify --model "$M" "$FILM"
  time_run "$T/one_ref" "$PY" "$SRC/tests/bench/classify_reference.py" one "$M" "$FILM"
done
ONE_OURS=$(sort -n "$T/one_ours" | head -1 | cut -d' ' -f1)
ONE_REF=$(sort -n "$T/one_ref" | head -1 | cut -d' ' -f1)
RSS1_OURS=$(sort -k2 -n "$T/one_ours" | tail -1 | cut -d' ' -f2)
RSS1_REF=$(sort -k2 -n "$T/one_ref" | tail -1 | cut -d' ' -f2)

echo "== in-process latency per film (median of 20 after warm-up)"
LAT_OURS=$("$T/bench_classify" "$M" "$FILM" 20)
LAT_REF=$("$PY" "$SRC/tests/bench/classify_reference.py" latency "$M" "$FILM" 20)

echo "== folder: $DATA/kaggle ($(find "$DATA/kaggle" -name '*.jpeg' | wc -l) films, ${REPS} runs each, interleaved)"
: > "$T/dir_ours"; : > "$T/dir_ref"
for r in $(seq "$REPS"); do
  time_run "$T/dir_ours" "$CLI" classify --model "$M" --json "$DATA/kaggle"
  cp "$T/stdout.txt" "$T/ours.json"
  time_run "$T/dir_ref" "$PY" "$SRC/tests/bench/classify_reference.py" folder "$M" "$DATA/kaggle" "$T/ref.json" 16
done
echo "folder wall times (s, kB): pneumoscope $(tr '\n' ' ' < "$T/dir_ours")| reference $(tr '\n' ' ' < "$T/dir_ref")"
NFILMS=$(find "$DATA/kaggle" -name '*.jpeg' | wc -l)
DIR_OURS=$(sort -n "$T/dir_ours" | head -1 | cut -d' ' -f1); RSS2_OURS=$(sort -k2 -n "$T/dir_ours" | tail -1 | cut -d' ' -f2)
DIR_REF=$(sort -n "$T/dir_ref" | head -1 | cut -d' ' -f1); RSS2_REF=$(sort -k2 -n "$T/dir_ref" | tail -1 | cut -d' ' -f2)

"$PY" - "$T/ours.json" "$T/ref.json" <<'PYEOF'
import json, sys
ours = {r["file"]: r for r in json.load(open(sys.argv[1]))}
ref = json.load(open(sys.argv[2]))
bad = sum(1 for f, p in ref.items() if f not in ours or "error" in ours[f]
          or max(abs(ours[f]["probabilities"][k] - p[i]) for i, k in enumerate(("NORMAL", "PNEUMONIA"))) > 1e-4)
print("folder results: %d films from pneumoscope, %d from the reference, %d differ by more than 1e-4"
      % (len(ours), len(ref), bad))
PYEOF

# --- the bundled models (issue 13): what a 224 px lung-mask default costs against the 96 px film
# model it replaced, over the same folder, best of REPEATS interleaved runs each ------------------
LEGACY="$SRC/tests/data/legacy-binary96.safetensors"
: > "$T/bundled.txt"
if [ -f "$LEGACY" ] && "$CLI" classify --model binary --help > /dev/null 2>&1; then
  echo "== bundled models over the same folder (${REPS} runs each, interleaved)"
  for name in legacy binary 3class; do : > "$T/b_$name"; done
  for r in $(seq "$REPS"); do
    time_run "$T/b_legacy" "$CLI" classify --model "$LEGACY" --csv "$DATA/kaggle"
    time_run "$T/b_binary" "$CLI" classify --model binary --csv "$DATA/kaggle"
    time_run "$T/b_3class" "$CLI" classify --model 3class --csv "$DATA/kaggle"
  done
  L=$(sort -n "$T/b_legacy" | head -1 | cut -d' ' -f1)
  for name in legacy binary 3class; do
    W=$(sort -n "$T/b_$name" | head -1 | cut -d' ' -f1)
    awk -v name="$name" -v w="$W" -v l="$L" -v n="$NFILMS" 'BEGIN {
      printf "bundled %-7s folder: best %6.1f s, %5.1f films/s, %5.2fx the time of the 96 px film model\n", name, w, n / w, w / l }' \
      >> "$T/bundled.txt"
  done
fi

echo
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
cat "$T/bundled.txt"
awk -v o1="$ONE_OURS" -v r1="$ONE_REF" -v lo="$LAT_OURS" -v lr="$LAT_REF" -v d1="$DIR_OURS" -v dr="$DIR_REF" \
    -v n="$NFILMS" -v m1o="$RSS1_OURS" -v m1r="$RSS1_REF" -v m2o="$RSS2_OURS" -v m2r="$RSS2_REF" 'BEGIN {
  printf "%-34s %12s %12s %10s  %s\n", "", "pneumoscope", "python ref", "ratio", "aim";
  printf "%-34s %10.2f s %10.2f s %9.2fx  >= 3x faster\n", "one film, whole process (best)", o1, r1, r1 / o1;
  printf "%-34s %9.1f ms %9.1f ms %9.2fx\n", "in-process latency per film", lo, lr, lr / lo;
  printf "%-34s %8.1f f/s %8.1f f/s %9.2fx  >= 1.5x\n", "folder throughput", n / d1, n / dr, dr / d1;
  printf "%-34s %9.0f MB %9.0f MB %9.2f   <= 0.5\n", "peak RSS, one film", m1o / 1024, m1r / 1024, m1o / m1r;
  printf "%-34s %9.0f MB %9.0f MB %9.2f   <= 0.5\n", "peak RSS, folder", m2o / 1024, m2r / 1024, m2o / m2r;
}'
