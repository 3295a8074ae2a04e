/* In-process per-film latency of ps_infer_file (read + preprocess + forward), median of N after a
 * warm-up. Built and run by tests/bench/bench_classify.sh.
 *   usage: bench_classify MODEL FILE N [fast] [bf16] [forward]
 * fast: reduced-scale JPEG decoding (classify --fast-decode); bf16: --precision bf16; forward: the
 * forward pass alone (one film's worth of input, batch of 1), no reading or preprocessing. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ps_infer.h"

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc < 4) return 2;
  ps_model *m = NULL;
  ps_read_opts read = {0};
  int n = atoi(argv[3]), forward = 0, st = ps_model_load(argv[1], PS_DEVICE_CPU, &m);
  for (int i = 4; i < argc && !st; i++) {
    if (!strcmp(argv[i], "fast")) read.min_side = 2 * ps_model_meta_get(m)->input_size;
    else if (!strcmp(argv[i], "bf16")) st = ps_model_set_precision(m, PS_PRECISION_BF16);
    else if (!strcmp(argv[i], "forward")) forward = 1;
    else return 2;
  }
  if (st) {
    fprintf(stderr, "%s\n", ps_last_error());
    return 1;
  }
  double *ts = calloc((size_t)n + 1, sizeof *ts);
  const int S = ps_model_meta_get(m)->input_size;
  float *x = calloc((size_t)3 * S * S, sizeof *x);
  for (size_t i = 0; i < (size_t)3 * S * S; i++) x[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
  float p[PS_MODEL_MAX_CLASSES];
  int label;
  for (int i = 0; i <= n; i++) {
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    if (forward) st = ps_model_predict(m, x, 1, S, S, p, NULL);
    else st = ps_infer_file(m, argv[2], &read, p, &label);
    if (st) {
      fprintf(stderr, "%s\n", ps_last_error());
      return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    ts[i] = (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6;
  }
  qsort(ts + 1, (size_t)n, sizeof *ts, cmp);
  printf("%.3f\n", ts[1 + n / 2]);
  free(ts);
  free(x);
  ps_model_free(m);
  return 0;
}
