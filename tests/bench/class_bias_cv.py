#!/usr/bin/env python3
"""Would a per-class logit offset, fitted on validation films, raise a 3-class model's macro-F1?
Judged on validation films alone, by patient-grouped 2-fold cross-validation: fit the VIRUS offset
(grid -1..1, step 0.05; BACTERIA and NORMAL fixed) on half the validation patients, measure the
macro-F1 change on the other half, both ways, over 20 random halvings.

    tests/bench/class_bias_cv.py MANIFEST VAL.json [VAL.json ...]

MANIFEST: the split's manifest.csv (labels and patient ids); each VAL.json: `pneumoscope classify
--model M --json <the validation films>` of one model (e.g. one seed). Prints, per model, the
offset fitted on all validation films with its in-sample gain (optimistic) and the held-out gain's
mean and sd: an offset is worth storing only when the held-out gain is clearly above 0."""
import csv
import json
import random
import sys

import numpy as np
from sklearn.metrics import f1_score

CLASSES = ["NORMAL", "BACTERIA", "VIRUS"]
GRID = np.round(np.arange(-1, 1.0001, 0.05), 2)


def fit(y, logp):
    """The VIRUS offset with the best macro-F1 (the smallest |offset| among ties)."""
    def key(b):
        return (round(f1_score(y, (logp + [0, 0, b]).argmax(1), average="macro"), 6), -abs(b))
    return max(GRID, key=key)


def gain(y, logp, b):
    f = lambda b: f1_score(y, (logp + [0, 0, b]).argmax(1), average="macro")
    return f(b) - f(0.0)


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    label, patient = {}, {}
    for r in csv.DictReader(open(argv[1])):
        label[r["path"]] = CLASSES.index(r["subtype"])
        patient[r["path"]] = r["patient_id"]
    for path in argv[2:]:
        films = json.load(open(path))
        y = np.array([label[f["file"]] for f in films])
        logp = np.log(np.array([[max(f["probabilities"][c], 1e-12) for c in CLASSES] for f in films]))
        pid = np.array([patient[f["file"]] for f in films])
        b_all = fit(y, logp)
        pats = sorted(set(pid))
        held = []
        for rep in range(20):
            random.Random(rep).shuffle(pats)
            half = np.isin(pid, pats[: len(pats) // 2])
            for a, b in ((half, ~half), (~half, half)):
                held.append(gain(y[b], logp[b], fit(y[a], logp[a])))
        print("%s: %d films; offset fitted on all %+.2f, in-sample gain %+.4f; held-out gain %+.4f +- %.4f"
              % (path, len(y), b_all, gain(y, logp, b_all), np.mean(held), np.std(held, ddof=1)))


if __name__ == "__main__":
    main(sys.argv)
