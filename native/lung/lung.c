/* Classical lung-field segmentation; see ps_lung.h for the method. */
#include "ps_lung.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define HIST_BINS 1024
#define MAX_CAND 6

ps_lung_opts ps_lung_opts_default(void) {
  ps_lung_opts o;
  memset(&o, 0, sizeof o);
  o.work_size = 256;
  return o;
}

/* ---- small image helpers on the working grid ---------------------------------------------- */

static void downsample_area(const float *src, int w, int h, float *dst, int gw, int gh) {
  for (int oy = 0; oy < gh; oy++) {
    int y0 = (int)((int64_t)oy * h / gh), y1 = (int)((int64_t)(oy + 1) * h / gh);
    if (y1 <= y0) y1 = y0 + 1;
    for (int ox = 0; ox < gw; ox++) {
      int x0 = (int)((int64_t)ox * w / gw), x1 = (int)((int64_t)(ox + 1) * w / gw);
      if (x1 <= x0) x1 = x0 + 1;
      double s = 0;
      for (int y = y0; y < y1; y++) {
        const float *row = src + (size_t)y * w;
        for (int x = x0; x < x1; x++) s += row[x];
      }
      dst[oy * gw + ox] = (float)(s / ((double)(y1 - y0) * (x1 - x0)));
    }
  }
}

static void gaussian_blur(float *img, float *tmp, int w, int h, double sigma) {
  int r = (int)ceil(3 * sigma);
  float k[64];
  if (r > 31) r = 31;
  double ks = 0;
  for (int i = -r; i <= r; i++) ks += k[i + r] = (float)exp(-0.5 * i * i / (sigma * sigma));
  for (int i = 0; i < 2 * r + 1; i++) k[i] = (float)(k[i] / ks);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      double s = 0;
      for (int i = -r; i <= r; i++) {
        int xx = x + i < 0 ? 0 : (x + i >= w ? w - 1 : x + i);
        s += k[i + r] * img[y * w + xx];
      }
      tmp[y * w + x] = (float)s;
    }
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      double s = 0;
      for (int i = -r; i <= r; i++) {
        int yy = y + i < 0 ? 0 : (y + i >= h ? h - 1 : y + i);
        s += k[i + r] * tmp[yy * w + x];
      }
      img[y * w + x] = (float)s;
    }
}

/* Squared Euclidean distance transform (Felzenszwalb & Huttenlocher): d2[i] = squared distance
 * from pixel i to the nearest pixel with target[i] == want; pixels outside the grid count as
 * "want" when outside_is_want. Buffers: f, d (max(w,h)), v (int, max(w,h)), z (max(w,h)+1). */
static void edt1(const double *f, int n, double *d, int *v, double *z) {
  int k = 0;
  v[0] = 0;
  z[0] = -1e30, z[1] = 1e30;
  for (int q = 1; q < n; q++) {
    double sq;
    for (;;) {
      sq = ((f[q] + (double)q * q) - (f[v[k]] + (double)v[k] * v[k])) / (2.0 * q - 2.0 * v[k]);
      if (sq <= z[k] && k > 0) k--;
      else break;
    }
    if (sq <= z[k]) { /* k == 0 */
      v[0] = q;
      z[0] = -1e30, z[1] = 1e30;
      continue;
    }
    k++;
    v[k] = q, z[k] = sq, z[k + 1] = 1e30;
  }
  k = 0;
  for (int q = 0; q < n; q++) {
    while (z[k + 1] < q) k++;
    d[q] = (double)(q - v[k]) * (q - v[k]) + f[v[k]];
  }
}

/* Binary erosion (erode=1) or dilation with the disk {dx^2 + dy^2 <= r^2 + r/2}; pixels outside
 * the grid count as 1 for erosion and 0 for dilation (the border neither eats nor grows regions).
 * Exact, through the squared distance to the nearest pixel of the other value. */
