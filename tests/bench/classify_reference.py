#!/usr/bin/python3
"""The reference a user would otherwise run for tests/bench/bench_classify.sh: PIL decode +
torchvision transforms + torchvision ResNet18 (torch.set_num_threads(nproc)), same weights.

  classify_reference.py one MODEL FILE               label of one film (whole-process timing)
  classify_reference.py latency MODEL FILE N         median in-process ms per film (after warm-up)
  classify_reference.py folder MODEL DIR OUT.json B  every film under DIR, batches of B
"""
import json
import os
import sys
import time

import torch
import torchvision
from PIL import Image
from torchvision import transforms as T

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ref"))
import safetensors_io  # noqa: E402

torch.set_num_threads(os.cpu_count() or 1)


def load(path):
    sd, meta, _ = safetensors_io.load_model(path)
    k = sd["fc.weight"].shape[0]
    m = torchvision.models.resnet18(num_classes=k)
    m.load_state_dict({n: (t.float() if t.is_floating_point() else t) for n, t in sd.items()})
    m.eval()
    size = int(meta.get("input_size", 224))
    tf = T.Compose([T.Resize((size, size)), T.ToTensor(),
                    T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    classes = meta.get("classes", "NORMAL,PNEUMONIA").split(",")
    return m, tf, classes, float(meta.get("threshold", 0.5))


def film(tf, path):
    return tf(Image.open(path).convert("L").convert("RGB"))


def main():
    cmd = sys.argv[1]
    m, tf, classes, thr = load(sys.argv[2])
    with torch.inference_mode():
        if cmd == "one":
            p = torch.softmax(m(film(tf, sys.argv[3]).unsqueeze(0)), 1)[0]
            print(classes[1] if p[1] >= thr else classes[0], ["%.4f" % v for v in p.tolist()])
        elif cmd == "latency":
            path, n = sys.argv[3], int(sys.argv[4])
            ts = []
            for i in range(n + 1):
                t0 = time.perf_counter()
                torch.softmax(m(film(tf, path).unsqueeze(0)), 1)
                if i:
                    ts.append((time.perf_counter() - t0) * 1e3)
            ts.sort()
            print("%.3f" % ts[len(ts) // 2])
        elif cmd == "folder":
            root, out, b = sys.argv[3], sys.argv[4], int(sys.argv[5])
            files = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs
                           if f.lower().endswith((".jpeg", ".jpg", ".png")))
            res = {}
            for i in range(0, len(files), b):
                chunk = files[i:i + b]
                p = torch.softmax(m(torch.stack([film(tf, f) for f in chunk])), 1)
                for f, row in zip(chunk, p.tolist()):
                    res[f] = row
            json.dump(res, open(out, "w"))


main()
