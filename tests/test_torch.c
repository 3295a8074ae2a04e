/* test_torch.c — the libtorch C wrapper: copies, queries, errors as statuses (never exceptions),
 * devices, autograd, and each op against torch itself (tests/ref/model_ops_reference.py). */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_torch.h"
#include "test_util.h"

static char refdir[1024];

static void assert_ok(int st, const char *what) {
  if (st != PS_OK) fail_msg("%s: %s: %s", what, ps_strerror(st), ps_last_error());
}

static int setup_ref(void **s) {
  (void)s;
  if (!ps_test_have_python("torch,numpy")) return 0;
  snprintf(refdir, sizeof refdir, "%s/ops", ps_test_tmpdir());
  return ps_test_system("'%s' '%s' '%s'", PS_PYTHON, ps_test_src("tests/ref/model_ops_reference.py"), refdir);
}

/* Load name.npy as a float32 tensor. */
static ps_tensor *npy(const char *name) {
  char p[1200];
  snprintf(p, sizeof p, "%s/%s.npy", refdir, name);
  size_t shape[4];
  int nd = 0;
  double *d = ps_test_read_npy(p, shape, &nd);
  if (!d) fail_msg("cannot read %s", p);
  size_t n = 1;
  int64_t sh[4];
  for (int i = 0; i < nd; i++) {
    n *= shape[i];
    sh[i] = (int64_t)shape[i];
  }
  float *f = malloc(n * sizeof *f + 4);
  for (size_t i = 0; i < n; i++) f[i] = (float)d[i];
  ps_tensor *t = NULL;
  assert_ok(ps_tensor_from_f32(&t, f, sh, nd, PS_DEVICE_CPU), "from_f32");
  free(f);
  free(d);
  return t;
}

static void expect_close(const ps_tensor *got, const char *refname, double tol) {
  ps_tensor *ref = npy(refname);
  int64_t n = ps_tensor_numel(ref);
  assert_non_null(got);
  if (ps_tensor_numel(got) != n) fail_msg("%s: %lld elements, reference %lld", refname, (long long)ps_tensor_numel(got), (long long)n);
  float *a = malloc((size_t)n * 4 + 4), *b = malloc((size_t)n * 4 + 4);
  assert_ok(ps_tensor_to_f32(got, a, (size_t)n), "to_f32");
  assert_ok(ps_tensor_to_f32(ref, b, (size_t)n), "to_f32");
  double worst = 0;
  for (int64_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - b[i]);
    if (!(d <= worst)) worst = d;
  }
  print_message("  %-12s max |delta| %.3g\n", refname, worst);
  if (!(worst <= tol)) fail_msg("%s: max |delta| %.3g > %.3g", refname, worst, tol);
  free(a);
  free(b);
  ps_tensor_free(ref);
}

static void test_runtime(void **s) {
  (void)s;
  assert_true(ps_torch_version()[0] >= '1' && ps_torch_version()[0] <= '9');
  /* The first call set libtorch's threads to ps_default_threads() (libtorch alone uses 1 here). */
  assert_int_equal(ps_torch_get_threads(), ps_default_threads());
  assert_ok(ps_torch_set_threads(1), "threads");
  assert_int_equal(ps_torch_get_threads(), 1);
  assert_ok(ps_torch_set_threads(0), "threads");
  assert_int_equal(ps_torch_get_threads(), ps_default_threads());
  assert_int_equal(ps_torch_set_threads(-1), PS_EINVAL);
  assert_non_null(strstr(ps_torch_config(), "BLAS"));
  ps_device d = PS_DEVICE_CUDA;
  assert_ok(ps_torch_resolve_device(PS_DEVICE_AUTO, &d), "auto");
  assert_int_equal(d, ps_torch_cuda_available() ? PS_DEVICE_CUDA : PS_DEVICE_CPU);
  if (!ps_torch_cuda_available()) {
    assert_int_equal(ps_torch_resolve_device(PS_DEVICE_CUDA, &d), PS_EUNSUPPORTED);
    assert_non_null(strstr(ps_last_error(), "CUDA requested but not available"));
    ps_tensor *t = NULL;
    int64_t n = 2;
    float v[2] = {1, 2};
    assert_int_equal(ps_tensor_from_f32(&t, v, &n, 1, PS_DEVICE_CUDA), PS_EUNSUPPORTED);
    assert_null(t);
    assert_int_equal(ps_torch_set_autocast(1), PS_EUNSUPPORTED);
  }
  assert_ok(ps_torch_set_autocast(0), "autocast off");
  assert_ok(ps_torch_set_cudnn_benchmark(1), "cudnn.benchmark");
  assert_ok(ps_torch_set_cudnn_benchmark(0), "cudnn.benchmark");
}