static void morph(const uint8_t *in, uint8_t *out, int w, int h, int r, int erode) {
  int n = w > h ? w : h;
  double inf = 1e20;
  double *d2 = malloc((size_t)w * h * sizeof(double));
  double *f = malloc((size_t)(n + 2) * sizeof(double)), *d = malloc((size_t)(n + 2) * sizeof(double));
  double *z = malloc((size_t)(n + 3) * sizeof(double));
  int *v = malloc((size_t)(n + 2) * sizeof(int));
  if (!d2 || !f || !d || !z || !v) {
    /* out of memory: fall back to the direct loop */
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++) {
        int hit = erode;
        for (int dy = -r; dy <= r && hit == erode; dy++)
          for (int dx = -r; dx <= r; dx++) {
            if (dx * dx + dy * dy > r * r + r / 2) continue;
            int yy = y + dy, xx = x + dx;
            int val = (yy < 0 || yy >= h || xx < 0 || xx >= w) ? erode : in[yy * w + xx];
            if (val != erode) {
              hit = !erode;
              break;
            }
          }
        out[y * w + x] = (uint8_t)hit;
      }
    goto done;
  }
  /* target pixels: background (0) for erosion, foreground (1) for dilation */
  uint8_t want = erode ? 0 : 1;
  for (int y = 0; y < h; y++) {
    for (int x = 0; x < w; x++) f[x] = in[y * w + x] == want ? 0 : inf;
    edt1(f, w, d, v, z);
    for (int x = 0; x < w; x++) d2[y * w + x] = d[x];
  }
  for (int x = 0; x < w; x++) {
    for (int y = 0; y < h; y++) f[y] = d2[y * w + x];
    edt1(f, h, d, v, z);
    for (int y = 0; y < h; y++) d2[y * w + x] = d[y];
  }
  double lim = (double)r * r + r / 2;
  for (int i = 0; i < w * h; i++) out[i] = erode ? (uint8_t)(d2[i] > lim) : (uint8_t)(d2[i] <= lim);
done:
  free(d2);
  free(f);
  free(d);
  free(z);
  free(v);
}

static void open_mask(uint8_t *m, uint8_t *tmp, int w, int h, int r) {
  morph(m, tmp, w, h, r, 1);
  morph(tmp, m, w, h, r, 0);
}

static void close_mask(uint8_t *m, uint8_t *tmp, int w, int h, int r) {
  morph(m, tmp, w, h, r, 0);
  morph(tmp, m, w, h, r, 1);
}

/* Fill holes: background not reachable from the border becomes foreground. */
static int fill_holes(uint8_t *m, int w, int h) {
  int n = w * h;
  uint8_t *seen = calloc((size_t)n, 1);
  int *stack = malloc((size_t)n * sizeof(int));
  if (!seen || !stack) {
    free(seen);
    free(stack);
    return PS_ENOMEM;
  }
  int sp = 0;
  for (int x = 0; x < w; x++) {
    int a = x, b = (h - 1) * w + x;
    if (!m[a] && !seen[a]) seen[a] = 1, stack[sp++] = a;
    if (!m[b] && !seen[b]) seen[b] = 1, stack[sp++] = b;
  }
  for (int y = 0; y < h; y++) {
    int a = y * w, b = y * w + w - 1;
    if (!m[a] && !seen[a]) seen[a] = 1, stack[sp++] = a;
    if (!m[b] && !seen[b]) seen[b] = 1, stack[sp++] = b;
  }
  while (sp) {
    int i = stack[--sp], x = i % w, y = i / w;
    int nb[4] = {x > 0 ? i - 1 : -1, x < w - 1 ? i + 1 : -1, y > 0 ? i - w : -1, y < h - 1 ? i + w : -1};
    for (int k = 0; k < 4; k++)
      if (nb[k] >= 0 && !m[nb[k]] && !seen[nb[k]]) seen[nb[k]] = 1, stack[sp++] = nb[k];
  }
  for (int i = 0; i < n; i++)
    if (!m[i] && !seen[i]) m[i] = 1;
  free(seen);
  free(stack);
  return PS_OK;
}

/* ---- components ----------------------------------------------------------------------------- */

typedef struct {
  int label;
  int area;
  double cx, cy;
  int x0, y0, x1, y1; /* inclusive */
  int border;
  double solidity;
} comp;

