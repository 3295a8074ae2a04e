#!/usr/bin/python3
"""Independent (python stdlib + pydicom) reference for tests/test_dataset.c.

  dataset_reference.py sha256 FILE...            hashlib sha256 per file, one per line
  dataset_reference.py check OURS KAGGLE         compare our manifest with the data's manifest.csv and
                                                 audit it independently; prints "key value" lines
  dataset_reference.py leaky KAGGLE OUT SEED     write a per-file random split manifest (the classic
                                                 leaky split) whose duplicate films straddle splits;
                                                 prints the leakage it holds as "key value" lines
  dataset_reference.py dicom_pid FILE...         "PatientID SOPInstanceUID" (pydicom) per file, "-" when absent
"""
import csv
import hashlib
import os
import random
import sys
from collections import defaultdict


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def audit(rows):
    """rows: dicts with patient_id, sha256, split. Returns (patients across, films of them, hashes across)."""
    ps, hs = defaultdict(set), defaultdict(set)
    pf = defaultdict(int)
    for r in rows:
        if r["split"]:
            ps[r["patient_id"]].add(r["split"])
            if r["sha256"]:
                hs[r["sha256"]].add(r["split"])
        pf[r["patient_id"]] += 1
    leaky = [p for p, s in ps.items() if len(s) > 1]
    return len(leaky), sum(pf[p] for p in leaky), sum(1 for s in hs.values() if len(s) > 1)


def check(ours_path, kaggle_path):
    kdir = os.path.dirname(os.path.abspath(kaggle_path))
    kag = {os.path.realpath(os.path.join(kdir, r["file"])): r for r in csv.DictReader(open(kaggle_path, newline=""))}
    ours = list(csv.DictReader(open(ours_path, newline="")))
    print("header", ",".join(ours[0].keys()) if ours else "")
    print("films", len(ours))
    print("kaggle_films", len(kag))
    missing = pid_bad = sub_bad = cls_bad = sha_bad = 0
    for r in ours:
        k = kag.get(os.path.realpath(r["path"]))
        if k is None:
            missing += 1
            continue
        pid_bad += r["patient_id"] != k["patient_id"]
        sub_bad += r["subtype"].lower() != k["subtype"].lower()
        cls_bad += r["label"] != k["class"]
        sha_bad += r["sha256"] != k["sha256"]
    print("missing", missing)
    print("patient_id_mismatch", pid_bad)
    print("subtype_mismatch", sub_bad)
    print("label_mismatch", cls_bad)
    print("sha256_mismatch", sha_bad)
    counts = defaultdict(int)
    for r in ours:
        for s in (r["split"], "all"):
            counts[(s, r["label"])] += 1
            if r["subtype"] in ("BACTERIA", "VIRUS"):
                counts[(s, r["subtype"])] += 1
    for s in ("train", "val", "test", "all"):
        for c in ("NORMAL", "PNEUMONIA", "BACTERIA", "VIRUS"):
            print(f"count_{s}_{c}", counts[(s, c)])
    p, f, h = audit(ours)
    print("patients_across_splits", p)
    print("films_of_leaky_patients", f)
    print("hashes_across_splits", h)


def leaky(kaggle_dir, out, seed):
    rows = list(csv.DictReader(open(os.path.join(kaggle_dir, "manifest.csv"), newline="")))
    rng = random.Random(seed)
    res = []
    for r in rows:
        u = rng.random()
        split = "train" if u < 0.7 else "val" if u < 0.85 else "test"
        res.append({"path": r["file"], "label": r["class"], "subtype": r["subtype"].upper(),
                    "patient_id": r["patient_id"], "split": split, "sha256": r["sha256"]})
    # make every set of byte-identical films straddle two splits, under different patient ids,
    # so the hash audit is exercised on its own
    by_hash = defaultdict(list)
    for r in res:
        by_hash[r["sha256"]].append(r)
    for group in by_hash.values():
        if len(group) > 1:
            group[0]["split"], group[1]["split"] = "train", "test"
            group[1]["patient_id"] = group[1]["patient_id"] + "-renamed"
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "label", "subtype", "patient_id", "split", "sha256"],
                           lineterminator="\n")
        w.writeheader()
        for r in res:
            # paths relative to the manifest's folder would need the kaggle dir; write absolute
            r["path"] = os.path.abspath(os.path.join(kaggle_dir, r["path"]))
            w.writerow(r)
    p, fl, h = audit(res)
    print("patients_across_splits", p)
    print("films_of_leaky_patients", fl)
    print("hashes_across_splits", h)
    print("patients", len({r["patient_id"] for r in res}))


def dicom_pid(files):
    import pydicom
    for p in files:
        ds = pydicom.dcmread(p, force=True, stop_before_pixels=True)
        v = str(ds.get("PatientID", "") or "")
        u = str(ds.get("SOPInstanceUID", "") or "")
        print(v if v else "-", u if u else "-")


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "sha256":
        for p in sys.argv[2:]:
            print(sha256(p))
    elif cmd == "check":
        check(sys.argv[2], sys.argv[3])
    elif cmd == "leaky":
        leaky(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif cmd == "dicom_pid":
        dicom_pid(sys.argv[2:])
    else:
        sys.exit("unknown command " + cmd)
