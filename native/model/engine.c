/* engine.c — ResNet18 eval-mode forward in C over cblas_sgemm (see engine.h). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"

#define BN_EPS 1e-5

/* The one CBLAS routine the engine needs, declared here so the build needs no cblas.h (enum values
 * as in every CBLAS: CblasRowMajor = 101, CblasNoTrans = 111). */
void cblas_sgemm(int order, int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                 const float *b, int ldb, float beta, float *c, int ldc);
#define ROW_MAJOR 101
#define NO_TRANS 111

typedef struct conv {
  const float *w; /* (Cout, Cin, k, k) = GEMM A (Cout, Cin*k*k) */
  int cout, cin, k, stride, pad;
  float *s, *t;   /* (Cout) BatchNorm folded to y = conv * s + t */
} conv;

typedef struct block {
  conv c1, c2, ds;
  int has_ds;
} block;

struct ps_engine {
  conv conv1;
  block blocks[8];
  const float *fc_w, *fc_b; /* (K, 512), (K) */
  int K;
  float *ws;                /* cached workspace (used under g_run) */
  size_t ws_floats;
};

/* ---- threads -------------------------------------------------------------------------------- */

/* A batch of N >= T films runs one film per thread (T = the engine's threads) with single-threaded
 * BLAS; what is left (and a single film) runs film by film with BLAS's T threads. Measured on the
 * 2-core CI machine: one film per thread wins for batches (OpenBLAS's pool spins in
 * sched_yield between GEMMs while im2col and the BatchNorm epilogue run), BLAS threads win for a
 * single film (splitting GEMM rows ourselves was slower). OpenBLAS's thread count is global, so
 * engine forwards take turns (g_run) and restore it when done (libtorch shares the library). */
static pthread_once_t g_blas_once = PTHREAD_ONCE_INIT;
static char g_blas_name[160] = "BLAS";
static void (*g_blas_set)(int);
static int (*g_blas_get)(void);
static pthread_mutex_t g_run = PTHREAD_MUTEX_INITIALIZER;

static void blas_init(void) {
  /* OpenBLAS behind libblas.so.3 (Debian's alternatives) exports these; reference BLAS does not. */
  g_blas_set = (void (*)(int))dlsym(RTLD_DEFAULT, "openblas_set_num_threads");
  g_blas_get = (int (*)(void))dlsym(RTLD_DEFAULT, "openblas_get_num_threads");
  char *(*config)(void) = (char *(*)(void))dlsym(RTLD_DEFAULT, "openblas_get_config");
  if (!g_blas_get) g_blas_set = NULL;
  if (config) snprintf(g_blas_name, sizeof g_blas_name, "%s", config()); /* "OpenBLAS 0.3.21 ..." */
}

const char *ps_engine_blas(void) {
  pthread_once(&g_blas_once, blas_init);
  return g_blas_name;
}

static void blas_threads(int n) {
  if (g_blas_set && g_blas_get() != n) g_blas_set(n);
}

/* ---- building ------------------------------------------------------------------------------- */

static int get(ps_engine_lookup lookup, void *ctx, const char *name, const float **out) {
  *out = lookup(ctx, name);
  return *out ? PS_OK : ps_error(PS_EFORMAT, "engine: missing tensor \"%s\"", name);
}

/* conv "<prefix>.weight"-style name plus its BatchNorm "<bn>.{weight,bias,running_mean,running_var}". */
static int make_conv(ps_engine_lookup lookup, void *ctx, const char *wname, const char *bn, int cout, int cin, int k,
                     int stride, int pad, conv *c) {
  char n[64];
  const float *g, *b, *rm, *rv;
  int st;
  c->cout = cout;
  c->cin = cin;
  c->k = k;
  c->stride = stride;
  c->pad = pad;
  if ((st = get(lookup, ctx, wname, &c->w))) return st;
  snprintf(n, sizeof n, "%s.weight", bn);
  if ((st = get(lookup, ctx, n, &g))) return st;
  snprintf(n, sizeof n, "%s.bias", bn);
  if ((st = get(lookup, ctx, n, &b))) return st;
  snprintf(n, sizeof n, "%s.running_mean", bn);
  if ((st = get(lookup, ctx, n, &rm))) return st;
  snprintf(n, sizeof n, "%s.running_var", bn);
  if ((st = get(lookup, ctx, n, &rv))) return st;
  c->s = malloc(sizeof(float) * 2 * (size_t)cout);
  if (!c->s) return ps_error(PS_ENOMEM, "engine: out of memory");
  c->t = c->s + cout;
  for (int o = 0; o < cout; o++) {
    double s = (double)g[o] / sqrt((double)rv[o] + BN_EPS);
    c->s[o] = (float)s;
    c->t[o] = (float)((double)b[o] - (double)rm[o] * s);
  }
  return PS_OK;
}

