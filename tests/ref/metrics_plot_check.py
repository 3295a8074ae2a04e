#!/usr/bin/python3
"""Pillow checks of the PNG figures written by ps_plot (tests/test_plot.c). Prints "key value" lines.

  metrics_plot_check.py basic FILE W H          size, mode, how non-blank the picture is
  metrics_plot_check.py roc FILE                fraction of curve-1 (tab10 blue) pixels above the chance diagonal
  metrics_plot_check.py confusion FILE          share of the dark cell pixels in each quadrant of the dark-pixel box
  metrics_plot_check.py training FILE           mean height of the train-loss curve at its left end vs its middle
  metrics_plot_check.py reliability FILE BINS   per bin, read off the pixels: the bar's accuracy, the top of the
                                                gap box (max of accuracy and confidence), the film histogram's
                                                bar height (x1000 of each panel's height; -1: nothing drawn)
"""
import sys

import numpy as np
from PIL import Image

BLUE = (31, 119, 180)   # tab10 #1f77b4, first curve
RED = np.array([214, 39, 40])  # tab10 #d62728


def over(rgb, base, alpha):
    return tuple(int(round(alpha * c + (1 - alpha) * b)) for c, b in zip(rgb, base))


def load(path):
    im = Image.open(path)
    im.load()
    return im, np.asarray(im.convert("RGB")).astype(int)


def mask(a, rgb, tol=12):
    return (np.abs(a - np.array(rgb)).max(axis=2) <= tol)


