/* test_metrics.c — ps_metrics against scikit-learn 1.2 (tests/ref/metrics_reference.py) on
 * real-shaped cases: random scores, heavily tied scores, perfect and inverted classifiers, 3 classes,
 * a class never predicted (zero_division), a non-default threshold, and a tiny hand-checkable case. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_metrics.h"
#include "test_util.h"

#define TOL 1e-9

typedef struct {
  const char *name;
  int n, k;
  double thr;
  int *y;
  float *p;
} mcase;

static uint64_t rs = 0x1234567887654321ULL;
static double urand(void) { /* xorshift64*, only to make test inputs */
  rs ^= rs >> 12, rs ^= rs << 25, rs ^= rs >> 27;
  return (double)((rs * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0;
}

static mcase make(const char *name, int n, int k, double thr) {
  mcase c = {name, n, k, thr, calloc(n, sizeof(int)), calloc((size_t)n * k, sizeof(float))};
  return c;
}

/* Binary: y ~ Bernoulli(0.6), p1 = mix of signal and noise, optionally quantised to q levels. */
static mcase binary_case(const char *name, int n, double signal, int q, double thr) {
  mcase c = make(name, n, 2, thr);
  for (int i = 0; i < n; i++) {
    c.y[i] = urand() < 0.6;
    double s = signal * c.y[i] + (1 - signal) * urand();
    if (signal < 0) s = (1 + signal) * urand() - signal * (1 - c.y[i]); /* inverted */
    if (q > 0) s = floor(s * q) / q;
    if (s > 1) s = 1;
    c.p[2 * i + 1] = (float)s;
    c.p[2 * i] = 1.0f - (float)s;
  }
  return c;
}

static mcase multi_case(const char *name, int n, int never_predict_2, int ties) {
  mcase c = make(name, n, 3, 0.5);
  for (int i = 0; i < n; i++) {
    c.y[i] = (int)(urand() * 3);
    double l[3], sum = 0;
    for (int j = 0; j < 3; j++) {
      l[j] = exp(2.0 * urand() + (j == c.y[i] ? 1.2 : 0));
      if (never_predict_2 && j == 2) l[j] = 1e-3 * urand();
    }
    if (ties && i % 10 == 0) l[0] = l[1] = l[2] = 1;   /* argmax tie: lowest index */
    if (ties && i % 10 == 1) l[2] = l[1] = 2, l[0] = 1; /* tie between 1 and 2 */
    for (int j = 0; j < 3; j++) sum += l[j];
    for (int j = 0; j < 3; j++) c.p[i * 3 + j] = (float)(l[j] / sum);
  }
  return c;
}

static void write_case(const char *dir, const mcase *c) {
  char path[1024];
  float *yf = malloc(c->n * sizeof(float));
  for (int i = 0; i < c->n; i++) yf[i] = (float)c->y[i];
  size_t s1[1] = {(size_t)c->n}, s2[2] = {(size_t)c->n, (size_t)c->k}, s0[1] = {1};
  float thr = (float)c->thr;
  snprintf(path, sizeof path, "%s/%s_labels.npy", dir, c->name);
  assert_int_equal(ps_test_write_npy_f32(path, yf, s1, 1), 0);
  snprintf(path, sizeof path, "%s/%s_probs.npy", dir, c->name);
  assert_int_equal(ps_test_write_npy_f32(path, c->p, s2, 2), 0);
  snprintf(path, sizeof path, "%s/%s_thr.npy", dir, c->name);
  assert_int_equal(ps_test_write_npy_f32(path, &thr, s0, 1), 0);
  free(yf);
}

static void near(double got, double want, const char *what, const char *cname) {
  if (isnan(want)) {
    if (!isnan(got)) fail_msg("%s %s: got %.17g, sklearn says undefined (nan)", cname, what, got);
    return;
  }
  if (!(fabs(got - want) <= TOL)) fail_msg("%s %s: got %.17g, sklearn %.17g", cname, what, got, want);
}

static void check_case(const char *dir, mcase *c) {
  char path[1024];
  size_t shape[4];
  int nd;
  snprintf(path, sizeof path, "%s/%s_ref.npy", dir, c->name);
  double *ref = ps_test_read_npy(path, shape, &nd);
  assert_non_null(ref);
  int K = c->k;
  /* the threshold as C sees it is the float32 one python read */
  double thr = (double)(float)c->thr;
  ps_metrics m;
  assert_int_equal(ps_metrics_compute(c->y, c->p, c->n, K, thr, &m), PS_OK);
  size_t at = 0;
  near(m.accuracy, ref[at++], "accuracy", c->name);
  for (int j = 0; j < K; j++) near(m.precision[j], ref[at++], "precision", c->name);
  for (int j = 0; j < K; j++) near(m.recall[j], ref[at++], "recall", c->name);
  for (int j = 0; j < K; j++) near(m.f1[j], ref[at++], "f1", c->name);
  near(m.macro_precision, ref[at++], "macro precision", c->name);
  near(m.macro_recall, ref[at++], "macro recall", c->name);
  near(m.macro_f1, ref[at++], "macro f1", c->name);
  near(m.weighted_precision, ref[at++], "weighted precision", c->name);
  near(m.weighted_recall, ref[at++], "weighted recall", c->name);
  near(m.weighted_f1, ref[at++], "weighted f1", c->name);
  near(m.sensitivity, ref[at++], "sensitivity", c->name);
  near(m.specificity, ref[at++], "specificity", c->name);
  near(m.roc_auc, ref[at++], "roc auc", c->name);
  near(m.average_precision, ref[at++], "average precision", c->name);
  for (int j = 0; j < K * K; j++) near((double)m.confusion[j], ref[at++], "confusion", c->name);
  if (K == 2) {
    int *yb = malloc(c->n * sizeof(int));
    float *sb = malloc(c->n * sizeof(float));
    ps_metrics_one_vs_rest(c->y, c->p, c->n, 2, 1, yb, sb);
    double t, j, f1;
    int pos = 0;
    for (int i = 0; i < c->n; i++) pos += yb[i];
    if (pos > 0 && pos < c->n) {
      assert_int_equal(ps_metrics_youden_threshold(yb, sb, c->n, &t, &j), PS_OK);
      near(t, ref[at], "youden threshold", c->name);
      near(j, ref[at + 1], "youden J", c->name);
      assert_int_equal(ps_metrics_f1_at(yb, sb, c->n, t, &f1), PS_OK);
      near(f1, ref[at + 2], "f1 at youden threshold", c->name);
    } else {
      assert_int_equal(ps_metrics_youden_threshold(yb, sb, c->n, &t, &j), PS_EINVAL);
    }
    /* curves, point by point */
    for (int which = 0; which < 2; which++) {
      snprintf(path, sizeof path, "%s/%s_%s.npy", dir, c->name, which ? "pr" : "roc");
      double *cv = ps_test_read_npy(path, shape, &nd);
      assert_non_null(cv);
      assert_int_equal(nd, 2);
      ps_curve *curve = NULL;
      assert_int_equal(which ? ps_metrics_pr_curve(yb, sb, c->n, &curve) : ps_metrics_roc_curve(yb, sb, c->n, &curve),
                       PS_OK);
      size_t M = shape[1];
      if (curve->n != M) fail_msg("%s %s curve: %zu points, sklearn %zu", c->name, which ? "PR" : "ROC", curve->n, M);
      for (size_t i = 0; i < M; i++) {
        near(curve->x[i], cv[i], which ? "PR recall" : "ROC fpr", c->name);
        near(curve->y[i], cv[M + i], which ? "PR precision" : "ROC tpr", c->name);
        /* sklearn 1.2 puts max+1 where we (and sklearn >= 1.3) put +inf */
        if (!which && i == 0) assert_true(isinf(curve->thr[0]));
        else near(curve->thr[i], cv[2 * M + i], "curve threshold", c->name);
      }
      ps_curve_free(curve);
      free(cv);
    }
    free(yb);
    free(sb);
  }
  free(ref);
}

static mcase cases[12];
static int ncases;

static void test_against_sklearn(void **state) {
  (void)state;
  PS_TEST_SKIP_UNLESS(ps_test_have_python("sklearn,numpy"), "python3 with scikit-learn not available");
  const char *dir = ps_test_tmpdir();
  ncases = 0;
  cases[ncases++] = binary_case("random", 400, 0.0, 0, 0.5);
  cases[ncases++] = binary_case("signal", 300, 0.35, 0, 0.5);
  cases[ncases++] = binary_case("tied", 250, 0.3, 4, 0.5);       /* 5 distinct scores */
  cases[ncases++] = binary_case("tied_thr", 120, 0.2, 10, 0.3);  /* threshold equal to a score */
  cases[ncases++] = binary_case("perfect", 80, 1.0, 0, 0.5);
  cases[ncases++] = binary_case("inverted", 80, -1.0, 0, 0.5);
  cases[ncases++] = binary_case("thr07", 200, 0.3, 0, 0.7);
  cases[ncases++] = multi_case("three", 300, 0, 0);
  cases[ncases++] = multi_case("three_ties", 200, 0, 1);
  cases[ncases++] = multi_case("three_missing_pred", 150, 1, 0); /* class 2 never predicted */
  {
    mcase c = multi_case("three_missing_label", 120, 0, 0); /* no VIRUS film: AUC/AP undefined (NAN) */
    for (int i = 0; i < c.n; i++)
      if (c.y[i] == 2) c.y[i] = i % 2;
    cases[ncases++] = c;
  }
  {
    mcase c = binary_case("all_negative_pred", 60, 0.0, 0, 0.5); /* nothing predicted positive */
    for (int i = 0; i < c.n; i++) c.p[2 * i + 1] *= 0.4f, c.p[2 * i] = 1 - c.p[2 * i + 1];
    cases[ncases++] = c;
  }
  char list[2048] = "";
  for (int i = 0; i < ncases; i++) {
    write_case(dir, &cases[i]);
    strcat(list, " ");
    strcat(list, cases[i].name);
  }
  int rc = ps_test_system("'%s' '%s' '%s'%s", PS_PYTHON, ps_test_src("tests/ref/metrics_reference.py"), dir, list);
  assert_int_equal(rc, 0);
  for (int i = 0; i < ncases; i++) {
    check_case(dir, &cases[i]);
    free(cases[i].y);
    free(cases[i].p);
  }
}

/* Sanity that does not depend on sklearn: the perfect classifier has AUC 1 and AP 1, the inverted one
 * AUC 0, and a constant score AUC 0.5 (all ties). */
static void test_extremes(void **state) {
  (void)state;
  int y[6] = {0, 0, 0, 1, 1, 1};
  float good[6] = {0.1f, 0.2f, 0.3f, 0.7f, 0.8f, 0.9f}, bad[6] = {0.9f, 0.8f, 0.7f, 0.3f, 0.2f, 0.1f},
        flat[6] = {0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f};
  double a, ap, t, j;
  assert_int_equal(ps_metrics_roc_auc(y, good, 6, &a), PS_OK);
  assert_true(a == 1.0);
  assert_int_equal(ps_metrics_average_precision(y, good, 6, &ap), PS_OK);
  assert_true(ap == 1.0);
  assert_int_equal(ps_metrics_roc_auc(y, bad, 6, &a), PS_OK);
  assert_true(a == 0.0);
  assert_int_equal(ps_metrics_roc_auc(y, flat, 6, &a), PS_OK);
  assert_true(a == 0.5);
  assert_int_equal(ps_metrics_average_precision(y, flat, 6, &ap), PS_OK);
  assert_true(ap == 0.5);
  assert_int_equal(ps_metrics_youden_threshold(y, good, 6, &t, &j), PS_OK);
  assert_true(t == 0.7f && j == 1.0);
  int one[3] = {1, 1, 1};
  assert_int_equal(ps_metrics_youden_threshold(one, good, 3, &t, &j), PS_EINVAL);
  assert_true(strstr(ps_last_error(), "both classes") != NULL);
}

static void test_bad_input(void **state) {
  (void)state;
  int y[2] = {0, 3};
  float p[4] = {0.5f, 0.5f, 0.2f, 0.8f};
  ps_metrics m;
  assert_int_equal(ps_metrics_compute(y, p, 2, 2, 0.5, &m), PS_EINVAL);
  assert_true(strstr(ps_last_error(), "label 3") != NULL);
  y[1] = 1;
  p[3] = NAN;
  assert_int_equal(ps_metrics_compute(y, p, 2, 2, 0.5, &m), PS_EINVAL);
  assert_int_equal(ps_metrics_compute(y, p, 2, 1, 0.5, &m), PS_EINVAL);
  assert_int_equal(ps_metrics_compute(y, p, 2, 99, 0.5, &m), PS_EINVAL);
  assert_int_equal(ps_metrics_compute(NULL, NULL, 0, 2, 0.5, &m), PS_OK);
  assert_true(isnan(m.roc_auc));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_against_sklearn),
      cmocka_unit_test(test_extremes),
      cmocka_unit_test(test_bad_input),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
