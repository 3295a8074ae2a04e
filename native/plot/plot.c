/* plot.c — PNG figures with cairo (see ps_plot.h). Layout in pixels scaled by the figure size.
 * Built alone into the module libpneumoscope_plot.so (plot_backend.h), loaded on the first plot. */
#define _GNU_SOURCE
#include <cairo.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "plot_backend.h"
#include "ps_internal.h"
#include "ps_plot.h"

int ps_plot_available(void) { return 1; }

/* matplotlib's tab10, the colours people read plots in */
static const double palette[8][3] = {{0.122, 0.467, 0.706}, {1.000, 0.498, 0.055}, {0.173, 0.627, 0.173},
                                     {0.839, 0.153, 0.157}, {0.580, 0.404, 0.741}, {0.549, 0.337, 0.294},
                                     {0.890, 0.467, 0.761}, {0.498, 0.498, 0.498}};

typedef struct {
  cairo_t *cr;
  double s;              /* scale: 1 at 600 px */
  double x0, y0, x1, y1; /* plot area, pixels */
  double xmin, xmax, ymin, ymax;
} axes;

static double px(const axes *a, double x) { return a->x0 + (x - a->xmin) / (a->xmax - a->xmin) * (a->x1 - a->x0); }
static double py(const axes *a, double y) { return a->y1 - (y - a->ymin) / (a->ymax - a->ymin) * (a->y1 - a->y0); }

static void font(cairo_t *cr, double size, int bold) {
  cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL, bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, size);
}

/* Text anchored at (x, y): ha 0 left, .5 centre, 1 right; va 0 top, .5 middle, 1 bottom (of the
 * capital letters, so rows of labels line up whatever their descenders). */
static void text(cairo_t *cr, double x, double y, const char *s, double ha, double va, double angle) {
  cairo_text_extents_t e, cap;
  cairo_text_extents(cr, s, &e);
  cairo_text_extents(cr, "H", &cap);
  double ch = cap.height;
  cairo_save(cr);
  cairo_translate(cr, x, y);
  cairo_rotate(cr, angle);
  cairo_move_to(cr, -e.x_advance * ha, ch * (1 - va));
  cairo_show_text(cr, s);
  cairo_restore(cr);
}

static double text_width(cairo_t *cr, const char *s) {
  cairo_text_extents_t e;
  cairo_text_extents(cr, s, &e);
  return e.x_advance;
}

