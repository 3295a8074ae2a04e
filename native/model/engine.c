/* engine.c — ResNet18 eval-mode forward in C (see engine.h): building the network, and the fallback
 * kernels (im2col + cblas_sgemm) for a build without oneDNN or $PNEUMOSCOPE_ENGINE=blas; the
 * default kernels are oneDNN's (engine_dnnl.c). */
#define _GNU_SOURCE
#include <dlfcn.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "engine_internal.h"
#include "ps_model.h"

#define BN_EPS 1e-5

/* The one CBLAS routine the fallback kernels need (enum values as in every CBLAS: CblasRowMajor =
 * 101, CblasNoTrans = 111), from the BLAS library opened when those kernels are first needed
 * (PS_BLAS_SONAME, Debian's libblas.so.3: OpenBLAS with libopenblas0-pthread). Not linked: a
 * linked OpenBLAS starts its thread pool with every process, and its idle thread spun in
 * sched_yield for the first ~0.1 s, most of a one-film classify, on the oneDNN kernels too. */
typedef void (*sgemm_fn)(int order, int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                         const float *b, int ldb, float beta, float *c, int ldc);
static sgemm_fn g_sgemm;
#define ROW_MAJOR 101
#define NO_TRANS 111

/* ---- threads -------------------------------------------------------------------------------- */

/* A batch of N >= T films runs one film per thread (T = the engine's threads) with single-threaded
 * BLAS; what is left (and a single film) runs film by film with BLAS's T threads. Measured on the
 * 2-core CI machine: one film per thread wins for batches (OpenBLAS's pool spins in
 * sched_yield between GEMMs while im2col and the BatchNorm epilogue run), BLAS threads win for a
 * single film (splitting GEMM rows ourselves was slower). OpenBLAS's thread count is global, so
 * engine forwards take turns (g_run) and restore it when done (libtorch shares the library). */
static pthread_once_t g_blas_once = PTHREAD_ONCE_INIT;
static char g_blas_name[320] = "BLAS";
static void (*g_blas_set)(int);
static int (*g_blas_get)(void);
static pthread_mutex_t g_run = PTHREAD_MUTEX_INITIALIZER;

/* The vector instruction sets this CPU has and the OS enabled (cpuid + xgetbv), as a short list. */
static const char *cpu_isa(void) {
  static char out[96];
  unsigned a = 0, b = 0, c = 0, d = 0, b7 = 0, c7 = 0, d7 = 0, a71 = 0;
  out[0] = 0;
#if defined(__x86_64__) || defined(__i386__)
  if (!__get_cpuid(1, &a, &b, &c, &d)) return "unknown";
  int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1;
  unsigned long long xcr0 = 0;
  if (osxsave) {
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    xcr0 = ((unsigned long long)hi << 32) | lo;
  }
  int avx_os = (xcr0 & 6) == 6, avx512_os = avx_os && (xcr0 & 0xe0) == 0xe0, amx_os = (xcr0 & 0x60000) == 0x60000;
  if (__get_cpuid_max(0, NULL) >= 7) {
    __cpuid_count(7, 0, a, b7, c7, d7);
    __cpuid_count(7, 1, a71, b, c, d);
  }
  snprintf(out, sizeof out, "%s%s%s%s%s%s", avx_os && ((b7 >> 5) & 1) ? "avx2 " : "", avx_os && fma ? "fma " : "",
           avx512_os && ((b7 >> 16) & 1) ? "avx512f " : "", avx512_os && ((a71 >> 5) & 1) ? "avx512_bf16 " : "",
           amx_os && ((d7 >> 24) & 1) ? "amx_tile " : "", amx_os && ((d7 >> 22) & 1) ? "amx_bf16 " : "");
  size_t n = strlen(out);
  if (n) out[n - 1] = 0;
  (void)c7;
#endif
  return out[0] ? out : "no AVX2";
}