def basic(path, w, h):
    im, a = load(path)
    print("format", 1 if im.format == "PNG" else 0)
    print("width", im.size[0])
    print("height", im.size[1])
    print("expected", 1 if im.size == (w, h) else 0)
    grey = a.mean(axis=2)
    print("std_x100", int(grey.std() * 100))
    print("colours", len(np.unique(a.reshape(-1, 3), axis=0)))
    print("dark_pixels", int((grey < 80).sum()))
    print("white_fraction_x1000", int((grey > 250).mean() * 1000))
    # text: dark pixels in the title band (top 8 %)
    print("title_dark_pixels", int((grey[: max(1, h * 8 // 100)] < 100).sum()))


def frame(a):
    """The axes frame (0.15 grey lines): first/last rows and columns with long runs of it."""
    d = (a.max(axis=2) < 140) & (np.ptp(a, axis=2) < 8)  # dark neutral grey (antialiased line)
    rows = np.nonzero(d.sum(axis=1) > 0.4 * min(a.shape[:2]))[0]
    cols = np.nonzero(d.sum(axis=0) > 0.4 * min(a.shape[:2]))[0]
    return cols.min(), cols.max(), rows.min(), rows.max()


def roc(path):
    _, a = load(path)
    fx0, fx1, fy0, fy1 = frame(a)
    # ps_plot draws the unit square with 2 % margins: data -0.02 .. 1.02 across the frame
    b = mask(a, BLUE, 12)
    by, bx = np.nonzero(b)
    inside = (bx > fx0 + 2) & (bx < fx1 - 2) & (by > fy0 + 2) & (by < fy1 - 2)
    bx, by = bx[inside], by[inside]
    xd = -0.02 + (bx - fx0) / (fx1 - fx0) * 1.04
    yd = -0.02 + (fy1 - by) / (fy1 - fy0) * 1.04
    print("frame", int(fx1 - fx0), int(fy1 - fy0))
    print("curve_pixels", len(bx))
    print("above_x1000", int(1000 * (yd > xd + 0.005).sum() / max(1, len(bx))))


def confusion(path):
    _, a = load(path)
    r, g, b = a[..., 0], a[..., 1], a[..., 2]
    dark_blue = (b > r + 60) & (b > 90) & (r < 80)
    ys, xs = np.nonzero(dark_blue)
    cx, cy = (xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2
    n = max(1, len(xs))
    print("dark_pixels", len(xs))
    print("top_left_x1000", int(1000 * ((xs < cx) & (ys < cy)).sum() / n))
    print("bottom_right_x1000", int(1000 * ((xs >= cx) & (ys >= cy)).sum() / n))
    print("top_right_x1000", int(1000 * ((xs >= cx) & (ys < cy)).sum() / n))
    print("bottom_left_x1000", int(1000 * ((xs < cx) & (ys >= cy)).sum() / n))


def training(path):
    _, a = load(path)
    w = a.shape[1]
    left = a[:, : w // 2]
    b = mask(left, BLUE, 12)
    ys, xs = np.nonzero(b)
    lo, hi = xs.min(), xs.max()
    span = hi - lo
    first = ys[xs < lo + 0.1 * span].mean()
    middle = ys[(xs > lo + 0.4 * span) & (xs < lo + 0.6 * span)].mean()
    print("left_row", int(first))
    print("middle_row", int(middle))
    print("right_panel_blue", int(mask(a[:, w // 2:], BLUE, 12).sum()))


def frame_rows(a):
    """Rows of the long horizontal frame lines, grouped: [(first, last), ...] top to bottom."""
    d = (a.max(axis=2) < 140) & (np.ptp(a, axis=2) < 8)
    rows = np.nonzero(d.sum(axis=1) > 0.4 * min(a.shape[:2]))[0]
    groups = np.split(rows, np.nonzero(np.diff(rows) > 3)[0] + 1)
    return [(g.min(), g.max()) for g in groups if len(g)]


def run_top(col, ok, start, gap=5):
    """Topmost row of the run of `ok` pixels going up from `start`, bridging gaps <= gap (the
    dashed diagonal crossing a bar); None when the run is empty."""
    top, miss = None, 0
    for r in range(start, -1, -1):
        if ok[r, col]:
            top, miss = r, 0
        else:
            miss += 1
            if miss > gap:
                break
    return top


def reliability(path, bins):
    _, a = load(path)
    fx0, fx1, _, _ = frame(a)
    groups = frame_rows(a)
    print("frame_lines", len(groups))
    (fy0, _), (_, fy1), (hy0, _), (_, hy1) = groups[:4]
    gap_white = over(RED, (255, 255, 255), 0.3)
    gap_blue = over(RED, BLUE, 0.3)
    light = over(BLUE, (255, 255, 255), 0.55)
    bar = mask(a, BLUE, 12) | mask(a, gap_blue, 12)
    box = bar | mask(a, gap_white, 12)
    hist = mask(a, light, 12)
    for b in range(bins):
        xl = fx0 + (fx1 - fx0) * b / bins
        xr = fx0 + (fx1 - fx0) * (b + 1) / bins
        cols = range(int(np.ceil(xl + 0.25 * (xr - xl))), int(np.floor(xr - 0.25 * (xr - xl))) + 1)
        out = {}
        for name, ok, y0, y1 in (("acc", bar, fy0, fy1), ("upper", box, fy0, fy1), ("hist", hist, hy0, hy1)):
            tops = [run_top(c, ok, y1 - 3) for c in cols]
            tops = [t for t in tops if t is not None]
            out[name] = int(round(1000 * (y1 - np.median(tops)) / (y1 - y0))) if len(tops) > len(cols) // 2 else -1
        print(f"acc_{b}_x1000", out["acc"])
        print(f"upper_{b}_x1000", out["upper"])
        print(f"hist_{b}_x1000", out["hist"])


if __name__ == "__main__":
    cmd, path = sys.argv[1], sys.argv[2]
    if cmd == "basic":
        basic(path, int(sys.argv[3]), int(sys.argv[4]))
    elif cmd == "roc":
        roc(path)
    elif cmd == "confusion":
        confusion(path)
    elif cmd == "training":
        training(path)
    elif cmd == "reliability":
        reliability(path, int(sys.argv[3]))