static void test_tensors(void **s) {
  (void)s;
  float v[24];
  for (int i = 0; i < 24; i++) v[i] = (float)i * 0.5f - 3;
  int64_t shape[4] = {2, 3, 2, 2};
  ps_tensor *t = NULL, *c = NULL, *r = NULL;
  assert_ok(ps_tensor_from_f32(&t, v, shape, 4, PS_DEVICE_CPU), "from_f32");
  assert_int_equal(ps_tensor_ndim(t), 4);
  assert_int_equal(ps_tensor_size(t, 1), 3);
  assert_int_equal(ps_tensor_size(t, -1), 2);
  assert_int_equal(ps_tensor_size(t, 4), -1);
  assert_int_equal(ps_tensor_numel(t), 24);
  assert_int_equal(ps_tensor_dtype(t), PS_DTYPE_F32);
  assert_int_equal(ps_tensor_device(t), PS_DEVICE_CPU);
  int64_t got[PS_TENSOR_MAX_DIMS];
  assert_int_equal(ps_tensor_shape(t, got), 4);
  assert_memory_equal(got, shape, sizeof shape);
  float out[24];
  assert_ok(ps_tensor_to_f32(t, out, 24), "to_f32");
  assert_memory_equal(out, v, sizeof v);
  assert_int_equal(ps_tensor_to_f32(t, out, 23), PS_EINVAL);
  /* The copy-in really copies: changing the source buffer does not change the tensor. */
  v[0] = 100;
  assert_ok(ps_tensor_to_f32(t, out, 24), "to_f32");
  assert_true(out[0] == -3.0f);
  /* Clone is independent; ref shares. */
  assert_ok(ps_tensor_clone(&c, t), "clone");
  assert_ok(ps_tensor_ref(&r, t), "ref");
  assert_ok(ps_tensor_fill_(t, 7), "fill");
  assert_ok(ps_tensor_to_f32(c, out, 24), "to_f32");
  assert_true(out[5] == -0.5f);
  assert_ok(ps_tensor_to_f32(r, out, 24), "to_f32");
  assert_true(out[5] == 7.0f);
  /* dtype conversions: bf16 bits of 1.0 and -2.0 are 0x3F80, 0xC000 (IEEE bfloat16). */
  float two[2] = {1.0f, -2.0f};
  int64_t n2 = 2;
  ps_tensor *f = NULL, *i64 = NULL;
  assert_ok(ps_tensor_from_f32(&f, two, &n2, 1, PS_DEVICE_CPU), "from");
  uint16_t bits[2];
  assert_ok(ps_tensor_to_data(f, PS_DTYPE_BF16, bits, 2), "to bf16");
  assert_int_equal(bits[0], 0x3F80);
  assert_int_equal(bits[1], 0xC000);
  assert_ok(ps_tensor_to_data(f, PS_DTYPE_F16, bits, 2), "to f16");
  assert_int_equal(bits[0], 0x3C00);
  int64_t iv[2] = {5, -9};
  assert_ok(ps_tensor_from_data(&i64, iv, PS_DTYPE_I64, &n2, 1, PS_DEVICE_CPU), "i64");
  assert_int_equal(ps_tensor_dtype(i64), PS_DTYPE_I64);
  assert_ok(ps_tensor_add_scalar_(i64, 1), "add_");
  int64_t io[2];
  assert_ok(ps_tensor_to_data(i64, PS_DTYPE_I64, io, 2), "to i64");
  assert_int_equal(io[0], 6);
  assert_int_equal(io[1], -8);
  assert_ok(ps_tensor_copy_from_data_(f, bits, PS_DTYPE_F16, 2), "copy f16");
  assert_ok(ps_tensor_to_f32(f, two, 2), "to");
  assert_true(two[0] == 1.0f && two[1] == -2.0f);
  double item;
  assert_int_equal(ps_tensor_item(f, &item), PS_EINVAL);
  /* Errors are statuses with libtorch's message, never exceptions. */
  ps_tensor *w = NULL, *y = NULL;
  int64_t ws[4] = {4, 5, 3, 3};
  assert_ok(ps_tensor_zeros(&w, ws, 4, PS_DTYPE_F32, PS_DEVICE_CPU), "zeros");
  assert_int_equal(ps_op_conv2d(&y, t, w, NULL, 1, 1), PS_ETORCH);
  assert_null(y);
  print_message("  conv2d channel mismatch -> %s\n", ps_last_error());
  assert_non_null(strstr(ps_last_error(), "torch: "));
  assert_int_equal(ps_op_relu(&y, NULL), PS_EINVAL);
  assert_int_equal(ps_op_relu(NULL, t), PS_EINVAL);
  int64_t neg = -1;
  assert_int_equal(ps_tensor_zeros(&y, &neg, 1, PS_DTYPE_F32, PS_DEVICE_CPU), PS_EINVAL);
  assert_int_equal(ps_tensor_zeros(&y, shape, 99, PS_DTYPE_F32, PS_DEVICE_CPU), PS_EINVAL);
  assert_int_equal(ps_tensor_from_data(&y, v, (ps_dtype)42, shape, 4, PS_DEVICE_CPU), PS_EINVAL);
  ps_tensor_free(NULL);
  ps_tensor_free(t);
  ps_tensor_free(c);
  ps_tensor_free(r);
  ps_tensor_free(f);
  ps_tensor_free(i64);
  ps_tensor_free(w);
}

