/* engine_internal.h — the C engine's network, shared by its two kernel sets: engine.c (im2col +
 * BLAS SGEMM, the fallback) and engine_dnnl.c (oneDNN, kernels chosen from the CPU's features). */
#ifndef PS_ENGINE_INTERNAL_H
#define PS_ENGINE_INTERNAL_H

#include <stddef.h>

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
  struct ps_dnnl *dnnl;     /* oneDNN's form of the network, NULL: BLAS kernels (engine_dnnl.c) */
  int precision;            /* PS_ENGINE_FP32 or PS_ENGINE_BF16 (oneDNN only) */
};

/* Shared by both kernel sets (engine.c). Channel means of film f of an activation laid out
 * (C, nimg, hw) into out (C); logits (K) from the pooled fc input feat (512); the channels of
 * layer1..4; the offset of layer l's means in a feature row of `layers`. */
void ps__engine_pool_means(const float *a, int C, int nimg, int f, size_t hw, float *out);
void ps__engine_fc(const ps_engine *e, const float *feat, float *logits);
extern const int ps__engine_layer_ch[4];
int ps__engine_feat_off(unsigned layers, int l);
/* fn(arg + t * size) for t in [0, nt): t >= 1 on threads of their own, t = 0 on the caller's; a
 * share whose thread cannot start runs on the caller's after the others. Returns when all are done. */
void ps__engine_parallel(int nt, void *(*fn)(void *), void *arg, size_t size);

/* oneDNN (engine_dnnl.c; a build without it gets stubs that say so). */
typedef struct ps_dnnl ps_dnnl;
/* The network in oneDNN's form (BatchNorm folded into the weights), or PS_EUNSUPPORTED when
 * oneDNN is absent, disabled ($PNEUMOSCOPE_ENGINE=blas) or cannot run here. */
int ps__dnnl_create(const ps_engine *e, ps_dnnl **out);
void ps__dnnl_free(ps_dnnl *d);
/* ps_engine_forward through oneDNN (the caller holds the engine's run lock). */
int ps__dnnl_forward(ps_dnnl *d, const ps_engine *e, const float *x, int n, int h, int w, int threads, int precision,
                     float *logits, float *feats, unsigned layers, float *act4);
/* Builds the plans a ps__dnnl_forward of n films of h x w would take, without running them (the
 * caller holds the engine's run lock). */
int ps__dnnl_prepare(ps_dnnl *d, const ps_engine *e, int n, int h, int w, int threads, int precision);
/* 1 when this CPU runs bfloat16 convolutions natively (AVX512_BF16 or AMX) and oneDNN is built in. */
int ps__dnnl_bf16_native(void);
/* "oneDNN 2.6.3, kernels for avx512_core_bf16 (from the CPU's features)" or why not. */
const char *ps__dnnl_describe(void);
/* 1 when new engines run on oneDNN: built in, its CPU engine starts, and $PNEUMOSCOPE_ENGINE is not
 * "blas" (the one place that reads it). */
int ps__dnnl_enabled(void);

#endif
