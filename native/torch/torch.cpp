// torch.cpp — the only libtorch C++ in PneumoScope: ps_torch.h over ATen/torch::optim.
// Every extern "C" body sits in PS_PROTECT: any exception becomes PS_ETORCH + ps_error text.
// Built alone into the MODULE libpneumoscope_torch.so, which libpneumoscope loads on first use
// (loader.c). Its one exported symbol is ps_torch_backend_v1 (torch_backend.map): every function
// below is local to the module, so its internal calls bind here, never to libpneumoscope's stubs.
#include <torch/torch.h>
#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <torch/version.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <sstream>
#include <string>
#include <type_traits>

#include "ps_torch.h"
#include "torch_backend.h"

#include "torch_internal.hpp"

using namespace ps_torch_impl;

struct ps_adam {
  std::unique_ptr<torch::optim::Adam> opt;
  std::vector<at::Tensor> params;
};

namespace ps_torch_impl {
static std::once_flag g_init_once;

void ensure_init() {
  std::call_once(g_init_once, [] {
    int n = ps_default_threads();
    if (n < 1) n = 1;
    at::set_num_threads(n);
  });
}
}  // namespace ps_torch_impl

namespace {

at::ScalarType to_scalar(ps_dtype d) {
  switch (d) {
    case PS_DTYPE_F32: return at::kFloat;
    case PS_DTYPE_F16: return at::kHalf;
    case PS_DTYPE_BF16: return at::kBFloat16;
    case PS_DTYPE_I64: return at::kLong;
    case PS_DTYPE_U8: return at::kByte;
    case PS_DTYPE_BOOL: return at::kBool;
    default: fail(PS_EINVAL, "unknown dtype " + std::to_string((int)d));
  }
}

ps_dtype from_scalar(at::ScalarType s) {
  switch (s) {
    case at::kFloat: return PS_DTYPE_F32;
    case at::kHalf: return PS_DTYPE_F16;
    case at::kBFloat16: return PS_DTYPE_BF16;
    case at::kLong: return PS_DTYPE_I64;
    case at::kByte: return PS_DTYPE_U8;
    case at::kBool: return PS_DTYPE_BOOL;
    default: return PS_DTYPE_OTHER;
  }
}

at::Device resolve(ps_device d) {
  switch (d) {
    case PS_DEVICE_CPU: return at::Device(at::kCPU);
    case PS_DEVICE_CUDA:
      if (!torch::cuda::is_available()) fail(PS_EUNSUPPORTED, "CUDA requested but not available");
      return at::Device(at::kCUDA);
    case PS_DEVICE_AUTO:
      return torch::cuda::is_available() ? at::Device(at::kCUDA) : at::Device(at::kCPU);
    default: fail(PS_EINVAL, "unknown device " + std::to_string((int)d));
  }
}


c10::optional<at::Tensor> OPT(const ps_tensor *t) {
  if (!t || !t->t.defined()) return c10::nullopt;
  return t->t;
}

std::vector<int64_t> shape_of(const int64_t *shape, int ndim) {
  if (ndim < 0 || ndim > PS_TENSOR_MAX_DIMS) fail(PS_EINVAL, "ndim " + std::to_string(ndim) + " out of range");
  if (ndim > 0 && !shape) fail(PS_EINVAL, "shape is NULL");
  std::vector<int64_t> v(shape, shape + ndim);
  for (int64_t s : v)
    if (s < 0) fail(PS_EINVAL, "negative dimension in shape");
  return v;
}

void check_out(ps_tensor **out) {
  if (!out) fail(PS_EINVAL, "output pointer is NULL");
  *out = nullptr;
}

int put(ps_tensor **out, at::Tensor t) {
  *out = new ps_tensor{std::move(t)};
  return PS_OK;
}

thread_local std::string g_config;

}  // namespace