static void test_autograd(void **s) {
  (void)s;
  float v[3] = {1.5f, -2.0f, 0.25f};
  int64_t n = 3;
  ps_tensor *x = NULL, *sq = NULL, *sum = NULL, *g = NULL, *h = NULL, *hs = NULL;
  assert_ok(ps_tensor_from_f32(&x, v, &n, 1, PS_DEVICE_CPU), "x");
  assert_ok(ps_tensor_set_requires_grad(x, 1), "rg");
  assert_ok(ps_tensor_grad(&g, x), "grad");
  assert_null(g);
  assert_ok(ps_op_mul(&sq, x, x), "mul");
  assert_ok(ps_tensor_retain_grad(sq), "retain");
  assert_ok(ps_op_sum(&sum, sq, NULL, 0, 0), "sum");
  assert_int_equal(ps_tensor_requires_grad(sum), 1);
  assert_ok(ps_tensor_backward(sum, NULL, 1), "backward"); /* d/dx sum(x^2) = 2x */
  assert_ok(ps_tensor_grad(&g, x), "grad");
  float gv[3];
  assert_ok(ps_tensor_to_f32(g, gv, 3), "to");
  for (int i = 0; i < 3; i++) assert_true(gv[i] == 2 * v[i]);
  ps_tensor_free(g);
  assert_ok(ps_tensor_grad(&g, sq), "grad of retained non-leaf"); /* d sum / d sq = 1 */
  assert_ok(ps_tensor_to_f32(g, gv, 3), "to");
  for (int i = 0; i < 3; i++) assert_true(gv[i] == 1.0f);
  ps_tensor_free(g);
  /* Gradients accumulate; zero_grad clears. */
  assert_ok(ps_tensor_backward(sum, NULL, 0), "backward 2");
  assert_ok(ps_tensor_grad(&g, x), "grad");
  assert_ok(ps_tensor_to_f32(g, gv, 3), "to");
  assert_true(gv[1] == 4 * v[1]);
  ps_tensor_free(g);
  assert_ok(ps_tensor_zero_grad(x), "zero_grad");
  assert_ok(ps_tensor_grad(&g, x), "grad");
  assert_null(g);
  /* The graph is freed without retain_graph: a third backward is an error status. */
  assert_int_equal(ps_tensor_backward(sum, NULL, 0), PS_ETORCH);
  /* Non-scalar backward needs a grad_output. */
  assert_int_equal(ps_tensor_backward(sq, NULL, 0), PS_EINVAL);
  /* No-grad mode: nothing recorded. */
  int prev = -1;
  assert_ok(ps_torch_set_grad_enabled(0, &prev), "no_grad");
  assert_int_equal(prev, 1);
  assert_int_equal(ps_torch_grad_enabled(), 0);
  assert_ok(ps_op_mul(&h, x, x), "mul");
  assert_int_equal(ps_tensor_requires_grad(h), 0);
  assert_ok(ps_torch_set_grad_enabled(prev, NULL), "restore");
  /* torch.autograd.grad: d sum(x*x*3)/dx = 6x, without touching x.grad. */
  ps_tensor_free(h);
  ps_tensor *sq2 = NULL;
  assert_ok(ps_op_mul(&sq2, x, x), "mul");
  assert_ok(ps_op_affine(&h, sq2, 3.0, 0.0), "affine");
  assert_ok(ps_op_sum(&hs, h, NULL, 0, 0), "sum");
  ps_tensor *gs[1] = {NULL};
  assert_ok(ps_torch_grad(gs, hs, NULL, &x, 1, 0), "autograd.grad");
  assert_ok(ps_tensor_to_f32(gs[0], gv, 3), "to");
  for (int i = 0; i < 3; i++) assert_true(fabs(gv[i] - 6 * v[i]) < 1e-6);
  assert_ok(ps_tensor_grad(&g, x), "grad");
  assert_null(g);
  ps_tensor_free(gs[0]);
  ps_tensor_free(sq2);
  ps_tensor_free(x);
  ps_tensor_free(sq);
  ps_tensor_free(sum);
  ps_tensor_free(h);
  ps_tensor_free(hs);
}

