/* engine_dnnl.c — the C engine's ResNet18 forward through oneDNN (Debian's libdnnl 2.6, the
 * library under PyTorch's CPU convolutions). oneDNN generates its kernels at run time from the CPU's
 * feature flags (cpuid: SSE4.1, AVX2, AVX-512, AVX512_BF16, AMX), whatever the CPU model, where
 * OpenBLAS 0.3.21 picks them from a table of models and falls back to SSE3 on one it does not know
 * (issue 15).
 *
 * The network runs in oneDNN's own blocked layout from conv1 to layer4 (nChw16c with AVX-512,
 * nChw8c with AVX2: chosen by oneDNN), with BatchNorm folded into each convolution's weights and
 * bias, ReLU and the residual add fused into the convolutions as post-ops (the block's
 * second convolution accumulates onto its identity in place), so no activation is copied between
 * layers. Only the outputs a caller asks for (layer means, layer4's maps) are reordered back to
 * plain NCHW float32. A plan (primitives and activation buffers) is built per (N, H, W, precision)
 * and kept; the weights are reordered once per layout oneDNN asks for.
 *
 * Precision: float32 by default (logits within 1e-4 of torchvision, tested); bfloat16 weights and
 * activations with float32 accumulation on request (PS_ENGINE_BF16), run natively on AVX512_BF16
 * or AMX and refused elsewhere.
 */
#define _GNU_SOURCE
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "engine_internal.h"
#include "ps_internal.h"
#include "ps_model.h"

#ifndef PS_HAVE_DNNL

int ps__dnnl_create(const ps_engine *e, ps_dnnl **out) {
  (void)e;
  *out = NULL;
  return PS_EUNSUPPORTED;
}
void ps__dnnl_free(ps_dnnl *d) { (void)d; }
int ps__dnnl_forward(ps_dnnl *d, const ps_engine *e, const float *x, int n, int h, int w, int threads, int precision,
                     float *logits, float *feats, unsigned layers, float *act4) {
  (void)d, (void)e, (void)x, (void)n, (void)h, (void)w, (void)threads, (void)precision, (void)logits, (void)feats,
      (void)layers, (void)act4;
  return ps_error(PS_EUNSUPPORTED, "engine: built without oneDNN");
}
int ps__dnnl_prepare(ps_dnnl *d, const ps_engine *e, int n, int h, int w, int threads, int precision) {
  (void)d, (void)e, (void)n, (void)h, (void)w, (void)threads, (void)precision;
  return PS_OK;
}
const char *ps__dnnl_describe(void) { return "oneDNN not built in"; }
int ps__dnnl_enabled(void) { return 0; }
int ps__dnnl_bf16_native(void) { return 0; }

#else

#include <omp.h>
#include <oneapi/dnnl/dnnl.h>

#define NCONV 25 /* conv1, then per block c1, c2, ds (ds only in blocks 2, 4, 6; else NULL) */
#define MAX_THREADS 64
#define MAX_PLANS (2 * MAX_THREADS + 4) /* a chunk plan and a tail plan per thread, and a few more */
/* Films per oneDNN forward: a larger batch goes through in chunks of CHUNK (the last one shorter),
 * so activations stay small (about 6 MB a film at 224 px) and a thread needs two plans. Measured on
 * the 651-film folder (2 threads): chunks of 2 vs 4, 9.5 s vs 9.3 s, peak RSS 215 MB vs 257 MB. */
#define CHUNK 2

/* One convolution's folded weights in one layout oneDNN asked for (kept for the engine's life). */
typedef struct wlayout {
  dnnl_memory_desc_t md;
  dnnl_memory_t mem;
  void *data; /* ps__big_alloc of bytes */
  size_t bytes;
  struct wlayout *next;
} wlayout;

typedef struct dconv {
  const conv *cv;
  dnnl_memory_t bias;
  wlayout *layouts;
} dconv;

/* One primitive and its arguments. */
typedef struct step {
  dnnl_primitive_t p;
  dnnl_exec_arg_t args[5];
  int nargs;
  dnnl_memory_t scratch; /* over plan.scratch once it is allocated, or NULL */
} step;

