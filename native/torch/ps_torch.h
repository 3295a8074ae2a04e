/* ps_torch.h — the small C API over libtorch (the only libtorch C++ in PneumoScope).
 *
 *   int64_t xs[4] = {1, 3, 224, 224}, ws[4] = {64, 3, 7, 7};
 *   ps_tensor *x = NULL, *w = NULL, *y = NULL;
 *   if (ps_tensor_from_f32(&x, pixels, xs, 4, PS_DEVICE_AUTO) == PS_OK &&     // copy-in (N,C,H,W)
 *       ps_tensor_zeros(&w, ws, 4, PS_DTYPE_F32, ps_tensor_device(x)) == PS_OK &&
 *       ps_tensor_normal_(w, 0.0, 0.02) == PS_OK &&
 *       ps_op_conv2d(&y, x, w, NULL, 2, 3) == PS_OK) {                         // y (1,64,112,112)
 *     float *out = malloc(sizeof(float) * ps_tensor_numel(y));
 *     ps_tensor_to_f32(y, out, ps_tensor_numel(y));                            // copy-out
 *   } else fprintf(stderr, "%s\n", ps_last_error());
 *   ps_tensor_free(y); ps_tensor_free(w); ps_tensor_free(x);
 *
 * Tensors are opaque handles (ps_tensor *) owning one reference to a libtorch tensor; every
 * function that produces a tensor returns a NEW handle through its first argument (free it with
 * ps_tensor_free, which accepts NULL). Data goes in and out by explicit copies of contiguous
 * C-order buffers (NCHW for images). Every function returns a PS_ status; a libtorch exception
 * becomes PS_ETORCH with its message in ps_last_error() — no exception ever crosses this header.
 *
 * Threads: the first call into this API sets libtorch's intra-op threads to
 * ps_default_threads() (libtorch alone would use 1 here); ps_torch_set_threads() changes it.
 * Grad mode and autocast are per thread, as in libtorch.
 *
 * Loading: libpneumoscope does not link libtorch. The first call that needs it loads the backend
 * module libpneumoscope_torch.so (once per process) from the location given to
 * ps_torch_set_backend(), else $PNEUMOSCOPE_TORCH_BACKEND when set (that location only; the same
 * three kinds), else from the folder of libpneumoscope.so, else by name through the dynamic
 * loader's path, else libpneumoscope_torch-<X.Y>.so beside libpneumoscope.so when the dynamic
 * loader finds the libtorch X.Y it needs (Debian's). Until then no libtorch library is mapped: ps_dtype_size/ps_dtype_name,
 * ps_torch_set/get_threads (the count is remembered and applied when the backend loads),
 * ps_torch_resolve_device(PS_DEVICE_CPU), ps_tensor_free(NULL)/ps_adam_free(NULL) and, in a
 * build whose libtorch has no CUDA, ps_torch_cuda_available and ps_torch_resolve_device never load
 * it. When the backend cannot be loaded, status functions return PS_EUNSUPPORTED (output handles
 * set to NULL), the others the failure value documented with them, and ps_last_error() reads
 * "torch: cannot load the libtorch backend <path>: <reason>" (the failure, repeated).
 */
#ifndef PS_TORCH_H
#define PS_TORCH_H

#include <stddef.h>
#include <stdint.h>

#include "ps_common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ps_tensor ps_tensor;

typedef enum {
  PS_DEVICE_CPU = 0,
  PS_DEVICE_CUDA = 1,
  PS_DEVICE_AUTO = 2 /* CUDA when available, else CPU (only as a request; never reported) */
} ps_device;

typedef enum {
  PS_DTYPE_F32 = 0,
  PS_DTYPE_F16 = 1,
  PS_DTYPE_BF16 = 2,
  PS_DTYPE_I64 = 3,
  PS_DTYPE_U8 = 4,
  PS_DTYPE_BOOL = 5,
  PS_DTYPE_OTHER = 99 /* reported only */
} ps_dtype;

#define PS_TENSOR_MAX_DIMS 8

/* ---- runtime ------------------------------------------------------------------------------ */

