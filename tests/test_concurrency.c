/* test_concurrency.c — several threads classifying real films through ONE model handle give the
 * same probabilities as one thread doing it alone (the Fiji plugin and the JNI layer share a
 * loaded model between ImageJ threads). Each thread also reads and preprocesses its films itself
 * (PNG, JPEG and DICOM readers used concurrently). */
#define _GNU_SOURCE
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_common.h"
#include "ps_image.h"
#include "ps_image_io.h"
#include "ps_infer.h"
#include "ps_model.h"
#include "ps_preprocess.h"
#include "test_util.h"

#define NFILMS 8
#define NTHREADS 4
#define ROUNDS 1

static const char *films[NFILMS] = {
    "png/nih_00000001_000.png",
    "png/nih_00027426_000.png",
    "dicom/gcp_dicom_00000001_000.dcm",
    "dicom/CR-MONO1-10-chest.dcm",
    "dicom/siim_1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm",
    "dicom/torchxrayvision_Fake_MONOHR1.dcm",
    NULL, /* two Kaggle JPEGs filled in at setup */
    NULL,
};
static char paths[NFILMS][4096];
static ps_model *model;
static int size;
static float ref[NFILMS][PS_MODEL_MAX_CLASSES];
static int K;

static int classify(int i, float *probs) {
  ps_image *img = NULL;
  int st = ps_image_read(paths[i], NULL, &img);
  if (st != PS_OK) return st;
  const ps_model_meta *mm = ps_model_meta_get(model);
  float *x = malloc(sizeof(float) * 3 * (size_t)size * size);
  st = x ? ps_preprocess_tensor_ex(img, size, mm->mean, mm->std, x) : PS_ENOMEM;
  if (st == PS_OK) st = ps_model_predict(model, x, 1, size, size, NULL, probs);
  free(x);
  ps_image_free(img);
  return st;
}

static int setup(void **state) {
  (void)state;
  for (int i = 0; i < NFILMS; i++) {
    if (films[i]) {
      snprintf(paths[i], sizeof paths[i], "%s", ps_test_data(films[i]));
    }
  }
  /* first NORMAL and first PNEUMONIA film listed in the Kaggle manifest */
  int status = 0;
  char *out = ps_test_capture(&status, "cd '%s' && ls NORMAL | head -1 && ls PNEUMONIA | head -1",
                              ps_test_data("kaggle"));
  if (!out || status != 0) return -1;
  char *nl = strchr(out, '\n');
  if (!nl) return -1;
  *nl = 0;
  char *second = nl + 1;
  second[strcspn(second, "\n")] = 0;
  snprintf(paths[6], sizeof paths[6], "%s/NORMAL/%s", ps_test_data("kaggle"), out);
  snprintf(paths[7], sizeof paths[7], "%s/PNEUMONIA/%s", ps_test_data("kaggle"), second);
  free(out);

  /* the bundled model when present, else a seeded ResNet18 (same forward code either way) */
  char mp[4096];
  if (ps_model_default_path(mp, sizeof mp) == PS_OK && ps_model_load(mp, PS_DEVICE_CPU, &model) == PS_OK) {
    print_message("model: %s\n", mp);
  } else if (ps_model_create(2, PS_DEVICE_CPU, 11, &model) != PS_OK) {
    return -1;
  }
  size = ps_model_meta_get(model)->input_size;
  if (size > 224 || size < 32) size = 224;
  K = ps_model_num_classes(model);
  ps_torch_set_threads(2);
  for (int i = 0; i < NFILMS; i++)
    if (classify(i, ref[i]) != PS_OK) {
      fprintf(stderr, "reference classify %s: %s\n", paths[i], ps_last_error());
      return -1;
    }
  return 0;
}

static int teardown(void **state) {
  (void)state;
  ps_model_free(model);
  return 0;
}

typedef struct {
  int id;
  int bad;
  double maxdiff;
  char err[512];
} worker;

static void *run(void *arg) {
  worker *w = arg;
  for (int r = 0; r < ROUNDS; r++)
    for (int k = 0; k < NFILMS; k++) {
      int i = (k * 3 + w->id * 5 + r) % NFILMS; /* each thread its own order */
      float p[PS_MODEL_MAX_CLASSES];
      int st = classify(i, p);
      if (st != PS_OK) {
        w->bad++;
        snprintf(w->err, sizeof w->err, "%s: %s", paths[i], ps_last_error());
        continue;
      }
      for (int c = 0; c < K; c++) {
        double d = fabs((double)p[c] - ref[i][c]);
        if (!(d <= w->maxdiff)) w->maxdiff = isnan(d) ? INFINITY : d;
      }
    }
  return NULL;
}