extern "C" {

// ---- runtime ---------------------------------------------------------------------------------

const char *ps_torch_version(void) { return TORCH_VERSION; }

const char *ps_torch_config(void) {
  try {
    g_config = at::show_config();
  } catch (...) {
    g_config = "";
  }
  return g_config.c_str();
}

int ps_torch_cuda_available(void) {
  try {
    return torch::cuda::is_available() ? 1 : 0;
  } catch (...) {
    return 0;
  }
}

int ps_torch_resolve_device(ps_device want, ps_device *out) {
  PS_PROTECT({
    if (!out) fail(PS_EINVAL, "out is NULL");
    at::Device d = resolve(want);
    *out = d.is_cuda() ? PS_DEVICE_CUDA : PS_DEVICE_CPU;
    return PS_OK;
  })
}

int ps_torch_set_threads(int n) {
  PS_PROTECT({
    if (n < 0) fail(PS_EINVAL, "thread count must be >= 0");
    if (n == 0) n = ps_default_threads();
    if (n < 1) n = 1;
    at::set_num_threads(n);
    return PS_OK;
  })
}

int ps_torch_get_threads(void) {
  try {
    ensure_init();
    return at::get_num_threads();
  } catch (...) {
    return 1;
  }
}

int ps_torch_manual_seed(uint64_t seed) {
  PS_PROTECT({
    torch::manual_seed(seed);
    return PS_OK;
  })
}

int ps_torch_set_cudnn_benchmark(int on) {
  PS_PROTECT({
    at::globalContext().setBenchmarkCuDNN(on != 0);
    return PS_OK;
  })
}

int ps_torch_set_autocast(int on) {
  PS_PROTECT({
    if (on && !torch::cuda::is_available()) fail(PS_EUNSUPPORTED, "bf16 autocast needs CUDA, which is not available");
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
    at::autocast::set_autocast_enabled(at::kCUDA, on != 0);
#else
    at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
    at::autocast::set_enabled(on != 0);
#endif
    if (!on) at::autocast::clear_cache();
    return PS_OK;
  })
}

int ps_torch_set_tf32(int on) {
  PS_PROTECT({
    at::globalContext().setAllowTF32CuDNN(on != 0);
    at::globalContext().setAllowTF32CuBLAS(on != 0);
    return PS_OK;
  })
}

int ps_torch_set_grad_enabled(int on, int *prev) {
  PS_PROTECT({
    if (prev) *prev = at::GradMode::is_enabled() ? 1 : 0;
    at::GradMode::set_enabled(on != 0);
    return PS_OK;
  })
}

int ps_torch_grad_enabled(void) { PS_PROTECT_VAL(0, { return at::GradMode::is_enabled() ? 1 : 0; }) }

// ---- tensors ---------------------------------------------------------------------------------

int ps_tensor_from_data(ps_tensor **out, const void *data, ps_dtype dtype, const int64_t *shape, int ndim,
                        ps_device dev) {
  PS_PROTECT({
    check_out(out);
    auto sz = shape_of(shape, ndim);
    at::Device d = resolve(dev);
    at::ScalarType st = to_scalar(dtype);
    at::Tensor cpu = at::empty(sz, at::TensorOptions().dtype(st));
    size_t bytes = (size_t)cpu.numel() * cpu.element_size();
    if (bytes) {
      if (!data) fail(PS_EINVAL, "data is NULL");
      std::memcpy(cpu.data_ptr(), data, bytes);
    }
    return put(out, d.is_cpu() ? cpu : cpu.to(d));
  })
}

int ps_tensor_from_f32(ps_tensor **out, const float *data, const int64_t *shape, int ndim, ps_device dev) {
  return ps_tensor_from_data(out, data, PS_DTYPE_F32, shape, ndim, dev);
}

int ps_tensor_zeros(ps_tensor **out, const int64_t *shape, int ndim, ps_dtype dtype, ps_device dev) {
  PS_PROTECT({
    check_out(out);
    auto sz = shape_of(shape, ndim);
    return put(out, at::zeros(sz, at::TensorOptions().dtype(to_scalar(dtype)).device(resolve(dev))));
  })
}

int ps_tensor_ref(ps_tensor **out, const ps_tensor *t) {
  PS_PROTECT({
    check_out(out);
    return put(out, T(t));
  })
}

int ps_tensor_clone(ps_tensor **out, const ps_tensor *t) {
  PS_PROTECT({
    check_out(out);
    return put(out, T(t).detach().clone());
  })
}

int ps_tensor_detach(ps_tensor **out, const ps_tensor *t) {
  PS_PROTECT({
    check_out(out);
    return put(out, T(t).detach());
  })
}

int ps_tensor_to(ps_tensor **out, const ps_tensor *t, ps_device dev, ps_dtype dtype) {
  PS_PROTECT({
    check_out(out);
    return put(out, T(t).to(resolve(dev), to_scalar(dtype)));
  })
}

void ps_tensor_free(ps_tensor *t) {
  try {
    delete t;
  } catch (...) {
  }
}

int ps_tensor_to_data(const ps_tensor *t, ps_dtype dtype, void *out, size_t n) {
  PS_PROTECT({
    const at::Tensor &x = T(t);
    if (!out && x.numel() > 0) fail(PS_EINVAL, "output buffer is NULL");
    if ((int64_t)n < x.numel())
      fail(PS_EINVAL, "output buffer holds " + std::to_string(n) + " elements, tensor has " +
                          std::to_string(x.numel()));
    at::NoGradGuard ng;
    at::Tensor c = x.detach().to(at::kCPU, to_scalar(dtype)).contiguous();
    if (c.numel()) std::memcpy(out, c.data_ptr(), (size_t)c.numel() * c.element_size());
    return PS_OK;
  })
}

int ps_tensor_to_f32(const ps_tensor *t, float *out, size_t n) {
  return ps_tensor_to_data(t, PS_DTYPE_F32, out, n);
}

int ps_tensor_copy_(ps_tensor *dst, const ps_tensor *src) {
  PS_PROTECT({
    at::Tensor d = T(dst, "dst");
    const at::Tensor &s = T(src, "src");
    if (d.sizes() != s.sizes()) fail(PS_EINVAL, "copy_: shapes differ");
    at::NoGradGuard ng;
    d.copy_(s);
    return PS_OK;
  })
}

int ps_tensor_copy_from_data_(ps_tensor *dst, const void *data, ps_dtype dtype, size_t numel) {
  PS_PROTECT({
    at::Tensor d = T(dst, "dst");
    if ((int64_t)numel != d.numel())
      fail(PS_EINVAL, "copy_from_data_: " + std::to_string(numel) + " elements for a tensor of " +
                          std::to_string(d.numel()));
    at::Tensor cpu = at::empty(d.sizes(), at::TensorOptions().dtype(to_scalar(dtype)));
    if (numel) {
      if (!data) fail(PS_EINVAL, "data is NULL");
      std::memcpy(cpu.data_ptr(), data, numel * cpu.element_size());
    }
    at::NoGradGuard ng;
    d.copy_(cpu);
    return PS_OK;
  })
}

int ps_tensor_fill_(ps_tensor *t, double value) {
  PS_PROTECT({
    at::Tensor x = T(t);
    at::NoGradGuard ng;
    x.fill_(value);
    return PS_OK;
  })
}

int ps_tensor_normal_(ps_tensor *t, double mean, double std) {
  PS_PROTECT({
    at::Tensor x = T(t);
    at::NoGradGuard ng;
    x.normal_(mean, std);
    return PS_OK;
  })
}

int ps_tensor_uniform_(ps_tensor *t, double lo, double hi) {
  PS_PROTECT({
    at::Tensor x = T(t);
    at::NoGradGuard ng;
    x.uniform_(lo, hi);
    return PS_OK;
  })
}

int ps_tensor_add_scalar_(ps_tensor *t, double value) {
  PS_PROTECT({
    at::Tensor x = T(t);
    at::NoGradGuard ng;
    if (at::isFloatingType(x.scalar_type())) x.add_(value);
    else x.add_(at::Scalar((int64_t)std::llround(value)));
    return PS_OK;
  })
}

int ps_tensor_move_(ps_tensor *t, ps_device dev) {
  PS_PROTECT({
    at::Tensor x = T(t);
    at::Device d = resolve(dev);
    if (x.device() == d) return PS_OK;
    bool rg = x.requires_grad();
    at::Tensor y;
    {
      at::NoGradGuard ng;
      y = x.detach().to(d);
    }
    if (rg) y.requires_grad_(true);
    t->t = y;
    return PS_OK;
  })
}

int ps_tensor_set_channels_last_(ps_tensor *t, int on) {
  PS_PROTECT({
    at::Tensor x = T(t);
    if (x.dim() != 4) return PS_OK;
    bool rg = x.requires_grad();
    at::Tensor y;
    {
      at::NoGradGuard ng;
      y = x.detach().contiguous(on ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
    }
    if (rg) y.requires_grad_(true);
    t->t = y;
    return PS_OK;
  })
}

int ps_tensor_ndim(const ps_tensor *t) {
  PS_PROTECT({
    return (int)T(t).dim();
  })
}

int64_t ps_tensor_size(const ps_tensor *t, int d) {
  PS_PROTECT_VAL(-1, {
    if (!t || !t->t.defined()) return -1;
    int64_t nd = t->t.dim();
    int64_t i = d < 0 ? nd + d : d;
    if (i < 0 || i >= nd) return -1;
    return t->t.size(i);
  })
}

int ps_tensor_shape(const ps_tensor *t, int64_t *shape) {
  PS_PROTECT({
    const at::Tensor &x = T(t);
    if (!shape) fail(PS_EINVAL, "shape is NULL");
    int nd = (int)x.dim();
    for (int i = 0; i < nd && i < PS_TENSOR_MAX_DIMS; i++) shape[i] = x.size(i);
    return nd;
  })
}

int64_t ps_tensor_numel(const ps_tensor *t) {
  PS_PROTECT_VAL(0, {
    if (!t || !t->t.defined()) return 0;
    return t->t.numel();
  })
}

ps_dtype ps_tensor_dtype(const ps_tensor *t) {
  PS_PROTECT_VAL(PS_DTYPE_OTHER, {
    if (!t || !t->t.defined()) return PS_DTYPE_OTHER;
    return from_scalar(t->t.scalar_type());
  })
}

ps_device ps_tensor_device(const ps_tensor *t) {
  PS_PROTECT_VAL(PS_DEVICE_CPU, {
    if (!t || !t->t.defined()) return PS_DEVICE_CPU;
    return t->t.is_cuda() ? PS_DEVICE_CUDA : PS_DEVICE_CPU;
  })
}

// ps_dtype_size / ps_dtype_name are plain C in dtype.c (no libtorch needed).

int ps_tensor_item(const ps_tensor *t, double *out) {
  PS_PROTECT({
    if (!out) fail(PS_EINVAL, "out is NULL");
    const at::Tensor &x = T(t);
    if (x.numel() != 1) fail(PS_EINVAL, "item: tensor has " + std::to_string(x.numel()) + " elements");
    *out = x.detach().to(at::kCPU).to(at::kDouble).item<double>();
    return PS_OK;
  })
}

// ---- autograd --------------------------------------------------------------------------------

int ps_tensor_set_requires_grad(ps_tensor *t, int on) {
  PS_PROTECT({
    at::Tensor x = T(t);
    x.requires_grad_(on != 0);
    return PS_OK;
  })
}

int ps_tensor_requires_grad(const ps_tensor *t) {
  PS_PROTECT_VAL(0, { return (t && t->t.defined() && t->t.requires_grad()) ? 1 : 0; })
}

int ps_tensor_retain_grad(ps_tensor *t) {
  PS_PROTECT({
    at::Tensor x = T(t);
    x.retain_grad();
    return PS_OK;
  })
}

int ps_tensor_backward(ps_tensor *t, const ps_tensor *grad_output, int retain_graph) {
  PS_PROTECT({
    at::Tensor x = T(t);
    at::Tensor g;
    if (grad_output) g = T(grad_output, "grad_output");
    else if (x.numel() != 1) fail(PS_EINVAL, "backward of a non-scalar tensor needs grad_output");
    x.backward(g, retain_graph ? c10::optional<bool>(true) : c10::nullopt, false);
    return PS_OK;
  })
}

int ps_tensor_grad(ps_tensor **out, const ps_tensor *t) {
  PS_PROTECT({
    check_out(out);
    const at::Tensor &x = T(t);
    at::Tensor g = x.grad();
    if (!g.defined()) return PS_OK;
    return put(out, g);
  })
}

int ps_tensor_zero_grad(ps_tensor *t) {
  PS_PROTECT({
    at::Tensor x = T(t);
    x.mutable_grad() = at::Tensor();
    return PS_OK;
  })
}

int ps_torch_grad(ps_tensor **grads_out, const ps_tensor *output, const ps_tensor *grad_output,
                  ps_tensor *const *inputs, int n, int retain_graph) {
  PS_PROTECT({
    if (!grads_out || !inputs || n <= 0) fail(PS_EINVAL, "grad: no inputs");
    for (int i = 0; i < n; i++) grads_out[i] = nullptr;
    const at::Tensor &y = T(output, "output");
    std::vector<at::Tensor> ins;
    for (int i = 0; i < n; i++) ins.push_back(T(inputs[i], "input"));
    std::vector<at::Tensor> gos;
    if (grad_output) gos.push_back(T(grad_output, "grad_output"));
    else if (y.numel() != 1) fail(PS_EINVAL, "grad of a non-scalar output needs grad_output");
    auto gs = torch::autograd::grad({y}, ins, gos, retain_graph ? c10::optional<bool>(true) : c10::nullopt,
                                    false, true);
    for (int i = 0; i < n; i++)
      if (gs[i].defined()) grads_out[i] = new ps_tensor{gs[i]};
    return PS_OK;
  })
}

// ---- ops -------------------------------------------------------------------------------------

int ps_op_conv2d(ps_tensor **out, const ps_tensor *x, const ps_tensor *w, const ps_tensor *b, int stride,
                 int padding) {
  PS_PROTECT({
    check_out(out);
    if (stride < 1 || padding < 0) fail(PS_EINVAL, "conv2d: bad stride/padding");
    return put(out, at::conv2d(T(x, "x"), T(w, "weight"), OPT(b), {stride, stride}, {padding, padding}));
  })
}

int ps_op_batch_norm(ps_tensor **out, const ps_tensor *x, const ps_tensor *weight, const ps_tensor *bias,
                     ps_tensor *running_mean, ps_tensor *running_var, int training, double momentum,
                     double eps) {
  PS_PROTECT({
    check_out(out);
    if (!training && (!running_mean || !running_var)) fail(PS_EINVAL, "batch_norm: eval mode needs running stats");
    return put(out, at::batch_norm(T(x, "x"), OPT(weight), OPT(bias), OPT(running_mean), OPT(running_var),
                                   training != 0, momentum, eps, at::globalContext().userEnabledCuDNN()));
  })
}

int ps_op_relu(ps_tensor **out, const ps_tensor *x) {
  PS_PROTECT({
    check_out(out);
    return put(out, at::relu(T(x)));
  })
}

int ps_op_max_pool2d(ps_tensor **out, const ps_tensor *x, int kernel, int stride, int padding) {
  PS_PROTECT({
    check_out(out);
    return put(out, at::max_pool2d(T(x), {kernel, kernel}, {stride, stride}, {padding, padding}));
  })
}

int ps_op_adaptive_avg_pool2d(ps_tensor **out, const ps_tensor *x, int out_h, int out_w) {
  PS_PROTECT({
    check_out(out);
    return put(out, at::adaptive_avg_pool2d(T(x), {out_h, out_w}));
  })
}

int ps_op_mean(ps_tensor **out, const ps_tensor *x, const int64_t *dims, int ndims, int keepdim) {
  PS_PROTECT({
    check_out(out);
    if (ndims <= 0) return put(out, T(x).mean());
    return put(out, T(x).mean(at::IntArrayRef(dims, ndims), keepdim != 0));
  })
}

int ps_op_sum(ps_tensor **out, const ps_tensor *x, const int64_t *dims, int ndims, int keepdim) {
  PS_PROTECT({
    check_out(out);
    if (ndims <= 0) return put(out, T(x).sum());
    return put(out, T(x).sum(at::IntArrayRef(dims, ndims), keepdim != 0));
  })
}

int ps_op_reshape(ps_tensor **out, const ps_tensor *x, const int64_t *shape, int ndim) {
  PS_PROTECT({
    check_out(out);
    if (ndim < 0 || ndim > PS_TENSOR_MAX_DIMS || (ndim && !shape)) fail(PS_EINVAL, "reshape: bad shape");
    return put(out, T(x).reshape(at::IntArrayRef(shape, ndim)));
  })
}

int ps_op_flatten(ps_tensor **out, const ps_tensor *x, int start_dim) {
  PS_PROTECT({
    check_out(out);
    return put(out, T(x).flatten(start_dim));
  })
}

int ps_op_linear(ps_tensor **out, const ps_tensor *x, const ps_tensor *w, const ps_tensor *b) {
  PS_PROTECT({
    check_out(out);
    return put(out, at::linear(T(x, "x"), T(w, "weight"), OPT(b)));
  })
}

int ps_op_matmul(ps_tensor **out, const ps_tensor *a, const ps_tensor *b) {
  PS_PROTECT({
    check_out(out);
    return put(out, at::matmul(T(a), T(b)));
  })
}

int ps_op_add(ps_tensor **out, const ps_tensor *a, const ps_tensor *b) {
  PS_PROTECT({
    check_out(out);
    return put(out, T(a) + T(b));
  })
}

int ps_op_sub(ps_tensor **out, const ps_tensor *a, const ps_tensor *b) {
  PS_PROTECT({
    check_out(out);
    return put(out, T(a) - T(b));
  })
}

int ps_op_mul(ps_tensor **out, const ps_tensor *a, const ps_tensor *b) {
  PS_PROTECT({
    check_out(out);
    return put(out, T(a) * T(b));
  })
}

int ps_op_affine(ps_tensor **out, const ps_tensor *x, double scale, double shift) {
  PS_PROTECT({
    check_out(out);
    return put(out, T(x) * scale + shift);
  })
}

int ps_op_softmax(ps_tensor **out, const ps_tensor *x, int dim) {
  PS_PROTECT({
    check_out(out);
    return put(out, at::softmax(T(x), dim));
  })
}

int ps_op_log_softmax(ps_tensor **out, const ps_tensor *x, int dim) {
  PS_PROTECT({
    check_out(out);
    return put(out, at::log_softmax(T(x), dim));
  })
}

int ps_op_cross_entropy(ps_tensor **out, const ps_tensor *logits, const ps_tensor *targets,
                        const ps_tensor *class_weight, double label_smoothing) {
  PS_PROTECT({
    check_out(out);
    if (label_smoothing < 0 || label_smoothing >= 1) fail(PS_EINVAL, "label_smoothing must be in [0, 1)");
    at::Tensor tg = T(targets, "targets");
    if (tg.scalar_type() != at::kLong) tg = tg.to(at::kLong);
    return put(out, at::cross_entropy_loss(T(logits, "logits"), tg, OPT(class_weight), at::Reduction::Mean, -100,
                                           label_smoothing));
  })
}

int ps_op_select(ps_tensor **out, const ps_tensor *x, int dim, int64_t index) {
  PS_PROTECT({
    check_out(out);
    return put(out, T(x).select(dim, index));
  })
}

int ps_op_argmax(ps_tensor **out, const ps_tensor *x, int dim) {
  PS_PROTECT({
    check_out(out);
    return put(out, T(x).argmax(dim));
  })
}

int ps_op_interpolate_bilinear(ps_tensor **out, const ps_tensor *x, int out_h, int out_w) {
  PS_PROTECT({
    check_out(out);
    if (out_h < 1 || out_w < 1) fail(PS_EINVAL, "interpolate: bad size");
    return put(out, at::upsample_bilinear2d(T(x), {out_h, out_w}, false));
  })
}

int ps_op_cat(ps_tensor **out, ps_tensor *const *xs, int n, int dim) {
  PS_PROTECT({
    check_out(out);
    if (!xs || n <= 0) fail(PS_EINVAL, "cat: no tensors");
    std::vector<at::Tensor> v;
    for (int i = 0; i < n; i++) v.push_back(T(xs[i]));
    return put(out, at::cat(v, dim));
  })
}

// ---- Adam ------------------------------------------------------------------------------------

}  // extern "C"

namespace {
// The optimizer state map is keyed by a string of the TensorImpl address in libtorch 1.x and by
// the address itself in later releases: pick the key type from the map.
std::string state_key_of(const at::Tensor &p, std::string *) {
  std::ostringstream s;
  s << p.unsafeGetTensorImpl();
  return s.str();
}
void *state_key_of(const at::Tensor &p, void **) { return p.unsafeGetTensorImpl(); }

torch::optim::AdamOptions &adam_options(torch::optim::Adam &opt) {
  return static_cast<torch::optim::AdamOptions &>(opt.param_groups()[0].options());
}

ps_adam *A(const ps_adam *a) {
  if (!a || !a->opt) fail(PS_EINVAL, "optimizer is NULL");
  return const_cast<ps_adam *>(a);
}
}  // namespace

extern "C" {

int ps_adam_create(ps_adam **out, ps_tensor *const *params, int n, const ps_adam_opts *opts) {
  PS_PROTECT({
    if (!out) fail(PS_EINVAL, "out is NULL");
    *out = nullptr;
    if (!params || n <= 0) fail(PS_EINVAL, "adam: no parameters");
    ps_adam_opts o{};
    if (opts) o = *opts;
    torch::optim::AdamOptions ao(o.lr > 0 ? o.lr : 1e-3);
    ao.betas(std::make_tuple(o.beta1 > 0 ? o.beta1 : 0.9, o.beta2 > 0 ? o.beta2 : 0.999));
    ao.eps(o.eps > 0 ? o.eps : 1e-8);
    ao.weight_decay(o.weight_decay > 0 ? o.weight_decay : 0.0);
    ao.amsgrad(o.amsgrad != 0);
    auto a = std::make_unique<ps_adam>();
    for (int i = 0; i < n; i++) {
      const at::Tensor &p = T(params[i], "parameter");
      if (!p.is_leaf()) fail(PS_EINVAL, "adam: parameter " + std::to_string(i) + " is not a leaf");
      a->params.push_back(p);
    }
    a->opt = std::make_unique<torch::optim::Adam>(a->params, ao);
    *out = a.release();
    return PS_OK;
  })
}

void ps_adam_free(ps_adam *opt) {
  try {
    delete opt;
  } catch (...) {
  }
}

int ps_adam_step(ps_adam *opt) {
  PS_PROTECT({
    A(opt)->opt->step();
    return PS_OK;
  })
}

int ps_adam_zero_grad(ps_adam *opt) {
  PS_PROTECT({
    for (auto &p : A(opt)->params) p.mutable_grad() = at::Tensor();
    return PS_OK;
  })
}

int ps_adam_set_lr(ps_adam *opt, double lr) {
  PS_PROTECT({
    if (!(lr > 0)) fail(PS_EINVAL, "learning rate must be > 0");
    for (auto &g : A(opt)->opt->param_groups()) static_cast<torch::optim::AdamOptions &>(g.options()).lr(lr);
    return PS_OK;
  })
}

double ps_adam_get_lr(const ps_adam *opt) {
  PS_PROTECT_VAL(0.0, {
    if (!opt || !opt->opt) return 0.0;
    return adam_options(*opt->opt).lr();
  })
}

int ps_adam_save(const ps_adam *opt, void **buf, size_t *len) {
  PS_PROTECT({
    if (!buf || !len) fail(PS_EINVAL, "buf/len is NULL");
    *buf = nullptr;
    *len = 0;
    torch::serialize::OutputArchive ar;
    A(opt)->opt->save(ar);
    std::ostringstream os;
    ar.save_to(os);
    std::string s = os.str();
    void *p = std::malloc(s.size() ? s.size() : 1);
    if (!p) fail(PS_ENOMEM, "adam: out of memory");
    std::memcpy(p, s.data(), s.size());
    *buf = p;
    *len = s.size();
    return PS_OK;
  })
}

int ps_adam_load(ps_adam *opt, const void *buf, size_t len) {
  PS_PROTECT({
    if (!buf || !len) fail(PS_EINVAL, "adam: empty state");
    ps_adam *a = A(opt);
    std::istringstream is(std::string((const char *)buf, len));
    torch::serialize::InputArchive ar;
    ar.load_from(is, a->params[0].device());
    a->opt->load(ar);
    // Check the restored state matches the parameters.
    for (size_t i = 0; i < a->params.size(); i++) {
      auto &p = a->params[i];
      using K = std::decay_t<decltype(a->opt->state().begin()->first)>;
      auto it = a->opt->state().find(state_key_of(p, (K *)nullptr));
      if (it == a->opt->state().end()) continue;
      auto &st = static_cast<torch::optim::AdamParamState &>(*it->second);
      if (st.exp_avg().sizes() != p.sizes())
        fail(PS_EFORMAT, "adam: saved state for parameter " + std::to_string(i) + " has another shape");
    }
    return PS_OK;
  })
}

int ps_adam_param_state(const ps_adam *opt, int index, ps_tensor **exp_avg, ps_tensor **exp_avg_sq,
                        int64_t *step) {
  PS_PROTECT({
    ps_adam *a = A(opt);
    if (exp_avg) *exp_avg = nullptr;
    if (exp_avg_sq) *exp_avg_sq = nullptr;
    if (step) *step = 0;
    if (index < 0 || index >= (int)a->params.size()) fail(PS_EINVAL, "adam: parameter index out of range");
    using K = std::decay_t<decltype(a->opt->state().begin()->first)>;
    auto it = a->opt->state().find(state_key_of(a->params[index], (K *)nullptr));
    if (it == a->opt->state().end()) return PS_OK;
    auto &st = static_cast<torch::optim::AdamParamState &>(*it->second);
    if (exp_avg) *exp_avg = new ps_tensor{st.exp_avg()};
    if (exp_avg_sq) *exp_avg_sq = new ps_tensor{st.exp_avg_sq()};
    if (step) *step = (int64_t)st.step();
    return PS_OK;
  })
}

}  // extern "C"

// ---- batch data on the device ----------------------------------------------------------------

extern "C" {

int ps_op_index_select(ps_tensor **out, const ps_tensor *x, int dim, const ps_tensor *idx) {
  PS_PROTECT({
    check_out(out);
    const at::Tensor &i = T(idx, "index");
    if (i.dim() != 1) fail(PS_EINVAL, "index_select: the index must be 1-D");
    at::Tensor ii = i.scalar_type() == at::kLong || i.scalar_type() == at::kInt ? i : i.to(at::kLong);
    return put(out, T(x).index_select(dim, ii.to(T(x).device())));
  })
}

int ps_op_affine_sample(ps_tensor **out, const ps_tensor *x, const ps_tensor *theta, int out_h, int out_w,
                        ps_pad_mode pad) {
  PS_PROTECT({
    check_out(out);
    const at::Tensor &xx = T(x, "input");
    if (xx.dim() != 4) fail(PS_EINVAL, "affine_sample: input must be (N, C, H, W)");
    if (!at::isFloatingType(xx.scalar_type())) fail(PS_EINVAL, "affine_sample: input must be floating point");
    if (out_h < 1 || out_w < 1) fail(PS_EINVAL, "affine_sample: bad output size");
    if (pad != PS_PAD_ZEROS && pad != PS_PAD_BORDER) fail(PS_EINVAL, "affine_sample: unknown padding mode");
    at::Tensor th = T(theta, "theta").to(xx.device(), xx.scalar_type());
    if (th.dim() != 3 || th.size(0) != xx.size(0) || th.size(1) != 2 || th.size(2) != 3)
      fail(PS_EINVAL, "affine_sample: theta must be (N, 2, 3) with N the input's batch");
    namespace F = torch::nn::functional;
    at::Tensor grid = F::affine_grid(th, {xx.size(0), xx.size(1), out_h, out_w}, false);
    auto o = F::GridSampleFuncOptions().mode(torch::kBilinear).align_corners(false);
    if (pad == PS_PAD_BORDER) o.padding_mode(torch::kBorder);
    else o.padding_mode(torch::kZeros);
    return put(out, F::grid_sample(xx, grid, o));
  })
}

int ps_op_div(ps_tensor **out, const ps_tensor *a, const ps_tensor *b) {
  PS_PROTECT({
    check_out(out);
    return put(out, T(a) / T(b));
  })
}

int ps_op_clamp(ps_tensor **out, const ps_tensor *x, double lo, double hi) {
  PS_PROTECT({
    check_out(out);
    if (!(lo <= hi)) fail(PS_EINVAL, "clamp: lo must not exceed hi");
    return put(out, T(x).clamp(lo, hi));
  })
}

int ps_op_expand(ps_tensor **out, const ps_tensor *x, const int64_t *shape, int ndim) {
  PS_PROTECT({
    check_out(out);
    if (ndim < 1 || ndim > PS_TENSOR_MAX_DIMS || !shape) fail(PS_EINVAL, "expand: bad shape");
    std::vector<int64_t> v(shape, shape + ndim);
    return put(out, T(x).expand(v));
  })
}

}  // extern "C"

// ---- the table the loader forwards through (torch_api.def) -----------------------------------

extern "C" const ps_torch_backend *ps_torch_backend_v1(void) {
  static const ps_torch_backend table = {
      (uint32_t)sizeof(ps_torch_backend),
#ifdef PS_HAVE_CUDA
      1u,
#else
      0u,
#endif
#define PS_TORCH_STATUS(name, params, args, on_fail) name,
#define PS_TORCH_VALUE(type, name, params, args, fail) name,
#define PS_TORCH_VOID(name, params, args) name,
#define PS_TORCH_LOCAL(type, name, params, args) name,
#include "torch_api.def"
  };
  return &table;
}