static void blas_init(void) {
  void *h = dlopen(PS_BLAS_SONAME, RTLD_NOW | RTLD_LOCAL);
  if (!h || !(g_sgemm = (sgemm_fn)dlsym(h, "cblas_sgemm"))) {
    const char *why = dlerror();
    snprintf(g_blas_name, sizeof g_blas_name, "no BLAS (%s: %s)", PS_BLAS_SONAME, why ? why : "no cblas_sgemm");
    return;
  }
  /* OpenBLAS behind libblas.so.3 (Debian's alternatives) exports these; reference BLAS does not. */
  g_blas_set = (void (*)(int))dlsym(h, "openblas_set_num_threads");
  g_blas_get = (int (*)(void))dlsym(h, "openblas_get_num_threads");
  char *(*config)(void) = (char *(*)(void))dlsym(h, "openblas_get_config");
  if (!g_blas_get) g_blas_set = NULL;
  char *(*core)(void) = (char *(*)(void))dlsym(h, "openblas_get_corename");
  /* the build's configuration ("OpenBLAS 0.3.21 ... DYNAMIC_ARCH ... Haswell": its compile target)
   * and, with DYNAMIC_ARCH, the kernel set chosen at run time for this CPU (issue 15: an unknown
   * Intel model gets "Prescott", the SSE3 fallback) */
  if (config)
    snprintf(g_blas_name, sizeof g_blas_name, "%s; kernels for %s; CPU: %s", config(), core ? core() : "?", cpu_isa());
}

const char *ps_engine_blas(void) {
  pthread_once(&g_blas_once, blas_init);
  return g_blas_name;
}

const char *ps_engine_kernels(const ps_engine *e) {
  static char buf[600];
  if (e ? e->dnnl != NULL : ps__dnnl_enabled())
    snprintf(buf, sizeof buf, "%s; CPU: %s", ps__dnnl_describe(), cpu_isa());
  else
    snprintf(buf, sizeof buf, "%s", ps_engine_blas());
  return buf;
}

int ps_engine_set_precision(ps_engine *e, int precision) {
  if (!e || (precision != PS_ENGINE_FP32 && precision != PS_ENGINE_BF16))
    return ps_error(PS_EINVAL, "engine: unknown precision %d", precision);
  if (precision == PS_ENGINE_BF16 && (!e->dnnl || !ps__dnnl_bf16_native()))
    return ps_error(PS_EUNSUPPORTED, "engine: bf16 needs oneDNN and a CPU with AVX512_BF16 or AMX (here: %s)",
                    ps_engine_kernels(e));
  e->precision = precision;
  return PS_OK;
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
  ps__dnnl_free(e->dnnl);
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
  /* oneDNN's kernels when built in and usable here, else the BLAS ones below */
  if (ps__dnnl_create(e, &e->dnnl) != PS_OK) e->dnnl = NULL;
  if (!e->dnnl && (pthread_once(&g_blas_once, blas_init), !g_sgemm)) {
    st = ps_error(PS_EUNSUPPORTED, "engine: no oneDNN kernels and %s", g_blas_name);
    goto fail;
  }
  *out = e;
  return PS_OK;
fail:
  ps_engine_free(e);
  return st;
}

/* ---- layers --------------------------------------------------------------------------------- */

static int out_size(int in, int k, int stride, int pad) { return (in + 2 * pad - k) / stride + 1; }

/* Activations of a group of nimg films are stored (C, nimg, H, W): one GEMM then covers the group
 * (N = nimg * Ho * Wo), and the weights are packed once per group instead of once per film.
 * col (Cin*k*k, nimg*Ho*Wo): row (c, ky, kx), film i holds x[c][i][oy*s - p + ky][ox*s - p + kx]
 * (0 outside). */
