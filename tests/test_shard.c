/* evaluate --shard / --merge and audit --shard / --merge on real films (../shared/data/kaggle, the
 * bundled models): three shards merged write what one unsharded run writes (metrics.json and
 * summary.json equal value for value, predictions.csv and lung_focus.csv row for row, byte for
 * byte); a tampered shard shows that the comparison would catch a difference; scikit-learn agrees
 * with the merged metrics.json (tests/ref/train_sklearn_check.py); the merge refuses a missing
 * shard, a duplicate, shards of different runs or models, a folder that is no shard, and output
 * folders where it would mix with or overwrite other results. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_gradcam.h"
#include "ps_plot.h"
#include "ps_train.h"
#include "test_util.h"

static char *g_manifest, *g_dir;
static const char *g_binary = "sample_data/models/pneumoscope-binary.safetensors";
static const char *g_3class = "sample_data/models/pneumoscope-3class.safetensors";

static int setup(void **state) {
  (void)state;
  g_dir = strdup(ps_test_tmpdir());
  g_manifest = ps_test_kaggle_manifest();
  return g_manifest ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  free(g_manifest), free(g_dir);
  return 0;
}

/* Both JSON files load and are equal value for value (jansson's json_equal: reals exactly). */
static void assert_json_files_equal(const char *a, const char *b) {
  json_error_t e;
  json_t *ja = json_load_file(a, 0, &e), *jb = json_load_file(b, 0, &e);
  if (!ja || !jb) fail_msg("cannot read %s or %s: %s", a, b, e.text);
  if (!json_equal(ja, jb)) fail_msg("%s and %s differ", a, b);
  json_decref(ja), json_decref(jb);
}

static int json_files_equal(const char *a, const char *b) {
  json_t *ja = json_load_file(a, 0, NULL), *jb = json_load_file(b, 0, NULL);
  int eq = ja && jb && json_equal(ja, jb);
  json_decref(ja), json_decref(jb);
  return eq;
}

static long rows_of(const char *csv) {
  int st = 0;
  char *out = ps_test_capture(&st, "tail -n +2 '%s' | wc -l", csv);
  long n = out ? atol(out) : -1;
  free(out);
  return n;
}

/* the evaluate command line shared by the whole run and every shard */
#define EVAL_ARGS "evaluate --model '%s' --manifest '%s' --split all --limit 12 --batch 4 --threads 2"