typedef struct plan {
  int n, h, w, precision, tid; /* tid: the forward thread that runs it (its own buffers and stream) */
  int busy;                     /* running in a forward now: never freed or reused meanwhile */
  dnnl_stream_t stream;
  unsigned long long used;
  void *buf[3];             /* activation buffers, oneDNN layout (ps__big_alloc of buf_bytes[i]) */
  size_t buf_bytes[3], plain_bytes;
  void *scratch;            /* one scratchpad shared by the convolutions (they run one at a time) */
  size_t scratch_bytes;
  dnnl_memory_t mems[64];   /* every memory object the steps name (freed with the plan) */
  int nmems;
  step in;                  /* x (N,3,H,W) f32 -> conv1's source (bf16: converted), or p = NULL */
  dnnl_memory_t x_user;     /* handle set per call */
  step net[2 + NCONV];      /* conv1, pool, then the blocks' convolutions */
  int nnet;
  int after_block[8];       /* net[] index after which block i's output is complete */
  step out[4];              /* layer l's output -> plain NCHW float32 in plain[] */
  float *plain;             /* (N, C, h, w) of the largest layer output */
  int oh[4], ow[4];         /* layer l's output size */
} plan;

struct ps_dnnl {
  pthread_mutex_t mu; /* plans[], tick and the weight layouts, while forward threads look them up */
  dconv c[NCONV];
  plan *plans[MAX_PLANS];
  unsigned long long tick;
};

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static dnnl_engine_t g_eng;
static dnnl_stream_t g_stream;
static int g_ok;
static char g_describe[256] = "oneDNN";

static const char *isa_name(dnnl_cpu_isa_t isa) {
  switch (isa) {
  case dnnl_cpu_isa_sse41: return "sse41";
  case dnnl_cpu_isa_avx: return "avx";
  case dnnl_cpu_isa_avx2: return "avx2";
  case dnnl_cpu_isa_avx512_mic: return "avx512_mic";
  case dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic_4ops";
  case dnnl_cpu_isa_avx512_core: return "avx512_core";
  case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
  case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
  case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
  case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
  default: return "no JIT (reference kernels)";
  }
}

static void init_once(void) {
  if (dnnl_engine_create(&g_eng, dnnl_cpu, 0) != dnnl_success) return;
  if (dnnl_stream_create(&g_stream, g_eng, dnnl_stream_default_flags) != dnnl_success) return;
  const dnnl_version_t *v = dnnl_version();
  snprintf(g_describe, sizeof g_describe, "oneDNN %d.%d.%d, kernels for %s (from the CPU's features)", v->major,
           v->minor, v->patch, isa_name(dnnl_get_effective_cpu_isa()));
  g_ok = 1;
}

const char *ps__dnnl_describe(void) {
  pthread_once(&g_once, init_once);
  return g_describe;
}

int ps__dnnl_bf16_native(void) {
  pthread_once(&g_once, init_once);
  dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
  return g_ok && (isa == dnnl_cpu_isa_avx512_core_bf16 || isa == dnnl_cpu_isa_avx512_core_amx);
}