/* "Nice" ticks (1, 2, 5 x 10^k) covering [lo, hi]; returns the count (<= 12). */
static int nice_ticks(double lo, double hi, int target, double *t, double *step_out) {
  double span = hi - lo;
  if (!(span > 0)) span = fabs(hi) > 0 ? fabs(hi) : 1;
  double raw = span / (target > 1 ? target : 2), mag = pow(10, floor(log10(raw))), f = raw / mag;
  double step = (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
  int n = 0;
  for (double v = ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9 && n < 12; v += step) t[n++] = fabs(v) < step * 1e-9 ? 0 : v;
  if (step_out) *step_out = step;
  return n;
}

static void fmt_tick(char *buf, size_t n, double v, double step) {
  int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
  if (dec > 6) dec = 6;
  snprintf(buf, n, "%.*f", dec, v);
}

static void draw_frame(axes *a, const char *title, const char *xlabel, const char *ylabel, const double *xt, int nxt,
                       double xstep, const double *yt, int nyt, double ystep) {
  cairo_t *cr = a->cr;
  double s = a->s;
  /* grid */
  cairo_set_line_width(cr, 1.0 * s);
  cairo_set_source_rgb(cr, 0.90, 0.90, 0.90);
  for (int i = 0; i < nxt; i++) {
    double x = round(px(a, xt[i])) + 0.5;
    cairo_move_to(cr, x, a->y0);
    cairo_line_to(cr, x, a->y1);
  }
  for (int i = 0; i < nyt; i++) {
    double y = round(py(a, yt[i])) + 0.5;
    cairo_move_to(cr, a->x0, y);
    cairo_line_to(cr, a->x1, y);
  }
  cairo_stroke(cr);
  /* frame and ticks */
  cairo_set_source_rgb(cr, 0.15, 0.15, 0.15);
  cairo_set_line_width(cr, 1.2 * s);
  cairo_rectangle(cr, a->x0, a->y0, a->x1 - a->x0, a->y1 - a->y0);
  cairo_stroke(cr);
  font(cr, 12.5 * s, 0);
  char buf[32];
  for (int i = 0; i < nxt; i++) {
    double x = px(a, xt[i]);
    cairo_move_to(cr, x, a->y1);
    cairo_line_to(cr, x, a->y1 + 5 * s);
    cairo_stroke(cr);
    fmt_tick(buf, sizeof buf, xt[i], xstep);
    text(cr, x, a->y1 + 8 * s, buf, 0.5, 0, 0);
  }
  double wmax = 0;
  for (int i = 0; i < nyt; i++) {
    double y = py(a, yt[i]);
    cairo_move_to(cr, a->x0 - 5 * s, y);
    cairo_line_to(cr, a->x0, y);
    cairo_stroke(cr);
    fmt_tick(buf, sizeof buf, yt[i], ystep);
    double w = text_width(cr, buf);
    if (w > wmax) wmax = w;
    text(cr, a->x0 - 8 * s, y, buf, 1, 0.5, 0);
  }
  font(cr, 14 * s, 0);
  if (xlabel) text(cr, (a->x0 + a->x1) / 2, a->y1 + 30 * s, xlabel, 0.5, 0, 0);
  if (ylabel) text(cr, a->x0 - 14 * s - wmax, (a->y0 + a->y1) / 2, ylabel, 0.5, 1, -M_PI / 2);
  font(cr, 16 * s, 1);
  if (title) text(cr, (a->x0 + a->x1) / 2, a->y0 - 14 * s, title, 0.5, 1, 0);
}

typedef struct {
  const char *label;
  const double *rgb;
  int dashed; /* 0 solid line, 1 dashed line, 2 filled square (a bar's colour) */
} legend_entry;

/* Legend box in a corner of the axes: corner 0 bottom-right, 1 bottom-left, 2 top-right, 3 top-left. */
static void legend(axes *a, const legend_entry *e, int n, int corner) {
  if (n <= 0) return;
  cairo_t *cr = a->cr;
  double s = a->s;
  font(cr, 12.5 * s, 0);
  double wmax = 0;
  for (int i = 0; i < n; i++) {
    double w = text_width(cr, e[i].label);
    if (w > wmax) wmax = w;
  }
  double line = 20 * s, pad = 8 * s, sw = 26 * s;
  double bw = pad * 3 + sw + wmax, bh = pad * 2 + line * n;
  double bx = (corner == 0 || corner == 2) ? a->x1 - bw - 10 * s : a->x0 + 10 * s;
  double by = (corner <= 1) ? a->y1 - bh - 10 * s : a->y0 + 10 * s;
  cairo_set_source_rgba(cr, 1, 1, 1, 0.92);
  cairo_rectangle(cr, bx, by, bw, bh);
  cairo_fill_preserve(cr);
  cairo_set_source_rgb(cr, 0.75, 0.75, 0.75);
  cairo_set_line_width(cr, 1 * s);
  cairo_stroke(cr);
  for (int i = 0; i < n; i++) {
    double y = by + pad + line * (i + 0.5);
    cairo_set_source_rgb(cr, e[i].rgb[0], e[i].rgb[1], e[i].rgb[2]);
    if (e[i].dashed == 2) {
      cairo_rectangle(cr, bx + pad + sw / 2 - 6 * s, y - 6 * s, 12 * s, 12 * s);
      cairo_fill(cr);
      cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
      text(cr, bx + pad * 2 + sw, y, e[i].label, 0, 0.5, 0);
      continue;
    }
    cairo_set_line_width(cr, 2.5 * s);
    double dash[2] = {6 * s, 4 * s};
    cairo_set_dash(cr, dash, e[i].dashed ? 2 : 0, 0);
    cairo_move_to(cr, bx + pad, y);
    cairo_line_to(cr, bx + pad + sw, y);
    cairo_stroke(cr);
    cairo_set_dash(cr, NULL, 0, 0);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    text(cr, bx + pad * 2 + sw, y, e[i].label, 0, 0.5, 0);
  }
}

/* ---- output ---- */

typedef struct {
  FILE *f;
  int err;
} png_sink;

static cairo_status_t sink_write(void *closure, const unsigned char *data, unsigned int len) {
  png_sink *k = closure;
  if (fwrite(data, 1, len, k->f) != len) {
    k->err = errno ? errno : EIO;
    return CAIRO_STATUS_WRITE_ERROR;
  }
  return CAIRO_STATUS_SUCCESS;
}

static int png_fill(FILE *f, void *user) {
  png_sink k = {f, 0};
  cairo_status_t cs = cairo_surface_write_to_png_stream((cairo_surface_t *)user, sink_write, &k);
  if (cs != CAIRO_STATUS_SUCCESS || k.err)
    return ps_error(PS_EIO, "plot: writing the PNG failed: %s", k.err ? strerror(k.err) : cairo_status_to_string(cs));
  return PS_OK;
}

/* Atomically (ps__write_atomic): the old file or the whole new one, never a half-written plot. */
static int write_png(cairo_surface_t *surf, const char *path, int overwrite) {
  return ps__write_atomic(path, overwrite, png_fill, surf);
}

static int begin(const ps_plot_opts *o, int dw, int dh, const char *path, cairo_surface_t **surf, cairo_t **cr, double *s,
                 int *w, int *h) {
  if (!path || !*path) return ps_error(PS_EINVAL, "plot: no output path");
  *w = o && o->width ? o->width : dw;
  *h = o && o->height ? o->height : dh;
  if (*w < 200 || *h < 200 || *w > 8000 || *h > 8000)
    return ps_error(PS_EINVAL, "plot: size %dx%d for %s outside 200..8000", *w, *h, path);
  *surf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, *w, *h);
  if (cairo_surface_status(*surf) != CAIRO_STATUS_SUCCESS) {
    cairo_surface_destroy(*surf);
    return ps_error(PS_ENOMEM, "plot: cannot create a %dx%d image", *w, *h);
  }
  *cr = cairo_create(*surf);
  cairo_set_source_rgb(*cr, 1, 1, 1);
  cairo_paint(*cr);
  *s = fmin(*w, *h) / 600.0;
  if (*s < 0.6) *s = 0.6;
  cairo_set_line_join(*cr, CAIRO_LINE_JOIN_ROUND);
  return PS_OK;
}