/* 4-connected labelling; labels[] gets 1..count, 0 for background. Returns count or -1. */
static int label_components(const uint8_t *m, int *labels, int w, int h, comp **out) {
  int n = w * h, cap = 64, count = 0;
  comp *cs = malloc((size_t)cap * sizeof *cs);
  int *stack = malloc((size_t)n * sizeof(int));
  if (!cs || !stack) goto oom;
  memset(labels, 0, (size_t)n * sizeof(int));
  for (int s = 0; s < n; s++) {
    if (!m[s] || labels[s]) continue;
    if (count == cap) {
      comp *nc = realloc(cs, (size_t)(cap *= 2) * sizeof *cs);
      if (!nc) goto oom;
      cs = nc;
    }
    comp *c = &cs[count++];
    memset(c, 0, sizeof *c);
    c->label = count;
    c->x0 = w, c->y0 = h, c->x1 = -1, c->y1 = -1;
    double sx = 0, sy = 0;
    int sp = 0;
    stack[sp++] = s;
    labels[s] = count;
    while (sp) {
      int i = stack[--sp], x = i % w, y = i / w;
      c->area++;
      sx += x, sy += y;
      if (x < c->x0) c->x0 = x;
      if (x > c->x1) c->x1 = x;
      if (y < c->y0) c->y0 = y;
      if (y > c->y1) c->y1 = y;
      if (x == 0 || y == 0 || x == w - 1 || y == h - 1) c->border = 1;
      int nb[4] = {x > 0 ? i - 1 : -1, x < w - 1 ? i + 1 : -1, y > 0 ? i - w : -1, y < h - 1 ? i + w : -1};
      for (int k = 0; k < 4; k++)
        if (nb[k] >= 0 && m[nb[k]] && !labels[nb[k]]) labels[nb[k]] = count, stack[sp++] = nb[k];
    }
    c->cx = sx / c->area + 0.5;
    c->cy = sy / c->area + 0.5;
  }
  free(stack);
  *out = cs;
  return count;
oom:
  free(cs);
  free(stack);
  return -1;
}

/* ---- convex hull of a labelled region (pixel corners), monotone chain ----------------------- */

typedef struct {
  double x, y;
} pt;

static double cross(pt o, pt a, pt b) { return (a.x - o.x) * (b.y - o.y) - (a.y - o.y) * (b.x - o.x); }

static int cmp_pt(const void *a, const void *b) {
  const pt *p = a, *q = b;
  if (p->x != q->x) return p->x < q->x ? -1 : 1;
  return (p->y > q->y) - (p->y < q->y);
}

/* Hull of the region labels==lab inside bbox; pts needs room for 4*(rows)+1 points, hull for
 * twice that. Returns the hull vertex count (counter-clockwise), 0 when empty. */
static int region_hull(const int *labels, int w, const comp *c, pt *pts, pt *hull) {
  int np = 0;
  for (int y = c->y0; y <= c->y1; y++) {
    int lo = -1, hi = -1;
    for (int x = c->x0; x <= c->x1; x++)
      if (labels[y * w + x] == c->label) {
        if (lo < 0) lo = x;
        hi = x;
      }
    if (lo < 0) continue;
    pts[np++] = (pt){lo, y};
    pts[np++] = (pt){lo, y + 1};
    pts[np++] = (pt){hi + 1, y};
    pts[np++] = (pt){hi + 1, y + 1};
  }
  if (np < 3) return 0;
  qsort(pts, (size_t)np, sizeof(pt), cmp_pt);
  int k = 0;
  for (int i = 0; i < np; i++) {
    while (k >= 2 && cross(hull[k - 2], hull[k - 1], pts[i]) <= 0) k--;
    hull[k++] = pts[i];
  }
  for (int i = np - 2, t = k + 1; i >= 0; i--) {
    while (k >= t && cross(hull[k - 2], hull[k - 1], pts[i]) <= 0) k--;
    hull[k++] = pts[i];
  }
  return k - 1;
}

static double poly_area(const pt *p, int n) {
  double a = 0;
  for (int i = 0; i < n; i++) {
    int j = (i + 1) % n;
    a += p[i].x * p[j].y - p[j].x * p[i].y;
  }
  return fabs(a) / 2;
}

/* Pixels whose centre lies inside the convex (counter-clockwise) hull are set to 1. */
static void raster_hull(uint8_t *m, int w, int h, const pt *hull, int n) {
  double minx = 1e30, maxx = -1e30, miny = 1e30, maxy = -1e30;
  for (int i = 0; i < n; i++) {
    minx = fmin(minx, hull[i].x), maxx = fmax(maxx, hull[i].x);
    miny = fmin(miny, hull[i].y), maxy = fmax(maxy, hull[i].y);
  }
  int x0 = (int)floor(minx), x1 = (int)ceil(maxx), y0 = (int)floor(miny), y1 = (int)ceil(maxy);
  if (x0 < 0) x0 = 0;
  if (y0 < 0) y0 = 0;
  if (x1 > w) x1 = w;
  if (y1 > h) y1 = h;
  for (int y = y0; y < y1; y++)
    for (int x = x0; x < x1; x++) {
      pt p = {x + 0.5, y + 0.5};
      int in = 1;
      for (int i = 0; i < n && in; i++)
        if (cross(hull[i], hull[(i + 1) % n], p) < 0) in = 0;
      if (in) m[y * w + x] = 1;
    }
}

