#!/usr/bin/env bash
# Issue 8 on a CUDA machine: training batches built on the device (native/train/train_gpu.h).
#  1. the batch checks of tests/test_train_gpu_batch.c on the GPU (PS_TEST_DEVICE=cuda): device
#     batches equal the host path's (ps_augment) batches;
#  2. end-to-end `pneumoscope train --device cuda` images/s with batches built on the host
#     (PS_TRAIN_DEVICE_BATCHES=0, the path before issue 8) and on the device (the CUDA default),
#     same films, same call, printed as ratios. Not ctest (CI has no GPU).
#
#   PS_DEPS_PREFIX=.device/deps/usr tests/bench/devbatch_check.sh FILM_DIR [OUTDIR]
#
# FILM_DIR: a NORMAL/ PNEUMONIA/ tree (e.g. the Kermany films downscaled by make_small_films.py).
# BATCHES (default "256 512") and EPOCHS (default 4; images/s is the mean of epochs 2..) tune it.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
FILMS=$(cd "$1" && pwd)
OUTDIR=${2:-$(mktemp -d)}
mkdir -p "$OUTDIR"
PY=${PS_PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
# the tests read FILM_DIR as kaggle/ under a shared-data folder
mkdir -p "$OUTDIR/data" && ln -sfn "$FILMS" "$OUTDIR/data/kaggle"
B="$SRC/build-devbatch"
"$SRC/tests/bench/cuda_build.sh" "$B" "$OUTDIR" pneumoscope_cli test_train_gpu_batch -- -DPS_WITH_TESTS=ON \
  -DPS_SHARED_DATA="$OUTDIR/data"
. "$B/env.sh"  # LD_LIBRARY_PATH for the libraries in PS_DEPS_PREFIX
PS="$B/pneumoscope"

echo "== 1. device batches vs host batches on the GPU"
(cd "$B/tests" && PS_TEST_DEVICE=cuda ./test_train_gpu_batch 2>&1 | grep -vE "^\[ (RUN|      OK) ")

echo "== 2. end-to-end training, batches on the host vs on the device"
"$PS" split "$FILMS" -o "$OUTDIR/split" --seed 1 > "$OUTDIR/split.log" 2>&1 || { cat "$OUTDIR/split.log"; exit 1; }
for bs in ${BATCHES:-256 512}; do
  for mode in 0 1; do
    PS_TRAIN_DEVICE_BATCHES=$mode "$PS" train --manifest "$OUTDIR/split/manifest.csv" -o "$OUTDIR/t${mode}_b$bs" \
      --cache "$OUTDIR/cache.pscache" --device cuda --batch "$bs" --epochs "${EPOCHS:-4}" --patience -1 --seed 1 \
      > "$OUTDIR/t${mode}_b$bs.log" 2>&1 || { tail -20 "$OUTDIR/t${mode}_b$bs.log"; exit 1; }
  done
done
"$PY" - "$OUTDIR" ${BATCHES:-256 512} <<'PY'
import csv, os, sys
out, batches = sys.argv[1], sys.argv[2:]
def stats(mode, bs):
    rows = list(csv.DictReader(open(os.path.join(out, f"t{mode}_b{bs}", "history.csv"))))
    ips = [float(r["images_per_s"]) for r in rows[1:]] or [float(rows[0]["images_per_s"])]
    return sum(ips) / len(ips), [round(float(r["train_loss"]), 4) for r in rows]
for bs in batches:
    h, lh = stats(0, bs)
    d, ld = stats(1, bs)
    print(f"batch {bs:>4}: train end-to-end, batches on host {h:8.0f} img/s, on device {d:8.0f} img/s -> x{d / h:.2f}")
    print(f"            train_loss per epoch: host {lh}  device {ld}")
PY
