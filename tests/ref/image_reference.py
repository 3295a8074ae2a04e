#!/usr/bin/python3
"""Reference decodes for tests/test_image.c, by Pillow (a program PneumoScope did not write).

  image_reference.py decode OUTDIR FILE...   OUTDIR/<i>.npy = what Pillow sees in FILE i, as
      float64 in [0, 1]: Image.open(f).convert("L") / 255, except 16-bit gray PNGs (Pillow mode
      "I;16"/"I") which give the 16-bit value / 65535. OUTDIR/<i>.txt = "mode width height".
  image_reference.py decode --draft S OUTDIR FILE...   the same after Image.draft(mode, (S, S)):
      JPEGs decoded at libjpeg's reduced 1/2, 1/4 or 1/8 IDCT scale (Pillow's own choice of scale)
  image_reference.py variants SRC OUTDIR     writes PNG/JPEG variants of the 8-bit film SRC
      (cropped to 300x240) into OUTDIR and prints their names, one per line. Pillow writes the
      modes it can write; the others (2/4-bit gray, 16-bit RGB, Adam7-interlaced) go through
      the tiny standard-library encoder below, and are then read back by Pillow as the reference.
"""
import os
import struct
import sys
import zlib

import numpy as np
from PIL import Image


def pillow_gray(path, draft=0):
    im = Image.open(path)
    if draft:
        im.draft(im.mode, (draft, draft))
    im.load()
    if im.mode in ("I;16", "I;16B", "I") and im.format == "PNG":
        a = np.asarray(im, dtype=np.float64)
        info_bits = 16
        return a / 65535.0, im.mode, info_bits
    return np.asarray(im.convert("L"), dtype=np.float64) / 255.0, im.mode, 8


def cmd_decode(outdir, files, draft=0):
    os.makedirs(outdir, exist_ok=True)
    for i, f in enumerate(files):
        a, mode, _ = pillow_gray(f, draft)
        np.save(os.path.join(outdir, "%d.npy" % i), a)
        with open(os.path.join(outdir, "%d.txt" % i), "w") as t:
            t.write("%s %d %d\n" % (mode, a.shape[1], a.shape[0]))


# ---- a minimal PNG encoder (filter 0 everywhere), for what Pillow cannot write ----------------

def _chunk(kind, data):
    c = struct.pack(">I", len(data)) + kind + data
    return c + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _pack_rows(a, bit_depth, channels):
    """a: (h, w[, c]) unsigned ints -> list of packed row bytes."""
    h = a.shape[0]
    rows = []
    for y in range(h):
        r = a[y].reshape(-1)
        if bit_depth == 16:
            rows.append(r.astype(">u2").tobytes())
        elif bit_depth == 8:
            rows.append(r.astype(np.uint8).tobytes())
        else:
            per = 8 // bit_depth
            n = len(r)
            padded = np.zeros(((n + per - 1) // per) * per, dtype=np.uint8)
            padded[:n] = r
            padded = padded.reshape(-1, per)
            b = np.zeros(padded.shape[0], dtype=np.uint8)
            for k in range(per):
                b |= (padded[:, k] << (8 - bit_depth * (k + 1))).astype(np.uint8)
            rows.append(b.tobytes())
    return rows


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def write_png(path, a, color_type, bit_depth, interlace=False):
    h, w = a.shape[:2]
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[color_type]
    raw = b""
    if interlace:
        for (x0, y0, dx, dy) in ADAM7:
            sub = a[y0::dy, x0::dx]
            if sub.shape[0] == 0 or sub.shape[1] == 0:
                continue
            for r in _pack_rows(sub, bit_depth, channels):
                raw += b"\x00" + r
    else:
        for r in _pack_rows(a, bit_depth, channels):
            raw += b"\x00" + r
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 1 if interlace else 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw, 6)) + _chunk(b"IEND", b""))


def cmd_variants(src, outdir):
    os.makedirs(outdir, exist_ok=True)
    base = Image.open(src).convert("L")
    w, h = base.size
    x0, y0 = (w - 300) // 2, (h - 240) // 2
    g = base.crop((x0, y0, x0 + 300, y0 + 240))
    a = np.asarray(g, dtype=np.uint8)
    rng = np.random.default_rng(1234)
    # colour version: the film tinted differently per channel (so luminance weights matter)
    rgb = np.stack([a, np.clip(a.astype(int) * 3 // 4 + 40, 0, 255), 255 - a], axis=-1).astype(np.uint8)
    names = []

    def out(n):
        names.append(n)
        return os.path.join(outdir, n)

    g.save(out("gray8.png"))
    Image.fromarray(rgb, "RGB").save(out("rgb8.png"))
    Image.fromarray(np.dstack([rgb, (a // 2 + 100).astype(np.uint8)]), "RGBA").save(out("rgba8.png"))
    Image.merge("LA", [g, Image.fromarray((255 - a).astype(np.uint8))]).save(out("gray_alpha8.png"))
    Image.fromarray(rgb, "RGB").quantize(colors=200).save(out("palette.png"))
    g.point(lambda v: 255 if v > 128 else 0).convert("1").save(out("gray1.png"))
    a16 = a.astype(np.uint16) * 257 + rng.integers(0, 257, a.shape).astype(np.uint16)
    write_png(out("gray16.png"), a16, 0, 16)
    write_png(out("gray2.png"), (a >> 6).astype(np.uint8), 0, 2)
    write_png(out("gray4.png"), (a >> 4).astype(np.uint8), 0, 4)
    write_png(out("gray8_interlaced.png"), a, 0, 8, interlace=True)
    write_png(out("rgb8_interlaced.png"), rgb, 2, 8, interlace=True)
    write_png(out("gray16_interlaced.png"), a16, 0, 16, interlace=True)
    rgb16 = rgb.astype(np.uint16) * 257 + rng.integers(0, 257, rgb.shape).astype(np.uint16)
    write_png(out("rgb16.png"), rgb16, 2, 16)
    # odd sizes exercise the Adam7 passes that are empty or one pixel wide
    write_png(out("gray8_interlaced_5x3.png"), a[:3, :5], 0, 8, interlace=True)
    # JPEG variants written by Pillow's libjpeg
    g.save(out("gray.jpeg"), quality=90)
    Image.fromarray(rgb, "RGB").save(out("rgb420.jpeg"), quality=85)
    Image.fromarray(rgb, "RGB").save(out("rgb444_progressive.jpeg"), quality=92, subsampling=0, progressive=True)
    Image.fromarray(rgb, "RGB").convert("CMYK").save(out("cmyk.jpeg"), quality=90)
    for n in names:
        print(n)


def main():
    if len(sys.argv) >= 5 and sys.argv[1:3] == ["decode", "--draft"]:
        cmd_decode(sys.argv[4], sys.argv[5:], int(sys.argv[3]))
    elif len(sys.argv) >= 3 and sys.argv[1] == "decode":
        cmd_decode(sys.argv[2], sys.argv[3:])
    elif len(sys.argv) == 4 and sys.argv[1] == "variants":
        cmd_variants(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