static int finish(cairo_surface_t *surf, cairo_t *cr, const ps_plot_opts *o, const char *path) {
  cairo_status_t cs = cairo_status(cr);
  cairo_destroy(cr);
  cairo_surface_flush(surf);
  int st = cs == CAIRO_STATUS_SUCCESS ? write_png(surf, path, o && o->overwrite)
                                      : ps_error(PS_EINVAL, "plot: drawing %s failed: %s", path, cairo_status_to_string(cs));
  cairo_surface_destroy(surf);
  return st;
}

static int check_curves(const ps_plot_curve *c, int n, const char *path) {
  if (!c || n < 1 || n > 8) return ps_error(PS_EINVAL, "plot: %d curves for %s (1..8)", n, path ? path : "");
  for (int i = 0; i < n; i++)
    if (!c[i].x || !c[i].y || c[i].n < 1) return ps_error(PS_EINVAL, "plot: curve %d for %s has no points", i, path ? path : "");
  return PS_OK;
}

static double clamp01(double v) { return v < 0 ? 0 : v > 1 ? 1 : v; }

static int unit_square_curves(const ps_plot_curve *c, int n, int pr, double prevalence, const ps_plot_opts *o,
                              const char *path) {
  int st = check_curves(c, n, path);
  if (st) return st;
  cairo_surface_t *surf;
  cairo_t *cr;
  double s;
  int w, h;
  if ((st = begin(o, 800, 600, path, &surf, &cr, &s, &w, &h)) != PS_OK) return st;
  /* square plot area, centred */
  double top = 50 * s, bottom = 62 * s, left = 72 * s;
  double side = fmin(h - top - bottom, w - left - 30 * s);
  axes a = {cr, s, 0, top, 0, top + side, -0.02, 1.02, -0.02, 1.02};
  a.x0 = left + (w - left - 30 * s - side) / 2;
  a.x1 = a.x0 + side;
  double t[12], step;
  int nt = nice_ticks(0, 1, 5, t, &step);
  const char *title = o && o->title ? o->title : pr ? "Precision-recall curve" : "ROC curve";
  draw_frame(&a, title, pr ? "Recall (sensitivity)" : "False positive rate (1 - specificity)",
             pr ? "Precision (PPV)" : "True positive rate (sensitivity)", t, nt, step, t, nt, step);
  legend_entry le[9];
  char labels[9][160];
  int ne = 0;
  cairo_save(cr);
  cairo_rectangle(cr, a.x0, a.y0, a.x1 - a.x0, a.y1 - a.y0);
  cairo_clip(cr);
  static const double grey[3] = {0.45, 0.45, 0.45};
  double dash[2] = {6 * s, 4 * s};
  if (!pr || (prevalence > 0 && prevalence <= 1)) {
    cairo_set_source_rgb(cr, grey[0], grey[1], grey[2]);
    cairo_set_line_width(cr, 1.5 * s);
    cairo_set_dash(cr, dash, 2, 0);
    if (!pr) {
      cairo_move_to(cr, px(&a, 0), py(&a, 0));
      cairo_line_to(cr, px(&a, 1), py(&a, 1));
    } else {
      cairo_move_to(cr, px(&a, 0), py(&a, prevalence));
      cairo_line_to(cr, px(&a, 1), py(&a, prevalence));
    }
    cairo_stroke(cr);
    cairo_set_dash(cr, NULL, 0, 0);
  }
  for (int i = 0; i < n; i++) {
    const double *rgb = palette[i % 8];
    cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
    cairo_set_line_width(cr, 2.5 * s);
    int started = 0;
    double lastx = 0, lasty = 0;
    for (size_t k = 0; k < c[i].n; k++) {
      double x = c[i].x[k], y = c[i].y[k];
      if (!isfinite(x) || !isfinite(y)) continue;
      x = clamp01(x), y = clamp01(y);
      if (!started) {
        cairo_move_to(cr, px(&a, x), py(&a, y));
        started = 1;
      } else if (pr) { /* steps: precision holds until the next recall (sklearn drawstyle steps-post) */
        cairo_line_to(cr, px(&a, x), py(&a, lasty));
        cairo_line_to(cr, px(&a, x), py(&a, y));
      } else {
        cairo_line_to(cr, px(&a, x), py(&a, y));
      }
      lastx = x, lasty = y;
    }
    (void)lastx;
    cairo_stroke(cr);
    const char *lab = c[i].label ? c[i].label : NULL;
    char def[32];
    if (!lab) snprintf(def, sizeof def, "curve %d", i + 1), lab = def;
    if (isfinite(c[i].score))
      snprintf(labels[ne], sizeof labels[ne], "%s (%s %.3f)", lab, pr ? "AP" : "AUC", c[i].score);
    else
      snprintf(labels[ne], sizeof labels[ne], "%s", lab);
    le[ne].label = labels[ne];
    le[ne].rgb = rgb;
    le[ne].dashed = 0;
    ne++;
  }
  cairo_restore(cr);
  if (!pr || (prevalence > 0 && prevalence <= 1)) {
    if (pr) snprintf(labels[ne], sizeof labels[ne], "no skill (%.3f)", prevalence);
    else snprintf(labels[ne], sizeof labels[ne], "chance (AUC 0.500)");
    le[ne].label = labels[ne];
    le[ne].rgb = grey;
    le[ne].dashed = 1;
    ne++;
  }
  legend(&a, le, ne, pr ? 1 : 0);
  return finish(surf, cr, o, path);
}

