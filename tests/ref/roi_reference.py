#!/usr/bin/python3
"""Reference for the lung-ROI models (tests/test_roi.c), from Pillow, torchvision and torch only.

  roi_reference.py classify MODEL LIST OUT_PROBS.npy OUT_PIXELS.npy
      LIST: one film per line, "path<TAB>x0<TAB>y0<TAB>x1<TAB>y1" with the pixel box PneumoScope
      reported (x1/y1 exclusive). For each film: Image.open(path).convert("L"), PIL crop of the
      box, .convert("RGB"), torchvision Compose([Resize((S, S)), ToTensor(), Normalize(mean, std)])
      with S / mean / std from the model's metadata, torchvision resnet18 with the file's weights
      (read by safetensors_io, independent of native/model). Writes the softmax probabilities
      (N, K) float64 and the resized 8-bit crops (N, S, S) uint8.
  roi_reference.py setmeta SRC KEY PREFIX VALUE...
      for the i-th VALUE, PREFIX-i.safetensors: a copy of the model SRC with the __metadata__ entry
      KEY set to VALUE (e.g. roi=chest, a bad value).
"""
import os
import sys

import numpy as np
import torch
import torchvision
from PIL import Image
from torchvision import transforms as T

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402


def classify(model_path, list_path, out_probs, out_pix):
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    sd, meta = safetensors_io.load(model_path)
    K = sd["fc.weight"].shape[0]
    size = int(meta.get("input_size", "224"))
    mean = [float(v) for v in meta.get("mean", "0.485,0.456,0.406").split(",")]
    std = [float(v) for v in meta.get("std", "0.229,0.224,0.225").split(",")]
    net = torchvision.models.resnet18(num_classes=K)
    net.load_state_dict({n: (t.float() if t.is_floating_point() else t) for n, t in sd.items()}, strict=True)
    net.eval()
    resize = T.Resize((size, size))
    tail = T.Compose([T.ToTensor(), T.Normalize(mean, std)])
    probs, pix = [], []
    for line in open(list_path):
        if not line.strip():
            continue
        path, x0, y0, x1, y1 = line.rstrip("\n").split("\t")
        crop = Image.open(path).convert("L").crop((int(x0), int(y0), int(x1), int(y1)))
        small = resize(crop.convert("RGB"))
        pix.append(np.asarray(small.convert("L"), dtype=np.uint8))
        with torch.no_grad():
            p = torch.softmax(net(tail(small).unsqueeze(0)), 1)[0].double().numpy()
        probs.append(p)
    np.save(out_probs, np.stack(probs))
    np.save(out_pix, np.stack(pix))


def setmeta(src, key, prefix, values):
    sd, meta = safetensors_io.load(src)
    for i, value in enumerate(values):
        m = dict(meta)
        m[key] = value
        safetensors_io.save("%s-%d.safetensors" % (prefix, i), sd, m)


if __name__ == "__main__":
    if sys.argv[1] == "classify":
        classify(*sys.argv[2:6])
    elif sys.argv[1] == "setmeta":
        setmeta(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:])
    else:
        sys.exit("unknown command %s" % sys.argv[1])
