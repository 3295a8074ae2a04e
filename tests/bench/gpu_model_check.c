/* GPU check of native/torch + native/model (run by tests/bench/gpu_model_check.sh on a CUDA
 * machine; not part of ctest): CUDA logits equal CPU logits, bf16 autocast + channels_last close,
 * a train step with Adam on CUDA, Grad-CAM gradient on CUDA equals CPU. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_model.h"

#define CHECK(x)                                                                       \
  do {                                                                                 \
    int st_ = (x);                                                                     \
    if (st_) {                                                                         \
      printf("FAIL %s: %s: %s\n", #x, ps_strerror(st_), ps_last_error());              \
      return 1;                                                                        \
    }                                                                                  \
  } while (0)

static double maxdiff(const float *a, const float *b, int n) {
  double m = 0;
  for (int i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
  return m;
}

int main(void) {
  printf("libtorch %s, cuda available %d, threads %d\n", ps_torch_version(), ps_torch_cuda_available(),
         ps_torch_get_threads());
  if (!ps_torch_cuda_available()) {
    printf("FAIL no CUDA\n");
    return 1;
  }
  enum { N = 4, S = 224, K = 3 };
  float *x = malloc(sizeof(float) * N * 3 * S * S);
  srand(1);
  for (int i = 0; i < N * 3 * S * S; i++) x[i] = (float)rand() / RAND_MAX * 4 - 2;
  ps_model *cpu = NULL, *gpu = NULL;
  CHECK(ps_model_create(K, PS_DEVICE_CPU, 9, &cpu));
  CHECK(ps_model_save(cpu, "/tmp/gpu_check.safetensors", NULL));
  CHECK(ps_model_load("/tmp/gpu_check.safetensors", PS_DEVICE_AUTO, &gpu));
  printf("AUTO resolved to %s\n", ps_model_device(gpu) == PS_DEVICE_CUDA ? "cuda" : "cpu");
  float lc[N * K], lg[N * K], lb[N * K];
  CHECK(ps_model_predict(cpu, x, N, S, S, lc, NULL));
  CHECK(ps_model_predict(gpu, x, N, S, S, lg, NULL));
  printf("fp32 cuda (TF32 default) vs cpu logits max |d| = %.3g\n", maxdiff(lc, lg, N * K));
  CHECK(ps_torch_set_tf32(0));
  CHECK(ps_model_predict(gpu, x, N, S, S, lg, NULL));
  printf("fp32 cuda (TF32 off) vs cpu logits max |d| = %.3g\n", maxdiff(lc, lg, N * K));
  CHECK(ps_torch_set_cudnn_benchmark(1));
  CHECK(ps_model_set_channels_last(gpu, 1));
  CHECK(ps_torch_set_autocast(1));
  CHECK(ps_model_predict(gpu, x, N, S, S, lb, NULL));
  CHECK(ps_torch_set_autocast(0));
  printf("bf16 autocast + channels_last vs cpu logits max |d| = %.3g (max |logit| %.3g)\n", maxdiff(lc, lb, N * K),
         fabs(lc[0]));
  /* One train step with Adam on CUDA and on CPU from the same weights. */
  ps_model *models[2] = {cpu, gpu};
  float fc[2][K * 512];
  for (int mi = 0; mi < 2; mi++) {
    ps_model *m = models[mi];
    CHECK(ps_model_set_channels_last(m, 0));
    ps_tensor *params[62], *xt = NULL, *lt = NULL, *loss = NULL, *tg = NULL;
    for (int i = 0; i < 62; i++) params[i] = ps_model_param(m, i, NULL);
    ps_adam *opt = NULL;
    ps_adam_opts ao = {0};
    CHECK(ps_adam_create(&opt, params, 62, &ao));
    int64_t shape[4] = {N, 3, S, S}, nn = N, t[N] = {0, 1, 2, 1};
    ps_device dev = ps_model_device(m);
    CHECK(ps_tensor_from_f32(&xt, x, shape, 4, dev));
    CHECK(ps_tensor_from_data(&tg, t, PS_DTYPE_I64, &nn, 1, dev));
    CHECK(ps_model_set_train(m, 1));
    CHECK(ps_model_forward(m, xt, &lt));
    CHECK(ps_op_cross_entropy(&loss, lt, tg, NULL, 0));
    CHECK(ps_tensor_backward(loss, NULL, 0));
    CHECK(ps_adam_step(opt));
    CHECK(ps_tensor_to_f32(ps_model_fc_weight(m), fc[mi], K * 512));
    void *buf = NULL;
    size_t len = 0;
    CHECK(ps_adam_save(opt, &buf, &len));
    CHECK(ps_adam_load(opt, buf, len));
    free(buf);
    ps_adam_free(opt);
    ps_tensor_free(xt);
    ps_tensor_free(lt);
    ps_tensor_free(loss);
    ps_tensor_free(tg);
    CHECK(ps_model_set_train(m, 0));
  }
  printf("after 1 Adam step, fc.weight cuda vs cpu max |d| = %.3g\n", maxdiff(fc[0], fc[1], K * 512));
  /* Grad-CAM gradient on both. */
  float g[2][N * 512 * 7 * 7];
  for (int mi = 0; mi < 2; mi++) {
    ps_model *m = models[mi];
    ps_tensor *xt = NULL, *lt = NULL, *acts[4] = {0}, *sc = NULL, *ss = NULL, *ga = NULL;
    int64_t shape[4] = {N, 3, S, S};
    CHECK(ps_tensor_from_f32(&xt, x, shape, 4, ps_model_device(m)));
    CHECK(ps_model_forward_features(m, xt, &lt, acts));
    CHECK(ps_op_select(&sc, lt, 1, 1));
    CHECK(ps_op_sum(&ss, sc, NULL, 0, 0));
    CHECK(ps_torch_grad(&ga, ss, NULL, &acts[3], 1, 0));
    CHECK(ps_tensor_to_f32(ga, g[mi], N * 512 * 49));
    for (int i = 0; i < 4; i++) ps_tensor_free(acts[i]);
    ps_tensor_free(xt);
    ps_tensor_free(lt);
    ps_tensor_free(sc);
    ps_tensor_free(ss);
    ps_tensor_free(ga);
  }
  printf("Grad-CAM d(score)/d(layer4) cuda vs cpu max |d| = %.3g\n", maxdiff(g[0], g[1], N * 512 * 49));
  /* A bf16-autocast training step with channels_last on CUDA gives a finite loss. */
  {
    ps_tensor *params[62], *xt = NULL, *lt = NULL, *loss = NULL, *tg = NULL;
    CHECK(ps_model_set_channels_last(gpu, 1)); /* before Adam: it replaces the conv weight tensors */
    for (int i = 0; i < 62; i++) params[i] = ps_model_param(gpu, i, NULL);
    ps_adam *opt = NULL;
    CHECK(ps_adam_create(&opt, params, 62, NULL));
    int64_t shape[4] = {N, 3, S, S}, nn = N, t[N] = {0, 1, 2, 1};
    CHECK(ps_tensor_from_f32(&xt, x, shape, 4, PS_DEVICE_CUDA));
    CHECK(ps_tensor_from_data(&tg, t, PS_DTYPE_I64, &nn, 1, PS_DEVICE_CUDA));
    CHECK(ps_model_set_train(gpu, 1));
    CHECK(ps_torch_set_autocast(1));
    CHECK(ps_model_forward(gpu, xt, &lt));
    CHECK(ps_op_cross_entropy(&loss, lt, tg, NULL, 0));
    CHECK(ps_torch_set_autocast(0));
    CHECK(ps_tensor_backward(loss, NULL, 0));
    CHECK(ps_adam_step(opt));
    double lv = 0;
    CHECK(ps_tensor_item(loss, &lv));
    printf("bf16 autocast train step: logits dtype %s, loss %.4f (%s)\n", ps_dtype_name(ps_tensor_dtype(lt)), lv,
           isfinite(lv) ? "finite" : "NOT FINITE");
    CHECK(ps_model_set_train(gpu, 0));
    CHECK(ps_model_set_channels_last(gpu, 0));
    ps_adam_free(opt);
    ps_tensor_free(xt);
    ps_tensor_free(lt);
    ps_tensor_free(loss);
    ps_tensor_free(tg);
  }
  /* Moving a model between devices keeps parameters as leaves. */
  CHECK(ps_model_to(cpu, PS_DEVICE_CUDA));
  CHECK(ps_model_predict(cpu, x, N, S, S, lb, NULL));
  CHECK(ps_model_to(cpu, PS_DEVICE_CPU));
  printf("model_to cuda and back: ok, requires_grad %d\n", ps_tensor_requires_grad(ps_model_param(cpu, 0, NULL)));
  ps_model_free(cpu);
  ps_model_free(gpu);
  free(x);
  printf("DONE\n");
  return 0;
}