void ps_engine_free(ps_engine *e) {
  if (!e) return;
  free(e->conv1.s);
  for (int i = 0; i < 8; i++) {
    free(e->blocks[i].c1.s);
    free(e->blocks[i].c2.s);
    free(e->blocks[i].ds.s);
  }
  free(e->ws);
  free(e);
}

int ps_engine_create(ps_engine_lookup lookup, void *ctx, int num_classes, ps_engine **out) {
  char w[64], bn[64];
  int st;
  if (!lookup || !out || num_classes < 1) return ps_error(PS_EINVAL, "engine: bad arguments");
  *out = NULL;
  ps_engine *e = calloc(1, sizeof *e);
  if (!e) return ps_error(PS_ENOMEM, "engine: out of memory");
  e->K = num_classes;
  if ((st = make_conv(lookup, ctx, "conv1.weight", "bn1", 64, 3, 7, 2, 3, &e->conv1))) goto fail;
  const int widths[4] = {64, 128, 256, 512};
  int in = 64;
  for (int l = 0; l < 4; l++) {
    for (int bi = 0; bi < 2; bi++) {
      block *b = &e->blocks[l * 2 + bi];
      int width = widths[l], stride = (l > 0 && bi == 0) ? 2 : 1;
      snprintf(w, sizeof w, "layer%d.%d.conv1.weight", l + 1, bi);
      snprintf(bn, sizeof bn, "layer%d.%d.bn1", l + 1, bi);
      if ((st = make_conv(lookup, ctx, w, bn, width, bi == 0 ? in : width, 3, stride, 1, &b->c1))) goto fail;
      snprintf(w, sizeof w, "layer%d.%d.conv2.weight", l + 1, bi);
      snprintf(bn, sizeof bn, "layer%d.%d.bn2", l + 1, bi);
      if ((st = make_conv(lookup, ctx, w, bn, width, width, 3, 1, 1, &b->c2))) goto fail;
      if (l > 0 && bi == 0) {
        b->has_ds = 1;
        snprintf(w, sizeof w, "layer%d.%d.downsample.0.weight", l + 1, bi);
        snprintf(bn, sizeof bn, "layer%d.%d.downsample.1", l + 1, bi);
        if ((st = make_conv(lookup, ctx, w, bn, width, in, 1, stride, 0, &b->ds))) goto fail;
      }
    }
    in = widths[l];
  }
  if ((st = get(lookup, ctx, "fc.weight", &e->fc_w)) || (st = get(lookup, ctx, "fc.bias", &e->fc_b))) goto fail;
  pthread_once(&g_blas_once, blas_init);
  *out = e;
  return PS_OK;
fail:
  ps_engine_free(e);
  return st;
}

/* ---- layers --------------------------------------------------------------------------------- */

static int out_size(int in, int k, int stride, int pad) { return (in + 2 * pad - k) / stride + 1; }

/* col (Cin*k*k, Ho*Wo): row (c, ky, kx) holds x[c][oy*s - p + ky][ox*s - p + kx] (0 outside). */
static void im2col(const float *x, int H, int W, const conv *cv, int Ho, int Wo, float *col) {
  const int k = cv->k, s = cv->stride, p = cv->pad;
  for (int r = 0; r < cv->cin * k; r++) {
    const int c = r / k, ky = r % k;
    {
      for (int kx = 0; kx < k; kx++) {
        float *row = col + ((size_t)(c * k + ky) * k + kx) * (size_t)Ho * Wo;
        /* output columns whose input column ox*s - p + kx lies inside [0, W) */
        int ox0 = p - kx > 0 ? (p - kx + s - 1) / s : 0;
        int ox1 = (W - 1 + p - kx) / s + 1;
        if (ox1 > Wo) ox1 = Wo;
        if (ox0 > ox1) ox0 = ox1;
        for (int oy = 0; oy < Ho; oy++) {
          float *dst = row + (size_t)oy * Wo;
          int iy = oy * s - p + ky;
          if (iy < 0 || iy >= H) {
            memset(dst, 0, sizeof(float) * (size_t)Wo);
            continue;
          }
          const float *src = x + ((size_t)c * H + iy) * W - p + kx;
          if (ox0 > 0) memset(dst, 0, sizeof(float) * (size_t)ox0);
          if (s == 1) {
            memcpy(dst + ox0, src + ox0, sizeof(float) * (size_t)(ox1 - ox0));
          } else {
            for (int ox = ox0; ox < ox1; ox++) dst[ox] = src[ox * s];
          }
          if (ox1 < Wo) memset(dst + ox1, 0, sizeof(float) * (size_t)(Wo - ox1));
        }
      }
    }
  }
}

