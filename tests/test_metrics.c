/* test_metrics.c — ps_metrics against scikit-learn 1.2 (tests/ref/metrics_reference.py) on
 * real-shaped cases: random scores, heavily tied scores, perfect and inverted classifiers, 3 classes,
 * a class never predicted (zero_division), a non-default threshold, and a tiny hand-checkable case.
 * Calibration on every case: ECE and the reliability table against numpy and sklearn's
 * calibration_curve; the fitted temperature against scipy's bounded minimize_scalar on over- and
 * underconfident logits, separable logits (T at the 0.05 bound) and the bundled model's outputs on
 * 60 real films; a planted temperature recovered without any reference program. */
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
  float *z; /* (N, K) logits, or NULL: no temperature reference */
} mcase;

static uint64_t rs = 0x1234567887654321ULL;
static double urand(void) { /* xorshift64*, only to make test inputs */
  rs ^= rs >> 12, rs ^= rs << 25, rs ^= rs >> 27;
  return (double)((rs * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0;
}

static mcase make(const char *name, int n, int k, double thr) {
  mcase c = {name, n, k, thr, calloc(n, sizeof(int)), calloc((size_t)n * k, sizeof(float)), NULL};
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

static double gauss(void) { /* Box-Muller */
  double u = urand(), v = urand();
  return sqrt(-2 * log(u > 1e-300 ? u : 1e-300)) * cos(2 * M_PI * v);
}

/* probs = softmax(z), in double, per row */
static void softmax_rows(const float *z, int n, int k, float *p) {
  for (int i = 0; i < n; i++) {
    const float *r = z + (size_t)i * k;
    double m = r[0], s = 0;
    for (int j = 1; j < k; j++) m = fmax(m, r[j]);
    for (int j = 0; j < k; j++) s += exp(r[j] - m);
    for (int j = 0; j < k; j++) p[(size_t)i * k + j] = (float)(exp(r[j] - m) / s);
  }
}

/* Logits with a planted temperature: true logits b ~ N(0, spread^2) per class, the label drawn
 * from softmax(b) (so b is calibrated), the model reports b * t0 plus a per-row offset (softmax
 * ignores it): the best temperature is close to t0. */
static mcase logit_case(const char *name, int n, int k, double spread, double t0) {
  mcase c = make(name, n, k, 0.5);
  c.z = malloc((size_t)n * k * sizeof(float));
  for (int i = 0; i < n; i++) {
    double b[PS_METRICS_MAX_CLASSES], m = -INFINITY, s = 0, off = 10 * urand() - 5;
    for (int j = 0; j < k; j++) b[j] = spread * gauss(), m = fmax(m, b[j]);
    for (int j = 0; j < k; j++) s += exp(b[j] - m);
    double u = urand() * s, acc = 0;
    c.y[i] = k - 1;
    for (int j = 0; j < k; j++) {
      acc += exp(b[j] - m);
      if (u < acc) {
        c.y[i] = j;
        break;
      }
    }
    for (int j = 0; j < k; j++) c.z[(size_t)i * k + j] = (float)(b[j] * t0 + off);
  }
  softmax_rows(c.z, n, k, c.p);
  return c;
}

/* Binary and separable: logit difference +-[0.05, 3] with the label's sign; the NLL falls all the
 * way to T = 0.05. */
static mcase separable_case(const char *name, int n) {
  mcase c = make(name, n, 2, 0.5);
  c.z = malloc((size_t)n * 2 * sizeof(float));
  for (int i = 0; i < n; i++) {
    c.y[i] = urand() < 0.5;
    double d = 0.05 + 2.95 * urand();
    c.z[2 * i] = 0;
    c.z[2 * i + 1] = (float)(c.y[i] ? d : -d);
  }
  softmax_rows(c.z, n, 2, c.p);
  return c;
}

/* The bundled binary model on 60 real films (30 NORMAL, 30 PNEUMONIA, every 20th of kermany224/):
 * its probabilities from `pneumoscope classify --csv`, logits = log(probabilities) (softmax is
 * unchanged by the per-row shift). Returns 0 when the CLI output cannot be used. */
static int real_case(mcase *out) {
  int rc;
  char *csv = ps_test_capture(&rc,
                              "cd '%s' && '%s' classify --csv --model '%s' $(ls -d NORMAL/* | awk 'NR%%20==1' | head -30) "
                              "$(ls -d PNEUMONIA/* | awk 'NR%%20==1' | head -30)",
                              ps_test_data("kermany224"), PS_CLI, ps_test_src("sample_data/models/pneumoscope-binary.safetensors"));
  if (rc != 0 || !csv) {
    free(csv);
    return 0;
  }
  mcase c = make("real", 60, 2, 0.5);
  c.z = malloc(60 * 2 * sizeof(float));
  int col0 = -1, col1 = -1, n = 0;
  char *save = NULL;
  for (char *line = strtok_r(csv, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    char *f = line;
    float p[2] = {NAN, NAN};
    for (int col = 0; f; col++) {
      char *next = strchr(f, ',');
      if (next) *next++ = 0;
      if (col0 < 0 || col1 < 0) { /* header */
        if (!strcmp(f, "p_NORMAL")) col0 = col;
        if (!strcmp(f, "p_PNEUMONIA")) col1 = col;
      } else if (col == col0 || col == col1) {
        p[col == col1] = strtof(f, NULL);
      }
      f = next;
    }
    if (n >= 60 || isnan(p[0])) continue;
    c.y[n] = strncmp(line, "PNEUMONIA/", 10) == 0;
    for (int j = 0; j < 2; j++) {
      c.p[2 * n + j] = p[j];
      c.z[2 * n + j] = logf(fmaxf(p[j], 1e-30f));
    }
    n++;
  }
  free(csv);
  if (n != 60) {
    free(c.y), free(c.p), free(c.z);
    return 0;
  }
  *out = c;
  return 1;
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
  if (c->z) {
    snprintf(path, sizeof path, "%s/%s_logits.npy", dir, c->name);
    assert_int_equal(ps_test_write_npy_f32(path, c->z, s2, 2), 0);
  }
  free(yf);
}

static void near(double got, double want, const char *what, const char *cname) {
  if (isnan(want)) {
    if (!isnan(got)) fail_msg("%s %s: got %.17g, sklearn says undefined (nan)", cname, what, got);
    return;
  }
  if (!(fabs(got - want) <= TOL)) fail_msg("%s %s: got %.17g, sklearn %.17g", cname, what, got, want);
}

/* dir/<case>_<what>.npy written by the python reference (must exist). */
static double *read_ref(const char *dir, const mcase *c, const char *what, size_t shape[4], int *ndim) {
  char path[1024];
  int nd;
  snprintf(path, sizeof path, "%s/%s_%s.npy", dir, c->name, what);
  double *ref = ps_test_read_npy(path, shape, ndim ? ndim : &nd);
  assert_non_null(ref);
  return ref;
}

static void check_case(const char *dir, mcase *c) {
  size_t shape[4];
  double *ref = read_ref(dir, c, "ref", shape, NULL);
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
      int nd = 0;
      double *cv = read_ref(dir, c, which ? "pr" : "roc", shape, &nd);
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

/* ECE and reliability (15 bins) against numpy and sklearn's calibration_curve; the temperature
 * against scipy. */
static void check_calibration(const char *dir, mcase *c) {
  size_t shape[4];
  double *ref = read_ref(dir, c, "cal", shape, NULL);
  assert_int_equal(shape[0], 1 + 3 * 15);
  double ece;
  int64_t cnt[15];
  double conf[15], acc[15];
  assert_int_equal(ps_metrics_ece(c->y, c->p, c->n, c->k, 15, &ece), PS_OK);
  assert_int_equal(ps_metrics_reliability(c->y, c->p, c->n, c->k, 15, cnt, conf, acc), PS_OK);
  near(ece, ref[0], "ECE (numpy)", c->name);
  int full = 0;
  for (int b = 0; b < 15; b++) {
    if (cnt[b] != (int64_t)ref[1 + b]) fail_msg("%s bin %d: %lld films, numpy %g", c->name, b, (long long)cnt[b], ref[1 + b]);
    near(conf[b], ref[16 + b], "bin confidence (numpy)", c->name);
    near(acc[b], ref[31 + b], "bin accuracy (numpy)", c->name);
    full += cnt[b] > 0;
  }
  free(ref);
  /* sklearn lists the non-empty bins in order */
  double *sk = read_ref(dir, c, "calsk", shape, NULL);
  size_t M = shape[1];
  if ((size_t)full != M) fail_msg("%s: %d non-empty bins, sklearn calibration_curve %zu", c->name, full, M);
  for (int b = 0, j = 0; b < 15; b++)
    if (cnt[b] > 0) {
      near(acc[b], sk[j], "bin accuracy (calibration_curve prob_true)", c->name);
      near(conf[b], sk[M + j], "bin confidence (calibration_curve prob_pred)", c->name);
      j++;
    }
  free(sk);
  if (!c->z) return;
  double *tr = read_ref(dir, c, "temp", shape, NULL);
  double t;
  assert_int_equal(ps_metrics_fit_temperature(c->y, c->z, c->n, c->k, &t), PS_OK);
  if (!(fabs(t - tr[0]) <= 1e-4 * tr[0]))
    fail_msg("%s temperature: got %.9g, scipy %.9g (NLL %.6g there, %.6g at T = 1)", c->name, t, tr[0], tr[1], tr[2]);
  print_message("[     INFO ] %s: T %.5f (scipy %.5f), NLL %.4f -> %.4f, ECE %.4f\n", c->name, t, tr[0], tr[2], tr[1], ece);
  free(tr);
}

static mcase cases[16];
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
  cases[ncases++] = logit_case("cal_over", 600, 2, 2.0, 2.5);  /* overconfident: T near 2.5 */
  cases[ncases++] = logit_case("cal_under", 500, 3, 1.5, 0.4); /* underconfident: T near 0.4 */
  cases[ncases++] = separable_case("cal_sep", 80);             /* T at the 0.05 bound */
  if (real_case(&cases[ncases])) ncases++;
  else fail_msg("pneumoscope classify --csv on kermany224 films gave no usable probabilities");
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
    check_calibration(dir, &cases[i]);
    free(cases[i].y);
    free(cases[i].p);
    free(cases[i].z);
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

/* Without reference programs: a planted temperature comes back, scaling lowers the ECE, the bound
 * holds for separable logits, constant logits keep T = 1, a hand-computed ECE, bad arguments. */
static void test_calibration_self(void **state) {
  (void)state;
  for (int r = 0; r < 2; r++) {
    double t0 = r ? 2.0 : 0.5, t, e0, e1;
    mcase c = logit_case(r ? "plant_over" : "plant_under", 4000, 3, 2.0, t0);
    assert_int_equal(ps_metrics_fit_temperature(c.y, c.z, c.n, 3, &t), PS_OK);
    if (!(fabs(t / t0 - 1) < 0.08)) fail_msg("planted T %.2f, fitted %.4f", t0, t);
    float *ps = malloc((size_t)c.n * 3 * sizeof(float));
    for (int i = 0; i < c.n * 3; i++) c.z[i] /= (float)t;
    softmax_rows(c.z, c.n, 3, ps);
    assert_int_equal(ps_metrics_ece(c.y, c.p, c.n, 3, 15, &e0), PS_OK);
    assert_int_equal(ps_metrics_ece(c.y, ps, c.n, 3, 15, &e1), PS_OK);
    if (!(e1 < 0.5 * e0 && e1 < 0.03)) fail_msg("T %.2f: ECE %.4f before scaling, %.4f after", t0, e0, e1);
    free(ps), free(c.y), free(c.p), free(c.z);
  }
  double t;
  mcase sep = separable_case("sep", 50);
  assert_int_equal(ps_metrics_fit_temperature(sep.y, sep.z, sep.n, 2, &t), PS_OK);
  if (!(fabs(t - 0.05) < 1e-6)) fail_msg("separable logits: T %.9g, want the 0.05 bound", t);
  free(sep.y), free(sep.p), free(sep.z);
  int y[4] = {0, 1, 1, 0};
  float zero[8] = {0}, p[8] = {0.9f, 0.1f, 0.2f, 0.8f, 0.4f, 0.6f, 1.0f, 0.0f};
  assert_int_equal(ps_metrics_fit_temperature(y, zero, 4, 2, &t), PS_OK);
  assert_true(t == 1.0);
  /* by hand, 15 bins: confidence 0.9 -> bin 13 (right), 0.8 -> 12 (right), 0.6 -> 9 (argmax 1,
   * label 0: wrong), 1.0 -> 14, the last bin (right) */
  double ece;
  int64_t cnt[15];
  double conf[15], acc[15];
  y[2] = 0;
  assert_int_equal(ps_metrics_ece(y, p, 4, 2, 15, &ece), PS_OK);
  /* |1 - 0.9| + |1 - 0.8| + |0 - 0.6| + |1 - 1.0| over 4, with the float32 values */
  double want = (fabs(1 - (double)0.9f) + fabs(1 - (double)0.8f) + (double)0.6f + 0) / 4;
  assert_true(fabs(ece - want) < 1e-15);
  assert_int_equal(ps_metrics_reliability(y, p, 4, 2, 15, cnt, conf, acc), PS_OK);
  assert_true(cnt[13] == 1 && cnt[12] == 1 && cnt[9] == 1 && cnt[14] == 1 && cnt[0] == 0);
  assert_true(acc[9] == 0 && acc[14] == 1 && conf[14] == 1 && isnan(acc[0]) && isnan(conf[0]));
  /* one bin: |accuracy - mean confidence| */
  assert_int_equal(ps_metrics_ece(y, p, 4, 2, 1, &ece), PS_OK);
  assert_true(fabs(ece - fabs(0.75 - ((double)0.9f + (double)0.8f + (double)0.6f + 1) / 4)) < 1e-15);
  /* bad arguments */
  assert_int_equal(ps_metrics_ece(NULL, p, 4, 2, 15, &ece), PS_EINVAL);
  assert_int_equal(ps_metrics_ece(y, p, 0, 2, 15, &ece), PS_EINVAL);
  assert_int_equal(ps_metrics_ece(y, p, 4, 1, 15, &ece), PS_EINVAL);
  assert_int_equal(ps_metrics_ece(y, p, 4, 2, 0, &ece), PS_EINVAL);
  assert_int_equal(ps_metrics_reliability(y, p, 4, 2, 15, NULL, conf, acc), PS_EINVAL);
  assert_int_equal(ps_metrics_fit_temperature(y, NULL, 4, 2, &t), PS_EINVAL);
  y[3] = 2;
  assert_int_equal(ps_metrics_ece(y, p, 4, 2, 15, &ece), PS_EINVAL);
  assert_non_null(strstr(ps_last_error(), "label 2"));
  assert_int_equal(ps_metrics_fit_temperature(y, zero, 4, 2, &t), PS_EINVAL);
  y[3] = 0;
  p[1] = NAN;
  assert_int_equal(ps_metrics_ece(y, p, 4, 2, 15, &ece), PS_EINVAL);
  assert_int_equal(ps_metrics_reliability(y, p, 4, 2, 15, cnt, conf, acc), PS_EINVAL);
  p[1] = 1.5f; /* logits passed as probabilities */
  assert_int_equal(ps_metrics_ece(y, p, 4, 2, 15, &ece), PS_EINVAL);
  assert_non_null(strstr(ps_last_error(), "not in [0, 1]"));
  zero[3] = INFINITY;
  assert_int_equal(ps_metrics_fit_temperature(y, zero, 4, 2, &t), PS_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_against_sklearn),
      cmocka_unit_test(test_extremes),
      cmocka_unit_test(test_bad_input),
      cmocka_unit_test(test_calibration_self),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