/* ---- scoring -------------------------------------------------------------------------------- */

static double position_factor(const comp *c, int gw, int gh, int mid) {
  double cy = c->cy / gh;
  double f = 1.0;
  /* a lung's inner edge lies near the midline (mediastinum); air beside the arms does not */
  double gap = (c->cx < mid ? mid - c->x1 : c->x0 - mid) / (double)gw;
  if (gap > 0.12) f *= exp(-pow((gap - 0.12) / 0.05, 2));
  if (cy < 0.2) f *= exp(-pow((0.2 - cy) / 0.08, 2));
  if (cy > 0.65) f *= exp(-pow((cy - 0.65) / 0.1, 2));
  double hfrac = (double)(c->y1 - c->y0 + 1) / gh;
  if (hfrac < 0.25) f *= hfrac / 0.25;
  double wfrac = (double)(c->x1 - c->x0 + 1) / gw;
  double aspect = hfrac * gh / (wfrac * gw);
  if (aspect < 0.9) f *= aspect / 0.9;
  return f;
}

static double pair_score(const comp *l, const comp *r, int gw, int gh, int mid) {
  double n = (double)gw * gh;
  double al = l->area / n, ar = r->area / n;
  double bal = fmin(al, ar) / fmax(al, ar);
  int oy0 = l->y0 > r->y0 ? l->y0 : r->y0, oy1 = l->y1 < r->y1 ? l->y1 : r->y1;
  int hmin = (l->y1 - l->y0) < (r->y1 - r->y0) ? (l->y1 - l->y0 + 1) : (r->y1 - r->y0 + 1);
  double vov = oy1 >= oy0 ? (double)(oy1 - oy0 + 1) / hmin : 0;
  double total = al + ar;
  double size = total > 0.45 ? 0.45 * exp(-(total - 0.45) / 0.05) : total;
  double sol = l->solidity * r->solidity;
  return pow(size, 1.5) * sqrt(bal) * vov * sol * sol * position_factor(l, gw, gh, mid) * position_factor(r, gw, gh, mid);
}

typedef struct {
  double score, t;
  int have[2];
} choice;

/* Candidates of one threshold: fills best[] (pair or single), returns its score. */
static double evaluate(const float *s, int gw, int gh, double t, int orad, int mid, uint8_t *dark, uint8_t *tmp, int *labels,
                       pt *pts, pt *hull, comp *best, int *nbest) {
  int n = gw * gh;
  for (int i = 0; i < n; i++) dark[i] = s[i] < t;
  open_mask(dark, tmp, gw, gh, orad);
  for (int y = 0; y < gh; y++) dark[y * gw + mid] = 0; /* split at the midline */
  comp *cs = NULL;
  int nc = label_components(dark, labels, gw, gh, &cs);
  if (nc < 0) return -1;
  comp side[2][MAX_CAND];
  int ns[2] = {0, 0};
  for (int i = 0; i < nc; i++) {
    comp *c = &cs[i];
    if (c->border || c->area < 0.01 * n) continue;
    if (c->cy < 0.08 * gh || c->cy > 0.85 * gh) continue;
    int sd = c->cx < mid + 0.5 ? 0 : 1;
    int hn = region_hull(labels, gw, c, pts, hull);
    double ha = hn ? poly_area(hull, hn) : 0;
    c->solidity = ha > 0 ? c->area / ha : 0;
    /* keep the MAX_CAND largest per side */
    if (ns[sd] < MAX_CAND) side[sd][ns[sd]++] = *c;
    else {
      int mi = 0;
      for (int k = 1; k < MAX_CAND; k++)
        if (side[sd][k].area < side[sd][mi].area) mi = k;
      if (side[sd][mi].area < c->area) side[sd][mi] = *c;
    }
  }
  free(cs);
  double bs = 0;
  *nbest = 0;
  for (int a = 0; a < ns[0]; a++)
    for (int b = 0; b < ns[1]; b++) {
      double sc = pair_score(&side[0][a], &side[1][b], gw, gh, mid);
      if (sc > bs) bs = sc, best[0] = side[0][a], best[1] = side[1][b], *nbest = 2;
    }
  for (int sd = 0; sd < 2; sd++)
    for (int a = 0; a < ns[sd]; a++) {
      /* one lung alone: its own size, solidity and position, heavily discounted */
      const comp *c = &side[sd][a];
      double sc = 0.25 * pow(c->area / (double)n, 1.5) * c->solidity * c->solidity * position_factor(c, gw, gh, mid);
      if (sc > bs) {
        bs = sc;
        best[0] = *c;
        *nbest = 1;
      }
    }
  return bs;
}

