/* Training augmentations: pure functions of a float (H, W) buffer and a seed. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ps_preprocess.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* ---- PRNG: splitmix64 seeding xoshiro256** (Blackman & Vigna, public domain) -------------- */

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void ps_rng_seed(ps_rng *r, uint64_t seed) {
  uint64_t x = seed;
  for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t ps_rng_next(ps_rng *r) {
  uint64_t *s = r->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

double ps_rng_uniform(ps_rng *r) { return (double)(ps_rng_next(r) >> 11) * 0x1.0p-53; }

double ps_rng_range(ps_rng *r, double lo, double hi) { return lo + (hi - lo) * ps_rng_uniform(r); }

int ps_rng_int(ps_rng *r, int n) {
  if (n <= 1) return 0;
  /* Lemire's nearly-divisionless method, unbiased */
  uint64_t m = (uint64_t)(uint32_t)ps_rng_next(r) * (uint64_t)n;
  uint32_t l = (uint32_t)m;
  if (l < (uint32_t)n) {
    uint32_t t = (uint32_t)(-(uint32_t)n) % (uint32_t)n;
    while (l < t) {
      m = (uint64_t)(uint32_t)ps_rng_next(r) * (uint64_t)n;
      l = (uint32_t)m;
    }
  }
  return (int)(m >> 32);
}

/* ---- building blocks ---------------------------------------------------------------------- */

static inline float clamp01(float v) { return v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v; }

void ps_adjust_brightness(float *v, size_t n, float factor) {
  /* torchvision _blend(img, zeros, factor) = (factor * img + (1 - factor) * 0).clamp(0, 1) */
  for (size_t i = 0; i < n; i++) v[i] = clamp01(factor * v[i]);
}

void ps_adjust_contrast(float *v, size_t n, float factor) {
  if (!n) return;
  double sum = 0.0;
  for (size_t i = 0; i < n; i++) sum += v[i];
  float mean = (float)(sum / (double)n);
  float b = (1.0f - factor) * mean;
  for (size_t i = 0; i < n; i++) v[i] = clamp01(factor * v[i] + b);
}

void ps_hflip(float *v, int w, int h) {
  for (int y = 0; y < h; y++) {
    float *row = v + (size_t)y * w;
    for (int a = 0, b = w - 1; a < b; a++, b--) {
      float t = row[a];
      row[a] = row[b];
      row[b] = t;
    }
  }
}

void ps_rotate(const float *src, int w, int h, double deg, float fill, float *dst) {
  /* torchvision F.rotate on a tensor: inverse affine [cos -sin; sin cos] (angle negated twice),
   * affine_grid on pixel centres, grid_sample(bilinear, zeros, align_corners=False), then the
   * sampled validity mask m blends in fill: out = v * m + (1 - m) * fill. */
  double th = deg * M_PI / 180.0;
  double c = cos(th), s = sin(th);
  double cx = (w - 1) * 0.5, cy = (h - 1) * 0.5;
  for (int i = 0; i < h; i++) {
    double y = i - cy;
    for (int j = 0; j < w; j++) {
      double x = j - cx;
      double px = c * x - s * y + cx;
      double py = s * x + c * y + cy;
      int x0 = (int)floor(px), y0 = (int)floor(py);
      double fx = px - x0, fy = py - y0;
      double val = 0.0, mask = 0.0;
      for (int dy = 0; dy < 2; dy++) {
        int yy = y0 + dy;
        if (yy < 0 || yy >= h) continue;
        double wy = dy ? fy : 1.0 - fy;
        for (int dx = 0; dx < 2; dx++) {
          int xx = x0 + dx;
          if (xx < 0 || xx >= w) continue;
          double wgt = wy * (dx ? fx : 1.0 - fx);
          val += wgt * src[(size_t)yy * w + xx];
          mask += wgt;
        }
      }
      dst[(size_t)i * w + j] = (float)(val * mask + (1.0 - mask) * fill);
    }
  }
}

void ps_random_crop_box(ps_rng *r, int w, int h, double scale_min, double scale_max, double ratio_min,
                        double ratio_max, int *x, int *y, int *cw, int *ch) {
  double area = (double)w * h;
  double lr0 = log(ratio_min), lr1 = log(ratio_max);
  for (int attempt = 0; attempt < 10; attempt++) {
    double target = area * ps_rng_range(r, scale_min, scale_max);
    double ar = exp(ps_rng_range(r, lr0, lr1));
    int tw = (int)lround(sqrt(target * ar));
    int th = (int)lround(sqrt(target / ar));
    if (tw > 0 && tw <= w && th > 0 && th <= h) {
      *y = ps_rng_int(r, h - th + 1);
      *x = ps_rng_int(r, w - tw + 1);
      *cw = tw;
      *ch = th;
      return;
    }
  }
  /* fallback: central crop */
  double in_ratio = (double)w / h;
  int tw, th;
  if (in_ratio < ratio_min) {
    tw = w;
    th = (int)lround(w / ratio_min);
  } else if (in_ratio > ratio_max) {
    th = h;
    tw = (int)lround(h * ratio_max);
  } else {
    tw = w;
    th = h;
  }
  if (tw < 1) tw = 1;
  if (th < 1) th = 1;
  if (tw > w) tw = w;
  if (th > h) th = h;
  *x = (w - tw) / 2;
  *y = (h - th) / 2;
  *cw = tw;
  *ch = th;
}

ps_augment_opts ps_augment_opts_default(void) {
  ps_augment_opts o;
  memset(&o, 0, sizeof o);
  o.crop_scale_min = 0.7;
  o.crop_scale_max = 1.0;
  o.crop_ratio_min = 3.0 / 4.0;
  o.crop_ratio_max = 4.0 / 3.0;
  o.brightness = 0.2;
  o.contrast = 0.2;
  o.hflip = 0;
  o.rotate_deg = 5.0;
  o.fill = 0.0f;
  return o;
}

int ps_augment_opts_check(ps_augment_opts *o) {
  if (!o) return ps_error(PS_EINVAL, "augment: NULL options");
  if (o->crop_scale_max > 0) {
    if (!(o->crop_scale_min > 0 && o->crop_scale_min <= o->crop_scale_max && o->crop_scale_max <= 1.0))
      return ps_error(PS_EINVAL, "augment: crop scale range [%g, %g] must lie in (0, 1]", o->crop_scale_min,
                      o->crop_scale_max);
    if (o->crop_ratio_min <= 0) o->crop_ratio_min = 3.0 / 4.0;
    if (o->crop_ratio_max <= 0) o->crop_ratio_max = 4.0 / 3.0;
    if (o->crop_ratio_min > o->crop_ratio_max)
      return ps_error(PS_EINVAL, "augment: crop ratio range [%g, %g] is empty", o->crop_ratio_min, o->crop_ratio_max);
  }
  if (o->brightness < 0 || o->contrast < 0 || o->rotate_deg < 0 || o->rotate_deg > 180)
    return ps_error(PS_EINVAL, "augment: negative jitter or rotation outside [0, 180]");
  return PS_OK;
}

int ps_augment(const float *src, int w, int h, const ps_augment_opts *opts, uint64_t seed, float *dst, int dw, int dh) {
  if (!src || !dst) return ps_error(PS_EINVAL, "augment: NULL buffer");
  if (w <= 0 || h <= 0 || dw <= 0 || dh <= 0)
    return ps_error(PS_EINVAL, "augment: invalid sizes %dx%d -> %dx%d", w, h, dw, dh);
  ps_augment_opts o;
  if (opts) o = *opts;
  else memset(&o, 0, sizeof o);
  int st = ps_augment_opts_check(&o);
  if (st) return st;

  ps_rng rng;
  ps_rng_seed(&rng, seed);
  /* The draws happen in a fixed order whatever is enabled, so turning one option on does not
   * change the others' draws for the same seed. */
  int cx = 0, cy = 0, cw = w, ch = h;
  ps_rng crop_rng;
  ps_rng_seed(&crop_rng, ps_rng_next(&rng));
  if (o.crop_scale_max > 0)
    ps_random_crop_box(&crop_rng, w, h, o.crop_scale_min, o.crop_scale_max, o.crop_ratio_min, o.crop_ratio_max, &cx,
                       &cy, &cw, &ch);
  int flip = ps_rng_uniform(&rng) < 0.5;
  double angle = ps_rng_range(&rng, -o.rotate_deg, o.rotate_deg);
  double bf = ps_rng_range(&rng, fmax(0.0, 1.0 - o.brightness), 1.0 + o.brightness);
  double cf = ps_rng_range(&rng, fmax(0.0, 1.0 - o.contrast), 1.0 + o.contrast);
  int contrast_first = ps_rng_uniform(&rng) < 0.5;

  st = ps_resize_box_f32(src, w, h, cx, cy, cx + cw, cy + ch, dst, dw, dh);
  if (st != PS_OK) return st;
  size_t n = (size_t)dw * dh;
  if (o.hflip && flip) ps_hflip(dst, dw, dh);
  if (o.rotate_deg > 0 && angle != 0.0) {
    float *tmp = malloc(n * sizeof(float));
    if (!tmp) return ps_error(PS_ENOMEM, "augment: out of memory");
    ps_rotate(dst, dw, dh, angle, o.fill, tmp);
    memcpy(dst, tmp, n * sizeof(float));
    free(tmp);
  }
  if (contrast_first && o.contrast > 0) ps_adjust_contrast(dst, n, (float)cf);
  if (o.brightness > 0) ps_adjust_brightness(dst, n, (float)bf);
  if (!contrast_first && o.contrast > 0) ps_adjust_contrast(dst, n, (float)cf);
  return PS_OK;
}
