#!/usr/bin/python3
"""Reference for the lung-ROI models (tests/test_roi.c), from Pillow, torchvision and torch only.

  roi_reference.py classify MODEL LIST OUT_PROBS.npy OUT_PIXELS.npy
      LIST: one film per line, "path<TAB>x0<TAB>y0<TAB>x1<TAB>y1" with the pixel box PneumoScope
      reported (x1/y1 exclusive). For each film: Image.open(path).convert("L"), PIL crop of the
      box, .convert("RGB"), torchvision Compose([Resize((S, S)), ToTensor(), Normalize(mean, std)])
      with S / mean / std from the model's metadata, torchvision resnet18 with the file's weights
      (read by safetensors_io, independent of native/model). Writes the softmax probabilities
      (N, K) float64 and the resized 8-bit crops (N, S, S) uint8.
  roi_reference.py lungmask LIST SIZE OUT_PIXELS.npy OUT_INPUT.npy
      The input of a "lungmask" model, from its definition (ps_lung.h), with Pillow, numpy and
      scipy: LIST lines "path<TAB>x0<TAB>y0<TAB>x1<TAB>y1<TAB>mask.npy" (the pixel box and the
      film's (H, W) lung mask PneumoScope used, float 0/1). Pillow crop + Resize((S, S)) as
      above; the mask dilated by a Euclidean disk of radius 0.04 x the box width
      (scipy.ndimage.distance_transform_edt), sampled at the source pixel of each output pixel
      (x0 + floor((2i + 1) cw / 2S)); outside it the gray round(mean(ImageNet means) x 255).
      Writes the 8-bit inputs (N, S, S) uint8 and ToTensor + Normalize(ImageNet) of them
      (N, 3, S, S) float64 (torchvision).
  roi_reference.py setmeta SRC KEY PREFIX VALUE...
      for the i-th VALUE, PREFIX-i.safetensors: a copy of the model SRC with the __metadata__ entry
      KEY set to VALUE (e.g. roi=chest, a bad value).
"""
import os
import sys

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402


def classify(model_path, list_path, out_probs, out_pix):
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    net, meta, temperature = safetensors_io.torchvision_model(model_path)
    size = int(meta.get("input_size", "224"))
    mean = [float(v) for v in meta.get("mean", "0.485,0.456,0.406").split(",")]
    std = [float(v) for v in meta.get("std", "0.229,0.224,0.225").split(",")]
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
            p = torch.softmax(net(tail(small).unsqueeze(0)) / temperature, 1)[0].double().numpy()
        probs.append(p)
    np.save(out_probs, np.stack(probs))
    np.save(out_pix, np.stack(pix))


IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def lungmask(list_path, size, out_pix, out_x):
    from scipy import ndimage
    size = int(size)
    fill = int(round(float(np.mean(IMAGENET_MEAN)) * 255))
    resize = T.Resize((size, size))
    tail = T.Compose([T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    pix, xs = [], []
    for line in open(list_path):
        if not line.strip():
            continue
        path, x0, y0, x1, y1, mask_path = line.rstrip("\n").split("\t")
        x0, y0, x1, y1 = int(x0), int(y0), int(x1), int(y1)
        crop = Image.open(path).convert("L").crop((x0, y0, x1, y1))
        lungs = np.asarray(resize(crop.convert("RGB")).convert("L"), dtype=np.uint8)
        mask = np.load(mask_path) > 0.5
        cw, ch = x1 - x0, y1 - y0
        r = 0.04 * cw
        d2 = np.rint(ndimage.distance_transform_edt(~mask) ** 2)  # squared distance to the mask
        i = np.arange(size)
        sx = x0 + ((2 * i + 1) * cw) // (2 * size)
        sy = y0 + ((2 * i + 1) * ch) // (2 * size)
        keep = d2[np.ix_(sy, sx)] <= r * r
        out = np.where(keep, lungs, np.uint8(fill)).astype(np.uint8)
        pix.append(out)
        xs.append(tail(Image.fromarray(out).convert("RGB")).double().numpy())
    np.save(out_pix, np.stack(pix))
    np.save(out_x, np.stack(xs))


def setmeta(src, key, prefix, values):
    sd, meta = safetensors_io.load(src)
    for i, value in enumerate(values):
        m = dict(meta)
        m[key] = value
        safetensors_io.save("%s-%d.safetensors" % (prefix, i), sd, m)


if __name__ == "__main__":
    if sys.argv[1] == "classify":
        classify(*sys.argv[2:6])
    elif sys.argv[1] == "lungmask":
        lungmask(*sys.argv[2:6])
    elif sys.argv[1] == "setmeta":
        setmeta(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:])
    else:
        sys.exit("unknown command %s" % sys.argv[1])