/* 1 when the libtorch backend is loaded in this process, else 0 (never loads it). */
PS_API int ps_torch_loaded(void);
/* Where the next load looks (NULL or "": the usual search above). location is one of:
 *   the backend module file itself;
 *   a folder holding libpneumoscope_torch.so;
 *   a libtorch lib folder (holds libtorch_cpu.so*, libc10.so*: PyTorch's site-packages/torch/lib,
 *   a libtorch download's lib, Debian's /usr/lib/x86_64-linux-gnu; the folder above one is taken
 *   too): the backend is one built against that folder's libtorch version, beside
 *   libpneumoscope.so (libpneumoscope_torch-<X.Y>.so first, then libpneumoscope_torch.so), and the
 *   folder's libc10/libtorch are mapped first, so the backend uses them and no other libtorch.
 * Reads files only; loads nothing. PS_ENOTFOUND when the location does not exist or holds neither;
 * PS_EUNSUPPORTED when no backend here is built for the folder's libtorch (the message names both
 * versions and the cmake command that builds one). Once a backend is loaded: PS_OK when location
 * names the same module and libtorch (or is empty), else PS_ESTATE (one libtorch per process).
 * After a failed load it makes the next use try again, unless that failure left a libtorch mapped
 * (PS_ESTATE with the failure). On error the previous location stays. Errors read
 * "torch: cannot load the libtorch backend <location>: <why>". */
PS_API int ps_torch_set_backend(const char *location);
/* libtorch version, e.g. "1.13.0". Never NULL ("" when the backend cannot be loaded). */
PS_API const char *ps_torch_version(void);
/* libtorch's build configuration text (at::show_config: BLAS, CUDA, OpenMP ...). Borrowed,
 * valid until the next call on this thread. Never NULL ("" when the backend cannot be loaded). */
PS_API const char *ps_torch_config(void);
/* 1 when a CUDA device can be used by this libtorch, else 0 (also when the backend cannot be
 * loaded). */
PS_API int ps_torch_cuda_available(void);
/* Resolve a request to a real device: AUTO -> CUDA when available else CPU; CUDA when not
 * available -> PS_EUNSUPPORTED "CUDA requested but not available". */
PS_API int ps_torch_resolve_device(ps_device want, ps_device *out);
/* Intra-op threads (0 -> ps_default_threads()). get: the count in use, or before the backend is
 * loaded the count it will get. */
PS_API int ps_torch_set_threads(int n);
PS_API int ps_torch_get_threads(void);
/* Seed libtorch's CPU (and CUDA) generators. */
PS_API int ps_torch_manual_seed(uint64_t seed);
/* cudnn.benchmark (no effect on CPU). */
PS_API int ps_torch_set_cudnn_benchmark(int on);
/* bf16 autocast for CUDA ops on this thread (like torch.autocast("cuda", torch.bfloat16)).
 * Returns PS_EUNSUPPORTED when on=1 and CUDA is not available. */
PS_API int ps_torch_set_autocast(int on);
/* TF32 tensor-core math for fp32 convolutions and matmuls on CUDA (libtorch's defaults: on for
 * cuDNN convolutions, off for matmul; CUDA fp32 logits then differ from CPU by ~1e-3). on=0 turns
 * both off (CUDA matches CPU to ~1e-5), on=1 turns both on. No effect on CPU. */
PS_API int ps_torch_set_tf32(int on);
/* Autograd recording on this thread (torch.set_grad_enabled). *prev (nullable) gets the old
 * value so callers can restore it: a C "no_grad guard". */
PS_API int ps_torch_set_grad_enabled(int on, int *prev);
/* 1 when grad mode is on for this thread (0 also when the backend cannot be loaded). */
PS_API int ps_torch_grad_enabled(void);

/* ---- tensors ------------------------------------------------------------------------------ */

/* New tensor of dtype/shape on dev, filled by copying numel elements from data (contiguous,
 * C order, element type matching dtype: float, uint16 bits for F16/BF16, int64_t, uint8_t). */
PS_API int ps_tensor_from_data(ps_tensor **out, const void *data, ps_dtype dtype, const int64_t *shape,
                               int ndim, ps_device dev);
/* Same for float32 (the common case: NCHW images). */
PS_API int ps_tensor_from_f32(ps_tensor **out, const float *data, const int64_t *shape, int ndim,
                              ps_device dev);