/* y (Cout, Ho, Wo) = [relu](bn(conv(x)) [+ res]); col is scratch of Cin*k*k*Ho*Wo floats. */
static void conv_fwd(const conv *cv, const float *x, int H, int W, float *y, float *col, const float *res,
                     int relu) {
  const int Ho = out_size(H, cv->k, cv->stride, cv->pad), Wo = out_size(W, cv->k, cv->stride, cv->pad);
  const int N = Ho * Wo, K = cv->cin * cv->k * cv->k;
  const float *B = x;
  if (!(cv->k == 1 && cv->stride == 1 && cv->pad == 0)) {
    im2col(x, H, W, cv, Ho, Wo, col);
    B = col;
  }
  cblas_sgemm(ROW_MAJOR, NO_TRANS, NO_TRANS, cv->cout, N, K, 1.0f, cv->w, K, B, N, 0.0f, y, N);
  for (int o = 0; o < cv->cout; o++) {
    float *yo = y + (size_t)o * N;
    const float s = cv->s[o], t = cv->t[o];
    if (res) {
      const float *ro = res + (size_t)o * N;
      for (int i = 0; i < N; i++) {
        float v = yo[i] * s + t + ro[i];
        yo[i] = relu && v < 0 ? 0.0f : v;
      }
    } else {
      for (int i = 0; i < N; i++) {
        float v = yo[i] * s + t;
        yo[i] = relu && v < 0 ? 0.0f : v;
      }
    }
  }
}

/* 3x3 stride 2 pad 1 max pool (padding never wins, as in torch). */
static void maxpool(const float *x, int C, int H, int W, float *y) {
  const int Ho = out_size(H, 3, 2, 1), Wo = out_size(W, 3, 2, 1);
  for (int c = 0; c < C; c++)
    for (int oy = 0; oy < Ho; oy++)
      for (int ox = 0; ox < Wo; ox++) {
        float m = -INFINITY;
        for (int ky = 0; ky < 3; ky++) {
          int iy = oy * 2 - 1 + ky;
          if (iy < 0 || iy >= H) continue;
          for (int kx = 0; kx < 3; kx++) {
            int ix = ox * 2 - 1 + kx;
            if (ix < 0 || ix >= W) continue;
            float v = x[((size_t)c * H + iy) * W + ix];
            if (v > m || isnan(v)) m = v;
          }
        }
        y[((size_t)c * Ho + oy) * Wo + ox] = m;
      }
}

/* ---- forward -------------------------------------------------------------------------------- */

static size_t conv_col(const conv *cv, int H, int W) {
  if (cv->k == 1 && cv->stride == 1 && cv->pad == 0) return 0;
  return (size_t)cv->cin * cv->k * cv->k * (size_t)out_size(H, cv->k, cv->stride, cv->pad) *
         (size_t)out_size(W, cv->k, cv->stride, cv->pad);
}

/* Workspace for one image of H x W: 4 activation buffers of `act` floats + one im2col buffer. */
static void plan(const ps_engine *e, int H, int W, size_t *act, size_t *col) {
  int h = out_size(H, 7, 2, 3), w = out_size(W, 7, 2, 3);
  *act = (size_t)64 * h * w; /* conv1's output is the largest activation */
  *col = conv_col(&e->conv1, H, W);
  h = out_size(h, 3, 2, 1);
  w = out_size(w, 3, 2, 1);
  for (int i = 0; i < 8; i++) {
    const block *b = &e->blocks[i];
    size_t c = conv_col(&b->c1, h, w);
    if (c > *col) *col = c;
    int h2 = out_size(h, 3, b->c1.stride, 1), w2 = out_size(w, 3, b->c1.stride, 1);
    if ((c = conv_col(&b->c2, h2, w2)) > *col) *col = c;
    if (b->has_ds && (c = conv_col(&b->ds, h, w)) > *col) *col = c;
    h = h2;
    w = w2;
  }
}

/* One film through the network in the workspace ws (4 activation buffers of act floats, then the
 * im2col buffer). */