#define CK(call)                                                                                                      \
  do {                                                                                                                \
    dnnl_status_t s_ = (call);                                                                                        \
    if (s_ != dnnl_success) {                                                                                         \
      st = ps_error(s_ == dnnl_out_of_memory ? PS_ENOMEM : PS_EUNSUPPORTED, "engine: oneDNN %s failed (status %d)",   \
                    #call, (int)s_);                                                                                  \
      goto fail;                                                                                                      \
    }                                                                                                                 \
  } while (0)

static const conv *conv_at(const ps_engine *e, int i) {
  if (i == 0) return &e->conv1;
  const block *b = &e->blocks[(i - 1) / 3];
  switch ((i - 1) % 3) {
  case 0: return &b->c1;
  case 1: return &b->c2;
  default: return b->has_ds ? &b->ds : NULL;
  }
}

void ps__dnnl_free(ps_dnnl *d);

int ps__dnnl_enabled(void) {
  const char *env = getenv("PNEUMOSCOPE_ENGINE");
  if (env && !strcmp(env, "blas")) return 0; /* the BLAS kernels, asked for */
  pthread_once(&g_once, init_once);
  return g_ok;
}

int ps__dnnl_create(const ps_engine *e, ps_dnnl **out) {
  int st = PS_OK;
  *out = NULL;
  if (!ps__dnnl_enabled()) return PS_EUNSUPPORTED;
  ps_dnnl *d = calloc(1, sizeof *d);
  if (!d) return ps_error(PS_ENOMEM, "engine: out of memory");
  pthread_mutex_init(&d->mu, NULL);
  for (int i = 0; i < NCONV; i++) {
    const conv *cv = conv_at(e, i);
    d->c[i].cv = cv;
    if (!cv) continue;
    dnnl_memory_desc_t bmd;
    const dnnl_dims_t bd = {cv->cout};
    CK(dnnl_memory_desc_init_by_tag(&bmd, 1, bd, dnnl_f32, dnnl_x));
    CK(dnnl_memory_create(&d->c[i].bias, &bmd, g_eng, (void *)cv->t));
  }
  *out = d;
  return PS_OK;
fail:
  ps__dnnl_free(d);
  return st;
}

static void plan_free(plan *p) {
  if (!p) return;
  if (p->in.p) dnnl_primitive_destroy(p->in.p);
  for (int i = 0; i < p->nnet; i++) dnnl_primitive_destroy(p->net[i].p);
  for (int l = 0; l < 4; l++)
    if (p->out[l].p) dnnl_primitive_destroy(p->out[l].p);
  for (int i = 0; i < p->nmems; i++) dnnl_memory_destroy(p->mems[i]);
  if (p->x_user) dnnl_memory_destroy(p->x_user);
  if (p->stream) dnnl_stream_destroy(p->stream);
  for (int i = 0; i < 3; i++) ps__big_free(p->buf[i], p->buf_bytes[i]);
  ps__big_free(p->plain, p->plain_bytes);
  free(p->scratch);
  free(p);
}

void ps__dnnl_free(ps_dnnl *d) {
  if (!d) return;
  for (int i = 0; i < MAX_PLANS; i++) plan_free(d->plans[i]);
  for (int i = 0; i < NCONV; i++) {
    if (d->c[i].bias) dnnl_memory_destroy(d->c[i].bias);
    for (wlayout *l = d->c[i].layouts, *nx; l; l = nx) {
      nx = l->next;
      dnnl_memory_destroy(l->mem);
      ps__big_free(l->data, l->bytes);
      free(l);
    }
  }
  pthread_mutex_destroy(&d->mu);
  free(d);
}

/* A memory object of plan p over handle h (NULL: set later), owned by the plan. */
static int plan_mem(plan *p, const dnnl_memory_desc_t *md, void *h, dnnl_memory_t *out) {
  if (p->nmems >= (int)(sizeof p->mems / sizeof p->mems[0])) return ps_error(PS_ELIMIT, "engine: plan too large");
  dnnl_status_t s = dnnl_memory_create(out, md, g_eng, h ? h : DNNL_MEMORY_NONE);
  if (s != dnnl_success) return ps_error(PS_ENOMEM, "engine: oneDNN memory (status %d)", (int)s);
  p->mems[p->nmems++] = *out;
  return PS_OK;
}

/* A memory object over activation buffer bi, which must hold md (a layout with more padding than
 * act_bytes allows for is refused, never overrun). */
static int buf_mem(plan *p, const dnnl_memory_desc_t *md, int bi, dnnl_memory_t *out) {
  if (dnnl_memory_desc_get_size(md) > p->buf_bytes[bi])
    return ps_error(PS_EUNSUPPORTED, "engine: oneDNN chose a layout larger than the plan's buffers");
  return plan_mem(p, md, p->buf[bi], out);
}

/* Conv c's weights in layout md, on first need: the model's float32 weights times the BatchNorm
 * scale of their output channel, in one reorder (per-channel output scales). */
/* Folded weights straight into OIhw16i16o (oneDNN's ABcd16b16a: 16x16 blocks of (input, output)
 * channels, output fastest), the layout its AVX-512 fp32 convolutions ask for: one pass, where
 * oneDNN's generic scaled reorder took 90 ms for ResNet18 (most of a one-film process). The same
 * float products as that reorder: w * s rounded once. Returns 0 when md is not that layout. */
static int fold_oihw16i16o(const conv *cv, const dnnl_memory_desc_t *md, float *dst) {
  const int O = cv->cout, I = cv->cin, K = cv->k * cv->k;
  dnnl_memory_desc_t want;
  const dnnl_dims_t wd = {O, I, cv->k, cv->k};
  if (O % 16 || I % 16 || dnnl_memory_desc_init_by_tag(&want, 4, wd, dnnl_f32, dnnl_OIhw16i16o) != dnnl_success ||
      !dnnl_memory_desc_equal(&want, md))
    return 0;
  for (int ob = 0; ob < O / 16; ob++)
    for (int ib = 0; ib < I / 16; ib++)
      for (int s = 0; s < K; s++) {
        float *d = dst + (((size_t)ob * (I / 16) + ib) * K + s) * 256;
        for (int o = 0; o < 16; o++) {
          const float *w = cv->w + ((size_t)(ob * 16 + o) * I + ib * 16) * K + s;
          const float so = cv->s[ob * 16 + o];
          for (int i = 0; i < 16; i++) d[i * 16 + o] = w[(size_t)i * K] * so;
        }
      }
  return 1;
}

static int weights_in(dconv *c, const dnnl_memory_desc_t *md, dnnl_memory_t *out) {
  int st = PS_OK;
  dnnl_memory_t src = NULL;
  dnnl_primitive_desc_t rpd = NULL;
  dnnl_primitive_t r = NULL;
  dnnl_primitive_attr_t attr = NULL;
  for (wlayout *l = c->layouts; l; l = l->next)
    if (dnnl_memory_desc_equal(&l->md, md)) {
      *out = l->mem;
      return PS_OK;
    }
  wlayout *l = calloc(1, sizeof *l);
  if (!l) return ps_error(PS_ENOMEM, "engine: out of memory");
  l->md = *md;
  dnnl_memory_desc_t plain;
  const dnnl_dims_t wd = {c->cv->cout, c->cv->cin, c->cv->k, c->cv->k};
  CK(dnnl_memory_desc_init_by_tag(&plain, 4, wd, dnnl_f32, dnnl_oihw));
  CK(dnnl_memory_create(&src, &plain, g_eng, (void *)c->cv->w));
  l->bytes = dnnl_memory_desc_get_size(md);
  if (!(l->data = ps__big_alloc(l->bytes))) {
    st = ps_error(PS_ENOMEM, "engine: out of memory");
    goto fail;
  }
  CK(dnnl_memory_create(&l->mem, md, g_eng, l->data));
  if (fold_oihw16i16o(c->cv, md, l->data)) goto done;
  CK(dnnl_primitive_attr_create(&attr));
  CK(dnnl_primitive_attr_set_output_scales(attr, c->cv->cout, 1 /* dimension 0: O */, c->cv->s));
  CK(dnnl_reorder_primitive_desc_create(&rpd, &plain, g_eng, md, g_eng, attr));
  CK(dnnl_primitive_create(&r, rpd));
  dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, l->mem}};
  CK(dnnl_primitive_execute(r, g_stream, 2, args));
  CK(dnnl_stream_wait(g_stream));