static void test_ops_vs_torch(void **s) {
  (void)s;
  PS_TEST_SKIP_UNLESS(refdir[0], PS_PYTHON " lacks torch");
  ps_tensor *x = npy("x"), *w = npy("w"), *b = npy("b"), *y = NULL;
  assert_ok(ps_op_conv2d(&y, x, w, b, 2, 1), "conv2d");
  expect_close(y, "conv", 1e-5);
  ps_tensor_free(y);
  ps_tensor *g = npy("bn_g"), *be = npy("bn_beta"), *rm = npy("bn_rm0"), *rv = npy("bn_rv0");
  assert_ok(ps_op_batch_norm(&y, x, g, be, rm, rv, 0, 0.1, 1e-5), "bn eval");
  expect_close(y, "bn_eval", 1e-5);
  expect_close(rm, "bn_rm0", 0);
  ps_tensor_free(y);
  assert_ok(ps_op_batch_norm(&y, x, g, be, rm, rv, 1, 0.1, 1e-5), "bn train");
  expect_close(y, "bn_train", 1e-5);
  expect_close(rm, "bn_rm1", 1e-6);
  expect_close(rv, "bn_rv1", 1e-6);
  ps_tensor_free(y);
  assert_ok(ps_op_max_pool2d(&y, x, 3, 2, 1), "maxpool");
  expect_close(y, "maxpool", 0);
  ps_tensor_free(y);
  assert_ok(ps_op_adaptive_avg_pool2d(&y, x, 4, 3), "aap");
  expect_close(y, "aap", 1e-6);
  ps_tensor_free(y);
  int64_t dims[2] = {2, 3};
  assert_ok(ps_op_mean(&y, x, dims, 2, 1), "mean");
  expect_close(y, "mean23", 1e-6);
  assert_int_equal(ps_tensor_ndim(y), 4);
  ps_tensor_free(y);
  assert_ok(ps_op_interpolate_bilinear(&y, x, 13, 5), "interp");
  expect_close(y, "interp", 1e-5);
  ps_tensor_free(y);
  ps_tensor *lx = npy("lin_x"), *lw = npy("lin_w"), *lb = npy("lin_b"), *l = NULL, *sm = NULL, *ls = NULL;
  assert_ok(ps_tensor_set_requires_grad(lx, 1), "rg");
  assert_ok(ps_op_linear(&l, lx, lw, lb), "linear");
  expect_close(l, "lin", 1e-5);
  assert_ok(ps_op_softmax(&sm, l, 1), "softmax");
  expect_close(sm, "softmax", 1e-6);
  assert_ok(ps_op_log_softmax(&ls, l, -1), "log_softmax");
  expect_close(ls, "log_softmax", 1e-5);
  /* cross entropy: int64 targets from the .npy (read as floats, converted). */
  ps_tensor *tf = npy("ce_t"), *t = NULL, *cw = npy("ce_w"), *ce = NULL, *ce2 = NULL, *ce3 = NULL, *gx = NULL;
  assert_ok(ps_tensor_to(&t, tf, PS_DEVICE_CPU, PS_DTYPE_I64), "targets");
  assert_ok(ps_op_cross_entropy(&ce, l, t, cw, 0.0), "ce");
  expect_close(ce, "ce", 1e-6);
  assert_ok(ps_op_cross_entropy(&ce2, l, t, cw, 0.1), "ce ls");
  expect_close(ce2, "ce_ls", 1e-6);
  assert_ok(ps_op_cross_entropy(&ce3, l, t, NULL, 0.0), "ce plain");
  expect_close(ce3, "ce_plain", 1e-6);
  assert_int_equal(ps_op_cross_entropy(&y, l, t, cw, 1.0), PS_EINVAL);
  assert_ok(ps_tensor_backward(ce, NULL, 0), "backward");
  assert_ok(ps_tensor_grad(&gx, lx), "grad");
  expect_close(gx, "ce_grad_x", 1e-6);
  /* matmul == linear without bias; argmax; select; cat; reshape. */
  ps_tensor *am = NULL, *sel = NULL, *cat = NULL, *rs = NULL, *xs[2] = {x, x};
  assert_ok(ps_op_argmax(&am, sm, 1), "argmax");
  assert_int_equal(ps_tensor_dtype(am), PS_DTYPE_I64);
  assert_ok(ps_op_select(&sel, sm, 1, 2), "select");
  assert_int_equal(ps_tensor_ndim(sel), 1);
  assert_ok(ps_op_cat(&cat, xs, 2, 0), "cat");
  assert_int_equal(ps_tensor_size(cat, 0), 4);
  int64_t rsh[2] = {-1, 81};
  assert_ok(ps_op_reshape(&rs, x, rsh, 2), "reshape");
  assert_int_equal(ps_tensor_size(rs, 0), 6);
  ps_tensor *objs[] = {x, w, b, g, be, rm, rv, lx, lw, lb, l, sm, ls, tf, t, cw, ce, ce2, ce3, gx, am, sel, cat, rs};
  for (size_t i = 0; i < sizeof objs / sizeof *objs; i++) ps_tensor_free(objs[i]);
}