/* evaluate in 3 shards, merged = one run (folder g_dir/eval-<name>) */
static void evaluate_shards(const char *model_rel, const char *name) {
  const char *model = ps_test_src(model_rel);
  char sub[64];
  snprintf(sub, sizeof sub, "eval-%s", name);
  char *d = ps_test_join(g_dir, sub);
  assert_int_equal(ps_test_system("mkdir -p '%s'", d), 0);
  assert_int_equal(ps_test_system("'%s' " EVAL_ARGS " -o '%s/whole' 2>/dev/null", PS_CLI, model, g_manifest, d), 0);
  long total = 0;
  for (int k = 1; k <= 3; k++) {
    ps_test_expect(0, "shard", "'%s' " EVAL_ARGS " --shard %d/3 -o '%s/s%d' 2>&1", PS_CLI, model, g_manifest, k, d, k);
    char p[4096];
    snprintf(p, sizeof p, "%s/s%d/predictions.csv", d, k);
    long n = rows_of(p);
    assert_true(n > 0); /* 36 films in 9 batches of 4: 3 batches a shard */
    total += n;
    snprintf(p, sizeof p, "%s/s%d/metrics.json", d, k);
    assert_int_equal(ps_test_file_size(p), -1); /* a shard has no metrics of its own */
  }
  char *whole_pred = ps_test_join(d, "whole/predictions.csv");
  assert_int_equal(total, rows_of(whole_pred));
  assert_int_equal(total, 36);
  /* merged in any order = the one run */
  ps_test_expect(0, "n 36 accuracy", "'%s' evaluate --merge -o '%s/merged' '%s/s3' '%s/s1' '%s/s2' 2>&1", PS_CLI, d, d, d, d);
  assert_int_equal(ps_test_system("cmp '%s/whole/predictions.csv' '%s/merged/predictions.csv'", d, d), 0);
  char *wm = ps_test_join(d, "whole/metrics.json"), *mm = ps_test_join(d, "merged/metrics.json");
  assert_json_files_equal(wm, mm);
  if (ps_plot_available()) {
    const char *pngs[] = {"confusion.png", "roc.png", "pr.png", "reliability.png"};
    for (int i = 0; i < 4; i++) {
      char p[4096];
      snprintf(p, sizeof p, "%s/merged/%s", d, pngs[i]);
      assert_true(ps_test_file_size(p) > 1000);
    }
  }
  /* the comparison can fail: one probability changed in a copy of shard 2 changes the merge */
  assert_int_equal(ps_test_system("cp -r '%s/s2' '%s/s2x' && sed -i '2s/,[0-9.e-]*$/,0.0123/' '%s/s2x/predictions.csv'", d, d, d), 0);
  ps_test_expect(0, NULL, "'%s' evaluate --merge -o '%s/tampered' '%s/s1' '%s/s2x' '%s/s3' 2>&1", PS_CLI, d, d, d, d);
  assert_true(ps_test_system("cmp -s '%s/whole/predictions.csv' '%s/tampered/predictions.csv'", d, d) != 0);
  char *tm = ps_test_join(d, "tampered/metrics.json");
  assert_false(json_files_equal(wm, tm));
  /* scikit-learn recomputes the merged metrics from the merged predictions */
  if (ps_test_have_python("sklearn,numpy")) {
    char *merged = ps_test_join(d, "merged");
    ps_test_expect(0, "sklearn agrees on 36 predictions", "'%s' '%s' '%s' 2>&1", PS_PYTHON,
                   ps_test_src("tests/ref/train_sklearn_check.py"), merged);
    free(merged);
  } else {
    print_message("[  NOTE    ] python3 with scikit-learn not available: merged metrics not rechecked by sklearn\n");
  }
  /* --shard auto from RANK/WORLD_SIZE names shard 2/3 */
  ps_test_expect(0, "shard 2/3", "RANK=1 WORLD_SIZE=3 '%s' " EVAL_ARGS " --shard auto -o '%s/auto2' 2>&1", PS_CLI, model,
                 g_manifest, d);
  assert_int_equal(ps_test_system("cmp '%s/s2/predictions.csv' '%s/auto2/predictions.csv'", d, d), 0);
  free(whole_pred), free(wm), free(mm), free(tm), free(d);
}

static void test_evaluate_shards_binary(void **state) {
  (void)state;
  evaluate_shards(g_binary, "binary");
}

static void test_evaluate_shards_3class(void **state) {
  (void)state;
  evaluate_shards(g_3class, "3class");
}