done:
  l->next = c->layouts;
  c->layouts = l;
  *out = l->mem;
  l = NULL;
fail:
  if (l) {
    if (l->mem) dnnl_memory_destroy(l->mem);
    ps__big_free(l->data, l->bytes);
    free(l);
  }
  if (r) dnnl_primitive_destroy(r);
  if (attr) dnnl_primitive_attr_destroy(attr);
  if (rpd) dnnl_primitive_desc_destroy(rpd);
  if (src) dnnl_memory_destroy(src);
  return st;
}

/* The step's scratchpad (user mode: one buffer for the plan, allocated when the plan is complete). */
static int add_scratch(plan *p, step *s, const_dnnl_primitive_desc_t pd) {
  const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
  const size_t need = md ? dnnl_memory_desc_get_size(md) : 0;
  if (!need) return PS_OK;
  int st = plan_mem(p, md, NULL, &s->scratch);
  if (st) return st;
  s->args[s->nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, s->scratch};
  if (need > p->scratch_bytes) p->scratch_bytes = need;
  return PS_OK;
}

/* A convolution step: src (layout src_md, in buffer sb; -1: the caller's x) -> dst (buffer db, layout dst_md; any when
 * dst_md is NULL, and *dst_out gets the chosen one), fused ReLU and/or sum onto dst. */
static int add_conv(ps_dnnl *d, plan *p, int ci, dnnl_data_type_t dt, const dnnl_memory_desc_t *src_md, int sb,
                    const dnnl_memory_desc_t *dst_md, int db, int sum, int relu, dnnl_memory_desc_t *dst_out, int h,
                    int w) {
  int st = PS_OK;
  const conv *cv = d->c[ci].cv;
  dnnl_primitive_desc_t pd = NULL;
  dnnl_primitive_attr_t attr = NULL;
  dnnl_post_ops_t po = NULL;
  dnnl_memory_desc_t wmd, bmd, dmd;
  const int ho = (h + 2 * cv->pad - cv->k) / cv->stride + 1, wo = (w + 2 * cv->pad - cv->k) / cv->stride + 1;
  const dnnl_dims_t wd = {cv->cout, cv->cin, cv->k, cv->k}, bd = {cv->cout}, dd = {p->n, cv->cout, ho, wo};
  const dnnl_dims_t strides = {cv->stride, cv->stride}, pad = {cv->pad, cv->pad};
  CK(dnnl_memory_desc_init_by_tag(&wmd, 4, wd, dt, dnnl_format_tag_any));
  CK(dnnl_memory_desc_init_by_tag(&bmd, 1, bd, dnnl_f32, dnnl_x));
  if (dst_md) dmd = *dst_md;
  else CK(dnnl_memory_desc_init_by_tag(&dmd, 4, dd, dt, dnnl_format_tag_any));
  dnnl_convolution_desc_t cd;
  CK(dnnl_convolution_forward_desc_init(&cd, dnnl_forward_inference, dnnl_convolution_direct, src_md, &wmd, &bmd,
                                        &dmd, strides, pad, pad));
  CK(dnnl_post_ops_create(&po));
  if (sum) CK(dnnl_post_ops_append_sum(po, 1.0f));
  if (relu) CK(dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f));
  CK(dnnl_primitive_attr_create(&attr));
  CK(dnnl_primitive_attr_set_post_ops(attr, po));
  CK(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
  CK(dnnl_primitive_desc_create(&pd, &cd, attr, g_eng, NULL));
  const dnnl_memory_desc_t *wq = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
  const dnnl_memory_desc_t *dq = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
  dnnl_memory_t wm = NULL, sm = NULL, dm = NULL;
  if ((st = weights_in(&d->c[ci], wq, &wm))) goto fail;
  if (sb < 0) sm = p->x_user; /* the caller's x: its handle is set per call */
  else if ((st = buf_mem(p, src_md, sb, &sm))) goto fail;
  if ((st = buf_mem(p, dq, db, &dm))) goto fail;
  step *s = &p->net[p->nnet];
  CK(dnnl_primitive_create(&s->p, pd));
  p->nnet++;
  s->args[0] = (dnnl_exec_arg_t){DNNL_ARG_SRC, sm};
  s->args[1] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, wm};
  s->args[2] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, d->c[ci].bias};
  s->args[3] = (dnnl_exec_arg_t){DNNL_ARG_DST, dm};
  s->nargs = 4;
  if ((st = add_scratch(p, s, pd))) goto fail;
  *dst_out = *dq;
