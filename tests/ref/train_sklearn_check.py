#!/usr/bin/python3
"""Recompute `pneumoscope evaluate`'s metrics with scikit-learn from its predictions.csv and compare
them with its metrics.json. Exit 0 when every metric agrees (1e-6), 1 with the differences otherwise.

usage: /usr/bin/python3 tests/ref/train_sklearn_check.py EVAL_OUTDIR
"""
import csv
import json
import math
import sys

import numpy as np
from sklearn.metrics import (accuracy_score, average_precision_score, confusion_matrix,
                             precision_recall_fscore_support, roc_auc_score)
from sklearn.preprocessing import label_binarize


def main(outdir):
    m = json.load(open(f"{outdir}/metrics.json"))
    rows = list(csv.DictReader(open(f"{outdir}/predictions.csv", newline="")))
    classes = m["classes"]
    K = len(classes)
    y = np.array([int(r["true_index"]) for r in rows])
    P = np.array([[float(r["prob_" + c]) for c in classes] for r in rows], dtype=np.float64)
    P32 = P.astype(np.float32)
    if K == 2:
        pred = (P32[:, 1] >= np.float32(m["threshold"])).astype(int)
    else:
        pred = P32.argmax(1)
    got_pred = np.array([int(r["pred_index"]) for r in rows])
    errors = []

    def check(name, ref, got, tol=1e-6):
        if got is None and (ref is None or (isinstance(ref, float) and math.isnan(ref))):
            return
        if got is None or abs(ref - got) > tol:
            errors.append(f"{name}: sklearn {ref!r} pneumoscope {got!r}")

    if not np.array_equal(pred, got_pred):
        errors.append(f"predicted labels differ from the threshold rule at {np.flatnonzero(pred != got_pred)[:10]}")
    check("n", len(y), m["n"], 0)
    check("accuracy", accuracy_score(y, pred), m["accuracy"])
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=list(range(K)), zero_division=0)
    for k, c in enumerate(classes):
        pc = m["per_class"][c]
        check(f"precision[{c}]", p[k], pc["precision"])
        check(f"recall[{c}]", r[k], pc["recall"])
        check(f"f1[{c}]", f[k], pc["f1"])
        check(f"support[{c}]", int(s[k]), pc["support"], 0)
    for avg in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(y, pred, labels=list(range(K)), average=avg, zero_division=0)
        check(f"{avg} precision", p, m[avg]["precision"])
        check(f"{avg} recall", r, m[avg]["recall"])
        check(f"{avg} f1", f, m[avg]["f1"])
    cm = confusion_matrix(y, pred, labels=list(range(K)))
    if cm.tolist() != m["confusion_matrix"]:
        errors.append(f"confusion matrix: sklearn {cm.tolist()} pneumoscope {m['confusion_matrix']}")
    if K == 2:
        check("roc_auc", roc_auc_score(y, P32[:, 1]), m["roc_auc"])
        check("average_precision", average_precision_score(y, P32[:, 1]), m["average_precision"])
        tn, fp, fn, tp = cm.ravel()
        check("sensitivity", tp / (tp + fn), m["sensitivity"])
        check("specificity", tn / (tn + fp), m["specificity"])
    else:
        check("roc_auc", roc_auc_score(y, P32, multi_class="ovr", average="macro", labels=list(range(K))), m["roc_auc"])
        check("average_precision", average_precision_score(label_binarize(y, classes=list(range(K))), P32, average="macro"),
              m["average_precision"])
    if errors:
        print("MISMATCH\n" + "\n".join(errors))
        return 1
    print(f"sklearn agrees on {len(y)} predictions ({K} classes): accuracy {m['accuracy']:.4f} roc_auc {m['roc_auc']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
