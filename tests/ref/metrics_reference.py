#!/usr/bin/python3
"""scikit-learn reference for tests/test_metrics.c.

usage: metrics_reference.py DIR CASE...
Reads DIR/CASE_labels.npy (N) float32, DIR/CASE_probs.npy (N,K) float32, DIR/CASE_thr.npy (1);
writes DIR/CASE_ref.npy (float64 vector, layout in `summary`), and for binary cases
DIR/CASE_roc.npy (3,M) fpr/tpr/thresholds and DIR/CASE_pr.npy (3,M) recall/precision/thresholds(+nan).

Calibration, for every case (15 bins):
DIR/CASE_cal.npy (1 + 3*15) ECE, then per bin count, mean confidence, accuracy (nan when empty), by
  numpy from the definition (top-label confidence, numpy.argmax, numpy.digitize on linspace edges);
DIR/CASE_calsk.npy (2,M) sklearn.calibration.calibration_curve(strategy="uniform", n_bins=15) of
  "argmax is right" against the top-label confidence: accuracy, mean confidence of the M non-empty bins;
and when DIR/CASE_logits.npy (N,K) exists, DIR/CASE_temp.npy [T, NLL(T), NLL(1)]: the temperature in
[0.05, 20] minimising the mean NLL of softmax(logits / T), by scipy.optimize.minimize_scalar (bounded).
"""
import sys
import warnings

import os

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp
from sklearn.calibration import calibration_curve
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


BINS = 15


def calibration(y, p):
    conf = p.max(axis=1).astype(np.float64)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, BINS + 1)
    b = np.digitize(conf, edges[1:-1])  # edges[b] <= conf < edges[b+1]; conf = 1 lands in the last bin
    count = np.bincount(b, minlength=BINS).astype(np.float64)
    with np.errstate(invalid="ignore"):
        mconf = np.bincount(b, weights=conf, minlength=BINS) / count
        acc = np.bincount(b, weights=correct, minlength=BINS) / count
    full = count > 0
    ece = np.sum(count[full] / len(y) * np.abs(acc[full] - mconf[full]))
    prob_true, prob_pred = calibration_curve(correct.astype(int), conf, n_bins=BINS, strategy="uniform", pos_label=1)
    return np.concatenate([[ece], count, mconf, acc]), np.stack([prob_true, prob_pred])


def temperature(y, z):
    z = z.astype(np.float64)

    def nll(t):
        s = z / t
        return float(np.mean(logsumexp(s, axis=1) - s[np.arange(len(y)), y]))

    r = minimize_scalar(nll, bounds=(0.05, 20.0), method="bounded", options={"xatol": 1e-10, "maxiter": 2000})
    return np.array([r.x, nll(r.x), nll(1.0)])


def main():
    d = sys.argv[1]
    for case in sys.argv[2:]:
        y = np.load(f"{d}/{case}_labels.npy").astype(np.int64)
        p = np.load(f"{d}/{case}_probs.npy")  # float32, exactly what C sees
        thr = float(np.load(f"{d}/{case}_thr.npy")[0])
        np.save(f"{d}/{case}_ref.npy", summary(y, p, thr))
        cal, calsk = calibration(y, p)
        np.save(f"{d}/{case}_cal.npy", cal)
        np.save(f"{d}/{case}_calsk.npy", calsk)
        if os.path.exists(f"{d}/{case}_logits.npy"):
            np.save(f"{d}/{case}_temp.npy", temperature(y, np.load(f"{d}/{case}_logits.npy")))
        if p.shape[1] == 2:
            s = p[:, 1]
            fpr, tpr, t = roc_curve(y, s, drop_intermediate=False)
            np.save(f"{d}/{case}_roc.npy", np.stack([fpr, tpr, t]).astype(np.float64))
            prec, rec, t2 = precision_recall_curve(y, s)
            np.save(f"{d}/{case}_pr.npy", np.stack([rec, prec, np.append(t2, np.nan)]).astype(np.float64))


if __name__ == "__main__":
    main()
