/* pneumoscope evaluate on real films: a small model trained here (size 64), evaluated on the test
 * split of a patient split; scikit-learn recomputes every metric from predictions.csv
 * (tests/ref/train_sklearn_check.py) and must agree with metrics.json, the ECE and the reliability
 * table included (numpy and sklearn's calibration_curve). Binary and 3-class. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_plot.h"
#include "ps_train.h"
#include "test_util.h"

static char *g_manifest;

static int setup(void **state) {
  (void)state;
  g_manifest = ps_test_kaggle_manifest();
  return g_manifest ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  free(g_manifest);
  return 0;
}

static void train_and_evaluate(const char *task, const char *name) {
  PS_TEST_SKIP_UNLESS(ps_test_have_python("sklearn,numpy"), "python3 with scikit-learn not available");
  char *run = ps_test_join(ps_test_tmpdir(), name);
  char *eval = ps_test_join(run, "eval");
  int rc = ps_test_system("'%s' train --manifest '%s' -o '%s' --task %s --size 64 --epochs 2 --batch 8 --limit 32 --threads 2 "
                          "--device cpu 2>&1 | tail -3",
                          PS_CLI, g_manifest, run, task);
  assert_int_equal(rc, 0);
  rc = ps_test_system("'%s' evaluate --model '%s/best.safetensors' --manifest '%s' --split test -o '%s' --limit 40 --threads 2",
                      PS_CLI, run, g_manifest, eval);
  assert_int_equal(rc, 0);
  const char *files[] = {"metrics.json", "predictions.csv"};
  for (int i = 0; i < 2; i++) {
    char *p = ps_test_join(eval, files[i]);
    assert_true(ps_test_file_size(p) > 0);
    free(p);
  }
  if (ps_plot_available()) {
    const char *pngs[] = {"confusion.png", "roc.png", "pr.png", "curves.png", "reliability.png"};
    for (int i = 0; i < 5; i++) {
      char *p = ps_test_join(eval, pngs[i]);
      assert_true(ps_test_file_size(p) > 1000);
      free(p);
    }
  } else {
    print_message("[  NOTE    ] built without cairo: evaluate writes no PNGs\n");
  }
  int st = 0;
  char *out = ps_test_capture(&st, "'%s' '%s' '%s' 2>&1", PS_PYTHON, ps_test_src("tests/ref/train_sklearn_check.py"), eval);
  print_message("%s", out ? out : "");
  assert_int_equal(st, 0);
  assert_non_null(strstr(out, "sklearn agrees on 40 predictions"));
  assert_non_null(strstr(out, " ece 0."));
  free(out);
  /* the check can fail: a wrong metric is caught, a wrong ECE too, and a missing one */
  char *mj = ps_test_join(eval, "metrics.json"), *keep = ps_test_join(eval, "metrics.keep");
  assert_int_equal(ps_test_system("cp '%s' '%s'", mj, keep), 0);
  assert_int_equal(ps_test_system("sed -i 's/^  \"accuracy\": [0-9.e-]*/  \"accuracy\": 0.123/' '%s'", mj), 0);
  out = ps_test_capture(&st, "'%s' '%s' '%s' 2>&1", PS_PYTHON, ps_test_src("tests/ref/train_sklearn_check.py"), eval);
  assert_int_equal(st, 1);
  assert_non_null(strstr(out, "accuracy"));
  free(out);
  assert_int_equal(ps_test_system("sed 's/^  \"ece\": [0-9.e-]*/  \"ece\": 0.987/' '%s' > '%s'", keep, mj), 0);
  out = ps_test_capture(&st, "'%s' '%s' '%s' 2>&1", PS_PYTHON, ps_test_src("tests/ref/train_sklearn_check.py"), eval);
  assert_int_equal(st, 1);
  assert_non_null(strstr(out, "ece: sklearn"));
  free(out);
  assert_int_equal(ps_test_system("grep -v '^  \"ece\": ' '%s' > '%s'", keep, mj), 0);
  out = ps_test_capture(&st, "'%s' '%s' '%s' 2>&1", PS_PYTHON, ps_test_src("tests/ref/train_sklearn_check.py"), eval);
  assert_int_equal(st, 1);
  assert_non_null(strstr(out, "no \"ece\""));
  free(out), free(mj), free(keep), free(run), free(eval);
}

static void test_binary(void **state) {
  (void)state;
  train_and_evaluate("binary", "binary");
}

static void test_multiclass(void **state) {
  (void)state;
  train_and_evaluate("multiclass", "multiclass");
}

static void test_bad_arguments(void **state) {
  (void)state;
  ps_eval_opts o;
  memset(&o, 0, sizeof o);
  assert_int_equal(ps_evaluate_run(&o, NULL, NULL, NULL), PS_EINVAL);
  o.model = ps_test_data("kaggle/NORMAL/IM-0117-0001.jpeg"); /* not a model */
  o.manifest = g_manifest;
  o.outdir = ps_test_tmpdir();
  int st = ps_evaluate_run(&o, NULL, NULL, NULL);
  assert_true(st != PS_OK);
  assert_non_null(strstr(ps_last_error(), "IM-0117-0001.jpeg"));
  o.split = "nonsense";
  assert_int_equal(ps_evaluate_run(&o, NULL, NULL, NULL), PS_EINVAL);
  /* CLI: missing arguments -> usage and exit 2 */
  assert_int_equal(ps_test_system("'%s' evaluate --model x >/dev/null 2>&1", PS_CLI), 2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bad_arguments),
      cmocka_unit_test(test_binary),
      cmocka_unit_test(test_multiclass),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