fail:
  if (pd) dnnl_primitive_desc_destroy(pd);
  if (attr) dnnl_primitive_attr_destroy(attr);
  if (po) dnnl_post_ops_destroy(po);
  return st;
}

/* Bytes of conv1's output (buffer 0) and of the largest later activation (max pool's output; buffers
 * 1 and 2, which also hold a bfloat16 copy of the input), with room for layout padding. */
static size_t act_bytes(int n, int h, int w, dnnl_data_type_t dt, int later) {
  int h1 = (h + 6 - 7) / 2 + 1, w1 = (w + 6 - 7) / 2 + 1;
  if (later) h1 = (h1 + 2 - 3) / 2 + 1, w1 = (w1 + 2 - 3) / 2 + 1;
  return ((size_t)n * 64 * h1 * w1 * (dt == dnnl_f32 ? 4 : 2) + 4096 + 63) / 64 * 64;
}

static int plan_build(ps_dnnl *d, int n, int h, int w, int precision, int tid, plan **out) {
  int st = PS_OK;
  dnnl_primitive_desc_t pd = NULL;
  dnnl_primitive_attr_t pattr = NULL;
  const dnnl_data_type_t dt = precision == PS_ENGINE_BF16 ? dnnl_bf16 : dnnl_f32;
  plan *p = calloc(1, sizeof *p);
  if (!p) return ps_error(PS_ENOMEM, "engine: out of memory");
  p->n = n, p->h = h, p->w = w, p->precision = precision, p->tid = tid;
  CK(dnnl_stream_create(&p->stream, g_eng, dnnl_stream_default_flags));
  const size_t bytes = act_bytes(n, h, w, dt, 1);
  for (int i = 0; i < 3; i++)
    if (!(p->buf[i] = ps__big_alloc(p->buf_bytes[i] = act_bytes(n, h, w, dt, i > 0)))) {
      st = ps_error(PS_ENOMEM, "engine: out of memory for a %dx%d batch of %d", w, h, n);
      goto fail;
    }
  /* the caller's x, then conv1's source: float32 NCHW as given, or converted to bfloat16 */
  dnnl_memory_desc_t xmd, smd, cur, dmd;
  const dnnl_dims_t xd = {n, 3, h, w};
  CK(dnnl_memory_desc_init_by_tag(&xmd, 4, xd, dnnl_f32, dnnl_nchw));
  CK(dnnl_memory_create(&p->x_user, &xmd, g_eng, DNNL_MEMORY_NONE));
  int xb = -1; /* conv1's source: -1 = the caller's x */
  if (dt != dnnl_f32) {
    CK(dnnl_memory_desc_init_by_tag(&smd, 4, xd, dt, dnnl_nchw));
    if ((size_t)n * 3 * h * w * 2 > bytes) {
      st = ps_error(PS_ELIMIT, "engine: input larger than the plan's buffers");
      goto fail;
    }
    dnnl_memory_t sm;
    if ((st = buf_mem(p, &smd, 1, &sm))) goto fail;
    CK(dnnl_reorder_primitive_desc_create(&pd, &xmd, g_eng, &smd, g_eng, NULL));
    CK(dnnl_primitive_create(&p->in.p, pd));
    dnnl_primitive_desc_destroy(pd);
    pd = NULL;
    p->in.args[0] = (dnnl_exec_arg_t){DNNL_ARG_FROM, p->x_user};
    p->in.args[1] = (dnnl_exec_arg_t){DNNL_ARG_TO, sm};
    p->in.nargs = 2;
    xb = 1;
  } else {
    smd = xmd;
  }
  /* conv1 (+ReLU) -> buf 0; its source memory is the caller's x or buf 1 */
  if ((st = add_conv(d, p, 0, dt, &smd, xb, NULL, 0, 0, 1, &cur, h, w))) goto fail;
  int hh = (h + 6 - 7) / 2 + 1, ww = (w + 6 - 7) / 2 + 1;
  /* max pool 3/2 pad 1 -> buf 1 (padding never wins, as in torch) */
  {
    const int ho = (hh + 2 - 3) / 2 + 1, wo = (ww + 2 - 3) / 2 + 1;
    const dnnl_dims_t pdd = {n, 64, ho, wo}, k = {3, 3}, s2 = {2, 2}, p1 = {1, 1};
    dnnl_memory_desc_t pmd;
    CK(dnnl_memory_desc_init_by_tag(&pmd, 4, pdd, dt, dnnl_format_tag_any));
    dnnl_pooling_desc_t pool;
    CK(dnnl_pooling_forward_desc_init(&pool, dnnl_forward_inference, dnnl_pooling_max, &cur, &pmd, s2, k, p1, p1));
    CK(dnnl_primitive_attr_create(&pattr));
    CK(dnnl_primitive_attr_set_scratchpad_mode(pattr, dnnl_scratchpad_mode_user));
    CK(dnnl_primitive_desc_create(&pd, &pool, pattr, g_eng, NULL));
    const dnnl_memory_desc_t *dq = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    dnnl_memory_t sm, dm;
    if ((st = buf_mem(p, &cur, 0, &sm)) || (st = buf_mem(p, dq, 1, &dm))) goto fail;
    step *s = &p->net[p->nnet];
    CK(dnnl_primitive_create(&s->p, pd));
    p->nnet++;
    s->args[0] = (dnnl_exec_arg_t){DNNL_ARG_SRC, sm};
    s->args[1] = (dnnl_exec_arg_t){DNNL_ARG_DST, dm};
    s->nargs = 2;
    if ((st = add_scratch(p, s, pd))) goto fail;
    cur = *dq;
    dnnl_primitive_desc_destroy(pd);
    pd = NULL;
    hh = ho, ww = wo;
  }
  /* the blocks: a = input buffer; c1 a -> t (+ReLU); ds a -> u; c2 t -> (u or a) += (+ReLU) */
  int a = 1;
  for (int b = 0; b < 8; b++) {
    const int t = (a + 1) % 3, u = (a + 2) % 3, has_ds = d->c[3 + 3 * b].cv != NULL;
    const conv *c1 = d->c[1 + 3 * b].cv;
    dnnl_memory_desc_t tmd, idmd = cur;
    int idb = a;
    if ((st = add_conv(d, p, 1 + 3 * b, dt, &cur, a, NULL, t, 0, 1, &tmd, hh, ww))) goto fail;
    if (has_ds) {
      if ((st = add_conv(d, p, 3 + 3 * b, dt, &cur, a, NULL, u, 0, 0, &idmd, hh, ww))) goto fail;
      idb = u;
    }
    const int h2 = (hh + 2 - 3) / c1->stride + 1, w2 = (ww + 2 - 3) / c1->stride + 1;
    if ((st = add_conv(d, p, 2 + 3 * b, dt, &tmd, t, &idmd, idb, 1, 1, &dmd, h2, w2))) goto fail;
    cur = dmd;
    a = idb;
    hh = h2, ww = w2;
    p->after_block[b] = p->nnet;
    if (b & 1) { /* end of layer b/2: a reorder to plain NCHW float32, run when asked for */
      const int l = b / 2, C = ps__engine_layer_ch[l];
      p->oh[l] = hh, p->ow[l] = ww;
      if (l == 0) {
        /* layer1's output is the largest: the plain buffer holds it (and any later one) */
        p->plain = ps__big_alloc(p->plain_bytes = (size_t)n * C * hh * ww * sizeof(float));
        if (!p->plain) {
          st = ps_error(PS_ENOMEM, "engine: out of memory");
          goto fail;
        }
      }
      dnnl_memory_desc_t omd;
      const dnnl_dims_t od = {n, C, hh, ww};
      CK(dnnl_memory_desc_init_by_tag(&omd, 4, od, dnnl_f32, dnnl_nchw));
      dnnl_memory_t sm, dm;
      if ((st = buf_mem(p, &cur, a, &sm)) || (st = plan_mem(p, &omd, p->plain, &dm))) goto fail;
      CK(dnnl_reorder_primitive_desc_create(&pd, &cur, g_eng, &omd, g_eng, NULL));
      CK(dnnl_primitive_create(&p->out[l].p, pd));
      dnnl_primitive_desc_destroy(pd);
      pd = NULL;
      p->out[l].args[0] = (dnnl_exec_arg_t){DNNL_ARG_FROM, sm};
      p->out[l].args[1] = (dnnl_exec_arg_t){DNNL_ARG_TO, dm};
      p->out[l].nargs = 2;
    }
  }
  if (p->scratch_bytes) {
    if (!(p->scratch = aligned_alloc(64, (p->scratch_bytes + 63) / 64 * 64))) {
      st = ps_error(PS_ENOMEM, "engine: out of memory");
      goto fail;
    }
    for (int i = 0; i < p->nnet; i++)
      if (p->net[i].scratch) CK(dnnl_memory_set_data_handle(p->net[i].scratch, p->scratch));
  }
  dnnl_primitive_attr_destroy(pattr);
  *out = p;
  return PS_OK;
fail:
  if (pd) dnnl_primitive_desc_destroy(pd);
  if (pattr) dnnl_primitive_attr_destroy(pattr);
  plan_free(p);
  return st;
}

