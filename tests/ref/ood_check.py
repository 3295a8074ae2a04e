#!/usr/bin/python3
"""Reference side of tests/test_ood.c (the out-of-distribution flag and the bundled models).

  ood_check.py testfilms KERMANY_MANIFEST KAGGLE_DIR OUT_LIST
      The full-resolution kaggle/ films of the patients that `pneumoscope split` put in the test
      split of kermany224 (OUT_LIST: one path per line, then label per film in OUT_LIST.labels).
  ood_check.py rates CLASSIFY.json LABELS MIN_ACC MAX_FLAGGED
      Accuracy (labels from LABELS, "path<TAB>class") and the share flagged out of distribution in
      `pneumoscope classify --json` output; fails when accuracy < MIN_ACC or flagged > MAX_FLAGGED or
      any row lacks in_distribution.
  ood_check.py scores MODEL CLASSIFY.json FILM...
      Recomputes each film's OOD score with torchvision (the model's weights read by
      safetensors_io; the channel means of the outputs of the layers named by ood_layers, on
      Resize((S,S)) + Normalize: a film model only)
      and numpy (min_k (f - mu_k)^T P (f - mu_k) with the file's ood.class_means and ood.precision),
      and the probabilities as softmax(logits / temperature); both must match the CLI's JSON
      (scores within 1e-3 relative, probabilities within 1e-4), and in_distribution must be
      score <= ood_threshold.
"""
import csv
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def testfilms(manifest, kaggle_dir, out_list):
    test_patients = set()
    for r in csv.DictReader(open(manifest)):
        if r["split"] == "test":
            test_patients.add(r["patient_id"])
    n = 0
    with open(out_list, "w") as f, open(out_list + ".labels", "w") as g:
        for r in csv.DictReader(open(os.path.join(kaggle_dir, "manifest.csv"))):
            if r["patient_id"] in test_patients:
                path = os.path.join(kaggle_dir, r["file"])
                f.write(path + "\n")
                sub = r["subtype"].upper()
                g.write("%s\t%s\t%s\n" % (path, r["class"], {"BACTERIA": "BACTERIA", "VIRUS": "VIRUS"}.get(sub, "NORMAL")))
                n += 1
    print("test-split patients %d, their full-resolution films in %s: %d" % (len(test_patients), kaggle_dir, n))
    return 0 if n >= 30 else 1


def rates(out_json, labels, min_acc, max_flagged):
    truth = {}
    for line in open(labels):
        path, cls, sub = line.rstrip("\n").split("\t")
        truth[path] = (cls, sub)
    rows = json.load(open(out_json))
    ok = n = flagged = 0
    for r in rows:
        if "in_distribution" not in r:
            print("row without in_distribution:", r["file"])
            return 1
        if r.get("label") is None:
            print("error row:", r)
            return 1
        cls, sub = truth[r["file"]]
        want = cls if r["label"] in ("NORMAL", "PNEUMONIA") else sub
        ok += r["label"] == want
        flagged += r["in_distribution"] is False
        n += 1
    acc, fl = ok / n, flagged / n
    print("films %d accuracy %.4f flagged out of distribution %.4f (%d)" % (n, acc, fl, flagged))
    return 0 if n == len(truth) and acc >= float(min_acc) and fl <= float(max_flagged) else 1


def scores(model, out_json, films):
    import torch
    from PIL import Image
    from torchvision import transforms as T
    import safetensors_io

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    raw, _ = safetensors_io.load(model)
    net, meta, temperature = safetensors_io.torchvision_model(model)
    if meta.get("roi", "film") != "film":
        print("scores: needs a film model")
        return 1
    K = raw["fc.weight"].shape[0]
    size = int(meta.get("input_size", "224"))
    mean = [float(v) for v in meta.get("mean", "0.485,0.456,0.406").split(",")]
    std = [float(v) for v in meta.get("std", "0.229,0.224,0.225").split(",")]
    layers = [int(v[5]) for v in meta.get("ood_layers", "layer4").split(",")]
    tf = T.Compose([T.Resize((size, size)), T.ToTensor(), T.Normalize(mean, std)])
    mu = raw["ood.class_means"].double().numpy()
    prec = raw["ood.precision"].double().numpy()
    thr = float(meta["ood_threshold"])
    rows = {r["file"]: r for r in json.load(open(out_json))}
    bad = 0
    for f in films:
        x = tf(Image.open(f).convert("L").convert("RGB")).unsqueeze(0)
        with torch.no_grad():  # channel means of the detector's layers, concatenated in layer order
            hs = safetensors_io.layer_outputs(net, x)
            parts = [hs[i - 1].mean((2, 3)) for i in range(1, 5) if i in layers]
            logits = net.fc(hs[3].mean((2, 3)))
        p = torch.softmax(logits / temperature, 1)[0].double().numpy()
        feat = torch.cat(parts, 1)[0].double().numpy()
        s = min(float((feat - mu[k]) @ prec @ (feat - mu[k])) for k in range(K))
        r = rows[f]
        ours = r["ood_score"]
        probs = np.array([r["probabilities"][c] for c in meta.get("classes", "NORMAL,PNEUMONIA").split(",")])
        ok = (abs(ours - s) <= 1e-3 * max(1.0, abs(s)) and np.max(np.abs(probs - p)) <= 1e-4
              and r["in_distribution"] == (ours <= thr))
        print("%s score ours %.6g ref %.6g |dP| %.2g in_distribution %s%s" %
              (os.path.basename(f), ours, s, np.max(np.abs(probs - p)), r["in_distribution"], "" if ok else "  MISMATCH"))
        bad += not ok
    return 1 if bad else 0


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "testfilms":
        sys.exit(testfilms(*args))
    if cmd == "rates":
        sys.exit(rates(*args))
    if cmd == "scores":
        sys.exit(scores(args[0], args[1], args[2:]))
    print(__doc__)
    sys.exit(2)