int ps_plot_roc(const ps_plot_curve *curves, int n_curves, const ps_plot_opts *opts, const char *path) {
  return unit_square_curves(curves, n_curves, 0, 0, opts, path);
}

int ps_plot_pr(const ps_plot_curve *curves, int n_curves, double prevalence, const ps_plot_opts *opts, const char *path) {
  return unit_square_curves(curves, n_curves, 1, prevalence, opts, path);
}

int ps_plot_confusion(const int64_t *cm, int k, const char *const *class_names, const ps_plot_opts *opts, const char *path) {
  if (!cm || k < 2 || k > 8) return ps_error(PS_EINVAL, "plot: confusion matrix needs 2..8 classes, got %d", k);
  for (int i = 0; i < k * k; i++)
    if (cm[i] < 0) return ps_error(PS_EINVAL, "plot: negative count in the confusion matrix");
  cairo_surface_t *surf;
  cairo_t *cr;
  double s;
  int w, h, st;
  if ((st = begin(opts, 640, 600, path, &surf, &cr, &s, &w, &h)) != PS_OK) return st;
  const char *title = opts && opts->title ? opts->title : "Confusion matrix";
  /* room for class names on the left */
  font(cr, 13 * s, 0);
  double namew = 0;
  char defn[8][16];
  const char *names[8];
  for (int i = 0; i < k; i++) {
    snprintf(defn[i], sizeof defn[i], "class %d", i);
    names[i] = class_names && class_names[i] ? class_names[i] : defn[i];
    double tw = text_width(cr, names[i]);
    if (tw > namew) namew = tw;
  }
  double top = 60 * s, bottom = 80 * s, left = namew + 60 * s, right = 30 * s;
  double side = fmin(w - left - right, h - top - bottom);
  double gx = left + (w - left - right - side) / 2, gy = top, cell = side / k;
  int64_t total = 0;
  for (int i = 0; i < k * k; i++) total += cm[i];
  char buf[96];
  for (int r = 0; r < k; r++) {
    int64_t row = 0;
    for (int c = 0; c < k; c++) row += cm[r * k + c];
    for (int c = 0; c < k; c++) {
      double f = row > 0 ? (double)cm[r * k + c] / row : 0;
      /* matplotlib "Blues" through three of its stops: (0.97,0.98,1) (0.42,0.68,0.84) (0.03,0.19,0.42) */
      static const double stops[3][3] = {{0.969, 0.984, 1.0}, {0.420, 0.682, 0.839}, {0.031, 0.188, 0.420}};
      int seg = f < 0.5 ? 0 : 1;
      double u = f < 0.5 ? f * 2 : (f - 0.5) * 2;
      double R = stops[seg][0] + u * (stops[seg + 1][0] - stops[seg][0]);
      double G = stops[seg][1] + u * (stops[seg + 1][1] - stops[seg][1]);
      double B = stops[seg][2] + u * (stops[seg + 1][2] - stops[seg][2]);
      cairo_set_source_rgb(cr, R, G, B);
      cairo_rectangle(cr, gx + c * cell, gy + r * cell, cell, cell);
      cairo_fill(cr);
      double lum = 0.299 * R + 0.587 * G + 0.114 * B;
      if (lum < 0.5) cairo_set_source_rgb(cr, 1, 1, 1);
      else cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
      font(cr, fmin(26 * s, cell * 0.22), 1);
      snprintf(buf, sizeof buf, "%lld", (long long)cm[r * k + c]);
      text(cr, gx + (c + 0.5) * cell, gy + (r + 0.5) * cell - 2 * s, buf, 0.5, 1, 0);
      font(cr, fmin(13 * s, cell * 0.12), 0);
      snprintf(buf, sizeof buf, "%.1f%% of row", 100 * f);
      text(cr, gx + (c + 0.5) * cell, gy + (r + 0.5) * cell + 4 * s, buf, 0.5, 0, 0);
    }
  }
  /* grid */
  cairo_set_source_rgb(cr, 0.35, 0.35, 0.35);
  cairo_set_line_width(cr, 1.2 * s);
  for (int i = 0; i <= k; i++) {
    cairo_move_to(cr, gx + i * cell, gy);
    cairo_line_to(cr, gx + i * cell, gy + side);
    cairo_move_to(cr, gx, gy + i * cell);
    cairo_line_to(cr, gx + side, gy + i * cell);
  }
  cairo_stroke(cr);
  cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
  font(cr, 13 * s, 0);
  for (int i = 0; i < k; i++) {
    text(cr, gx + (i + 0.5) * cell, gy + side + 8 * s, names[i], 0.5, 0, 0);
    text(cr, gx - 8 * s, gy + (i + 0.5) * cell, names[i], 1, 0.5, 0);
  }
  font(cr, 14 * s, 1);
  text(cr, gx + side / 2, gy + side + 34 * s, "Predicted class", 0.5, 0, 0);
  text(cr, gx - namew - 24 * s, gy + side / 2, "True class", 0.5, 1, -M_PI / 2);
  font(cr, 16 * s, 1);
  text(cr, gx + side / 2, gy - 30 * s, title, 0.5, 1, 0);
  font(cr, 12 * s, 0);
  int64_t diag = 0;
  for (int i = 0; i < k; i++) diag += cm[i * k + i];
  snprintf(buf, sizeof buf, "%lld films, accuracy %.1f%%", (long long)total, total ? 100.0 * diag / total : 0.0);
  cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
  text(cr, gx + side / 2, gy - 10 * s, buf, 0.5, 1, 0);
  return finish(surf, cr, opts, path);
}