static void test_adam_vs_torch(void **s) {
  (void)s;
  PS_TEST_SKIP_UNLESS(refdir[0], PS_PYTHON " lacks torch");
  ps_tensor *p = npy("adam_p0"), *target = npy("adam_target");
  assert_ok(ps_tensor_set_requires_grad(p, 1), "rg");
  ps_adam *opt = NULL;
  ps_adam_opts o = {0.05, 0.8, 0.99, 1e-6, 0.01, 0};
  assert_ok(ps_adam_create(&opt, &p, 1, &o), "adam");
  assert_true(ps_adam_get_lr(opt) == 0.05);
  for (int i = 0; i < 5; i++) {
    ps_tensor *d = NULL, *d2 = NULL, *l = NULL;
    assert_ok(ps_adam_zero_grad(opt), "zero_grad");
    assert_ok(ps_op_sub(&d, p, target), "sub");
    assert_ok(ps_op_mul(&d2, d, d), "mul");
    assert_ok(ps_op_sum(&l, d2, NULL, 0, 0), "sum");
    assert_ok(ps_tensor_backward(l, NULL, 0), "backward");
    assert_ok(ps_adam_step(opt), "step");
    ps_tensor_free(d);
    ps_tensor_free(d2);
    ps_tensor_free(l);
  }
  expect_close(p, "adam_p5", 1e-6);
  assert_ok(ps_adam_set_lr(opt, 0.5), "set_lr");
  assert_true(ps_adam_get_lr(opt) == 0.5);
  assert_int_equal(ps_adam_set_lr(opt, -1), PS_EINVAL);
  ps_tensor *nonleaf = NULL;
  assert_ok(ps_op_affine(&nonleaf, p, 2, 0), "affine");
  ps_adam *bad = NULL;
  assert_int_equal(ps_adam_create(&bad, &nonleaf, 1, NULL), PS_EINVAL);
  assert_null(bad);
  ps_adam_free(opt);
  ps_adam_free(NULL);
  ps_tensor_free(nonleaf);
  ps_tensor_free(p);
  ps_tensor_free(target);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_runtime),
      cmocka_unit_test(test_tensors),
      cmocka_unit_test(test_autograd),
      cmocka_unit_test(test_ops_vs_torch),
      cmocka_unit_test(test_adam_vs_torch),
  };
  return cmocka_run_group_tests(tests, setup_ref, NULL);
}