static int run(const plan *p, const step *s) {
  dnnl_status_t r = dnnl_primitive_execute(s->p, p->stream, s->nargs, s->args);
  return r == dnnl_success ? PS_OK : ps_error(PS_EUNSUPPORTED, "engine: oneDNN execute failed (status %d)", (int)r);
}

/* The plan of thread tid for (n, h, w, precision), built on first need, marked busy until
 * plan_put; to make room, an empty slot or else the least recently used plan that is not busy. */
static int plan_get(ps_dnnl *d, int n, int h, int w, int precision, int tid, plan **out) {
  int st = PS_OK, slot = -1;
  plan *p = NULL;
  pthread_mutex_lock(&d->mu);
  for (int i = 0; i < MAX_PLANS && !p; i++) {
    plan *q = d->plans[i];
    if (q && !q->busy && q->n == n && q->h == h && q->w == w && q->precision == precision && q->tid == tid) p = q;
    else if (!q) slot = slot >= 0 && !d->plans[slot] ? slot : i;
    else if (!q->busy && (slot < 0 || (d->plans[slot] && q->used < d->plans[slot]->used))) slot = i;
  }
  if (!p && slot < 0) st = ps_error(PS_ELIMIT, "engine: every oneDNN plan is in use");
  if (!p && !st && !(st = plan_build(d, n, h, w, precision, tid, &p))) {
    plan_free(d->plans[slot]);
    d->plans[slot] = p;
  }
  if (p) p->used = ++d->tick, p->busy = 1;
  pthread_mutex_unlock(&d->mu);
  *out = p;
  return st;
}