static void series(axes *a, const double *v, size_t n, const double *rgb, int dashed) {
  cairo_t *cr = a->cr;
  double s = a->s, dash[2] = {7 * s, 4 * s};
  cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
  cairo_set_line_width(cr, 2.2 * s);
  cairo_set_dash(cr, dash, dashed ? 2 : 0, 0);
  int started = 0;
  for (size_t i = 0; i < n; i++) {
    if (!isfinite(v[i])) {
      started = 0;
      continue;
    }
    double x = px(a, (double)(i + 1)), y = py(a, v[i]);
    if (!started) cairo_move_to(cr, x, y), started = 1;
    else cairo_line_to(cr, x, y);
  }
  cairo_stroke(cr);
  cairo_set_dash(cr, NULL, 0, 0);
  if (n <= 60) /* markers when they stay readable */
    for (size_t i = 0; i < n; i++)
      if (isfinite(v[i])) {
        cairo_arc(cr, px(a, (double)(i + 1)), py(a, v[i]), 3.2 * s, 0, 2 * M_PI);
        cairo_fill(cr);
      }
}

static void range_of(const double *v, size_t n, double *lo, double *hi) {
  if (!v) return;
  for (size_t i = 0; i < n; i++)
    if (isfinite(v[i])) {
      if (v[i] < *lo) *lo = v[i];
      if (v[i] > *hi) *hi = v[i];
    }
}

