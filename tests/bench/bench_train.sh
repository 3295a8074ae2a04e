#!/usr/bin/env bash
# Training benchmark: `pneumoscope train` against the Python reference loop (tests/bench/train_reference.py:
# torch + torchvision, the seed project's recipe) on the same machine, same patient split of the real
# Kermany films, same image size, batch, threads and epochs. Prints the epoch throughput ratio
# (training images per second, mean over epochs), the end-to-end wall-time ratio (our cache build
# included), and with --full the test metrics of both after the full recipe (early stopping as the
# task's default): test ROC AUC, F1 and accuracy at 0.5 for Python; ours at the validation-chosen
# threshold and at 0.5.
#
#   tests/bench/bench_train.sh [--build DIR] [--size 128] [--batch 32] [--epochs 2] [--threads N]
#                              [--task binary|multiclass] [--manifest M] [--full] [--out DIR]
#                              [--limit N]   (N evenly spaced films per split, the same in both)
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
build=$here/build; size=128; batch=32; epochs=2; threads=$(nproc); task=binary; manifest=""; full=0; out=""; limit=0
while [ $# -gt 0 ]; do
  case $1 in
    --build) build=$2; shift 2;; --size) size=$2; shift 2;; --batch) batch=$2; shift 2;;
    --epochs) epochs=$2; shift 2;; --threads) threads=$2; shift 2;; --task) task=$2; shift 2;;
    --manifest) manifest=$2; shift 2;; --full) full=1; shift;; --out) out=$2; shift 2;;
    --limit) limit=$2; shift 2;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
py=${PS_PYTHON:-/usr/bin/python3}
cli=$build/pneumoscope
out=${out:-$(mktemp -d /tmp/pneumoscope-bench-train-XXXXXX)}
mkdir -p "$out"
if [ -z "$manifest" ]; then
  "$cli" split "$here/../shared/data/kaggle" -o "$out/split" --seed 42 --task multiclass --force >/dev/null
  manifest=$out/split/manifest.csv
fi
echo "machine: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg) (shared machine: timings are noisy)"
echo "data: $manifest  task $task  size $size  batch $batch  threads $threads"

ep_args=(--epochs "$epochs" --patience 1000)
[ $full = 1 ] && ep_args=()

t0=$(date +%s.%N)
"$py" "$here/tests/bench/train_reference.py" --manifest "$manifest" --task "$task" --size "$size" --batch "$batch" \
  --threads "$threads" --limit "$limit" "${ep_args[@]}" --json "$out/python.json" | tee "$out/python.log"
t1=$(date +%s.%N)
ours_ep=(--epochs "$epochs" --patience -1)
[ $full = 1 ] && ours_ep=()
rm -rf "$out/ours"
"$cli" train --manifest "$manifest" -o "$out/ours" --task "$task" --size "$size" --batch "$batch" --threads "$threads" \
  --device cpu --limit "$limit" "${ours_ep[@]}" 2>&1 | tee "$out/ours.log"
t2=$(date +%s.%N)
"$cli" evaluate --model "$out/ours/best.safetensors" --manifest "$manifest" --split test -o "$out/eval" --threads "$threads" --limit "$limit" | tee "$out/eval.log"
if [ "$task" = binary ]; then
  "$cli" evaluate --model "$out/ours/best.safetensors" --manifest "$manifest" --split test -o "$out/eval05" --threshold 0.5 \
    --threads "$threads" --limit "$limit" | tee "$out/eval05.log"
fi

"$py" - "$out" "$t0" "$t1" "$t2" "$task" <<'PY'
import json, sys
out, t0, t1, t2, task = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
p = json.load(open(f"{out}/python.json"))
h = json.load(open(f"{out}/ours/history.json"))["epochs"]
ours_ips = sum(e["images_per_s"] for e in h) / len(h)
print(f"\nepoch throughput (training images/s, mean of {len(h)} / {p['epochs_run']} epochs): "
      f"ours {ours_ips:.2f}  python {p['mean_images_per_s']:.2f}  ratio {ours_ips / p['mean_images_per_s']:.2f}x")
print(f"end-to-end wall time (train + val each epoch; ours includes the cache build): ours {t2 - t1:.0f} s  "
      f"python {t1 - t0:.0f} s  ratio {(t1 - t0) / (t2 - t1):.2f}x")
m = json.load(open(f"{out}/eval/metrics.json"))
f1 = m["per_class"]["PNEUMONIA"]["f1"] if task == "binary" else m["macro"]["f1"]
print(f"test: python AUC {p['test_auc']:.4f} F1@0.5 {p['test_f1']:.4f} acc@0.5 {p['test_acc']:.4f}")
line = f"test: ours   AUC {m['roc_auc']:.4f} F1 {f1:.4f} acc {m['accuracy']:.4f}"
if task == "binary":
    m5 = json.load(open(f"{out}/eval05/metrics.json"))
    line += (f" at the validation threshold {m['threshold']:.4f}; at 0.5: F1 {m5['per_class']['PNEUMONIA']['f1']:.4f} "
             f"acc {m5['accuracy']:.4f}")
    if "test_acc_youden" in p:
        line += f"\n      python at its own validation Youden threshold {p['youden_threshold_val']:.4f}: acc {p['test_acc_youden']:.4f}"
print(line)
PY
echo "files: $out"
