#!/usr/bin/python3
"""Python reference training loop: the seed student project's recipe in torch + torchvision.

Reads PneumoScope's manifest.csv (path,label,subtype,patient_id,split,sha256; paths relative to
the manifest's folder unless absolute), trains torchvision's ResNet18 from scratch with Adam and
prints, per epoch, the wall time and training images per second, then the test metrics at 0.5.
This is what `pneumoscope train` is benchmarked against (tests/bench/bench_train.sh): same data,
same image size, same batch, same number of CPU threads.

  binary:     max 30 epochs, patience 5 on val AUC, WeightedRandomSampler (class-balanced),
              Resize((S,S)) -> RandomResizedCrop(S, scale=(0.8,1), ratio=(0.9,1.1)) -> ColorJitter(b=0.2,c=0.2)
  multiclass: max 50 epochs, patience 10 on val macro-F1, no balancing, Resize((S,S)) -> ColorJitter
  both:       ResNet18 (num_classes 2 or 3), Adam lr 1e-3, batch 32, CrossEntropy, ImageNet mean/std.

usage: /usr/bin/python3 tests/bench/train_reference.py --manifest M [--task binary|multiclass]
       [--epochs N] [--size S] [--batch B] [--limit N] [--threads N] [--workers N] [--seed N]
       [--json OUT.json]
"""
import argparse
import csv
import json
import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torchvision
from PIL import Image
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score, roc_curve
from torchvision import transforms

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
BINARY = ["NORMAL", "PNEUMONIA"]
MULTI = ["NORMAL", "BACTERIA", "VIRUS"]


