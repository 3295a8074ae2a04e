#!/usr/bin/env bash
# One call on the GPU machine for issue 13's 3-class models: build against the CUDA libtorch
# (cuda_build.sh), run the recipe search (gpu_sweep.sh: every candidate, three seeds, validation
# and test figures), then put in DEST what the 64 MiB transfer back can hold: results.tar.gz (logs,
# histories, metrics, predictions, the tables) and the chosen candidate's model of every seed,
# stripped of what `pneumoscope calibrate` fits again (strip_fitted.py), as models.tar.xz.* parts.
#
#   PS_DEPS_PREFIX=.device/deps/usr tests/bench/gpu_models_call.sh KERMANY224 DEST [gpu_sweep.sh options]
#
# Here, afterwards: cat models.tar.xz.* | xz -d | tar x, then pneumoscope calibrate each model on
# the same split (MODELS.md has the commands).
set -uo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
FILMS=$1 DEST=$2
shift 2
W=${PS_WORK:-/tmp/ps-sweep}
mkdir -p "$W" "$DEST"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$SRC/tests/bench/cuda_build.sh" "$W/build" "$W/logs" pneumoscope_cli pneumoscope_torch || exit 1
. "$W/build/env.sh"  # LD_LIBRARY_PATH for the libraries in PS_DEPS_PREFIX
"$W/build/pneumoscope" version
"$SRC/tests/bench/gpu_sweep.sh" "$W/build" "$FILMS" "$W/out" "$@"
cd "$W/out" || exit 1
tar czf "$DEST/results.tar.gz" split.log times.txt skipped.txt summary.md $(ls winner.txt 2>/dev/null) \
  runs/*.log runs/*/history.json runs/*/history.csv eval/*.log eval/*/metrics.json eval/*/predictions.csv
if [ -f winner.txt ]; then
  read -r cand ship < winner.txt
  rm -rf "$W/pack" && mkdir -p "$W/pack"
  for m in runs/"$cand"-s*/best.safetensors; do
    python3 "$SRC/tests/bench/strip_fitted.py" "$m" "$W/pack/$(basename "$(dirname "$m")").safetensors"
  done
  tar cf - -C "$W/pack" . | xz -T"$(nproc)" -6 | split -b 15M - "$DEST/models.tar.xz."
fi
ls -la "$DEST"
