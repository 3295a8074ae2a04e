#!/usr/bin/env bash
# Trains the bundled models (sample_data/models/MODELS.md) from the kermany224 films, every seed
# given, with nothing but `pneumoscope split` and `pneumoscope train`; re-running it resumes every
# unfinished run (train --resume) and skips finished ones, so a CPU machine can do it in pieces.
# Not ctest. On 2 CPU cores one seed takes about an hour; on a GPU (--device cuda) a few minutes.
#
#   tests/bench/train_models.sh BUILD OUTDIR [--device cpu|cuda] [--seeds "1 2 3"] [--threads N]
#                               [--roi film|lungmask] [--only binary]
#
# Recipe, per seed s (chosen on validation, see MODELS.md):
#   bin112-R-s  binary, 112 px, --roi R (film: the whole film, the default), Adam 1e-3 with cosine
#               decay over 10 epochs, the best epoch by val AUC
#   bin224-R-s  binary, 224 px, from bin112-R-s's weights (fc new), Adam 3e-4 cosine over 4 epochs
#   tri224-R-s  NORMAL/BACTERIA/VIRUS, 224 px, from bin224-R-s's weights (fc new), Adam 3e-4 cosine
#               over 3 epochs, plain shuffling (beat class-balanced sampling on validation macro-F1,
#               0.809 vs 0.793), the best epoch by val macro-F1
# Training at 112 px first costs a quarter of the 224 px FLOPs per epoch (progressive resizing);
# every run fits its temperature and out-of-distribution detector at the end (ps_calibrate.h) and
# stores the training patients' ages, 1-5 years (Kermany's cohort; --patient-ages). Measure each
# seed with tests/bench/evaluate_models.sh, tabulate them with tests/bench/seeds_table.py.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$(cd "$1" && pwd)
OUT=$2
shift 2
DEVICE=cpu SEEDS="1" THREADS=$(nproc) ROI=film ONLY=""
while [ $# -gt 0 ]; do
  case $1 in
    --device) DEVICE=$2; shift 2;; --seeds) SEEDS=$2; shift 2;; --threads) THREADS=$2; shift 2;;
    --roi) ROI=$2; shift 2;; --only) ONLY=$2; shift 2;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
PS="$BUILD/pneumoscope"
DATA=${PS_SHARED_DATA:-$SRC/../shared/data}
mkdir -p "$OUT"
MAN="$OUT/split224/manifest.csv"
[ -f "$MAN" ] || "$PS" split "$DATA/kermany224" -o "$OUT/split224" --seed 42 --task multiclass | tee "$OUT/split.log"

# run NAME ARGS...: train into OUT/NAME, resuming an unfinished run, skipping a finished one
run() {
  local name=$1; shift
  local dir="$OUT/$name"
  if [ -f "$dir/done" ]; then echo "== $name: done"; return; fi
  local resume=()
  [ -f "$dir/last.ckpt" ] && resume=(--resume)
  echo "== $name: pneumoscope train $* ${resume[*]}"
  "$PS" train --manifest "$MAN" -o "$dir" --device "$DEVICE" --threads "$THREADS" --half --patient-ages 1-5 "$@" \
    "${resume[@]}" \
    2>&1 | tee -a "$OUT/$name.log"
  [ "${PIPESTATUS[0]}" = 0 ] && touch "$dir/done"
}

SUF=${ROI/film/}
C112="$OUT/cache-112${SUF:+-$SUF}.pscache" C224="$OUT/cache-224${SUF:+-$SUF}.pscache"
for s in $SEEDS; do
  run "bin112-$ROI-s$s" --task binary --size 112 --roi "$ROI" --lr-schedule cosine --epochs 10 --patience -1 \
    --seed "$s" --cache "$C112"
  run "bin224-$ROI-s$s" --task binary --size 224 --roi "$ROI" --init "$OUT/bin112-$ROI-s$s/best.safetensors" --lr 3e-4 \
    --lr-schedule cosine --epochs 4 --patience -1 --seed "$s" --cache "$C224"
  [ "$ONLY" = binary ] && continue
  run "tri224-$ROI-s$s" --task multiclass --size 224 --roi "$ROI" --init "$OUT/bin224-$ROI-s$s/best.safetensors" \
    --lr 3e-4 --lr-schedule cosine --epochs 3 --patience -1 --seed "$s" --cache "$C224"
done
for s in $SEEDS; do
  for r in bin224 tri224; do
    h="$OUT/$r-$ROI-s$s/history.json"
    [ -f "$h" ] && echo "$r-$ROI-s$s: $(grep -o '"best_epoch": [0-9]*' "$h")"
  done
done
