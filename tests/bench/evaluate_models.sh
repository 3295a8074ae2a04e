#!/usr/bin/env bash
# Every figure of sample_data/models/MODELS.md for a binary and a 3-class model, on the patients
# they never saw: the test split of kermany224 (224 px films, as trained) and the full-resolution
# originals of the same test patients in kaggle/, plus the out-of-distribution flag on films no
# pediatric chest model was trained for and the binary model's lung-focus audit. Not ctest
# (about 15 min on 2 cores); prints one summary table last.
#
#   tests/bench/evaluate_models.sh BUILD BINARY_MODEL THREECLASS_MODEL OUTDIR [--no-audit]
#
# A model given as - is skipped (and the audit with the binary one): a 3-class candidate alone.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$(cd "$1" && pwd)
BIN=$2
TRI=$3
OUT=$4
AUDIT=1
[ "${5:-}" = "--no-audit" ] && AUDIT=0
[ "$BIN" = - ] && AUDIT=0
PS="$BUILD/pneumoscope"
PY=${PS_PYTHON:-/usr/bin/python3}
DATA=${PS_SHARED_DATA:-$SRC/../shared/data}
mkdir -p "$OUT"
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), load $(cut -d' ' -f1-3 /proc/loadavg)"

# 1. the split the models were trained on, and the full-resolution originals of its test patients
"$PS" split "$DATA/kermany224" -o "$OUT/split224" --seed 42 --task multiclass --force > "$OUT/split.log"
"$PY" - "$OUT/split224/manifest.csv" "$DATA/kaggle" "$OUT/fullres" <<'PY'
import csv, os, sys
man, kaggle, out = sys.argv[1:4]
os.makedirs(out, exist_ok=True)
test = {r["patient_id"] for r in csv.DictReader(open(man)) if r["split"] == "test"}
rows = [r for r in csv.DictReader(open(os.path.join(kaggle, "manifest.csv"))) if r["patient_id"] in test]
with open(os.path.join(out, "manifest.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["path", "label", "subtype", "patient_id", "split", "sha256"])
    for r in rows:
        w.writerow([os.path.join(kaggle, r["file"]), r["class"], r["subtype"].upper(), r["patient_id"], "test", r["sha256"]])
print("full-resolution test films: %d of %d test patients" % (len(rows), len(test)))
PY
awk -F, 'NR>1 && $5=="test" {print $1}' "$OUT/split224/manifest.csv" > "$OUT/test224.txt"
awk -F, 'NR>1 {print $1}' "$OUT/fullres/manifest.csv" > "$OUT/testfull.txt"
FOREIGN=(/usr/lib/python3/dist-packages/pydicom/data/test_files/CT_small.dcm
         /usr/lib/python3/dist-packages/pydicom/data/test_files/MR_small.dcm
         /usr/share/matplotlib/mpl-data/sample_data/grace_hopper.jpg
         "$DATA"/png/*.png "$DATA"/dicom/*.dcm)

# 2. metrics (evaluate) at 224 px and at full resolution, OOD flags on both and on foreign films
for m in binary:"$BIN" 3class:"$TRI"; do
  name=${m%%:*}; model=${m#*:}
  [ "$model" = - ] && continue
  for s in 224:"$OUT/split224/manifest.csv" full:"$OUT/fullres/manifest.csv"; do
    tag=${s%%:*}; man=${s#*:}
    "$PS" evaluate --model "$model" --manifest "$man" --split test -o "$OUT/eval-$name-$tag" > "$OUT/eval-$name-$tag.log"
  done
  "$PS" classify --model "$model" --json $(cat "$OUT/test224.txt") > "$OUT/ood-$name-224.json"
  "$PS" classify --model "$model" --json $(cat "$OUT/testfull.txt") > "$OUT/ood-$name-full.json"
  "$PS" classify --model "$model" --json "${FOREIGN[@]}" > "$OUT/ood-$name-foreign.json"
done
# 3. where the binary model looks (Grad-CAM lung focus vs its chance level)
if [ $AUDIT = 1 ]; then
  "$PS" audit --model "$BIN" --manifest "$OUT/split224/manifest.csv" --split test -o "$OUT/audit-binary-224" > "$OUT/audit.log" 2>&1
fi

"$PY" - "$OUT" $AUDIT "$BIN" "$TRI" <<'PY'
import json, os, sys
out, audit = sys.argv[1], sys.argv[2] == "1"
names = [n for n, m in (("binary", sys.argv[3]), ("3class", sys.argv[4])) if m != "-"]
def metrics(name, tag):
    return json.load(open(os.path.join(out, "eval-%s-%s" % (name, tag), "metrics.json")))
def flagged(name, tag):
    rows = json.load(open(os.path.join(out, "ood-%s-%s.json" % (name, tag))))
    f = [r for r in rows if r.get("in_distribution") is False]
    return len(f), len(rows), f
print("\n| model | films | n | ROC AUC | accuracy | macro-F1 | F1 per class | ECE | flagged OOD |")
print("|---|---|---|---|---|---|---|---|---|")
for name in names:
    for tag, label in (("224", "test split, 224 px"), ("full", "same patients, full resolution")):
        m = metrics(name, tag)
        nf, n, _ = flagged(name, tag)
        per = ", ".join("%s %.3f" % (c, v["f1"]) for c, v in m["per_class"].items())
        print("| %s | %s | %d | %.4f | %.4f | %.4f | %s | %.4f | %d/%d (%.1f %%) |" % (
            name, label, m["n"], m["roc_auc"], m["accuracy"], m["macro"]["f1"], per,
            m.get("ece", float("nan")), nf, n, 100.0 * nf / max(n, 1)))
for name in names:
    nf, n, f = flagged(name, "foreign")
    print("%s: foreign films flagged %d/%d" % (name, nf, n))
    rows = json.load(open(os.path.join(out, "ood-%s-foreign.json" % name)))
    for r in rows:
        print("   %-5s %-10s %s  %s" % (r.get("in_distribution"), r.get("label"), os.path.basename(r["file"]),
                                     r.get("ood_reason", "")))
if audit:
    a = json.load(open(os.path.join(out, "audit-binary-224", "summary.json")))
    print("binary lung focus on the 224 px test split: %s" % {k: a[k] for k in a if "focus" in k or k == "films"})
PY