int ps_plot_training(const ps_plot_history *hist, const ps_plot_opts *opts, const char *path) {
  if (!hist || hist->epochs < 1 || !hist->train_loss) return ps_error(PS_EINVAL, "plot: training history needs >= 1 epoch of train loss");
  cairo_surface_t *surf;
  cairo_t *cr;
  double s;
  int w, h, st;
  if ((st = begin(opts, 1200, 500, path, &surf, &cr, &s, &w, &h)) != PS_OK) return st;
  size_t n = hist->epochs;
  int panels = hist->metric || hist->train_metric ? 2 : 1;
  const char *title = opts && opts->title ? opts->title : "Training";
  font(cr, 17 * s, 1);
  cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
  text(cr, w / 2.0, 12 * s, title, 0.5, 0, 0);
  double pw = (double)w / panels;
  for (int p = 0; p < panels; p++) {
    double lo = INFINITY, hi = -INFINITY;
    if (p == 0) {
      range_of(hist->train_loss, n, &lo, &hi);
      range_of(hist->val_loss, n, &lo, &hi);
      if (!isfinite(lo)) lo = 0, hi = 1;
      if (lo > 0 && lo < 0.5 * hi) lo = 0; /* losses read best from zero */
    } else {
      range_of(hist->metric, n, &lo, &hi);
      range_of(hist->train_metric, n, &lo, &hi);
      if (!isfinite(lo)) lo = 0, hi = 1;
      if (lo >= 0 && hi <= 1) { /* metrics in [0, 1]: show a sensible window */
        lo = fmax(0, floor(lo * 10 - 0.5) / 10);
        hi = fmin(1, ceil(hi * 10 + 0.5) / 10);
      }
    }
    if (hi - lo < 1e-9) lo -= 0.5, hi += 0.5;
    double pad = (hi - lo) * 0.05;
    double xt[12], yt[12], xstep, ystep;
    int nxt = nice_ticks(1, (double)(n > 1 ? n : 2), 8, xt, &xstep);
    if (xstep < 1) nxt = nice_ticks(1, (double)(n > 1 ? n : 2), (int)n, xt, &xstep);
    int nyt = nice_ticks(lo, hi, 6, yt, &ystep);
    axes a = {cr, s, p * pw + 80 * s, 70 * s, (p + 1) * pw - 25 * s, h - 62 * s, 1 - 0.03 * (n > 1 ? n - 1 : 1),
              (n > 1 ? n : 2) + 0.03 * (n > 1 ? n - 1 : 1), lo - pad, hi + pad};
    /* ticks outside the padded range would sit outside the frame */
    int k = 0;
    for (int i = 0; i < nyt; i++)
      if (yt[i] >= a.ymin && yt[i] <= a.ymax) yt[k++] = yt[i];
    nyt = k;
    k = 0;
    for (int i = 0; i < nxt; i++)
      if (xt[i] >= 1 && xt[i] == floor(xt[i])) xt[k++] = xt[i];
    nxt = k;
    const char *mname = hist->metric_name ? hist->metric_name : "metric";
    draw_frame(&a, p == 0 ? "Loss" : mname, "Epoch", p == 0 ? "Loss" : mname, xt, nxt, fmax(xstep, 1), yt, nyt, ystep);
    cairo_save(cr);
    cairo_rectangle(cr, a.x0, a.y0, a.x1 - a.x0, a.y1 - a.y0);
    cairo_clip(cr);
    legend_entry le[2];
    int ne = 0;
    if (p == 0) {
      series(&a, hist->train_loss, n, palette[0], 0);
      le[ne++] = (legend_entry){"train", palette[0], 0};
      if (hist->val_loss) {
        series(&a, hist->val_loss, n, palette[1], 1);
        le[ne++] = (legend_entry){"validation", palette[1], 1};
      }
    } else {
      if (hist->train_metric) {
        series(&a, hist->train_metric, n, palette[0], 0);
        le[ne++] = (legend_entry){"train", palette[0], 0};
      }
      if (hist->metric) {
        series(&a, hist->metric, n, palette[1], 1);
        le[ne++] = (legend_entry){"validation", palette[1], 1};
      }
    }
    cairo_restore(cr);
    legend(&a, le, ne, p == 0 ? 2 : 0);
  }
  return finish(surf, cr, opts, path);
}