static void plan_put(ps_dnnl *d, plan *p) {
  pthread_mutex_lock(&d->mu);
  p->busy = 0;
  pthread_mutex_unlock(&d->mu);
}

static int run_plan(plan *p, const ps_engine *e, const float *x, int n, float *logits, float *feats, unsigned layers,
                    float *act4);

static int forward_chunk(ps_dnnl *d, const ps_engine *e, int tid, const float *x, int n, int h, int w, int precision,
                         float *logits, float *feats, unsigned layers, float *act4) {
  plan *p = NULL;
  int st = plan_get(d, n, h, w, precision, tid, &p);
  if (st) return st;
  st = run_plan(p, e, x, n, logits, feats, layers, act4);
  plan_put(d, p);
  return st;
}

/* x (n, 3, h, w) through plan p (built for that shape) -> logits, and the asked-for outputs. */
static int run_plan(plan *p, const ps_engine *e, const float *x, int n, float *logits, float *feats, unsigned layers,
                    float *act4) {
  int st = PS_OK;
  if (dnnl_memory_set_data_handle(p->x_user, (void *)x) != dnnl_success)
    return ps_error(PS_EUNSUPPORTED, "engine: oneDNN could not take the input");
  if (p->in.p && (st = run(p, &p->in))) return st;
  const int D = ps_model_layers_dim(layers);
  int k = 0;
  for (int b = 0; b < 8; b++) {
    for (; k < p->after_block[b]; k++)
      if ((st = run(p, &p->net[k]))) return st;
    if (!(b & 1)) continue;
    const int l = b / 2;
    const int want = (feats && (layers & (1u << l))) || l == 3;
    if (!want) continue;
    if ((st = run(p, &p->out[l]))) return st;
    if (dnnl_stream_wait(p->stream) != dnnl_success) return ps_error(PS_EUNSUPPORTED, "engine: oneDNN stream failed");
    const int C = ps__engine_layer_ch[l];
    const size_t hw = (size_t)p->oh[l] * p->ow[l];
    for (int f = 0; f < n; f++) {
      const float *a = p->plain + (size_t)f * C * hw;
      if (feats && (layers & (1u << l)))
        ps__engine_pool_means(a, C, 1, 0, hw, feats + (size_t)f * D + ps__engine_feat_off(layers, l));
      if (l == 3) {
        float feat[512];
        ps__engine_pool_means(a, 512, 1, 0, hw, feat);
        ps__engine_fc(e, feat, logits + (size_t)f * e->K);
        if (act4) memcpy(act4 + (size_t)f * C * hw, a, sizeof(float) * C * hw);
      }
    }
  }
  return PS_OK;
}

