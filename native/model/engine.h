/* engine.h — internal (not installed): ResNet18 inference on the CPU in C, without libtorch, on
 * oneDNN's kernels (chosen from the CPU's feature flags: engine_dnnl.c) or, without oneDNN or with
 * $PNEUMOSCOPE_ENGINE=blas, im2col + BLAS SGEMM (engine.c). What ps_model_predict runs on the CPU for a model that was
 * loaded from a file and never handed to libtorch (see resnet.c), so that classifying a film
 * neither loads libtorch (~300 shared libraries, 0.7 s and 160 MB before any work) nor needs it.
 *
 * Same arithmetic as torchvision's eval-mode forward in float32 (oneDNN: BatchNorm folded into the
 * weights and bias, ReLU and the residual add fused; BLAS: convolution by im2col + SGEMM, then
 * BatchNorm as y = conv * s + t with s = weight / sqrt(running_var + eps),
 * t = bias - running_mean * s (computed in double, applied per channel after the GEMM, fused with
 * the residual add and ReLU), max pool 3/2 pad 1, global average pool, fc. Logits equal
 * torchvision's to float32 rounding (tests/test_model.c: max |d| <= 1e-4 on real films, both
 * kernel sets).
 *
 *   ps_engine *e = NULL;
 *   if (ps_engine_create(lookup, model, K, &e) == PS_OK)     // borrows the weights lookup returns
 *     ps_engine_forward(e, x, n, h, w, 0, logits);            // x (N,3,H,W) -> logits (N,K)
 *   ps_engine_free(e);
 *
 * Threads: ps_engine_forward only reads the engine's weights; calls from several threads are safe
 * and take turns (each uses all the threads it is given); OpenBLAS's thread count is restored
 * after each call. oneDNN: a batch is shared out one share per thread (single-threaded primitives
 * on plans of the thread's own), a single film runs on all threads inside the primitives.
 */
#ifndef PS_ENGINE_H
#define PS_ENGINE_H

#include "ps_common.h"

typedef struct ps_engine ps_engine;

/* Float32 data of a state_dict entry ("conv1.weight", "layer1.0.bn1.running_var", "fc.bias" ...)
 * in torchvision's shape and C order, or NULL when absent. Borrowed: must outlive the engine. */
typedef const float *(*ps_engine_lookup)(void *ctx, const char *name);

int ps_engine_create(ps_engine_lookup lookup, void *ctx, int num_classes, ps_engine **out);
/* logits (N,K) for x (N,3,H,W) float32 normalised, H, W >= 32, on `threads` threads (0: all of
 * ps_default_threads()): the films are shared out between the threads (single-threaded BLAS in
 * each), what is left over (or a single film) runs with BLAS's own threads. Each thread takes its
 * films through conv1..layer2 one by one and through layer3..fc in groups of up to 4 (one GEMM per
 * layer for the group: the large layer3/4 weights are packed once per group). feats (nullable) gets
 * the channel means of the outputs of the layers in `layers` (bit l = layer l+1), concatenated in
 * layer order: (N, ps_model_layers_dim(layers)); layers = 8 gives the fc input (N,512). */
int ps_engine_forward(ps_engine *e, const float *x, int n, int h, int w, int threads, float *logits, float *feats,
                      unsigned layers, float *act4);
/* Gets ready for a ps_engine_forward of n films of h x w on `threads` threads without running one:
 * oneDNN's kernels generated and the weights folded into their layouts (about 0.1 s for ResNet18),
 * so that a caller can do it while its films are still being decoded. Nothing to do on the BLAS
 * kernels. */
int ps_engine_prepare(ps_engine *e, int n, int h, int w, int threads);
/* act4 (nullable): layer4's output per film, (N, 512, ps_engine_layer4_size(h), ..._size(w)). */
int ps_engine_layer4_size(int in);

void ps_engine_free(ps_engine *e);
/* Name of the BLAS library the fallback kernels' GEMMs run in ("OpenBLAS 0.3.21 ..." or "BLAS"). */
const char *ps_engine_blas(void);
/* The kernels e runs on (NULL: what a new engine would): "oneDNN 2.6.3, kernels for avx512_core_bf16
 * (from the CPU's features); CPU: avx2 fma avx512f ..." or the BLAS description. Static buffer. */
const char *ps_engine_kernels(const ps_engine *e);
/* Arithmetic of later forwards: PS_ENGINE_FP32 (default) or PS_ENGINE_BF16 (bfloat16 weights and
 * activations, float32 accumulation: oneDNN on a CPU with AVX512_BF16 or AMX, else PS_EUNSUPPORTED). */
enum { PS_ENGINE_FP32 = 0, PS_ENGINE_BF16 = 1 };
int ps_engine_set_precision(ps_engine *e, int precision);

#endif