PS_API int ps_tensor_zeros(ps_tensor **out, const int64_t *shape, int ndim, ps_dtype dtype, ps_device dev);
/* A new handle to the same tensor (shares storage and autograd identity). */
PS_API int ps_tensor_ref(ps_tensor **out, const ps_tensor *t);
/* A new tensor with a copy of the data, detached from the graph. */
PS_API int ps_tensor_clone(ps_tensor **out, const ps_tensor *t);
/* A new handle sharing storage but detached from the graph (x.detach()). */
PS_API int ps_tensor_detach(ps_tensor **out, const ps_tensor *t);
/* A copy on dev converted to dtype (x.to(dev, dtype)); kept in the graph. */
PS_API int ps_tensor_to(ps_tensor **out, const ps_tensor *t, ps_device dev, ps_dtype dtype);
PS_API void ps_tensor_free(ps_tensor *t);

/* Copy-out converted to float32, moved to CPU, contiguous C order. n = capacity in floats;
 * PS_EINVAL when n < numel. */
PS_API int ps_tensor_to_f32(const ps_tensor *t, float *out, size_t n);
/* Copy-out as dtype (same rules, element size of dtype). */
PS_API int ps_tensor_to_data(const ps_tensor *t, ps_dtype dtype, void *out, size_t n);
/* In place: dst.copy_(src) without recording autograd (shapes must match; dtype/device converted). */
PS_API int ps_tensor_copy_(ps_tensor *dst, const ps_tensor *src);
/* In place: copy numel elements of data (dtype) into dst (without autograd). */
PS_API int ps_tensor_copy_from_data_(ps_tensor *dst, const void *data, ps_dtype dtype, size_t numel);
/* In place initialisers (no autograd): fill, normal(mean, std), uniform[lo, hi). */
PS_API int ps_tensor_fill_(ps_tensor *t, double value);
PS_API int ps_tensor_normal_(ps_tensor *t, double mean, double std);
PS_API int ps_tensor_uniform_(ps_tensor *t, double lo, double hi);
/* In place t += value (e.g. BN num_batches_tracked), no autograd. */
PS_API int ps_tensor_add_scalar_(ps_tensor *t, double value);
/* Move a handle's tensor to another device in place, keeping requires_grad (for parameters:
 * the handle stays valid and stays a leaf). */
PS_API int ps_tensor_move_(ps_tensor *t, ps_device dev);
/* In place: make the tensor channels_last (4-D) or contiguous again; keeps leafness. */
PS_API int ps_tensor_set_channels_last_(ps_tensor *t, int on);

PS_API int ps_tensor_ndim(const ps_tensor *t);
/* Size of dimension d (negative counts from the end); -1 when out of range. The value getters
 * below return -1 / 0 / PS_DTYPE_OTHER / PS_DEVICE_CPU for a NULL tensor (or no backend). */
PS_API int64_t ps_tensor_size(const ps_tensor *t, int d);
/* Copies up to PS_TENSOR_MAX_DIMS sizes into shape; returns ndim (or <0 status). */
PS_API int ps_tensor_shape(const ps_tensor *t, int64_t *shape);
PS_API int64_t ps_tensor_numel(const ps_tensor *t);
PS_API ps_dtype ps_tensor_dtype(const ps_tensor *t);
PS_API ps_device ps_tensor_device(const ps_tensor *t);
/* Element size in bytes of a dtype (0 for OTHER). Name "F32", "F16", "BF16", "I64", "U8", "BOOL". */
PS_API size_t ps_dtype_size(ps_dtype dtype);
PS_API const char *ps_dtype_name(ps_dtype dtype);
/* Copy-out of a one-element tensor as double. */
PS_API int ps_tensor_item(const ps_tensor *t, double *out);

/* ---- autograd ----------------------------------------------------------------------------- */

PS_API int ps_tensor_set_requires_grad(ps_tensor *t, int on);
PS_API int ps_tensor_requires_grad(const ps_tensor *t);
/* Keep .grad for a non-leaf tensor (Grad-CAM activations); call before backward. */
PS_API int ps_tensor_retain_grad(ps_tensor *t);
/* t.backward(grad_output): grad_output NULL for a one-element t. retain_graph keeps the graph
 * for another backward (e.g. one Grad-CAM per class). */