/* Hysteresis: each chosen lung follows its own component through the higher thresholds of the
 * ladder while it stays lung-like (not touching the border, bounded growth per step and overall,
 * solid, plausibly placed). Pediatric films often show only the darkest, lower part of a lung at
 * the threshold that scores best; this recovers the upper lobes without letting the pair leak. */
static int grow_lungs(const float *s, int gw, int gh, double bt, int rad, int mid, const double *ts, int nts,
                      const comp *best, int nbest, uint8_t **lungk, uint8_t *dark, uint8_t *tmp, int *labels, pt *pts,
                      pt *hull) {
  int n = gw * gh;
  int *count = NULL;
  comp cur[2];
  int alive[2] = {0, 0};
  for (int k = 0; k < nbest; k++) cur[k] = best[k], alive[k] = 1;
  for (int ti = 0; ti < nts; ti++) {
    if (ts[ti] <= bt) continue;
    if (!alive[0] && !alive[1]) break;
    for (int i = 0; i < n; i++) dark[i] = s[i] < ts[ti];
    open_mask(dark, tmp, gw, gh, rad);
    for (int y = 0; y < gh; y++) dark[y * gw + mid] = 0;
    comp *cs = NULL;
    int nc = label_components(dark, labels, gw, gh, &cs);
    if (nc < 0) return ps_error(PS_ENOMEM, "lung: out of memory labelling components");
    free(count);
    count = calloc((size_t)nc + 1, sizeof(int));
    if (!count) {
      free(cs);
      return ps_error(PS_ENOMEM, "lung: out of memory");
    }
    for (int k = 0; k < nbest; k++) {
      if (!alive[k]) continue;
      memset(count, 0, ((size_t)nc + 1) * sizeof(int));
      for (int i = 0; i < n; i++)
        if (lungk[k][i]) count[labels[i]]++;
      int bl = 0;
      for (int l = 1; l <= nc; l++)
        if (count[l] > count[bl] || bl == 0) bl = count[l] > 0 ? l : bl;
      if (bl == 0) {
        alive[k] = 0;
        continue;
      }
      comp c = cs[bl - 1];
      int hn = region_hull(labels, gw, &c, pts, hull);
      double ha = hn ? poly_area(hull, hn) : 0;
      c.solidity = ha > 0 ? c.area / ha : 0;
      double hfrac = (double)(c.y1 - c.y0 + 1) / gh;
      int other_side = (best[k].cx < mid + 0.5) != (c.cx < mid + 0.5);
      int ok = !c.border && !other_side && c.area <= 1.6 * cur[k].area && c.area <= 3.0 * best[k].area &&
               c.solidity >= 0.65 && c.solidity >= 0.85 * best[k].solidity && hfrac <= 0.75 &&
               c.area <= 0.30 * n && position_factor(&c, gw, gh, mid) >= 0.5;
      /* the two lungs must not merge into one component */
      for (int j = 0; j < nbest && ok; j++)
        if (j != k && alive[j]) {
          int shared = 0;
          for (int i = 0; i < n && !shared; i++) shared = lungk[j][i] && labels[i] == bl;
          if (shared) ok = 0;
        }
      if (!ok) {
        alive[k] = 0;
        continue;
      }
      /* take it only when it extends the lung vertically by more than the blur ramp (a missed
       * lobe), not when it merely thickens the edge */
      int ext = gh / 64 > 2 ? gh / 64 : 2;
      if (c.y0 >= cur[k].y0 - ext && c.y1 <= cur[k].y1 + ext) continue;
      cur[k] = c;
      for (int i = 0; i < n; i++) lungk[k][i] = labels[i] == bl;
    }
    free(cs);
  }
  free(count);
  return PS_OK;
}