/* Start NTHREADS threads of fn over w[], join them; every worker must be clean. The worst |dp|. */
static double run_threads(void *(*fn)(void *), worker *w) {
  pthread_t th[NTHREADS];
  memset(w, 0, sizeof(worker) * NTHREADS);
  for (int t = 0; t < NTHREADS; t++) {
    w[t].id = t;
    assert_int_equal(pthread_create(&th[t], NULL, fn, &w[t]), 0);
  }
  double worst = 0;
  for (int t = 0; t < NTHREADS; t++) {
    pthread_join(th[t], NULL);
    if (w[t].bad) print_error("thread %d: %d failures, last: %s\n", t, w[t].bad, w[t].err);
    assert_int_equal(w[t].bad, 0);
    if (w[t].maxdiff > worst) worst = w[t].maxdiff;
  }
  return worst;
}

static void test_threads_agree(void **state) {
  (void)state;
  worker w[NTHREADS];
  double worst = run_threads(run, w);
  print_message("%d threads x %d films x %d rounds through one model: max |p - p_single| = %.3g\n", NTHREADS,
                NFILMS, ROUNDS, worst);
  /* Same inputs, same weights, eval-mode BN: only the libtorch intra-op split may differ. */
  assert_true(worst <= 1e-5);
  /* and the films really differ (the comparison is not between constants) */
  double spread = 0;
  for (int i = 1; i < NFILMS; i++) spread = fmax(spread, fabs((double)ref[i][0] - ref[0][0]));
  assert_true(spread > 1e-4);
}

/* The batch pipeline (what classify and Fiji call) from several threads at once, one model:
 * ps_infer_file per film and whole ps_infer_run batches both equal the single-thread answers. */
static float iref[NFILMS][PS_MODEL_MAX_CLASSES];

typedef worker iworker;

static int on_result(const ps_infer_result *r, void *user) {
  iworker *w = user;
  if (r->status != PS_OK) {
    w->bad++;
    snprintf(w->err, sizeof w->err, "%s", r->error);
    return 0;
  }
  for (int c = 0; c < K; c++) {
    double d = fabs((double)r->probs[c] - iref[r->index][c]);
    if (!(d <= w->maxdiff)) w->maxdiff = isnan(d) ? INFINITY : d;
  }
  return 0;
}

static void *irun(void *arg) {
  iworker *w = arg;
  if (w->id % 2 == 0) {
    for (int k = 0; k < NFILMS; k++) {
      int i = (k * 5 + w->id) % NFILMS;
      float p[PS_MODEL_MAX_CLASSES];
      int label = -1;
      if (ps_infer_file(model, paths[i], NULL, p, &label) != PS_OK) {
        w->bad++;
        snprintf(w->err, sizeof w->err, "%s", ps_last_error());
        continue;
      }
      for (int c = 0; c < K; c++) {
        double d = fabs((double)p[c] - iref[i][c]);
        if (!(d <= w->maxdiff)) w->maxdiff = isnan(d) ? INFINITY : d;
      }
    }
  } else {
    const char *list[NFILMS];
    for (int i = 0; i < NFILMS; i++) list[i] = paths[i];
    ps_infer_opts o = {0};
    o.batch = 3;
    o.threads = 2;
    int nfailed = 0;
    int st = ps_infer_run(model, list, NFILMS, &o, on_result, w, &nfailed);
    if (st != PS_OK || nfailed) {
      w->bad++;
      snprintf(w->err, sizeof w->err, "ps_infer_run: %d, %d failed: %s", st, nfailed, ps_last_error());
    }
  }
  return NULL;
}

static void test_infer_threads(void **state) {
  (void)state;
  for (int i = 0; i < NFILMS; i++) {
    int label = -1;
    assert_int_equal(ps_infer_file(model, paths[i], NULL, iref[i], &label), PS_OK);
  }
  iworker w[NTHREADS];
  double worst = run_threads(irun, w);
  print_message("ps_infer_file x2 threads + ps_infer_run x2 threads, one model: max |p - p_single| = %.3g\n",
                worst);
  /* batched forward passes (batch 3) may sum in another order than single films */
  assert_true(worst <= 1e-4);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_threads_agree), cmocka_unit_test(test_infer_threads)};
  return cmocka_run_group_tests(tests, setup, teardown);
}