PS_API int ps_tensor_backward(ps_tensor *t, const ps_tensor *grad_output, int retain_graph);
/* New handle to t.grad, or *out = NULL (and PS_OK) when no gradient has been computed. */
PS_API int ps_tensor_grad(ps_tensor **out, const ps_tensor *t);
/* t.grad = None (set_to_none, as torch's zero_grad() does). */
PS_API int ps_tensor_zero_grad(ps_tensor *t);
/* torch.autograd.grad(output, inputs, grad_output): grads_out[i] gets d(output)/d(inputs[i])
 * as new handles (NULL when inputs[i] is not reached). Does not touch .grad fields. */
PS_API int ps_torch_grad(ps_tensor **grads_out, const ps_tensor *output, const ps_tensor *grad_output,
                         ps_tensor *const *inputs, int n, int retain_graph);

/* ---- ops (each returns a new tensor in *out, recorded by autograd when grad mode is on) ---- */

/* x (N,C,H,W), w (O,C,kh,kw), b (O) or NULL; square stride/padding, dilation 1, groups 1. */
PS_API int ps_op_conv2d(ps_tensor **out, const ps_tensor *x, const ps_tensor *w, const ps_tensor *b,
                        int stride, int padding);
/* Batch norm over C of x (N,C,...). weight/bias nullable. training=1: normalise by batch
 * statistics and update running_mean/var in place with momentum (torch default 0.1;
 * running_var uses the unbiased variance); training=0: use running stats. */
PS_API int ps_op_batch_norm(ps_tensor **out, const ps_tensor *x, const ps_tensor *weight,
                            const ps_tensor *bias, ps_tensor *running_mean, ps_tensor *running_var,
                            int training, double momentum, double eps);
PS_API int ps_op_relu(ps_tensor **out, const ps_tensor *x);
PS_API int ps_op_max_pool2d(ps_tensor **out, const ps_tensor *x, int kernel, int stride, int padding);
PS_API int ps_op_adaptive_avg_pool2d(ps_tensor **out, const ps_tensor *x, int out_h, int out_w);
/* Mean / sum over the listed dims (ndims = 0: all elements -> 0-d). */
PS_API int ps_op_mean(ps_tensor **out, const ps_tensor *x, const int64_t *dims, int ndims, int keepdim);
PS_API int ps_op_sum(ps_tensor **out, const ps_tensor *x, const int64_t *dims, int ndims, int keepdim);
/* x.reshape(shape) (one entry may be -1); flatten(start_dim .. end). */
PS_API int ps_op_reshape(ps_tensor **out, const ps_tensor *x, const int64_t *shape, int ndim);
PS_API int ps_op_flatten(ps_tensor **out, const ps_tensor *x, int start_dim);
/* y = x w^T + b; x (N,in), w (out,in), b (out) or NULL. */
PS_API int ps_op_linear(ps_tensor **out, const ps_tensor *x, const ps_tensor *w, const ps_tensor *b);
PS_API int ps_op_matmul(ps_tensor **out, const ps_tensor *a, const ps_tensor *b);
/* Elementwise with broadcasting. */
PS_API int ps_op_add(ps_tensor **out, const ps_tensor *a, const ps_tensor *b);
PS_API int ps_op_sub(ps_tensor **out, const ps_tensor *a, const ps_tensor *b);
PS_API int ps_op_mul(ps_tensor **out, const ps_tensor *a, const ps_tensor *b);
/* out = x * scale + shift. */
PS_API int ps_op_affine(ps_tensor **out, const ps_tensor *x, double scale, double shift);
PS_API int ps_op_softmax(ps_tensor **out, const ps_tensor *x, int dim);
PS_API int ps_op_log_softmax(ps_tensor **out, const ps_tensor *x, int dim);
/* Mean cross entropy of logits (N,K) against int64 targets (N); class_weight (K) float or NULL
 * (weighted mean as torch.nn.functional.cross_entropy(weight=...)). label_smoothing in [0, 1). */
PS_API int ps_op_cross_entropy(ps_tensor **out, const ps_tensor *logits, const ps_tensor *targets,
                               const ps_tensor *class_weight, double label_smoothing);
