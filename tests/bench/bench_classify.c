/* In-process per-film latency of ps_infer_file (read + preprocess + forward), median of N after a
 * warm-up. Built and run by tests/bench/bench_classify.sh.   usage: bench_classify MODEL FILE N */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "ps_infer.h"

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc != 4) return 2;
  ps_model *m = NULL;
  int n = atoi(argv[3]), st = ps_model_load(argv[1], PS_DEVICE_CPU, &m);
  if (st) {
    fprintf(stderr, "%s\n", ps_last_error());
    return 1;
  }
  double *ts = calloc((size_t)n + 1, sizeof *ts);
  float p[PS_MODEL_MAX_CLASSES];
  int label;
  for (int i = 0; i <= n; i++) {
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    if ((st = ps_infer_file(m, argv[2], NULL, p, &label))) {
      fprintf(stderr, "%s\n", ps_last_error());
      return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    ts[i] = (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6;
  }
  qsort(ts + 1, (size_t)n, sizeof *ts, cmp);
  printf("%.3f\n", ts[1 + n / 2]);
  free(ts);
  ps_model_free(m);
  return 0;
}