static void test_evaluate_merge_refusals(void **state) {
  (void)state;
  char *d = ps_test_join(g_dir, "eval-binary"); /* the shards of test_evaluate_shards_binary */
  /* a missing shard, a duplicate one */
  ps_test_expect(1, "shard 2)", "'%s' evaluate --merge -o '%s/x' '%s/s1' '%s/s3' 2>&1", PS_CLI, d, d, d);
  ps_test_expect(1, "shard 2/3 is given twice", "'%s' evaluate --merge -o '%s/x' '%s/s1' '%s/s2' '%s/s3' '%s/auto2' 2>&1",
                 PS_CLI, d, d, d, d, d);
  /* shards of another threshold, of another model */
  ps_test_expect(0, NULL, "'%s' " EVAL_ARGS " --threshold 0.3 --shard 2/3 -o '%s/t2' 2>&1", PS_CLI, ps_test_src(g_binary),
                 g_manifest, d);
  ps_test_expect(1, "threshold is", "'%s' evaluate --merge -o '%s/x' '%s/s1' '%s/t2' '%s/s3' 2>&1", PS_CLI, d, d, d, d);
  ps_test_expect(0, NULL, "'%s' " EVAL_ARGS " --shard 2/3 -o '%s/m2' 2>&1", PS_CLI, ps_test_src(g_3class), g_manifest, d);
  ps_test_expect(1, "shards of different runs", "'%s' evaluate --merge -o '%s/x' '%s/s1' '%s/m2' '%s/s3' 2>&1", PS_CLI, d, d,
                 d, d);
  /* a folder that does not exist, one that is no shard, a shard.json that is not JSON */
  ps_test_expect(1, "cannot read shard folder", "'%s' evaluate --merge -o '%s/x' '%s/s1' '%s/nowhere' '%s/s3' 2>&1", PS_CLI, d,
                 d, d, d);
  ps_test_expect(1, "holds no shard.json", "'%s' evaluate --merge -o '%s/x' '%s/s1' '%s/whole' '%s/s3' 2>&1", PS_CLI, d, d, d,
                 d);
  assert_int_equal(ps_test_system("cp -r '%s/s2' '%s/s2bad' && echo '{' > '%s/s2bad/shard.json'", d, d, d), 0);
  ps_test_expect(1, "s2bad/shard.json", "'%s' evaluate --merge -o '%s/x' '%s/s1' '%s/s2bad' '%s/s3' 2>&1", PS_CLI, d, d, d, d);
  /* a damaged predictions.csv (a row short) */
  assert_int_equal(ps_test_system("cp -r '%s/s2' '%s/s2short' && sed -i '$d' '%s/s2short/predictions.csv'", d, d, d), 0);
  ps_test_expect(1, "its shard.json says", "'%s' evaluate --merge -o '%s/x' '%s/s1' '%s/s2short' '%s/s3' 2>&1", PS_CLI, d, d,
                 d, d);
  char *x = ps_test_join(d, "x/metrics.json");
  assert_int_equal(ps_test_file_size(x), -1);
  free(x);
  /* nothing overwritten: the merge into a shard folder, a shard into a whole run's folder */
  assert_int_equal(ps_test_system("cp '%s/s1/predictions.csv' '%s/s1.keep'", d, d), 0);
  ps_test_expect(1, "holds a shard", "'%s' evaluate --merge -o '%s/s1' '%s/s1' '%s/s2' '%s/s3' 2>&1", PS_CLI, d, d, d, d);
  assert_int_equal(ps_test_system("cmp '%s/s1/predictions.csv' '%s/s1.keep'", d, d), 0);
  assert_int_equal(ps_test_system("cp '%s/whole/predictions.csv' '%s/whole.keep'", d, d), 0);
  ps_test_expect(1, "holds a whole run's metrics.json", "'%s' " EVAL_ARGS " --shard 1/3 -o '%s/whole' 2>&1", PS_CLI,
                 ps_test_src(g_binary), g_manifest, d);
  assert_int_equal(ps_test_system("cmp '%s/whole/predictions.csv' '%s/whole.keep'", d, d), 0);
  /* usage errors */
  ps_test_expect(2, "--shard is K/N", "'%s' " EVAL_ARGS " --shard 4/3 -o '%s/y' 2>&1", PS_CLI, ps_test_src(g_binary),
                 g_manifest, d);
  ps_test_expect(2, "--merge takes model", "'%s' evaluate --merge --model binary -o '%s/y' '%s/s1' 2>&1", PS_CLI, d, d);
  ps_test_expect(2, "shard folders go with --merge", "'%s' " EVAL_ARGS " -o '%s/y' '%s/s1' 2>&1", PS_CLI,
                 ps_test_src(g_binary), g_manifest, d, d);
  /* the library */
  assert_int_equal(ps_evaluate_merge(NULL, 0, "x", NULL, NULL), PS_EINVAL);
  free(d);
}

/* audit: about 20 test films of both classes (every 5th) and one missing film (a failed row) */
#define AUDIT_ARGS "audit -q --model '%s' --manifest '%s' --split test --threads 2 --device cpu"

static char *audit_manifest(const char *d) {
  char *man = ps_test_join(d, "manifest.csv");
  assert_int_equal(ps_test_system("(head -1 '%s'; grep ',test,' '%s' | awk 'NR %% 5 == 3'; "
                                  "echo '%s/missing.jpeg,PNEUMONIA,VIRUS,ghost,test,') > '%s'",
                                  g_manifest, g_manifest, d, man),
                   0);
  return man;
}