/* x.select(dim, index) (drops dim): e.g. logits[:, c] for a class score. */
PS_API int ps_op_select(ps_tensor **out, const ps_tensor *x, int dim, int64_t index);
/* Index of the maximum along dim (int64). */
PS_API int ps_op_argmax(ps_tensor **out, const ps_tensor *x, int dim);
/* Bilinear resize of (N,C,H,W) to (out_h, out_w), align_corners=0 (F.interpolate). */
PS_API int ps_op_interpolate_bilinear(ps_tensor **out, const ps_tensor *x, int out_h, int out_w);
/* Concatenate n tensors along dim. */
PS_API int ps_op_cat(ps_tensor **out, ps_tensor *const *xs, int n, int dim);

/* ---- Adam (torch::optim::Adam) -------------------------------------------------------------- */

typedef struct ps_adam ps_adam;

/* Zero-initialised is valid: 0 fields take torch's defaults (lr 1e-3, betas 0.9/0.999, eps 1e-8);
 * weight_decay 0 means none (L2 added to the gradient, as torch.optim.Adam). */
typedef struct ps_adam_opts {
  double lr;
  double beta1, beta2;
  double eps;
  double weight_decay;
  int amsgrad;
} ps_adam_opts;

/* The optimizer keeps references to the n parameter tensors (leaves with requires_grad). */
PS_API int ps_adam_create(ps_adam **out, ps_tensor *const *params, int n, const ps_adam_opts *opts);
PS_API void ps_adam_free(ps_adam *opt);
PS_API int ps_adam_step(ps_adam *opt);
/* Clears the gradients of all its parameters (set to none). */
PS_API int ps_adam_zero_grad(ps_adam *opt);
PS_API int ps_adam_set_lr(ps_adam *opt, double lr);
/* 0.0 for a NULL optimizer. */
PS_API double ps_adam_get_lr(const ps_adam *opt);
/* Serialise the full optimizer state (per parameter exp_avg, exp_avg_sq, step; options) into a
 * malloc'd buffer (*buf, release with free()) — for --resume checkpoints. */
PS_API int ps_adam_save(const ps_adam *opt, void **buf, size_t *len);
/* Restore a state saved by ps_adam_save for the same parameter list (shapes checked). */
PS_API int ps_adam_load(ps_adam *opt, const void *buf, size_t len);
/* Per-parameter state for inspection/tests: new handles (NULL and step 0 before the first step). */
PS_API int ps_adam_param_state(const ps_adam *opt, int index, ps_tensor **exp_avg,
                               ps_tensor **exp_avg_sq, int64_t *step);

/* ---- batch data on the device (training batches built where the model runs) --------------- */

/* x.index_select(dim, idx): idx an int64 (or int32) 1-D tensor on x's device. E.g. the films of
 * one batch out of a (n, 1, S, S) uint8 cache kept on the GPU. */
PS_API int ps_op_index_select(ps_tensor **out, const ps_tensor *x, int dim, const ps_tensor *idx);

typedef enum {
  PS_PAD_ZEROS = 0,  /* outside the input reads 0 */
  PS_PAD_BORDER = 1  /* outside the input reads the nearest edge pixel (PIL's resize at the edges) */
} ps_pad_mode;

/* Per-sample affine resampling: out (N, C, out_h, out_w) =
 * F.grid_sample(x, F.affine_grid(theta, (N, C, out_h, out_w), align_corners=False),
 *               mode="bilinear", padding_mode=pad, align_corners=False).
 * x (N, C, H, W) floating; theta (N, 2, 3) maps output to input coordinates, both normalised to
 * [-1, 1] over the pixel edges (converted to x's dtype and device). */
PS_API int ps_op_affine_sample(ps_tensor **out, const ps_tensor *x, const ps_tensor *theta, int out_h, int out_w,
                               ps_pad_mode pad);
/* a / b elementwise with broadcasting. */
PS_API int ps_op_div(ps_tensor **out, const ps_tensor *a, const ps_tensor *b);
/* clamp(x, lo, hi). */
PS_API int ps_op_clamp(ps_tensor **out, const ps_tensor *x, double lo, double hi);
/* x.expand(shape) (a view: size-1 dims repeated without copying; -1 keeps a dim). */
PS_API int ps_op_expand(ps_tensor **out, const ps_tensor *x, const int64_t *shape, int ndim);

