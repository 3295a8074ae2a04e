#!/usr/bin/python3
"""Recompute `pneumoscope evaluate`'s metrics with scikit-learn from its predictions.csv and compare
them with its metrics.json. Exit 0 when every metric agrees (1e-6), 1 with the differences otherwise.
Calibration: the top-label ECE and the 15-bin reliability table by numpy from the definition, the
non-empty bins also by sklearn.calibration.calibration_curve; "temperature" must be a positive number.

usage: /usr/bin/python3 tests/ref/train_sklearn_check.py EVAL_OUTDIR
"""
import csv
import json
import math
import sys

import numpy as np
from sklearn.calibration import calibration_curve
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
        undefined = ref is None or (isinstance(ref, float) and math.isnan(ref))  # null in metrics.json
        if undefined or got is None:
            if not (undefined and got is None):
                errors.append(f"{name}: sklearn {ref!r} pneumoscope {got!r}")
            return
        if abs(ref - got) > tol:
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
    # calibration: top-label confidence, argmax (lowest index on ties), 15 equal-width bins
    missing = [key for key in ("ece", "reliability", "temperature") if key not in m]
    errors += [f"metrics.json has no \"{key}\"" for key in missing]
    if not missing:
        conf = P32.max(1).astype(np.float64)
        correct = (P32.argmax(1) == y).astype(np.float64)
        edges = np.linspace(0.0, 1.0, 16)
        b = np.digitize(conf, edges[1:-1])
        count = np.bincount(b, minlength=15)
        with np.errstate(invalid="ignore"):
            mconf = np.bincount(b, weights=conf, minlength=15) / count
            acc = np.bincount(b, weights=correct, minlength=15) / count
        full = count > 0
        check("ece", float(np.sum(count[full] / len(y) * np.abs(acc[full] - mconf[full]))), m["ece"])
        rel = m["reliability"]
        check("reliability bins", 15, rel["bins"], 0)
        if rel["count"] != count.tolist():
            errors.append(f"reliability counts: numpy {count.tolist()} pneumoscope {rel['count']}")
        for i in range(15):
            check(f"reliability confidence[{i}]", None if not full[i] else mconf[i], rel["confidence"][i])
            check(f"reliability accuracy[{i}]", None if not full[i] else acc[i], rel["accuracy"][i])
        sk_acc, sk_conf = calibration_curve(correct.astype(int), conf, n_bins=15, strategy="uniform", pos_label=1)
        got_acc = [a for a in rel["accuracy"] if a is not None]
        got_conf = [c for c in rel["confidence"] if c is not None]
        if len(got_acc) != len(sk_acc) or len(got_conf) != len(sk_conf):
            errors.append(f"reliability: {len(got_acc)} non-empty bins, calibration_curve {len(sk_acc)}")
        else:
            for i in range(len(sk_acc)):
                check(f"calibration_curve prob_true[{i}]", sk_acc[i], got_acc[i])
                check(f"calibration_curve prob_pred[{i}]", sk_conf[i], got_conf[i])
        t = m["temperature"]
        if not (isinstance(t, (int, float)) and t > 0):
            errors.append(f"temperature {t!r} is not a positive number")
    if errors:
        print("MISMATCH\n" + "\n".join(errors))
        return 1
    print(f"sklearn agrees on {len(y)} predictions ({K} classes): accuracy {m['accuracy']:.4f} roc_auc {m['roc_auc']:.4f} "
          f"ece {m['ece']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