/* Films [first, last) of a forward, in chunks, on one thread's plans. */
typedef struct fwd_share {
  ps_dnnl *d;
  const ps_engine *e;
  const float *x;
  int first, last, h, w, precision, tid, omp_threads;
  float *logits, *feats, *act4;
  unsigned layers;
  int prepare; /* only build the plans the forward will take (no input, no outputs) */
  int st;
  char err[512];
} fwd_share;

static void *run_share(void *arg) {
  fwd_share *s = arg;
  const int D = ps_model_layers_dim(s->layers);
  const size_t img = (size_t)3 * s->h * s->w, a4 = (size_t)512 * ps_engine_layer4_size(s->h) * ps_engine_layer4_size(s->w);
  omp_set_num_threads(s->omp_threads);
  for (int i = s->first; i < s->last && !s->st; i += CHUNK) {
    const int m = s->last - i < CHUNK ? s->last - i : CHUNK;
    if (s->prepare) {
      plan *p = NULL;
      if (!(s->st = plan_get(s->d, m, s->h, s->w, s->precision, s->tid, &p))) plan_put(s->d, p);
      continue;
    }
    s->st = forward_chunk(s->d, s->e, s->tid, s->x + i * img, m, s->h, s->w, s->precision, s->logits + (size_t)i * s->e->K,
                          s->feats ? s->feats + (size_t)i * D : NULL, s->layers, s->act4 ? s->act4 + i * a4 : NULL);
  }
  if (s->st) snprintf(s->err, sizeof s->err, "%s", ps_last_error());
  return NULL;
}

/* One film runs on all the threads inside oneDNN's primitives (OpenMP); a batch is shared out one
 * contiguous share per thread, each single-threaded on its own plans, as the BLAS kernels do: no
 * OpenMP barrier between threads, so decoding threads running beside the forward (ps_infer_run)
 * or a busy machine do not stall every layer. prepare: the same shares and chunks, plans only. */
static int shares(ps_dnnl *d, const ps_engine *e, const float *x, int n, int h, int w, int threads, int precision,
                  float *logits, float *feats, unsigned layers, float *act4, int prepare) {
  if (precision == PS_ENGINE_BF16 && !ps__dnnl_bf16_native())
    return ps_error(PS_EUNSUPPORTED, "engine: bfloat16 needs a CPU with AVX512_BF16 or AMX (this one: %s)",
                    ps__dnnl_describe());
  int nt = threads > 0 ? threads : ps_default_threads();
  if (nt > MAX_THREADS) nt = MAX_THREADS;
  if (nt > n) nt = n;
  fwd_share sh[MAX_THREADS];
  for (int t = 0; t < nt; t++)
    sh[t] = (fwd_share){.d = d, .e = e, .x = x, .first = (int)((int64_t)n * t / nt), .last = (int)((int64_t)n * (t + 1) / nt),
                        .h = h, .w = w, .precision = precision, .tid = nt > 1 ? t + 1 : 0,
                        .omp_threads = nt > 1 ? 1 : (threads > 0 ? threads : ps_default_threads()), .logits = logits,
                        .feats = feats, .act4 = act4, .layers = layers, .prepare = prepare};
  ps__engine_parallel(nt, run_share, sh, sizeof sh[0]);
  omp_set_num_threads(threads > 0 ? threads : ps_default_threads());
  for (int t = 0; t < nt; t++)
    if (sh[t].st) return ps_error(sh[t].st, "%s", sh[t].err);
  return PS_OK;
}

int ps__dnnl_forward(ps_dnnl *d, const ps_engine *e, const float *x, int n, int h, int w, int threads, int precision,
                     float *logits, float *feats, unsigned layers, float *act4) {
  return shares(d, e, x, n, h, w, threads, precision, logits, feats, layers, act4, 0);
}

int ps__dnnl_prepare(ps_dnnl *d, const ps_engine *e, int n, int h, int w, int threads, int precision) {
  return shares(d, e, NULL, n, h, w, threads, precision, NULL, NULL, 0, NULL, 1);
}

#endif