/* ---- data-parallel training (libtorch's c10d) ------------------------------------------------ */

/* One process of a data-parallel group, as torch.distributed's env:// rendezvous builds it: a
 * c10d TCPStore at master_addr:master_port (served by rank 0, or by torchrun's agent when
 * agent_store is set: every rank is then a client, keys under /worker/attempt_<restart_count>),
 * then a ProcessGroupGloo over it (network interface: $GLOO_SOCKET_IFNAME when set, else the
 * host name's). Every call below is a collective: all ranks make it in the same order.
 *
 *   ps_dist_opts o = {"10.0.0.1", 29500, rank, world, 300, 0, 0, PS_DEVICE_CPU};
 *   ps_dist *d;  ps_dist_create(&d, &o);                 // waits for every rank (timeout_s)
 *   ps_dist_broadcast_(d, tensors, n, 0);                // rank 0's weights everywhere
 *   ps_dist_reducer_create(d, params, n);                // DDP's gradient reducer
 *   ... forward; ps_dist_expect_backward(d); backward   // .grad now the mean over ranks
 *
 * A rank that dies, or one that never arrives, makes the others' calls fail (PS_EIO, naming this
 * rank and c10d's reason) within timeout_s, usually at once (the peer's socket closes). */
typedef struct ps_dist ps_dist;
typedef struct ps_dist_opts {
  const char *master_addr;
  int master_port;
  int rank, world_size;
  double timeout_s;   /* rendezvous and every collective (0: 300) */
  int agent_store;    /* 1: torchrun's agent serves the store (TORCHELASTIC_USE_AGENT_STORE) */
  int restart_count;  /* TORCHELASTIC_RESTART_COUNT (with agent_store) */
  ps_device device;   /* PS_DEVICE_CPU (Gloo); CUDA ranks (NCCL) are not built: PS_EUNSUPPORTED */
} ps_dist_opts;

/* 1 when this build has c10d with Gloo (0 also when the backend cannot be loaded). */
PS_API int ps_dist_available(void);
PS_API int ps_dist_create(ps_dist **out, const ps_dist_opts *opts);
PS_API void ps_dist_free(ps_dist *d);
PS_API int ps_dist_rank(const ps_dist *d);       /* 0 for NULL */
PS_API int ps_dist_world_size(const ps_dist *d); /* 1 for NULL */
/* Overwrite the n tensors with root's (coalesced into buckets, as DDP syncs module state). */
PS_API int ps_dist_broadcast_(ps_dist *d, ps_tensor *const *ts, int n, int root);
/* Small control values: root's n doubles to everyone; the element-wise sum over ranks. */
PS_API int ps_dist_broadcast_f64(ps_dist *d, double *v, int n, int root);
PS_API int ps_dist_allreduce_sum_f64(ps_dist *d, double *v, int n);
PS_API int ps_dist_barrier(ps_dist *d);
/* After a failure (not a collective: the links to a dead rank are gone): post `reason` in the
 * rendezvous store and wait up to timeout_s (0: 10) for every other rank's post. PS_OK when all
 * posted nothing and all answered; else PS_EIO naming the ranks that did not answer ("rank 1 did
 * not answer within 10 s (killed or stuck)"), or the first peer's own reason ("rank 1 stopped:
 * ..."), or "rank 0 is gone" when the store it hosted is unreachable. Not a collective. */
PS_API int ps_dist_check_peers(ps_dist *d, double timeout_s, const char *reason);
/* The group's gradient reducer over the model's n parameters (c10d::Reducer, the engine of
 * torch.nn.parallel.DistributedDataParallel: 1 MB then 25 MB buckets, each all-reduced as soon as
 * backward has filled it, gradients divided by the world size). Checks first that every rank has
 * the same parameter shapes. */
PS_API int ps_dist_reducer_create(ps_dist *d, ps_tensor *const *params, int n);
/* Call between a forward and its backward when that backward is to synchronise the gradients
 * (the last micro-batch of a step; earlier ones accumulate locally, as DDP's no_sync). */
PS_API int ps_dist_expect_backward(ps_dist *d);

#ifdef __cplusplus
}
#endif
#endif