int ps_lung_segment_buffer(const float *data, int width, int height, const ps_lung_opts *opts, uint8_t **mask,
                           ps_lung_info *info) {
  if (!mask) return ps_error(PS_EINVAL, "lung: NULL mask pointer");
  *mask = NULL;
  if (info) memset(info, 0, sizeof *info);
  if (!data || width <= 0 || height <= 0) return ps_error(PS_EINVAL, "lung: invalid image %dx%d", width, height);
  if (width < 16 || height < 16) return ps_error(PS_EINVAL, "lung: film too small (%dx%d) to segment", width, height);
  int work = opts && opts->work_size ? opts->work_size : 256;
  if (work < 64 || work > 1024) return ps_error(PS_EINVAL, "lung: work_size %d outside 64..1024", work);
  int no_hull = opts ? opts->no_hull : 0;

  int longside = width > height ? width : height;
  if (longside < work) work = longside;
  int gw = (int)lround((double)width * work / longside), gh = (int)lround((double)height * work / longside);
  if (gw < 16) gw = 16;
  if (gh < 16) gh = 16;
  int n = gw * gh;
  int st = PS_OK;
  float *s = malloc((size_t)n * sizeof(float)), *ftmp = malloc((size_t)n * sizeof(float));
  uint8_t *dark = malloc((size_t)n), *tmp = malloc((size_t)n), *lm = calloc((size_t)n, 1);
  uint8_t *one = malloc((size_t)n);
  int *labels = malloc((size_t)n * sizeof(int)), *hlabels = malloc((size_t)n * sizeof(int));
  pt *pts = malloc((size_t)(4 * gh + 8) * sizeof(pt)), *hull = malloc((size_t)(8 * gh + 16) * sizeof(pt));
  uint8_t *out = NULL;
  int mid = gw / 2, nbest = 0, mirrored = 0, brad = 2, nts = 0;
  double ts[40];
  uint8_t *lungk[2] = {NULL, NULL};
  static const int orads[3] = {2, 4, 6};
  double bscore = 0, bt = 0;
  comp best[2], cur[2];
  if (!s || !ftmp || !dark || !tmp || !lm || !one || !labels || !hlabels || !pts || !hull) {
    st = ps_error(PS_ENOMEM, "lung: out of memory for a %dx%d working grid", gw, gh);
    goto fail;
  }
  downsample_area(data, width, height, s, gw, gh);
  for (int i = 0; i < n; i++)
    if (!isfinite(s[i])) s[i] = 0;
  gaussian_blur(s, ftmp, gw, gh, 1.5);

  /* percentile stretch over the central 90% */
  {
    int hist[HIST_BINS] = {0}, cnt = 0;
    float lo = 1e30f, hi = -1e30f;
    for (int i = 0; i < n; i++) lo = fminf(lo, s[i]), hi = fmaxf(hi, s[i]);
    if (!(hi > lo)) goto done; /* flat film: nothing to find */
    (void)cur;
    for (int y = gh / 20; y < gh - gh / 20; y++)
      for (int x = gw / 20; x < gw - gw / 20; x++) {
        int b = (int)((s[y * gw + x] - lo) / (hi - lo) * (HIST_BINS - 1));
        hist[b]++, cnt++;
      }
    double p1 = lo, p99 = hi;
    int acc = 0, got1 = 0;
    for (int b = 0; b < HIST_BINS; b++) {
      acc += hist[b];
      if (!got1 && acc >= 0.01 * cnt) p1 = lo + (hi - lo) * b / (HIST_BINS - 1), got1 = 1;
      if (acc >= 0.99 * cnt) {
        p99 = lo + (hi - lo) * (b + 1) / (HIST_BINS - 1);
        break;
      }
    }
    if (!(p99 > p1)) p99 = p1 + 1e-6;
    for (int i = 0; i < n; i++) {
      float v = (float)((s[i] - p1) / (p99 - p1));
      s[i] = v < 0 ? 0 : (v > 1 ? 1 : v);
    }
  }

  /* midline: brightest column band in the central 30..70% over the rows 25..75% */
  {
    double *col = calloc((size_t)gw, sizeof(double));
    if (!col) {
      st = ps_error(PS_ENOMEM, "lung: out of memory");
      goto fail;
    }
    for (int y = gh / 4; y < 3 * gh / 4; y++)
      for (int x = 0; x < gw; x++) col[x] += s[y * gw + x];
    int half = gw / 40 + 1;
    double bestv = -1;
    for (int x = (int)(0.3 * gw); x <= (int)(0.7 * gw); x++) {
      double v = 0;
      for (int k = -half; k <= half; k++) v += col[x + k < 0 ? 0 : (x + k >= gw ? gw - 1 : x + k)];
      if (v > bestv) bestv = v, mid = x;
    }
    free(col);
  }

  /* threshold ladder over percentiles of the stretched central film */
  {
    float *sorted = malloc((size_t)n * sizeof(float));
    if (!sorted) {
      st = ps_error(PS_ENOMEM, "lung: out of memory");
      goto fail;
    }
    int cnt = 0;
    for (int y = gh / 20; y < gh - gh / 20; y++)
      for (int x = gw / 20; x < gw - gw / 20; x++) sorted[cnt++] = s[y * gw + x];
    /* counting sort is overkill: quantise to 4096 levels */
    int h4[4096] = {0};
    for (int i = 0; i < cnt; i++) h4[(int)(sorted[i] * 4095)]++;
    free(sorted);
    double prev_t = -1;
    for (double p = 0.05; p <= 0.701; p += 0.025) {
      int acc = 0, b = 0;
      for (; b < 4096; b++)
        if ((acc += h4[b]) >= p * cnt) break;
      double t = (b + 1) / 4095.0;
      if (t <= prev_t) continue;
      prev_t = t;
      if (nts < 40) ts[nts++] = t;
      for (int ri = 0; ri < 3; ri++) {
        int nb = 0, orad = orads[ri] * gw / 256 > 1 ? orads[ri] * gw / 256 : 1;
        double sc = evaluate(s, gw, gh, t, orad, mid, dark, tmp, labels, pts, hull, cur, &nb);
        if (sc < 0) {
          st = ps_error(PS_ENOMEM, "lung: out of memory labelling components");
          goto fail;
        }
        if (sc > bscore) {
          bscore = sc, bt = t, brad = orad, nbest = nb;
          best[0] = cur[0], best[1] = cur[1];
        }
      }
    }
  }
  if (nbest == 0) goto done;

  /* rebuild the winning threshold's labels and shape each lung */
  {
    int nb2 = 0;
    double sc = evaluate(s, gw, gh, bt, brad, mid, dark, tmp, labels, pts, hull, cur, &nb2);
    if (sc < 0) {
      st = ps_error(PS_ENOMEM, "lung: out of memory labelling components");
      goto fail;
    }
    for (int k = 0; k < nbest; k++) {
      lungk[k] = malloc((size_t)n);
      if (!lungk[k]) {
        st = ps_error(PS_ENOMEM, "lung: out of memory");
        goto fail;
      }
      for (int i = 0; i < n; i++) lungk[k][i] = labels[i] == best[k].label;
    }
    if ((st = grow_lungs(s, gw, gh, bt, brad, mid, ts, nts, best, nbest, lungk, dark, tmp, labels, pts, hull)))
      goto fail;
    for (int k = 0; k < nbest; k++) {
      memcpy(one, lungk[k], (size_t)n);
      close_mask(one, tmp, gw, gh, 3);
      if ((st = fill_holes(one, gw, gh)) != PS_OK) {
        ps_error(st, "lung: out of memory filling holes");
        goto fail;
      }
      if (!no_hull) {
        /* hull over the shaped region (relabel it as a single component) */
        comp c = best[k];
        c.x0 = gw, c.y0 = gh, c.x1 = -1, c.y1 = -1;
        for (int i = 0; i < n; i++) {
          hlabels[i] = one[i] ? c.label : 0;
          if (one[i]) {
            int x = i % gw, y = i / gw;
            if (x < c.x0) c.x0 = x;
            if (x > c.x1) c.x1 = x;
            if (y < c.y0) c.y0 = y;
            if (y > c.y1) c.y1 = y;
          }
        }
        if (c.x1 >= 0) {
          int hn = region_hull(hlabels, gw, &c, pts, hull);
          if (hn >= 3) raster_hull(one, gw, gh, hull, hn);
        }
      }
      for (int i = 0; i < n; i++)
        if (one[i]) lm[i] = 1;
    }
    if (nbest == 1 && !(opts && opts->no_mirror)) {
      /* one lung found (the other is usually opacified): mirror it across the midline */
      memset(one, 0, (size_t)n);
      for (int y = 0; y < gh; y++)
        for (int x = 0; x < gw; x++) {
          int xm = 2 * mid - x;
          if (xm >= 0 && xm < gw && lm[y * gw + x] && xm != x) one[y * gw + xm] = 1;
        }
      for (int i = 0; i < n; i++) lm[i] |= one[i];
      mirrored = 1;
    }
  }

done:
  out = calloc((size_t)width * height, 1);
  if (!out) {
    st = ps_error(PS_ENOMEM, "lung: out of memory for a %dx%d mask", width, height);
    goto fail;
  }
  if (nbest > 0) {
    /* bilinear upsampling of the 0/1 grid mask, threshold 0.5 */
    for (int y = 0; y < height; y++) {
      double fy = (y + 0.5) * gh / height - 0.5;
      int y0 = (int)floor(fy);
      double wy = fy - y0;
      int ya = y0 < 0 ? 0 : (y0 >= gh ? gh - 1 : y0), yb = y0 + 1 >= gh ? gh - 1 : (y0 + 1 < 0 ? 0 : y0 + 1);
      for (int x = 0; x < width; x++) {
        double fx = (x + 0.5) * gw / width - 0.5;
        int x0 = (int)floor(fx);
        double wx = fx - x0;
        int xa = x0 < 0 ? 0 : (x0 >= gw ? gw - 1 : x0), xb = x0 + 1 >= gw ? gw - 1 : (x0 + 1 < 0 ? 0 : x0 + 1);
        double v = (1 - wy) * ((1 - wx) * lm[ya * gw + xa] + wx * lm[ya * gw + xb]) +
                   wy * ((1 - wx) * lm[yb * gw + xa] + wx * lm[yb * gw + xb]);
        out[(size_t)y * width + x] = v >= 0.5;
      }
    }
  }
  if (info) {
    info->midline_x = (mid + 0.5) / gw;
    info->threshold = nbest ? bt : 0;
    info->score = nbest ? bscore : 0;
    size_t tot = 0;
    double sx[2] = {0, 0}, sy[2] = {0, 0};
    size_t cnt[2] = {0, 0};
    int bx0[2] = {width, width}, by0[2] = {height, height}, bx1[2] = {-1, -1}, by1[2] = {-1, -1};
    double midx = info->midline_x * width;
    for (int y = 0; y < height; y++)
      for (int x = 0; x < width; x++)
        if (out[(size_t)y * width + x]) {
          int sd = x + 0.5 < midx ? 0 : 1;
          tot++, cnt[sd]++, sx[sd] += x + 0.5, sy[sd] += y + 0.5;
          if (x < bx0[sd]) bx0[sd] = x;
          if (x > bx1[sd]) bx1[sd] = x;
          if (y < by0[sd]) by0[sd] = y;
          if (y > by1[sd]) by1[sd] = y;
        }
    double N = (double)width * height;
    info->area_fraction = tot / N;
    for (int sd = 0; sd < 2; sd++) {
      if (!cnt[sd]) continue;
      info->lungs++;
      info->area[sd] = cnt[sd] / N;
      info->centroid_x[sd] = sx[sd] / cnt[sd] / width;
      info->centroid_y[sd] = sy[sd] / cnt[sd] / height;
      info->bbox[sd][0] = (double)bx0[sd] / width;
      info->bbox[sd][1] = (double)by0[sd] / height;
      info->bbox[sd][2] = (double)(bx1[sd] + 1) / width;
      info->bbox[sd][3] = (double)(by1[sd] + 1) / height;
    }
    info->lungs_found = nbest;
    info->mirrored = mirrored;
  }
  *mask = out;
  out = NULL;
  st = PS_OK;
fail:
  free(s);
  free(ftmp);
  free(dark);
  free(tmp);
  free(lm);
  free(one);
  free(labels);
  free(hlabels);
  free(lungk[0]);
  free(lungk[1]);
  free(pts);
  free(hull);
  free(out);
  return st;
}

int ps_lung_segment(const ps_image *img, const ps_lung_opts *opts, uint8_t **mask, ps_lung_info *info) {
  if (mask) *mask = NULL;
  if (!img || !img->data) return ps_error(PS_EINVAL, "lung: NULL image");
  if (img->is_raw)
    return ps_error(PS_EINVAL, "lung: the film holds raw modality values; read it display-ready (not raw)");
  return ps_lung_segment_buffer(img->data, img->width, img->height, opts, mask, info);
}