static void test_audit_shards(void **state) {
  (void)state;
  const char *model = ps_test_src(g_binary);
  char *d = ps_test_join(g_dir, "audit");
  assert_int_equal(ps_test_system("mkdir -p '%s'", d), 0);
  char *man = audit_manifest(d);
  ps_test_expect(0, "\"failed\": 1", "'%s' " AUDIT_ARGS " -o '%s/whole'", PS_CLI, model, man, d);
  for (int k = 1; k <= 3; k++)
    ps_test_expect(0, "shard", "'%s' " AUDIT_ARGS " --shard %d/3 -o '%s/s%d' 2>&1", PS_CLI, model, man, k, d, k);
  char *csv = ps_test_join(d, "whole/lung_focus.csv");
  long n = rows_of(csv);
  assert_true(n >= 15);
  ps_test_expect(0, "\"failed\": 1", "'%s' audit --merge -o '%s/merged' '%s/s2' '%s/s3' '%s/s1'", PS_CLI, d, d, d, d);
  assert_int_equal(ps_test_system("cmp '%s/whole/lung_focus.csv' '%s/merged/lung_focus.csv'", d, d), 0);
  char *ws = ps_test_join(d, "whole/summary.json"), *ms = ps_test_join(d, "merged/summary.json");
  assert_json_files_equal(ws, ms);
  /* both classes are in the summary, so per-class statistics are compared too */
  ps_test_expect(0, NULL, "grep -q '\"PNEUMONIA\": {' '%s' && grep -q '\"films\": [1-9]' '%s'", ms, ms);
  /* the comparison can fail: one film's lung focus changed in a copy of shard 2 */
  assert_int_equal(ps_test_system("cp -r '%s/s2' '%s/s2x' && sed -i '/\"lung_focus\": \\[/{n;s/[0-9.e-][0-9.e-]*/0.999/}' "
                                  "'%s/s2x/shard.json' && ! cmp -s '%s/s2/shard.json' '%s/s2x/shard.json'",
                                  d, d, d, d, d),
                   0);
  ps_test_expect(0, NULL, "'%s' audit --merge -o '%s/tampered' '%s/s1' '%s/s2x' '%s/s3'", PS_CLI, d, d, d, d);
  char *ts = ps_test_join(d, "tampered/summary.json");
  assert_false(json_files_equal(ws, ts));
  /* refusals: a missing shard, a duplicate, another threshold, no shard folder, writing over a shard */
  ps_test_expect(1, "shard 3)", "'%s' audit --merge -o '%s/x' '%s/s1' '%s/s2' 2>&1", PS_CLI, d, d, d);
  ps_test_expect(1, "shard 1/3 is given twice", "'%s' audit --merge -o '%s/x' '%s/s1' '%s/s1' '%s/s2' '%s/s3' 2>&1", PS_CLI,
                 d, d, d, d, d);
  ps_test_expect(0, NULL, "'%s' " AUDIT_ARGS " --threshold 0.3 --shard 3/3 -o '%s/t3' 2>&1", PS_CLI, model, man, d);
  ps_test_expect(1, "threshold is", "'%s' audit --merge -o '%s/x' '%s/s1' '%s/s2' '%s/t3' 2>&1", PS_CLI, d, d, d, d);
  ps_test_expect(1, "holds no shard.json", "'%s' audit --merge -o '%s/x' '%s/s1' '%s/whole' '%s/s3' 2>&1", PS_CLI, d, d, d, d);
  ps_test_expect(1, "is the shard.json of `evaluate --shard`, not of `audit --shard`",
                 "'%s' audit --merge -o '%s/x' '%s/s1' '%s/../eval-binary/s2' '%s/s3' 2>&1", PS_CLI, d, d, d, d);
  ps_test_expect(1, "holds a shard", "'%s' audit --merge -o '%s/s1' '%s/s1' '%s/s2' '%s/s3' 2>&1", PS_CLI, d, d, d, d);
  ps_test_expect(1, "holds a whole run's summary.json", "'%s' " AUDIT_ARGS " --shard 1/3 -o '%s/whole' 2>&1", PS_CLI, model,
                 man, d);
  assert_int_equal(ps_gradcam_audit_merge(NULL, 0, "x", NULL), PS_EINVAL);
  free(ws), free(ms), free(ts), free(csv), free(man), free(d);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_evaluate_shards_binary),
      cmocka_unit_test(test_evaluate_shards_3class),
      cmocka_unit_test(test_evaluate_merge_refusals),
      cmocka_unit_test(test_audit_shards),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
