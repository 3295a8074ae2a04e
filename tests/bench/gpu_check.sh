#!/usr/bin/env bash
# One call on a CUDA machine (issue 8): build PneumoScope against the CUDA libtorch of the
# installed PyTorch, check GPU logits against CPU logits on the same weights, and measure training
# and inference images/s for PneumoScope and the PyTorch reference (tests/bench/gpu_reference.py)
# on the same films, printing the ratios last. Not ctest (CI has no GPU).
#
#   tests/bench/gpu_check.sh FILM_DIR [OUTDIR]
#
# FILM_DIR: a NORMAL/ PNEUMONIA/ folder tree (e.g. the 651 Kermany films, downscaled with
# tests/bench/make_small_films.py so they travel). DICOM is off in this build (no DCMTK there);
# libpng/libturbojpeg may come from PS_DEPS_PREFIX (Debian packages unpacked with dpkg -x).
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
FILMS=$(cd "$1" && pwd)
OUTDIR=${2:-$(mktemp -d)}
mkdir -p "$OUTDIR"
PY=${PS_PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" -c 'import torch, torchvision; print("python torch", torch.__version__, "torchvision", torchvision.__version__, "cuda", torch.version.cuda)'

B="$SRC/build-gpu"
"$SRC/tests/bench/cuda_build.sh" "$B" "$OUTDIR" -- -DPS_WITH_BENCH=ON
. "$B/env.sh"  # LD_LIBRARY_PATH for the libraries in PS_DEPS_PREFIX
PS="$B/pneumoscope"
"$PS" version

echo "== 1. GPU vs CPU logits on the same weights (sample films)"
"$B/tests/bench/bench_gpu" --device cpu --size 64 --batch 2 --steps 1 --infer-batch 2 > /dev/null  # CPU path links and runs
MODEL="$SRC/sample_data/models/pneumoscope-binary.safetensors"
if [ ! -f "$MODEL" ]; then
  echo "no bundled model; using random weights"
  MODEL="$OUTDIR/random.safetensors"
  "$PY" - "$MODEL" <<'PY'
import sys, torch, torchvision, json, struct
m = torchvision.models.resnet18(num_classes=2); torch.manual_seed(0)
sd = {k: v.contiguous() for k, v in m.state_dict().items()}
hdr, off, blobs = {}, 0, []
for k, v in sd.items():
    b = v.numpy().tobytes(); dt = {torch.float32: "F32", torch.int64: "I64"}[v.dtype]
    hdr[k] = {"dtype": dt, "shape": list(v.shape), "data_offsets": [off, off + len(b)]}; off += len(b); blobs.append(b)
h = json.dumps(hdr).encode(); h += b" " * ((8 - len(h) % 8) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
PY
fi
FILMS_SAMPLE="$SRC/sample_data/films/kaggle"
"$PS" classify --model "$MODEL" --device cpu --json "$FILMS_SAMPLE" > "$OUTDIR/cls_cpu.json"
"$PS" classify --model "$MODEL" --device cuda --json "$FILMS_SAMPLE" > "$OUTDIR/cls_cuda.json"
"$PY" - "$OUTDIR/cls_cpu.json" "$OUTDIR/cls_cuda.json" <<'PY'
import json, sys
a = {r["file"]: r for r in json.load(open(sys.argv[1]))}
b = {r["file"]: r for r in json.load(open(sys.argv[2]))}
d = max(abs(a[f]["probabilities"][c] - b[f]["probabilities"][c]) for f in a for c in a[f]["probabilities"])
same = sum(a[f]["label"] == b[f]["label"] for f in a)
print(f"classify cuda vs cpu: {len(a)} films, max |dP| = {d:.2e}, same label {same}/{len(a)}")
assert d < 2e-2, "GPU probabilities differ from CPU beyond bf16 tolerance"
PY

echo "== 2. model throughput, device-resident batches (bf16 autocast, channels_last)"
for bs in 32 256; do
  "$B/tests/bench/bench_gpu" --device cuda --batch $bs --steps 60 --infer-batch 1024 | tee -a "$OUTDIR/ours.jsonl"
done

echo "== 3. end-to-end training on the films (split by patient, cache, augmentation, bf16)"
"$PS" split "$FILMS" -o "$OUTDIR/split" --seed 1 > "$OUTDIR/split.log" 2>&1 || { cat "$OUTDIR/split.log"; exit 1; }
for bs in 32 256; do
  "$PS" train --manifest "$OUTDIR/split/manifest.csv" -o "$OUTDIR/train_b$bs" --device cuda --batch $bs \
    --epochs 6 --patience -1 --seed 1 > "$OUTDIR/train_b$bs.log" 2>&1 || { tail -20 "$OUTDIR/train_b$bs.log"; exit 1; }
  tail -3 "$OUTDIR/train_b$bs.log"
done
# The same batch-32 run on the CPU: CUDA training must learn what CPU training learns (until 4 Dec
# 2026 it did not: autocast kept each epoch's first bf16 weights, and validation AUC stayed near 0.6)
"$PS" train --manifest "$OUTDIR/split/manifest.csv" -o "$OUTDIR/train_cpu_b32" --device cpu --threads "$(nproc)" \
  --batch 32 --epochs 6 --patience -1 --seed 1 > "$OUTDIR/train_cpu_b32.log" 2>&1 \
  || { tail -20 "$OUTDIR/train_cpu_b32.log"; exit 1; }
"$PY" - "$OUTDIR" <<'PY'
import json, os, sys
def best(run):
    h = json.load(open(os.path.join(sys.argv[1], run, "history.json")))
    return max(e["auc"] for e in h["epochs"])
g, c = best("train_b32"), best("train_cpu_b32")
print(f"best validation AUC over 6 epochs, batch 32: CUDA {g:.4f}, CPU {c:.4f}")
assert g >= c - 0.08, "CUDA training learns less than CPU training on the same films"
PY

echo "== 4. PyTorch reference (DataLoader + PIL decode + AMP) on the same films"
for bs in 32 256; do
  "$PY" "$SRC/tests/bench/gpu_reference.py" "$FILMS" --batch $bs --epochs 4 --infer-batch 1024 | tee -a "$OUTDIR/ref.jsonl"
done

echo "== ratios (PneumoScope / PyTorch, same GPU, same call)"
"$PY" - "$OUTDIR" <<'PY'
import csv, glob, json, os, sys
out = sys.argv[1]
ours = [json.loads(l) for l in open(os.path.join(out, "ours.jsonl"))]
ref = [json.loads(l) for l in open(os.path.join(out, "ref.jsonl"))]
def e2e(bs):
    rows = list(csv.DictReader(open(os.path.join(out, f"train_b{bs}", "history.csv"))))
    ips = [float(r["images_per_s"]) for r in rows[1:]] or [float(rows[0]["images_per_s"])]
    return sum(ips) / len(ips)
print(f"device: {ref[0]['device']}")
for o, r in zip(ours, ref):
    bs = o["batch"]
    t = e2e(bs)
    print(f"batch {bs:4d}: train end-to-end {t:9.0f} img/s vs PyTorch {r['train_images_per_s']:9.0f} img/s -> x{t / r['train_images_per_s']:.2f}"
          f" | device-resident train step {o['train_images_per_s']:9.0f} img/s")
    print(f"            inference (batch {o['infer_batch']}) {o['infer_images_per_s']:9.0f} img/s vs PyTorch {r['infer_images_per_s']:9.0f} img/s -> x{o['infer_images_per_s'] / r['infer_images_per_s']:.2f}")
PY
