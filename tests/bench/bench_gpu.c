/* bench_gpu — model throughput of PneumoScope on one device, for tests/bench/gpu_check.sh.
 *
 *   bench_gpu [--device cuda|cpu] [--size 224] [--batch 32] [--steps 40] [--infer-batch 256]
 *
 * Training: train-mode forward + cross-entropy + backward + Adam step on a device-resident batch
 * (the data pipeline is measured separately by `pneumoscope train`). Inference: eval-mode forward
 * on a device-resident batch. On CUDA both run under bf16 autocast with channels_last and
 * cudnn.benchmark — the settings gpu_reference.py uses for torchvision. Prints one JSON object.
 * Not a test: numbers are compared with the reference measured in the same call. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ps_model.h"
#include "ps_torch.h"

#define CHECK(x)                                                                         \
  do {                                                                                   \
    int st_ = (x);                                                                       \
    if (st_) {                                                                           \
      fprintf(stderr, "bench_gpu: %s: %s: %s\n", #x, ps_strerror(st_), ps_last_error()); \
      return 1;                                                                          \
    }                                                                                    \
  } while (0)

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Reading a scalar back waits for the device: the clock then covers the queued work. */
static int sync_on(const ps_tensor *t) {
  double v;
  return ps_tensor_item(t, &v);
}

static int train_steps(ps_model *m, ps_adam *opt, const ps_tensor *x, const ps_tensor *y, int steps, int cuda,
                       ps_tensor **last_loss) {
  for (int s = 0; s < steps; s++) {
    ps_tensor *logits = NULL, *loss = NULL;
    /* autocast per step, as train does: switching it off drops its bf16 weight copies, so every
     * step pays the casts of the weights Adam changed (left on, they would be cast once) */
    int st = cuda ? ps_torch_set_autocast(1) : PS_OK;
    if (!st) st = ps_adam_zero_grad(opt);
    if (!st) st = ps_model_forward(m, x, &logits);
    if (!st) st = ps_op_cross_entropy(&loss, logits, y, NULL, 0.0);
    if (!st) st = ps_tensor_backward(loss, NULL, 0);
    if (!st) st = ps_adam_step(opt);
    if (cuda && !st) st = ps_torch_set_autocast(0);
    ps_tensor_free(logits);
    if (st) {
      ps_tensor_free(loss);
      return st;
    }
    ps_tensor_free(*last_loss);
    *last_loss = loss;
  }
  return PS_OK;
}

int main(int argc, char **argv) {
  const char *device = "cuda";
  int size = 224, batch = 32, steps = 40, ibatch = 256;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--device")) device = argv[i + 1];
    else if (!strcmp(argv[i], "--size")) size = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--batch")) batch = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--steps")) steps = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--infer-batch")) ibatch = atoi(argv[i + 1]);
    else {
      fprintf(stderr, "bench_gpu: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  if (size < 32 || batch < 1 || steps < 1 || ibatch < 1) {
    fprintf(stderr, "bench_gpu: bad sizes\n");
    return 2;
  }
  ps_device dev;
  CHECK(ps_torch_resolve_device(!strcmp(device, "cpu") ? PS_DEVICE_CPU : PS_DEVICE_CUDA, &dev));
  int cuda = dev == PS_DEVICE_CUDA;
  ps_model *m = NULL;
  CHECK(ps_model_create(2, dev, 1, &m));
  if (cuda) {
    CHECK(ps_model_set_channels_last(m, 1));
    CHECK(ps_torch_set_cudnn_benchmark(1));
  }
  int64_t xs[4] = {batch, 3, size, size}, ys[1] = {batch};
  ps_tensor *x = NULL, *y = NULL;
  CHECK(ps_tensor_zeros(&x, xs, 4, PS_DTYPE_F32, dev));
  CHECK(ps_tensor_normal_(x, 0.0, 1.0));
  int64_t *labels = malloc(sizeof(int64_t) * (size_t)batch);
  for (int i = 0; i < batch; i++) labels[i] = i & 1;
  CHECK(ps_tensor_from_data(&y, labels, PS_DTYPE_I64, ys, 1, dev));
  free(labels);

  ps_tensor **params = malloc(sizeof *params * (size_t)ps_model_num_params(m));
  for (int i = 0; i < ps_model_num_params(m); i++) params[i] = ps_model_param(m, i, NULL);
  ps_adam_opts ao = {1e-3, 0.9, 0.999, 1e-8, 0.0, 0};
  ps_adam *opt = NULL;
  CHECK(ps_adam_create(&opt, params, ps_model_num_params(m), &ao));
  CHECK(ps_model_set_train(m, 1));
  ps_tensor *loss = NULL;
  CHECK(train_steps(m, opt, x, y, 5, cuda, &loss)); /* warm-up: cudnn autotuning, allocator */
  CHECK(sync_on(loss));
  double t0 = now();
  CHECK(train_steps(m, opt, x, y, steps, cuda, &loss));
  CHECK(sync_on(loss));
  double train_ips = (double)steps * batch / (now() - t0);
  ps_tensor_free(loss);

  /* Inference: eval mode, no autograd, a bigger device-resident batch. */
  CHECK(ps_model_set_train(m, 0));
  int prev = 0;
  CHECK(ps_torch_set_grad_enabled(0, &prev));
  int64_t is[4] = {ibatch, 3, size, size};
  ps_tensor *xi = NULL, *logits = NULL;
  CHECK(ps_tensor_zeros(&xi, is, 4, PS_DTYPE_F32, dev));
  CHECK(ps_tensor_normal_(xi, 0.0, 1.0));
  int reps = cuda ? 30 : 2;
  if (cuda) CHECK(ps_torch_set_autocast(1)); /* the weights stay fixed: one bf16 copy of each */
  for (int r = 0; r < 3; r++) {
    ps_tensor_free(logits);
    logits = NULL;
    CHECK(ps_model_forward(m, xi, &logits));
  }
  float *host = malloc(sizeof(float) * (size_t)ibatch * 2);
  CHECK(ps_tensor_to_f32(logits, host, (size_t)ibatch * 2));
  t0 = now();
  for (int r = 0; r < reps; r++) {
    ps_tensor_free(logits);
    logits = NULL;
    CHECK(ps_model_forward(m, xi, &logits));
  }
  CHECK(ps_tensor_to_f32(logits, host, (size_t)ibatch * 2));
  double infer_ips = (double)reps * ibatch / (now() - t0);
  if (cuda) CHECK(ps_torch_set_autocast(0));
  free(host);
  printf("{\"impl\": \"pneumoscope\", \"libtorch\": \"%s\", \"device\": \"%s\", \"batch\": %d, \"size\": %d, "
         "\"train_images_per_s\": %.1f, \"infer_batch\": %d, \"infer_images_per_s\": %.1f}\n",
         ps_torch_version(), cuda ? "cuda" : "cpu", batch, size, train_ips, ibatch, infer_ips);
  ps_tensor_free(logits);
  ps_tensor_free(xi);
  ps_tensor_free(x);
  ps_tensor_free(y);
  ps_adam_free(opt);
  free(params);
  ps_model_free(m);
  return 0;
}
