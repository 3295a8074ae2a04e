/* test_plot.c — ps_plot PNGs read back with Pillow (tests/ref/metrics_plot_check.py): valid PNGs of the
 * requested size, not blank, titles drawn, and properties of what is drawn: a good classifier's ROC
 * curve lies above the chance diagonal (an inverted one below), a diagonal-dominant confusion matrix
 * is dark on its diagonal (an anti-diagonal one off it), a falling loss curve falls, and a
 * reliability diagram's bars, gap boxes and film histogram stand at the heights they were given. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_metrics.h"
#include "ps_plot.h"
#include "test_util.h"

/* Under PS_SANITIZE: fontconfig (inside cairo's text rendering) keeps its caches until exit. */
const char *__lsan_default_suppressions(void);
__attribute__((visibility("default"))) const char *__lsan_default_suppressions(void) { return "leak:libfontconfig.so\n"; }

static long kv(const char *text, const char *key) {
  char pat[128];
  snprintf(pat, sizeof pat, "%s ", key);
  for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
    if (!strncmp(p, pat, strlen(pat))) return strtol(p + strlen(pat), NULL, 10);
  print_error("checker output lacks %s:\n%s\n", key, text);
  fail();
  return -1;
}

static char *check(const char *what, const char *path, int w, int h) {
  int rc;
  char *out = w ? ps_test_capture(&rc, "'%s' '%s' %s '%s' %d %d", PS_PYTHON, ps_test_src("tests/ref/metrics_plot_check.py"),
                                  what, path, w, h)
                : ps_test_capture(&rc, "'%s' '%s' %s '%s'", PS_PYTHON, ps_test_src("tests/ref/metrics_plot_check.py"), what, path);
  if (rc != 0) fail_msg("checker failed on %s:\n%s", path, out ? out : "");
  return out;
}

/* PNG signature + IHDR size, read by hand, then Pillow's view */
static void assert_png(const char *path, int w, int h) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  unsigned char b[24];
  assert_int_equal(fread(b, 1, 24, f), 24);
  fclose(f);
  assert_memory_equal(b, "\x89PNG\r\n\x1a\n", 8);
  assert_memory_equal(b + 12, "IHDR", 4);
  int pw = b[16] << 24 | b[17] << 16 | b[18] << 8 | b[19], ph = b[20] << 24 | b[21] << 16 | b[22] << 8 | b[23];
  assert_int_equal(pw, w);
  assert_int_equal(ph, h);
  char *out = check("basic", path, w, h);
  assert_int_equal(kv(out, "format"), 1);
  assert_int_equal(kv(out, "expected"), 1);
  assert_true(kv(out, "std_x100") > 1000);      /* not a flat picture */
  assert_true(kv(out, "colours") > 50);          /* antialiased lines and text */
  assert_true(kv(out, "dark_pixels") > 500);     /* axes, text */
  assert_true(kv(out, "title_dark_pixels") > 50); /* a title in the top band */
  free(out);
}

/* scores with a given separation: y ~ 60 % positive; sep > 0 good, sep < 0 inverted */
static void scores(int n, double sep, int *y, float *p) {
  uint64_t s = 99;
  for (int i = 0; i < n; i++) {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    double u = (double)(s >> 11) / 9007199254740992.0;
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    double v = (double)(s >> 11) / 9007199254740992.0;
    y[i] = u < 0.6;
    double x = 0.5 + (y[i] ? sep : -sep) + 0.25 * (v - 0.5) * 2;
    p[i] = (float)fmin(1, fmax(0, x));
  }
}

static void roc_png(const char *path, double sep, double *auc_out) {
  int n = 400, *y = malloc(n * sizeof(int));
  float *p = malloc(n * sizeof(float));
  scores(n, sep, y, p);
  ps_curve *roc = NULL;
  double auc;
  assert_int_equal(ps_metrics_roc_curve(y, p, n, &roc), PS_OK);
  assert_int_equal(ps_metrics_roc_auc(y, p, n, &auc), PS_OK);
  ps_plot_curve c = {"PNEUMONIA", roc->x, roc->y, roc->n, auc};
  ps_plot_opts o = {0};
  o.title = "ROC — test split";
  assert_int_equal(ps_plot_roc(&c, 1, &o, path), PS_OK);
  ps_curve_free(roc);
  free(y), free(p);
  *auc_out = auc;
}

