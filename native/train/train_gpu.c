/* Training batches built on the device (issue 8): the uint8 cache lives on the GPU, each batch is
 * gathered, augmented and normalised there. Semantics and the differences from the host path:
 * train_gpu.h. */
#define _GNU_SOURCE
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train_gpu.h"

struct ps_devbatch {
  ps_tensor *cache; /* (n, 1, S, S) uint8 on dev */
  ps_tensor *mean;  /* (1, 3, 1, 1) float on dev */
  ps_tensor *stdv;  /* (1, 3, 1, 1) float on dev */
  int n, S;
  ps_device dev;
};

int ps_devbatch_wanted(ps_device dev) {
  const char *e = getenv("PS_TRAIN_DEVICE_BATCHES");
  if (e && *e) return strcmp(e, "0") != 0;
  return dev == PS_DEVICE_CUDA;
}

void ps_devbatch_free(ps_devbatch *b) {
  if (!b) return;
  ps_tensor_free(b->cache);
  ps_tensor_free(b->mean);
  ps_tensor_free(b->stdv);
  free(b);
}

int ps_devbatch_create(ps_devbatch **out, const uint8_t *pix, int n, int S, ps_device dev) {
  if (!out) return ps_error(PS_EINVAL, "devbatch: output pointer is NULL");
  *out = NULL;
  if (!pix || n < 1 || S < 1) return ps_error(PS_EINVAL, "devbatch: empty cache (%d films of %d px)", n, S);
  ps_devbatch *b = calloc(1, sizeof *b);
  if (!b) return ps_error(PS_ENOMEM, "devbatch: out of memory");
  static const float mean[3] = PS_IMAGENET_MEAN, stdv[3] = PS_IMAGENET_STD;
  int64_t cs[4] = {n, 1, S, S}, ns[4] = {1, 3, 1, 1};
  int st;
  if ((st = ps_tensor_from_data(&b->cache, pix, PS_DTYPE_U8, cs, 4, dev)) ||
      (st = ps_tensor_from_f32(&b->mean, mean, ns, 4, dev)) || (st = ps_tensor_from_f32(&b->stdv, stdv, ns, 4, dev))) {
    ps_devbatch_free(b);
    return ps_error(st, "devbatch: uploading the %d-film cache (%.1f MB) to the device: %s", n,
                    (double)n * S * S / 1e6, ps_last_error());
  }
  b->n = n, b->S = S, b->dev = ps_tensor_device(b->cache);
  *out = b;
  return PS_OK;
}

int ps_devbatch_draw_params(const ps_augment_opts *aug, uint64_t seed, int S, ps_devbatch_draw *d) {
  if (!aug || !d || S < 1) return ps_error(PS_EINVAL, "devbatch: bad draw arguments");
  ps_augment_opts o = *aug;
  int st = ps_augment_opts_check(&o); /* the same checks and defaults as ps_augment */
  if (st) return st;
  /* the draws of ps_augment, in its order */
  ps_rng rng, crop_rng;
  ps_rng_seed(&rng, seed);
  int cx = 0, cy = 0, cw = S, ch = S;
  ps_rng_seed(&crop_rng, ps_rng_next(&rng));
  if (o.crop_scale_max > 0)
    ps_random_crop_box(&crop_rng, S, S, o.crop_scale_min, o.crop_scale_max, o.crop_ratio_min, o.crop_ratio_max, &cx, &cy,
                       &cw, &ch);
  int flip = ps_rng_uniform(&rng) < 0.5;
  double angle = ps_rng_range(&rng, -o.rotate_deg, o.rotate_deg);
  double bf = ps_rng_range(&rng, fmax(0.0, 1.0 - o.brightness), 1.0 + o.brightness);
  double cf = ps_rng_range(&rng, fmax(0.0, 1.0 - o.contrast), 1.0 + o.contrast);
  int contrast_first = ps_rng_uniform(&rng) < 0.5;

  memset(d, 0, sizeof *d);
  d->crop_x = cx, d->crop_y = cy, d->crop_w = cw, d->crop_h = ch;
  d->flip = o.hflip && flip;
  d->angle = o.rotate_deg > 0 ? angle : 0.0;
  /* output q -> rotation (ps_rotate's inverse map [c -s; s c], square so normalised coordinates
   * rotate like pixels) -> flip (x -> -x) -> crop box (x -> kx x + tx). */
  double th = d->angle * M_PI / 180.0, c = cos(th), s = sin(th);
  double f = d->flip ? -1.0 : 1.0;
  double kx = (double)cw / S, ky = (double)ch / S;
  double tx = (2.0 * cx + cw) / S - 1.0, ty = (2.0 * cy + ch) / S - 1.0;
  d->theta[0] = (float)(kx * f * c), d->theta[1] = (float)(kx * f * -s), d->theta[2] = (float)tx;
  d->theta[3] = (float)(ky * s), d->theta[4] = (float)(ky * c), d->theta[5] = (float)ty;
  /* jitter: brightness v -> b v; contrast v -> c v + (1 - c) mean(v); off -> identity */
  float bm = o.brightness > 0 ? (float)bf : 1.0f;
  float cm = o.contrast > 0 ? (float)cf : 1.0f, ck = o.contrast > 0 ? 1.0f - (float)cf : 0.0f;
  if (contrast_first) d->a_mul = cm, d->a_mean = ck, d->b_mul = bm, d->b_mean = 0.0f;
  else d->a_mul = bm, d->a_mean = 0.0f, d->b_mul = cm, d->b_mean = ck;
  return PS_OK;
}

