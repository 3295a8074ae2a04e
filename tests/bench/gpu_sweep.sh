#!/usr/bin/env bash
# The recipe search of issue 13 (sample_data/models/MODELS.md) in one call on a CUDA machine:
# every candidate below, seeds 1 2 3, trained by `pneumoscope train` on the kermany224 split
# (pneumoscope split --seed 42 --task multiclass, as the bundled models), each measured right
# after it trains with `pneumoscope evaluate` on its validation films (the choice) and its test
# films (reported after the choice). Not ctest (CI has no GPU).
#
#   tests/bench/gpu_sweep.sh BUILD KERMANY224 OUTDIR [--seeds "1 2 3"] [--device cuda]
#                            [--jobs N] [--budget S] [--grace S] [--groups "base long tri112 scratch"]
#                            [--tri "e3 e8 ..."] [--smoke]
#
# BUILD: a build folder with pneumoscope (on the GPU machine: tests/bench/cuda_build.sh).
# --jobs: trainings at once (one GPU holds many: a batch-32 ResNet18 run leaves it mostly idle).
# --budget: seconds from the start after which no run starts (a run under way may go on for
#   another --grace seconds, 120 by default, then it is stopped); what was skipped is listed in
#   OUTDIR/skipped.txt. --groups and --tri choose the candidates below (default: all).
# --smoke: every run 1 epoch on 24 films per split (checks the script on a CPU).
#
# Candidates, per seed s (Adam, batch 32, cosine decay to 0 over the run, whole film, best epoch by
# validation AUC for binary and macro-F1 for 3-class; 3-class with plain shuffling and jitter only,
# binary with class-balanced sampling and crop 0.8 + jitter, the defaults):
# group base (--tri picks among its 3-class candidates: e3 e8 e15 e8-lr1e-3 e8-lr1e-4 e15-crop e15-bal):
#   bin112-s -> bin224-s        the bundled binary recipe (112 px 10 epochs 1e-3, 224 px 4 epochs 3e-4)
#   tri-e3-s                    the bundled 3-class recipe: from bin224-s, 3 epochs 3e-4
#   tri-e8-s, tri-e15-s         the same, 8 and 15 epochs
#   tri-e8-lr1e-3-s, tri-e8-lr1e-4-s   8 epochs at 1e-3 and 1e-4
#   tri-e15-crop-s              15 epochs with the binary model's random resized crop (0.8-1)
#   tri-e15-bal-s               15 epochs with class-balanced sampling
# group long: binL112-s (30 epochs) -> binL224-s (10 epochs) -> triL-e8-s (8 epochs 3e-4)
# group tri112, 3-class all the way: tri112-s (112 px, 30 epochs 1e-3) -> triS224-s (224 px, 10 epochs 3e-4)
# group scratch: tri224-scratch-s 224 px from random weights, 40 epochs 1e-3
#   (not here: --roi lungmask, compared on the CPU with one seed; its lung finder would take most
#   of the budget to prepare 4,250 films)
set -uo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$(cd "$1" && pwd)
FILMS=$(cd "$2" && pwd)
OUT=$3
shift 3
SEEDS="1 2 3" DEVICE=cuda JOBS=16 BUDGET=300 GRACE=120 SMOKE=0
SETS="base long tri112 scratch" TRIS="e3 e8 e15 e8-lr1e-3 e8-lr1e-4 e15-crop e15-bal"
while [ $# -gt 0 ]; do
  case $1 in
    --seeds) SEEDS=$2; shift 2;; --device) DEVICE=$2; shift 2;; --jobs) JOBS=$2; shift 2;;
    --budget) BUDGET=$2; shift 2;; --grace) GRACE=$2; shift 2;; --smoke) SMOKE=1; shift;;
    --groups) SETS=$2; shift 2;; --tri) TRIS=$2; shift 2;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
PS="$BUILD/pneumoscope"
PY=${PS_PYTHON:-python3}
T0=$(date +%s)
DEADLINE=$((T0 + BUDGET))
mkdir -p "$OUT/runs" "$OUT/eval"
: > "$OUT/skipped.txt"
: > "$OUT/times.txt"
MAN="$OUT/split224/manifest.csv"
"$PS" split "$FILMS" -o "$OUT/split224" --seed 42 --task multiclass --force > "$OUT/split.log" 2>&1 \
  || { cat "$OUT/split.log"; exit 1; }
tail -3 "$OUT/split.log"
LIMIT=()
[ "$SMOKE" = 1 ] && LIMIT=(--limit 24)
ep() { if [ "$SMOKE" = 1 ]; then echo 1; else echo "$1"; fi; }

# A pool of JOBS slots shared by every background chain (a token per free slot on fd 3).
fifo="$OUT/.slots"
rm -f "$fifo" && mkfifo "$fifo" && exec 3<>"$fifo" && rm -f "$fifo"
for ((i = 0; i < JOBS; i++)); do echo >&3; done