static void test_roc(void **state) {
  (void)state;
  PS_TEST_SKIP_UNLESS(ps_test_have_python("PIL,numpy"), "python3 with Pillow not available");
  char *good = ps_test_join(ps_test_tmpdir(), "roc_good.png"), *bad = ps_test_join(ps_test_tmpdir(), "roc_bad.png");
  double a1, a2;
  roc_png(good, 0.15, &a1);
  roc_png(bad, -0.15, &a2);
  assert_true(a1 > 0.8 && a2 < 0.2);
  assert_png(good, 800, 600);
  char *out = check("roc", good, 0, 0);
  assert_true(kv(out, "curve_pixels") > 300);
  long above = kv(out, "above_x1000");
  if (above < 900) fail_msg("good classifier: only %.1f%% of the ROC curve above the diagonal", above / 10.0);
  free(out);
  out = check("roc", bad, 0, 0);
  above = kv(out, "above_x1000");
  if (above > 150) fail_msg("inverted classifier: %.1f%% of the ROC curve above the diagonal", above / 10.0);
  free(out), free(good), free(bad);
}

static void test_pr_and_sizes(void **state) {
  (void)state;
  PS_TEST_SKIP_UNLESS(ps_test_have_python("PIL,numpy"), "python3 with Pillow not available");
  int n = 300, *y = malloc(n * sizeof(int));
  float *p = malloc(n * sizeof(float));
  scores(n, 0.1, y, p);
  ps_curve *pr = NULL;
  double ap;
  assert_int_equal(ps_metrics_pr_curve(y, p, n, &pr), PS_OK);
  assert_int_equal(ps_metrics_average_precision(y, p, n, &ap), PS_OK);
  ps_plot_curve c[2] = {{"PNEUMONIA", pr->x, pr->y, pr->n, ap}, {NULL, pr->x, pr->y, pr->n, NAN}};
  ps_plot_opts o = {0};
  o.width = 1000;
  o.height = 700;
  char *path = ps_test_join(ps_test_tmpdir(), "pr.png");
  assert_int_equal(ps_plot_pr(c, 2, 0.6, &o, path), PS_OK);
  assert_png(path, 1000, 700);
  /* existing file: refused without overwrite, bytes unchanged; replaced with it */
  long size = ps_test_file_size(path);
  o.width = 640;
  o.height = 480;
  assert_int_equal(ps_plot_pr(c, 1, 0.6, &o, path), PS_EINVAL);
  assert_non_null(strstr(ps_last_error(), "exists"));
  assert_int_equal(ps_test_file_size(path), size);
  o.overwrite = 1;
  assert_int_equal(ps_plot_pr(c, 1, 0.6, &o, path), PS_OK);
  assert_png(path, 640, 480);
  /* bad arguments */
  o.width = 50;
  assert_int_equal(ps_plot_pr(c, 1, 0.6, &o, path), PS_EINVAL);
  assert_int_equal(ps_plot_roc(c, 0, NULL, path), PS_EINVAL);
  assert_int_equal(ps_plot_roc(c, 1, NULL, "/nonexistent-dir/x.png"), PS_EIO);
  assert_non_null(strstr(ps_last_error(), "/nonexistent-dir/x.png"));
  ps_curve_free(pr);
  free(y), free(p), free(path);
}

static void test_confusion(void **state) {
  (void)state;
  PS_TEST_SKIP_UNLESS(ps_test_have_python("PIL,numpy"), "python3 with Pillow not available");
  const char *names[3] = {"NORMAL", "BACTERIA", "VIRUS"};
  int64_t diag2[4] = {90, 10, 5, 95}, anti2[4] = {8, 92, 90, 10};
  char *a = ps_test_join(ps_test_tmpdir(), "cm_diag.png"), *b = ps_test_join(ps_test_tmpdir(), "cm_anti.png"),
       *c3 = ps_test_join(ps_test_tmpdir(), "cm3.png");
  assert_int_equal(ps_plot_confusion(diag2, 2, names, NULL, a), PS_OK);
  assert_int_equal(ps_plot_confusion(anti2, 2, names, NULL, b), PS_OK);
  assert_png(a, 640, 600);
  char *out = check("confusion", a, 0, 0);
  assert_true(kv(out, "top_left_x1000") + kv(out, "bottom_right_x1000") > 800);
  free(out);
  out = check("confusion", b, 0, 0);
  assert_true(kv(out, "top_right_x1000") + kv(out, "bottom_left_x1000") > 800);
  free(out);
  int64_t m3[9] = {130, 12, 9, 20, 95, 30, 4, 18, 70};
  ps_plot_opts o = {0};
  o.title = "Confusion matrix — 3 classes";
  assert_int_equal(ps_plot_confusion(m3, 3, names, &o, c3), PS_OK);
  assert_png(c3, 640, 600);
  int64_t neg[4] = {1, -1, 0, 0};
  assert_int_equal(ps_plot_confusion(neg, 2, names, NULL, c3), PS_EINVAL);
  assert_int_equal(ps_plot_confusion(m3, 9, names, NULL, c3), PS_EINVAL);
  free(a), free(b), free(c3);
}

