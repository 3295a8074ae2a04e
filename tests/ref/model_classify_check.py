#!/usr/bin/python3
"""Checks `pneumoscope classify` output against torchvision and pydicom (tests/test_classify.c).

  model_classify_check.py MODEL FOLDER OUT.json [OUT.csv]

Expectations from FOLDER's names: files named bad_* must be error rows; *.txt / *.json / hidden
files must be absent; every other file must be classified. For PNG/JPEG films the probabilities
must equal torchvision's ResNet18 (same weights, read by safetensors_io) on
Compose([Resize((S,S)), ToTensor(), Normalize(mean, std)])(Image.open(f).convert("L").convert("RGB"))
within 1e-4; they must sum to 1; the label must follow the stored threshold (binary) or argmax.
DICOM rows must carry PatientID / StudyInstanceUID / SOPInstanceUID / ViewPosition as pydicom reads
them (when present). The CSV, when given, must hold the same rows and numbers."""
import csv
import json
import os
import sys

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402

torch.set_num_threads(max(1, os.cpu_count() or 1))
model_path, folder, out_json = sys.argv[1:4]
out_csv = sys.argv[4] if len(sys.argv) > 4 else None
errors = []


def err(msg):
    errors.append(msg)
    print("MISMATCH:", msg)


net, meta, temperature = safetensors_io.torchvision_model(model_path)
K = net.fc.out_features
classes = meta.get("classes", "NORMAL,PNEUMONIA" if K == 2 else "NORMAL,BACTERIA,VIRUS").split(",")
binary = meta.get("task", "binary" if K == 2 else "multiclass") == "binary"
threshold = float(meta.get("threshold", "0.5"))
size = int(meta.get("input_size", "224"))
mean = [float(v) for v in meta.get("mean", "0.485,0.456,0.406").split(",")]
std = [float(v) for v in meta.get("std", "0.229,0.224,0.225").split(",")]
tf = T.Compose([T.Resize((size, size)), T.ToTensor(), T.Normalize(mean, std)])

rows = json.load(open(out_json))
if not isinstance(rows, list):
    err("JSON is not an array")
byfile = {r["file"]: r for r in rows}
if len(byfile) != len(rows):
    err("duplicate rows")

expected = []
for root, dirs, files in os.walk(folder):
    dirs[:] = [d for d in dirs if not d.startswith(".")]
    for f in files:
        expected.append(os.path.join(root, f))
checked = 0
for path in sorted(expected):
    base = os.path.basename(path)
    skipped = base.startswith(".") or base.endswith((".txt", ".json", ".csv"))
    if skipped:
        if path in byfile:
            err("%s should have been skipped" % path)
        continue
    r = byfile.get(path)
    if r is None:
        err("%s missing from the output" % path)
        continue
    if base.startswith("bad_"):
        if r.get("label") is not None or not r.get("error"):
            err("%s should be an error row: %r" % (path, r))
        elif path not in r["error"]:
            err("%s error does not name the file: %s" % (path, r["error"]))
        continue
    if "error" in r:
        err("%s failed: %s" % (path, r["error"]))
        continue
    probs = r["probabilities"]
    if list(probs.keys()) != classes:
        err("%s classes %r" % (path, list(probs.keys())))
        continue
    p = np.array([probs[c] for c in classes])
    if abs(p.sum() - 1) > 1e-5:
        err("%s probabilities sum to %r" % (path, p.sum()))
    want_label = classes[1 if p[1] >= threshold else 0] if binary else classes[int(np.argmax(p))]
    if r["label"] != want_label:
        err("%s label %s, expected %s" % (path, r["label"], want_label))
    if binary and abs(r["threshold"] - threshold) > 1e-7:
        err("%s threshold %r" % (path, r["threshold"]))
    if not binary and r["threshold"] is not None:
        err("%s multiclass threshold should be null" % path)
    with open(path, "rb") as fh:
        head = fh.read(132)
    is_dicom = head[128:132] == b"DICM" or path.endswith(".dcm")
    if is_dicom:
        import pydicom
        ds = pydicom.dcmread(path, force=True, stop_before_pixels=True)
        for key in ("PatientID", "StudyInstanceUID", "SOPInstanceUID", "ViewPosition"):
            want = str(getattr(ds, key, "") or "")
            got = r.get(key, "")
            if want != got:
                err("%s %s: got %r, pydicom %r" % (path, key, got, want))
    else:
        with torch.no_grad():
            ref = torch.softmax(net(tf(Image.open(path).convert("L").convert("RGB")).unsqueeze(0)) / temperature, 1)[0].numpy()
        d = float(np.abs(ref - p).max())
        print("%-60s max |dp| vs torchvision %.2e" % (base, d))
        if d > 1e-4:
            err("%s probabilities %r, torchvision %r" % (path, p.tolist(), ref.tolist()))
    checked += 1

if out_csv:
    with open(out_csv, newline="") as fh:
        cr = list(csv.DictReader(fh))
    if len(cr) != len(rows):
        err("CSV has %d rows, JSON %d" % (len(cr), len(rows)))
    for c in cr:
        j = byfile.get(c["file"])
        if j is None:
            err("CSV row for unknown file %s" % c["file"])
            continue
        if "error" in j:
            if not c["error"] or c["label"]:
                err("CSV error row wrong for %s" % c["file"])
            continue
        if c["label"] != j["label"]:
            err("CSV label differs for %s" % c["file"])
        for k in classes:
            if abs(float(c["p_" + k]) - j["probabilities"][k]) > 1e-7:
                err("CSV p_%s differs for %s" % (k, c["file"]))
        for key in ("PatientID", "StudyInstanceUID", "SOPInstanceUID", "ViewPosition"):
            if c[key] != j.get(key, ""):
                err("CSV %s differs for %s" % (key, c["file"]))

print("checked %d films, %d rows, %d mismatches" % (checked, len(rows), len(errors)))
sys.exit(1 if errors or checked == 0 else 0)
