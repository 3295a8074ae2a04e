#!/usr/bin/python3
"""scikit-learn reference for tests/test_metrics.c.

usage: metrics_reference.py DIR CASE...
Reads DIR/CASE_labels.npy (N) float32, DIR/CASE_probs.npy (N,K) float32, DIR/CASE_thr.npy (1);
writes DIR/CASE_ref.npy (float64 vector, layout in `summary`), and for binary cases
DIR/CASE_roc.npy (3,M) fpr/tpr/thresholds and DIR/CASE_pr.npy (3,M) recall/precision/thresholds(+nan).
"""
import sys
import warnings

import numpy as np
from sklearn.metrics import (accuracy_score, average_precision_score, confusion_matrix, f1_score,
                             precision_recall_curve, precision_recall_fscore_support, roc_auc_score,
                             roc_curve)
from sklearn.preprocessing import label_binarize

warnings.simplefilter("ignore")


def summary(y, p, thr):
    k = p.shape[1]
    labels = list(range(k))
    if k == 2:
        pred = (p[:, 1] >= thr).astype(int)
    else:
        pred = np.argmax(p, axis=1)
    out = [accuracy_score(y, pred)]
    pr, rc, f1, _ = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    out += list(pr) + list(rc) + list(f1)
    for avg in ("macro", "weighted"):
        a = precision_recall_fscore_support(y, pred, labels=labels, average=avg, zero_division=0)
        out += [a[0], a[1], a[2]]
    if k == 2:
        sens = rc[1] if (y == 1).any() else np.nan
        spec = rc[0] if (y == 0).any() else np.nan
        out += [sens, spec]
        both = (y == 1).any() and (y == 0).any()
        out.append(roc_auc_score(y, p[:, 1]) if both else np.nan)
        out.append(average_precision_score(y, p[:, 1]) if (y == 1).any() else np.nan)
    else:
        out += [np.nan, np.nan]
        present = all((y == c).any() and (y != c).any() for c in labels)
        out.append(roc_auc_score(y, p, multi_class="ovr", average="macro", labels=labels) if present else np.nan)
        yb = label_binarize(y, classes=labels)
        out.append(average_precision_score(yb, p, average="macro") if all((y == c).any() for c in labels) else np.nan)
    out += list(confusion_matrix(y, pred, labels=labels).ravel().astype(float))
    if k == 2 and (y == 1).any() and (y == 0).any():
        fpr, tpr, t = roc_curve(y, p[:, 1], drop_intermediate=False)
        j = tpr - fpr
        j[0] = -np.inf  # the +inf threshold (predict nothing) is not a candidate
        best = j.max()
        i = np.nonzero(j == best)[0].max()  # thresholds decrease: the last maximum is the lowest threshold
        out += [t[i], best, f1_score(y, (p[:, 1] >= t[i]).astype(int), zero_division=0)]
    else:
        out += [np.nan, np.nan, np.nan]
    return np.array(out, dtype=np.float64)


def main():
    d = sys.argv[1]
    for case in sys.argv[2:]:
        y = np.load(f"{d}/{case}_labels.npy").astype(np.int64)
        p = np.load(f"{d}/{case}_probs.npy")  # float32, exactly what C sees
        thr = float(np.load(f"{d}/{case}_thr.npy")[0])
        np.save(f"{d}/{case}_ref.npy", summary(y, p, thr))
        if p.shape[1] == 2:
            s = p[:, 1]
            fpr, tpr, t = roc_curve(y, s, drop_intermediate=False)
            np.save(f"{d}/{case}_roc.npy", np.stack([fpr, tpr, t]).astype(np.float64))
            prec, rec, t2 = precision_recall_curve(y, s)
            np.save(f"{d}/{case}_pr.npy", np.stack([rec, prec, np.append(t2, np.nan)]).astype(np.float64))


if __name__ == "__main__":
    main()