static void test_training(void **state) {
  (void)state;
  PS_TEST_SKIP_UNLESS(ps_test_have_python("PIL,numpy"), "python3 with Pillow not available");
  double tl[15], vl[15], m[15], tm[15];
  for (int e = 0; e < 15; e++) {
    tl[e] = 0.7 * exp(-e / 4.0) + 0.05;
    vl[e] = e == 3 ? NAN : 0.6 * exp(-e / 5.0) + 0.12; /* a missing validation epoch is skipped */
    m[e] = 0.95 - 0.3 * exp(-e / 4.0);
    tm[e] = 0.99 - 0.35 * exp(-e / 3.0);
  }
  ps_plot_history h = {15, tl, vl, m, tm, "AUC"};
  char *path = ps_test_join(ps_test_tmpdir(), "training.png");
  assert_int_equal(ps_plot_training(&h, NULL, path), PS_OK);
  assert_png(path, 1200, 500);
  char *out = check("training", path, 0, 0);
  /* the train loss falls: its left end sits higher (smaller row) than its middle */
  assert_true(kv(out, "left_row") + 40 < kv(out, "middle_row"));
  assert_true(kv(out, "right_panel_blue") > 100);
  free(out);
  /* one epoch, no validation, no metric: one panel, still a valid figure */
  ps_plot_history one = {1, tl, NULL, NULL, NULL, NULL};
  ps_plot_opts o = {0};
  o.overwrite = 1;
  assert_int_equal(ps_plot_training(&one, &o, path), PS_OK);
  assert_png(path, 1200, 500);
  ps_plot_history none = {0, tl, NULL, NULL, NULL, NULL};
  assert_int_equal(ps_plot_training(&none, &o, path), PS_EINVAL);
  free(path);
}

/* Reads bar heights back per bin and compares them with what was drawn: accuracy, max(accuracy,
 * confidence) within 0.012 of the panel height; histogram bars proportional to the counts. */
static void check_reliability(const char *path, const int64_t *cnt, const double *conf, const double *acc, int bins) {
  int rc;
  char *out = ps_test_capture(&rc, "'%s' '%s' reliability '%s' %d", PS_PYTHON, ps_test_src("tests/ref/metrics_plot_check.py"),
                              path, bins);
  if (rc != 0) fail_msg("checker failed on %s:\n%s", path, out ? out : "");
  assert_true(kv(out, "frame_lines") >= 4);
  int64_t cmax = 0;
  long hmax = 0;
  char key[32];
  for (int b = 0; b < bins; b++) {
    if (cnt[b] > cmax) cmax = cnt[b];
    snprintf(key, sizeof key, "hist_%d_x1000", b);
    if (kv(out, key) > hmax) hmax = kv(out, key);
  }
  for (int b = 0; b < bins; b++) {
    snprintf(key, sizeof key, "acc_%d_x1000", b);
    long a = kv(out, key);
    snprintf(key, sizeof key, "upper_%d_x1000", b);
    long u = kv(out, key);
    snprintf(key, sizeof key, "hist_%d_x1000", b);
    long hb = kv(out, key);
    if (cnt[b] == 0) {
      if (a != -1 || u != -1 || hb != -1) fail_msg("%s: empty bin %d has a bar (%ld, %ld, %ld)", path, b, a, u, hb);
      continue;
    }
    if (fabs(a / 1000.0 - acc[b]) > 0.012) fail_msg("%s bin %d: bar at %.3f, accuracy %.3f", path, b, a / 1000.0, acc[b]);
    if (fabs(u / 1000.0 - fmax(acc[b], conf[b])) > 0.012)
      fail_msg("%s bin %d: gap box up to %.3f, max(accuracy, confidence) %.3f", path, b, u / 1000.0, fmax(acc[b], conf[b]));
    if (fabs((double)hb / hmax - (double)cnt[b] / cmax) > 0.03)
      fail_msg("%s bin %d: histogram bar %.3f of the tallest, count %.3f of the largest", path, b, (double)hb / hmax,
               (double)cnt[b] / cmax);
  }
  free(out);
}