static void forward_one(const ps_engine *e, const float *x, int H, int W, float *ws, size_t act, float *logits) {
  float *a = ws, *t = ws + act, *d = ws + 2 * act, *y = ws + 3 * act, *col = ws + 4 * act;
  conv_fwd(&e->conv1, x, H, W, t, col, NULL, 1);
  int h = out_size(H, 7, 2, 3), w = out_size(W, 7, 2, 3);
  maxpool(t, 64, h, w, a);
  h = out_size(h, 3, 2, 1);
  w = out_size(w, 3, 2, 1);
  for (int i = 0; i < 8; i++) {
    const block *b = &e->blocks[i];
    int h2 = out_size(h, 3, b->c1.stride, 1), w2 = out_size(w, 3, b->c1.stride, 1);
    conv_fwd(&b->c1, a, h, w, t, col, NULL, 1);
    const float *idn = a;
    if (b->has_ds) {
      conv_fwd(&b->ds, a, h, w, d, col, NULL, 0);
      idn = d;
    }
    conv_fwd(&b->c2, t, h2, w2, y, col, idn, 1);
    float *tmp = a; /* y becomes the next block's input */
    a = y;
    y = tmp;
    h = h2;
    w = w2;
  }
  const int hw = h * w;
  float feat[512];
  for (int c = 0; c < 512; c++) {
    double sum = 0;
    for (int i = 0; i < hw; i++) sum += a[(size_t)c * hw + i];
    feat[c] = (float)(sum / hw);
  }
  for (int k = 0; k < e->K; k++) {
    double sum = e->fc_b[k];
    const float *wk = e->fc_w + (size_t)k * 512;
    for (int c = 0; c < 512; c++) sum += (double)wk[c] * feat[c];
    logits[k] = (float)sum;
  }
}

/* Films [0, nsolo) shared out one per thread, thread t in its own workspace t. */
typedef struct fwd_job {
  const ps_engine *e;
  const float *x;
  int h, w, nt, nsolo;
  float *logits;
  float *ws;
  size_t ws_floats, act;
} fwd_job;

typedef struct fwd_worker {
  const fwd_job *job;
  int tid;
} fwd_worker;

static void *fwd_solo(void *arg) {
  const fwd_worker *wk = arg;
  const fwd_job *j = wk->job;
  const size_t img = (size_t)3 * j->h * j->w;
  for (int i = wk->tid; i < j->nsolo; i += j->nt)
    forward_one(j->e, j->x + i * img, j->h, j->w, j->ws + (size_t)wk->tid * j->ws_floats, j->act,
                j->logits + (size_t)i * j->e->K);
  return NULL;
}

int ps_engine_forward(ps_engine *e, const float *x, int n, int h, int w, int threads, float *logits) {
  if (!e || !x || !logits || n < 1 || h < 32 || w < 32)
    return ps_error(PS_EINVAL, "engine: forward needs (N,3,H,W) with N >= 1 and H, W >= 32");
  fwd_job j = {.e = e, .x = x, .h = h, .w = w, .logits = logits};
  size_t col;
  plan(e, h, w, &j.act, &col);
  j.ws_floats = 4 * j.act + col;
  j.nt = threads > 0 ? threads : ps_default_threads();
  if (j.nt > 64) j.nt = 64;
  if (j.nt < 1) j.nt = 1;
  j.nsolo = j.nt > 1 ? n - n % j.nt : 0;
  const size_t need = (size_t)(j.nsolo > 0 ? j.nt : 1) * j.ws_floats;
  pthread_mutex_lock(&g_run);
  if (e->ws_floats < need) {
    free(e->ws);
    e->ws = malloc(sizeof(float) * need);
    e->ws_floats = e->ws ? need : 0;
    if (!e->ws) {
      pthread_mutex_unlock(&g_run);
      return ps_error(PS_ENOMEM, "engine: out of memory for a %dx%d forward", h, w);
    }
  }
  j.ws = e->ws;
  const int saved = g_blas_get ? g_blas_get() : 0;
  if (j.nsolo > 0) {
    pthread_t th[64];
    fwd_worker wk[64];
    int started[64] = {0};
    blas_threads(1);
    for (int t = 0; t < j.nt; t++) wk[t] = (fwd_worker){&j, t};
    for (int t = 1; t < j.nt; t++) started[t] = pthread_create(&th[t], NULL, fwd_solo, &wk[t]) == 0;
    fwd_solo(&wk[0]);
    for (int t = 1; t < j.nt; t++) {
      if (started[t]) pthread_join(th[t], NULL);
      else fwd_solo(&wk[t]); /* no thread for this share: do it here */
    }
  }
  if (j.nsolo < n) {
    blas_threads(j.nt);
    for (int i = j.nsolo; i < n; i++)
      forward_one(e, x + (size_t)i * 3 * h * w, h, w, j.ws, j.act, logits + (size_t)i * e->K);
  }
  if (saved > 0) blas_threads(saved);
  pthread_mutex_unlock(&g_run);
  return PS_OK;
}
