#!/usr/bin/env python3
"""Would several 3-class models, averaged, beat the best of them? Each model alone and their
ensemble (the mean of their class probabilities, then argmax) on the same films, scored with
scikit-learn.

    tests/bench/ensemble_table.py PRED.csv PRED.csv [PRED.csv ...]

Each PRED.csv: the predictions.csv of `pneumoscope evaluate --model M --manifest MAN --split val
-o DIR` for one model (e.g. one seed), all on the same split. Prints macro-F1, accuracy and each
class's F1 per model and for the ensemble."""
import csv
import sys

import numpy as np
from sklearn.metrics import accuracy_score, f1_score


def load(path):
    rows = list(csv.DictReader(open(path, newline="")))
    cols = [c for c in rows[0] if c.startswith("prob_")]
    return ([r["path"] for r in rows], np.array([int(r["true_index"]) for r in rows]),
            np.array([[float(r[c]) for c in cols] for r in rows]), [c[5:] for c in cols])


def line(name, y, prob, classes):
    pred = prob.argmax(1)
    per = f1_score(y, pred, average=None, labels=range(len(classes)))
    print(f"| {name} | {f1_score(y, pred, average='macro'):.4f} | {accuracy_score(y, pred):.4f} | " +
          " | ".join(f"{v:.4f}" for v in per) + " |")


def main(paths):
    if len(paths) < 2:
        sys.exit(__doc__)
    models = [load(p) for p in paths]
    names, y, _, classes = models[0]
    for p, (n, yy, _, cc) in zip(paths, models):
        if n != names or not np.array_equal(yy, y) or cc != classes:
            sys.exit(f"{p}: not the same films, labels and classes as {paths[0]}")
    print("| model | macro-F1 | accuracy | " + " | ".join(f"F1 {c}" for c in classes) + " |")
    print("|---|---|---|" + "---|" * len(classes))
    for p, m in zip(paths, models):
        line(p, y, m[2], classes)
    line(f"ensemble of {len(paths)}", y, np.mean([m[2] for m in models], axis=0), classes)


if __name__ == "__main__":
    main(sys.argv[1:])