static void test_reliability(void **state) {
  (void)state;
  PS_TEST_SKIP_UNLESS(ps_test_have_python("PIL,numpy"), "python3 with Pillow not available");
  /* overconfident binary model: confidences >= 0.5 (bins 7..14), accuracy 0.15 below them */
  int64_t c1[15] = {0, 0, 0, 0, 0, 0, 0, 3, 8, 12, 20, 25, 40, 60, 90};
  double conf1[15], acc1[15], conf2[15], acc2[15];
  /* underconfident 3-class model: bins 5..14 (one empty), accuracy 0.1 above the confidence */
  int64_t c2[15] = {0, 0, 0, 0, 0, 6, 14, 30, 22, 0, 18, 15, 11, 9, 40};
  for (int b = 0; b < 15; b++) {
    double mid = (b + 0.5) / 15;
    conf1[b] = c1[b] ? mid + 0.01 : NAN;
    acc1[b] = c1[b] ? mid - 0.15 : NAN;
    conf2[b] = c2[b] ? mid - 0.01 : NAN;
    acc2[b] = c2[b] ? fmin(1, mid + 0.1) : NAN;
  }
  char *over = ps_test_join(ps_test_tmpdir(), "rel_over.png"), *under = ps_test_join(ps_test_tmpdir(), "rel_under.png");
  assert_int_equal(ps_plot_reliability(c1, conf1, acc1, 15, 0.1523, NULL, over), PS_OK);
  assert_png(over, 640, 720);
  check_reliability(over, c1, conf1, acc1, 15);
  ps_plot_opts o = {0};
  o.title = "Reliability — 3 classes";
  o.width = 900;
  o.height = 1000;
  assert_int_equal(ps_plot_reliability(c2, conf2, acc2, 15, NAN, &o, under), PS_OK);
  assert_png(under, 900, 1000);
  check_reliability(under, c2, conf2, acc2, 15);
  /* from ps_metrics_reliability on scores, 10 bins */
  int n = 400, *y = malloc(n * sizeof(int));
  float *p1 = malloc(n * sizeof(float)), *p = malloc(2 * n * sizeof(float));
  scores(n, 0.1, y, p1);
  for (int i = 0; i < n; i++) p[2 * i + 1] = p1[i], p[2 * i] = 1 - p1[i];
  int64_t cnt[10];
  double conf[10], acc[10], ece;
  assert_int_equal(ps_metrics_reliability(y, p, n, 2, 10, cnt, conf, acc), PS_OK);
  assert_int_equal(ps_metrics_ece(y, p, n, 2, 10, &ece), PS_OK);
  o.overwrite = 1;
  o.title = NULL;
  o.width = o.height = 0;
  assert_int_equal(ps_plot_reliability(cnt, conf, acc, 10, ece, &o, under), PS_OK);
  assert_png(under, 640, 720);
  /* bad arguments; NAN in an empty bin is fine, in a full one it is not */
  assert_int_equal(ps_plot_reliability(c1, conf1, acc1, 0, 0.1, &o, under), PS_EINVAL);
  assert_int_equal(ps_plot_reliability(c1, conf1, acc1, 101, 0.1, &o, under), PS_EINVAL);
  assert_int_equal(ps_plot_reliability(NULL, conf1, acc1, 15, 0.1, &o, under), PS_EINVAL);
  acc1[14] = 1.2;
  assert_int_equal(ps_plot_reliability(c1, conf1, acc1, 15, 0.1, &o, under), PS_EINVAL);
  assert_non_null(strstr(ps_last_error(), "bin 14"));
  acc1[14] = NAN;
  assert_int_equal(ps_plot_reliability(c1, conf1, acc1, 15, 0.1, &o, under), PS_EINVAL);
  c1[14] = -1;
  assert_int_equal(ps_plot_reliability(c1, conf1, acc1, 15, 0.1, &o, under), PS_EINVAL);
  free(y), free(p1), free(p), free(over), free(under);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_roc),
      cmocka_unit_test(test_pr_and_sizes),
      cmocka_unit_test(test_confusion),
      cmocka_unit_test(test_training),
      cmocka_unit_test(test_reliability),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
