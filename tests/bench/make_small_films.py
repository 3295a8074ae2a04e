#!/usr/bin/env python3
"""Copy a film folder (Kaggle layout) with every JPEG/PNG downscaled so its shorter side is SIDE.

The GPU machine takes at most 64 MiB of data per call, so the GPU benchmark carries the 651
Kermany films (CC BY 4.0, see ../shared/data/README.md) at 256 px; PneumoScope and the PyTorch
reference then decode the very same files.

usage: make_small_films.py SRC DST [--side 256]
"""
import argparse
import os

from PIL import Image


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--side", type=int, default=256)
    a = ap.parse_args()
    n = 0
    for root, _, files in os.walk(a.src):
        for f in sorted(files):
            if not f.lower().endswith((".jpeg", ".jpg", ".png")):
                continue
            rel = os.path.relpath(os.path.join(root, f), a.src)
            out = os.path.join(a.dst, rel)
            if os.path.exists(out):
                continue
            os.makedirs(os.path.dirname(out), exist_ok=True)
            im = Image.open(os.path.join(root, f)).convert("L")
            s = a.side / min(im.size)
            im = im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.BILINEAR)
            im.save(out, quality=90)
            n += 1
    print(f"{n} films written to {a.dst}")


if __name__ == "__main__":
    main()