static void im2col(const float *x, int nimg, int H, int W, const conv *cv, int Ho, int Wo, float *col) {
  const int k = cv->k, s = cv->stride, p = cv->pad;
  const size_t hw_out = (size_t)Ho * Wo, ld = (size_t)nimg * hw_out;
  for (int r = 0; r < cv->cin * k; r++) {
    const int c = r / k, ky = r % k;
    for (int kx = 0; kx < k; kx++) {
      /* output columns whose input column ox*s - p + kx lies inside [0, W) */
      int ox0 = p - kx > 0 ? (p - kx + s - 1) / s : 0;
      int ox1 = (W - 1 + p - kx) / s + 1;
      if (ox1 > Wo) ox1 = Wo;
      if (ox0 > ox1) ox0 = ox1;
      for (int i = 0; i < nimg; i++) {
        float *row = col + ((size_t)(c * k + ky) * k + kx) * ld + (size_t)i * hw_out;
        const float *plane = x + ((size_t)c * nimg + i) * (size_t)H * W;
        for (int oy = 0; oy < Ho; oy++) {
          float *dst = row + (size_t)oy * Wo;
          int iy = oy * s - p + ky;
          if (iy < 0 || iy >= H) {
            memset(dst, 0, sizeof(float) * (size_t)Wo);
            continue;
          }
          const float *src = plane + (size_t)iy * W - p + kx;
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

/* y (Cout, nimg, Ho, Wo) = [relu](bn(conv(x)) [+ res]) for x (Cin, nimg, H, W); col is scratch of
 * Cin*k*k * nimg*Ho*Wo floats. */
static void conv_fwd(const conv *cv, const float *x, int nimg, int H, int W, float *y, float *col, const float *res,
                     int relu) {
  const int Ho = out_size(H, cv->k, cv->stride, cv->pad), Wo = out_size(W, cv->k, cv->stride, cv->pad);
  const int N = nimg * Ho * Wo, K = cv->cin * cv->k * cv->k;
  const float *B = x;
  if (!(cv->k == 1 && cv->stride == 1 && cv->pad == 0)) {
    im2col(x, nimg, H, W, cv, Ho, Wo, col);
    B = col;
  }
  g_sgemm(ROW_MAJOR, NO_TRANS, NO_TRANS, cv->cout, N, K, 1.0f, cv->w, K, B, N, 0.0f, y, N);
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

/* Films go through conv1 .. layer2 one at a time (their activations are the large ones), then
 * through layer3 .. fc together in groups of up to GROUP (small activations, large weights). */
#define GROUP 4
#define STAGE2 4 /* blocks[STAGE2..7] = layer3, layer4 */

static size_t conv_col(const conv *cv, int H, int W) {
  if (cv->k == 1 && cv->stride == 1 && cv->pad == 0) return 0;
  return (size_t)cv->cin * cv->k * cv->k * (size_t)out_size(H, cv->k, cv->stride, cv->pad) *
         (size_t)out_size(W, cv->k, cv->stride, cv->pad);
}

/* Workspace of one thread, in floats: stage 1 (one film): 4 activation buffers of act + col;
 * stage 2 (a group): 4 buffers of gact + gcol, all per film (times GROUP). */
typedef struct plan_t {
  size_t act, col, gact, gcol, total;
} plan_t;

static void plan(const ps_engine *e, int H, int W, plan_t *pl) {
  int h = out_size(H, 7, 2, 3), w = out_size(W, 7, 2, 3);
  memset(pl, 0, sizeof *pl);
  pl->act = (size_t)64 * h * w; /* conv1's output is the largest activation */
  pl->col = conv_col(&e->conv1, H, W);
  h = out_size(h, 3, 2, 1);
  w = out_size(w, 3, 2, 1);
  for (int i = 0; i < 8; i++) {
    const block *b = &e->blocks[i];
    size_t *col = i < STAGE2 ? &pl->col : &pl->gcol, c;
    if (i == STAGE2) pl->gact = (size_t)b->c1.cin * h * w; /* layer2's output: stage 2's largest */
    int h2 = out_size(h, 3, b->c1.stride, 1), w2 = out_size(w, 3, b->c1.stride, 1);
    if ((c = conv_col(&b->c1, h, w)) > *col) *col = c;
    if ((c = conv_col(&b->c2, h2, w2)) > *col) *col = c;
    if (b->has_ds && (c = conv_col(&b->ds, h, w)) > *col) *col = c;
    h = h2;
    w = w2;
  }
  pl->total = 4 * pl->act + pl->col + (size_t)GROUP * (4 * pl->gact + pl->gcol);
}

/* One residual block on a group: a (Cin, nimg, h, w) -> returned buffer (one of a, y). */
static float *block_fwd(const block *b, float *a, int nimg, int h, int w, float *t, float *d, float *y, float *col) {
  int h2 = out_size(h, 3, b->c1.stride, 1), w2 = out_size(w, 3, b->c1.stride, 1);
  conv_fwd(&b->c1, a, nimg, h, w, t, col, NULL, 1);
  const float *idn = a;
  if (b->has_ds) {
    conv_fwd(&b->ds, a, nimg, h, w, d, col, NULL, 0);
    idn = d;
  }
  conv_fwd(&b->c2, t, nimg, h2, w2, y, col, idn, 1);
  return y;
}

/* Channel means of film f of an activation laid out (C, nimg, hw) (nimg = 1: (C, hw)) into out (C). */
void ps__engine_pool_means(const float *a, int C, int nimg, int f, size_t hw, float *out) {
  for (int c = 0; c < C; c++) {
    const float *p = a + ((size_t)c * nimg + f) * hw;
    double sum = 0;
    for (size_t i = 0; i < hw; i++) sum += p[i];
    out[c] = (float)(sum / (double)hw);
  }
}

const int ps__engine_layer_ch[4] = {64, 128, 256, 512};

/* Offset of layer l's means in a feature row of `layers` (the layout of ps_model_features_layers). */
int ps__engine_feat_off(unsigned layers, int l) { return ps_model_layers_dim(layers & ((1u << l) - 1)); }

/* logits (K) of one film from its pooled fc input feat (512). */
void ps__engine_fc(const ps_engine *e, const float *feat, float *logits) {
  for (int k = 0; k < e->K; k++) {
    double sum = e->fc_b[k];
    const float *wk = e->fc_w + (size_t)k * 512;
    for (int c = 0; c < 512; c++) sum += (double)wk[c] * feat[c];
    logits[k] = (float)sum;
  }
}

/* nimg <= GROUP films x (nimg, 3, H, W) -> logits (nimg, K), in the workspace ws (plan pl). */
static void forward_group(const ps_engine *e, const float *x, int nimg, int H, int W, float *ws, const plan_t *pl,
                          float *logits, float *feats, unsigned layers, float *act4) {
  const int D = ps_model_layers_dim(layers);
  float *g[4], *gcol;
  g[0] = ws + 4 * pl->act + pl->col;
  for (int i = 1; i < 4; i++) g[i] = g[i - 1] + (size_t)GROUP * pl->gact;
  gcol = g[3] + (size_t)GROUP * pl->gact;
  int h = 0, w = 0;
  for (int f = 0; f < nimg; f++) { /* stage 1, film by film */
    float *a = ws, *t = ws + pl->act, *d = ws + 2 * pl->act, *y = ws + 3 * pl->act, *col = ws + 4 * pl->act;
    conv_fwd(&e->conv1, x + (size_t)f * 3 * H * W, 1, H, W, t, col, NULL, 1);
    h = out_size(H, 7, 2, 3);
    w = out_size(W, 7, 2, 3);
    maxpool(t, 64, h, w, a);
    h = out_size(h, 3, 2, 1);
    w = out_size(w, 3, 2, 1);
    for (int i = 0; i < STAGE2; i++) {
      const block *b = &e->blocks[i];
      float *out = block_fwd(b, a, 1, h, w, t, d, y, col);
      y = a; /* the block's input buffer is free again */
      a = out;
      h = out_size(h, 3, b->c1.stride, 1);
      w = out_size(w, 3, b->c1.stride, 1);
      if (feats && (i & 1) && (layers & (1u << (i / 2)))) /* end of layer1 / layer2 */
        ps__engine_pool_means(a, ps__engine_layer_ch[i / 2], 1, 0, (size_t)h * w,
                              feats + (size_t)f * D + ps__engine_feat_off(layers, i / 2));
    }
    const int C = e->blocks[STAGE2].c1.cin;
    const size_t hw = (size_t)h * w;
    for (int c = 0; c < C; c++) memcpy(g[0] + ((size_t)c * nimg + f) * hw, a + (size_t)c * hw, sizeof(float) * hw);
  }
  float *a = g[0], *t = g[1], *d = g[2], *y = g[3];
  for (int i = STAGE2; i < 8; i++) { /* stage 2, the group together */
    const block *b = &e->blocks[i];
    float *out = block_fwd(b, a, nimg, h, w, t, d, y, gcol);
    y = a;
    a = out;
    h = out_size(h, 3, b->c1.stride, 1);
    w = out_size(w, 3, b->c1.stride, 1);
    if (feats && (i & 1) && (layers & (1u << (i / 2)))) /* end of layer3 / layer4 */
      for (int f = 0; f < nimg; f++)
        ps__engine_pool_means(a, ps__engine_layer_ch[i / 2], nimg, f, (size_t)h * w,
                              feats + (size_t)f * D + ps__engine_feat_off(layers, i / 2));
  }
  const size_t hw = (size_t)h * w;
  if (act4) /* layer4's output per film, (512, h, w): what CAM weighs */
    for (int f = 0; f < nimg; f++)
      for (int c = 0; c < 512; c++)
        memcpy(act4 + ((size_t)f * 512 + c) * hw, a + ((size_t)c * nimg + f) * hw, sizeof(float) * hw);
  for (int f = 0; f < nimg; f++) {
    float feat[512];
    ps__engine_pool_means(a, 512, nimg, f, hw, feat);
    ps__engine_fc(e, feat, logits + (size_t)f * e->K);
  }
}

/* Films [first, last) in groups of GROUP, in one thread's workspace. */
static void forward_range(const ps_engine *e, const float *x, int first, int last, int H, int W, float *ws,
                          const plan_t *pl, float *logits, float *feats, unsigned layers, float *act4) {
  const int D = ps_model_layers_dim(layers);
  const size_t a4 = (size_t)512 * ps_engine_layer4_size(H) * ps_engine_layer4_size(W);
  for (int i = first; i < last; i += GROUP) {
    int n = last - i < GROUP ? last - i : GROUP;
    forward_group(e, x + (size_t)i * 3 * H * W, n, H, W, ws, pl, logits + (size_t)i * e->K,
                  feats ? feats + (size_t)i * D : NULL, layers, act4 ? act4 + (size_t)i * a4 : NULL);
  }
}

/* Films [0, nsolo) split into nt contiguous shares, thread t in its own workspace t. */
typedef struct fwd_job {
  const ps_engine *e;
  const float *x;
  int h, w, nt, nsolo;
  float *logits, *feats, *act4;
  unsigned layers;
  float *ws;
  plan_t pl;
} fwd_job;

typedef struct fwd_worker {
  const fwd_job *job;
  int tid;
} fwd_worker;

static void *fwd_solo(void *arg) {
  const fwd_worker *wk = arg;
  const fwd_job *j = wk->job;
  const int per = j->nsolo / j->nt;
  forward_range(j->e, j->x, wk->tid * per, (wk->tid + 1) * per, j->h, j->w, j->ws + (size_t)wk->tid * j->pl.total,
                &j->pl, j->logits, j->feats, j->layers, j->act4);
  return NULL;
}

int ps_engine_layer4_size(int in) { /* conv1 /2, max pool /2, layer2..4 /2 each (3x3 pad 1 or 1x1) */
  int s = out_size(in, 7, 2, 3);
  s = out_size(s, 3, 2, 1);
  for (int i = 0; i < 3; i++) s = out_size(s, 3, 2, 1);
  return s;
}

void ps__engine_parallel(int nt, void *(*fn)(void *), void *arg, size_t size) {
  pthread_t th[64];
  int started[64] = {0};
  if (nt > 64) nt = 64;
  for (int t = 1; t < nt; t++) started[t] = pthread_create(&th[t], NULL, fn, (char *)arg + t * size) == 0;
  fn(arg);
  for (int t = 1; t < nt; t++) {
    if (started[t]) pthread_join(th[t], NULL);
    else fn((char *)arg + t * size); /* no thread for this share: do it here */
  }
}

int ps_engine_prepare(ps_engine *e, int n, int h, int w, int threads) {
  if (!e || n < 1 || h < 32 || w < 32) return ps_error(PS_EINVAL, "engine: prepare needs N >= 1 and H, W >= 32");
  if (!e->dnnl) return PS_OK;
  pthread_mutex_lock(&g_run);
  int st = ps__dnnl_prepare(e->dnnl, e, n, h, w, threads, e->precision);
  pthread_mutex_unlock(&g_run);
  return st;
}

int ps_engine_forward(ps_engine *e, const float *x, int n, int h, int w, int threads, float *logits, float *feats,
                      unsigned layers, float *act4) {
  if (!e || !x || !logits || n < 1 || h < 32 || w < 32)
    return ps_error(PS_EINVAL, "engine: forward needs (N,3,H,W) with N >= 1 and H, W >= 32");
  if (!(layers & 15u)) feats = NULL;
  layers &= 15u;
  if (e->dnnl) { /* forwards take turns here too: each uses its threads' plans (engine_dnnl.c) */
    pthread_mutex_lock(&g_run);
    int st = ps__dnnl_forward(e->dnnl, e, x, n, h, w, threads, e->precision, logits, feats, layers, act4);
    pthread_mutex_unlock(&g_run);
    return st;
  }
  fwd_job j = {.e = e, .x = x, .h = h, .w = w, .logits = logits, .feats = feats, .layers = layers, .act4 = act4};
  plan(e, h, w, &j.pl);
  j.nt = threads > 0 ? threads : ps_default_threads();
  if (j.nt > 64) j.nt = 64;
  if (j.nt < 1) j.nt = 1;
  j.nsolo = j.nt > 1 ? n - n % j.nt : 0;
  const size_t need = (size_t)(j.nsolo > 0 ? j.nt : 1) * j.pl.total;
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
    fwd_worker wk[64];
    blas_threads(1);
    for (int t = 0; t < j.nt; t++) wk[t] = (fwd_worker){&j, t};
    ps__engine_parallel(j.nt, fwd_solo, wk, sizeof wk[0]);
  }
  if (j.nsolo < n) {
    blas_threads(j.nt);
    forward_range(e, x, j.nsolo, n, h, w, j.ws, &j.pl, logits, j.feats, j.layers, act4);
  }
  if (saved > 0) blas_threads(saved);
  pthread_mutex_unlock(&g_run);
  return PS_OK;
}
