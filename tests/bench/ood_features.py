#!/usr/bin/python3
"""Which pooled features make the best out-of-distribution detector? For each candidate feature
set, the shipped detector's fit (class means and one shared covariance of the training films, each
variance raised by 1 %; score = the smallest squared Mahalanobis distance to a class mean;
threshold = the validation films' Q quantile), then how many films of each set it flags.

    tests/bench/ood_features.py MODEL MANIFEST FULLRES_LIST ADULT_DIR FOREIGN_DIR [Q]

MODEL: a film (roi film) .safetensors; MANIFEST: its split's manifest.csv (train/val/test);
FULLRES_LIST: one film per line (ood_check.py testfilms writes the kaggle/ originals of the test
patients); ADULT_DIR, FOREIGN_DIR: images only the features can judge (PNG/JPEG, e.g. DICOMs
written by `pneumoscope convert`). Films read as the reference does (PIL gray, Resize, Normalize),
two threads; about 2 minutes for the kermany224 split on a 2-core CPU. Candidates: channel means
(m), channel standard deviations (s) and 2x2 spatial means (g) of layer1..layer4's outputs."""
import csv
import glob
import os
import sys

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ref"))
import safetensors_io  # noqa: E402

CANDIDATES = {
    "m1-4 (shipped)": ["m1", "m2", "m3", "m4"],
    "m1-4 + s1-4": ["m1", "m2", "m3", "m4", "s1", "s2", "s3", "s4"],
    "s1-4": ["s1", "s2", "s3", "s4"],
    "m1-3 + g4": ["m1", "m2", "m3", "g4"],
    "m1-4 + g4": ["m1", "m2", "m3", "m4", "g4"],
    "m1-2 + g3-4": ["m1", "m2", "g3", "g4"],
    "g1-4": ["g1", "g2", "g3", "g4"],
}


def features(net, tf, paths, bs=32):
    out = []
    for i in range(0, len(paths), bs):
        x = torch.stack([tf(Image.open(p).convert("L").convert("RGB")) for p in paths[i:i + bs]])
        with torch.no_grad():
            f = {}
            for n, h in enumerate(safetensors_io.layer_outputs(net, x), 1):
                f["m%d" % n], f["s%d" % n] = h.mean((2, 3)), h.std((2, 3))
                f["g%d" % n] = torch.nn.functional.adaptive_avg_pool2d(h, 2).flatten(1)
        out.append({k: v.double().numpy() for k, v in f.items()})
    return {k: np.concatenate([o[k] for o in out]) for k in out[0]}


def fit(X, y):
    mus = np.stack([X[y == k].mean(0) for k in np.unique(y)])
    R = X - mus[y]
    C = R.T @ R / (len(X) - len(mus))
    C[np.diag_indices_from(C)] *= 1.01
    return mus, np.linalg.inv(C)


def score(X, mus, P):
    return np.min(np.stack([np.einsum("ij,jk,ik->i", X - m, P, X - m) for m in mus]), 0)


def main(model, manifest, fullres, adult_dir, foreign_dir, q="0.99"):
    torch.set_num_threads(2)
    net, meta, _ = safetensors_io.torchvision_model(model)
    size = int(meta.get("input_size", "224"))
    tf = T.Compose([T.Resize((size, size)), T.ToTensor(), T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    rows = list(csv.DictReader(open(manifest, newline="")))
    classes = meta.get("classes", "NORMAL,PNEUMONIA").split(",")
    sets = {s: [r["path"] for r in rows if r["split"] == s] for s in ("train", "val", "test")}
    label = {r["path"]: classes.index(r["label"] if len(classes) == 2 else r["subtype"]) for r in rows}
    sets["full"] = [line.strip() for line in open(fullres) if line.strip()]
    sets["adult"] = sorted(glob.glob(os.path.join(adult_dir, "*")))
    sets["foreign"] = sorted(glob.glob(os.path.join(foreign_dir, "*")))
    F = {s: features(net, tf, p) for s, p in sets.items()}
    y = np.array([label[p] for p in sets["train"]])
    print("| features | dims | test flagged | full-res flagged | adult flagged | foreign flagged | adult score / threshold |")
    print("|---|---|---|---|---|---|---|")
    for name, keys in CANDIDATES.items():
        get = lambda s: np.concatenate([F[s][k] for k in keys], 1)  # noqa: E731
        mus, P = fit(get("train"), y)
        thr = np.quantile(score(get("val"), mus, P), float(q))
        r = {s: score(get(s), mus, P) for s in ("test", "full", "adult", "foreign")}
        cnt = lambda s: "%d / %d" % ((r[s] > thr).sum(), len(r[s]))  # noqa: E731
        print("| %s | %d | %s | %s | %s | %s | %s |" % (name, mus.shape[1], cnt("test"), cnt("full"), cnt("adult"),
              cnt("foreign"), " ".join("%.2f" % v for v in r["adult"] / thr)))
    print("adult films, in that order:", " ".join(os.path.basename(p) for p in sets["adult"]))


if __name__ == "__main__":
    if len(sys.argv) not in (6, 7):
        sys.exit(__doc__)
    main(*sys.argv[1:])
