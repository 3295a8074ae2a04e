#!/usr/bin/env python3
"""Mean +- sd across seeds of what tests/bench/evaluate_models.sh measured, one OUTDIR per seed:

    tests/bench/seeds_table.py SEED=OUTDIR [SEED=OUTDIR ...]

Prints MODELS.md's seed tables (markdown): each figure's mean +- sample sd (ddof 1) over the seeds,
then every seed's own value, for the binary and the 3-class model, on the 224 px test split and on
the full-resolution originals of the same patients, plus the binary model's Grad-CAM lung focus
when the audit ran."""
import json
import os
import statistics
import sys


def load(out, name):
    p = os.path.join(out, name)
    return json.load(open(p)) if os.path.exists(p) else None


def flagged(out, name, tag):
    rows = load(out, "ood-%s-%s.json" % (name, tag))
    return None if rows is None else sum(r.get("in_distribution") is False for r in rows) / max(len(rows), 1)


def figures(out):
    f = {}
    for name in ("binary", "3class"):
        for tag in ("224", "full"):
            m = load(out, "eval-%s-%s/metrics.json" % (name, tag))
            if m is None:
                continue
            key = "%s %s" % (name, tag)
            f[key + " ROC AUC"] = m["roc_auc"]
            f[key + " accuracy"] = m["accuracy"]
            f[key + " ECE"] = m["ece"]
            if name == "binary":
                f[key + " F1 PNEUMONIA"] = m["per_class"]["PNEUMONIA"]["f1"]
                f[key + " sensitivity"] = m["sensitivity"]
                f[key + " specificity"] = m["specificity"]
            else:
                f[key + " macro-F1"] = m["macro"]["f1"]
                for c, v in m["per_class"].items():
                    f[key + " F1 " + c] = v["f1"]
            fl = flagged(out, name, tag)
            if fl is not None:
                f[key + " flagged OOD"] = fl
    a = load(out, "audit-binary-224/summary.json")
    if a:
        f["binary 224 lung_focus / uniform"] = a["mean_lung_focus"] / a["mean_lung_focus_uniform"]
    return f


def main(argv):
    if not argv or any("=" not in a for a in argv):
        sys.exit(__doc__)
    seeds = [a.split("=", 1) for a in argv]
    per = {s: figures(o) for s, o in seeds}
    keys = [k for k in per[seeds[0][0]] if all(k in per[s] for s, _ in seeds)]
    print("| figure | mean +- sd (%d seeds) | %s |" % (len(seeds), " | ".join("seed " + s for s, _ in seeds)))
    print("|---|---|%s" % ("---|" * len(seeds)))
    for k in keys:
        v = [per[s][k] for s, _ in seeds]
        sd = statistics.stdev(v) if len(v) > 1 else float("nan")
        print("| %s | %.4f +- %.4f | %s |" % (k, statistics.mean(v), sd, " | ".join("%.4f" % x for x in v)))


if __name__ == "__main__":
    main(sys.argv[1:])
