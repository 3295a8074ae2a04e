#!/usr/bin/env python3
"""The PyTorch reference a user would otherwise run on a GPU, measured for tests/bench/gpu_check.sh.

Training: torchvision ResNet18, Adam 1e-3, torchvision DataLoader with PIL decoding (one worker
per core), RandomResizedCrop-free recipe of the seed project (Resize -> ColorJitter), bf16
autocast, channels_last, cudnn.benchmark. Inference: eval-mode forward under the same autocast on
a GPU-resident batch (pure model throughput) — the same thing bench_gpu measures for PneumoScope.
Prints one JSON object.

usage: gpu_reference.py FILM_DIR [--batch 32] [--epochs 3] [--size 224] [--infer-batch 256]
"""
import argparse
import json
import os
import time

import torch
import torchvision
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T


class Films(Dataset):
    def __init__(self, root, tf):
        self.items = []
        for cls, label in (("NORMAL", 0), ("PNEUMONIA", 1)):
            d = os.path.join(root, cls)
            for f in sorted(os.listdir(d)):
                self.items.append((os.path.join(d, f), label))
        self.tf = tf

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        p, y = self.items[i]
        return self.tf(Image.open(p).convert("RGB")), y


def sync():
    torch.cuda.synchronize()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--infer-batch", type=int, default=256)
    a = ap.parse_args()
    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda")
    norm = T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    tf = T.Compose([T.Resize((a.size, a.size)), T.ColorJitter(0.2, 0.2), T.ToTensor(), norm])
    ds = Films(a.root, tf)
    dl = DataLoader(ds, batch_size=a.batch, shuffle=True, num_workers=os.cpu_count(), pin_memory=True,
                    drop_last=True, persistent_workers=True)
    model = torchvision.models.resnet18(num_classes=2).to(dev).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    lossf = torch.nn.CrossEntropyLoss()
    times = []
    for ep in range(a.epochs):
        model.train()
        sync()
        t0 = time.perf_counter()
        n = 0
        for x, y in dl:
            x = x.to(dev, non_blocking=True).to(memory_format=torch.channels_last)
            y = y.to(dev, non_blocking=True)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = lossf(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            n += x.shape[0]
        sync()
        times.append((n, time.perf_counter() - t0))
    # first epoch warms workers and cudnn: report the later ones
    n = sum(t[0] for t in times[1:]) or times[0][0]
    s = sum(t[1] for t in times[1:]) or times[0][1]
    train_ips = n / s

    model.eval()
    x = torch.randn(a.infer_batch, 3, a.size, a.size, device=dev).to(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        for _ in range(5):
            model(x)
        sync()
        t0 = time.perf_counter()
        reps = 30
        for _ in range(reps):
            model(x)
        sync()
        infer_ips = reps * a.infer_batch / (time.perf_counter() - t0)
    print(json.dumps({"impl": "pytorch", "torch": torch.__version__, "device": torch.cuda.get_device_name(0),
                      "batch": a.batch, "size": a.size, "train_images_per_s": train_ips,
                      "infer_batch": a.infer_batch, "infer_images_per_s": infer_ips,
                      "epochs": [{"images": t[0], "seconds": t[1]} for t in times]}))


if __name__ == "__main__":
    main()