# run NAME INIT ARGS...: train OUT/runs/NAME (INIT: weights to start from, or -), then evaluate its
# model on the validation and test films; skipped when INIT is missing or past the budget.
run() {
  local name=$1 init=$2
  shift 2
  local dir="$OUT/runs/$name" extra=()
  if [ "$init" != - ]; then
    [ -f "$init" ] || { echo "$name: not run ($init missing)" >> "$OUT/skipped.txt"; return 1; }
    extra=(--init "$init")
  fi
  read -r -u 3
  local now left rc t
  now=$(date +%s)
  left=$((DEADLINE - now))
  if [ "$left" -lt 15 ]; then
    echo >&3
    echo "$name: not run (budget spent)" >> "$OUT/skipped.txt"
    return 1
  fi
  t=$now
  timeout $((left + GRACE)) "$PS" train --manifest "$MAN" -o "$dir" --device "$DEVICE" --threads 2 --half \
    --patient-ages 1-5 "${extra[@]}" "$@" "${LIMIT[@]}" > "$OUT/runs/$name.log" 2>&1
  rc=$?
  if [ $rc = 0 ]; then
    for split in val test; do
      "$PS" evaluate --model "$dir/best.safetensors" --manifest "$MAN" --split $split --device "$DEVICE" \
        --threads 2 "${LIMIT[@]}" -o "$OUT/eval/$name-$split" > "$OUT/eval/$name-$split.log" 2>&1 || rc=$?
    done
  fi
  echo >&3
  echo "$name rc=$rc $(($(date +%s) - t)) s" >> "$OUT/times.txt"
  return $rc
}

C112=(--cache "$OUT/cache-112.pscache") C224=(--cache "$OUT/cache-224.pscache")
BIN=(--task binary --lr-schedule cosine --patience -1)
TRI=(--task multiclass --lr-schedule cosine --patience -1)
R="$OUT/runs"
# tri NAME SEED INIT: the 3-class candidate NAME (tri-NAME-sSEED) from the binary weights INIT
tri() {
  local a=(--size 224 --lr 3e-4)
  case $1 in
    e3) a+=(--epochs "$(ep 3)");; e8) a+=(--epochs "$(ep 8)");; e15) a+=(--epochs "$(ep 15)");;
    e8-lr1e-3) a+=(--epochs "$(ep 8)" --lr 1e-3);; e8-lr1e-4) a+=(--epochs "$(ep 8)" --lr 1e-4);;
    e15-crop) a+=(--epochs "$(ep 15)" --crop 0.8);; e15-bal) a+=(--epochs "$(ep 15)" --balance);;
    *) echo "tri-$1: no such candidate" >> "$OUT/skipped.txt"; return 1;;
  esac
  run "tri-$1-s$2" "$3" "${TRI[@]}" "${a[@]}" --seed "$2" "${C224[@]}"
}
has() { [[ " $SETS " == *" $1 "* ]]; }
pids=()
for s in $SEEDS; do
  if has base; then
    (
      run "bin112-s$s" - "${BIN[@]}" --size 112 --epochs "$(ep 10)" --seed "$s" "${C112[@]}" &&
        run "bin224-s$s" "$R/bin112-s$s/best.safetensors" "${BIN[@]}" --size 224 --lr 3e-4 --epochs "$(ep 4)" \
          --seed "$s" "${C224[@]}" || exit 1
      for t in $TRIS; do tri "$t" "$s" "$R/bin224-s$s/best.safetensors" & done
      wait
    ) &
    pids+=($!)
  fi
  if has long; then
    (
      run "binL112-s$s" - "${BIN[@]}" --size 112 --epochs "$(ep 30)" --seed "$s" "${C112[@]}" &&
        run "binL224-s$s" "$R/binL112-s$s/best.safetensors" "${BIN[@]}" --size 224 --lr 3e-4 --epochs "$(ep 10)" \
          --seed "$s" "${C224[@]}" &&
        run "triL-e8-s$s" "$R/binL224-s$s/best.safetensors" "${TRI[@]}" --size 224 --lr 3e-4 --epochs "$(ep 8)" \
          --seed "$s" "${C224[@]}"
    ) &
    pids+=($!)
  fi
  if has tri112; then
    (
      run "tri112-s$s" - "${TRI[@]}" --size 112 --epochs "$(ep 30)" --seed "$s" "${C112[@]}" &&
        run "triS224-s$s" "$R/tri112-s$s/best.safetensors" "${TRI[@]}" --size 224 --lr 3e-4 --epochs "$(ep 10)" \
          --seed "$s" "${C224[@]}"
    ) &
    pids+=($!)
  fi
  if has scratch; then
    run "tri224-scratch-s$s" - "${TRI[@]}" --size 224 --epochs "$(ep 40)" --seed "$s" "${C224[@]}" &
    pids+=($!)
  fi
done
wait "${pids[@]}"
echo "training + evaluation: $(($(date +%s) - T0)) s"
sort "$OUT/times.txt" > "$OUT/times.sorted" && mv "$OUT/times.sorted" "$OUT/times.txt"
[ -s "$OUT/skipped.txt" ] && { echo "skipped:"; cat "$OUT/skipped.txt"; }
"$PY" "$SRC/tests/bench/sweep_table.py" "$OUT" | tee "$OUT/summary.md"