/* The axes frame again, over bars that reach it. */
static void frame_on_top(axes *a) {
  cairo_set_source_rgb(a->cr, 0.15, 0.15, 0.15);
  cairo_set_line_width(a->cr, 1.2 * a->s);
  cairo_rectangle(a->cr, a->x0, a->y0, a->x1 - a->x0, a->y1 - a->y0);
  cairo_stroke(a->cr);
}

int ps_plot_reliability(const int64_t *count, const double *confidence, const double *accuracy, int bins, double ece,
                        const ps_plot_opts *opts, const char *path) {
  if (!count || !confidence || !accuracy) return ps_error(PS_EINVAL, "plot: reliability diagram needs counts, confidences and accuracies");
  if (bins < 1 || bins > 100) return ps_error(PS_EINVAL, "plot: reliability diagram with %d bins (1..100)", bins);
  int64_t total = 0, maxc = 0;
  for (int b = 0; b < bins; b++) {
    if (count[b] < 0) return ps_error(PS_EINVAL, "plot: negative count in reliability bin %d", b);
    if (count[b] > 0 && !(confidence[b] >= 0 && confidence[b] <= 1 && accuracy[b] >= 0 && accuracy[b] <= 1))
      return ps_error(PS_EINVAL, "plot: reliability bin %d: confidence %g / accuracy %g outside [0, 1]", b, confidence[b], accuracy[b]);
    total += count[b];
    if (count[b] > maxc) maxc = count[b];
  }
  cairo_surface_t *surf;
  cairo_t *cr;
  double s;
  int w, h, st;
  if ((st = begin(opts, 640, 720, path, &surf, &cr, &s, &w, &h)) != PS_OK) return st;
  /* the reliability panel (square) above a histogram of the films per bin, sharing the x axis */
  double top = 70 * s, bottom = 62 * s, left = 80 * s, right = 30 * s, between = 36 * s;
  double avail = h - top - bottom - between, side = fmin(avail * 0.78, w - left - right);
  double hist_h = avail - side;
  axes a = {cr, s, 0, top, 0, top + side, 0, 1, 0, 1};
  a.x0 = left + (w - left - right - side) / 2;
  a.x1 = a.x0 + side;
  double t[12], step;
  int nt = nice_ticks(0, 1, 5, t, &step);
  draw_frame(&a, NULL, NULL, "Accuracy (fraction correct)", t, nt, step, t, nt, step);
  /* title and the ECE under it */
  const char *title = opts && opts->title ? opts->title : "Reliability diagram";
  char buf[160];
  cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
  font(cr, 16 * s, 1);
  text(cr, (a.x0 + a.x1) / 2, a.y0 - 34 * s, title, 0.5, 1, 0);
  if (isfinite(ece)) snprintf(buf, sizeof buf, "ECE %.4f (%d bins), %lld films", ece, bins, (long long)total);
  else snprintf(buf, sizeof buf, "%d bins, %lld films", bins, (long long)total);
  font(cr, 12.5 * s, 0);
  cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
  text(cr, (a.x0 + a.x1) / 2, a.y0 - 12 * s, buf, 0.5, 1, 0);
  /* bars up to the accuracy, the gap to the mean confidence in translucent red, the diagonal */
  static const double gap_rgb[3] = {0.839, 0.153, 0.157}, grey[3] = {0.45, 0.45, 0.45};
  const double gap_alpha = 0.3, gap_on_white[3] = {1 - gap_alpha * (1 - gap_rgb[0]), 1 - gap_alpha * (1 - gap_rgb[1]),
                                                    1 - gap_alpha * (1 - gap_rgb[2])};
  cairo_save(cr);
  cairo_rectangle(cr, a.x0, a.y0, a.x1 - a.x0, a.y1 - a.y0);
  cairo_clip(cr);
  for (int b = 0; b < bins; b++) {
    if (count[b] == 0) continue;
    double xl = px(&a, (double)b / bins), xr = px(&a, (double)(b + 1) / bins);
    cairo_set_source_rgb(cr, palette[0][0], palette[0][1], palette[0][2]);
    cairo_rectangle(cr, xl, py(&a, accuracy[b]), xr - xl, py(&a, 0) - py(&a, accuracy[b]));
    cairo_fill(cr);
    double lo = fmin(accuracy[b], confidence[b]), hi = fmax(accuracy[b], confidence[b]);
    cairo_set_source_rgba(cr, gap_rgb[0], gap_rgb[1], gap_rgb[2], gap_alpha);
    cairo_rectangle(cr, xl, py(&a, hi), xr - xl, py(&a, lo) - py(&a, hi));
    cairo_fill(cr);
    cairo_set_source_rgb(cr, gap_rgb[0], gap_rgb[1], gap_rgb[2]); /* the mean confidence */
    cairo_set_line_width(cr, 1.5 * s);
    cairo_move_to(cr, xl, py(&a, confidence[b]));
    cairo_line_to(cr, xr, py(&a, confidence[b]));
    cairo_stroke(cr);
  }
  cairo_set_source_rgb(cr, 1, 1, 1); /* thin gaps between neighbouring bars */
  cairo_set_line_width(cr, 1.0 * s);
  for (int b = 1; b < bins; b++)
    if (count[b] > 0 || count[b - 1] > 0) {
      double x = px(&a, (double)b / bins);
      cairo_move_to(cr, x, a.y0);
      cairo_line_to(cr, x, a.y1);
    }
  cairo_stroke(cr);
  double dash[2] = {6 * s, 4 * s};
  cairo_set_source_rgb(cr, grey[0], grey[1], grey[2]);
  cairo_set_line_width(cr, 1.5 * s);
  cairo_set_dash(cr, dash, 2, 0);
  cairo_move_to(cr, px(&a, 0), py(&a, 0));
  cairo_line_to(cr, px(&a, 1), py(&a, 1));
  cairo_stroke(cr);
  cairo_set_dash(cr, NULL, 0, 0);
  cairo_restore(cr);
  frame_on_top(&a);
  legend_entry le[4] = {{"accuracy", palette[0], 2},
                        {"mean confidence", gap_rgb, 0},
                        {"gap", gap_on_white, 2},
                        {"perfect calibration", grey, 1}};
  legend(&a, le, 4, 3);
  /* films per bin */
  double ymax = 1, ht[12], hstep;
  if (maxc > 0) {
    nice_ticks(0, (double)maxc, 3, ht, &hstep);
    ymax = ceil((double)maxc / hstep - 1e-9) * hstep;
  }
  int nht = nice_ticks(0, ymax, 3, ht, &hstep);
  axes g = {cr, s, a.x0, a.y1 + between, a.x1, a.y1 + between + hist_h, 0, 1, 0, ymax};
  draw_frame(&g, NULL, "Confidence (top-label probability)", "Films", t, nt, step, ht, nht, hstep);
  cairo_save(cr);
  cairo_rectangle(cr, g.x0, g.y0, g.x1 - g.x0, g.y1 - g.y0);
  cairo_clip(cr);
  cairo_set_source_rgba(cr, palette[0][0], palette[0][1], palette[0][2], 0.55);
  for (int b = 0; b < bins; b++)
    if (count[b] > 0) {
      double xl = px(&g, (double)b / bins), xr = px(&g, (double)(b + 1) / bins);
      cairo_rectangle(cr, xl + 0.5 * s, py(&g, (double)count[b]), xr - xl - 1.0 * s, py(&g, 0) - py(&g, (double)count[b]));
    }
  cairo_fill(cr);
  cairo_restore(cr);
  frame_on_top(&g);
  return finish(surf, cr, opts, path);
}

/* The module's one export (plot_backend.map): what plot_loader.c in libpneumoscope forwards to. */
const ps_plot_backend *ps_plot_backend_v1(void) {
  static const ps_plot_backend table = {(uint32_t)sizeof(ps_plot_backend), ps_plot_confusion, ps_plot_roc, ps_plot_pr,
                                        ps_plot_reliability, ps_plot_training};
  return &table;
}
