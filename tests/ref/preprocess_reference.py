#!/usr/bin/python3
"""Reference results for tests/test_preprocess.c from Pillow and torchvision (programs PneumoScope
did not write). Every output is a .npy in OUTDIR.

  resize OUTDIR WxH[,WxH...] FILE...
      <i>_<W>x<H>_L.npy  Image.open(FILE).convert("L").resize((W, H), BILINEAR)       (uint8)
      <i>_<W>x<H>_F.npy  the same film as mode "F" (L / 255 in float32), resized      (float32)
  box IN.npy OUTDIR x0 y0 x1 y1 W H
      box.npy            Image.fromarray(IN, "F").resize((W, H), BILINEAR, box=(x0, y0, x1, y1))
  tensor OUTDIR SIZE FILE...
      <i>.npy            Compose([Resize((SIZE, SIZE)), ToTensor(), Normalize(ImageNet)])
                         (Image.open(FILE).convert("RGB"))                             (3, S, S)
  functional IN.npy OUTDIR
      bright_<k>.npy, contrast_<k>.npy, rotate_<k>.npy: torchvision.transforms.functional
      adjust_brightness / adjust_contrast / rotate(BILINEAR, fill) on the (1, H, W) tensor, for the
      parameter lists printed on stdout (one "kind k value [fill]" per line).
"""
import os
import sys

import numpy as np
from PIL import Image

BILINEAR = Image.BILINEAR


def cmd_resize(outdir, sizes, files):
    os.makedirs(outdir, exist_ok=True)
    sizes = [tuple(int(v) for v in s.split("x")) for s in sizes.split(",")]
    for i, f in enumerate(files):
        L = Image.open(f).convert("L")
        F = Image.fromarray(np.asarray(L, dtype=np.float32) / np.float32(255), "F")
        for (w, h) in sizes:
            if w > 1000 and L.size[0] > 1000:
                continue  # upsampling is checked from the small films only (as the C test does)
            np.save(os.path.join(outdir, "%d_%dx%d_L.npy" % (i, w, h)), np.asarray(L.resize((w, h), BILINEAR)))
            np.save(os.path.join(outdir, "%d_%dx%d_F.npy" % (i, w, h)),
                    np.asarray(F.resize((w, h), BILINEAR), dtype=np.float32))


def cmd_box(src, outdir, x0, y0, x1, y1, w, h):
    os.makedirs(outdir, exist_ok=True)
    a = np.load(src).astype(np.float32)
    im = Image.fromarray(a, "F")
    r = im.resize((int(w), int(h)), BILINEAR, box=(float(x0), float(y0), float(x1), float(y1)))
    np.save(os.path.join(outdir, "box.npy"), np.asarray(r, dtype=np.float32))


def cmd_tensor(outdir, size, files):
    import torch
    from torchvision import transforms as T
    torch.set_num_threads(1)
    os.makedirs(outdir, exist_ok=True)
    s = int(size)
    tf = T.Compose([T.Resize((s, s)), T.ToTensor(), T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    for i, f in enumerate(files):
        x = tf(Image.open(f).convert("RGB"))
        np.save(os.path.join(outdir, "%d.npy" % i), x.numpy().astype(np.float32))


def cmd_functional(src, outdir):
    import torch
    import torchvision.transforms.functional as TF
    from torchvision.transforms import InterpolationMode
    torch.set_num_threads(1)
    os.makedirs(outdir, exist_ok=True)
    x = torch.from_numpy(np.load(src).astype(np.float32))[None]
    for k, b in enumerate([0.0, 0.5, 0.8, 1.0, 1.2, 1.7]):
        np.save(os.path.join(outdir, "bright_%d.npy" % k), TF.adjust_brightness(x, b)[0].numpy())
        print("bright %d %r" % (k, b))
    for k, c in enumerate([0.0, 0.6, 0.9, 1.0, 1.15, 1.8]):
        np.save(os.path.join(outdir, "contrast_%d.npy" % k), TF.adjust_contrast(x, c)[0].numpy())
        print("contrast %d %r" % (k, c))
    for k, (a, fill) in enumerate([(0.0, 0.0), (3.5, 0.0), (-7.25, 0.0), (10.0, 0.3), (-2.0, 1.0), (90.0, 0.0)]):
        r = TF.rotate(x, a, interpolation=InterpolationMode.BILINEAR, fill=[fill])
        np.save(os.path.join(outdir, "rotate_%d.npy" % k), r[0].numpy())
        print("rotate %d %r %r" % (k, a, fill))


def main():
    a = sys.argv[1:]
    if len(a) >= 4 and a[0] == "resize":
        cmd_resize(a[1], a[2], a[3:])
    elif len(a) == 9 and a[0] == "box":
        cmd_box(*a[1:])
    elif len(a) >= 4 and a[0] == "tensor":
        cmd_tensor(a[1], a[2], a[3:])
    elif len(a) == 3 and a[0] == "functional":
        cmd_functional(a[1], a[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