/* v -> clamp(mul * v + k * mean(v), 0, 1) with per-film mul, k (nb, 1, 1, 1); *v replaced. */
static int jitter_stage(ps_tensor **v, const ps_tensor *mul, const ps_tensor *k, int with_mean) {
  ps_tensor *a = NULL, *m = NULL, *km = NULL, *s = NULL, *o = NULL;
  static const int64_t dims[3] = {1, 2, 3};
  int st = ps_op_mul(&a, *v, mul);
  if (!st && with_mean) {
    if (!(st = ps_op_mean(&m, *v, dims, 3, 1)) && !(st = ps_op_mul(&km, k, m))) st = ps_op_add(&s, a, km);
  }
  if (!st) st = ps_op_clamp(&o, with_mean ? s : a, 0.0, 1.0);
  ps_tensor_free(a), ps_tensor_free(m), ps_tensor_free(km), ps_tensor_free(s);
  if (st) return st;
  ps_tensor_free(*v);
  *v = o;
  return PS_OK;
}

int ps_devbatch_fill(ps_devbatch *b, const int *idx, int nb, const ps_augment_opts *aug, const uint64_t *seeds,
                     ps_tensor **x) {
  if (!x) return ps_error(PS_EINVAL, "devbatch: output pointer is NULL");
  *x = NULL;
  if (!b || !idx || nb < 1 || (aug && !seeds)) return ps_error(PS_EINVAL, "devbatch: bad batch arguments");
  const int S = b->S;
  int64_t *ii = malloc(sizeof(int64_t) * nb);
  float *theta = malloc(sizeof(float) * 6 * nb), *jit = malloc(sizeof(float) * 4 * nb);
  ps_tensor *it = NULL, *u8 = NULL, *v = NULL, *t = NULL, *th = NULL, *jt = NULL, *p[4] = {NULL, NULL, NULL, NULL};
  ps_tensor *c = NULL;
  int st = PS_OK, prev_grad = 1;
  ps_torch_set_grad_enabled(0, &prev_grad);
  if (!ii || !theta || !jit) {
    st = ps_error(PS_ENOMEM, "devbatch: out of memory");
    goto done;
  }
  for (int k = 0; k < nb; k++) {
    if (idx[k] < 0 || idx[k] >= b->n) {
      st = ps_error(PS_EINVAL, "devbatch: film index %d outside the %d-film cache", idx[k], b->n);
      goto done;
    }
    ii[k] = idx[k];
  }
  int64_t is[1] = {nb};
  if ((st = ps_tensor_from_data(&it, ii, PS_DTYPE_I64, is, 1, b->dev)) || (st = ps_op_index_select(&u8, b->cache, 0, it)) ||
      (st = ps_tensor_to(&t, u8, b->dev, PS_DTYPE_F32)) || (st = ps_op_affine(&v, t, 1.0 / 255.0, 0.0)))
    goto done;
  ps_tensor_free(t), t = NULL;
  if (aug) {
    int geometric = 0, with_mean = aug->contrast > 0;
    for (int k = 0; k < nb; k++) {
      ps_devbatch_draw d;
      if ((st = ps_devbatch_draw_params(aug, seeds[k], S, &d))) goto done;
      memcpy(theta + 6 * k, d.theta, sizeof d.theta);
      jit[0 * nb + k] = d.a_mul, jit[1 * nb + k] = d.a_mean, jit[2 * nb + k] = d.b_mul, jit[3 * nb + k] = d.b_mean;
      if (d.crop_w != S || d.crop_h != S || d.crop_x || d.crop_y || d.flip || d.angle != 0.0) geometric = 1;
    }
    if (geometric) {
      int64_t ts[3] = {nb, 2, 3};
      ps_pad_mode pad = aug->rotate_deg > 0 ? PS_PAD_ZEROS : PS_PAD_BORDER;
      if ((st = ps_tensor_from_f32(&th, theta, ts, 3, b->dev)) || (st = ps_op_affine_sample(&t, v, th, S, S, pad))) goto done;
      ps_tensor_free(v), v = t, t = NULL;
    }
    int64_t js[5] = {4, nb, 1, 1, 1};
    if ((st = ps_tensor_from_f32(&jt, jit, js, 5, b->dev))) goto done;
    for (int q = 0; q < 4; q++)
      if ((st = ps_op_select(&p[q], jt, 0, q))) goto done;
    if ((st = jitter_stage(&v, p[0], p[1], with_mean)) || (st = jitter_stage(&v, p[2], p[3], with_mean))) goto done;
  }
  /* (nb, 1, S, S) -> (nb, 3, S, S): (v - mean[c]) / std[c] by broadcasting */
  if ((st = ps_op_sub(&c, v, b->mean)) || (st = ps_op_div(x, c, b->stdv))) goto done;
done:
  ps_torch_set_grad_enabled(prev_grad, NULL);
  free(ii), free(theta), free(jit);
  ps_tensor_free(it), ps_tensor_free(u8), ps_tensor_free(v), ps_tensor_free(t), ps_tensor_free(th), ps_tensor_free(jt);
  for (int q = 0; q < 4; q++) ps_tensor_free(p[q]);
  ps_tensor_free(c);
  return st;
}