def read_manifest(path, task, limit):
    base = os.path.dirname(os.path.abspath(path))
    rows = {"train": [], "val": [], "test": []}
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            p = r["path"] if os.path.isabs(r["path"]) else os.path.join(base, r["path"])
            if task == "binary":
                y = BINARY.index(r["label"].upper())
            else:
                sub = (r.get("subtype") or "").upper()
                y = 0 if r["label"].upper() == "NORMAL" else MULTI.index(sub)
            if r["split"] in rows:
                rows[r["split"]].append((p, y))
    if limit:  # evenly spaced, as pneumoscope train --limit: ranks floor(j * count / limit)
        for k in rows:
            c = len(rows[k])
            if limit < c:
                rows[k] = [rows[k][j * c // limit] for j in range(limit)]
    return rows


class Films(torch.utils.data.Dataset):
    def __init__(self, items, tf):
        self.items, self.tf = items, tf

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        p, y = self.items[i]
        img = Image.open(p).convert("RGB")  # decoded again every epoch, as the seed project does
        return self.tf(img), y


def evaluate(model, loader, ncls):
    model.eval()
    lossf = nn.CrossEntropyLoss(reduction="sum")
    probs, ys, loss = [], [], 0.0
    with torch.no_grad():
        for x, y in loader:
            out = model(x)
            loss += lossf(out, y).item()
            probs.append(torch.softmax(out, 1).numpy())
            ys.append(y.numpy())
    p = np.concatenate(probs)
    y = np.concatenate(ys)
    pred = p.argmax(1)
    m = {"loss": loss / max(1, len(y)), "acc": accuracy_score(y, pred)}
    if ncls == 2:
        m["auc"] = roc_auc_score(y, p[:, 1]) if len(set(y)) == 2 else float("nan")
        m["f1"] = f1_score(y, (p[:, 1] >= 0.5).astype(int), zero_division=0)
        m["acc"] = accuracy_score(y, (p[:, 1] >= 0.5).astype(int))
    else:
        try:
            m["auc"] = roc_auc_score(y, p, multi_class="ovr", average="macro", labels=[0, 1, 2])
        except ValueError:
            m["auc"] = float("nan")
        m["f1"] = f1_score(y, pred, average="macro", zero_division=0)
    return m, p, y


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--task", choices=["binary", "multiclass"], default="binary")
    ap.add_argument("--epochs", type=int, default=0, help="0: 30 binary / 50 multiclass")
    ap.add_argument("--patience", type=int, default=0, help="0: 5 binary / 10 multiclass")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--limit", type=int, default=0, help="use N evenly spaced films per split")
    ap.add_argument("--threads", type=int, default=0, help="0: os.cpu_count()")
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers (seed project: 0)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default="")
    a = ap.parse_args()

    torch.set_num_threads(a.threads or os.cpu_count())
    torch.manual_seed(a.seed)
    random.seed(a.seed)
    np.random.seed(a.seed)
    binary = a.task == "binary"
    ncls = 2 if binary else 3
    epochs = a.epochs or (30 if binary else 50)
    patience = a.patience or (5 if binary else 10)
    S = a.size

    norm = [transforms.ToTensor(), transforms.Normalize(MEAN, STD)]
    jitter = transforms.ColorJitter(brightness=0.2, contrast=0.2)
    if binary:
        train_tf = transforms.Compose([transforms.Resize((S, S)),
                                       transforms.RandomResizedCrop(S, scale=(0.8, 1.0), ratio=(0.9, 1.1)),
                                       jitter] + norm)
    else:
        train_tf = transforms.Compose([transforms.Resize((S, S)), jitter] + norm)
    eval_tf = transforms.Compose([transforms.Resize((S, S))] + norm)

    rows = read_manifest(a.manifest, a.task, a.limit)
    tr = Films(rows["train"], train_tf)
    if binary:
        ys = [y for _, y in rows["train"]]
        counts = np.bincount(ys, minlength=ncls)
        w = [1.0 / counts[y] for y in ys]
        sampler = torch.utils.data.WeightedRandomSampler(w, num_samples=len(ys), replacement=True)
        train_loader = torch.utils.data.DataLoader(tr, batch_size=a.batch, sampler=sampler, num_workers=a.workers)
    else:
        train_loader = torch.utils.data.DataLoader(tr, batch_size=a.batch, shuffle=True, num_workers=a.workers)
    val_loader = torch.utils.data.DataLoader(Films(rows["val"], eval_tf), batch_size=a.batch, num_workers=a.workers)
    test_loader = torch.utils.data.DataLoader(Films(rows["test"], eval_tf), batch_size=a.batch, num_workers=a.workers)

    model = torchvision.models.resnet18(weights=None, num_classes=ncls)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    lossf = nn.CrossEntropyLoss()
    print(f"reference: torch {torch.__version__} torchvision {torchvision.__version__} threads {torch.get_num_threads()} "
          f"task {a.task} size {S} batch {a.batch} train/val/test {len(rows['train'])}/{len(rows['val'])}/{len(rows['test'])}",
          flush=True)

    best, best_state, bad, history = -math.inf, None, 0, []
    for ep in range(1, epochs + 1):
        model.train()
        t0 = time.time()
        n, tot = 0, 0.0
        for x, y in train_loader:
            opt.zero_grad()
            loss = lossf(model(x), y)
            loss.backward()
            opt.step()
            n += len(y)
            tot += loss.item() * len(y)
        dt = time.time() - t0
        vm, _, _ = evaluate(model, val_loader, ncls)
        score = vm["auc"] if binary else vm["f1"]
        history.append({"epoch": ep, "train_loss": tot / n, "seconds": dt, "images_per_s": n / dt, **{"val_" + k: v for k, v in vm.items()}})
        print(f"epoch {ep:3d} train_loss {tot / n:.4f} val_loss {vm['loss']:.4f} val_auc {vm['auc']:.4f} val_f1 {vm['f1']:.4f} "
              f"time {dt:.1f}s images/s {n / dt:.2f}", flush=True)
        if score > best:
            best, bad = score, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            bad += 1
            if bad >= patience:
                print(f"early stop after epoch {ep} (patience {patience})", flush=True)
                break

    if best_state is not None:
        model.load_state_dict(best_state)
    tm, p, y = evaluate(model, test_loader, ncls)
    res = {"task": a.task, "size": S, "batch": a.batch, "threads": torch.get_num_threads(), "epochs_run": len(history),
           "mean_images_per_s": float(np.mean([h["images_per_s"] for h in history])),
           "mean_epoch_s": float(np.mean([h["seconds"] for h in history])),
           "test_auc": tm["auc"], "test_f1": tm["f1"], "test_acc": tm["acc"], "history": history}
    if binary:
        vm, vp, vy = evaluate(model, val_loader, ncls)
        fpr, tpr, thr = roc_curve(vy, vp[:, 1])
        t = float(thr[np.argmax(tpr - fpr)]) if len(set(vy)) == 2 else 0.5
        res["youden_threshold_val"] = t
        res["test_acc_youden"] = accuracy_score(y, (p[:, 1] >= t).astype(int))
        res["test_f1_youden"] = f1_score(y, (p[:, 1] >= t).astype(int), zero_division=0)
    print(f"test auc {tm['auc']:.4f} f1@0.5 {tm['f1']:.4f} acc@0.5 {tm['acc']:.4f}"
          + (f" | val-Youden t={res['youden_threshold_val']:.4f} acc {res['test_acc_youden']:.4f} f1 {res['test_f1_youden']:.4f}" if binary else ""),
          flush=True)
    print(f"mean images/s {res['mean_images_per_s']:.2f} mean epoch {res['mean_epoch_s']:.1f}s", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
