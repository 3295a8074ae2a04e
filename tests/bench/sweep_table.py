#!/usr/bin/env python3
"""The tables of a recipe search (tests/bench/gpu_sweep.sh OUTDIR):

    tests/bench/sweep_table.py OUTDIR

Every run OUTDIR/runs/NAME-sS was evaluated on its validation and test films (OUTDIR/eval/NAME-sS-val,
-test). Prints, per candidate NAME, the mean +- sample sd over its seeds and each seed's value:
3-class candidates by validation macro-F1 (the choice; also accuracy, viral F1 and the last epoch's
macro-F1, which is not picked among epochs), then their test figures; binary candidates by
validation ROC AUC. The 3-class candidate with the best mean validation macro-F1 over every seed
is written to OUTDIR/winner.txt (only candidates that ran every seed compete)."""
import collections
import csv
import json
import os
import re
import statistics
import sys


def load(path):
    return json.load(open(path)) if os.path.exists(path) else None


def stat(v):
    if not v:
        return "-"
    sd = statistics.stdev(v) if len(v) > 1 else float("nan")
    return "%.4f +- %.4f" % (statistics.mean(v), sd)


def main(out):
    runs = collections.defaultdict(dict)
    for name in sorted(os.listdir(os.path.join(out, "runs"))):
        m = re.fullmatch(r"(.+)-s(\d+)", name)
        if not m or not os.path.isdir(os.path.join(out, "runs", name)):
            continue
        val = load(os.path.join(out, "eval", name + "-val", "metrics.json"))
        test = load(os.path.join(out, "eval", name + "-test", "metrics.json"))
        hist = load(os.path.join(out, "runs", name, "history.json"))
        if val is None or test is None or hist is None:
            continue
        runs[m.group(1)][int(m.group(2))] = (val, test, hist)
    seeds = sorted({s for r in runs.values() for s in r})

    def table(title, rows):
        print("\n### %s\n" % title)
        print("| candidate | figure | mean +- sd | %s |" % " | ".join("seed %d" % s for s in seeds))
        print("|---|---|---|%s" % ("---|" * len(seeds)))
        for cand, fig, per in rows:
            print("| %s | %s | %s | %s |" % (cand, fig, stat(list(per.values())),
                                             " | ".join("%.4f" % per[s] if s in per else "-" for s in seeds)))

    tri = {c: r for c, r in runs.items() if next(iter(r.values()))[0]["task"] == "multiclass"}
    bino = {c: r for c, r in runs.items() if c not in tri}
    order = sorted(tri, key=lambda c: -statistics.mean(v[0]["macro"]["f1"] for v in tri[c].values()))
    rows = []
    for c in order:
        r = tri[c]
        rows.append((c, "val macro-F1", {s: v[0]["macro"]["f1"] for s, v in r.items()}))
        rows.append((c, "val last-epoch macro-F1", {s: v[2]["epochs"][-1]["f1"] for s, v in r.items()}))
        rows.append((c, "val accuracy", {s: v[0]["accuracy"] for s, v in r.items()}))
        rows.append((c, "val F1 VIRUS", {s: v[0]["per_class"]["VIRUS"]["f1"] for s, v in r.items()}))
        rows.append((c, "best epoch", {s: float(v[2]["best_epoch"]) for s, v in r.items()}))
    table("3-class candidates, validation (the choice), best mean first", rows)
    rows = []
    for c in order:
        r = tri[c]
        rows.append((c, "test macro-F1", {s: v[1]["macro"]["f1"] for s, v in r.items()}))
        rows.append((c, "test accuracy", {s: v[1]["accuracy"] for s, v in r.items()}))
        rows.append((c, "test F1 VIRUS", {s: v[1]["per_class"]["VIRUS"]["f1"] for s, v in r.items()}))
        rows.append((c, "test ECE", {s: v[1]["ece"] for s, v in r.items()}))
    table("3-class candidates, test split (after the choice)", rows)
    rows = []
    for c in sorted(bino, key=lambda c: -statistics.mean(v[0]["roc_auc"] for v in bino[c].values())):
        r = bino[c]
        rows.append((c, "val ROC AUC", {s: v[0]["roc_auc"] for s, v in r.items()}))
        rows.append((c, "val accuracy", {s: v[0]["accuracy"] for s, v in r.items()}))
        rows.append((c, "test ROC AUC", {s: v[1]["roc_auc"] for s, v in r.items()}))
        rows.append((c, "test accuracy", {s: v[1]["accuracy"] for s, v in r.items()}))
    table("binary candidates (validation ROC AUC first, then test)", rows)
    full = [c for c in order if set(tri[c]) == set(seeds)]
    if full:
        best = full[0]
        ship = max(tri[best], key=lambda s: tri[best][s][0]["macro"]["f1"])
        open(os.path.join(out, "winner.txt"), "w").write("%s %d\n" % (best, ship))
        print("\nchosen on validation: %s (seeds %s; best seed on validation: %d)" %
              (best, " ".join(map(str, sorted(tri[best]))), ship))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
